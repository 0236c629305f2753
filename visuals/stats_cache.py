"""The statistics panel: a text block that costs nothing on frames where nothing shown changed.

Values are formatted once, when they are set, and compared as *shown text*: a float that moves in
its 9th digit does not touch a field showing 4. A field that changed is written into the text at
the first render at least its period (in frames) after it was last shown, so fast-changing figures
(Q, losses, FPS) re-lay out the panel a few times a second instead of every frame. ``render()`` on
a clean frame returns the cached string; otherwise it replaces the due lines and joins them.

``ReferenceStatsPanel`` is the upstream per-frame path, kept selectable (``--reference stats``): one
critic forward for Q(s, a) and a full rebuild every frame. ``panel_values_from`` reads the figures
the controller and trainer already hold (the training agent's Q included), so the cached panel
makes no forward pass at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from calf.modes import Mode
from calf.validation import as_state
from visuals.config import DEFAULT_STATS_PERIODS

MISSING = "-"  # how a value that is not available yet (None) is shown


@dataclass(frozen=True)
class PanelField:
    """One panel line: ``name`` (the key), ``label`` (shown), ``fmt`` (a format spec for
    ``format(value, fmt)`` or a callable value -> str)."""

    name: str
    label: str
    fmt: Callable[[Any], str] | str


def _pair(spec: str) -> Callable[[Any], str]:
    """A formatter for (low, high) pairs: '[low, high]' with both ends in ``spec``."""

    def fmt(value: Any) -> str:
        low, high = value
        return f"[{format(low, spec)}, {format(high, spec)}]"

    return fmt


_MODE_TEXT = MappingProxyType(
    {
        Mode.CERTIFIED: "certified",
        Mode.RELAX: "relax",
        Mode.FALLBACK: "fallback (PD)",
        Mode.UNCHECKED: "unchecked (no certificate)",
    }
)


def _mode(value: Any) -> str:
    return _MODE_TEXT.get(value, str(value))


PANEL_FIELDS: tuple[PanelField, ...] = (
    PanelField("episode", "Episode", "d"),
    PanelField("step", "Step", "d"),
    PanelField("episode_reward", "Episode reward", ".2f"),
    PanelField("last_reward", "Last episode reward", ".2f"),
    PanelField("success_rate", "Success (last 20)", ".0%"),
    PanelField("critic_loss", "Critic loss", ".4g"),
    PanelField("actor_loss", "Actor loss", ".4g"),
    PanelField("mode", "Mode", _mode),
    PanelField("certified_rate", "Certified", ".1%"),
    PanelField("relax_rate", "Relax", ".1%"),
    PanelField("fallback_rate", "Fallback", ".1%"),
    PanelField("p_relax", "P_relax", ".4f"),
    PanelField("q_value", "Q(s,a)", ".3f"),
    PanelField("q_cert", "Q†", ".3f"),
    PanelField("delta_q", "ΔQ = Q - Q†", "+.3f"),
    PanelField("k_bounds", "K∞ bounds", _pair(".3g")),
    PanelField("grid_range", "Grid Q² range", _pair(".2f")),
    PanelField("agents", "Agents", "d"),
    PanelField("fps", "FPS", ".0f"),
    PanelField("profiler", "Profiler", str),
    PanelField("evaluation", "Last evaluation", str),
)
_KNOWN_NAMES = frozenset(f.name for f in PANEL_FIELDS)


def format_value(field: PanelField, value: Any) -> str:
    """The text ``field`` shows for ``value``; None (not available yet) shows as '-'."""
    if value is None:
        return MISSING
    fmt = field.fmt
    try:
        return fmt(value) if callable(fmt) else format(value, fmt)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"panel field {field.name!r} cannot show {value!r}: {exc}") from None


def _line(field: PanelField, text: str) -> str:
    return f"{field.label}: {text}"


def build_panel_text(
    values: Mapping[str, Any], fields: tuple[PanelField, ...] = PANEL_FIELDS
) -> str:
    """The whole panel built fresh from ``values`` (missing keys show as '-'): one
    'label: value' line per field, in order. The reference path and the tests' oracle."""
    return "\n".join(_line(f, format_value(f, values.get(f.name))) for f in fields)


