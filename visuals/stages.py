"""The stages of one frame, chosen once.

Every optimisation keeps its loop reference behind the same interface, and ``build_stages`` is
the one place that reads the ``--reference`` set:

| stage   | interface      | optimised                          | reference (``--reference``)   |
|---------|----------------|------------------------------------|-------------------------------|
| policy  | BatchPolicy    | CALFController (batched CALF)      | PerAgentLoop (``calf``)       |
| heights | HeightSource   | CriticHeatmap.heights (vectorised) | LoopHeights (``interp``)      |
| trails  | TrailSet       | BatchedTrailRenderer (one Geom;    | LineTrailGroup (``trails``)   |
|         |                | level of detail past a segment     |                               |
|         |                | budget)                            |                               |
| markers | MarkerSet      | BatchedMarkers (one Geom)          | MarkerEntities (``trails``)   |
| panel   | Panel          | CachedPanel (StatsCache)           | ReferencePanel (``stats``)    |

``--algo td3`` gives the policy stage ``ActorOnly`` (the actor alone, no certificate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calf.batch_policy import ActorOnly, BatchPolicy, PerAgentLoop
from calf.controller import CALFController
from visuals.config import VisualConfig
from visuals.heatmap import CriticHeatmap, HeightSource, LoopHeights
from visuals.line_trails import LineTrailGroup
from visuals.markers import BatchedMarkers, MarkerEntities, MarkerSet
from visuals.options import REFERENCE_PATHS
from visuals.panel import CachedPanel, Panel, ReferencePanel
from visuals.trail_set import TrailSet
from visuals.trails import BatchedTrailRenderer

# The profiler sections of one frame, in the order the frame runs them ("render" is what the
# frame spends after its update: Panda3D culling and drawing).
FRAME_SECTIONS = (
    "policy",
    "physics",
    "heights",
    "trails",
    "training",
    "heatmap",
    "outputs",
    "evaluation",
    "ui",
    "render",
)


@dataclass(frozen=True)
class Stages:
    """The chosen implementation of every stage."""

    policy: BatchPolicy
    heights: HeightSource
    trails: TrailSet
    markers: MarkerSet
    panel: Panel


def build_stages(
    cfg: VisualConfig,
    controller: CALFController,
    heatmap: CriticHeatmap,
    algo: str,
    reference: frozenset[str],
    parent: Any,
    n_agents: int,
) -> Stages:
    """Each stage's optimised implementation, or its loop reference where ``reference`` names
    it; drawn stages are created under ``parent``."""
    unknown = reference - set(REFERENCE_PATHS)
    if unknown:
        raise ValueError(f"unknown reference path(s) {sorted(unknown)}; known: {REFERENCE_PATHS}")
    policy: BatchPolicy
    if algo == "td3":
        policy = ActorOnly(controller.td3)
    elif "calf" in reference:
        policy = PerAgentLoop(controller)
    else:
        policy = controller
    trails: TrailSet
    markers: MarkerSet
    if "trails" in reference:
        trails = LineTrailGroup(
            max_points=cfg.trail_points,
            decimation=cfg.trail_decimation,
            thickness=cfg.trail_thickness,
            parent=parent,
        )
        markers = MarkerEntities(size=cfg.marker_size, parent=parent)
    else:
        trails = BatchedTrailRenderer(
            max_agents=max(n_agents, 1),
            max_points=cfg.trail_points,
            decimation=cfg.trail_decimation,
            thickness=cfg.trail_thickness,
            parent=parent,
            lod=cfg.trail_lod_for(n_agents),
        )
        markers = BatchedMarkers(max_agents=max(n_agents, 1), size=cfg.marker_size, parent=parent)
    return Stages(
        policy=policy,
        heights=LoopHeights(heatmap) if "interp" in reference else heatmap,
        trails=trails,
        markers=markers,
        panel=ReferencePanel(controller.td3) if "stats" in reference else CachedPanel(cfg),
    )
