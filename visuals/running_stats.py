"""Running statistics of one series of samples (milliseconds), in fixed memory: what the
profiler keeps for every section and for the frame.

- ``count``, ``total``, ``min``, ``max``, the EMA (``ema = x`` first, then
  ``ema += alpha * (x - ema)``): since reset, exact;
- the last ``window`` samples in a ring: p50 and p95 of the recent frames (numpy's linear
  interpolation), exact;
- a log-bucketed histogram of every sample since reset (``LogHistogram``): the tail that a
  median hides (p99, p99.9), hitches (samples over 4x the median), the "1 % low" frame rate,
  over a run of any length; percentiles to within half a bucket (``RESOLUTION``);
- ``over_50ms``: samples over 50 ms, exact (a frame a person sees stutter at any frame rate).

Frame-pacing vocabulary after PresentMon / CapFrameX: "1 % low" FPS is 1000 / p99 frame time.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

RESOLUTION = 0.01  # histogram buckets are 1 % wide: percentiles to within ~0.5 %
LOWEST_MS = 1e-4  # the first bucket's lower edge (0.1 us); smaller samples land in it
BUCKETS = 2400  # up to 1e-4 * 1.01**2400 ms: about 2.3e6 s, far past any frame
HITCH_FACTOR = 4.0  # a hitch: a sample over 4x the median of its series
HITCH_MS = 50.0  # ... or over 50 ms, whatever the median
_LOG_STEP = math.log1p(RESOLUTION)
_LOG_LOWEST = math.log(LOWEST_MS)


class LogHistogram:
    """Counts of samples in buckets whose edges grow by ``RESOLUTION`` each."""

    __slots__ = ("counts", "n")

    def __init__(self) -> None:
        # A list, not an array: adding a sample happens every frame for every section, and a
        # list item += 1 is ~8x cheaper than a numpy scalar one; reads are rare.
        self.counts = [0] * BUCKETS
        self.n = 0

    def clear(self) -> None:
        self.counts = [0] * BUCKETS
        self.n = 0

    def add(self, ms: float) -> None:
        i = int((math.log(ms) - _LOG_LOWEST) / _LOG_STEP) if ms > LOWEST_MS else 0
        self.counts[i if i < BUCKETS else BUCKETS - 1] += 1
        self.n += 1

    @staticmethod
    def _centre(i: NDArray[np.int64] | int) -> NDArray[np.float64]:
        """The geometric centre of bucket ``i`` (ms)."""
        return np.asarray(LOWEST_MS * np.exp((np.asarray(i) + 0.5) * _LOG_STEP))

    def percentiles(self, qs: tuple[float, ...]) -> list[float]:
        """The q-th percentiles (0-100) of the samples, each the centre of the bucket holding
        the sample at that rank (0.0 with no samples)."""
        if self.n == 0:
            return [0.0 for _ in qs]
        cum = np.cumsum(np.asarray(self.counts))
        ranks = np.ceil(np.asarray(qs) / 100.0 * self.n).clip(1, self.n)
        return [float(v) for v in self._centre(np.searchsorted(cum, ranks))]

    def count_over(self, ms: float) -> int:
        """Samples in buckets that lie wholly above ``ms``."""
        if ms <= LOWEST_MS:
            return self.n
        first = int((math.log(ms) - _LOG_LOWEST) / _LOG_STEP) + 1
        return sum(self.counts[first:]) if first < BUCKETS else 0


class RunningStats:
    """One series' statistics (module docstring)."""

    __slots__ = ("window", "alpha", "n", "total", "last", "ema", "min", "max", "ring", "pos",
                 "filled", "hist", "over_50ms")  # fmt: skip

    def __init__(self, window: int, alpha: float) -> None:
        self.window = window
        self.alpha = alpha
        self.ring = np.zeros(window, dtype=np.float64)
        self.hist = LogHistogram()
        self.clear()

    def clear(self) -> None:
        self.n = 0
        self.total = 0.0
        self.last = 0.0
        self.ema = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.pos = 0
        self.filled = 0
        self.over_50ms = 0
        self.hist.clear()

    def add(self, ms: float) -> None:
        """One sample."""
        self.n += 1
        self.last = ms
        self.total += ms
        if ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms
        if self.n == 1:
            self.ema = ms
        else:
            self.ema += self.alpha * (ms - self.ema)
        pos = self.pos
        self.ring[pos] = ms
        pos += 1
        self.pos = 0 if pos == self.window else pos
        if self.filled < self.window:
            self.filled += 1
        # LogHistogram.add, inlined: this runs for the frame and every section, every frame.
        hist = self.hist
        i = int((math.log(ms) - _LOG_LOWEST) / _LOG_STEP) if ms > LOWEST_MS else 0
        hist.counts[i if i < BUCKETS else BUCKETS - 1] += 1
        hist.n += 1
        if ms > HITCH_MS:
            self.over_50ms += 1

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def recent_percentiles(self) -> tuple[float, float]:
        """p50 and p95 of the last ``window`` samples (0.0 with none)."""
        if self.filled == 0:
            return 0.0, 0.0
        p50, p95 = np.percentile(self.ring[: self.filled], [50.0, 95.0])
        return float(p50), float(p95)

    def pacing(self) -> dict[str, float]:
        """The distribution since reset: p50, p99, p99.9 (histogram), max (exact), hitches
        over 4x the median and over 50 ms."""
        p50, p99, p999 = self.hist.percentiles((50.0, 99.0, 99.9))
        return {
            "p50_ms": p50,
            "p99_ms": p99,
            "p999_ms": p999,
            "max_ms": self.max if self.n else 0.0,
            "hitches_4x_median": float(self.hist.count_over(HITCH_FACTOR * p50)) if self.n else 0.0,
            "hitches_over_50ms": float(self.over_50ms),
        }
