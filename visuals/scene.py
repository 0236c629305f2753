"""The fixed part of the 3D scene and the training agent's drawing.

``Scene`` builds the floor, the axes, the critic surface (``CriticHeatmap``), the goal and the
Q-certificate timeline once, and each frame draws the training agent (its marker and trail), one
timeline point and, every K training steps, the refreshed surface. The visual agents' trails and
markers belong to ``VisualAgents``; the panel to the panel stage (see ``visuals.stages``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from ursina import Entity, Mesh, Text, color

from calf.modes import Mode
from visuals.config import VisualConfig
from visuals.heatmap import CriticHeatmap
from visuals.offscreen import disable_generated_shaders
from visuals.palette import GOAL_COLOR, TRAINING_MODE_COLORS
from visuals.trails import BatchedTrailRenderer

FLOOR_Y = -0.05  # below the surface's lowest point (height 0)
TIMELINE_GAP = 1.5  # world units between the plane's far edge and the timeline
TIMELINE_SCALE = 0.3  # world y per unit of log(1 + |Q†|)
TIMELINE_HEIGHT = 1.6  # world units from the timeline's baseline to its top


def _rgba(c: Iterable[float]) -> Any:
    return color.rgba(*c)


class Scene:
    """The scene built once: floor, surface, goal, timeline, the training agent's marker and
    trail. ``world`` is the root every drawn layer hangs under."""

    def __init__(self, cfg: VisualConfig, heatmap: CriticHeatmap) -> None:
        self.cfg = cfg
        self.heatmap = heatmap
        self.mapping = heatmap.mapping
        # The timeline's baseline sits above the surface's highest point, so it is never hidden.
        self._timeline_base = cfg.height_scale + 0.3
        self.world = Entity(name="world")
        heatmap.maybe_refresh(0)  # the first grid, and the step the next refresh counts from
        heatmap.draw(parent=self.world)
        self._build_floor()

        self._training_colors = {m: _rgba(TRAINING_MODE_COLORS[m]) for m in Mode}
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
            mode_colors=TRAINING_MODE_COLORS,
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
        h = self.heatmap.heights(np.zeros((1, 2)))
        self.goal.position = tuple(self.mapping.to_world(np.zeros((1, 2)), h)[0])

    # ---------------------------------------------------------- per frame

    def draw_training_agent(
        self, state: ArrayLike, mode: Mode, episode_ended: bool = False
    ) -> None:
        """The training agent's marker and trail; a new episode starts a new trail (no line
        from where the last one ended to the new start)."""
        s = np.asarray(state, dtype=np.float64).reshape(1, 2)
        pos = self.mapping.to_world(s, self.heatmap.heights(s))
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

    # ------------------------------------------------------------ toggles
    def set_surface_visible(self, visible: bool) -> None:
        self.heatmap.set_surface_visible(visible)

    def set_overlay_visible(self, visible: bool) -> None:
        self.heatmap.set_overlay_visible(visible)

    def layers(self) -> dict[str, Any]:
        """The scene's dynamic meshes by name (their vertex-buffer writes are counted)."""
        return {"surface": self.heatmap, "agent_trail": self.agent_trail, "timeline": self.timeline}
