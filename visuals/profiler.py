"""A light per-frame profiler for the visual trainer: named sections, per-frame counters, CPU, RSS.

It lives with the app it instruments (``visuals`` imports nothing from ``perf``) and imports only
the standard library, numpy, psutil and ``calf.atomic``, so importing it pulls in nothing heavy.

Semantics, in short:

* **Frames.** ``begin_frame()`` opens a frame, ``end_frame()`` closes it and records its wall time,
  the sum of every section's time inside it and every counter. ``end_frame()`` without a
  ``begin_frame()`` works as a lap timer (the frame runs from the previous ``end_frame()``); the
  first such call after construction, ``reset()`` or re-enabling only starts the clocks. Calling
  ``begin_frame()`` while a frame is open closes it first.
* **Sections** measure inclusive wall time (``time.perf_counter`` by default; a fake ``clock`` can
  be injected). Nested *different* sections each count their own time (so a frame's breakdown can
  sum to more than the frame when sections nest). A section re-entered while it is already running
  (recursion) is timed once, by its outermost call. A section may run several times per frame: its
  **sample for the frame is the sum of its calls in that frame**, and ``last/ema/min/max/p50/p95``
  are statistics of those per-frame sums over the frames in which it ran (frames where it did not
  run give no sample, so a heatmap that updates every K frames shows its real cost, and
  ``ms_per_frame`` its amortised cost). ``count`` is the number of calls, ``samples`` the number of
  per-frame samples. A section (or ``add_time``) used while no frame is open still counts: each call
  is then its own sample, attributed to no frame.
* **Counters** (``count``) are per-frame sums, 0 in frames where they were not touched;
  ``counters_per_frame`` divides their total by the number of frames. A counter written with
  ``set_counter`` is a gauge (e.g. draw calls read from the scene graph, perhaps only every k
  frames): its per-frame mean is over the frames in which it was set. Counts made while no frame is
  open go to the next frame.
* **Statistics windows.** ``count``, ``total_ms``, ``min_ms``, ``max_ms``, the EMA and the frame
  mean cover everything since ``reset()``; p50/p95 come from a fixed ring of the last ``window``
  samples (numpy's linear-interpolation percentile). Nothing grows with the number of frames. The
  EMA is ``ema = x`` for the first sample, then ``ema += alpha * (x - ema)``.
* **Sections are named by their user**: the app registers its sections in its frame's order
  (``sections=``); any other name is registered the first time it is used.
* **CPU** is the process's user + system CPU time over the recorded frames, read with
  ``time.process_time`` (the same quantity as ``psutil.Process().cpu_times()`` user + system, all
  threads, but at nanosecond resolution and ~1 us per call, against ~25 us and 10 ms ticks for
  psutil), sampled at every ``end_frame``. CPU spent between frames counts towards the next frame,
  so ``cpu_ms_per_frame`` is exact: CPU time from the first frame's start to the last frame's end
  divided by the frames. The main thread's own CPU time (``time.thread_time``) is kept beside it:
  the process figure also holds the render threads'. **RSS** (psutil, ~15 us) is sampled every
  ``rss_every`` frames and whenever statistics are read.
* **Disabled** (``enabled = False``, the F2 key): ``section()`` returns one shared no-op context
  manager and every other call returns after one attribute check; nothing is recorded. Disabling
  drops the open frame; re-enabling starts the clocks afresh, so the disabled time counts nowhere.

The profiler is meant for one thread (the app's main loop).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from calf.atomic import atomic_write

__all__ = ["PerformanceProfiler"]

_MB = 1024.0 * 1024.0
_FRAME_60FPS_MS = 1000.0 / 60.0


class _NullSection:
    """The shared no-op context manager that a disabled profiler hands out."""

    __slots__ = ()

    def __enter__(self) -> _NullSection:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        return None


_NULL_SECTION = _NullSection()


class _Section:
    """One named section: its own context manager (cached, so entering it allocates nothing),
    the open frame's accumulator and the statistics since reset."""

    __slots__ = (
        "name",
        "_prof",
        "_clock",
        "depth",
        "t0",
        "acc",
        "hit",
        "calls",
        "samples",
        "last",
        "ema",
        "min",
        "max",
        "total",
        "ring",
        "pos",
        "n",
    )

    def __init__(self, prof: PerformanceProfiler, name: str) -> None:
        self.name = name
        self._prof = prof
        self._clock = prof._clock
        self.depth = 0
        self.t0 = 0.0
        self.ring = np.zeros(prof.window, dtype=np.float64)
        self.clear()

    def clear(self) -> None:
        self.acc = 0.0
        self.hit = False
        self.calls = 0
        self.samples = 0
        self.last = 0.0
        self.ema = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.total = 0.0
        self.pos = 0
        self.n = 0

    def __enter__(self) -> _Section:
        self.calls += 1
        if self.depth == 0:
            self.depth = 1
            self.t0 = self._clock()
        else:
            # Recursion: only the outermost call is timed, so nothing is counted twice.
            self.depth += 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        depth = self.depth - 1
        self.depth = depth
        if depth:
            return
        self._prof._record(self, self._clock() - self.t0)

    def commit(self, ms: float, alpha: float, window: int) -> None:
        """Add one sample (milliseconds) to the statistics."""
        self.samples += 1
        self.last = ms
        self.total += ms
        if ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms
        if self.samples == 1:
            self.ema = ms
        else:
            self.ema += alpha * (ms - self.ema)
        pos = self.pos
        self.ring[pos] = ms
        pos += 1
        self.pos = 0 if pos == window else pos
        if self.n < window:
            self.n += 1


