"""The panel stage: texts that count their layouts, the cached panel against its reference."""

from __future__ import annotations

import numpy as np
import pytest

from calf.td3 import TD3
from visuals.config import preset
from visuals.panel import CachedPanel, CountedText, FpsCounter, Panel, ReferencePanel

_TEXTS: list[CountedText] = []


@pytest.fixture(autouse=True)
def _hide_texts():
    """The UI is shared by the session's tests: hide what each test showed."""
    yield
    while _TEXTS:
        _TEXTS.pop().enabled = False


def keep(thing):
    _TEXTS.append(
        thing.text if hasattr(thing, "text") and not isinstance(thing, CountedText) else thing
    )
    return thing


def values(step: int, episode: int = 0) -> dict[str, object]:
    return {"step": step, "episode": episode, "agents": 5}


def test_counted_text_counts_every_layout_and_the_wasted_ones(ursina_app):
    text = keep(CountedText("a"))
    try:
        base = (text.layouts, text.wasted)
        text.text = "b"
        text.text = "b"
        text.text = "c"
        assert (text.layouts - base[0], text.wasted - base[1]) == (3, 1)
        assert text.text == "c"
    finally:
        text.enabled = False


def test_cached_panel_lays_out_only_when_a_shown_value_changed(ursina_app):
    panel: Panel = keep(CachedPanel(preset("medium")))  # "step" is shown every 10 frames
    state, action = np.zeros(2), np.zeros(1)
    start = panel.text.layouts
    for frame in range(30):
        panel.show(values(step=frame, episode=frame // 25), state, action)
    # Frames 1, 11, 21 show the step; frame 26 the new episode (shown at once).
    assert panel.text.layouts - start == 4
    assert panel.text.wasted == 0
    before = panel.text.layouts
    for _ in range(20):
        panel.show(values(step=29, episode=1), state, action)  # nothing changes any more
    assert panel.text.layouts == before + 1  # step 29, pending since frame 26, shown once due
    assert panel.text.wasted == 0


def test_reference_panel_lays_out_every_frame(ursina_app):
    panel: Panel = keep(ReferencePanel(TD3(2, 1, 5.0, seed=0)))
    state, action = np.array([1.0, 0.5]), np.zeros(1)
    start = (panel.text.layouts, panel.text.wasted)
    for _ in range(5):
        panel.show(values(step=3), state, action)
    assert panel.text.layouts - start[0] == 5
    assert panel.text.wasted - start[1] == 4  # the same text again and again


def test_fps_counter_lays_out_once_per_period_and_only_a_new_figure(ursina_app):
    fps = keep(FpsCounter(period=30))
    start = fps.text.layouts
    for frame in range(1, 91):
        fps.show(60.0 + frame, frame)
    assert fps.text.layouts - start == 3
    for frame in range(91, 181):
        fps.show(60.0, frame)  # the same figure: laid out once, then left alone
    assert fps.text.layouts - start == 4 and fps.text.wasted == 0
