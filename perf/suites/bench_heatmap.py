"""Critic surface: agent heights and surface buffers, loop reference beside the vectorised path.

Benchmarks (pytest-benchmark; ``--benchmark-compare`` shows each group's two paths side by side):

* group "heights N=<n>": ``LoopHeights.heights`` (the trainer's ``interp`` reference: a Python
  loop of ``_interpolate_q_from_grid`` and the scalar height formula) vs ``CriticHeatmap.heights``
  (vectorised bilinear interpolation + height formula);
* group "interp N=<n>": the interpolation alone, ``_interpolate_q_from_grid`` per state vs
  ``_interpolate_q_from_grid_vectorized``;
* group "surface G=<g>": ``vertex_buffers_reference`` (per-vertex Python builder) vs
  ``vertex_buffers`` (positions and colours as array operations).

States are uniform over [-6, 6]², so about a sixth of them lie outside the [-5, 5]² grid and take
the clamping path. The gates are ordinary tests on interleaved measurements
(``perf.suites.gates.measure_speedup``, medians of many short interleaved samples): heights and
interpolation >= 10x at N = 20 and >= 50x at N = 1000 with max error <= 1e-6, heights cost 0
critic forwards, and the surface buffers at G = 31 build >= 10x faster than per vertex.
``pytest perf/suites/bench_heatmap.py -s`` prints the table (every N in full runs, the gated
ones under --quick); the ratio column is what the gates assert on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

from calf.td3 import TD3
from perf.suites.gates import Speedup, measure_speedup
from visuals.heatmap import CriticHeatmap, LoopHeights

N_FULL = [1, 5, 10, 20, 30, 100, 1000, 10000]
N_QUICK = [20, 1000]
G_FULL = [15, 21, 31, 101]
G_QUICK = [31]
SAMPLE_S = 2e-3  # benchmarks: aim for this much work per timed sample (amortises the timer)
# Gates: short samples, many rounds. Other processes share the 2 cores, and a sample that gets
# preempted is an outlier; short ones rarely are, so the median of many stays clean.
GATE_SAMPLE_S = 3e-4
GATE_ROUNDS = 41


def _heatmap(grid_size: int = 21) -> CriticHeatmap:
    """The app's setting: float32 networks, a computed grid, a medium-preset height scale."""
    hm = CriticHeatmap(TD3(2, 1, 5.0, seed=0), grid_size=grid_size, height_scale=3.0)
    hm.compute_q_grid()
    return hm


def _states(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-6.0, 6.0, (n, 2))


def _interp_loop(hm: CriticHeatmap, states: np.ndarray) -> np.ndarray:
    return np.array([hm._interpolate_q_from_grid(s) for s in states])


def _paths(hm: CriticHeatmap, group: str) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    if group == "heights":
        return {"loop": LoopHeights(hm).heights, "vectorized": hm.heights}
    return {
        "loop": lambda s: _interp_loop(hm, s),
        "vectorized": hm._interpolate_q_from_grid_vectorized,
    }


def _per_call_s(fn: Callable[[], object]) -> float:
    fn()
    start = time.perf_counter()
    fn()
    fn()
    return max((time.perf_counter() - start) / 2, 1e-7)


def _best_ratio(sp: Speedup) -> float:
    """Fastest reference round / fastest optimised round: printed beside the median ratio, as
    the number least disturbed by other processes (large N samples get preempted often)."""
    return min(sp.reference.rounds_s) / min(sp.optimised.rounds_s)


def _run(benchmark, quick: bool, fn: Callable[[], Any]) -> Any:
    """Default pytest-benchmark calibration in full runs; a short fixed budget under --quick."""
    if not quick:
        return benchmark(fn)
    per_call = _per_call_s(fn)
    iterations = max(1, int(SAMPLE_S / per_call))
    rounds = int(min(30, max(3, 0.15 / (per_call * iterations))))
    return benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)


def _speedup(reference: Callable[[], object], optimised: Callable[[], object]) -> Speedup:
    return measure_speedup(
        reference,
        optimised,
        rounds=GATE_ROUNDS,
        inner_reference=max(1, int(GATE_SAMPLE_S / _per_call_s(reference))),
        inner_optimised=max(1, int(GATE_SAMPLE_S / _per_call_s(optimised))),
    )


