"""The panel stage of a frame: the statistics text and the FPS counter, drawn with Ursina.

``Panel`` is what the frame needs: ``show(values, state, action)`` once per frame. Two
implementations side by side:

- ``CachedPanel``: the values go through a ``StatsCache``; the Text is assigned (and so laid out
  again) only on frames where a shown value changed and its period passed; 0 forward passes.
- ``ReferencePanel`` (``--reference stats``): the upstream path, a critic query for Q(s, a), a full
  rebuild of the text and an assignment every frame.

Every Ursina ``Text`` here is a ``CountedText``: assigning ``text`` re-lays out the whole string,
so the number of assignments (``layouts``) is the panel's exact per-frame work, and assigning the
string already shown (``wasted``) is work for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from numpy.typing import ArrayLike
from ursina import Text, camera

from calf.td3 import TD3
from visuals.config import VisualConfig
from visuals.stats_cache import ReferenceStatsPanel, StatsCache


class CountedText(Text):
    """An Ursina Text that counts its layouts (every assignment to ``text``) and the wasted ones
    (assigning the string it already shows)."""

    layouts = 0
    wasted = 0
    raw_text = ""  # Ursina keeps the last string assigned here (none yet: "")

    @property
    def text(self) -> str:
        return str(Text.text.fget(self))

    @text.setter
    def text(self, value: str) -> None:
        self.layouts += 1
        if value == self.raw_text:
            self.wasted += 1
        Text.text.fset(self, value)


class Panel(Protocol):
    """The statistics panel: shown once per frame."""

    text: CountedText

    def show(self, values: Mapping[str, Any], state: ArrayLike, action: ArrayLike) -> None: ...


def _panel_text() -> CountedText:
    return CountedText("", parent=camera.ui, position=(-0.87, 0.48), scale=0.75, origin=(-0.5, 0.5))


class CachedPanel:
    """The panel through a ``StatsCache``: text assigned only when what it shows changed."""

    def __init__(self, cfg: VisualConfig) -> None:
        self.cache = StatsCache(periods=cfg.stats_periods)
        self.text = _panel_text()
        self._version = -1

    def show(self, values: Mapping[str, Any], state: ArrayLike, action: ArrayLike) -> None:
        self.cache.update_from(values)
        text = self.cache.render()
        if self.cache.text_version != self._version:
            self._version = self.cache.text_version
            self.text.text = text


class ReferencePanel:
    """The upstream panel: Q(s, a) queried from the critic, the whole text rebuilt and assigned,
    every frame."""

    def __init__(self, td3: TD3) -> None:
        self.builder = ReferenceStatsPanel(td3)
        self.text = _panel_text()

    def show(self, values: Mapping[str, Any], state: ArrayLike, action: ArrayLike) -> None:
        self.text.text = self.builder.render(values, state, action)


class FpsCounter:
    """The FPS figure in the top-right corner, laid out at most once every ``period`` frames
    (and not when the figure reads as before)."""

    def __init__(self, period: int = 30) -> None:
        self.period = period
        self.text = CountedText(
            "", parent=camera.ui, position=(0.86, 0.48), origin=(0.5, 0.5), scale=0.9
        )

    def show(self, fps: float, frame_index: int) -> None:
        if frame_index % self.period == 0:
            text = f"{fps:5.1f} FPS"
            if text != self.text.raw_text:
                self.text.text = text
