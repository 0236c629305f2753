"""Instrumentation that perf runs switch on with one option: ``calf-train --probe k=v,...``.

A user never needs it; ``calf-perf`` does. The probe runs after every frame and holds every
perf-only knob, so the frame itself has none:

- ``warmup=F``: the profiler starts recording after F frames;
- ``prefill=S``: S random training steps before the first frame (every frame then learns);
- ``late=1``: before the first frame, build the state of an hour-long run (``calf.late_run``:
  the replay full, 1000 episodes of history in the session, the writer and the run folder)
  and run the visual agents a trail's length of steps, so their trails are as full as they get;
- ``frames=1``: keep every measured frame's time and whether episode-end work (an evaluation,
  a file being written) was under way in it: frame pacing during evaluations and outside;
- ``churn=F``: every F frames add or remove 1-3 agents (soak runs), staying within [n0/2, 2 n0];
- ``series=F``: every F frames sample RSS, scene nodes and agents (soak runs);
- ``work=1``: keep every frame's exact work counts (forwards by stage, buffer writes by layer,
  text layouts by text) after the warm-up, for the work budgets;
- ``calls=F``: every F frames after the warm-up, count the Python work of one whole frame (its
  render and its update: function calls and lines executed, ``PythonWork``) by the stage doing
  it: a per-agent Python loop shows as a count that grows with N;
- ``tracemalloc=F``: trace Python allocations from the end of the warm-up (or from frame
  ``trace_from=K``, if later) and, every F frames, sum the traced bytes still held whose
  allocation site is not inside an installed package (the leak slope of our own code; Ursina's
  and Panda3D's internal caches churn on their own). Tracing slows every allocation and each
  snapshot takes a frame's worth of time or more: frames timed for pacing come before it;
- ``inject=STAGE:MS``: MS milliseconds of busy work added to every run of STAGE (a known,
  behaviour-preserving slowdown, for the harness's calibration);
- ``alone=K``: after the last frame, time K training steps back to back, the renderer idle
  (the same step the frame's ``training`` section runs, without the rest of the frame around
  it: what contention with the render costs);
- ``serve=1``: instead of running to the frame limit, run blocks of frames on command (see
  ``Probe.serve``): ``calf-perf ab`` keeps base and head alive side by side and alternates
  short blocks between them, so paired samples come seconds apart without restarts;
- ``hold=1``: at the end of the warm-up frame print ``@warm PID`` on stdout and wait for a line
  ``go`` on stdin, and again at the end of the last frame (``--frames``) print ``@measured`` and
  wait, before the exit work: ``calf-perf flame`` samples exactly the frames in between with
  py-spy. Before the first wait the process lets any process trace it (``PR_SET_PTRACER_ANY``,
  Linux), so a sibling py-spy may attach under ``kernel.yama.ptrace_scope=1``.

What it records goes into the profile JSON under ``"probe"``.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TextIO

import numpy as np

_SWITCHES = ("work", "serve", "late", "frames", "hold")  # settings that are on (1) or off (0)


@dataclass(frozen=True)
class ProbeConfig:
    warmup: int = 0
    prefill: int = 0
    churn: int = 0
    series: int = 0
    work: bool = False
    calls: int = 0
    tracemalloc: int = 0
    trace_from: int = 0
    alone: int = 0
    inject: tuple[str, float] | None = None
    serve: bool = False
    late: bool = False
    frames: bool = False
    hold: bool = False

    @classmethod
    def parse(cls, text: str) -> ProbeConfig:
        """'warmup=60,prefill=256,inject=policy:0.5' -> ProbeConfig; ValueError naming the key."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = item.partition("=")
            if not sep or key not in known:
                raise ValueError(f"unknown probe setting {item!r}; known: {sorted(known)}")
            if key == "inject":
                stage, colon, ms = raw.partition(":")
                try:
                    values[key] = (stage, float(ms))
                except ValueError:
                    raise ValueError(f"probe inject must be STAGE:MS, got {raw!r}") from None
                if not colon or not stage or values[key][1] < 0:
                    raise ValueError(f"probe inject must be STAGE:MS with MS >= 0, got {raw!r}")
                continue
            try:
                number = int(raw)
            except ValueError:
                raise ValueError(f"probe {key} must be an integer, got {raw!r}") from None
            if number < 0:
                raise ValueError(f"probe {key} must be >= 0, got {number}")
            values[key] = bool(number) if key in _SWITCHES else number
        return cls(**values)


