"""VisualAgents: one owner for every per-agent row (env state, policy slot, trail, marker)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from trail_readback import drawn_trails

from calf import CALFController, PointMassBatch, PointMassParams
from calf.batch_policy import PerAgentLoop
from calf.config import RunConfig
from calf.trainer import make_controller
from visuals.agents import VisualAgents
from visuals.coords import PlaneMapping
from visuals.heatmap import CriticHeatmap
from visuals.markers import BatchedMarkers
from visuals.trails import BatchedTrailRenderer

_CREATED: list[VisualAgents] = []


def request_cleanup(agents: VisualAgents) -> None:
    _CREATED.append(agents)


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    while _CREATED:
        drop(_CREATED.pop())


def no_stage(_name: str) -> nullcontext[None]:
    return nullcontext()


def make_agents(n: int, loop: bool = False, seed: int = 0) -> tuple[VisualAgents, CriticHeatmap]:
    ctrl = make_controller(RunConfig(), seed=seed)
    env = PointMassBatch(n, PointMassParams(max_steps=40), rng=np.random.default_rng(seed))
    policy = PerAgentLoop(ctrl) if loop else ctrl
    trails = BatchedTrailRenderer(max_agents=2, max_points=16)
    markers = BatchedMarkers(max_agents=2)
    return VisualAgents(env, policy, trails, markers, PlaneMapping()), CriticHeatmap(ctrl.td3)


def drop(agents: VisualAgents) -> None:
    """Remove the agents' drawn layers from the session's shared scene."""
    agents.trails.destroy()
    agents.markers.destroy()


def rows(agents: VisualAgents) -> list[int]:
    return [
        len(agents.env),
        agents.policy.num_batch_agents,
        agents.trails.num_agents,
        agents.markers.num_agents,
    ]


class AgentRows(RuleBasedStateMachine):
    """Any sequence of adds, removes, resets and steps keeps the four containers in step, and
    the survivors of a removal keep their state and trail."""

    def __init__(self) -> None:
        super().__init__()
        self.agents, self.heatmap = make_agents(3)

    def teardown(self) -> None:
        drop(self.agents)  # the scene is shared by the session's tests

    @rule(n=st.integers(0, 4))
    def add(self, n: int) -> None:
        self.agents.add(n)

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        n = len(self.agents)
        drop = data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n, unique=True))
        if n == 0:
            drop = []
        keep = [i for i in range(n) if i not in drop]
        states = self.agents.states[keep].copy()
        drawn = drawn_trails(self.agents.trails)
        trails = [drawn[i][0] for i in keep]
        self.agents.remove(np.array(drop, dtype=int))
        np.testing.assert_array_equal(self.agents.states, states)
        for (points, _), trail in zip(drawn_trails(self.agents.trails), trails, strict=True):
            np.testing.assert_array_equal(points, trail)

    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        n = len(self.agents)
        if n == 0:
            return
        which = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        self.agents.reset(which)
        drawn = drawn_trails(self.agents.trails)
        for i in which:
            assert len(drawn[i][0]) == 0
            assert self.agents.env.steps[i] == 0
        ctrl = self.agents.policy
        assert isinstance(ctrl, CALFController)
        assert not ctrl.batch.has_cert[which].any()

    @rule()
    def step(self) -> None:
        self.agents.step(self.heatmap, no_stage)

    @invariant()
    def every_container_holds_one_row_per_agent(self) -> None:
        n = len(self.agents)
        assert rows(self.agents) == [n, n, n, n]


def test_any_sequence_of_adds_removes_resets_and_steps_keeps_every_row_in_step(ursina_app):
    run_state_machine_as_test(
        AgentRows, settings=settings(max_examples=15, stateful_step_count=20, deadline=None)
    )


@pytest.mark.parametrize("loop", [False, True], ids=["batched", "loop"])
def test_a_finished_row_starts_over_alone(ursina_app, loop):
    agents, heatmap = make_agents(4, loop=loop)
    request_cleanup(agents)
    for _ in range(3):
        agents.step(heatmap, no_stage)
    agents.env.states[2] = [0.0, 0.0]  # inside the goal radius after one step
    lengths = [len(points) for points, _ in drawn_trails(agents.trails)]
    agents.step(heatmap, no_stage)
    assert agents.env.steps.tolist() == [4, 4, 0, 4]
    assert [len(points) for points, _ in drawn_trails(agents.trails)] == [
        lengths[0] + 1,
        lengths[1] + 1,
        0,
        lengths[3] + 1,
    ]


def test_step_enters_the_four_stages_in_order(ursina_app):
    agents, heatmap = make_agents(2)
    request_cleanup(agents)
    seen: list[str] = []

    def stage(name: str) -> nullcontext[None]:
        seen.append(name)
        return nullcontext()

    agents.step(heatmap, stage)
    assert seen == ["policy", "physics", "heights", "trails"]


def test_bad_rows_and_counts_are_refused(ursina_app):
    agents, _ = make_agents(3)
    request_cleanup(agents)
    with pytest.raises(ValueError, match="cannot add"):
        agents.add(-1)
    with pytest.raises(ValueError, match="out of range"):
        agents.remove([5])
    with pytest.raises(ValueError, match="mask"):
        agents.reset(np.array([True, False]))
    assert rows(agents) == [3, 3, 3, 3]
    agents.remove(np.array([True, False, True]))
    assert rows(agents) == [1, 1, 1, 1]