# ------------------------------------------------------------------ benchmarks
@pytest.mark.sizes("n", full=N_FULL, quick=N_QUICK)
@pytest.mark.parametrize("path", ["loop", "vectorized"])
@pytest.mark.parametrize("group", ["heights", "interp"])
def test_agent_heights(benchmark, quick, n, path, group):
    hm = _heatmap()
    states = _states(n)
    fn = _paths(hm, group)[path]
    benchmark.group = f"{group} N={n}"
    out = _run(benchmark, quick, lambda: fn(states))
    assert np.shape(out) == (n,)


@pytest.mark.sizes("g", full=G_FULL, quick=G_QUICK)
@pytest.mark.parametrize("path", ["reference", "vectorized"])
def test_surface_buffers(benchmark, quick, g, path):
    hm = _heatmap(g)
    fn = hm.vertex_buffers_reference if path == "reference" else hm.vertex_buffers
    benchmark.group = f"surface G={g}"
    pos, col = _run(benchmark, quick, fn)
    assert pos.shape == (g * g, 3) and col.shape == (g * g, 4)


# ----------------------------------------------------------------------- gates
def test_gate_heights_and_interpolation_speedup(quick):
    """>= 10x at N = 20, >= 50x at N = 1000, max |vectorised - loop| <= 1e-6, both groups."""
    targets = {20: 10.0, 1000: 50.0}
    rows = []
    failures = []
    for n in N_QUICK if quick else N_FULL:
        states = _states(n, seed=n)
        for group in ("heights", "interp"):
            hm = _heatmap()
            paths = _paths(hm, group)
            err = float(np.max(np.abs(paths["vectorized"](states) - paths["loop"](states))))
            sp = _speedup(partial(paths["loop"], states), partial(paths["vectorized"], states))
            rows.append((group, n, sp, err))
            if err > 1e-6:
                failures.append(f"{group} N={n}: max error {err:.2e} > 1e-6")
            if n in targets and sp.ratio < targets[n]:
                failures.append(f"{group} N={n}: {sp.ratio:.1f}x < {targets[n]:.0f}x")
    print("\n  group    N       loop ms   vectorised ms   ratio   best-round ratio   max error")
    for group, n, sp, err in rows:
        print(
            f"  {group:<8}{n:<8d}{sp.reference.median_ms:>8.4f}{sp.optimised.median_ms:>16.4f}"
            f"{sp.ratio:>8.1f}x{_best_ratio(sp):>18.1f}x{err:>12.1e}"
        )
    assert not failures, "; ".join(failures)


def test_gate_heights_cost_no_critic_forward():
    """Per frame, agent heights read the cached grid: 0 forwards; a grid refresh costs 1."""
    hm = CriticHeatmap(TD3(2, 1, 5.0, seed=0), grid_size=21, update_frequency=500)
    counter = hm.td3.forward_counter
    states = _states(20)
    counter.reset()
    refreshes = sum(hm.maybe_refresh(step) for step in range(1000))
    for _ in range(100):
        hm.heights(states)
    assert refreshes == 2
    assert counter.count() == counter.count(module="critic") == refreshes
    counter.reset()
    for _ in range(100):
        hm.heights(states)
        hm.heights(np.zeros((1, 2)))  # the goal marker
    print(f"\n  forward passes for 100 frames of 20 heights + goal: {counter.count()}")
    assert counter.count() == 0


def test_gate_surface_buffers_speedup(quick):
    """The vectorised surface buffers at G = 31 build >= 10x faster than per vertex, equal."""
    rows = []
    for g in G_QUICK if quick else G_FULL:
        hm = _heatmap(g)
        pos, col = hm.vertex_buffers()
        ref_pos, ref_col = hm.vertex_buffers_reference()
        err = max(float(np.max(np.abs(pos - ref_pos))), float(np.max(np.abs(col - ref_col))))
        rows.append((g, _speedup(hm.vertex_buffers_reference, hm.vertex_buffers), err))
    print("\n  G     per-vertex ms   vectorised ms   ratio   best-round ratio   max error")
    for g, sp, err in rows:
        print(
            f"  {g:<6d}{sp.reference.median_ms:>13.4f}{sp.optimised.median_ms:>16.4f}"
            f"{sp.ratio:>8.1f}x{_best_ratio(sp):>18.1f}x{err:>12.1e}"
        )
    for g, sp, err in rows:
        assert err <= 1e-6, f"G={g}: buffers differ by {err:.2e}"
        if g == 31:
            sp.check_at_least(10.0, "G=31")


@pytest.fixture(autouse=True, scope="module")
def _single_thread_torch():
    """The grid forward is the only torch work here; keep it off the second core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
