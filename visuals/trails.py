"""Every agent's trail in one mesh: ``BatchedTrailRenderer``, the trails stage's optimised path.

It stands behind ``TrailSet`` (visuals/trail_set.py) beside its loop reference ``LineTrailGroup``
(visuals/line_trails.py, ``--reference trails``).

``BatchedTrailRenderer``: one Geom for all agents, one draw call for any N. Agent ``a`` owns
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

from typing import Any

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

    def _forget(self) -> None:
        self.num_agents = 0
