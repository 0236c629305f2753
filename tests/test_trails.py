"""Trails: the LineTrail reference, the batched renderer read back from the Panda3D buffers, and
its level of detail (TrailLOD) against a plain-Python reference built from the full history."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from trail_readback import (
    drawn_polylines,
    drawn_runs,
    drawn_trails,
    joined_runs,
    read_geom,
    the_geom,
)

from visuals.line_trails import LineTrail, LineTrailGroup
from visuals.palette import MODE_COLORS, TIMELINE_COLOR, TRAINING_MODE_COLORS
from visuals.scene_stats import count_draw_calls
from visuals.trail_lod import SlotLayout, TrailLOD
from visuals.trail_set import TrailSet
from visuals.trails import BatchedTrailRenderer
from visuals.vertex_buffer import colors_to_uint8

LUT = colors_to_uint8(MODE_COLORS)
LOD = TrailLOD((2, 4, 7))  # the narrowest levels the rule allows (2, 2, 3 ages): small tests
N_MODES = len(MODE_COLORS)  # the table may grow: nothing below assumes how many modes there are


def assert_matches_reference(batched: BatchedTrailRenderer, ref: LineTrailGroup) -> None:
    """Both read through what they draw (trail_readback): the same points, and each segment in
    the colour of its older point's mode. (The newest point's own colour shows only in the
    batched renderer; it is checked once the next point is drawn, as vertices are never
    rewritten.)"""
    assert batched.num_agents == ref.num_agents
    assert batched.slots_per_agent == batched.max_points  # full resolution: a ring of P slots
    for a, (pts, cols) in enumerate(drawn_trails(batched)):
        want_p, want_segment_cols = joined_runs(drawn_runs(ref.trails[a]))
        np.testing.assert_array_equal(pts, want_p, err_msg=f"agent {a}")
        np.testing.assert_array_equal(cols[:-1], want_segment_cols, err_msg=f"agent {a}")


# --------------------------------------------------------------------------------------------
# LineTrail (the reference) on its own
# --------------------------------------------------------------------------------------------


def visible_segments(trail: LineTrail):
    return [s for s in trail.entity.children if s.visible]


def test_line_trail_keeps_the_newest_points_and_groups_segments_by_mode(ursina_app):
    trail = LineTrail(max_points=5, decimation=1)
    try:
        modes = [0, 0, 1, 1, 2, 2, 0]
        for i, m in enumerate(modes):
            trail.add_point((i, 0.0, -i), m)
        points, colours = joined_runs(drawn_runs(trail))
        np.testing.assert_array_equal(points[:, 0], [2, 3, 4, 5, 6])
        np.testing.assert_array_equal(colours, LUT[[1, 1, 2, 2]])
        segs = visible_segments(trail)
        # Runs 1,1 | 2,2 | 0: the last run has one point and is drawn by its predecessor's join.
        assert len(segs) == 2
        assert [len(s.model.vertices) for s in segs] == [3, 3]
        np.testing.assert_allclose(tuple(segs[0].color), MODE_COLORS[1])
        np.testing.assert_allclose(tuple(segs[1].color), MODE_COLORS[2])
        assert count_draw_calls(trail.entity) == 2
        trail.clear()
        assert visible_segments(trail) == []
        assert count_draw_calls(trail.entity) == 0
    finally:
        trail.destroy()


def test_line_trail_decimation_keeps_every_kth_push_and_restarts_on_clear(ursina_app):
    trail = LineTrail(max_points=10, decimation=3)
    try:
        for i in range(8):
            trail.add_point((i, 0, 0), 0)
        np.testing.assert_array_equal(joined_runs(drawn_runs(trail))[0][:, 0], [0, 3, 6])
        trail.clear()
        for i in range(100, 104):  # the first push after a clear is kept, then every third
            trail.add_point((i, 0, 0), 1)
        np.testing.assert_array_equal(joined_runs(drawn_runs(trail))[0][:, 0], [100, 103])
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
        # 19 runs, only the newest 3 get entities: the points from 34 on.
        assert len(trail.entity.children) == 3
        np.testing.assert_array_equal(joined_runs(drawn_runs(trail))[0][:, 0], np.arange(34, 40))
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
        for (va, ca), (vb, cb) in zip(drawn_runs(a), drawn_runs(b), strict=True):
            np.testing.assert_array_equal(va, vb)
            np.testing.assert_array_equal(ca, cb)
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
    agent's trail drawn from the Panda3D buffers equals the one its reference LineTrail draws
    (at most 12 points: fewer runs than a LineTrail's segment cap)."""

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
# Level of detail: a plain-Python reference from the full history of pushes
# --------------------------------------------------------------------------------------------


