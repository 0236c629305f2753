"""The Theil-Sen slope: the median of the slopes between every pair of points.

A robust trend for a run's samples: a one-off event (a cache filling, an evaluation's slices, a
burst of machine load) moves a few pairs and not the median, a steady drift moves them all.
Used for the leak slope (traced bytes against frames) and the soak's frame-time slope.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def theil_sen(x: ArrayLike, y: ArrayLike) -> float:
    """The Theil-Sen slope of ``y`` against ``x``; ValueError with fewer than two distinct x."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-D and alike, got {xa.shape} and {ya.shape}")
    i, j = np.triu_indices(len(xa), k=1)
    dx = xa[j] - xa[i]
    keep = dx != 0
    if not keep.any():
        raise ValueError("a slope needs samples at two different x at least")
    return float(np.median((ya[j] - ya[i])[keep] / dx[keep]))
