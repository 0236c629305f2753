"""What every drawn layer does the same way: show/hide and teardown act on its root entity, and
its inputs are checked by the same rules."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def check_positive(name: str, value: float) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is finite and > 0."""
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: int) -> int:
    """``value`` as an int; ValueError naming ``name`` unless it is an integer >= 1."""
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positions_and_modes(
    positions: ArrayLike, modes: ArrayLike, n_agents: int, n_modes: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """One step of N agents: finite (n_agents, 3) float32 positions and (n_agents,) int64 mode
    codes in [0, n_modes)."""
    pos = np.asarray(positions, dtype=np.float32)
    if pos.shape != (n_agents, 3):
        raise ValueError(f"positions must have shape ({n_agents}, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or inf")
    m = np.asarray(modes)
    if m.shape != (n_agents,):
        raise ValueError(f"modes must have shape ({n_agents},), got {m.shape}")
    if m.size and not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"modes must be integer mode codes, got dtype {m.dtype}")
    m = m.astype(np.int64, copy=False)
    if m.size and (m.min() < 0 or m.max() >= n_modes):
        raise ValueError(f"mode codes must lie in [0, {n_modes}), got {m.min()}..{m.max()}")
    return pos, m


class Drawable:
    """A layer drawn under one root ``entity`` (an Ursina Entity)."""

    entity: Any

    def set_visible(self, visible: bool) -> None:
        if visible:
            self.entity.show()
        else:
            self.entity.hide()

    def destroy(self) -> None:
        """Remove the layer from the scene, then drop what it held (``_forget``)."""
        from ursina import destroy

        destroy(self.entity)
        self._forget()

    def _forget(self) -> None:
        """Release references to drawn objects after ``destroy``; layers override it."""
