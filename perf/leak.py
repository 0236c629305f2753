"""Retained Python memory per frame: the slope of traced bytes against frames, robustly fitted.

RSS sees native memory and moves in steps of pages and arenas; a leak of a few hundred bytes a
frame hides in it for thousands of frames. ``tracemalloc`` counts the bytes Python holds, to the
byte, so over ~1000 frames a slope of tens of bytes per frame stands out. The fit is Theil-Sen
(the median of all pairwise slopes): a one-off allocation (a cache filling, an episode's list
growing once) moves a few pairs and not the median.
"""

from __future__ import annotations

from collections.abc import Sequence

from perf.trend import theil_sen

LEAK_LIMIT_BYTES_PER_FRAME = 64.0
SETTLE_FRAMES = 100  # just after tracing starts, objects allocated then stay (caches refill)


def leak_slope(traced: Sequence[tuple[int, int]], settle: int = 0) -> float:
    """Bytes per frame retained, from (frame, traced bytes) samples (Theil-Sen slope), leaving
    out the samples of the first ``settle`` frames."""
    if traced:
        start = traced[0][0] + settle
        traced = [t for t in traced if t[0] >= start]
    if len(traced) < 3:
        raise ValueError(f"need at least 3 traced-memory samples, got {len(traced)}")
    frames, traced_bytes = zip(*traced, strict=True)
    try:
        return theil_sen(frames, traced_bytes)
    except ValueError:
        raise ValueError("traced-memory samples all come from one frame") from None
