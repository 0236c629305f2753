"""The visual agents: every per-agent row of the visual trainer, owned in one place.

Row i of the point-mass batch, the policy's batch agent i, trail i and marker i are one agent.
``VisualAgents`` is the only object that adds, removes or resets rows, so the four always agree
and nothing else keeps a count. ``step`` is the visual half of a frame: policy -> physics ->
heights -> trails and markers, then the rows whose episode ended start over.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calf.batch_policy import BatchPolicy
from calf.envs import PointMassBatch
from calf.validation import as_row_indices
from visuals.coords import PlaneMapping
from visuals.heatmap import HeightSource
from visuals.markers import MarkerSet
from visuals.trail_set import TrailSet

# A frame stage: a context manager per section name (profiler section and forward-pass tag).
StageEnter = Callable[[str], AbstractContextManager[Any]]


class VisualAgents:
    """N agents rolling out the current policy on the phase plane, each drawn with its trail."""

    def __init__(
        self,
        env: PointMassBatch,
        policy: BatchPolicy,
        trails: TrailSet,
        markers: MarkerSet,
        mapping: PlaneMapping,
    ) -> None:
        n = len(env)
        if (policy.num_batch_agents, trails.num_agents, markers.num_agents) != (0, 0, 0):
            raise ValueError("VisualAgents takes an empty policy, trail set and marker set")
        self.env = env
        self.policy = policy
        self.trails = trails
        self.markers = markers
        self.mapping = mapping
        self.policy.add_batch_agents(n)
        self.trails.add_agents(n)
        self.markers.set_count(n)

    def __len__(self) -> int:
        return len(self.env)

    @property
    def states(self) -> NDArray[np.float64]:
        """(N, 2) current states, row i being agent i."""
        return self.env.states

    def add(self, n: int) -> None:
        """Append ``n`` agents with fresh start states, certificates and trails."""
        if n < 0:
            raise ValueError(f"cannot add {n} agents")
        self.env.add(n)
        self.policy.add_batch_agents(n)
        self.trails.add_agents(n)
        self.markers.set_count(len(self.env))

    def remove(self, rows: ArrayLike) -> None:
        """Remove agents (indices or a boolean mask); the others keep their order and state."""
        idx = as_row_indices(rows, len(self.env), "agent rows")
        self.env.remove(idx)
        self.policy.remove_batch_agents(idx)
        self.trails.remove_agents(idx)
        self.markers.set_count(len(self.env))

    def reset(self, rows: ArrayLike) -> None:
        """Start these agents over: new start state, no certificate, empty trail."""
        idx = as_row_indices(rows, len(self.env), "agent rows")
        self.env.reset_rows(idx)
        self.policy.reset_batch_agents(idx)
        self.trails.clear(idx)

    def step(self, heights: HeightSource, stage: StageEnter) -> None:
        """One step of every agent: one batched policy call, one physics step, heights under
        the new states, one trail point and a marker each; finished rows start over."""
        with stage("policy"):
            actions, codes = self.policy.select_action_batch_codes(self.env.states)
        with stage("physics"):
            next_states, _, done = self.env.step(actions)
        with stage("heights"):
            h = heights.heights(next_states)
        with stage("trails"):
            positions = self.mapping.to_world(next_states, h)
            self.trails.push(positions, codes)
            self.markers.update(positions, codes)
            if done.any():
                self.reset(np.flatnonzero(done))
