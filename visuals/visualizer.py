"""TrainingVisualizer: the 3D scene of the visual trainer, and the drawing half of each frame.

It owns everything drawn (floor, critic surface, agents, trails, timeline, panel) and nothing that
learns. Each optimisation has its loop reference selectable through ``reference``:

- ``interp``: heights by a per-state Python loop instead of vectorised interpolation;
- ``stats``: the panel re-queries the critic and rebuilds its text every frame;
- ``trails``: one ``LineTrail`` per agent (one entity per mode segment) and one sphere per agent.

(``calf``, the per-agent policy loop, is chosen by the app: it is not drawing.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from ursina import Entity, Mesh, Text, camera, color, scene

from calf.modes import Mode
from visuals.config import VisualConfig
from visuals.coords import PlaneMapping
from visuals.heatmap import CriticHeatmap
from visuals.markers import BatchedMarkers, MarkerEntities, mode_marker_colors
from visuals.offscreen import disable_generated_shaders
from visuals.palette import GOAL_COLOR, TRAINING_AGENT_UNCHECKED
from visuals.scene_stats import count_draw_calls
from visuals.stats_cache import ReferenceStatsPanel, StatsCache
from visuals.trails import TRAINING_MODE_COLORS, BatchedTrailRenderer, LineTrailGroup

FLOOR_Y = -0.05  # below the surface's lowest point (height 0)
TIMELINE_GAP = 1.5  # world units between the plane's far edge and the timeline
TIMELINE_SCALE = 0.3  # world y per unit of log(1 + |Q†|)
TIMELINE_HEIGHT = 1.6  # world units from the timeline's baseline to its top
# The training agent's colour per Mode (the trail table plus the unchecked row).
_TRAINING_COLORS = np.vstack([TRAINING_MODE_COLORS, TRAINING_AGENT_UNCHECKED]).astype(np.float32)


def _rgba(c: Iterable[float]) -> Any:
    return color.rgba(*c)


class TrainingVisualizer:
    """Builds the scene once; per frame it is told states, heights and modes and draws them."""

    def __init__(
        self,
        cfg: VisualConfig,
        td3: Any,
        reference: Iterable[str] = (),
        n_agents: int = 0,
    ) -> None:
        self.cfg = cfg
        self.reference = frozenset(reference)
        self.mapping = PlaneMapping(cfg.x_range, cfg.v_range)
        # The timeline's baseline sits above the surface's highest point, so it is never hidden.
        self._timeline_base = cfg.height_scale + 0.3
        self.world = Entity(name="world")

        self.heatmap = CriticHeatmap(
            td3,
            grid_size=cfg.grid_size,
            x_range=cfg.x_range,
            v_range=cfg.v_range,
            height_scale=cfg.height_scale,
            update_frequency=cfg.heatmap_update_every,
            mapping=self.mapping,
        )
        self.heatmap.maybe_refresh(0)  # the first grid, and the step the next refresh counts from
        self.heatmap.draw(parent=self.world)
        self._build_floor()

        if "trails" in self.reference:
            self.trails: Any = LineTrailGroup(
                max_points=cfg.trail_points,
                decimation=cfg.trail_decimation,
                thickness=cfg.trail_thickness,
                parent=self.world,
            )
            self.markers: Any = MarkerEntities(size=cfg.marker_size, parent=self.world)
        else:
            self.trails = BatchedTrailRenderer(
                max_agents=max(n_agents, 1),
                max_points=cfg.trail_points,
                decimation=cfg.trail_decimation,
                thickness=cfg.trail_thickness,
                parent=self.world,
            )
            self.markers = BatchedMarkers(
                max_agents=max(n_agents, 1), size=cfg.marker_size, parent=self.world
            )
        self.add_agents(n_agents)

        # The training agent: its own marker, trail and the certificate timeline.
        # The training agent's colour per mode: the same table its trail uses.
        self._training_colors = {m: _rgba(_TRAINING_COLORS[m]) for m in Mode}
        self._agent_mode = Mode.UNCHECKED
        self.agent_entity = Entity(
            parent=self.world,
            model="sphere",
            scale=0.28,
            color=self._training_colors[Mode.UNCHECKED],
        )
        self.agent_trail = BatchedTrailRenderer(
            max_agents=1,
            max_points=cfg.trail_points,
            mode_colors=_TRAINING_COLORS,
            thickness=cfg.trail_thickness + 1,
            parent=self.world,
        )
        self.agent_trail.add_agents(1)
        self.timeline = BatchedTrailRenderer(
            max_agents=1, max_points=cfg.timeline_points, thickness=2.0, parent=self.world
        )
        self.timeline.add_agents(1)
        self._timeline_step = 0
        self.goal = Entity(parent=self.world, model="sphere", scale=0.22, color=_rgba(GOAL_COLOR))
        self._place_goal()

        # The panel and the FPS counter.
        self.panel = Text(
            "",
            parent=camera.ui,
            position=(-0.87, 0.48),
            scale=0.75,
            origin=(-0.5, 0.5),
        )
        self.fps_text = Text(
            "", parent=camera.ui, position=(0.86, 0.48), origin=(0.5, 0.5), scale=0.9
        )
        self.stats_cache = StatsCache(periods=cfg.stats_periods)
        self.reference_panel = ReferenceStatsPanel(td3) if "stats" in self.reference else None
        self._panel_version = -1

    # ----------------------------------------------------------------- scene
    def _build_floor(self) -> None:
        """Floor grid and the two axes (one line mesh each), a little below the surface's
        lowest point so they never z-fight with it; the Q-certificate timeline's frame."""
        half = self.mapping.plane_size / 2
        y = FLOOR_Y
        ticks = np.linspace(-half, half, 11)
        verts: list[tuple[float, float, float]] = []
        for t in ticks:
            verts += [(t, y, -half), (t, y, half), (-half, y, t), (half, y, t)]
        self.floor = Entity(
            parent=self.world,
            model=Mesh(vertices=verts, mode="line", thickness=1),
            color=color.rgba(0.5, 0.5, 0.55, 0.5),
            name="floor",
        )
        ya = y + 0.01
        axis_verts = [(-half, ya, 0), (half, ya, 0), (0, ya, -half), (0, ya, half)]
        axis_colors = [color.azure, color.azure, color.magenta, color.magenta]
        self.axes = Entity(
            parent=self.world,
            model=Mesh(vertices=axis_verts, colors=axis_colors, mode="line", thickness=2),
            name="axes",
        )
        # The timeline stands behind the plane: a baseline and a vertical scale.
        z, y0 = half + TIMELINE_GAP, self._timeline_base
        top = y0 + TIMELINE_HEIGHT
        frame_verts = [(-half, y0, z), (half, y0, z), (-half, y0, z), (-half, top, z)]
        self.timeline_frame = Entity(
            parent=self.world,
            model=Mesh(vertices=frame_verts, mode="line", thickness=1),
            color=color.rgba(0.7, 0.7, 0.75, 0.6),
            name="timeline_frame",
        )
        self.labels = [
            self._label("x", (half + 0.4, ya, 0), color.azure),
            self._label("v", (0, ya, half + 0.4), color.magenta),
            self._label("log(1 + |Q†|) over time", (-half, top + 0.3, z), color.white, 9),
        ]

    def _label(
        self, text: str, position: tuple[float, float, float], c: Any, scale: float = 12
    ) -> Any:
        label = Text(
            text, parent=self.world, position=position, scale=scale, billboard=True, color=c
        )
        disable_generated_shaders(label)
        return label

    def _place_goal(self) -> None:
        h = self.heatmap.get_q_value_for_states_batch(np.zeros((1, 2)))
        self.goal.position = tuple(self.mapping.to_world(np.zeros((1, 2)), h)[0])

    # ---------------------------------------------------------- per frame
    def heights(self, states: ArrayLike) -> NDArray[np.float64]:
        """Surface heights under the states: vectorised, or the per-state loop reference."""
        if "interp" in self.reference:
            return self.heatmap.get_heights_loop(states)
        return self.heatmap.get_q_value_for_states_batch(states)

    def draw_agents(self, states: ArrayLike, heights: ArrayLike, codes: NDArray[np.int8]) -> None:
        """One new trail point per visual agent, and the markers at the heads."""
        positions = self.mapping.to_world(states, heights)
        self.trails.push(positions, codes)
        self.markers.update(positions, mode_marker_colors(codes))

    def draw_training_agent(
        self, state: ArrayLike, mode: Mode, episode_ended: bool = False
    ) -> None:
        """The training agent's marker and trail; a new episode starts a new trail (no line
        from where the last one ended to the new start)."""
        s = np.asarray(state, dtype=np.float64).reshape(1, 2)
        pos = self.mapping.to_world(s, self.heights(s))
        self.agent_entity.position = tuple(pos[0])
        if mode != self._agent_mode:  # assigning a colour is not free; modes change rarely
            self._agent_mode = mode
            self.agent_entity.color = self._training_colors[mode]
        self.agent_trail.push(pos, np.array([mode], dtype=np.int8))
        if episode_ended:
            self.agent_trail.clear([0])

    def push_timeline(self, q_cert: float | None, mode: Mode) -> None:
        """The certificate value over time, as a sweep behind the plane (clears on wrap)."""
        if q_cert is None:
            return
        n = self.cfg.timeline_points
        if self._timeline_step % n == 0:
            self.timeline.clear([0])
        half = self.mapping.plane_size / 2
        x = -half + self.mapping.plane_size * (self._timeline_step % n) / max(n - 1, 1)
        # log(1 + |q|) keeps early and late critic scales on one fixed axis.
        y = self._timeline_base + min(TIMELINE_SCALE * np.log1p(abs(q_cert)), TIMELINE_HEIGHT)
        self.timeline.push(
            np.array([[x, y, half + TIMELINE_GAP]], dtype=np.float32),
            np.array([mode], dtype=np.int8),
        )
        self._timeline_step += 1

    def refresh_surface(self, step: int) -> bool:
        """Recompute the critic grid every K training steps; move the goal onto the new surface."""
        if self.heatmap.maybe_refresh(step):
            self._place_goal()
            return True
        return False

    def update_stats_display(
        self,
        values: Mapping[str, Any],
        state: ArrayLike | None = None,
        action: ArrayLike | None = None,
    ) -> None:
        """The panel: through the StatsCache (text assigned only when it changed), or the
        reference path (critic query + full rebuild + assignment every frame)."""
        if self.reference_panel is not None:
            self.panel.text = self.reference_panel.render(values, state, action)
            return
        self.stats_cache.update_from(values)
        text = self.stats_cache.render()
        if self.stats_cache.text_version != self._panel_version:
            self._panel_version = self.stats_cache.text_version
            self.panel.text = text

    def set_fps(self, fps: float) -> None:
        self.fps_text.text = f"{fps:5.1f} FPS"

    # ------------------------------------------------------------ agents
    def add_agents(self, n: int) -> None:
        if n <= 0:
            return
        self.trails.add_agents(n)
        self.markers.set_count(self.trails.num_agents)

    def remove_agents(self, ids: ArrayLike) -> None:
        self.trails.remove_agents(ids)
        self.markers.set_count(self.trails.num_agents)

    def clear_trails(self, ids: ArrayLike) -> None:
        self.trails.clear(ids)

    # ------------------------------------------------------------ toggles
    def set_surface_visible(self, visible: bool) -> None:
        self.heatmap.set_surface_visible(visible)

    def set_overlay_visible(self, visible: bool) -> None:
        self.heatmap.set_overlay_visible(visible)

    # ------------------------------------------------------------ counts
    def mesh_updates(self) -> int:
        """Vertex-buffer writes so far, over every dynamic mesh (monotone)."""
        parts = (self.heatmap, self.trails, self.markers, self.agent_trail, self.timeline)
        return int(sum(p.mesh_updates for p in parts))

    def draw_calls(self) -> int:
        """Geoms the renderer draws this frame: the 3D scene plus the UI."""
        return count_draw_calls(scene) + count_draw_calls(camera.ui)
