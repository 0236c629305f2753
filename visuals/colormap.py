"""The critic surface's colour map: a few RGB stops, linear in between, as one array operation.

``colormap(values)`` maps values in [0, 1] (values outside are clamped) to RGBA rows; the stops
run low = blue, through cyan, green and yellow, to high = red. ``colormap_reference`` is the
per-value loop it is tested against.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

# (position, r, g, b); positions increase from 0 to 1.
STOPS = np.array(
    [
        [0.00, 0.10, 0.20, 0.85],  # low: blue
        [0.25, 0.10, 0.65, 0.90],  # cyan
        [0.50, 0.20, 0.80, 0.30],  # green
        [0.75, 0.95, 0.85, 0.20],  # yellow
        [1.00, 0.90, 0.15, 0.10],  # high: red
    ],
    dtype=np.float64,
)
LOW_COLOR = STOPS[0, 1:].copy()
HIGH_COLOR = STOPS[-1, 1:].copy()


def colormap(values: ArrayLike, alpha: float = 1.0) -> NDArray[np.float32]:
    """(N,) values -> (N, 4) float32 RGBA; values are clamped to [0, 1]. NaN raises ValueError."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(v).any():
        bad = np.flatnonzero(np.isnan(v))
        raise ValueError(f"colormap values contain NaN at {bad[:10].tolist()}")
    out = np.empty((v.size, 4), dtype=np.float32)
    # np.interp clamps to the end stops, which is the documented behaviour.
    for c in range(3):
        out[:, c] = np.interp(v, STOPS[:, 0], STOPS[:, c + 1])
    out[:, 3] = alpha
    return out


def colormap_reference(value: float, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """One value -> one RGBA tuple, by walking the stops (the loop reference of ``colormap``)."""
    value = float(value)
    if value != value:
        raise ValueError("colormap value is NaN")
    value = min(max(value, 0.0), 1.0)
    for k in range(len(STOPS) - 1):
        p0, p1 = float(STOPS[k, 0]), float(STOPS[k + 1, 0])
        if value <= p1 or k == len(STOPS) - 2:
            t = (value - p0) / (p1 - p0)
            rgb = [
                float(STOPS[k, c]) + t * (float(STOPS[k + 1, c]) - float(STOPS[k, c]))
                for c in (1, 2, 3)
            ]
            return (rgb[0], rgb[1], rgb[2], float(alpha))
    raise AssertionError("unreachable: the last segment always returns")
