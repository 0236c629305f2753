"""Trails: the LineTrail reference, and the batched renderer read back from the Panda3D buffers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from visuals.palette import MODE_COLORS, TIMELINE_COLOR
from visuals.scene_stats import count_draw_calls
from visuals.trails import (
    TRAINING_MODE_COLORS,
    BatchedTrailRenderer,
    LineTrail,
    LineTrailGroup,
    TrailSet,
    colors_to_uint8,
    select_ids,
    uniform_mode_colors,
)

LUT = colors_to_uint8(MODE_COLORS)
N_MODES = len(MODE_COLORS)  # the table may grow: nothing below assumes how many modes there are

# --------------------------------------------------------------------------------------------
# Independent read-back of what Panda3D will draw (GeomVertexReader and the primitive's own
# accessors, not the renderer's numpy views).
# --------------------------------------------------------------------------------------------


def the_geom(root):
    paths = root.find_all_matches("**/+GeomNode")
    assert len(paths) == 1, "the batched renderer must hold exactly one GeomNode"
    node = paths[0].node()
    assert node.get_num_geoms() == 1, "and exactly one Geom"
    return node.get_geom(0)


def read_geom(geom):
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


def drawn_polylines(renderer: BatchedTrailRenderer) -> list[list[int]]:
    """Each agent's drawn chain of vertex rows, oldest first (empty when nothing is drawn).
    Asserts there is nothing else: every non-degenerate segment lies in one agent's slot and
    each slot's segments form one simple path."""
    geom = the_geom(renderer.entity)
    _, _, segs = read_geom(geom)
    P, n = renderer.max_points, renderer.num_agents
    assert len(segs) == n * P, "one segment row per ring slot of a live agent, no more"
    real = segs[segs[:, 0] != segs[:, 1]]
    assert np.all(real // P == real[:, :1] // P), "a segment joins two different agents"
    assert np.all(real < n * P)
    chains = []
    for a in range(n):
        mine = real[real[:, 0] // P == a]
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


def assert_matches_reference(batched: BatchedTrailRenderer, ref: LineTrailGroup) -> None:
    assert batched.num_agents == ref.num_agents
    pts, cols, _ = read_geom(the_geom(batched.entity))
    lut = colors_to_uint8(batched.mode_colors)
    chains = drawn_polylines(batched)
    for a in range(ref.num_agents):
        want_p, want_m = ref.trails[a].points, ref.trails[a].modes
        got_p, got_m = batched.polyline(a)
        np.testing.assert_array_equal(got_p, want_p)
        np.testing.assert_array_equal(got_m, want_m)
        chain = chains[a]
        if len(want_p) < 2:
            assert chain == [], f"agent {a} has {len(want_p)} points but draws {chain}"
        else:
            np.testing.assert_array_equal(pts[chain], want_p)
            np.testing.assert_array_equal(cols[chain], lut[want_m])


# --------------------------------------------------------------------------------------------
# LineTrail (the reference) on its own
# --------------------------------------------------------------------------------------------


def visible_segments(trail: LineTrail):
    return [s for s in trail.segment_entities if s.visible]


def test_line_trail_keeps_the_newest_points_and_groups_segments_by_mode(ursina_app):
    trail = LineTrail(max_points=5, decimation=1)
    try:
        modes = [0, 0, 1, 1, 2, 2, 0]
        for i, m in enumerate(modes):
            trail.add_point((i, 0.0, -i), m)
        np.testing.assert_array_equal(trail.points[:, 0], [2, 3, 4, 5, 6])
        np.testing.assert_array_equal(trail.modes, [1, 1, 2, 2, 0])
        segs = visible_segments(trail)
        # Runs 1,1 | 2,2 | 0: the last run has one point and is drawn by its predecessor's join.
        assert len(segs) == 2
        assert [len(s.model.vertices) for s in segs] == [3, 3]
        np.testing.assert_allclose(tuple(segs[0].color), MODE_COLORS[1])
        np.testing.assert_allclose(tuple(segs[1].color), MODE_COLORS[2])
        assert count_draw_calls(trail.entity) == 2
        trail.clear()
        assert len(trail.points) == 0 and visible_segments(trail) == []
        assert count_draw_calls(trail.entity) == 0
    finally:
        trail.destroy()


def test_line_trail_decimation_keeps_every_kth_push_and_restarts_on_clear(ursina_app):
    trail = LineTrail(max_points=10, decimation=3)
    try:
        for i in range(8):
            trail.add_point((i, 0, 0), 0)
        np.testing.assert_array_equal(trail.points[:, 0], [0, 3, 6])
        trail.clear()
        trail.add_point((100, 0, 0), 1)
        np.testing.assert_array_equal(trail.points[:, 0], [100])
    finally:
        trail.destroy()


def test_line_trail_rebuilds_every_k_points_and_caps_segments(ursina_app):
    trail = LineTrail(max_points=100, rebuild_every=4, max_segments=3)
    try:
        for i in range(3):
            trail.add_point((i, 0, 0), 0)
        assert trail.mesh_updates == 0 and visible_segments(trail) == []
        trail.add_point((3, 0, 0), 0)
        assert trail.mesh_updates == 1 and len(visible_segments(trail)) == 1
        for i in range(4, 40):
            trail.add_point((i, 0, 0), (i // 2) % 3)
        # 19 runs, only the newest 3 get entities.
        assert len(trail.segment_entities) == 3
        assert len(trail.modes) == 40
    finally:
        trail.destroy()


def test_line_trail_extend_equals_repeated_add_point(ursina_app):
    rng = np.random.default_rng(3)
    pos = rng.normal(size=(23, 3)).astype(np.float32)
    modes = rng.integers(0, N_MODES, 23)
    a, b = LineTrail(max_points=7, decimation=2), LineTrail(max_points=7, decimation=2)
    try:
        for p, m in zip(pos, modes, strict=True):
            a.add_point(p, int(m))
        b.extend(pos, modes)
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.modes, b.modes)
    finally:
        a.destroy()
        b.destroy()


def test_line_trail_rejects_bad_input(ursina_app):
    trail = LineTrail(max_points=4)
    try:
        with pytest.raises(ValueError, match="position"):
            trail.add_point((np.nan, 0, 0), 0)
        with pytest.raises(ValueError, match="mode"):
            trail.add_point((0, 0, 0), N_MODES)
    finally:
        trail.destroy()
    with pytest.raises(ValueError, match="max_points"):
        LineTrail(max_points=0)


# --------------------------------------------------------------------------------------------
# Batched == reference, stateful
# --------------------------------------------------------------------------------------------


class TrailEquivalence(RuleBasedStateMachine):
    """Random pushes (random modes), clears, additions and removals; after every step each
    agent's polyline drawn from the Panda3D buffers equals its reference LineTrail."""

    def __init__(self) -> None:
        super().__init__()
        self.batched: BatchedTrailRenderer | None = None
        self.ref: LineTrailGroup | None = None

    @initialize(
        max_points=st.integers(1, 12),
        decimation=st.integers(1, 3),
        capacity=st.integers(0, 4),
        n0=st.integers(0, 4),
    )
    def setup(self, max_points: int, decimation: int, capacity: int, n0: int) -> None:
        self.batched = BatchedTrailRenderer(capacity, max_points, decimation=decimation)
        self.ref = LineTrailGroup(max_points, decimation=decimation)
        self.batched.add_agents(n0)
        self.ref.add_agents(n0)

    def _push_once(self, rng: np.random.Generator) -> None:
        n = self.ref.num_agents
        # Small integer grid: repeated points and exact float32 values both occur.
        positions = rng.integers(-4, 5, size=(n, 3)).astype(np.float32) * 0.5
        modes = rng.integers(0, N_MODES, size=n)
        before = self.batched.mesh_updates
        self.batched.push(positions, modes)
        self.ref.push(positions, modes)
        assert self.batched.mesh_updates - before <= 1

    @rule(seed=st.integers(0, 2**32 - 1))
    def push(self, seed: int) -> None:
        self._push_once(np.random.default_rng(seed))

    @rule(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 30))
    def push_many(self, seed: int, k: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(k):
            self._push_once(rng)

    @precondition(lambda self: self.ref.num_agents > 0)
    @rule(data=st.data())
    def clear(self, data: st.DataObject) -> None:
        n = self.ref.num_agents
        ids = data.draw(
            st.lists(st.integers(0, n - 1), max_size=n)
            | st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)
        )
        self.batched.clear(ids)
        self.ref.clear(ids)

    @rule(n=st.integers(0, 3))
    def add(self, n: int) -> None:
        self.batched.add_agents(n)
        self.ref.add_agents(n)

    @precondition(lambda self: self.ref.num_agents > 0)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        n = self.ref.num_agents
        ids = data.draw(
            st.lists(st.integers(0, n - 1), max_size=n)
            | st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)
        )
        self.batched.remove_agents(ids)
        self.ref.remove_agents(ids)

    @invariant()
    def drawn_trails_equal_reference(self) -> None:
        if self.batched is not None:
            assert_matches_reference(self.batched, self.ref)

    def teardown(self) -> None:
        if self.batched is not None:
            self.batched.destroy()
            self.ref.destroy()


def test_batched_trails_drawn_from_panda_buffers_equal_line_trail_reference(ursina_app):
    run_state_machine_as_test(
        TrailEquivalence,
        settings=settings(max_examples=35, stateful_step_count=20, deadline=None),
    )


# --------------------------------------------------------------------------------------------
# Batched renderer: interface, counts, edge cases
# --------------------------------------------------------------------------------------------


def test_both_trail_sets_satisfy_the_trailset_protocol(ursina_app):
    b, r = BatchedTrailRenderer(2, 4), LineTrailGroup(4)
    try:
        assert isinstance(b, TrailSet) and isinstance(r, TrailSet)
    finally:
        b.destroy()
        r.destroy()


def test_push_costs_one_vertex_and_one_index_write_and_nothing_when_decimated(ursina_app):
    b = BatchedTrailRenderer(8, 16, decimation=2)
    try:
        b.add_agents(8)
        v0, i0 = b.mesh_updates, b.index_updates
        b.push(np.ones((8, 3)), np.zeros(8, dtype=int))
        assert (b.mesh_updates - v0, b.index_updates - i0) == (1, 1)
        b.push(np.ones((8, 3)), np.zeros(8, dtype=int))  # every agent drops this one
        assert (b.mesh_updates - v0, b.index_updates - i0) == (1, 1)
        b.set_visible(False)
        assert (b.mesh_updates - v0, b.index_updates - i0) == (1, 1)
    finally:
        b.destroy()


def test_agents_added_later_count_their_own_pushes_for_decimation(ursina_app):
    b = BatchedTrailRenderer(1, 10, decimation=2)
    try:
        b.add_agents(1)
        b.push(np.zeros((1, 3)), [0])
        b.add_agents(1)
        for t in range(1, 4):
            b.push(np.full((2, 3), t), [0, 1])
        np.testing.assert_array_equal(b.polyline(0)[0][:, 0], [0, 2])
        np.testing.assert_array_equal(b.polyline(1)[0][:, 0], [1, 3])
    finally:
        b.destroy()


def test_capacity_grows_past_max_agents_and_keeps_trails(ursina_app):
    b = BatchedTrailRenderer(2, 5)
    try:
        b.add_agents(2)
        b.push(np.arange(6).reshape(2, 3), [0, 1])
        b.add_agents(5)
        assert b.capacity >= 7 and b.num_agents == 7
        b.push(np.ones((7, 3)), np.full(7, 2))
        np.testing.assert_array_equal(b.polyline(1)[0], [[3, 4, 5], [1, 1, 1]])
        np.testing.assert_array_equal(b.polyline(6)[0], [[1, 1, 1]])
        assert len(drawn_polylines(b)[1]) == 2
    finally:
        b.destroy()


def test_batched_renderer_rejects_bad_input(ursina_app):
    b = BatchedTrailRenderer(3, 5)
    try:
        b.add_agents(3)
        with pytest.raises(ValueError, match="positions"):
            b.push(np.zeros((2, 3)), np.zeros(2, dtype=int))
        with pytest.raises(ValueError, match="NaN"):
            b.push(np.full((3, 3), np.nan), np.zeros(3, dtype=int))
        with pytest.raises(ValueError, match="mode"):
            b.push(np.zeros((3, 3)), np.array([0, 1, N_MODES]))
        with pytest.raises(ValueError, match="mode"):
            b.push(np.zeros((3, 3)), np.array([0.5, 1, 1]))
        with pytest.raises(ValueError, match="ids"):
            b.clear([3])
        with pytest.raises(ValueError, match="mask"):
            b.remove_agents(np.array([True, False]))
        with pytest.raises(ValueError, match="max_points"):
            BatchedTrailRenderer(1, 0)
    finally:
        b.destroy()
    np.testing.assert_array_equal(select_ids([2, 0, 2], 3), [0, 2])


@pytest.mark.parametrize("n", [5, 50, 1000])
def test_batched_trails_are_one_draw_call_at_any_n(ursina_app, n):
    b = BatchedTrailRenderer(n, 600)
    try:
        b.add_agents(n)
        rng = np.random.default_rng(n)
        for _ in range(3):
            b.push(rng.normal(size=(n, 3)), rng.integers(0, N_MODES, n))
        ursina_app.step()
        assert count_draw_calls(b.entity) == 1
    finally:
        b.destroy()


@pytest.mark.parametrize("n", [5, 50])
def test_reference_trail_draw_calls_grow_with_n(ursina_app, n):
    ref = LineTrailGroup(600)
    try:
        ref.add_agents(n)
        t = np.arange(6)
        pos = np.zeros((6, n, 3)) + t[:, None, None]
        modes = np.repeat((t >= 3).astype(int)[:, None], n, axis=1)  # two runs per trail
        ref.extend(pos, modes)
        assert count_draw_calls(ref.entity) == 2 * n
    finally:
        ref.destroy()


def test_training_agent_trail_and_q_timeline_are_renderers_of_one(ursina_app):
    from ursina import camera

    trail = BatchedTrailRenderer(1, 600, mode_colors=TRAINING_MODE_COLORS)
    timeline = BatchedTrailRenderer(
        1, 300, mode_colors=uniform_mode_colors(TIMELINE_COLOR), thickness=1.5, parent=camera.ui
    )
    try:
        trail.add_agents(1)
        timeline.add_agents(1)
        for t in range(400):
            trail.push([[np.cos(t / 30), 0.1, np.sin(t / 30)]], [t // 100 % 3])
            timeline.push([[-0.6 + t / 800, 0.3 * np.sin(t / 20), 0]], [t % 3])
        ursina_app.step()
        assert count_draw_calls(trail.entity) == 1 and count_draw_calls(timeline.entity) == 1
        pts, modes = timeline.polyline(0)
        assert len(pts) == 300
        np.testing.assert_allclose(pts[0, 0], -0.6 + 100 / 800, atol=1e-6)
        chain = drawn_polylines(timeline)[0]
        assert len(chain) == 300
        _, cols, _ = read_geom(the_geom(timeline.entity))
        assert np.all(cols[chain] == colors_to_uint8(TIMELINE_COLOR))
        _, tcols, _ = read_geom(the_geom(trail.entity))
        tchain = drawn_polylines(trail)[0]
        np.testing.assert_array_equal(
            tcols[tchain], colors_to_uint8(TRAINING_MODE_COLORS)[trail.polyline(0)[1]]
        )
    finally:
        trail.destroy()
        timeline.destroy()


# --------------------------------------------------------------------------------------------
# Headless render: the colours land where the trails are, and nowhere else
# --------------------------------------------------------------------------------------------


def project(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """World points (k, 3) -> pixel (col, row) floats, row 0 at the top."""
    from panda3d.core import Point2, Point3
    from ursina import application, scene

    base = application.base
    w, h = size
    out = []
    for p in points:
        cam_p = base.cam.get_relative_point(scene, Point3(*map(float, p)))
        p2 = Point2()
        assert base.camLens.project(cam_p, p2), f"{p} is off screen"
        out.append(((p2.x + 1) / 2 * w, (1 - p2.y) / 2 * h))
    return np.array(out)


def segment_mask(pix: np.ndarray, shape: tuple[int, int], radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the polyline through ``pix`` (k, 2)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    centres = np.stack([xx + 0.5, yy + 0.5], axis=-1)
    mask = np.zeros((h, w), dtype=bool)
    for a, b in zip(pix[:-1], pix[1:], strict=True):
        d = b - a
        t = np.clip(((centres - a) @ d) / max(d @ d, 1e-12), 0, 1)
        near = a + t[..., None] * d
        mask |= np.linalg.norm(centres - near, axis=-1) <= radius
    return mask


def near_color(img: np.ndarray, px: np.ndarray, rgba: np.ndarray, r: int = 2) -> bool:
    c, row = int(px[0]), int(px[1])
    win = img[max(row - r, 0) : row + r + 1, max(c - r, 0) : c + r + 1].reshape(-1, 3).astype(int)
    want = colors_to_uint8(rgba)[:3].astype(int)
    return bool(np.any(np.abs(win - want).max(axis=1) <= 6))


def test_headless_render_draws_mode_colours_on_the_trails_and_nothing_else(ursina_app, tmp_path):
    from ursina import camera

    from visuals.offscreen import grab_frame, save_screenshot

    saved = (camera.position, camera.rotation, camera.fov)
    camera.position = (0, 18, 0)
    camera.rotation = (90, 0, 0)
    camera.fov = 60
    camera.ui.hide()  # the FPS counter changes between frames; only the 3D layer is compared
    P = 40
    b = BatchedTrailRenderer(4, P, thickness=3.0)
    try:
        b.add_agents(7)
        # 60 steps into a 40-point ring: every trail wraps; each step is a new point.
        xs = np.linspace(-6, 6, 60)
        paths = np.zeros((60, 7, 3), dtype=np.float32)
        modes = np.zeros((60, 7), dtype=np.int64)
        for t in range(60):
            paths[t, 0] = (xs[t], 0, 4.0)  # A: certified, z = 4
            paths[t, 1] = (xs[t], 0, 2.0)  # B: relax, z = 2
            modes[t, 1] = 1
            # C: fallback, an L: its newest -> oldest join would be a diagonal through empty space.
            paths[t, 2] = (-6 + 6 * t / 29, 0, -1) if t < 30 else (0, 0, -1 - 3 * (t - 29) / 30)
            modes[t, 2] = 2
            paths[t, 3] = (1 + 5 * t / 59, 0, -3)  # D: modes switch every 5 points
            modes[t, 3] = (t // 5) % 3
            paths[t, 4] = (4, 0, 0)  # E: ends with a single point, which draws nothing
            paths[t, 5] = (xs[t], 0, 0.5)  # F: a trail that gets cleared
            # G (agent 6) stays at the origin and is cleared: its stale vertices sit there.
        for t in range(60):
            b.push(paths[t], modes[t])
        b.clear([4, 5, 6])
        b.push(paths[59] + [0.05, 0, 0], modes[59])  # E, F, G: one point; A-D one more
        b.clear(np.array([False, False, False, False, False, True, True]))
        ursina_app.step()
        assert count_draw_calls(b.entity) == 1
        assert b.node.get_render_mode_thickness() == 3.0  # node state, no vertex carries it

        b.set_visible(False)
        ursina_app.step()
        background = grab_frame()
        b.set_visible(True)
        ursina_app.step()
        img = grab_frame()
        png = save_screenshot(tmp_path / "batched_trails.png")
        print(f"screenshot: {png}")
        if os.environ.get("CALF_KEEP_SCREENSHOTS"):
            save_screenshot(Path(os.environ["CALF_KEEP_SCREENSHOTS"]) / "batched_trails.png")
        h, w = img.shape[:2]

        changed = np.abs(img.astype(int) - background.astype(int)).max(axis=-1) > 12
        expected = np.zeros((h, w), dtype=bool)
        for a in range(7):
            pts, _ = b.polyline(a)
            if len(pts) >= 2:
                expected |= segment_mask(project(pts, (w, h)), (h, w), radius=3.5)
        stray = changed & ~expected
        assert changed.sum() > 500, "the trails drew (almost) nothing"
        assert stray.sum() == 0, f"{stray.sum()} pixels drawn away from every trail"

        # Mode colours where the trails are: A, B, C everywhere along them, D per run.
        for a in range(3):
            pts, m = b.polyline(a)
            mids = (pts[:-1] + pts[1:]) / 2
            for px, mode in zip(project(mids, (w, h)), m[1:], strict=True):
                assert near_color(img, px, MODE_COLORS[mode]), (a, px, mode)
        pts, m = b.polyline(3)
        assert len(pts) == P and len(np.unique(m)) == 3
        starts = np.flatnonzero(np.diff(m)) + 1
        for s0, s1 in zip(starts[:-1], starts[1:], strict=True):
            i = (s0 + s1) // 2  # the middle of a run, away from its colour blends
            px = project(((pts[i - 1] + pts[i]) / 2)[None], (w, h))[0]
            assert near_color(img, px, MODE_COLORS[m[i]]), (i, px, m[i])
        # Nothing at the origin (G's vertices, empty slots), at E's lone point, on the wrapped
        # trail's newest -> oldest join, or where the cleared trail F was.
        for spot in ([0, 0, 0], [4, 0, 0], [-0.9, 0, -2.5], [-3, 0, 0.5]):
            c, r = project(np.array([spot]), (w, h))[0].astype(int)
            assert not changed[r - 3 : r + 4, c - 3 : c + 4].any(), f"stray pixels at {spot}"
    finally:
        b.destroy()
        camera.position, camera.rotation, camera.fov = saved
        camera.ui.show()
