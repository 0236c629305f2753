"""Agent trails: the per-agent reference (``LineTrail``) and every trail in one mesh.

Two implementations of one interface (``TrailSet``) so the visual trainer can swap them
(``--reference trails``):

- ``LineTrailGroup``: one ``LineTrail`` per agent, the seed behaviour kept as the reference path
  and the test oracle. Each trail groups its points into runs of equal mode, draws each run as its
  own Entity (own mesh, own colour, so one draw call each) and regenerates those meshes from
  Python lists every ``rebuild_every`` points.
- ``BatchedTrailRenderer``: one Geom for all agents, one draw call for any N. Agent ``a`` owns
  the vertex rows ``a*S .. a*S+S-1`` and the segment rows ``a*S .. a*S+S-1`` of one indexed
  ``GeomLines``, where ``S`` is the slot count of its ``SlotLayout`` (visuals/trail_lod.py): at
  full resolution (``lod=None``) a ring of ``S = P = max_points`` slots, with a ``TrailLOD`` a few
  small per-class rings holding only the drawn points (older points thinned at strides 2, 4, 8...;
  102 slots instead of 600 for ``TrailLOD.doubling()``), so the segments llvmpipe sets up shrink
  with the vertices. Slot ``i`` owns segment row ``i``: from its point to the next newer drawn
  point, or degenerate (both indices equal, zero length, draws nothing), in particular for the
  newest point and for free slots. A push writes, vectorised over agents, the new vertex of every
  agent that keeps a point (position and mode colour, one interleaved row, never moved or
  rewritten afterwards) and a few segment rows per such agent (the new point's and its
  predecessor's, plus those of points leaving a level of detail), directly into the Panda3D
  buffers through numpy views over their memory: no mesh regeneration, no per-agent or per-point
  Python loop. Per-vertex colours carry the modes, so mode switches cost nothing.

Buffer-write accounting (``mesh_updates``): +1 each time the vertex array (positions and colours
interleaved in ONE ``GeomVertexArrayData``, so one upload) is modified: once per push that keeps
at least one point, once per add/remove of agents. Index-array writes are counted apart in
``index_updates`` (at most one per push as well). ``clear`` only rewrites indices.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calf.validation import as_row_indices
from visuals.drawable import Drawable, check_positions_and_modes, check_positive, check_positive_int
from visuals.palette import MODE_COLORS, mode_color_table
from visuals.trail_lod import SlotLayout, TrailLOD
from visuals.vertex_buffer import (
    VERTEX_DTYPE,
    colors_to_uint8,
    counted,
    make_geom_node,
    vertex_view,
)


@runtime_checkable
class TrailSet(Protocol):
    """What the visual trainer needs from a set of trails (both implementations satisfy it).
    ``mesh_updates`` counts vertex-buffer uploads and ``bytes_written`` their bytes (monotone)."""

    entity: Any

    @property
    def num_agents(self) -> int: ...
    @property
    def mesh_updates(self) -> int: ...
    @property
    def bytes_written(self) -> int: ...

    def add_agents(self, n: int) -> None: ...
    def remove_agents(self, ids: ArrayLike) -> None: ...
    def clear(self, ids: ArrayLike) -> None: ...
    def push(self, positions: np.ndarray, modes: np.ndarray) -> None: ...
    def polyline(self, agent: int) -> tuple[np.ndarray, np.ndarray]: ...
    def set_visible(self, visible: bool) -> None: ...
    def destroy(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Reference: one LineTrail per agent
# --------------------------------------------------------------------------------------------


class LineTrail(Drawable):
    """One agent's trail, the seed behaviour: a ring of points and modes, decimation, and one
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

    @property
    def points(self) -> NDArray[np.float32]:
        """Kept points, oldest first, (k, 3) float32."""
        return np.array(self._points, dtype=np.float32).reshape(-1, 3)

    @property
    def modes(self) -> NDArray[np.int64]:
        """Mode codes of the kept points, oldest first, (k,)."""
        return np.array(self._modes, dtype=np.int64)

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

    def polyline(self, agent: int) -> tuple[np.ndarray, np.ndarray]:
        trail = self.trails[agent]
        return trail.points, trail.modes

    def _forget(self) -> None:
        self.trails = []


# --------------------------------------------------------------------------------------------
# Batched: every trail in one Geom
# --------------------------------------------------------------------------------------------