def min_level_width(j: int) -> int:
    """The narrowest level ``j`` a TrailLOD accepts: 2 ages for levels 0 and 1, then more than
    half the level's stride."""
    return max(2, 2 ** (j - 1) + 1)


def reference_drawn(n_kept: int, max_points: int, boundaries: tuple[int, ...]) -> list[int]:
    """Sequence numbers (0 = the first kept point since the last clear) of the points a LOD
    trail draws after ``n_kept`` kept points, oldest first: younger than ``max_points``, and a
    multiple of the stride 2**level of the level its age falls in."""
    drawn = []
    for k in range(max(n_kept - max_points, 0), n_kept):  # the younger ones
        level = sum(1 for b in boundaries if b <= n_kept - 1 - k)
        if k % 2**level == 0:
            drawn.append(k)
    return drawn


class ReferenceLODTrails:
    """LOD trails in plain Python: every agent remembers every point it kept since its last
    clear; what is drawn is ``reference_drawn`` of that history, joined in order."""

    def __init__(self, max_points: int, decimation: int, lod: TrailLOD | None) -> None:
        self.max_points, self.decimation = max_points, decimation
        self.boundaries = lod.boundaries if lod is not None else ()
        self.history: list[list[tuple[np.ndarray, int]]] = []
        self.pushes: list[int] = []

    @property
    def num_agents(self) -> int:
        return len(self.history)

    @staticmethod
    def _ids(ids) -> set[int]:
        a = np.asarray(ids)
        return set(np.flatnonzero(a).tolist() if a.dtype == bool else a.astype(int).tolist())

    def add_agents(self, n: int) -> None:
        self.history += [[] for _ in range(n)]
        self.pushes += [0] * n

    def remove_agents(self, ids) -> None:
        drop = self._ids(ids)
        self.history = [h for i, h in enumerate(self.history) if i not in drop]
        self.pushes = [c for i, c in enumerate(self.pushes) if i not in drop]

    def clear(self, ids) -> None:
        for i in self._ids(ids):
            self.history[i], self.pushes[i] = [], 0

    def keeps(self) -> list[bool]:
        """Which agents keep the next push (decimation)."""
        return [c % self.decimation == 0 for c in self.pushes]

    def push(self, positions: np.ndarray, modes: np.ndarray) -> None:
        for i, keep in enumerate(self.keeps()):
            if keep:
                self.history[i].append((positions[i].astype(np.float32), int(modes[i])))
            self.pushes[i] += 1

    def drawn(self, agent: int) -> tuple[np.ndarray, np.ndarray]:
        """(points (k, 3), modes (k,)) drawn for this agent, oldest first."""
        h = self.history[agent]
        seqs = reference_drawn(len(h), self.max_points, self.boundaries)
        pts = np.array([h[k][0] for k in seqs], dtype=np.float32).reshape(-1, 3)
        return pts, np.array([h[k][1] for k in seqs], dtype=np.int64)


def simulate_segments(layout: SlotLayout, pushes: int) -> int:
    """Feed one trail ``pushes`` points through ``layout.push_writes`` into a plain segment
    table and assert, after every push, what the renderer relies on: the real segments chain
    exactly the reference's drawn points in order, every drawn point sits in its own slot, and
    that slot was last written by that point's own push. Returns the most points drawn at once."""
    target = {i: i for i in range(layout.slots)}  # segment row -> the row it joins
    owner: dict[int, int] = {}  # vertex slot -> the sequence number written there last
    boundaries = layout.lod.boundaries if layout.lod is not None else ()
    most = 0
    for k in range(pushes):
        _, rows, dsts = layout.push_writes(np.array([k]))
        owner[int(rows[0])] = k
        written: dict[int, int] = {}
        for r, t in zip(rows.tolist(), dsts.tolist(), strict=True):
            assert written.setdefault(r, t) == t, f"push {k}: row {r} written twice, differently"
            target[r] = t
        drawn = reference_drawn(k + 1, layout.max_points, boundaries)
        most = max(most, len(drawn))
        slots = layout.slot(np.array(drawn, dtype=np.int64)).tolist()
        assert all(0 <= s < layout.slots for s in slots)
        assert [owner.get(s) for s in slots] == drawn, f"push {k}: a drawn point was overwritten"
        real = {r: t for r, t in target.items() if r != t}
        assert real == dict(zip(slots[:-1], slots[1:], strict=True)), f"push {k}: wrong chain"
    return most


