"""Input checks shared by the agents: shapes and finiteness, with errors that name the problem."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_state(state: ArrayLike, state_dim: int, what: str = "state") -> NDArray[np.float64]:
    """One state as a float64 vector of length ``state_dim``; a (1, d) row is accepted too."""
    arr = np.asarray(state, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (state_dim,):
        raise ValueError(f"{what} must have shape ({state_dim},), got {np.shape(state)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or inf: {arr.tolist()}")
    return arr


def as_state_batch(states: ArrayLike, state_dim: int, what: str = "states") -> NDArray[np.float64]:
    """A batch of states as a float64 (N, state_dim) array; N may be 0."""
    arr = np.asarray(states, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, state_dim)
    if arr.ndim != 2 or arr.shape[1] != state_dim:
        raise ValueError(f"{what} must have shape (N, {state_dim}), got {np.shape(states)}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(f"{what} contain NaN or inf in rows [{shown}]")
    return arr