class _Counter:
    """One named per-frame counter (a sum) or gauge (set_counter)."""

    __slots__ = ("name", "acc", "hit", "gauge", "total", "frames_set")

    def __init__(self, name: str) -> None:
        self.name = name
        self.gauge = False
        self.clear()

    def clear(self) -> None:
        self.acc = 0.0
        self.hit = False
        self.total = 0.0
        self.frames_set = 0


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 0.0
    p50, p95 = np.percentile(values, [50.0, 95.0])
    return float(p50), float(p95)


class PerformanceProfiler:
    """Named sections, per-frame counters, frame times, process CPU and RSS; see the module doc."""

    # None until the first frame boundary after construction / reset / re-enabling.
    _cpu_prev: float | None
    _last_end: float | None

    def __init__(
        self,
        enabled: bool = True,
        ema_alpha: float = 0.05,
        window: int = 1000,
        *,
        sections: Iterable[str] = (),
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
        thread_clock: Callable[[], float] = time.thread_time,
        rss_every: int = 60,
    ) -> None:
        if not (isinstance(ema_alpha, int | float) and 0.0 < ema_alpha <= 1.0):
            raise ValueError(f"ema_alpha must be in (0, 1], got {ema_alpha!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if isinstance(rss_every, bool) or not isinstance(rss_every, int) or rss_every < 1:
            raise ValueError(f"rss_every must be an integer >= 1, got {rss_every!r}")
        self.ema_alpha = float(ema_alpha)
        self.window = window
        self.rss_every = rss_every
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._thread_clock = thread_clock
        self._process = psutil.Process()
        self._enabled = bool(enabled)

        self._sections: dict[str, _Section] = {}
        self._counters: dict[str, _Counter] = {}
        # Sections / counters touched in the open frame: end_frame visits only these.
        self._touched: list[_Section] = []
        self._ctouched: list[_Counter] = []

        # Ring of the last frames' wall times (the frame percentiles).
        self._frame_ms = np.zeros(window, dtype=np.float64)
        for name in sections:
            self._new_section(name)
        self.reset()

    # ------------------------------------------------------------------ switches

    @property
    def enabled(self) -> bool:
        """Whether anything is recorded (toggle at run time, e.g. with F2)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value == self._enabled:
            return
        self._enabled = value
        # Either way the open frame (if any) is dropped and the clocks restart on the next frame,
        # so time spent disabled is counted nowhere.
        self._drop_open_frame()
        self._cpu_prev = None
        self._last_end = None

    def reset(self) -> None:
        """Forget everything recorded (F3); keeps the names seen so far and their CSV columns.

        A frame open at the time is dropped: the next ``end_frame`` only restarts the clocks.
        """
        self._drop_open_frame()
        for sec in self._sections.values():
            sec.clear()
        for cnt in self._counters.values():
            cnt.clear()
        self._in_frame = False
        self._frame_start = 0.0
        self._last_end = None
        self._cpu_prev = None
        self._thread_prev = 0.0
        self._wall_prev = 0.0
        self._frames = 0
        self._pos = 0
        self._n = 0
        self._frame_total_ms = 0.0
        self._frame_last_ms = 0.0
        self._frame_ema_ms = 0.0
        self._frame_min_ms = math.inf
        self._frame_max_ms = -math.inf
        self._cpu_total_ms = 0.0
        self._thread_total_ms = 0.0
        self._wall_total_ms = 0.0
        self._rss_bytes = 0
        self._rss_max_bytes = 0
        self._sample_rss()

    def _drop_open_frame(self) -> None:
        for sec in self._touched:
            sec.acc = 0.0
            sec.hit = False
        self._touched.clear()
        for cnt in self._ctouched:
            cnt.acc = 0.0
            cnt.hit = False
        self._ctouched.clear()
        self._in_frame = False

    # ------------------------------------------------------------------ registration

    def _new_section(self, name: str) -> _Section:
        if not isinstance(name, str) or not name:
            raise ValueError(f"section name must be a non-empty string, got {name!r}")
        sec = _Section(self, name)
        self._sections[name] = sec
        return sec

    def _new_counter(self, name: str) -> _Counter:
        if not isinstance(name, str) or not name:
            raise ValueError(f"counter name must be a non-empty string, got {name!r}")
        cnt = _Counter(name)
        self._counters[name] = cnt
        return cnt

    # ------------------------------------------------------------------ recording

    def section(self, name: str) -> AbstractContextManager[Any]:
        """Context manager timing its block under ``name``: ``with prof.section("physics"):``."""
        if not self._enabled:
            return _NULL_SECTION
        try:
            return self._sections[name]
        except KeyError:
            return self._new_section(name)

    def _record(self, sec: _Section, seconds: float) -> None:
        if not self._enabled:  # disabled while the section ran
            return
        if self._in_frame:
            if not sec.hit:
                sec.hit = True
                self._touched.append(sec)
            sec.acc += seconds
        else:
            sec.commit(seconds * 1e3, self.ema_alpha, self.window)

    def add_time(self, name: str, seconds: float) -> None:
        """Record ``seconds`` for section ``name`` measured elsewhere (counts as one call)."""
        if not self._enabled:
            return
        if not seconds >= 0.0 or seconds == math.inf:  # also rejects NaN
            raise ValueError(f"add_time({name!r}): seconds must be finite and >= 0, got {seconds}")
        try:
            sec = self._sections[name]
        except KeyError:
            sec = self._new_section(name)
        sec.calls += 1
        self._record(sec, float(seconds))

    def count(self, counter: str, n: float = 1) -> None:
        """Add ``n`` to the open frame's ``counter`` (e.g. "vis_forward_passes")."""
        if not self._enabled:
            return
        try:
            cnt = self._counters[counter]
        except KeyError:
            cnt = self._new_counter(counter)
        if not cnt.hit:
            cnt.hit = True
            self._ctouched.append(cnt)
        cnt.acc += n

    def set_counter(self, counter: str, value: float) -> None:
        """Set the open frame's value of gauge ``counter`` (e.g. "draw_calls")."""
        if not self._enabled:
            return
        if value != value:
            raise ValueError(f"set_counter({counter!r}): value is NaN")
        try:
            cnt = self._counters[counter]
        except KeyError:
            cnt = self._new_counter(counter)
        cnt.gauge = True
        if not cnt.hit:
            cnt.hit = True
            self._ctouched.append(cnt)
        cnt.acc = value

    def begin_frame(self) -> None:
        """Open a frame (closing the open one first, if any)."""
        if not self._enabled:
            return
        if self._in_frame:
            self.end_frame()
        now = self._clock()
        if self._cpu_prev is None:
            self._cpu_prev = self._cpu_clock()
            self._thread_prev = self._thread_clock()
            self._wall_prev = now
        self._frame_start = now
        self._in_frame = True

    def end_frame(self) -> None:
        """Close the frame: record its wall time, CPU time, section sums and counters."""
        if not self._enabled:
            return
        now = self._clock()
        if self._cpu_prev is None:
            # First boundary since reset / enable: start the clocks, record nothing.
            self._drop_open_frame()
            self._cpu_prev = self._cpu_clock()
            self._thread_prev = self._thread_clock()
            self._wall_prev = now
            self._last_end = now
            return
        if self._in_frame:
            start = self._frame_start
        elif self._last_end is not None:
            start = self._last_end
        else:
            start = self._wall_prev
        cpu = self._cpu_clock()
        cpu_ms = (cpu - self._cpu_prev) * 1e3
        self._cpu_prev = cpu
        self._cpu_total_ms += cpu_ms
        thread = self._thread_clock()
        self._thread_total_ms += (thread - self._thread_prev) * 1e3
        self._thread_prev = thread
        self._wall_total_ms += (now - self._wall_prev) * 1e3
        self._wall_prev = now
        self._last_end = now
        self._in_frame = False

        frame_ms = (now - start) * 1e3
        frames = self._frames + 1
        self._frames = frames
        self._frame_total_ms += frame_ms
        self._frame_last_ms = frame_ms
        if frames == 1:
            self._frame_ema_ms = frame_ms
        else:
            self._frame_ema_ms += self.ema_alpha * (frame_ms - self._frame_ema_ms)
        if frame_ms < self._frame_min_ms:
            self._frame_min_ms = frame_ms
        if frame_ms > self._frame_max_ms:
            self._frame_max_ms = frame_ms

        pos = self._pos
        self._frame_ms[pos] = frame_ms
        alpha = self.ema_alpha
        window = self.window
        touched = self._touched
        if touched:
            for sec in touched:
                sec.commit(sec.acc * 1e3, alpha, window)
                sec.acc = 0.0
                sec.hit = False
            touched.clear()
        ctouched = self._ctouched
        if ctouched:
            for cnt in ctouched:
                cnt.total += cnt.acc
                cnt.frames_set += 1
                cnt.acc = 0.0
                cnt.hit = False
            ctouched.clear()
        pos += 1
        self._pos = 0 if pos == window else pos
        if self._n < window:
            self._n += 1
        if frames % self.rss_every == 0:
            self._sample_rss()

    def _sample_rss(self) -> None:
        rss = int(self._process.memory_info().rss)
        self._rss_bytes = rss
        if rss > self._rss_max_bytes:
            self._rss_max_bytes = rss

    # ------------------------------------------------------------------ statistics

    @property
    def frames(self) -> int:
        """Frames recorded since reset."""
        return self._frames

    def _ordered_sections(self) -> list[_Section]:
        return [s for s in self._sections.values() if s.calls or s.samples]

    def section_stats(self) -> dict[str, dict[str, float]]:
        """Per section seen since reset: count (calls), samples, last_ms, ema_ms, min_ms, max_ms,
        p50_ms, p95_ms (over the last ``window`` samples), mean_ms (per sample), total_ms and
        ms_per_frame (total / frames: the amortised cost)."""
        out: dict[str, dict[str, float]] = {}
        frames = self._frames
        for sec in self._ordered_sections():
            p50, p95 = _percentiles(sec.ring[: sec.n])
            has = sec.samples > 0
            out[sec.name] = {
                "count": sec.calls,
                "samples": sec.samples,
                "last_ms": sec.last,
                "ema_ms": sec.ema,
                "min_ms": sec.min if has else 0.0,
                "max_ms": sec.max if has else 0.0,
                "p50_ms": p50,
                "p95_ms": p95,
                "mean_ms": sec.total / sec.samples if has else 0.0,
                "total_ms": sec.total,
                "ms_per_frame": sec.total / frames if frames else 0.0,
            }
        return out

    def frame_stats(self) -> dict[str, float]:
        """frames, frame_ms p50/p95 (last ``window`` frames), mean/min/max/last/ema (since
        reset), fps (1000 / mean), cpu_ms_per_frame, cpu_percent_at_60fps, cpu_percent (CPU time /
        wall time), wall_s, rss_mb (sampled now) and rss_mb_max (over the samples)."""
        self._sample_rss()
        frames = self._frames
        p50, p95 = _percentiles(self._frame_ms[: self._n])
        mean = self._frame_total_ms / frames if frames else 0.0
        cpu_per_frame = self._cpu_total_ms / frames if frames else 0.0
        return {
            "frames": frames,
            "frame_ms_p50": p50,
            "frame_ms_p95": p95,
            "frame_ms_mean": mean,
            "frame_ms_min": self._frame_min_ms if frames else 0.0,
            "frame_ms_max": self._frame_max_ms if frames else 0.0,
            "frame_ms_last": self._frame_last_ms,
            "frame_ms_ema": self._frame_ema_ms,
            "fps": 1000.0 / mean if mean > 0.0 else 0.0,
            "cpu_ms_per_frame": cpu_per_frame,
            "thread_cpu_ms_per_frame": self._thread_total_ms / frames if frames else 0.0,
            "cpu_percent_at_60fps": cpu_per_frame / _FRAME_60FPS_MS * 100.0,
            "cpu_percent": (
                self._cpu_total_ms / self._wall_total_ms * 100.0 if self._wall_total_ms else 0.0
            ),
            "wall_s": self._wall_total_ms / 1e3,
            "rss_mb": self._rss_bytes / _MB,
            "rss_mb_max": self._rss_max_bytes / _MB,
        }

    def counters_per_frame(self) -> dict[str, float]:
        """Mean per frame of every counter seen: sums over all frames; gauges (set_counter) over
        the frames in which they were set."""
        frames = self._frames
        out: dict[str, float] = {}
        for cnt in self._counters.values():
            div = cnt.frames_set if cnt.gauge else frames
            out[cnt.name] = cnt.total / div if div else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """{"frame": frame_stats, "sections": section_stats, "counters": counters_per_frame,
        "meta": {...}}: plain floats and strings, JSON-ready."""
        return {
            "frame": self.frame_stats(),
            "sections": self.section_stats(),
            "counters": self.counters_per_frame(),
            "meta": {
                "enabled": self._enabled,
                "window": self.window,
                "frames_in_window": self._n,
                "ema_alpha": self.ema_alpha,
                "rss_every": self.rss_every,
                "units": "ms",
                "section_sample": "sum of a section's calls within one frame",
                "cpu_clock": getattr(self._cpu_clock, "__qualname__", repr(self._cpu_clock)),
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "written_unix": time.time(),
            },
        }

    def to_json(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """Write ``to_dict()`` (plus the ``extra`` top-level entries, e.g. the run's settings) as
        JSON, atomically (temp file + rename); returns the path."""
        data = {**self.to_dict(), **(extra or {})}
        text = json.dumps(data, indent=2, allow_nan=False)
        return atomic_write(path, lambda fh: fh.write(text + "\n"))
