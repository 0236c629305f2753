"""Work budget: Python work (function calls and lines executed) per stage call, the same at N = 5
and N = 100.

A per-agent Python loop shows as a count that grows with N, on any machine, in one run (its lines,
even when its body calls no function). Each
stage of the frame is called on the same state of the world at both sizes: N = 100 is the N = 5
world tiled 20 times (the same states, certificates, trails and modes row for row), so every
branch a stage takes (an uncertified row falling back, a finished trail) is taken at both sizes.
The work is counted by ``visuals.probe.PythonWork`` (``sys.setprofile`` and ``sys.settrace``).
Each stage's loop reference is counted the same way and must grow, so the budget is shown able to
fail.

    pytest perf/suites/test_stage_calls.py -s      # prints the table
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from calf import PerAgentLoop, PointMassBatch, PointMassParams
from calf.config import RunConfig
from calf.trainer import make_controller
from visuals.config import preset
from visuals.heatmap import CriticHeatmap, LoopHeights
from visuals.line_trails import LineTrailGroup
from visuals.markers import BatchedMarkers, MarkerEntities
from visuals.panel import CachedPanel, ReferencePanel
from visuals.probe import PythonWork
from visuals.trail_lod import TrailLOD
from visuals.trails import BatchedTrailRenderer

SIZES = (5, 100)
BASE = np.random.default_rng(7).uniform(-4.0, 4.0, size=(5, 2))
POINTS = 60  # trail length for the trail stages (their rings wrap: the steady state)
_TABLE: dict[tuple[str, str, int], int] = {}
_DRAWN: list[Any] = []  # layers and texts made here, removed from the shared scene after each test


def count_calls(fn: Callable[[], object]) -> int:
    """Python work (function calls and lines executed) during one call of ``fn``."""
    work = PythonWork()
    work.start()
    try:
        fn()
    finally:
        work.stop()
    return work.total


def world(n: int) -> np.ndarray:
    """The N = 5 states tiled to ``n`` rows."""
    return np.tile(BASE, (n // len(BASE), 1))


def positions(n: int, t: int) -> np.ndarray:
    """Trail and marker positions of step ``t``: the N = 5 ones tiled."""
    base = np.column_stack([BASE[:, 0] + 0.01 * t, np.full(5, 0.1), BASE[:, 1]])
    return np.tile(base, (n // 5, 1)).astype(np.float32)


def modes(n: int, t: int) -> np.ndarray:
    return np.tile((np.arange(5) + t // 7) % 3, n // 5)


# Each builder returns the stage call to count, already warmed up on the same world.
def policy(n: int, reference: bool) -> Callable[[], object]:
    ctrl = make_controller(RunConfig())
    ctrl.set_relax_probability(0.0)  # deployed: no relax draws, every branch deterministic
    stage = PerAgentLoop(ctrl) if reference else ctrl
    s = world(n)
    stage.select_action_batch_codes(s)  # first certificates
    stage.select_action_batch_codes(0.99 * s)
    return lambda: stage.select_action_batch_codes(0.98 * s)


def physics(n: int, reference: bool) -> Callable[[], object]:
    env = PointMassBatch(n, PointMassParams(max_steps=50), rng=np.random.default_rng(0))
    env.states = world(n)
    env.steps = np.tile(np.array([0, 10, 20, 30, 49]), n // 5)  # one row ends its episode
    actions = np.tile(np.linspace(-1.0, 1.0, 5)[:, None], (n // 5, 1))
    env.step(actions)
    env.states, env.steps = world(n), np.tile(np.array([0, 10, 20, 30, 49]), n // 5)
    return lambda: env.step(actions)


def heights(n: int, reference: bool) -> Callable[[], object]:
    ctrl = make_controller(RunConfig())
    heatmap = CriticHeatmap(ctrl.td3)
    stage = LoopHeights(heatmap) if reference else heatmap
    s = world(n)
    stage.heights(s)
    return lambda: stage.heights(s)


def _trails(n: int, reference: bool, lod: TrailLOD | None) -> Callable[[], object]:
    trails = (
        LineTrailGroup(max_points=POINTS)
        if reference
        else BatchedTrailRenderer(max_agents=n, max_points=POINTS, lod=lod)
    )
    _DRAWN.append(trails)
    trails.add_agents(n)
    for t in range(3 * POINTS):  # past the rings' wrap
        trails.push(positions(n, t), modes(n, t))
    pos, m = positions(n, 3 * POINTS), modes(n, 3 * POINTS)
    return lambda: trails.push(pos, m)


def trail_push(n: int, reference: bool) -> Callable[[], object]:
    return _trails(n, reference, None)


def trail_push_lod(n: int, reference: bool) -> Callable[[], object]:
    return _trails(n, reference, TrailLOD.doubling(newest=8, points_per_level=4, levels=3))


def markers(n: int, reference: bool) -> Callable[[], object]:
    stage = MarkerEntities() if reference else BatchedMarkers(n)
    _DRAWN.append(stage)
    stage.set_count(n)
    stage.update(positions(n, 0), modes(n, 0))
    pos, m = positions(n, 1), modes(n, 1)
    return lambda: stage.update(pos, m)


def panel(n: int, reference: bool) -> Callable[[], object]:
    """The panel's only input that follows N is the agent count it shows; shown as the same
    figure at both sizes (a longer number is a longer text to lay out, not per-agent work)."""
    ctrl = make_controller(RunConfig())
    stage = ReferencePanel(ctrl.td3) if reference else CachedPanel(preset("medium"))
    _DRAWN.append(stage.text)
    state, action = BASE[0], np.zeros(1)
    for step in range(12):
        stage.show({"step": step, "agents": 50, "episode": 0}, state, action)
    episodes = itertools.count(1)  # every call shows a new episode: a frame with a layout
    return lambda: stage.show({"step": 12, "agents": 50, "episode": next(episodes)}, state, action)


@dataclass(frozen=True)
class Stage:
    build: Callable[[int, bool], Callable[[], object]]
    has_loop_reference: bool = True


STAGES = {
    "policy": Stage(policy),
    "physics": Stage(physics, has_loop_reference=False),
    "heights": Stage(heights),
    "trail push": Stage(trail_push),
    "trail push (LOD)": Stage(trail_push_lod),
    "markers": Stage(markers),
    "panel": Stage(panel, has_loop_reference=False),  # the panel has no per-agent work at all
}


def calls_at(name: str, n: int, reference: bool = False) -> int:
    stage_call = STAGES[name].build(n, reference)
    stage_call()  # once more outside the count: nothing first-time left in the counted call
    calls = count_calls(stage_call)
    _TABLE[(name, "reference" if reference else "optimised", n)] = calls
    return calls


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    while _DRAWN:
        drawn = _DRAWN.pop()
        if hasattr(drawn, "destroy"):
            drawn.destroy()
        else:  # a Text
            drawn.enabled = False


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    if _TABLE:
        print("\nPython work per stage call: calls + lines (same world tiled; equal at both N)")
        print(f"{'stage':<18} {'path':<10} " + " ".join(f"{'N=' + str(n):>8}" for n in SIZES))
        for name in STAGES:
            for path in ("optimised", "reference"):
                cells = [_TABLE.get((name, path, n)) for n in SIZES]
                if any(c is not None for c in cells):
                    row = " ".join(f"{'-' if c is None else c:>8}" for c in cells)
                    print(f"{name:<18} {path:<10} {row}")


@pytest.mark.parametrize("name", list(STAGES))
def test_python_work_per_stage_call_is_the_same_at_5_and_100_agents(ursina_app, name):
    small, large = (calls_at(name, n) for n in SIZES)
    assert small == large, f"{name}: work {small} at N={SIZES[0]}, {large} at N={SIZES[1]}"


@pytest.mark.parametrize("name", [n for n, s in STAGES.items() if s.has_loop_reference])
def test_each_stage_loop_reference_does_work_that_grows_with_n(ursina_app, name):
    small, large = (calls_at(name, n, reference=True) for n in SIZES)
    assert large - small >= SIZES[1] - SIZES[0], f"{name}: {small} -> {large}"
