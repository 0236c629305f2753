"""The frame's exact work, counted: network forwards by stage, vertex-buffer writes by drawn
layer, text layouts by text, draw calls.

The app enters every stage of a frame through ``WorkMeter.stage(name)``: one object per name,
allocation-free, that opens the profiler section ``name`` and makes ``name`` the forward-pass tag,
so every critic or actor call is counted under the stage that made it (a forward outside every
stage counts under the counter's default tag). ``end_frame`` turns the monotone counts of the
watched layers and texts into this frame's counts, hands them to the profiler as per-frame
counters and keeps them in ``last`` (the probe records them frame by frame for the work budgets).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from calf.counters import ForwardCounter
from visuals.profiler import PerformanceProfiler

TRAINING = "training"  # the stage (and forward tag) of the training agent's step and update


class WrittenLayer(Protocol):
    """A drawn layer whose vertex-buffer writes (uploads) and their bytes are counted
    (monotone)."""

    @property
    def mesh_updates(self) -> int: ...
    @property
    def bytes_written(self) -> int: ...


class LaidOutText(Protocol):
    """A text whose layouts (assignments of its string) are counted, and those that assigned
    the string it already showed (monotone)."""

    @property
    def layouts(self) -> int: ...
    @property
    def wasted(self) -> int: ...


class _Stage:
    """One named stage: the profiler section and the forward tag, entered and left together."""

    __slots__ = ("name", "_meter", "_section", "_outer_tag", "_outer_stage")

    def __init__(self, meter: WorkMeter, name: str) -> None:
        self.name = name
        self._meter = meter
        self._section: Any = None
        self._outer_tag = ""
        self._outer_stage = ""

    def __enter__(self) -> _Stage:
        meter = self._meter
        self._outer_tag = meter.counter.swap_tag(self.name)
        self._outer_stage, meter.active = meter.active, self.name
        self._section = meter.profiler.section(self.name)
        self._section.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        meter = self._meter
        if meter.injected is not None and meter.injected[0] == self.name:
            _spin(meter.injected[1])
        self._section.__exit__(exc_type, exc, tb)
        meter.active = self._outer_stage
        meter.counter.swap_tag(self._outer_tag)


def _spin(seconds: float) -> None:
    """Busy CPU work for ``seconds``: a known, behaviour-preserving slowdown of one stage."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class WorkMeter:
    """The frame's stages and its exact per-frame counts."""

    def __init__(
        self,
        profiler: PerformanceProfiler,
        counter: ForwardCounter,
        draw_calls: Callable[[], int],
        draw_call_every: int = 60,
    ) -> None:
        self.profiler = profiler
        self.counter = counter
        self._draw_calls = draw_calls
        self.draw_call_every = draw_call_every
        self._stages: dict[str, _Stage] = {}
        self._layers: dict[str, WrittenLayer] = {}
        self._texts: dict[str, LaidOutText] = {}
        self._seen: dict[str, float] = {}
        self.active = ""  # the stage running now ("" between stages)
        self.injected: tuple[str, float] | None = None  # (stage, seconds of added work)
        self.frames = 0
        self.draw_calls = 0
        self.last: dict[str, float] = {}

    def stage(self, name: str) -> _Stage:
        """The context manager of stage ``name`` (profiler section and forward tag)."""
        stage = self._stages.get(name)
        if stage is None:
            stage = self._stages[name] = _Stage(self, name)
        return stage

    def watch(self, layers: Mapping[str, WrittenLayer], texts: Mapping[str, LaidOutText]) -> None:
        """Count these layers' buffer writes and these texts' layouts from now on."""
        self._layers.update(layers)
        self._texts.update(texts)

    def start(self) -> None:
        """Count from now on: the next ``end_frame`` reports only what happens after this."""
        self._seen = self._totals()

    def inject(self, stage: str | None, ms: float = 0.0) -> None:
        """Add ``ms`` of busy work to every run of ``stage`` (None: no added work)."""
        self.injected = None if stage is None else (stage, ms / 1e3)

    def _totals(self) -> dict[str, float]:
        # Every stage entered so far reports its forwards, 0 included.
        tags = {*self._stages, *self.counter.tags()}
        totals: dict[str, float] = {f"forwards.{t}": self.counter.count(tag=t) for t in tags}
        totals.update({f"uploads.{k}": v.mesh_updates for k, v in self._layers.items()})
        totals.update({f"vertex_bytes.{k}": v.bytes_written for k, v in self._layers.items()})
        totals.update({f"layouts.{k}": v.layouts for k, v in self._texts.items()})
        totals.update({f"wasted_layouts.{k}": v.wasted for k, v in self._texts.items()})
        return totals

    def end_frame(self) -> dict[str, float]:
        """This frame's counts (also recorded as the profiler's per-frame counters)."""
        totals = self._totals()
        seen = self._seen
        last = {name: value - seen.get(name, 0.0) for name, value in totals.items()}
        self._seen = totals
        forwards = sum(v for k, v in last.items() if k.startswith("forwards."))
        training = last.get(f"forwards.{TRAINING}", 0.0)
        last["vis_forward_passes"] = forwards - training
        last["train_forward_passes"] = training
        last["mesh_updates"] = sum(v for k, v in last.items() if k.startswith("uploads."))
        if self.frames % self.draw_call_every == 0:  # walking the scene graph is not free
            self.draw_calls = self._draw_calls()
        last["draw_calls"] = self.draw_calls
        self.frames += 1
        prof = self.profiler
        for name, value in last.items():
            if name != "draw_calls":
                prof.count(name, value)
        prof.set_counter("draw_calls", self.draw_calls)
        self.last = last
        return last
