"""Phase plane -> world: x along world X, v along world Z, the critic height along world Y."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class PlaneMapping:
    x_range: tuple[float, float] = (-5.0, 5.0)
    v_range: tuple[float, float] = (-5.0, 5.0)
    plane_size: float = 10.0  # world units spanned by each axis

    @property
    def scale(self) -> tuple[float, float]:
        return (
            self.plane_size / (self.x_range[1] - self.x_range[0]),
            self.plane_size / (self.v_range[1] - self.v_range[0]),
        )

    def to_world(self, states: ArrayLike, heights: ArrayLike) -> NDArray[np.float32]:
        """(N, 2) states and (N,) heights -> (N, 3) world positions, centred on the plane."""
        s = np.asarray(states, dtype=np.float64).reshape(-1, 2)
        sx, sz = self.scale
        out = np.empty((len(s), 3), dtype=np.float32)
        out[:, 0] = (s[:, 0] - 0.5 * (self.x_range[0] + self.x_range[1])) * sx
        out[:, 1] = np.asarray(heights, dtype=np.float64).reshape(-1)
        out[:, 2] = (s[:, 1] - 0.5 * (self.v_range[0] + self.v_range[1])) * sz
        return out