class BatchedTrailRenderer(Drawable):
    """Every agent's trail in one Geom (one draw call); in-place, vectorised slot updates.

    ``max_points`` is every trail's length in kept points; ``lod`` thins their older parts
    (``None``: every point is drawn)."""

    def __init__(
        self,
        max_agents: int,
        max_points: int,
        decimation: int = 1,
        mode_colors: ArrayLike = MODE_COLORS,
        thickness: float = 2.0,
        parent: Any = None,
        lod: TrailLOD | None = None,
    ) -> None:
        from panda3d.core import ColorAttrib, Geom, GeomLines, GeomVertexArrayData
        from ursina import Entity, scene

        if int(max_agents) != max_agents or max_agents < 0:
            raise ValueError(f"max_agents must be a non-negative integer, got {max_agents!r}")
        if lod is not None and not isinstance(lod, TrailLOD):
            raise ValueError(f"lod must be a TrailLOD or None, got {lod!r}")
        self.max_points = check_positive_int("max_points", max_points)
        self.decimation = check_positive_int("decimation", decimation)
        self.thickness = check_positive("thickness", thickness)
        self.mode_colors = mode_color_table(mode_colors)
        self._lut = colors_to_uint8(self.mode_colors)
        self._lut_words = self._lut.view(np.uint32).reshape(-1)  # RGBA bytes as one word
        self.lod = lod
        self.layout = SlotLayout(self.max_points, lod)
        self.slots_per_agent = self.layout.slots  # vertex rows and segment rows per agent
        self.capacity = max(int(max_agents), 1)
        self.num_agents = 0
        self.mesh_updates = 0  # vertex-array writes (uploads)
        self.index_updates = 0  # index-array writes
        self.bytes_written = 0  # bytes written into the vertex and index arrays (counted views)
        cap, S = self.capacity, self.slots_per_agent
        self._kept = np.zeros(cap, dtype=np.int64)  # kept pushes since add/clear: next point's seq
        self._pushes = np.zeros(cap, dtype=np.int64)  # pushes since add/clear (decimation)
        self._modes = np.zeros((cap, S), dtype=np.int8)  # mode of the point in each slot

        prim = GeomLines(Geom.UH_dynamic)
        prim.set_index_type(Geom.NT_uint32)
        self.entity = Entity(parent=parent if parent is not None else scene)
        node, self._vdata, self._prim = make_geom_node("batched_trails", prim, 0)
        self._vdata.reserve_num_rows(cap * S)
        self._prim.modify_vertices().reserve_num_rows(2 * cap * S)
        fmt = self._prim.get_vertices().get_array_format()
        self._no_minmax = GeomVertexArrayData(fmt, Geom.UH_static)
        self.node = self.entity.attach_new_node(node)
        # Vertex colours win over any flat colour an ancestor sets.
        self.node.set_attrib(ColorAttrib.make_vertex(), 1)
        self.node.set_render_mode_thickness(self.thickness)
        self.node.set_light_off(1)

    # -- buffer access ---------------------------------------------------------------------

    def _index_view(self) -> Any:
        """Writable (segments, 2) counted view over the index array; marks it modified."""
        return counted(self._prim.modify_vertices(), np.uint32, self).reshape(-1, 2)

    def _segment_words(self) -> Any:
        """The index array with one uint64 word per segment (its two uint32 indices)."""
        return counted(self._prim.modify_vertices(), np.uint64, self)

    def _indices_written(self) -> None:
        self.index_updates += 1
        rows = self.num_agents * self.slots_per_agent
        if rows:
            # Every index lies in [0, rows): tell Panda3D so instead of letting it rescan all
            # 2*N*S indices before the next draw (the per-strip mins/maxs only matter for strip
            # primitives, hence the empty arrays).
            self._prim.set_minmax(0, rows - 1, self._no_minmax, self._no_minmax)

    def _degenerate_segments(self, agents: NDArray[np.int64]) -> NDArray[np.uint32]:
        """(len(agents) * S, 2) index rows that make every segment of these agents empty."""
        S = self.slots_per_agent
        rows = (agents[:, None] * S + np.arange(S)).reshape(-1)
        return np.repeat(rows.astype(np.uint32)[:, None], 2, axis=1)

    def _grow(self, need: int) -> None:
        new_cap = max(need, 2 * self.capacity)
        for name in ("_kept", "_pushes", "_modes"):
            old = getattr(self, name)
            grown = np.zeros((new_cap, *old.shape[1:]), dtype=old.dtype)
            grown[: len(old)] = old
            setattr(self, name, grown)
        self.capacity = new_cap
        self._vdata.reserve_num_rows(new_cap * self.slots_per_agent)
        self._prim.modify_vertices().reserve_num_rows(2 * new_cap * self.slots_per_agent)

    # -- TrailSet --------------------------------------------------------------------------

    def add_agents(self, n: int) -> None:
        """Append ``n`` empty trails (grows the buffers when past capacity)."""
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        n = int(n)
        if n == 0:
            return
        old, new = self.num_agents, self.num_agents + n
        if new > self.capacity:
            self._grow(new)
        S = self.slots_per_agent
        fresh = np.arange(old, new)
        self._kept[fresh] = 0
        self._pushes[fresh] = 0
        self._modes[fresh] = 0
        self._vdata.set_num_rows(new * S)
        v = vertex_view(self._vdata, self)
        v[old * S :] = np.zeros(1, dtype=VERTEX_DTYPE)
        self.mesh_updates += 1
        self._prim.modify_vertices().set_num_rows(2 * new * S)
        self.num_agents = new
        self._index_view()[old * S :] = self._degenerate_segments(fresh)
        self._indices_written()

    def remove_agents(self, ids: ArrayLike) -> None:
        """Drop these trails; the rest keep their order and move down into contiguous slots."""
        drop = as_row_indices(ids, self.num_agents, "agent ids")
        if drop.size == 0:
            return
        keep_mask = np.ones(self.num_agents, dtype=bool)
        keep_mask[drop] = False
        keep = np.flatnonzero(keep_mask)
        m, S = keep.size, self.slots_per_agent
        for arr in (self._kept, self._pushes, self._modes):
            arr[:m] = arr[keep]
        v = vertex_view(self._vdata, self).reshape(self.num_agents, S)
        v[:m] = v[keep]
        idx = self._index_view().reshape(self.num_agents, S, 2)
        shift = ((np.arange(m) - keep) * S).astype(np.int64)[:, None, None]
        idx[:m] = (idx[keep].astype(np.int64) + shift).astype(np.uint32)
        del v, idx
        self._vdata.set_num_rows(m * S)
        self.mesh_updates += 1
        self._prim.modify_vertices().set_num_rows(2 * m * S)
        self.num_agents = m
        self._indices_written()

    def clear(self, ids: ArrayLike) -> None:
        """Empty these trails (episode ended): their segments become degenerate."""
        agents = as_row_indices(ids, self.num_agents, "agent ids")
        if agents.size == 0:
            return
        self._kept[agents] = 0
        self._pushes[agents] = 0
        S = self.slots_per_agent
        rows = (agents[:, None] * S + np.arange(S)).reshape(-1)
        self._index_view()[rows] = self._degenerate_segments(agents)
        self._indices_written()

    def push(self, positions: np.ndarray, modes: np.ndarray) -> None:
        """One step for every agent: write the kept agents' new vertices and the few segment
        rows each push changes (``SlotLayout.push_writes``)."""
        pos, m = check_positions_and_modes(positions, modes, self.num_agents, len(self._lut))
        n, S = self.num_agents, self.slots_per_agent
        if n == 0:
            return
        if self.decimation == 1:
            ids = np.arange(n)
        else:
            ids = np.flatnonzero(self._pushes[:n] % self.decimation == 0)
        self._pushes[:n] += 1
        if ids.size == 0:
            return
        who, src, dst = self.layout.push_writes(self._kept[ids])
        new_slot = src[: ids.size]
        # One 16-byte row per new vertex (float32 xyz, then the RGBA bytes as one word) and one
        # 8-byte row per segment: a single fancy assignment each.
        vert = np.empty((ids.size, 4), dtype=np.uint32)
        vert[:, :3] = pos[ids].view(np.uint32)
        vert[:, 3] = self._lut_words[m[ids]]
        vertex_view(self._vdata, self).view(np.uint32).reshape(-1, 4)[ids * S + new_slot] = vert
        self.mesh_updates += 1
        base = ids[who] * S
        seg = np.empty((who.size, 2), dtype=np.uint32)
        seg[:, 0] = base + src
        seg[:, 1] = base + dst
        self._segment_words()[seg[:, 0]] = seg.view(np.uint64)[:, 0]
        self._indices_written()
        self._modes[ids, new_slot] = m[ids]
        self._kept[ids] += 1

    def extend(self, positions: ArrayLike, modes: ArrayLike) -> None:
        """T pushes, (T, N, 3) and (T, N) (used to fill trails)."""
        pos = np.asarray(positions, dtype=np.float32)
        m = np.asarray(modes)
        if pos.ndim != 3 or m.shape != pos.shape[:2]:
            raise ValueError(f"extend needs (T, N, 3) and (T, N), got {pos.shape} and {m.shape}")
        for t in range(len(pos)):
            self.push(pos[t], m[t])

    def polyline(self, agent: int) -> tuple[np.ndarray, np.ndarray]:
        """This agent's drawn trail, oldest first: points read from the vertex buffer and
        modes (every kept point at full resolution, the ones its LOD keeps otherwise)."""
        if not 0 <= agent < self.num_agents:
            raise ValueError(f"agent must lie in [0, {self.num_agents}), got {agent}")
        S = self.slots_per_agent
        slots = self.layout.slot(self.layout.drawn_seqs(int(self._kept[agent])))
        v = np.frombuffer(memoryview(self._vdata.get_array(0)), dtype=VERTEX_DTYPE)
        return v["position"][agent * S + slots].copy(), self._modes[agent, slots].astype(np.int64)

    def _forget(self) -> None:
        self.num_agents = 0
