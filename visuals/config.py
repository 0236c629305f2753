"""Visualisation settings: one dataclass, three presets (low, medium, high)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from visuals.trail_lod import TrailLOD

# Panel fields that change (nearly) every frame, shown at most every k frames: at 60 FPS a period
# of 10 still refreshes them 6 times a second, and the panel's text is re-laid out on a few frames
# in ten instead of every frame. Periods of fields that change together are equal so that they
# stay in step and share their rebuilds. Any other field is shown at the next frame after its
# displayed text changes (episode, last reward, success, grid range, agents).
DEFAULT_STATS_PERIODS: MappingProxyType[str, int] = MappingProxyType(
    {
        "step": 10,
        "episode_reward": 10,
        "mode": 10,
        "certified_rate": 10,
        "relax_rate": 10,
        "fallback_rate": 10,
        "p_relax": 10,
        "q_value": 10,
        "q_cert": 10,
        "delta_q": 10,
        "k_bounds": 10,
        "critic_loss": 30,
        "actor_loss": 30,
        "fps": 30,
        "profiler": 60,
    }
)


# Segments all visual agents' trails may draw: llvmpipe's cost grows with them, so beyond this
# the trails thin their older points (level of detail). 20 000 keeps 33 agents at full
# resolution and 1000 agents at 19 of 600 points (measured in the README's sweep).
TRAIL_SEGMENT_BUDGET = 20_000


@dataclass(frozen=True)
class VisualConfig:
    preset: str = "medium"
    n_agents: int = 5
    trail_points: int = 600  # per agent, ring buffer
    trail_decimation: int = 1  # keep every k-th point
    trail_thickness: float = 2.0
    # Trail level of detail (the newest points at full resolution, older ones thinned), chosen
    # when the trails are built: None thins just enough to keep every trail within
    # TRAIL_SEGMENT_BUDGET segments, False never thins, True always does (at least the default
    # schedule).
    trail_lod: bool | None = None
    grid_size: int = 21  # critic surface resolution (G x G)
    heatmap_update_every: int = 500  # training steps between critic-grid refreshes
    height_scale: float = 3.0
    x_range: tuple[float, float] = (-5.0, 5.0)
    v_range: tuple[float, float] = (-5.0, 5.0)
    agent_max_steps: int = 500  # episode length of a visual agent
    timeline_points: int = 300  # Q-certificate timeline length
    marker_size: float = 8.0  # pixels
    # Share of a frame the evaluation stage may spend while an evaluation is due (at least one
    # batched rollout step per frame): 15 % keeps the FPS during evaluations above 80 % of
    # the FPS between them, and 100 rollouts finish in a few hundred frames.
    evaluation_budget: float = 0.15
    stats_periods: MappingProxyType[str, int] = field(default_factory=lambda: DEFAULT_STATS_PERIODS)

    def trail_lod_for(self, n_agents: int) -> TrailLOD | None:
        """The level of detail of ``n_agents`` agents' trails (None: full resolution)."""
        if self.trail_lod is False:
            return None
        lod = TrailLOD.for_budget(self.trail_points, max(n_agents, 1), TRAIL_SEGMENT_BUDGET)
        if lod is None and self.trail_lod:
            return TrailLOD.doubling()
        return lod


PRESETS: dict[str, VisualConfig] = {
    "low": VisualConfig(
        preset="low",
        n_agents=3,
        trail_points=200,
        trail_decimation=2,
        grid_size=15,
        heatmap_update_every=1000,
        timeline_points=150,
    ),
    "medium": VisualConfig(),
    "high": VisualConfig(
        preset="high",
        n_agents=20,
        trail_points=1000,
        grid_size=31,
        heatmap_update_every=250,
        timeline_points=600,
    ),
}


def preset(name: str) -> VisualConfig:
    """The named preset; ValueError listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
