"""What a trail set draws, read back from the scene graph, never from the renderer's own state.

The batched renderer is read through Panda3D's own accessors (``GeomVertexReader`` and the
primitive's), not through its numpy views; the loop reference through the Ursina entities it
draws (one per run of equal mode, with its mesh vertices and colour). Both give a trail as the
points it draws, oldest first: a trail of fewer than two points draws nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visuals.vertex_buffer import colors_to_uint8


def the_geom(root: Any) -> Any:
    paths = root.find_all_matches("**/+GeomNode")
    assert len(paths) == 1, "the batched renderer must hold exactly one GeomNode"
    node = paths[0].node()
    assert node.get_num_geoms() == 1, "and exactly one Geom"
    return node.get_geom(0)


def read_geom(geom: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (V, 3) float32, colours (V, 4) uint8, segments (S, 2) int) from Panda3D."""
    from panda3d.core import GeomVertexReader

    vdata = geom.get_vertex_data()
    n = vdata.get_num_rows()
    pr = GeomVertexReader(vdata, "vertex")
    cr = GeomVertexReader(vdata, "color")
    pts = np.array([tuple(pr.get_data3()) for _ in range(n)], dtype=np.float32).reshape(-1, 3)
    cols = np.array([tuple(cr.get_data4()) for _ in range(n)], dtype=np.float64).reshape(-1, 4)
    assert geom.get_num_primitives() == 1
    prim = geom.get_primitive(0)
    assert prim.get_num_vertices_per_primitive() == 2
    segs = []
    for i in range(prim.get_num_primitives()):
        s = prim.get_primitive_start(i)
        segs.append((prim.get_vertex(s), prim.get_vertex(s + 1)))
    return pts, np.round(cols * 255).astype(np.uint8), np.array(segs, dtype=np.int64).reshape(-1, 2)


def drawn_polylines(renderer: Any) -> list[list[int]]:
    """Each agent's drawn chain of vertex rows of a ``BatchedTrailRenderer``, oldest first (empty
    when nothing is drawn). Asserts there is nothing else: every non-degenerate segment lies in
    one agent's slot and each slot's segments form one simple path."""
    geom = the_geom(renderer.entity)
    _, _, segs = read_geom(geom)
    S, n = renderer.slots_per_agent, renderer.num_agents
    assert len(segs) == n * S, "one segment row per vertex slot of a live agent, no more"
    real = segs[segs[:, 0] != segs[:, 1]]
    assert np.all(real // S == real[:, :1] // S), "a segment joins two different agents"
    assert np.all(real < n * S)
    chains = []
    for a in range(n):
        mine = real[real[:, 0] // S == a]
        if len(mine) == 0:
            chains.append([])
            continue
        nxt = dict(mine.tolist())
        assert len(nxt) == len(mine), "two segments leave one vertex"
        starts = set(nxt) - set(mine[:, 1].tolist())
        assert len(starts) == 1, f"agent {a}: segments are not one open path ({mine.tolist()})"
        chain = [starts.pop()]
        while chain[-1] in nxt:
            chain.append(nxt[chain[-1]])
        assert len(chain) == len(mine) + 1
        chains.append(chain)
    return chains


def drawn_trails(renderer: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every agent's drawn trail of a ``BatchedTrailRenderer``: (points (k, 3) float32, vertex
    colours (k, 4) uint8), oldest first; k = 0 when the agent draws nothing."""
    pts, cols, _ = read_geom(the_geom(renderer.entity))
    chains = drawn_polylines(renderer)
    return [(pts[chain].reshape(-1, 3), cols[chain].reshape(-1, 4)) for chain in chains]


def drawn_runs(trail: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """The runs a reference ``LineTrail`` draws, oldest first: (vertices (k, 3) float32, colour
    (4,) uint8) of each visible segment entity under its root (created in run order)."""
    runs = []
    for seg in trail.entity.children:
        if seg.visible:
            verts = np.array([tuple(v) for v in seg.model.vertices], dtype=np.float32)
            runs.append((verts.reshape(-1, 3), colors_to_uint8(tuple(seg.color))))
    return runs


def joined_runs(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A reference trail's runs as one polyline: (points (k, 3), segment colours (k - 1, 4)).
    Each run reaches the first point of the next one (the join), drawn in its own colour."""
    if not runs:
        return np.zeros((0, 3), np.float32), np.zeros((0, 4), np.uint8)
    for (a, _), (b, _) in zip(runs[:-1], runs[1:], strict=True):
        np.testing.assert_array_equal(a[-1], b[0], err_msg="consecutive runs do not join")
    points = np.concatenate([runs[0][0], *(verts[1:] for verts, _ in runs[1:])])
    colours = np.concatenate([np.repeat(c[None], len(verts) - 1, axis=0) for verts, c in runs])
    return points, colours