def _check_fields(fields: tuple[PanelField, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, f in enumerate(fields):
        if f.name in index:
            raise ValueError(f"panel field {f.name!r} appears twice")
        index[f.name] = i
    if not index:
        raise ValueError("a panel needs at least one field")
    return index


# Types whose objects never change, so the same object (or an equal one, below) shows the same.
_IMMUTABLE = frozenset({int, float, str, bool, tuple, type(None)})


def _unchanged(value: Any, old: Any) -> bool:
    """Whether ``value`` certainly shows as ``old`` does, without formatting it: the same
    immutable object, an equal int/str, or an equal nonzero float (0.0 and -0.0 compare equal but
    are shown differently). Anything else (arrays may change in place) is formatted and
    compared as text."""
    t = type(value)
    if t is not type(old) or t not in _IMMUTABLE:
        return False
    if value is old:
        return True
    if t is float:
        return value == old and value != 0.0
    return (t is int or t is str) and value == old


_NEVER = -(1 << 62)  # "last shown" of a field never shown: due at the first render


class StatsCache:
    """The panel's fields, formatted when set, shown when changed and their period has passed.

    ``periods`` maps field names to refresh periods in frames (default 1: shown at the next
    render). Names of fields this panel does not hold are ignored if they are standard panel
    fields (a panel may show a subset) and rejected otherwise (a typo in the config).
    """

    def __init__(
        self,
        fields: tuple[PanelField, ...] = PANEL_FIELDS,
        periods: Mapping[str, int] = DEFAULT_STATS_PERIODS,
    ) -> None:
        self.fields = tuple(fields)
        self._index = _check_fields(self.fields)
        for name, p in periods.items():
            if name not in self._index and name not in _KNOWN_NAMES:
                raise ValueError(
                    f"stats period for unknown panel field {name!r}; fields: {list(self._index)}"
                )
            if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1:
                raise ValueError(f"stats period of {name!r} must be an int >= 1, got {p!r}")
        n = len(self.fields)
        self._period = [int(periods.get(f.name, 1)) for f in self.fields]
        self._prefix = [f"{f.label}: " for f in self.fields]
        self._raw: list[Any] = [None] * n  # the last value set, to skip re-formatting it
        self._pending = [MISSING] * n  # its text
        self._shown = [MISSING] * n  # the text the panel shows
        self._last_shown = [_NEVER] * n  # frame at which each field was last written
        self._lines = [p + MISSING for p in self._prefix]
        self._dirty: set[int] = set()  # fields whose pending text differs from the shown text
        self._next_due = math.inf  # no dirty field can be due before this frame
        self._text = "\n".join(self._lines)
        self.frame = 0
        self.text_version = 0
        self.hits = 0
        self.misses = 0

    # ----------------------------------------------------------------- setting
    def _unknown(self, name: str) -> KeyError:
        return KeyError(f"unknown panel field {name!r}; fields: {list(self._index)}")

    def _set(self, i: int, value: Any) -> bool:
        if _unchanged(value, self._raw[i]):
            return False
        self._raw[i] = value
        text = format_value(self.fields[i], value)
        if text == self._pending[i]:
            return False
        self._pending[i] = text
        if text == self._shown[i]:
            self._dirty.discard(i)  # back to what is shown: nothing to redraw
        elif i not in self._dirty:
            self._dirty.add(i)
            due = self._last_shown[i] + self._period[i]
            if due < self._next_due:
                self._next_due = due
        return True

    def set(self, name: str, value: Any) -> bool:
        """Set one field; True when the text it shows (once due) changed. Unknown name: KeyError."""
        i = self._index.get(name)
        if i is None:
            raise self._unknown(name)
        return self._set(i, value)

    def update(self, **values: Any) -> None:
        """``set`` every given field (all names are checked before any is set)."""
        self.update_from(values)

    def update_from(self, values: Mapping[str, Any]) -> None:
        """``update`` from a mapping (no keyword repacking): the per-frame call."""
        index = self._index
        if not index.keys() >= values.keys():
            raise self._unknown(next(name for name in values if name not in index))
        raw = self._raw
        immutable = _IMMUTABLE
        for name, value in values.items():
            i = index[name]
            # The common cases of _unchanged inlined: a figure read from an attribute that did
            # not change, or one computed again to an equal float (a rate, ΔQ).
            old = raw[i]
            t = type(value)
            if value is old:
                if t in immutable:
                    continue
            elif t is float and type(old) is float and value == old and value != 0.0:
                continue
            self._set(i, value)

    # --------------------------------------------------------------- rendering
    def render(self, force: bool = False) -> str:
        """Advance one frame; the panel text. Clean frame (or nothing due yet): the cached
        string. Otherwise the due fields' lines are replaced and joined. ``force`` shows every
        pending value now, whatever its period (e.g. when training pauses)."""
        self.frame += 1
        frame = self.frame
        if not force and frame < self._next_due:
            self.hits += 1
            return self._text
        changed = False
        next_due = math.inf
        for i in tuple(self._dirty):
            due = self._last_shown[i] + self._period[i]
            if force or due <= frame:
                text = self._pending[i]
                self._shown[i] = text
                self._lines[i] = self._prefix[i] + text
                self._last_shown[i] = frame
                self._dirty.discard(i)
                changed = True
            elif due < next_due:
                next_due = due
        self._next_due = next_due
        if not changed:
            self.hits += 1
            return self._text
        self._text = "\n".join(self._lines)
        self.text_version += 1
        self.misses += 1
        return self._text

    @property
    def text(self) -> str:
        """The text last rendered (does not advance the frame)."""
        return self._text


# ------------------------------------------------------------------ the reference path
class ReferenceStatsPanel:
    """The upstream per-frame path, kept selectable (``--reference stats``): every frame it
    queries the critic for Q(s, a) of the training agent's current state (one critic forward)
    and rebuilds the whole text with ``build_panel_text``.

    ``values`` are merged into the values held from earlier frames (as ``StatsCache.update``
    does), so a key left out (``actor_loss`` between policy updates) keeps its last value.
    """

    def __init__(self, td3: Any, fields: tuple[PanelField, ...] = PANEL_FIELDS) -> None:
        self.td3 = td3
        self.fields = tuple(fields)
        _check_fields(self.fields)
        self._values: dict[str, Any] = {}
        self.frame = 0

    def query_q(self, state: ArrayLike, action: ArrayLike) -> float:
        """Q1(state, action): one critic forward."""
        td3 = self.td3
        s = as_state(state, td3.state_dim)
        a = np.asarray(action, dtype=np.float64)
        if a.size != td3.action_dim:
            raise ValueError(f"action must have {td3.action_dim} entries, got shape {a.shape}")
        s_t = torch.as_tensor(s, dtype=td3.dtype, device=td3.device).reshape(1, -1)
        a_t = torch.as_tensor(a, dtype=td3.dtype, device=td3.device).reshape(1, -1)
        with torch.no_grad():
            q1, _ = td3.critic(s_t, a_t)
        return float(q1.item())

    def render(self, values: Mapping[str, Any], state: ArrayLike, action: ArrayLike) -> str:
        """Query Q(state, action), recompute ΔQ from it, rebuild the whole text."""
        self.frame += 1
        merged = self._values
        merged.update(values)
        q = self.query_q(state, action)
        q_cert = merged.get("q_cert")
        merged["q_value"] = q
        merged["delta_q"] = None if q_cert is None else q - q_cert
        return build_panel_text(merged, self.fields)


# ----------------------------------------------------------------- reading the figures
def panel_values_from(
    controller: Any,
    trainer: Any,
    heatmap: Any = None,
    profiler_line: str | None = None,
    fps: float | None = None,
    n_agents: int = 0,
    state: ArrayLike | None = None,
    mode: Mode | None = None,
    evaluation: str | None = None,
) -> dict[str, Any]:
    """The panel's values from figures already known: 0 forward passes, a few attribute reads.

    Q(s, a) is ``controller.last_q`` (computed by the training agent's ``select_action``), Q† is
    ``controller.q_cert``, ΔQ = Q - Q†, and the K∞ bounds are ``kappa_*_coef * |s|^2`` at
    ``state`` (the state Q was computed at, ``StepResult.state``; default ``trainer.state``).
    ``mode`` is the step's mode (``StepResult.mode``: warm-up steps are unchecked); default the
    training agent's last CALF mode.
    ``actor_loss`` is left out on steps without a policy update (TD3 trains the actor every
    ``policy_delay`` steps), so a panel that merges values keeps showing the last one.
    """
    total = controller.total_steps
    q = controller.last_q
    q_cert = controller.q_cert
    s = trainer.state if state is None else state
    if s is None:
        norm_sq = None
    else:  # |s|^2 in Python floats: a 2-vector dot through numpy costs ~1 us, this ~0.3 us
        xs = np.asarray(s).ravel().tolist()
        norm_sq = float(sum([x * x for x in xs]))
    rewards = trainer.episode_rewards
    # The trainer's success_rate property runs np.mean over a deque (microseconds); same value.
    recent = trainer.recent_success
    losses = trainer.last_losses
    values: dict[str, Any] = {
        "episode": trainer.episode,
        "step": trainer.global_step,
        "episode_reward": trainer.episode_reward,
        "last_reward": rewards[-1] if rewards else None,
        "success_rate": sum(recent) / len(recent) if recent else None,
        "critic_loss": losses.get("critic_loss"),
        "mode": controller.last_mode if mode is None else mode,
        "certified_rate": controller.certified_steps / total if total else None,
        "relax_rate": controller.relax_events / total if total else None,
        "fallback_rate": controller.nominal_interventions / total if total else None,
        "p_relax": controller.P_relax,
        "q_value": q,
        "q_cert": q_cert,
        "delta_q": q - q_cert if q is not None and q_cert is not None else None,
        "k_bounds": None
        if norm_sq is None
        else (controller.kappa_low_coef * norm_sq, controller.kappa_up_coef * norm_sq),
        "grid_range": getattr(heatmap, "q2_range", None),
        "agents": n_agents,
        "fps": fps,
        "profiler": profiler_line,
        "evaluation": evaluation,
    }
    actor_loss = losses.get("actor_loss")
    if actor_loss is not None:
        values["actor_loss"] = actor_loss
    return values
