"""Agent markers (the dot at the head of each trail): one mesh for all N, or one sphere each.

Both stand behind ``MarkerSet``, the markers stage of a frame:

``BatchedMarkers`` draws every agent as a screen-space point of ``size`` pixels from ONE
``GeomPoints`` Geom (one draw call for any N); ``update`` rewrites the N interleaved vertices
(position + colour from a uint8 mode table) in place through a numpy view over the Panda3D
buffer: one vertex-buffer upload per update. ``MarkerEntities`` is the reference for
``--reference trails``: one sphere Entity per agent, moved and recoloured one by one (N draw
calls).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from visuals.drawable import Drawable, check_positions_and_modes, check_positive
from visuals.palette import MODE_COLORS
from visuals.vertex_buffer import VERTEX_DTYPE, colors_to_uint8, make_geom_node, vertex_view

# World size of one marker pixel for the sphere reference (8 px -> 0.16 world units).
SPHERE_WORLD_PER_PIXEL = 0.02


class MarkerSet(Protocol):
    """What the visual agents need from their markers: one per agent, moved every frame.
    ``mesh_updates`` and ``bytes_written`` count vertex-buffer writes (monotone)."""

    mesh_updates: int
    bytes_written: int

    @property
    def num_agents(self) -> int: ...

    def set_count(self, n: int) -> None: ...

    def update(self, positions: ArrayLike, modes: ArrayLike) -> None: ...

    def destroy(self) -> None: ...


def mode_marker_colors(
    modes: ArrayLike, mode_colors: ArrayLike = MODE_COLORS
) -> NDArray[np.float32]:
    """(N,) mode codes -> (N, 4) RGBA float32 rows of ``mode_colors``."""
    table = np.asarray(mode_colors, dtype=np.float32)
    m = np.asarray(modes)
    if m.ndim != 1:
        raise ValueError(f"modes must be a 1-D array of mode codes, got shape {m.shape}")
    if m.size and not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"modes must be integer mode codes, got dtype {m.dtype}")
    if m.size and (m.min() < 0 or m.max() >= len(table)):
        raise ValueError(f"mode codes must lie in [0, {len(table)}), got {m.min()}..{m.max()}")
    return table[m.astype(np.int64)]


class BatchedMarkers(Drawable):
    """N screen-space points in one Geom: one draw call, one buffer upload per ``update``."""

    def __init__(
        self,
        max_agents: int,
        size: float = 8.0,
        mode_colors: ArrayLike = MODE_COLORS,
        parent: Any = None,
    ) -> None:
        from panda3d.core import ColorAttrib, Geom, GeomPoints
        from ursina import Entity, scene

        if int(max_agents) != max_agents or max_agents < 0:
            raise ValueError(f"max_agents must be a non-negative integer, got {max_agents!r}")
        self.size = check_positive("size", size)
        self._lut = colors_to_uint8(mode_colors)
        self.count = 0
        self.mesh_updates = 0  # vertex-array writes (each is one upload)
        self.bytes_written = 0  # bytes written into the vertex array (counted views)
        self.entity = Entity(parent=parent if parent is not None else scene)
        node, self._vdata, self._prim = make_geom_node(
            "batched_markers", GeomPoints(Geom.UH_dynamic), 0
        )
        self._vdata.reserve_num_rows(max(int(max_agents), 1))
        self.node = self.entity.attach_new_node(node)
        self.node.set_attrib(ColorAttrib.make_vertex(), 1)
        # Points of ``size`` pixels whatever their distance (perspective off).
        self.node.set_render_mode_thickness(self.size)
        self.node.set_render_mode_perspective(False)
        self.node.set_light_off(1)

    @property
    def num_agents(self) -> int:
        return self.count

    def set_count(self, n: int) -> None:
        """Draw ``n`` markers (new ones start at the origin, white, until the next update)."""
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        n = int(n)
        if n == self.count:
            return
        old = self.count
        self._vdata.set_num_rows(n)
        if n > old:
            v = vertex_view(self._vdata, self)
            v[old:] = np.zeros(1, dtype=VERTEX_DTYPE)
            v["color"][old:] = 255
            del v
        self.mesh_updates += 1
        self._prim.clear_vertices()
        if n:
            self._prim.add_consecutive_vertices(0, n)  # a range, no index array
        self.count = n

    def update(self, positions: ArrayLike, modes: ArrayLike) -> None:
        """Move and recolour all markers: (count, 3) world positions, (count,) mode codes."""
        pos, m = check_positions_and_modes(positions, modes, self.count, len(self._lut))
        if self.count == 0:
            return
        v = vertex_view(self._vdata, self)
        v["position"] = pos
        v["color"] = self._lut[m]
        self.mesh_updates += 1

    def _forget(self) -> None:
        self.count = 0


class MarkerEntities(Drawable):
    """Reference markers: one sphere Entity per agent, updated one by one (N draw calls)."""

    def __init__(
        self,
        size: float = 8.0,
        mode_colors: ArrayLike = MODE_COLORS,
        parent: Any = None,
        world_per_pixel: float = SPHERE_WORLD_PER_PIXEL,
    ) -> None:
        from ursina import Entity, scene

        self.size = check_positive("size", size)
        self.mode_colors = np.asarray(mode_colors, dtype=np.float32)
        self.world_per_pixel = check_positive("world_per_pixel", world_per_pixel)
        self.mesh_updates = 0  # moving or recolouring an Entity rebuilds no mesh
        self.bytes_written = 0
        self.entity = Entity(parent=parent if parent is not None else scene)
        self.spheres: list[Any] = []

    @property
    def count(self) -> int:
        return len(self.spheres)

    @property
    def num_agents(self) -> int:
        return len(self.spheres)

    def set_count(self, n: int) -> None:
        from ursina import Entity, destroy

        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        while len(self.spheres) > n:
            destroy(self.spheres.pop())
        while len(self.spheres) < n:
            self.spheres.append(
                Entity(
                    parent=self.entity,
                    model="sphere",
                    scale=self.size * self.world_per_pixel,
                    add_to_scene_entities=False,
                )
            )

    def update(self, positions: ArrayLike, modes: ArrayLike) -> None:
        from ursina import Vec3, Vec4

        pos, m = check_positions_and_modes(positions, modes, self.count, len(self.mode_colors))
        colors = mode_marker_colors(m, self.mode_colors)
        for sphere, p, c in zip(self.spheres, pos, colors, strict=True):
            sphere.position = Vec3(*(float(x) for x in p))
            sphere.color = Vec4(*(float(x) for x in c))

    def _forget(self) -> None:
        self.spheres = []
