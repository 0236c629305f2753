"""Replay buffer: a preallocated float32 numpy ring."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike


class ReplayBuffer:
    """Fixed-capacity ring of transitions (s, a, r, s', done); the oldest are overwritten."""

    def __init__(self, state_dim: int, action_dim: int, capacity: int = 100_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.state = np.zeros((capacity, state_dim), dtype=np.float32)
        self.action = np.zeros((capacity, action_dim), dtype=np.float32)
        self.reward = np.zeros((capacity, 1), dtype=np.float32)
        self.next_state = np.zeros((capacity, state_dim), dtype=np.float32)
        self.not_done = np.zeros((capacity, 1), dtype=np.float32)
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

    def sample(
        self,
        batch_size: int,
        device: str | torch.device = "cpu",
        rng: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """A uniform batch as tensors on ``device``: (s, a, r, s', not_done)."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rng = rng if rng is not None else np.random.default_rng()
        idx = rng.integers(0, self._size, size=batch_size)
        return tuple(
            torch.as_tensor(arr[idx], device=device)
            for arr in (self.state, self.action, self.reward, self.next_state, self.not_done)
        )
