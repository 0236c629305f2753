"""Agent markers: one points Geom for all N (batched) vs one sphere Entity each (reference)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from visuals.markers import BatchedMarkers, MarkerEntities, MarkerSet, mode_marker_colors
from visuals.palette import MODE_COLORS, TRAINING_MODE_COLORS
from visuals.scene_stats import count_draw_calls
from visuals.vertex_buffer import colors_to_uint8


def sphere_state(markers: MarkerEntities) -> tuple[np.ndarray, np.ndarray]:
    """Positions and uint8 colours of the reference's spheres, read from the entities."""
    pos = np.array([tuple(s.position) for s in markers.spheres], dtype=np.float32)
    cols = np.array([tuple(s.color) for s in markers.spheres], dtype=np.float32)
    return pos.reshape(-1, 3), colors_to_uint8(cols.reshape(-1, 4))


def read_markers(markers: BatchedMarkers) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions, uint8 colours and the number of drawn points, via Panda3D's own readers."""
    from panda3d.core import GeomVertexReader

    paths = markers.entity.find_all_matches("**/+GeomNode")
    assert len(paths) == 1 and paths[0].node().get_num_geoms() == 1
    geom = paths[0].node().get_geom(0)
    vdata = geom.get_vertex_data()
    pr, cr = GeomVertexReader(vdata, "vertex"), GeomVertexReader(vdata, "color")
    n = vdata.get_num_rows()
    pts = np.array([tuple(pr.get_data3()) for _ in range(n)], dtype=np.float32).reshape(-1, 3)
    cols = np.array([tuple(cr.get_data4()) for _ in range(n)]).reshape(-1, 4)
    prim = geom.get_primitive(0)
    drawn = sorted({prim.get_vertex(i) for i in range(prim.get_num_vertices())})
    assert drawn == list(range(len(drawn))), "points draw rows 0..n-1"
    return pts, np.round(cols * 255).astype(np.uint8), len(drawn)


def test_mode_marker_colors_are_mode_colour_rows():
    np.testing.assert_array_equal(mode_marker_colors(np.array([2, 0, 1])), MODE_COLORS[[2, 0, 1]])
    np.testing.assert_array_equal(
        mode_marker_colors([0, 2], TRAINING_MODE_COLORS), TRAINING_MODE_COLORS[[0, 2]]
    )
    assert mode_marker_colors(np.zeros(0, dtype=int)).shape == (0, 4)
    with pytest.raises(ValueError, match="mode"):
        mode_marker_colors([0, len(MODE_COLORS)])
    with pytest.raises(ValueError, match="mode"):
        mode_marker_colors([0.5])


def test_update_writes_positions_and_colours_into_the_one_geom(ursina_app):
    m = BatchedMarkers(4, size=6.0)
    try:
        rng = np.random.default_rng(0)
        m.set_count(6)  # past max_agents: grows
        pos = rng.normal(size=(6, 3)).astype(np.float32)
        modes = rng.integers(0, len(MODE_COLORS), 6)
        before, written = m.mesh_updates, m.bytes_written
        m.update(pos, modes)
        assert m.mesh_updates - before == 1
        assert m.bytes_written - written == 6 * 16  # one 16-byte vertex per marker
        got_p, got_c, drawn = read_markers(m)
        np.testing.assert_array_equal(got_p, pos)
        np.testing.assert_array_equal(got_c, colors_to_uint8(mode_marker_colors(modes)))
        assert drawn == 6
        m.set_count(2)
        got_p, _, drawn = read_markers(m)
        assert drawn == 2
        np.testing.assert_array_equal(got_p, pos[:2])
        m.set_count(0)
        m.update(np.zeros((0, 3)), np.zeros(0, dtype=int))
        assert read_markers(m)[2] == 0
        assert count_draw_calls(m.entity) == 1
    finally:
        m.destroy()


def test_markers_reject_bad_input(ursina_app):
    m = BatchedMarkers(3)
    try:
        m.set_count(3)
        with pytest.raises(ValueError, match="positions"):
            m.update(np.zeros((2, 3)), np.zeros(3, dtype=int))
        with pytest.raises(ValueError, match="modes"):
            m.update(np.zeros((3, 3)), np.zeros((3, 4), dtype=int))
        with pytest.raises(ValueError, match="mode codes"):
            m.update(np.zeros((3, 3)), np.array([0, 1, len(MODE_COLORS)]))
        with pytest.raises(ValueError, match="NaN"):
            m.update(np.full((3, 3), np.nan), np.zeros(3, dtype=int))
        with pytest.raises(ValueError, match="n must"):
            m.set_count(-1)
    finally:
        m.destroy()