lod_schedules = st.lists(st.integers(0, 5), min_size=1, max_size=5).map(
    lambda extra: TrailLOD(
        tuple(itertools.accumulate(min_level_width(j) + e for j, e in enumerate(extra)))
    )
)


@settings(max_examples=60, deadline=None)
@given(lod=st.none() | lod_schedules, max_points=st.integers(1, 90))
@example(lod=TrailLOD.doubling(), max_points=600)
def test_slot_layout_segments_chain_exactly_the_drawn_points_each_in_its_own_slot(lod, max_points):
    layout = SlotLayout(max_points, lod)
    most = simulate_segments(layout, 2 * max_points + 70)
    # The slots are about the most points ever drawn at once: a few spare per class ring.
    assert most <= layout.slots <= most + layout.top + 1


def test_trail_lod_accepts_exactly_the_schedules_whose_segment_chain_stays_exact():
    """Every schedule of up to 4 narrow levels: TrailLOD's width rule holds iff the incremental
    segment writes keep the chain exact, for a trail long enough to reach past every level."""
    for widths in itertools.product(range(1, 4), range(1, 4), range(1, 5), range(1, 6)):
        bounds = tuple(itertools.accumulate(widths))
        max_points = bounds[-1] + 2 ** len(bounds) + 2
        try:
            TrailLOD(bounds)
            accepted = True
        except ValueError:
            accepted = False
        # Unchecked on purpose: what the layout would do with a rejected schedule.
        layout = SlotLayout(max_points, SimpleNamespace(boundaries=bounds))  # type: ignore[arg-type]
        try:
            simulate_segments(layout, 2 * max_points + 20)
            exact = True
        except AssertionError:
            exact = False
        assert accepted == exact, f"widths {widths}: accepted {accepted}, exact {exact}"


def test_default_lod_draws_102_of_600_points_in_102_slots():
    lod = TrailLOD.doubling()
    assert SlotLayout(600, lod).slots == 102
    assert max(len(reference_drawn(n, 600, lod.boundaries)) for n in range(5000, 5016)) == 102
    # Newest 32 at stride 1, then 16 each at strides 2, 4 and 8, the rest (to age 600) at 16.
    ages = 5000 - 1 - np.array(reference_drawn(5000, 600, lod.boundaries))[::-1]
    np.testing.assert_array_equal(ages[:32], np.arange(32))
    np.testing.assert_array_equal(np.unique(np.diff(ages)), [1, 2, 4, 8, 16])
    assert np.all(np.diff(ages)[ages[:-1] >= 256] == 16)
    assert SlotLayout(600, None).slots == 600


def test_trail_lod_rejects_bad_schedules():
    for bad in [(), (1,), (2, 3), (2, 4, 6), (3, 2), (2.5,)]:
        with pytest.raises(ValueError, match="boundar|level|span"):
            TrailLOD(bad)
    with pytest.raises(ValueError, match="points_per_level"):
        TrailLOD.doubling(points_per_level=1)
    with pytest.raises(ValueError, match="levels"):
        TrailLOD.doubling(levels=1)
    with pytest.raises(ValueError, match="newest"):
        TrailLOD.doubling(newest=1)
    assert TrailLOD.doubling(32, 8, 4).boundaries == (32, 48, 80)
    assert TrailLOD.doubling().boundaries == (32, 64, 128, 256)
    with pytest.raises(ValueError, match="max_points"):
        SlotLayout(0, LOD)