class Probe:
    """Runs after every frame of an app (``after_frame``); see the module doc."""

    def __init__(self, config: ProbeConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self._churn_rng = np.random.default_rng(seed + 2)
        self.series: list[dict[str, float]] = []
        self.work: list[dict[str, float]] = []
        self.calls: list[dict[str, Any]] = []
        self.traced: list[tuple[int, int]] = []  # (frame, traced Python bytes)
        self.alone_ms: list[float] = []  # training steps timed alone (ms each)
        self.frames: list[tuple[float, bool]] = []  # (frame ms, episode-end work under way)
        self.evaluations = 0  # evaluations finished after the warm-up (with frames=1)
        # Episode-end work under way at the end of the last two frames' updates.
        self._busy = (False, False)
        self._counter: PythonWork | None = None

    def start(self, app: Any) -> None:
        """Before the first frame: prefill the replay or age the run, and set up the injected
        work."""
        for _ in range(self.config.prefill):
            app.session.step()
        if self.config.late:
            from calf.late_run import age

            age(app.session, seed=self.seed)
            for _ in range(app.cfg.trail_points):
                app.agents.step(app.stages.heights, app.meter.stage)
        if self.config.inject is not None:
            app.meter.inject(*self.config.inject)
        if self.config.frames:

            def count(_result: Any) -> None:
                if app.frame_index > self.config.warmup:
                    self.evaluations += 1

            app.session.on_eval.append(count)

    def after_frame(self, app: Any) -> None:
        cfg, i = self.config, app.frame_index
        busy = app.session.busy
        if cfg.frames and i > cfg.warmup + 1:  # the profiler closed frame i - 1 just now
            # Work under way when frame i - 1 began or ended counts as in that frame.
            self.frames.append((app.profiler.last_frame_ms, self._busy[0] or self._busy[1]))
        self._busy = (self._busy[1], busy)
        if self._counter is not None:
            self._counter.stop()
            self.calls.append({"frame": i, "agents": len(app.agents), **self._counter.counts})
            self._counter = None
        if cfg.work and i > cfg.warmup:
            self.work.append({"frame": i, "agents": len(app.agents), **app.meter.last})
        start = max(cfg.warmup, cfg.trace_from)
        if cfg.tracemalloc and i >= start and (i - start) % cfg.tracemalloc == 0:
            if not tracemalloc.is_tracing():
                tracemalloc.start()
            self.traced.append((i, _own_traced_bytes()))
        if cfg.churn and i % cfg.churn == 0:
            with app.meter.stage("churn"):
                self._churn(app)
        if cfg.series and i % cfg.series == 0:
            with app.meter.stage("series"):
                self._sample(app)
        if i == cfg.warmup and i > 0:
            app.reset_profiler()
        if cfg.calls and i >= cfg.warmup and (i - cfg.warmup) % cfg.calls == 0:
            meter = app.meter
            self._counter = PythonWork(lambda: meter.active or "-")
            self._counter.start()  # counts the next frame: its render, then its update
        if cfg.hold and i in (cfg.warmup, app.opts.frames):
            # Last in the frame, so the frames between the two waits are whole frame periods
            # (the end of one update to the end of the next), exactly --frames - warmup of them.
            if i == cfg.warmup:
                allow_any_tracer()
            hold("@measured" if i == app.opts.frames else f"@warm {os.getpid()}")

    def _churn(self, app: Any) -> None:
        agents, n0 = app.agents, max(app.initial_agents, 2)
        n = len(agents)
        k = int(self._churn_rng.integers(1, 4))
        grow = self._churn_rng.random() < 0.5
        if grow and n + k <= 2 * n0 or n - k < n0 // 2:
            agents.add(k)
        else:
            agents.remove(np.arange(n - k, n))

    def _sample(self, app: Any) -> None:
        import psutil
        from ursina import camera, scene

        from visuals.scene_stats import count_nodes

        self.series.append(
            {
                "frame": app.frame_index,
                "rss_mb": psutil.Process().memory_info().rss / 2**20,
                "nodes": count_nodes(scene) + count_nodes(camera.ui),
                "agents": len(app.agents),
            }
        )

    def serve(self, app: Any, commands: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
        """Run blocks of frames on command until told to quit.

        Protocol, one JSON object per line: the app prints ``@ready`` once set up; each command
        ``{"frames": K, "settle": S, "inject": [STAGE, MS] or null}`` runs S unrecorded frames,
        then K recorded ones with the added work, and answers one line ``@block {...}``: the
        profiler's frame, sections and counters over those K frames. ``{"quit": true}`` (or
        the end of the input) returns.
        """
        print("@ready", file=out, flush=True)
        for line in commands:
            cmd = json.loads(line)
            if cmd.get("quit"):
                return
            inject = cmd.get("inject")
            app.meter.inject(*(inject if inject else (None,)))
            for _ in range(int(cmd.get("settle", 0))):
                app.app.step()
            app.reset_profiler()
            # K + 1 frames: the profiler closes a frame when the next one starts.
            for _ in range(int(cmd["frames"]) + 1):
                app.app.step()
            data = app.profiler.to_dict()
            block = {k: data[k] for k in ("frame", "sections", "counters")}
            print("@block " + json.dumps(block), file=out, flush=True)

    def finish(self, app: Any) -> None:
        """After the last frame: the training steps timed alone (``alone``)."""
        if not self.config.alone:
            return
        for _ in range(10):  # the last frame's rasterising finishes meanwhile
            app.session.train_step()
        for _ in range(self.config.alone):
            start = time.perf_counter()
            app.session.train_step()
            self.alone_ms.append((time.perf_counter() - start) * 1e3)

    def report(self) -> dict[str, Any]:
        """What the probe recorded, for the profile JSON."""
        return {
            "config": self.config.__dict__,
            "series": self.series,
            "work": self.work,
            "calls": self.calls,
            "traced": self.traced,
            "alone_ms": self.alone_ms,
            "frames": self.frames,
            "evaluations": self.evaluations,
        }


def hold(line: str, commands: TextIO | None = None, out: TextIO | None = None) -> None:
    """Print ``line`` and wait for a line ``go`` (or the end of the input): ``hold=1``."""
    print(line, file=out or sys.stdout, flush=True)
    for command in commands or sys.stdin:
        if command.strip() == "go":
            return


def allow_any_tracer() -> bool:
    """Let any process of this user ptrace this one (``prctl(PR_SET_PTRACER,
    PR_SET_PTRACER_ANY)``): under Yama's ``ptrace_scope=1`` only ancestors may trace, and
    py-spy, started by ``calf-perf flame`` beside this process, is none. Linux only; whether it
    was allowed (False elsewhere, or where the kernel has no Yama: nothing to allow)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_ptracer, pr_set_ptracer_any = 0x59616D61, ctypes.c_ulong(-1)
        return int(libc.prctl(pr_set_ptracer, pr_set_ptracer_any, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


_NOT_OURS = (
    tracemalloc.Filter(False, "*/site-packages/*"),
    tracemalloc.Filter(False, "<frozen *>"),
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, __file__),  # the probe's own records
)


def _own_traced_bytes() -> int:
    """Bytes still held of the allocations traced so far, whose innermost Python frame is not
    in an installed package."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_NOT_OURS)
    return sum(trace.size for trace in snapshot.traces)


class PythonWork:
    """The interpreter's work while started: every function call (Python and C) and every line
    executed, by the label ``label()`` returns at the time (the stage running). A per-agent loop
    shows as a count that grows with N, even one whose body calls nothing (its lines).
    Installs ``sys.setprofile`` (C calls) and ``sys.settrace`` (Python calls and lines) for the
    current thread.

    ``skip``: source files whose work is not counted (nor that of the C functions they call),
    e.g. ``threading.py``: handing an item to another thread wakes the threads waiting at that
    moment, a number that depends on their timing, not on the caller."""

    def __init__(self, label: Callable[[], str] = lambda: "", skip: tuple[str, ...] = ()) -> None:
        self.label = label
        self.skip = skip
        self.counts: Counter[str] = Counter()

    def _profile(self, frame: Any, event: str, _arg: Any) -> None:
        if event == "c_call" and not frame.f_code.co_filename.endswith(self.skip or ("\0",)):
            self.counts[self.label()] += 1

    def _trace(self, frame: Any, event: str, _arg: Any) -> Any:
        if self.skip and frame.f_code.co_filename.endswith(self.skip):
            return None  # neither this call nor its lines
        if event == "call" or event == "line":
            self.counts[self.label()] += 1
        return self._trace

    def start(self) -> None:
        sys.setprofile(self._profile)
        sys.settrace(self._trace)

    def stop(self) -> None:
        sys.settrace(None)
        sys.setprofile(None)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
