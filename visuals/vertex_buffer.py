"""Panda3D vertex buffers written in place through numpy views, every write counted.

The batched layers (trails, markers) draw from ONE Geom each and rewrite a few of its rows per
frame: ``make_geom_node`` builds the Geom over interleaved ``VERTEX_DTYPE`` rows, ``vertex_view``
hands out a writable numpy view over the vertex array's own memory (marking it modified: one
upload before the next draw), and ``counted`` views add the bytes of every assignment to their
owner's ``bytes_written``, the figure the work budgets check. The critic surface
(``make_indexed_geom_node``) keeps float colours and a fixed index buffer, and is rewritten whole
on a refresh.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

# One interleaved vertex: float32 x, y, z then RGBA as uint8 (16 bytes, matches _vertex_format()).
VERTEX_DTYPE = np.dtype([("position", "<f4", (3,)), ("color", "u1", (4,))])


def colors_to_uint8(colors: ArrayLike) -> NDArray[np.uint8]:
    """RGBA floats in [0, 1] -> uint8, the way they are stored in the vertex buffers."""
    c = np.asarray(colors, dtype=np.float64)
    if c.ndim < 1 or c.shape[-1] != 4:
        raise ValueError(f"colours must have 4 (RGBA) components, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("colours contain NaN or inf")
    return np.round(np.clip(c, 0.0, 1.0) * 255.0).astype(np.uint8)


def _vertex_format() -> Any:
    """Position float32 x3 and colour uint8 x4, interleaved in one array (one upload)."""
    from panda3d.core import Geom, GeomVertexArrayFormat, GeomVertexFormat

    array = GeomVertexArrayFormat()
    array.add_column("vertex", 3, Geom.NT_float32, Geom.C_point)
    array.add_column("color", 4, Geom.NT_uint8, Geom.C_color)
    fmt = GeomVertexFormat.register_format(GeomVertexFormat(array))
    if fmt.get_array(0).get_stride() != VERTEX_DTYPE.itemsize:
        raise RuntimeError("unexpected Panda3D vertex layout")
    return fmt


def make_geom_node(name: str, primitive: Any, rows: int) -> tuple[Any, Any, Any]:
    """A GeomNode holding one Geom of ``rows`` zeroed interleaved vertices and ``primitive``;
    returns (node, vertex data, primitive) as held by the node (writes go straight to them)."""
    from panda3d.core import Geom, GeomNode, GeomVertexData, OmniBoundingVolume

    vdata = GeomVertexData(name, _vertex_format(), Geom.UH_dynamic)
    vdata.set_num_rows(rows)
    geom = Geom(vdata)
    geom.add_primitive(primitive)
    # Fixed bounds: otherwise every modification rescans all vertices for a bounding volume.
    geom.set_bounds(OmniBoundingVolume())
    node = GeomNode(name)
    node.add_geom(geom)
    node.set_bounds(OmniBoundingVolume())
    node.set_final(True)
    held = node.modify_geom(0)
    return node, held.modify_vertex_data(), held.modify_primitive(0)


def make_indexed_geom_node(
    name: str, rows: int, indices: NDArray[np.uint32], lines: bool
) -> tuple[Any, Any]:
    """A GeomNode holding one Geom (float32 position + colour rows, a static uint32 index
    buffer of triangles or lines) and its GeomVertexData, kept for in-place writes."""
    from panda3d.core import (
        Geom,
        GeomLines,
        GeomNode,
        GeomTriangles,
        GeomVertexArrayFormat,
        GeomVertexData,
        GeomVertexFormat,
        InternalName,
    )

    array = GeomVertexArrayFormat()
    array.add_column(InternalName.get_vertex(), 3, Geom.NT_float32, Geom.C_point)
    array.add_column(InternalName.get_color(), 4, Geom.NT_float32, Geom.C_color)
    fmt = GeomVertexFormat.register_format(GeomVertexFormat(array))
    vdata = GeomVertexData(name, fmt, Geom.UH_dynamic)
    vdata.unclean_set_num_rows(rows)
    prim = GeomLines(Geom.UH_static) if lines else GeomTriangles(Geom.UH_static)
    prim.set_index_type(Geom.NT_uint32)
    handle = prim.modify_vertices()
    handle.unclean_set_num_rows(len(indices))
    memoryview(handle).cast("B")[:] = np.ascontiguousarray(indices, np.uint32).tobytes()
    geom = Geom(vdata)
    geom.add_primitive(prim)
    node = GeomNode(name)
    node.add_geom(geom)
    return node, vdata


class WrittenBytes(Protocol):
    """What a counted view adds its writes to."""

    bytes_written: int


class CountedView(np.ndarray):
    """A numpy view over a Panda3D buffer whose every assignment adds the bytes it writes to its
    owner's ``bytes_written``. Views taken from it (a field, a reshape, ``.view``) count too, so
    a write is counted however it is spelled (``np.copyto`` and ``out=`` are not assignments:
    write through indexing)."""

    owner: WrittenBytes | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self.owner = getattr(obj, "owner", None)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if self.owner is not None:
            # The target's size: a view for slices and fields, a copy of the few written rows
            # for index arrays (the same order of work as the write itself).
            self.owner.bytes_written += np.asarray(self[key]).nbytes


def counted(buffer: Any, dtype: Any, owner: WrittenBytes) -> Any:
    """A writable numpy view over ``buffer`` (a Panda3D array handle) that counts its writes."""
    view = np.frombuffer(memoryview(buffer), dtype=dtype).view(CountedView)
    view.owner = owner
    return view


def vertex_view(vdata: Any, owner: WrittenBytes) -> Any:
    """A writable structured numpy view (VERTEX_DTYPE) over the vertex array's own memory,
    counting its writes into ``owner``; taking it marks the array modified, so Panda3D uploads
    it once before the next draw."""
    return counted(vdata.modify_array(0), VERTEX_DTYPE, owner)