class LODTrailEquivalence(RuleBasedStateMachine):
    """Random pushes, clears, additions and removals on a LOD renderer with a random schedule;
    after every step each agent's polyline drawn from the Panda3D buffers equals the reference
    built from its full history, and a single push writes nothing but the new vertices and a
    few segment rows per agent."""

    def __init__(self) -> None:
        super().__init__()
        self.lod_trails: BatchedTrailRenderer | None = None
        self.ref: ReferenceLODTrails | None = None

    @initialize(
        lod=st.none() | lod_schedules,
        max_points=st.integers(1, 40),
        decimation=st.integers(1, 3),
        capacity=st.integers(0, 4),
        n0=st.integers(0, 4),
    )
    def setup(self, lod, max_points: int, decimation: int, capacity: int, n0: int) -> None:
        self.lod_trails = BatchedTrailRenderer(capacity, max_points, decimation, lod=lod)
        self.ref = ReferenceLODTrails(max_points, decimation, lod)
        self.lod_trails.add_agents(n0)
        self.ref.add_agents(n0)

    def _push_once(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = self.ref.num_agents
        positions = rng.integers(-4, 5, size=(n, 3)).astype(np.float32) * 0.5
        modes = rng.integers(0, N_MODES, size=n)
        self.lod_trails.push(positions, modes)
        self.ref.push(positions, modes)
        return positions, modes

    @rule(seed=st.integers(0, 2**32 - 1))
    def push(self, seed: int) -> None:
        """One push, with what it wrote read back: changed vertex rows are the keeping agents'
        new points (one each, none moved or rewritten), and each agent changes at most
        3 + 2 x (levels - 1) segment rows."""
        S = self.lod_trails.slots_per_agent
        pts0, cols0, segs0 = read_geom(the_geom(self.lod_trails.entity))
        keeps = self.ref.keeps()
        positions, modes = self._push_once(np.random.default_rng(seed))
        pts1, cols1, segs1 = read_geom(the_geom(self.lod_trails.entity))
        changed = np.flatnonzero(np.any(pts0 != pts1, axis=1) | np.any(cols0 != cols1, axis=1))
        owners = changed // S
        assert len(set(owners.tolist())) == len(owners), "an agent changed two vertices"
        for row, a in zip(changed, owners, strict=True):
            assert keeps[a], f"agent {a} kept nothing but vertex {row} changed"
            np.testing.assert_array_equal(pts1[row], positions[a])
            np.testing.assert_array_equal(cols1[row], LUT[modes[a]])
        seg_owners = np.flatnonzero(np.any(segs0 != segs1, axis=1)) // S
        most = 3 + 2 * self.lod_trails.layout.top
        assert np.bincount(seg_owners, minlength=1).max() <= most

    @rule(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 40))
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
        self.lod_trails.clear(ids)
        self.ref.clear(ids)

    @rule(n=st.integers(0, 3))
    def add(self, n: int) -> None:
        self.lod_trails.add_agents(n)
        self.ref.add_agents(n)

    @precondition(lambda self: self.ref.num_agents > 0)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        n = self.ref.num_agents
        ids = data.draw(
            st.lists(st.integers(0, n - 1), max_size=n)
            | st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)
        )
        self.lod_trails.remove_agents(ids)
        self.ref.remove_agents(ids)

    @invariant()
    def drawn_lod_trails_equal_the_reference_from_full_history(self) -> None:
        if self.lod_trails is None:
            return
        b = self.lod_trails
        assert b.num_agents == self.ref.num_agents
        pts, cols, _ = read_geom(the_geom(b.entity))
        chains = drawn_polylines(b)
        for a in range(b.num_agents):
            want_p, want_m = self.ref.drawn(a)
            if len(want_p) < 2:
                assert chains[a] == [], f"agent {a} draws {len(want_p)} point(s) as segments"
            else:
                np.testing.assert_array_equal(pts[chains[a]], want_p)
                np.testing.assert_array_equal(cols[chains[a]], LUT[want_m])

    def teardown(self) -> None:
        if self.lod_trails is not None:
            self.lod_trails.destroy()


def test_lod_trails_drawn_from_panda_buffers_equal_reference_from_full_history(ursina_app):
    run_state_machine_as_test(
        LODTrailEquivalence,
        settings=settings(max_examples=60, stateful_step_count=20, deadline=None),
    )


