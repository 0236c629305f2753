"""The trails stage's loop reference (``--reference trails``): one ``LineTrail`` per agent.

``LineTrailGroup`` keeps the upstream behaviour behind the ``TrailSet`` interface
(visuals/trail_set.py), as the reference path the batched renderer (visuals/trails.py) is
measured and tested against: each trail groups its points into runs of equal mode, draws each
run as its own Entity (own mesh, own colour, so one draw call each) and regenerates those meshes
from Python lists every ``rebuild_every`` points.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calf.validation import as_row_indices
from visuals.drawable import Drawable, check_positions_and_modes, check_positive, check_positive_int
from visuals.palette import MODE_COLORS, mode_color_table


class LineTrail(Drawable):
    """One agent's trail, the upstream behaviour: a ring of points and modes, decimation, and one
    Entity per run of equal mode (up to ``max_segments``, the newest runs win), each with its own
    mesh and colour, regenerated from Python lists every ``rebuild_every`` kept points."""

    def __init__(
        self,
        max_points: int = 600,
        decimation: int = 1,
        rebuild_every: int = 1,
        mode_colors: ArrayLike = MODE_COLORS,
        thickness: float = 2.0,
        parent: Any = None,
        max_segments: int = 50,
    ) -> None:
        from ursina import Entity, scene

        self.max_points = check_positive_int("max_points", max_points)
        self.decimation = check_positive_int("decimation", decimation)
        self.rebuild_every = check_positive_int("rebuild_every", rebuild_every)
        self.max_segments = check_positive_int("max_segments", max_segments)
        self.thickness = check_positive("thickness", thickness)
        self.mode_colors = mode_color_table(mode_colors)
        self.entity = Entity(parent=parent if parent is not None else scene)
        self._points: deque[tuple[float, float, float]] = deque(maxlen=self.max_points)
        self._modes: deque[int] = deque(maxlen=self.max_points)
        self._segments: list[Any] = []  # pooled segment entities, surplus ones hidden
        self._pushes = 0  # since creation or clear, for decimation
        self._since_rebuild = 0
        self.mesh_updates = 0  # segment meshes regenerated
        self.bytes_written = 0  # their float32 positions

    def _append(self, position: ArrayLike, mode: int) -> bool:
        keep = self._pushes % self.decimation == 0
        self._pushes += 1
        if not keep:
            return False
        p = np.asarray(position, dtype=np.float32).reshape(-1)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"position must be 3 finite numbers, got {position!r}")
        m = int(mode)
        if m != mode or not 0 <= m < len(self.mode_colors):
            raise ValueError(f"mode must be an integer in [0, {len(self.mode_colors)}), got {mode}")
        self._points.append((float(p[0]), float(p[1]), float(p[2])))
        self._modes.append(m)
        self._since_rebuild += 1
        return True

    def add_point(self, position: ArrayLike, mode: int) -> None:
        """Record one step (kept if it is a multiple of ``decimation``); rebuild when due."""
        if self._append(position, mode) and self._since_rebuild >= self.rebuild_every:
            self.rebuild()

    def extend(self, positions: ArrayLike, modes: ArrayLike) -> None:
        """Many steps at once, (T, 3) and (T,): the same points as T ``add_point`` calls, one
        rebuild at the end (used to fill trails quickly)."""
        pos = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
        m = np.asarray(modes).reshape(-1)
        if len(pos) != len(m):
            raise ValueError(f"{len(pos)} positions but {len(m)} modes")
        kept = False
        for p, mode in zip(pos, m, strict=True):
            kept = self._append(p, int(mode)) or kept
        if kept:
            self.rebuild()

    def clear(self) -> None:
        """Forget every point (episode ended); the next point is kept."""
        self._points.clear()
        self._modes.clear()
        self._pushes = 0
        self.rebuild()

    def _runs(self) -> list[tuple[int, int, int]]:
        """(mode, start, stop) of each run of equal modes, oldest first."""
        modes = np.array(self._modes, dtype=np.int64)
        if modes.size == 0:
            return []
        cuts = np.flatnonzero(np.diff(modes)) + 1
        starts = np.concatenate([[0], cuts])
        stops = np.concatenate([cuts, [modes.size]])
        return [(int(modes[s]), int(s), int(e)) for s, e in zip(starts, stops, strict=True)]

    def rebuild(self) -> None:
        """Regenerate every drawn segment mesh from the point lists (the reference's cost)."""
        from ursina import Entity, Mesh, Vec3, Vec4

        self._since_rebuild = 0
        points = list(self._points)
        runs = self._runs()[-self.max_segments :]
        used = 0
        for mode, start, stop in runs:
            # A run also reaches the first point of the next run, so the trail stays connected.
            verts = [Vec3(*p) for p in points[start : min(stop + 1, len(points))]]
            if len(verts) < 2:
                continue
            color = Vec4(*(float(c) for c in self.mode_colors[mode]))
            if used < len(self._segments):
                seg = self._segments[used]
                seg.model.vertices = verts
                seg.model.generate()
                seg.color = color
                seg.visible = True
            else:
                mesh = Mesh(vertices=verts, mode="line", thickness=self.thickness, static=False)
                seg = Entity(parent=self.entity, model=mesh, color=color)
                self._segments.append(seg)
            self.mesh_updates += 1
            self.bytes_written += 12 * len(verts)
            used += 1
        for seg in self._segments[used:]:
            if seg.visible:
                seg.visible = False

    def _forget(self) -> None:
        self._segments = []


class LineTrailGroup(Drawable):
    """N ``LineTrail`` objects behind the ``TrailSet`` interface: the reference path."""

    def __init__(
        self,
        max_points: int = 600,
        decimation: int = 1,
        mode_colors: ArrayLike = MODE_COLORS,
        thickness: float = 2.0,
        parent: Any = None,
        rebuild_every: int = 1,
    ) -> None:
        from ursina import Entity, scene

        self.max_points = check_positive_int("max_points", max_points)
        self.decimation = check_positive_int("decimation", decimation)
        self.rebuild_every = check_positive_int("rebuild_every", rebuild_every)
        self.thickness = check_positive("thickness", thickness)
        self.mode_colors = mode_color_table(mode_colors)
        self.entity = Entity(parent=parent if parent is not None else scene)
        self.trails: list[LineTrail] = []
        self._retired = (0, 0)  # mesh updates and bytes of removed trails keep counting

    @property
    def num_agents(self) -> int:
        return len(self.trails)

    @property
    def mesh_updates(self) -> int:
        return self._retired[0] + sum(t.mesh_updates for t in self.trails)

    @property
    def bytes_written(self) -> int:
        return self._retired[1] + sum(t.bytes_written for t in self.trails)

    def add_agents(self, n: int) -> None:
        """Append ``n`` empty trails."""
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        for _ in range(int(n)):
            self.trails.append(
                LineTrail(
                    self.max_points,
                    self.decimation,
                    self.rebuild_every,
                    self.mode_colors,
                    self.thickness,
                    parent=self.entity,
                )
            )

    def remove_agents(self, ids: ArrayLike) -> None:
        """Destroy these trails; the others keep their order."""
        drop = set(as_row_indices(ids, self.num_agents, "agent ids").tolist())
        kept = []
        for i, trail in enumerate(self.trails):
            if i in drop:
                updates, written = self._retired
                self._retired = (updates + trail.mesh_updates, written + trail.bytes_written)
                trail.destroy()
            else:
                kept.append(trail)
        self.trails = kept

    def clear(self, ids: ArrayLike) -> None:
        """Empty these trails (episode ended)."""
        for i in as_row_indices(ids, self.num_agents, "agent ids"):
            self.trails[i].clear()

    def push(self, positions: np.ndarray, modes: np.ndarray) -> None:
        """One step for every agent: each trail adds (and maybe rebuilds) on its own."""
        pos, m = check_positions_and_modes(positions, modes, self.num_agents, len(self.mode_colors))
        for trail, p, mode in zip(self.trails, pos, m, strict=True):
            trail.add_point(p, int(mode))

    def extend(self, positions: ArrayLike, modes: ArrayLike) -> None:
        """T steps at once, (T, N, 3) and (T, N): the same trails as T pushes, one rebuild each."""
        pos = np.asarray(positions, dtype=np.float32)
        m = np.asarray(modes)
        if pos.ndim != 3 or pos.shape[1:] != (self.num_agents, 3) or m.shape != pos.shape[:2]:
            raise ValueError(
                f"extend needs (T, {self.num_agents}, 3) positions and (T, {self.num_agents}) "
                f"modes, got {pos.shape} and {m.shape}"
            )
        for i, trail in enumerate(self.trails):
            trail.extend(pos[:, i], m[:, i])

    def _forget(self) -> None:
        self.trails = []
