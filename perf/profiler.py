"""A light per-frame profiler for the visual trainer: named sections, per-frame counters, CPU, RSS.

Imports only the standard library, numpy and psutil, so the visual trainer can import it without
pulling in anything heavy (and ``perf`` never imports ``visuals``).

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
* **CPU** is the process's user + system CPU time over the recorded frames, read with
  ``time.process_time`` (the same quantity as ``psutil.Process().cpu_times()`` user + system, all
  threads, but at nanosecond resolution and ~1 us per call, against ~25 us and 10 ms ticks for
  psutil), sampled at every ``end_frame``. CPU spent between frames counts towards the next frame,
  so ``cpu_ms_per_frame`` is exact: CPU time from the first frame's start to the last frame's end
  divided by the frames. **RSS** (psutil, ~15 us) is sampled every ``rss_every`` frames and whenever
  statistics are read.
* **Disabled** (``enabled = False``, the F2 key): ``section()`` returns one shared no-op context
  manager and every other call returns after one attribute check; nothing is recorded. Disabling
  drops the open frame; re-enabling starts the clocks afresh, so the disabled time counts nowhere.

The profiler is meant for one thread (the app's main loop).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

__all__ = ["PerformanceProfiler"]

F = TypeVar("F", bound=Callable[..., Any])

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
        "idx",
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

    def __init__(self, prof: PerformanceProfiler, name: str, idx: int) -> None:
        self.name = name
        self.idx = idx
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

    __slots__ = ("name", "idx", "acc", "hit", "gauge", "total", "frames_set")

    def __init__(self, name: str, idx: int) -> None:
        self.name = name
        self.idx = idx
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


def atomic_write_text(path: str | os.PathLike[str], write: Callable[[Any], None]) -> Path:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over
    ``path``, so a reader never sees a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


class PerformanceProfiler:
    """Named sections, per-frame counters, frame times, process CPU and RSS; see the module doc."""

    SECTIONS: tuple[str, ...] = (
        "training",
        "policy",
        "physics",
        "heights",
        "trails",
        "heatmap",
        "ui",
        "render",
    )

    # None until the first frame boundary after construction / reset / re-enabling.
    _cpu_prev: float | None
    _last_end: float | None

    def __init__(
        self,
        enabled: bool = True,
        ema_alpha: float = 0.05,
        window: int = 1000,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
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
        self._process = psutil.Process()
        self._enabled = bool(enabled)

        self._sections: dict[str, _Section] = {}
        self._counters: dict[str, _Counter] = {}
        # Sections / counters touched in the open frame: end_frame visits only these.
        self._touched: list[_Section] = []
        self._ctouched: list[_Counter] = []

        # Per-frame ring (the CSV rows and the frame percentiles).
        self._frame_ms = np.zeros(window, dtype=np.float64)
        self._frame_cpu_ms = np.zeros(window, dtype=np.float64)
        self._frame_no = np.zeros(window, dtype=np.int64)
        self._sec_mat = np.zeros((window, 8), dtype=np.float64)
        self._cnt_mat = np.full((window, 4), np.nan, dtype=np.float64)
        for name in self.SECTIONS:
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
        self._wall_total_ms = 0.0
        self._sec_mat.fill(0.0)
        self._cnt_mat.fill(np.nan)
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
        idx = len(self._sections)
        if idx >= self._sec_mat.shape[1]:
            grown = np.zeros((self.window, 2 * self._sec_mat.shape[1]), dtype=np.float64)
            grown[:, :idx] = self._sec_mat
            self._sec_mat = grown
        sec = _Section(self, name, idx)
        self._sections[name] = sec
        return sec

    def _new_counter(self, name: str) -> _Counter:
        if not isinstance(name, str) or not name:
            raise ValueError(f"counter name must be a non-empty string, got {name!r}")
        idx = len(self._counters)
        if idx >= self._cnt_mat.shape[1]:
            grown = np.full((self.window, 2 * self._cnt_mat.shape[1]), np.nan, dtype=np.float64)
            grown[:, :idx] = self._cnt_mat
            self._cnt_mat = grown
        cnt = _Counter(name, idx)
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

    def profile(self, name: str | Callable[..., Any] | None = None) -> Any:
        """Decorator timing every call of the function as section ``name`` (default: the
        function's qualified name). ``@prof.profile("physics")``, ``@prof.profile()`` or
        ``@prof.profile``. The enabled flag is checked at call time."""

        def decorate(fn: F, label: str) -> F:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if not self._enabled:
                    return fn(*args, **kwargs)
                with self.section(label):
                    return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        if callable(name):
            return decorate(name, name.__qualname__)
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"section name must be a non-empty string, got {name!r}")
        return lambda fn: decorate(fn, name or fn.__qualname__)

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
        self._frame_cpu_ms[pos] = cpu_ms
        self._frame_no[pos] = frames - 1
        srow = self._sec_mat[pos]
        srow.fill(0.0)
        alpha = self.ema_alpha
        window = self.window
        touched = self._touched
        if touched:
            for sec in touched:
                ms = sec.acc * 1e3
                srow[sec.idx] = ms
                sec.commit(ms, alpha, window)
                sec.acc = 0.0
                sec.hit = False
            touched.clear()
        crow = self._cnt_mat[pos]
        crow.fill(np.nan)
        ctouched = self._ctouched
        if ctouched:
            for cnt in ctouched:
                value = cnt.acc
                crow[cnt.idx] = value
                cnt.total += value
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

    def summary_line(self) -> str:
        """One short line for the stats panel: frame EMA and p95, fps, CPU, section EMAs (ms)."""
        if not self._enabled:
            return "profiler off"
        if self._frames == 0:
            return "profiler: no frames yet"
        p50, p95 = _percentiles(self._frame_ms[: self._n])
        mean = self._frame_total_ms / self._frames
        parts = [
            f"frame {self._frame_ema_ms:.1f} ms p95 {p95:.1f}",
            f"{1000.0 / mean if mean > 0 else 0.0:.0f} fps",
            f"cpu {self._cpu_total_ms / self._frames:.1f} ms",
        ]
        parts += [f"{s.name} {s.ema:.1f}" for s in self._ordered_sections() if s.samples]
        return " | ".join(parts)

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
        return atomic_write_text(path, lambda fh: fh.write(text + "\n"))

    def csv_columns(self) -> list[str]:
        """The CSV header: frame, frame_ms, cpu_ms, ``<section>_ms`` per section, each counter."""
        return (
            ["frame", "frame_ms", "cpu_ms"]
            + [f"{s}_ms" for s in self._sections]
            + list(self._counters)
        )

    def frame_rows(self) -> Iterable[list[float | int | str]]:
        """The last ``window`` frames, oldest first, in ``csv_columns()`` order. A section absent
        from a frame is 0, a sum counter absent from a frame 0, a gauge not set in a frame ''."""
        n, window = self._n, self.window
        order = (np.arange(self._pos - n, self._pos) % window) if n else np.zeros(0, np.int64)
        n_sec, counters = len(self._sections), list(self._counters.values())
        gauge = [c.gauge for c in counters]
        for i in order:
            row: list[float | int | str] = [
                int(self._frame_no[i]),
                float(self._frame_ms[i]),
                float(self._frame_cpu_ms[i]),
            ]
            row += [float(v) for v in self._sec_mat[i, :n_sec]]
            for c, is_gauge in zip(counters, gauge, strict=True):
                v = float(self._cnt_mat[i, c.idx])
                row.append(("" if is_gauge else 0.0) if math.isnan(v) else v)
            yield row

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per frame in the ring (the last ``window`` frames), atomically."""

        def write(fh: Any) -> None:
            w = csv.writer(fh)
            w.writerow(self.csv_columns())
            w.writerows(self.frame_rows())

        return atomic_write_text(path, write)
