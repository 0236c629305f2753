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
* **Statistics** (``visuals.running_stats.RunningStats``, one kind for the frame and every
  section): ``count``, ``total_ms``, ``min_ms``, ``max_ms``, the EMA and the frame mean cover
  everything since ``reset()``; p50/p95 come from a fixed ring of the last ``window`` samples
  (numpy's linear-interpolation percentile); the pacing (p99, p99.9, hitches over 4x the median
  and over 50 ms, "1 % low" FPS) from a log-bucketed histogram of every sample since
  ``reset()``, to within half a 1 % bucket. Nothing grows with the number of frames.
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

import psutil

from calf.atomic import atomic_write
from visuals.running_stats import RESOLUTION, RunningStats

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
    the open frame's accumulator and the statistics of its per-frame samples since reset."""

    __slots__ = ("name", "_prof", "_clock", "depth", "t0", "acc", "hit", "calls", "stats")

    def __init__(self, prof: PerformanceProfiler, name: str) -> None:
        self.name = name
        self._prof = prof
        self._clock = prof._clock
        self.depth = 0
        self.t0 = 0.0
        self.stats = RunningStats(prof.window, prof.ema_alpha)
        self.clear()

    def clear(self) -> None:
        self.acc = 0.0
        self.hit = False
        self.calls = 0
        self.stats.clear()

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

        self._frame = RunningStats(window, self.ema_alpha)  # the frames' wall times
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
        self._frame.clear()
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
            sec.stats.add(seconds * 1e3)

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

        frames = self._frames + 1
        self._frames = frames
        self._frame.add((now - start) * 1e3)
        touched = self._touched
        if touched:
            for sec in touched:
                sec.stats.add(sec.acc * 1e3)
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

    @property
    def last_frame_ms(self) -> float:
        """The wall time of the last frame closed (0.0 before any)."""
        return self._frame.last

    def _ordered_sections(self) -> list[_Section]:
        return [s for s in self._sections.values() if s.calls or s.stats.n]

    def section_stats(self) -> dict[str, dict[str, float]]:
        """Per section seen since reset: count (calls), samples, last_ms, ema_ms, min_ms, max_ms,
        p50_ms, p95_ms (over the last ``window`` samples), mean_ms (per sample), total_ms,
        ms_per_frame (total / frames: the amortised cost), and its pacing over every sample
        since reset: p99_ms, p999_ms, hitches_4x_median, hitches_over_50ms."""
        out: dict[str, dict[str, float]] = {}
        frames = self._frames
        for sec in self._ordered_sections():
            st = sec.stats
            p50, p95 = st.recent_percentiles()
            pacing = st.pacing()
            out[sec.name] = {
                "count": sec.calls,
                "samples": st.n,
                "last_ms": st.last,
                "ema_ms": st.ema,
                "min_ms": st.min if st.n else 0.0,
                "max_ms": st.max if st.n else 0.0,
                "p50_ms": p50,
                "p95_ms": p95,
                "mean_ms": st.mean,
                "total_ms": st.total,
                "ms_per_frame": st.total / frames if frames else 0.0,
                "p99_ms": pacing["p99_ms"],
                "p999_ms": pacing["p999_ms"],
                "hitches_4x_median": pacing["hitches_4x_median"],
                "hitches_over_50ms": pacing["hitches_over_50ms"],
            }
        return out

    def frame_stats(self) -> dict[str, float]:
        """frames, frame_ms p50/p95 (last ``window`` frames), mean/min/max/last/ema (since
        reset), the pacing since reset (frame_ms_p99, frame_ms_p999, hitches_4x_median,
        hitches_over_50ms, fps_1pct_low = 1000 / p99), fps (1000 / mean), cpu_ms_per_frame,
        thread_cpu_ms_per_frame, cpu_percent_at_60fps, cpu_percent (CPU time / wall time),
        wall_s, rss_mb (sampled now) and rss_mb_max (over the samples)."""
        self._sample_rss()
        frames = self._frames
        f = self._frame
        p50, p95 = f.recent_percentiles()
        pacing = f.pacing()
        mean = f.mean
        cpu_per_frame = self._cpu_total_ms / frames if frames else 0.0
        return {
            "frames": frames,
            "frame_ms_p50": p50,
            "frame_ms_p95": p95,
            "frame_ms_mean": mean,
            "frame_ms_min": f.min if frames else 0.0,
            "frame_ms_max": f.max if frames else 0.0,
            "frame_ms_last": f.last,
            "frame_ms_ema": f.ema,
            "frame_ms_p99": pacing["p99_ms"],
            "frame_ms_p999": pacing["p999_ms"],
            "hitches_4x_median": pacing["hitches_4x_median"],
            "hitches_over_50ms": pacing["hitches_over_50ms"],
            "fps_1pct_low": 1000.0 / pacing["p99_ms"] if pacing["p99_ms"] > 0.0 else 0.0,
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
                "frames_in_window": self._frame.filled,
                "histogram_resolution": RESOLUTION,
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
