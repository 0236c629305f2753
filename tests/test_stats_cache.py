"""StatsCache against a fresh build of the panel: what it shows, when, and at what cost."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from calf.config import RunConfig, apply_overrides
from calf.modes import Mode
from calf.trainer import AgentTrainer, make_controller
from visuals.config import DEFAULT_STATS_PERIODS, PRESETS
from visuals.stats_cache import (
    MISSING,
    PANEL_FIELDS,
    PanelField,
    ReferenceStatsPanel,
    StatsCache,
    build_panel_text,
    format_value,
    panel_values_from,
)

NAMES = tuple(f.name for f in PANEL_FIELDS)
FIELD = {f.name: f for f in PANEL_FIELDS}

# ------------------------------------------------------------------ value strategies
# Few distinct bases and tiny perturbations, so that sequences repeat values, change them below
# the shown precision, and cross the cases the cache's shortcuts must get right (0.0 vs -0.0,
# int vs float, NaN, numpy scalars).
_BASES = [0.0, -0.0, 0.5, 1.0, -2.25, 1234.5678, 1e-7, math.inf, math.nan]
_EPS = [0.0, 1e-12, -1e-9, 1e-3]
_floats = st.one_of(
    st.sampled_from([0.0, -0.0]),
    st.builds(lambda b, e: b + e if e else b, st.sampled_from(_BASES), st.sampled_from(_EPS)),
    st.sampled_from([0, 1, -3]),
    st.builds(np.float64, st.sampled_from(_BASES)),
)
_ints = st.one_of(st.integers(0, 3), st.integers(0, 2).map(np.int64))
_pairs = st.tuples(_floats, _floats)
_text = st.text(alphabet="abc ms.0123|", max_size=8)
_KIND = {
    "episode": _ints,
    "step": _ints,
    "agents": _ints,
    "mode": st.sampled_from([*Mode, "other"]),
    "k_bounds": _pairs,
    "grid_range": _pairs,
    "profiler": _text,
}
VALUES = {n: st.none() | _KIND.get(n, _floats) for n in NAMES}
_periods = st.dictionaries(st.sampled_from(NAMES), st.integers(1, 5), max_size=len(NAMES))


def _twin(value: Any) -> Any:
    """An object equal to ``value`` with the sign of its zeros flipped."""
    if isinstance(value, tuple):
        return tuple(_twin(v) for v in value)
    if isinstance(value, float) and value == 0.0:
        return type(value)(-value)
    return value


def shown(name: str, value: Any) -> str:
    return format_value(FIELD[name], value)


class PanelMachine(RuleBasedStateMachine):
    """Random updates and renders; a per-field model of what must be on screen after each render."""

    @initialize(periods=_periods)
    def start(self, periods: dict[str, int]) -> None:
        self.cache = StatsCache(periods=periods)
        self.period = {n: periods.get(n, 1) for n in NAMES}
        self.current: dict[str, Any] = {}  # the values set
        self.on_screen: dict[str, Any] = {}  # the value each field showed when last written
        self.last_shown: dict[str, int | None] = dict.fromkeys(NAMES)
        self.stale_since: dict[str, int] = {}  # frame since which a field's text is out of date
        self.frame = 0
        self.text = self.cache.text
        self.version = self.cache.text_version
        assert self.text == build_panel_text({})

    def _set(self, name: str, value: Any) -> bool:
        before = shown(name, self.current.get(name))
        changed = self.cache.set(name, value)
        assert changed == (shown(name, value) != before)
        self.current[name] = value
        if shown(name, value) == shown(name, self.on_screen.get(name)):
            self.stale_since.pop(name, None)
        else:
            self.stale_since.setdefault(name, self.frame)
        return changed

    @rule(data=st.data())
    def set_one(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(NAMES))
        self._set(name, data.draw(VALUES[name]))

    @rule(data=st.data())
    def update_many(self, data: st.DataObject) -> None:
        names = data.draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
        values = {n: data.draw(VALUES[n]) for n in names}
        for name, value in values.items():  # the model's bookkeeping, then the real call
            self.current[name] = value
            if shown(name, value) == shown(name, self.on_screen.get(name)):
                self.stale_since.pop(name, None)
            else:
                self.stale_since.setdefault(name, self.frame)
        self.cache.update(**values)

    @rule(data=st.data())
    def set_without_changing_the_text(self, data: st.DataObject) -> None:
        """A new value whose text equals the current one: not dirty, no rebuild (``set`` says
        so, and the next render's hit or miss, checked in ``render``, shows it)."""
        name = data.draw(st.sampled_from(NAMES))
        value = self.current.get(name)
        if isinstance(value, float) and not isinstance(value, np.floating):
            value = value + data.draw(st.sampled_from([0.0, 1e-13, -1e-13]))
        elif isinstance(value, tuple):
            value = tuple(value)  # an equal, new object
        if shown(name, value) != shown(name, self.current.get(name)):
            return  # the perturbation crossed a rounding edge: not this rule's case
        assert self._set(name, value) is False

    @rule(data=st.data())
    def set_an_equal_value_shown_differently(self, data: st.DataObject) -> None:
        """0.0 == -0.0 (also inside tuples) but they show differently: equality is not enough."""
        name = data.draw(st.sampled_from(NAMES))
        self._set(name, _twin(self.current.get(name)))

    def _elapsed(self, name: str, frame: int) -> bool:
        last = self.last_shown[name]
        return last is None or frame - last >= self.period[name]

    @rule()
    def render(self) -> None:
        self.frame += 1
        f = self.frame
        elapsed = {n: self._elapsed(n, f) for n in NAMES}
        for n in NAMES:  # the rule: a changed field is written once its period has elapsed
            if elapsed[n] and shown(n, self.current.get(n)) != shown(n, self.on_screen.get(n)):
                self.on_screen[n] = self.current.get(n)
                self.last_shown[n] = f
                self.stale_since.pop(n, None)
        hits, misses = self.cache.hits, self.cache.misses
        text = self.cache.render()

        assert self.cache.frame == f
        assert text == build_panel_text(self.on_screen)
        if all(elapsed.values()):
            assert text == build_panel_text(self.current)
        lines = text.split("\n")
        for i, n in enumerate(NAMES):
            if elapsed[n]:
                assert lines[i] == f"{FIELD[n].label}: {shown(n, self.current.get(n))}"
        for n, since in self.stale_since.items():
            assert f - since < self.period[n], f"{n} shows a value older than its period"
        if text != self.text:
            self.version += 1
            assert (self.cache.hits, self.cache.misses) == (hits, misses + 1)
        else:
            assert (self.cache.hits, self.cache.misses) == (hits + 1, misses)
        assert self.cache.text_version == self.version
        self.text = text

    @invariant()
    def counters_add_up(self) -> None:
        if hasattr(self, "cache"):
            assert self.cache.hits + self.cache.misses == self.cache.frame


PanelMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_render_equals_fresh_build_of_last_shown_values_and_is_never_older_than_its_period = (
    PanelMachine.TestCase
)


# ------------------------------------------------------------------ direct cases
def test_change_below_shown_precision_is_a_cache_hit() -> None:
    cache = StatsCache(periods={})
    assert cache.set("q_value", -1.23456789)
    first = cache.render()
    version = cache.text_version
    assert cache.set("q_value", -1.23456789 + 1e-9) is False
    assert cache.render() is first  # the cached object itself: no rebuild
    assert (cache.text_version, cache.hits, cache.misses) == (version, 1, 1)


def test_field_with_period_catches_up_exactly_when_period_elapses() -> None:
    cache = StatsCache(periods={"q_value": 4})
    cache.set("q_value", 1.0)
    assert "Q(s,a): 1.000" in cache.render()  # frame 1: never shown before, shown now
    cache.set("q_value", 2.0)
    for _ in range(2, 5):  # frames 2..4: within the period, still the old value
        assert "Q(s,a): 1.000" in cache.render()
    assert "Q(s,a): 2.000" in cache.render()  # frame 5 = 1 + 4


def test_force_render_shows_every_pending_value() -> None:
    cache = StatsCache(periods={"q_value": 50, "fps": 50})
    cache.update(q_value=1.0, fps=30.0)
    cache.render()
    cache.update(q_value=2.0, fps=31.0, episode=3)
    values = {"q_value": 2.0, "fps": 31.0, "episode": 3}
    text = cache.render(force=True)
    assert text == build_panel_text(values)
    hits = cache.hits
    assert cache.render() is text and cache.hits == hits + 1  # nothing left pending


def test_build_panel_text_has_one_labelled_line_per_field_and_dash_for_missing() -> None:
    text = build_panel_text({"episode": 7, "k_bounds": (0.5, 2.0)})
    lines = text.split("\n")
    assert len(lines) == len(PANEL_FIELDS)
    assert [ln.split(": ", 1)[0] for ln in lines] == [f.label for f in PANEL_FIELDS]
    assert lines[NAMES.index("episode")] == "Episode: 7"
    assert lines[NAMES.index("k_bounds")].endswith("[0.5, 2]")
    assert lines[NAMES.index("fps")] == f"FPS: {MISSING}"


def test_unknown_field_raises_key_error_naming_it() -> None:
    cache = StatsCache()
    with pytest.raises(KeyError, match="no_such_field"):
        cache.set("no_such_field", 1)
    with pytest.raises(KeyError, match="bogus"):
        cache.update(episode=1, bogus=2)
    assert cache.render() == build_panel_text({})  # the failed update set nothing


def test_bad_configuration_and_values_raise_value_error() -> None:
    with pytest.raises(ValueError, match="q_valeu"):
        StatsCache(periods={"q_valeu": 3})
    with pytest.raises(ValueError, match="fps"):
        StatsCache(periods={"fps": 0})
    with pytest.raises(ValueError, match="twice"):
        StatsCache(fields=(PANEL_FIELDS[0], PANEL_FIELDS[0]))
    with pytest.raises(ValueError, match="'step'"):
        StatsCache().set("step", "many")
    # A panel may show a subset of the standard fields with the default periods.
    small = StatsCache(fields=PANEL_FIELDS[:2])
    small.set("episode", 1)
    assert small.render() == "Episode: 1\nStep: -"


def test_custom_field_with_callable_formatter() -> None:
    field = PanelField("temp", "Temperature", lambda v: f"{v:.1f} K")
    cache = StatsCache(fields=(field,), periods={})
    cache.set("temp", 300.04)
    assert cache.render() == "Temperature: 300.0 K"


def test_default_periods_name_panel_fields_and_presets_use_them() -> None:
    assert set(DEFAULT_STATS_PERIODS) <= set(NAMES)
    assert all(isinstance(p, int) and p >= 1 for p in DEFAULT_STATS_PERIODS.values())
    for cfg in PRESETS.values():
        StatsCache(periods=cfg.stats_periods)


# ----------------------------------------------------- the real controller and trainer
@pytest.fixture()
def trainer() -> AgentTrainer:
    cfg = apply_overrides(
        RunConfig(), {"train.seed": 3, "td3.learning_starts": 8, "td3.batch_size": 8}
    )
    tr = AgentTrainer(cfg)
    for _ in range(24):  # past warm-up: select_action and TD3 updates have run
        tr.step()
    return tr


HEATMAP = SimpleNamespace(q2_range=(-12.5, 0.25))


def test_panel_values_from_reads_the_known_figures(trainer: AgentTrainer) -> None:
    ctrl = trainer.controller
    state = trainer.state
    values = panel_values_from(ctrl, trainer, HEATMAP, "policy 0.1 ms", 59.5, 20)
    assert set(values) <= set(NAMES)
    stats = ctrl.get_statistics()
    assert values["q_value"] == stats["last_q"] is not None
    assert values["q_cert"] == stats["q_cert"]
    if stats["q_cert"] is not None:
        assert values["delta_q"] == stats["last_q"] - stats["q_cert"]
    for name in ("certified_rate", "relax_rate", "fallback_rate"):
        assert values[name] == stats[name]
    assert values["p_relax"] == stats["P_relax"]
    assert values["mode"] is ctrl.last_mode
    n2 = float(state @ state)
    assert values["k_bounds"] == pytest.approx((ctrl.kappa_low_coef * n2, ctrl.kappa_up_coef * n2))
    assert values["step"] == trainer.global_step and values["episode"] == trainer.episode
    assert values["critic_loss"] == trainer.last_losses["critic_loss"]
    assert values["grid_range"] == HEATMAP.q2_range
    assert (values["agents"], values["fps"], values["profiler"]) == (20, 59.5, "policy 0.1 ms")
    build_panel_text(values)  # every value formats


def test_panel_values_success_rate_equals_trainer_property() -> None:
    tr = SimpleNamespace(recent_success=[True, False, True], episode_rewards=[1.5])
    tr.__dict__.update(episode=3, global_step=9, episode_reward=0.0, state=np.zeros(2))
    tr.last_losses = {"critic_loss": None, "actor_loss": None}
    ctrl = make_controller(RunConfig())
    values = panel_values_from(ctrl, tr)
    assert values["success_rate"] == float(np.mean(tr.recent_success))
    assert values["last_reward"] == 1.5
    assert "actor_loss" not in values  # no policy update this step: the panel keeps the last one
    assert values["certified_rate"] is None and values["q_value"] is None


def test_cached_panel_makes_no_forward_passes_and_reference_makes_one_per_frame(
    trainer: AgentTrainer,
) -> None:
    ctrl = trainer.controller
    counter = ctrl.td3.forward_counter
    cache = StatsCache()
    reference = ReferenceStatsPanel(ctrl.td3)
    frames = 12
    for _ in range(frames):
        result = trainer.step()  # training forwards happen here, outside the panel
        before, critic_before = counter.count(), counter.count(module="critic")
        cache.update(**panel_values_from(ctrl, trainer, HEATMAP, "p", 60.0, 5, result.state))
        cache.render()
        assert counter.count() == before, "the cached panel ran a network"
        reference.render(panel_values_from(ctrl, trainer), result.state, result.action)
        assert counter.count() - before == 1  # one critic forward per frame, nothing else
        assert counter.count(module="critic") - critic_before == 1
    assert cache.frame == reference.frame == frames


def test_reference_panel_equals_cached_panel_when_the_critic_is_unchanged() -> None:
    """Without learning, the reference's fresh critic query is the Q select_action computed,
    so with all periods 1 both panels show the same text."""
    tr = AgentTrainer(apply_overrides(RunConfig(), {"train.seed": 5}), learn=False)
    ctrl = tr.controller
    cache = StatsCache(periods={})
    reference = ReferenceStatsPanel(ctrl.td3)
    compared = 0
    for _ in range(40):
        result = tr.step()
        if result.mode is Mode.FALLBACK:  # the action taken is the PD's, not the one Q rated
            continue
        values = panel_values_from(ctrl, tr, HEATMAP, "p", 60.0, 3, result.state)
        cache.update(**values)
        assert cache.render() == reference.render(values, result.state, result.action)
        compared += 1
    assert compared >= 10


def test_reference_panel_rejects_bad_state_and_action(trainer: AgentTrainer) -> None:
    reference = ReferenceStatsPanel(trainer.controller.td3)
    with pytest.raises(ValueError, match="state"):
        reference.render({}, np.zeros(3), np.zeros(1))
    with pytest.raises(ValueError, match="action"):
        reference.render({}, np.zeros(2), np.zeros(2))
