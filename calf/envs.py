"""Point mass on a line: state [x, v], action = acceleration. One agent or N at once.

Both the gymnasium env (one agent) and ``PointMassBatch`` (the visual agents) integrate with the
same RK4 step over an (N, 2) array, so one agent is simply N = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike, NDArray

from calf.config import EnvConfig
from calf.validation import as_row_indices

Array = NDArray[np.float64]


@dataclass(frozen=True)
class PointMassParams:
    """The point mass's constants; the defaults are the run's (``EnvConfig``, whose help texts
    say what each one means)."""

    dt: float = EnvConfig.dt
    max_action: float = EnvConfig.max_action
    goal_radius: float = EnvConfig.goal_radius
    init_range: float = EnvConfig.init_range
    boundary: float = EnvConfig.boundary
    max_steps: int = EnvConfig.max_steps


def dynamics(states: Array, actions: Array) -> Array:
    """ds/dt = [v, a] for every row."""
    return np.stack([states[:, 1], actions[:, 0]], axis=1)


def rk4_step(states: Array, actions: Array, dt: float) -> Array:
    """One classical Runge-Kutta step for all rows at once (action held over the step)."""
    k1 = dynamics(states, actions)
    k2 = dynamics(states + 0.5 * dt * k1, actions)
    k3 = dynamics(states + 0.5 * dt * k2, actions)
    k4 = dynamics(states + dt * k3, actions)
    return states + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def reward_fn(states: Array, actions: Array) -> Array:
    """-|s| - 0.01 a^2, per row."""
    return -np.linalg.norm(states, axis=1) - 0.01 * np.sum(actions**2, axis=1)


def step_batch(
    states: ArrayLike, actions: ArrayLike, params: PointMassParams
) -> tuple[Array, Array, NDArray[np.bool_], NDArray[np.bool_]]:
    """Advance N point masses: (next_states, rewards, reached_goal, out_of_bounds).

    Actions are clipped to the action bounds; the reward is charged on the state the action
    was taken in.
    """
    s = np.asarray(states, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"states must have shape (N, 2), got {s.shape}")
    raw = np.asarray(actions, dtype=np.float64)
    if raw.size != len(s):
        raise ValueError(f"expected one action per state ({len(s)}), got shape {raw.shape}")
    a = np.clip(raw.reshape(len(s), 1), -params.max_action, params.max_action)
    rewards = reward_fn(s, a)
    nxt = rk4_step(s, a, params.dt)
    reached = np.linalg.norm(nxt, axis=1) < params.goal_radius
    outside = np.any(np.abs(nxt) > params.boundary, axis=1)
    return nxt, rewards, reached, outside


class PointMassEnv(gym.Env):
    """Gymnasium env for one point mass; terminated in the goal radius, truncated at the step
    limit or when the state leaves the boundary box."""

    metadata = {"render_modes": []}

    def __init__(self, params: PointMassParams | None = None, **overrides: Any) -> None:
        base = params or PointMassParams()
        self.params = PointMassParams(**{**base.__dict__, **overrides})
        p = self.params
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(
            -p.max_action, p.max_action, shape=(1,), dtype=np.float32
        )
        self.state = np.zeros(2)
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if options and "state" in options:
            self.state = np.asarray(options["state"], dtype=np.float64).reshape(2).copy()
        else:
            r = self.params.init_range
            self.state = self.np_random.uniform(-r, r, size=2)
        self.steps = 0
        return self.state.astype(np.float32), {}

    def step(
        self, action: ArrayLike
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(1, -1)
        if a.shape != (1, 1) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be one finite number, got {np.asarray(action).tolist()}")
        nxt, rewards, reached, outside = step_batch(self.state[None, :], a, self.params)
        self.state = nxt[0]
        self.steps += 1
        terminated = bool(reached[0])
        truncated = bool(outside[0]) or self.steps >= self.params.max_steps
        return self.state.astype(np.float32), float(rewards[0]), terminated, truncated, {}


class PointMassBatch:
    """N independent point masses stepped together; rows can be added, removed and reset."""

    def __init__(
        self,
        n: int = 0,
        params: PointMassParams | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.params = params or PointMassParams()
        self.rng = rng if rng is not None else np.random.default_rng()
        self.states = np.zeros((0, 2))
        self.steps = np.zeros(0, dtype=np.int64)
        self.add(n)

    def __len__(self) -> int:
        return len(self.states)

    def _draw(self, n: int) -> Array:
        r = self.params.init_range
        return self.rng.uniform(-r, r, size=(n, 2))

    def add(self, n: int) -> None:
        """Append ``n`` rows with fresh start states."""
        self.states = np.concatenate([self.states, self._draw(n)])
        self.steps = np.concatenate([self.steps, np.zeros(n, dtype=np.int64)])

    def remove(self, rows: ArrayLike) -> None:
        """Drop rows (indices or a boolean mask); the rest keep their order."""
        keep = np.ones(len(self), dtype=bool)
        keep[as_row_indices(rows, len(self))] = False
        self.states, self.steps = self.states[keep], self.steps[keep]

    def reset_rows(self, rows: ArrayLike) -> None:
        """New start states for the given rows (indices or a boolean mask)."""
        idx = as_row_indices(rows, len(self))
        self.states[idx] = self._draw(len(idx))
        self.steps[idx] = 0

    def step(self, actions: ArrayLike) -> tuple[Array, Array, NDArray[np.bool_]]:
        """One step for all rows: (next_states, rewards, done). Finished rows are *not* reset
        here, so the caller can still read where they ended; call ``reset_rows(done)``."""
        nxt, rewards, reached, outside = step_batch(self.states, actions, self.params)
        self.states = nxt
        self.steps += 1
        done = reached | outside | (self.steps >= self.params.max_steps)
        return nxt, rewards, done
