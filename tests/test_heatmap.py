"""CriticHeatmap: the vectorised paths equal their loop references, the grid costs one forward and
heights none, and the drawn surface is one in-place Geom with the colours where they belong."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from calf.td3 import TD3
from visuals.colormap import HIGH_COLOR, LOW_COLOR, STOPS, colormap, colormap_reference
from visuals.coords import PlaneMapping
from visuals.heatmap import OVERLAY_LIFT_FRACTION, CriticHeatmap, HeightSource, LoopHeights


def set_linear_critic(td3: TD3, wx: float, wv: float, b: float) -> None:
    """Both critic heads compute q = wx * x + wv * v + b exactly: relu(z) - relu(-z) = z."""
    with torch.no_grad():
        for head in (td3.critic.q1_net, td3.critic.q2_net):
            l1, l2, l3 = head[0], head[2], head[4]
            for layer in (l1, l2, l3):
                layer.weight.zero_()
                layer.bias.zero_()
            l1.weight[0, 0], l1.weight[0, 1], l1.bias[0] = wx, wv, b
            l1.weight[1, 0], l1.weight[1, 1], l1.bias[1] = -wx, -wv, -b
            l2.weight[0, 0] = 1.0
            l2.weight[1, 1] = 1.0
            l3.weight[0, 0] = 1.0
            l3.weight[0, 1] = -1.0


@pytest.fixture(scope="module")
def td3() -> TD3:
    return TD3(2, 1, 5.0, seed=0, dtype=torch.float64)


def fresh_td3(dtype: torch.dtype = torch.float64) -> TD3:
    return TD3(2, 1, 5.0, seed=1, dtype=dtype)


# ------------------------------------------------------------------ strategies
finite = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)


@st.composite
def axis_range(draw: st.DrawFn) -> tuple[float, float]:
    lo = draw(st.floats(-20.0, 20.0))
    width = draw(st.floats(0.1, 30.0))
    return (lo, lo + width)


@st.composite
def heatmap_setup(draw: st.DrawFn) -> dict:
    """Grid size (2 and up), axis ranges (equal, or independent: non-square, offset) and grid."""
    g = draw(st.integers(2, 9))
    x_range = draw(axis_range())
    v_range = x_range if draw(st.booleans()) else draw(axis_range())
    q = draw(hnp.arrays(np.float64, (g, g), elements=finite))
    return {"grid_size": g, "x_range": x_range, "v_range": v_range, "q": q}


@st.composite
def coordinate(draw: st.DrawFn, lo: float, hi: float, nodes: np.ndarray) -> float:
    """A state coordinate inside, outside, exactly on a bound or exactly on a grid node."""
    kind = draw(st.sampled_from(["inside", "below", "above", "lo", "hi", "node"]))
    if kind == "inside":
        return lo + draw(st.floats(0.0, 1.0)) * (hi - lo)
    if kind == "below":
        return lo - draw(st.floats(0.0, 1e3))
    if kind == "above":
        return hi + draw(st.floats(0.0, 1e3))
    if kind == "node":
        return float(draw(st.sampled_from(list(nodes))))
    return lo if kind == "lo" else hi


@st.composite
def states_for(draw: st.DrawFn, hm: CriticHeatmap, max_n: int = 12) -> np.ndarray:
    n = draw(st.integers(0, max_n))
    rows = [
        (
            draw(coordinate(*hm.x_range, hm.xs)),
            draw(coordinate(*hm.v_range, hm.vs)),
        )
        for _ in range(n)
    ]
    return np.array(rows, dtype=np.float64).reshape(n, 2)


def make_heatmap(td3: TD3, setup: dict, **kwargs) -> CriticHeatmap:
    hm = CriticHeatmap(
        td3,
        grid_size=setup["grid_size"],
        x_range=setup["x_range"],
        v_range=setup["v_range"],
        **kwargs,
    )
    hm.q_grid = setup["q"]
    return hm


def reference_height(q: float, lo: float, hi: float, scale: float, eps: float) -> float:
    """The documented formula, written out independently of the module."""
    norm = (q * q - lo) / (hi - lo) if hi - lo > 1e-12 else 0.0
    return min(max(norm, 0.0), 1.0) * scale + eps


def bilinear(hm: CriticHeatmap, state: np.ndarray) -> float:
    """Bilinear interpolation of ``hm.q_grid`` at one state clamped to the grid, written out
    independently of the module from its public grid axes."""
    q, xs, vs = hm.q_grid, hm.xs, hm.vs
    x = min(max(float(state[0]), xs[0]), xs[-1])
    v = min(max(float(state[1]), vs[0]), vs[-1])
    i = min(int(np.searchsorted(xs, x, side="right")) - 1, len(xs) - 2)
    j = min(int(np.searchsorted(vs, v, side="right")) - 1, len(vs) - 2)
    tx = (x - xs[i]) / (xs[i + 1] - xs[i])
    tv = (v - vs[j]) / (vs[j + 1] - vs[j])
    return float(
        (1 - tx) * (1 - tv) * q[j, i]
        + tx * (1 - tv) * q[j, i + 1]
        + (1 - tx) * tv * q[j + 1, i]
        + tx * tv * q[j + 1, i + 1]
    )


# ------------------------------------------------------------ interpolation
# These tests read the heatmap's two private interpolations of the critic value on purpose: the
# value is not public (the trainer needs heights only), and the height formula squares and clamps
# it, which would hide a wrong sign or an error where the formula clamps. They are the two paths
# perf/suites/bench_heatmap.py measures: the vectorised one and its scalar loop reference.
@settings(max_examples=150, deadline=None)
@given(data=st.data(), setup=heatmap_setup())
def test_vectorized_interpolation_equals_loop_reference(td3, data, setup):
    hm = make_heatmap(td3, setup)
    states = data.draw(states_for(hm))
    loop = np.array([hm._interpolate_q_from_grid(s) for s in states])
    vec = hm._interpolate_q_from_grid_vectorized(states)
    assert vec.shape == (len(states),)
    np.testing.assert_allclose(vec, loop, rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(setup=heatmap_setup())
def test_interpolation_reproduces_the_grid_at_its_nodes(td3, setup):
    hm = make_heatmap(td3, setup)
    vec = hm._interpolate_q_from_grid_vectorized(hm.grid_states)
    np.testing.assert_allclose(vec, setup["q"].ravel(), rtol=0, atol=1e-9)
    loop = [hm._interpolate_q_from_grid(s) for s in hm.grid_states]
    np.testing.assert_allclose(loop, setup["q"].ravel(), rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), setup=heatmap_setup())
def test_states_outside_the_grid_take_the_clamped_states_value(td3, data, setup):
    hm = make_heatmap(td3, setup)
    states = data.draw(states_for(hm))
    clamped = np.column_stack(
        [np.clip(states[:, 0], *hm.x_range), np.clip(states[:, 1], *hm.v_range)]
    )
    np.testing.assert_allclose(
        hm._interpolate_q_from_grid_vectorized(states),
        hm._interpolate_q_from_grid_vectorized(clamped),
        rtol=0,
        atol=1e-9,
    )


@pytest.mark.parametrize("g", [2, 5])
def test_interpolation_of_a_bilinear_function_is_exact(td3, g):
    hm = CriticHeatmap(td3, grid_size=g, x_range=(-2.0, 6.0), v_range=(1.0, 3.0))
    gx, gv = np.meshgrid(hm.xs, hm.vs)
    hm.q_grid = 2.0 * gx - 3.0 * gv + 0.5 * gx * gv + 1.0  # bilinear: reproduced exactly
    pts = np.array([[-2.0, 1.0], [0.3, 2.2], [5.9, 2.999], [6.0, 3.0], [1.0, 1.5]])
    expected = 2.0 * pts[:, 0] - 3.0 * pts[:, 1] + 0.5 * pts[:, 0] * pts[:, 1] + 1.0
    np.testing.assert_allclose(hm._interpolate_q_from_grid_vectorized(pts), expected, atol=1e-12)
    # Clamped: far right / far below read the edge.
    far = np.array([[100.0, 2.0], [0.0, -50.0]])
    edge = np.array([[6.0, 2.0], [0.0, 1.0]])
    np.testing.assert_allclose(
        hm._interpolate_q_from_grid_vectorized(far),
        hm._interpolate_q_from_grid_vectorized(edge),
    )


# ------------------------------------------------------------------ heights
@settings(max_examples=120, deadline=None)
@given(
    data=st.data(),
    setup=heatmap_setup(),
    q2=st.tuples(st.floats(0.0, 5e3), st.floats(0.0, 5e3)).map(sorted),
    scale=st.sampled_from([1.0, 3.0, 0.5, 0.0, -2.0]),
    eps=st.floats(0.0, 0.2),
)
def test_batch_heights_equal_the_reference_height_formula(td3, data, setup, q2, scale, eps):
    hm = make_heatmap(td3, setup, height_scale=scale, surface_epsilon=eps)
    hm.q2_range = tuple(q2)
    states = data.draw(states_for(hm))
    batch = hm.heights(states)
    loop = LoopHeights(hm).heights(states)
    formula = [reference_height(bilinear(hm, s), q2[0], q2[1], scale, eps) for s in states]
    np.testing.assert_allclose(batch, formula, rtol=0, atol=1e-9)
    np.testing.assert_allclose(loop, formula, rtol=0, atol=1e-9)


def test_both_height_sources_satisfy_the_protocol_and_the_upstream_name_is_an_alias(td3):
    hm = CriticHeatmap(td3, grid_size=3)
    sources: list[HeightSource] = [hm, LoopHeights(hm)]
    assert all(callable(src.heights) for src in sources)
    assert CriticHeatmap.get_q_value_for_states_batch is CriticHeatmap.heights


@settings(max_examples=60, deadline=None)
@given(
    q=hnp.arrays(np.float64, (5, 5), elements=finite),
    q2=st.tuples(st.floats(0.0, 5e3), st.floats(0.0, 5e3)).map(sorted),
)
def test_heights_at_the_grid_nodes_are_the_reference_formula_of_their_q(td3, q, q2):
    hm = CriticHeatmap(td3, grid_size=5, height_scale=2.5, surface_epsilon=0.05)
    hm.q_grid = q
    hm.q2_range = tuple(q2)
    expected = [reference_height(v, q2[0], q2[1], 2.5, 0.05) for v in q.ravel()]
    np.testing.assert_allclose(hm.heights(hm.grid_states), expected, rtol=0, atol=1e-9)


def test_flat_q2_range_gives_a_flat_surface_at_epsilon(td3):
    hm = CriticHeatmap(td3, grid_size=3, height_scale=3.0, surface_epsilon=0.07)
    hm.q_grid = np.full((3, 3), 2.0)
    hm.q2_range = (4.0, 4.0)
    np.testing.assert_array_equal(hm.heights(np.zeros((4, 2))), 0.07)
    np.testing.assert_array_equal(LoopHeights(hm).heights(np.zeros((4, 2))), 0.07)


# ------------------------------------------------------------- forward passes
def test_compute_q_grid_makes_exactly_one_critic_forward_and_heights_none():
    agent = fresh_td3(torch.float32)
    hm = CriticHeatmap(agent, grid_size=21)
    counter = agent.forward_counter
    counter.reset()
    q = hm.compute_q_grid()
    assert q.shape == (21, 21)
    assert counter.count(module="critic") == 1
    assert counter.count() == 1
    counter.reset()
    states = np.random.default_rng(0).uniform(-6, 6, (50, 2))
    for _ in range(10):
        hm.heights(states)
        LoopHeights(hm).heights(states[:5])
    assert counter.count() == 0


def test_grid_is_min_of_twin_heads_at_zero_action_rows_follow_v():
    agent = fresh_td3()
    hm = CriticHeatmap(agent, grid_size=4, x_range=(-1.0, 2.0), v_range=(0.0, 5.0))
    q = hm.compute_q_grid()
    for j, v in enumerate(hm.vs):
        for i, x in enumerate(hm.xs):
            s = torch.tensor([[x, v]], dtype=torch.float64)
            q1, q2 = agent.critic(s, torch.zeros((1, 1), dtype=torch.float64))
            assert q[j, i] == pytest.approx(min(q1.item(), q2.item()), abs=1e-12)
    gx, gv = np.meshgrid(hm.xs, hm.vs)
    np.testing.assert_array_equal(hm.grid_states, np.column_stack([gx.ravel(), gv.ravel()]))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), g=st.integers(2, 12))
def test_interpolated_heights_equal_a_direct_critic_query_at_grid_nodes(seed, g):
    agent = TD3(2, 1, 5.0, seed=seed, dtype=torch.float64)
    hm = CriticHeatmap(agent, grid_size=g, x_range=(-3.0, 4.0), v_range=(-1.0, 1.0))
    hm.compute_q_grid()
    np.testing.assert_allclose(
        hm.heights(hm.grid_states), direct_heights(hm, hm.grid_states), rtol=0, atol=1e-9
    )


def test_interpolated_heights_equal_a_direct_critic_query_everywhere_for_a_linear_critic():
    agent = fresh_td3()
    set_linear_critic(agent, 0.7, -0.4, 1.3)  # linear q: bilinear interpolation is exact
    hm = CriticHeatmap(agent, grid_size=7, height_scale=2.0)
    states = np.random.default_rng(3).uniform(-5, 5, (200, 2))
    hm.heights(states)  # the first call computes the grid (and the q² range)
    np.testing.assert_allclose(hm.heights(states), direct_heights(hm, states), atol=1e-9)


def direct_heights(hm: CriticHeatmap, states: np.ndarray) -> np.ndarray:
    """The height formula on min(Q1, Q2)(s, 0) from a fresh critic forward at the states."""
    s = torch.as_tensor(states, dtype=hm.td3.dtype)
    with torch.no_grad():
        q1, q2 = hm.td3.critic(s, torch.zeros((len(s), 1), dtype=hm.td3.dtype))
    lo, hi = hm.q2_range
    q = torch.minimum(q1, q2).reshape(-1).double().numpy()
    return np.array([reference_height(v, lo, hi, hm.height_scale, hm.surface_epsilon) for v in q])


# ---------------------------------------------------------- refresh and EMA
class ScaledCritic:
    """Stub critic: q1 = k * (x + 2), q2 = q1 + 1 (so min picks q1); counts its calls."""

    def __init__(self) -> None:
        self.k = 1.0
        self.calls = 0

    def __call__(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        q1 = self.k * (s[:, :1] + 2.0)
        return q1, q1 + 1.0


def stub_agent() -> SimpleNamespace:
    return SimpleNamespace(
        critic=ScaledCritic(), device=torch.device("cpu"), dtype=torch.float64, action_dim=1
    )


def test_q2_range_is_ema_smoothed_across_refreshes():
    agent = stub_agent()
    hm = CriticHeatmap(agent, grid_size=5, x_range=(0.0, 4.0), ema_alpha=0.25)
    hm.compute_q_grid()  # q = x + 2 in [2, 6]: q² in [4, 36]; the first range is the raw one
    assert hm.q2_range == pytest.approx((4.0, 36.0))
    agent.critic.k = 2.0  # q² in [16, 144]
    hm.compute_q_grid()
    assert hm.q2_range == pytest.approx((0.75 * 4 + 0.25 * 16, 0.75 * 36 + 0.25 * 144))
    lo, hi = hm.q2_range
    hm.compute_q_grid()
    assert hm.q2_range == pytest.approx((0.75 * lo + 0.25 * 16, 0.75 * hi + 0.25 * 144))
    assert hm.refreshes == 3
    # With the range lagging, the new grid's top exceeds hi: clamped to height_scale.
    assert hm.heights([(4.0, 0.0)])[0] == pytest.approx(1.0 + 0.05)


def test_maybe_refresh_runs_on_first_call_and_every_update_frequency_steps():
    agent = stub_agent()
    hm = CriticHeatmap(agent, grid_size=3, update_frequency=10)
    schedule = [(0, True), (1, False), (9, False), (10, True), (15, False), (19, False)]
    schedule += [(20, True), (35, True), (44, False), (45, True)]
    for step, expected in schedule:
        assert hm.maybe_refresh(step) is expected, step
    assert hm.refreshes == agent.critic.calls == 5
    every = CriticHeatmap(stub_agent(), grid_size=3, update_frequency=0)
    assert all(every.maybe_refresh(s) for s in (0, 0, 1, 2))
    late = CriticHeatmap(stub_agent(), grid_size=3, update_frequency=100)
    assert late.maybe_refresh(12345) is True  # never computed: refresh whatever the step
    assert late.maybe_refresh(12346) is False


def test_first_height_query_computes_the_grid_once():
    agent = stub_agent()
    hm = CriticHeatmap(agent, grid_size=3)
    assert hm.q_grid is None
    hm.heights(np.zeros((3, 2)))
    hm.heights(np.zeros((3, 2)))
    assert agent.critic.calls == 1 and hm.refreshes == 1


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_states_raise_value_error_naming_the_rows(td3, bad):
    hm = CriticHeatmap(td3, grid_size=5)
    hm.q_grid = np.zeros((5, 5))
    states = np.zeros((9, 2))
    states[3, 0] = bad
    states[7, 1] = bad
    for call in (hm.heights, LoopHeights(hm).heights):
        with pytest.raises(ValueError, match=r"rows \[3, 7\]"):
            call(states)


def test_huge_finite_states_are_clamped_not_rejected(td3):
    hm = CriticHeatmap(td3, grid_size=5, height_scale=1.0, surface_epsilon=0.0)
    hm.q_grid = np.arange(25.0).reshape(5, 5)
    hm.q2_range = (0.0, 24.0**2)  # height = q² / 576: the corner values 24 and 20
    states = np.array([[1e308, 1e308], [-1e308, 1e308]])  # their sum overflows to inf
    np.testing.assert_allclose(hm.heights(states), [1.0, 20.0**2 / 24.0**2])


def test_bad_shapes_and_arguments_raise_value_error(td3):
    hm = CriticHeatmap(td3, grid_size=5)
    hm.q_grid = np.zeros((5, 5))
    for bad in (np.zeros((3, 3)), np.zeros(3), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match="shape"):
            hm.heights(bad)
    assert hm.heights(np.zeros((0, 2))).shape == (0,)
    assert hm.heights([]).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        hm.q_grid = np.zeros((4, 5))
    with pytest.raises(ValueError, match="NaN"):
        hm.q_grid = np.full((5, 5), np.nan)
    for kwargs in (
        {"grid_size": 1},
        {"x_range": (1.0, 1.0)},
        {"v_range": (2.0, np.inf)},
        {"ema_alpha": 0.0},
        {"update_frequency": -1},
        {"height_scale": np.nan},
    ):
        with pytest.raises(ValueError):
            CriticHeatmap(td3, **kwargs)
    assert not hm.q_grid.flags.writeable  # derived tables stay in step with it


def test_a_critic_returning_nan_raises_value_error():
    agent = stub_agent()
    agent.critic.k = float("nan")
    with pytest.raises(ValueError, match="NaN or inf at 9 of 9"):
        CriticHeatmap(agent, grid_size=3).compute_q_grid()


# --------------------------------------------------------------- colour map
@settings(max_examples=60, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 40), elements=st.floats(-0.5, 1.5)))
def test_vectorized_colormap_equals_per_value_reference(values):
    ref = np.array([colormap_reference(v) for v in values], dtype=np.float32).reshape(-1, 4)
    np.testing.assert_allclose(colormap(values), ref, rtol=0, atol=1e-6)


def test_colormap_stops_and_clamping():
    out = colormap(np.concatenate([STOPS[:, 0], [-1.0, 2.0]]))
    np.testing.assert_allclose(out[:-2, :3], STOPS[:, 1:], atol=1e-7)
    np.testing.assert_allclose(out[-2, :3], LOW_COLOR, atol=1e-7)
    np.testing.assert_allclose(out[-1, :3], HIGH_COLOR, atol=1e-7)
    assert out.dtype == np.float32 and (out[:, 3] == 1.0).all()
    with pytest.raises(ValueError, match="NaN"):
        colormap([0.2, np.nan])


# ------------------------------------------------------------ mesh buffers
@settings(max_examples=60, deadline=None)
@given(
    setup=heatmap_setup(),
    q2=st.tuples(st.floats(0.0, 5e3), st.floats(0.0, 5e3)).map(sorted),
    scale=st.sampled_from([1.0, 3.0, -1.5]),
    plane=st.sampled_from([None, PlaneMapping((-3.0, 7.0), (0.0, 2.0), 12.0)]),
)
def test_vertex_buffers_equal_the_per_vertex_reference_builder(td3, setup, q2, scale, plane):
    hm = make_heatmap(td3, setup, height_scale=scale, mapping=plane)
    hm.q2_range = tuple(q2)
    pos, col = hm.vertex_buffers()
    ref_pos, ref_col = hm.vertex_buffers_reference()
    g = setup["grid_size"]
    assert pos.shape == (g * g, 3) and col.shape == (g * g, 4)
    assert pos.dtype == col.dtype == np.float32
    np.testing.assert_allclose(pos, ref_pos, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(col, ref_col, rtol=0, atol=1e-6)


def test_agents_at_grid_nodes_sit_surface_epsilon_above_the_vertices(td3):
    hm = CriticHeatmap(td3, grid_size=9, x_range=(-4.0, 6.0), v_range=(-2.0, 2.0), height_scale=3)
    hm.compute_q_grid()
    pos, _ = hm.vertex_buffers()
    agents = hm.mapping.to_world(hm.grid_states, hm.heights(hm.grid_states))
    np.testing.assert_allclose(agents[:, [0, 2]], pos[:, [0, 2]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(agents[:, 1] - pos[:, 1], hm.surface_epsilon, rtol=0, atol=1e-6)


def test_index_buffers_cover_every_cell_and_grid_line(td3):
    g = 4
    hm = CriticHeatmap(td3, grid_size=g)
    tris = hm.surface_indices().reshape(-1, 3)
    assert len(tris) == 2 * (g - 1) ** 2 and tris.max() == g * g - 1
    # Each cell's two triangles share its diagonal and together use its four corners.
    for cell in range((g - 1) ** 2):
        j, i = divmod(cell, g - 1)
        corners = {j * g + i, j * g + i + 1, (j + 1) * g + i, (j + 1) * g + i + 1}
        first, second = set(tris[2 * cell].tolist()), set(tris[2 * cell + 1].tolist())
        assert first | second == corners and len(first & second) == 2
    lines = hm.overlay_indices().reshape(-1, 2)
    grid_lines = lines[: 2 * g * (g - 1)]
    assert {tuple(sorted(e)) for e in grid_lines.tolist()} == {
        (j * g + i, j * g + i + d)
        for j in range(g)
        for i in range(g)
        for d in (1, g)
        if (d == 1 and i < g - 1) or (d == g and j < g - 1)
    }
    assert len(lines) == 2 * g * (g - 1) + 2 * g * g and lines.max() == 5 * g * g - 1


# ----------------------------------------------------------------- drawing
def _geom_node(layer) -> object:
    """The one GeomNode under a drawn layer (the surface or the overlay entity)."""
    (path,) = layer.find_all_matches("**/+GeomNode")
    return path.node()


def _array_ptr(gnode) -> tuple[int, int, int]:
    """Addresses of the Geom, its vertex data and its vertex array (no reference is kept)."""
    geom = gnode.get_geom(0)
    return geom.this, geom.get_vertex_data().this, geom.get_vertex_data().get_array(0).this


def _buffer(gnode) -> np.ndarray:
    arr = gnode.get_geom(0).get_vertex_data().get_array(0)
    return np.frombuffer(memoryview(arr), dtype=np.float32).reshape(-1, 7).copy()


@pytest.fixture
def top_down_camera(ursina_app):
    """The camera straight above the plane (world X to the right, world Z up the screen), with
    whatever other tests left in the 3D scene hidden; all restored afterwards."""
    from ursina import camera, scene

    saved = (camera.position, camera.rotation, camera.fov)
    others = [n for n in scene.get_children() if n != camera and not n.is_hidden()]
    for node in others:
        node.hide()
    camera.position = (0, 20, 0)
    camera.rotation = (90, 0, 0)
    camera.fov = 40
    yield ursina_app
    camera.position, camera.rotation, camera.fov = saved
    for node in others:
        if not node.is_empty():
            node.show()


def _surface_region(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of the middle band that are not background, split into left and right quarters."""
    h, w, _ = frame.shape
    band = frame[h // 2 - 10 : h // 2 + 10].astype(np.float64)
    background = frame[2, 2].astype(np.float64)
    covered = np.abs(band - background).sum(axis=2) > 30
    cols = np.flatnonzero(covered.any(axis=0))
    assert len(cols) > w // 4, "the surface covers too little of the frame"
    left_cols = cols[: len(cols) // 4]
    right_cols = cols[-(len(cols) // 4) :]
    return band, band[:, left_cols].reshape(-1, 3), band[:, right_cols].reshape(-1, 3)


def test_screenshot_shows_low_colour_left_and_high_colour_right(
    top_down_camera, tmp_path, grab_frame
):
    from visuals.offscreen import save_screenshot

    app = top_down_camera
    agent = fresh_td3(torch.float32)
    set_linear_critic(agent, 1.0, 0.0, 5.0)  # q = x + 5 >= 0: q² grows left to right
    hm = CriticHeatmap(agent, grid_size=21, height_scale=0.5)
    try:
        hm.draw()
        # Normalise q² over x in [-2, 2] only: the outer 30 % of the plane on each side clamps to
        # the end stops (low left of x = -2, high right of x = 2).
        hm.q2_range = (3.0**2, 7.0**2)
        hm.update_mesh()
        app.step()
        app.step()
        frame = grab_frame()
        assert save_screenshot(tmp_path / "heatmap.png").stat().st_size > 0  # kept by pytest
        assert frame.std() > 10, "blank frame"
        _, left, right = _surface_region(frame)
        low, high = np.median(left, axis=0), np.median(right, axis=0)
        np.testing.assert_allclose(low, LOW_COLOR * 255, atol=40)
        np.testing.assert_allclose(high, HIGH_COLOR * 255, atol=40)
        assert low[2] > low[0] + 100 and high[0] > high[2] + 100  # blue left, red right

        # Flip the critic: a refresh rewrites the buffers in place and the colours swap sides.
        set_linear_critic(agent, -1.0, 0.0, 5.0)
        assert hm.maybe_refresh(10_000)
        hm.q2_range = (3.0**2, 7.0**2)
        hm.update_mesh()
        app.step()
        _, left, right = _surface_region(grab_frame())
        assert np.median(left, axis=0)[0] > np.median(left, axis=0)[2] + 100
        assert np.median(right, axis=0)[2] > np.median(right, axis=0)[0] + 100
    finally:
        hm.destroy()


def test_surface_and_overlay_are_one_geom_each_and_refresh_writes_in_place(ursina_app):
    from visuals.scene_stats import count_draw_calls, count_nodes

    agent = fresh_td3(torch.float32)
    hm = CriticHeatmap(agent, grid_size=15, update_frequency=100)
    try:
        hm.maybe_refresh(0)
        assert hm.mesh_updates == 0  # not drawn: nothing to write
        hm.draw()
        hm.draw()  # idempotent
        assert hm.mesh_updates == 2  # the first fill: surface + overlay
        assert count_draw_calls(hm.surface) == 1
        assert count_draw_calls(hm.overlay) == 1
        assert count_draw_calls(hm.root) == 2
        ursina_app.step()
        nodes = count_nodes(hm.root)
        ptrs = (_array_ptr(_geom_node(hm.surface)), _array_ptr(_geom_node(hm.overlay)))
        before = _buffer(_geom_node(hm.surface))
        assert not hm.maybe_refresh(50)
        # Rendered, refreshed, rendered...: the render pipeline holds references to the Geom,
        # and the writes still land in the same arrays (no copy on write), nodes unchanged.
        for cycle, step in enumerate((100, 200, 300), start=1):
            with torch.no_grad():
                agent.critic.q1_net[4].bias += 3.0
                agent.critic.q2_net[4].bias += 3.0
            assert hm.maybe_refresh(step)
            ursina_app.step()
            assert hm.mesh_updates == 2 + 2 * cycle  # each refresh: 2 buffer writes
            assert (_array_ptr(_geom_node(hm.surface)), _array_ptr(_geom_node(hm.overlay))) == ptrs
            assert count_nodes(hm.root) == nodes
        after = _buffer(_geom_node(hm.surface))
        assert not np.array_equal(before, after)
        pos, col = hm.vertex_buffers()
        np.testing.assert_array_equal(after[:, :3], pos)
        np.testing.assert_array_equal(after[:, 3:], col)
        overlay = _buffer(_geom_node(hm.overlay))
        lift = np.array([0.0, OVERLAY_LIFT_FRACTION * hm.mapping.plane_size, 0.0], np.float32)
        np.testing.assert_array_equal(overlay[: 15 * 15, :3], pos + lift)  # lines on the surface
        # The bounds follow the rewritten vertices (a stale volume would cull a surface that
        # grew): raise the surface tenfold after a render, and its top vertex is inside.
        from panda3d.core import Point3

        hm.height_scale = 10.0
        hm.compute_q_grid()
        top = hm.vertex_buffers()[0][np.argmax(hm.vertex_buffers()[0][:, 1])]
        assert top[1] > 5.0
        assert _geom_node(hm.surface).get_bounds().contains(Point3(*map(float, top)))
        assert hm.mesh_updates == 10

        hm.set_surface_visible(False)
        assert count_draw_calls(hm.root) == 1
        hm.set_overlay_visible(False)
        assert count_draw_calls(hm.root) == 0
        hm.set_surface_visible(True)
        hm.set_overlay_visible(True)
        assert count_draw_calls(hm.root) == 2
    finally:
        hm.destroy()
    assert hm.root is None and hm.surface is None
    hm.draw()  # drawable again after destroy
    try:
        assert count_draw_calls(hm.root) == 2
    finally:
        hm.destroy()