# --------------------------------------------------------------------------------------------
# Batched renderer: interface, counts, edge cases
# --------------------------------------------------------------------------------------------


def test_every_trail_set_satisfies_the_trailset_protocol(ursina_app):
    sets = [BatchedTrailRenderer(2, 4), BatchedTrailRenderer(2, 4, lod=LOD), LineTrailGroup(4)]
    try:
        assert all(isinstance(t, TrailSet) for t in sets)
    finally:
        for t in sets:
            t.destroy()


@pytest.mark.parametrize("lod", [None, LOD], ids=["full", "lod"])
def test_push_costs_one_vertex_and_one_index_write_and_nothing_when_decimated(ursina_app, lod):
    b = BatchedTrailRenderer(8, 16, decimation=2, lod=lod)
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
        trails = drawn_trails(b)
        np.testing.assert_array_equal(trails[0][0][:, 0], [0, 2])
        np.testing.assert_array_equal(trails[1][0][:, 0], [1, 3])
    finally:
        b.destroy()


@pytest.mark.parametrize("lod", [None, LOD], ids=["full", "lod"])
def test_capacity_grows_past_max_agents_and_keeps_trails(ursina_app, lod):
    b = BatchedTrailRenderer(2, 5, lod=lod)
    try:
        b.add_agents(2)
        b.push(np.arange(6).reshape(2, 3), [0, 1])
        b.add_agents(5)
        assert b.capacity >= 7 and b.num_agents == 7
        b.push(np.ones((7, 3)), np.full(7, 2))
        trails = drawn_trails(b)
        np.testing.assert_array_equal(trails[1][0], [[3, 4, 5], [1, 1, 1]])
        assert len(trails[6][0]) == 0  # one point so far: nothing to draw
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
        with pytest.raises(ValueError, match="lod"):
            BatchedTrailRenderer(1, 10, lod=(4, 8))  # type: ignore[arg-type]
    finally:
        b.destroy()


