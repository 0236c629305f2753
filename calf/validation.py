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
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(f"{what} contain NaN or inf in rows [{shown}]")
    return arr


def as_row_indices(rows: ArrayLike, n: int, what: str = "rows") -> NDArray[np.intp]:
    """Integer indices (negative ones count from the end) or a boolean mask over ``n`` rows ->
    sorted unique non-negative indices. An empty list selects nothing."""
    arr = np.asarray(rows)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise ValueError(f"{what}: a mask must have shape ({n},), got {arr.shape}")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integer indices or a boolean mask, got dtype {arr.dtype}")
    idx = arr.astype(np.intp).reshape(-1)
    if idx.min() < -n or idx.max() >= n:
        raise ValueError(f"{what}: indices {idx.tolist()} out of range for {n} rows")
    return np.unique(idx % n)
