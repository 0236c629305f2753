"""build_stages: each stage's optimised implementation, or its loop reference where named."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calf.batch_policy import ActorOnly, PerAgentLoop
from calf.config import RunConfig
from calf.trainer import make_controller
from visuals.config import TRAIL_SEGMENT_BUDGET, preset
from visuals.heatmap import CriticHeatmap, LoopHeights
from visuals.line_trails import LineTrailGroup
from visuals.markers import BatchedMarkers, MarkerEntities
from visuals.panel import CachedPanel, ReferencePanel
from visuals.stages import build_stages
from visuals.trail_lod import SlotLayout
from visuals.trails import BatchedTrailRenderer

_BUILT = []


@pytest.fixture(autouse=True)
def _cleanup():
    """Remove the drawn stages from the session's shared scene after each test."""
    yield
    while _BUILT:
        stages = _BUILT.pop()
        stages.trails.destroy()
        stages.markers.destroy()
        stages.panel.text.enabled = False


def build(*args):
    stages = build_stages(*args)
    _BUILT.append(stages)
    return stages


def stages_for(reference: frozenset[str], algo: str = "calf"):
    ctrl = make_controller(RunConfig())
    heatmap = CriticHeatmap(ctrl.td3)
    return ctrl, heatmap, build(preset("low"), ctrl, heatmap, algo, reference, None, 2)


def kinds(stages) -> tuple[type, ...]:
    s = stages
    return tuple(type(x) for x in (s.policy, s.heights, s.trails, s.markers, s.panel))


def test_no_reference_gives_every_optimised_stage(ursina_app):
    ctrl, heatmap, stages = stages_for(frozenset())
    assert stages.policy is ctrl and stages.heights is heatmap
    assert kinds(stages)[2:] == (BatchedTrailRenderer, BatchedMarkers, CachedPanel)


@pytest.mark.parametrize(
    "name, position, kind",
    [
        ("calf", 0, PerAgentLoop),
        ("interp", 1, LoopHeights),
        ("trails", 2, LineTrailGroup),
        ("trails", 3, MarkerEntities),
        ("stats", 4, ReferencePanel),
    ],
)
def test_each_reference_name_swaps_exactly_its_stages(ursina_app, name, position, kind):
    _, _, optimised = stages_for(frozenset())
    _, _, swapped = stages_for(frozenset({name}))
    assert kinds(swapped)[position] is kind
    pairs = zip(kinds(optimised), kinds(swapped), strict=True)
    changed = [i for i, (a, b) in enumerate(pairs) if a is not b]
    assert position in changed and len(changed) == (2 if name == "trails" else 1)


@pytest.mark.parametrize(
    "n, setting, lod",
    [(5, None, False), (33, None, False), (34, None, True), (5, True, True), (500, False, False)],
)
def test_trail_level_of_detail_follows_the_preset_or_the_segment_budget(
    ursina_app, n, setting, lod
):
    ctrl = make_controller(RunConfig())
    cfg = replace(preset("medium"), trail_lod=setting)  # 600-point trails
    stages = build(cfg, ctrl, CriticHeatmap(ctrl.td3), "calf", frozenset(), None, n)
    assert isinstance(stages.trails, BatchedTrailRenderer)
    assert (stages.trails.lod is not None) == lod
    if setting is None:  # automatic: within the budget, or full resolution when that fits
        assert n * stages.trails.slots_per_agent <= max(TRAIL_SEGMENT_BUDGET, n * 600 * (not lod))


@pytest.mark.parametrize("n", [34, 100, 300, 1000, 5000])
def test_the_automatic_level_of_detail_keeps_every_trail_within_the_segment_budget(ursina_app, n):
    lod = preset("medium").trail_lod_for(n)
    assert lod is not None
    slots = SlotLayout(600, lod).slots
    assert n * slots <= TRAIL_SEGMENT_BUDGET or n * 19 > TRAIL_SEGMENT_BUDGET  # the coarsest


def test_td3_algo_acts_with_the_actor_alone(ursina_app):
    _, _, stages = stages_for(frozenset({"calf"}), algo="td3")
    assert isinstance(stages.policy, ActorOnly)


def test_an_unknown_reference_name_is_refused(ursina_app):
    with pytest.raises(ValueError, match="unknown reference"):
        stages_for(frozenset({"warp"}))  # refused before anything is drawn
