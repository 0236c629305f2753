"""Replay buffer: a preallocated float32 numpy ring, one interleaved row per transition."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

FIELDS = ("state", "action", "reward", "next_state", "not_done")


class ReplayBuffer:
    """Fixed-capacity ring of transitions (s, a, r, s', done); the oldest are overwritten.

    Storage is one ``(capacity, width)`` float32 array, a transition per row laid out as
    ``columns`` says (s | a | r | s' | not_done); ``state``, ``action``, ... are column views of
    it. One row per transition makes a sampled batch one gather (``sample_into``)."""

    def __init__(self, state_dim: int, action_dim: int, capacity: int = 100_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if state_dim <= 0 or action_dim <= 0:
            raise ValueError(f"state_dim and action_dim must be positive: {state_dim, action_dim}")
        self.capacity = int(capacity)
        widths = dict(zip(FIELDS, (state_dim, action_dim, 1, state_dim, 1), strict=True))
        self.columns: dict[str, slice] = {}
        start = 0
        for name, width in widths.items():
            self.columns[name] = slice(start, start + width)
            start += width
        self.width = start
        self._data = np.zeros((capacity, self.width), dtype=np.float32)
        self.state = self._data[:, self.columns["state"]]
        self.action = self._data[:, self.columns["action"]]
        self.reward = self._data[:, self.columns["reward"]]
        self.next_state = self._data[:, self.columns["next_state"]]
        self.not_done = self._data[:, self.columns["not_done"]]
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(
        self,
        state: ArrayLike,
        action: ArrayLike,
        reward: float,
        next_state: ArrayLike,
        done: bool,
    ) -> None:
        """Store one transition; ``done`` means terminated (not truncated): no bootstrapping."""
        i = self._next
        self.state[i] = state
        self.action[i] = action
        self.reward[i] = reward
        self.next_state[i] = next_state
        self.not_done[i] = 0.0 if done else 1.0
        self._next = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def add_batch(
        self,
        states: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_states: ArrayLike,
        dones: ArrayLike,
    ) -> None:
        """Store n transitions at once, oldest first: the same buffer as n ``add`` calls."""
        s = np.asarray(states, dtype=np.float32)
        n = len(s)
        if n == 0:
            return
        rows = (self._next + np.arange(n)) % self.capacity
        keep = slice(max(n - self.capacity, 0), n)  # more than fits: the newest win
        rows = rows[keep]
        self.state[rows] = s[keep]
        self.action[rows] = np.asarray(actions, dtype=np.float32).reshape(n, -1)[keep]
        self.reward[rows] = np.asarray(rewards, dtype=np.float32).reshape(n, 1)[keep]
        self.next_state[rows] = np.asarray(next_states, dtype=np.float32)[keep]
        self.not_done[rows] = 1.0 - np.asarray(dones, dtype=np.float32).reshape(n, 1)[keep]
        self._next = int((self._next + n) % self.capacity)
        self._size = min(self._size + n, self.capacity)

    def sample(
        self,
        batch_size: int,
        device: str | torch.device = "cpu",
        rng: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """A uniform batch as tensors on ``device``: (s, a, r, s', not_done)."""
        idx = self._indices(batch_size, rng)
        return tuple(
            torch.as_tensor(arr[idx], device=device)
            for arr in (self.state, self.action, self.reward, self.next_state, self.not_done)
        )

    def sample_into(self, out: np.ndarray, rng: np.random.Generator | None = None) -> None:
        """A uniform batch of ``len(out)`` whole rows gathered into ``out`` (a C-contiguous
        float32 ``(B, width)`` array, reused across calls): the same draw from ``rng`` as
        ``sample(B, rng=rng)``, the same transitions, one gather instead of five."""
        if not (
            isinstance(out, np.ndarray)
            and out.dtype == np.float32
            and out.ndim == 2
            and out.shape[1] == self.width
            and out.flags.c_contiguous
            and out.flags.writeable
        ):
            raise ValueError(
                f"out must be a writeable C-contiguous float32 array of shape (B, {self.width})"
            )
        idx = self._indices(len(out), rng)
        # Indices are in range by construction: 'clip' skips numpy's bounds check and buffer.
        np.take(self._data, idx, axis=0, out=out, mode="clip")

    def _indices(self, batch_size: int, rng: np.random.Generator | None) -> np.ndarray:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rng = rng if rng is not None else np.random.default_rng()
        return rng.integers(0, self._size, size=batch_size)