@pytest.mark.parametrize("lod", [None, TrailLOD.doubling()], ids=["full", "lod"])
@pytest.mark.parametrize("n", [5, 50, 1000])
def test_batched_trails_are_one_draw_call_at_any_n(ursina_app, n, lod):
    b = BatchedTrailRenderer(n, 600, lod=lod)
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
        1,
        300,
        mode_colors=np.tile(np.asarray(TIMELINE_COLOR, np.float32), (len(MODE_COLORS), 1)),
        thickness=1.5,
        parent=camera.ui,
    )
    try:
        trail.add_agents(1)
        timeline.add_agents(1)
        for t in range(400):
            trail.push([[np.cos(t / 30), 0.1, np.sin(t / 30)]], [t // 100 % 3])
            timeline.push([[-0.6 + t / 800, 0.3 * np.sin(t / 20), 0]], [t % 3])
        ursina_app.step()
        assert count_draw_calls(trail.entity) == 1 and count_draw_calls(timeline.entity) == 1
        pts, cols = drawn_trails(timeline)[0]
        assert len(pts) == 300
        np.testing.assert_allclose(pts[0, 0], -0.6 + 100 / 800, atol=1e-6)
        assert np.all(cols == colors_to_uint8(TIMELINE_COLOR))
        _, tcols = drawn_trails(trail)[0]
        modes = np.arange(400) // 100 % 3  # every push kept: 400 of 600 points
        np.testing.assert_array_equal(tcols, colors_to_uint8(TRAINING_MODE_COLORS)[modes])
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
    mask = np.zeros((h, w), dtype=bool)
    for a, b in zip(pix[:-1], pix[1:], strict=True):
        # Only the segment's bounding box (plus the radius) can be within reach.
        lo = np.floor(np.minimum(a, b) - radius).astype(int)
        hi = np.ceil(np.maximum(a, b) + radius).astype(int) + 1
        c0, r0 = max(lo[0], 0), max(lo[1], 0)
        c1, r1 = min(hi[0], w), min(hi[1], h)
        if c0 >= c1 or r0 >= r1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1]
        centres = np.stack([xx + 0.5, yy + 0.5], axis=-1)
        d = b - a
        t = np.clip(((centres - a) @ d) / max(d @ d, 1e-12), 0, 1)
        near = a + t[..., None] * d
        mask[r0:r1, c0:c1] |= np.linalg.norm(centres - near, axis=-1) <= radius
    return mask


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` grown by ``r`` pixels (a (2r+1)-square neighbourhood)."""
    h, w = mask.shape
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def circling_paths(n: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, n, 3) positions of agents circling spread-out centres on the floor, drifting in
    radius, and (steps, n) modes in runs of 40 steps."""
    rng = np.random.default_rng(seed)
    centres = np.stack([rng.uniform(-5, 5, n), rng.uniform(-2.5, 2.5, n)], axis=1)
    radius = rng.uniform(0.3, 0.8, n)
    omega = rng.uniform(0.01, 0.03, n) * rng.choice([-1.0, 1.0], n)
    t = np.arange(steps)[:, None]
    ang = omega * t + rng.uniform(0, 2 * np.pi, n)
    r = radius * (1.0 - 0.3 * np.sin(0.005 * t))
    pos = np.zeros((steps, n, 3), dtype=np.float32)
    pos[..., 0] = centres[:, 0] + r * np.cos(ang)
    pos[..., 2] = centres[:, 1] + r * np.sin(ang)
    modes = ((t + rng.integers(0, 200, n)) // 40) % N_MODES
    return pos, modes


def near_color(img: np.ndarray, px: np.ndarray, rgba: np.ndarray, r: int = 2) -> bool:
    c, row = int(px[0]), int(px[1])
    win = img[max(row - r, 0) : row + r + 1, max(c - r, 0) : c + r + 1].reshape(-1, 3).astype(int)
    want = colors_to_uint8(rgba)[:3].astype(int)
    return bool(np.any(np.abs(win - want).max(axis=1) <= 6))


def test_headless_render_draws_mode_colours_on_the_trails_and_nothing_else(
    ursina_app, tmp_path, grab_frame
):
    from ursina import camera

    from visuals.offscreen import save_screenshot

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
        trails = drawn_trails(b)
        for a in range(7):
            pts, _ = trails[a]
            if len(pts) >= 2:
                expected |= segment_mask(project(pts, (w, h)), (h, w), radius=3.5)
        stray = changed & ~expected
        assert changed.sum() > 500, "the trails drew (almost) nothing"
        assert stray.sum() == 0, f"{stray.sum()} pixels drawn away from every trail"

        # Mode colours where the trails are: A, B, C everywhere along them, D per run.
        for a in range(3):
            pts, cols = trails[a]
            assert np.all(cols == LUT[a]), a  # A certified, B relax, C fallback
            mids = (pts[:-1] + pts[1:]) / 2
            for px in project(mids, (w, h)):
                assert near_color(img, px, MODE_COLORS[a]), (a, px)
        pts, cols = trails[3]
        m = (np.minimum(np.arange(21, 61), 59) // 5) % 3  # D kept steps 21..59, then 59's mode
        assert len(pts) == P
        np.testing.assert_array_equal(cols, LUT[m])
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


def test_headless_lod_render_draws_the_full_trails_shape_and_nothing_else(
    ursina_app, tmp_path, grab_frame
):
    """60 agents, 600-point trails, 700 steps (clearing a third at step 500): the LOD renderer
    draws only along its own polylines, and the same trails, to within 2 pixels, as full
    resolution (continuous, nothing missing, no segment joining agents or jumping across)."""
    from ursina import camera

    from visuals.offscreen import save_screenshot

    saved = (camera.position, camera.rotation, camera.fov)
    camera.position = (0, 18, 0)
    camera.rotation = (90, 0, 0)
    camera.fov = 60
    camera.ui.hide()
    n, steps = 60, 700
    pos, modes = circling_paths(n, steps, seed=7)
    full = BatchedTrailRenderer(n, 600, thickness=2.0)
    lod = BatchedTrailRenderer(n, 600, thickness=2.0, lod=TrailLOD.doubling())
    try:
        for b in (full, lod):
            b.add_agents(n)
            for t in range(steps):
                if t == 500:
                    b.clear(np.arange(0, n, 3))
                b.push(pos[t], modes[t])
        frames = {}
        for name, shown in (("none", ()), ("full", (full,)), ("lod", (lod,))):
            for b in (full, lod):
                b.set_visible(b in shown)
            ursina_app.step()
            frames[name] = grab_frame()
            if name == "lod":
                assert count_draw_calls(lod.entity) == 1
                save_screenshot(tmp_path / "lod_trails.png")
                if os.environ.get("CALF_KEEP_SCREENSHOTS"):
                    save_screenshot(Path(os.environ["CALF_KEEP_SCREENSHOTS"]) / "lod_trails.png")
        h, w = frames["none"].shape[:2]
        drawn = {
            k: np.abs(frames[k].astype(int) - frames["none"].astype(int)).max(axis=-1) > 12
            for k in ("full", "lod")
        }
        assert drawn["lod"].sum() > 5000, "the LOD trails drew (almost) nothing"
        expected = np.zeros((h, w), dtype=bool)
        tails = np.zeros((h, w), dtype=bool)  # full trails older than the LOD's oldest point
        lod_trails, full_trails = drawn_trails(lod), drawn_trails(full)
        for a in range(n):
            pts, _ = lod_trails[a]
            if len(pts) >= 2:
                expected |= segment_mask(project(pts, (w, h)), (h, w), radius=3.5)
            full_pts, _ = full_trails[a]
            if len(pts):
                oldest = np.flatnonzero(np.all(full_pts == pts[0], axis=1))[0]
                if oldest:  # the LOD ends up to one top stride (16 steps) short of age 600
                    tails |= segment_mask(project(full_pts[: oldest + 1], (w, h)), (h, w), 3.5)
        stray = drawn["lod"] & ~expected
        assert stray.sum() == 0, f"{stray.sum()} pixels drawn away from every LOD polyline"
        off_full = drawn["lod"] & ~dilate(drawn["full"], 2)
        missing = drawn["full"] & ~dilate(drawn["lod"], 2) & ~tails
        assert off_full.sum() == 0, f"{off_full.sum()} LOD pixels away from the full trails"
        assert missing.sum() == 0, f"{missing.sum()} full-trail pixels the LOD does not draw"
    finally:
        full.destroy()
        lod.destroy()
        camera.position, camera.rotation, camera.fov = saved
        camera.ui.show()


def test_counted_views_count_every_write_however_it_is_spelled():
    from visuals.vertex_buffer import VERTEX_DTYPE, counted

    class Owner:
        bytes_written = 0

    owner = Owner()
    buf = bytearray(VERTEX_DTYPE.itemsize * 8)
    v = counted(buf, VERTEX_DTYPE, owner)
    v["position"][2] = (1.0, 2.0, 3.0)  # a field, one row: 12 bytes
    v[4:6] = np.zeros(1, dtype=VERTEX_DTYPE)  # a broadcast over two rows: 32 bytes
    v.view(np.uint32).reshape(-1, 4)[np.array([0, 7])] = 9  # index rows of a view: 32 bytes
    v[:] = v.copy()  # the whole buffer: 128 bytes
    assert owner.bytes_written == 12 + 32 + 32 + 128
    assert np.frombuffer(buf, dtype=VERTEX_DTYPE)["position"][2].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("lod", [None, "doubling"], ids=["full", "lod"])
def test_a_push_writes_one_vertex_and_a_few_segment_rows_per_agent(ursina_app, lod):
    from visuals.trail_lod import TrailLOD

    n = 10
    b = BatchedTrailRenderer(n, 600, lod=TrailLOD.doubling() if lod else None)
    try:
        b.add_agents(n)
        written = []
        for _ in range(700):  # past the ring's wrap: the steady state
            before = b.bytes_written
            b.push(np.random.default_rng(0).normal(size=(n, 3)), np.zeros(n, dtype=int))
            written.append(b.bytes_written - before)
        per_agent = np.array(written[-64:]) / n
        # 16 bytes of vertex, then 8 bytes per segment row: the new point's own row and its
        # predecessor's (the full ring also re-points the row that dropped the oldest point);
        # level of detail adds the rows it re-links at level boundaries, a few pushes in 2**j.
        assert per_agent.min() >= 16 + 2 * 8
        assert per_agent.max() <= 16 + (3 + 2 * 4) * 8
    finally:
        b.destroy()