def test_both_marker_sets_satisfy_the_markerset_protocol(ursina_app):
    batched, spheres = BatchedMarkers(2), MarkerEntities()
    try:
        sets: list[MarkerSet] = [batched, spheres]
        for m in sets:
            m.set_count(3)
            m.update(np.zeros((3, 3)), np.array([0, 1, 3]))
            assert m.num_agents == 3
    finally:
        batched.destroy()
        spheres.destroy()


@pytest.mark.parametrize("n", [5, 50, 1000])
def test_batched_markers_are_one_draw_call_at_any_n(ursina_app, n):
    m = BatchedMarkers(n)
    try:
        m.set_count(n)
        m.update(np.random.default_rng(n).normal(size=(n, 3)), np.zeros(n, int))
        ursina_app.step()
        assert count_draw_calls(m.entity) == 1
    finally:
        m.destroy()


@pytest.mark.parametrize("n", [5, 50])
def test_reference_marker_entities_are_one_draw_call_each(ursina_app, n):
    m = MarkerEntities(size=8.0)
    try:
        m.set_count(n)
        pos = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
        modes = np.arange(n) % len(MODE_COLORS)
        m.update(pos, modes)
        assert count_draw_calls(m.entity) == n
        got_p, got_c = sphere_state(m)
        np.testing.assert_allclose(got_p, pos, atol=1e-6)
        np.testing.assert_array_equal(got_c, colors_to_uint8(mode_marker_colors(modes)))
        m.set_count(2)
        assert count_draw_calls(m.entity) == 2
    finally:
        m.destroy()


def test_headless_render_shows_each_marker_in_its_colour_and_nothing_else(
    ursina_app, tmp_path, grab_frame
):
    from panda3d.core import Point2, Point3
    from ursina import application, camera, scene

    from visuals.offscreen import save_screenshot

    saved = (camera.position, camera.rotation, camera.fov)
    camera.position = (0, 18, 0)
    camera.rotation = (90, 0, 0)
    camera.fov = 60
    camera.ui.hide()  # the FPS counter changes between frames; only the 3D layer is compared
    m = BatchedMarkers(3, size=8.0)
    try:
        pos = np.array([[-4, 0, 2], [0, 0, -2], [4, 0, 2]], dtype=np.float32)
        modes = np.array([0, 1, 2])
        m.set_count(3)
        m.update(pos, modes)
        m.set_visible(False)
        ursina_app.step()
        background = grab_frame()
        m.set_visible(True)
        ursina_app.step()
        img = grab_frame()
        print(f"screenshot: {save_screenshot(tmp_path / 'batched_markers.png')}")
        if os.environ.get("CALF_KEEP_SCREENSHOTS"):
            save_screenshot(Path(os.environ["CALF_KEEP_SCREENSHOTS"]) / "batched_markers.png")
        h, w = img.shape[:2]
        changed = np.abs(img.astype(int) - background.astype(int)).max(axis=-1) > 12
        base = application.base
        allowed = np.zeros_like(changed)
        for p, mode in zip(pos, modes, strict=True):
            p2 = Point2()
            assert base.camLens.project(base.cam.get_relative_point(scene, Point3(*p)), p2)
            c, r = int((p2.x + 1) / 2 * w), int((1 - p2.y) / 2 * h)
            win = img[r - 6 : r + 7, c - 6 : c + 7].reshape(-1, 3).astype(int)
            want = colors_to_uint8(MODE_COLORS[mode])[:3].astype(int)
            hits = (np.abs(win - want).max(axis=1) <= 6).sum()
            # An 8-pixel square point: about 64 pixels in its colour, whatever the distance.
            assert 40 <= hits <= 100, (p, mode, hits)
            allowed[r - 7 : r + 8, c - 7 : c + 8] = True
        assert not (changed & ~allowed).any(), "marker pixels away from every marker"
    finally:
        m.destroy()
        camera.position, camera.rotation, camera.fov = saved
        camera.ui.show()
