"""Batched CALF (``CALFController.select_action_batch_codes``) against its loop reference
(``calf.batch_policy.PerAgentLoop``: N single-agent ``select_action`` calls).

Benchmarks (pytest-benchmark, grouped ``calf N=<n>`` so ``--benchmark-compare`` shows both paths
side by side), a report of the torch thread setting, and the gates: the loop/batch ratio measured
interleaved in one run, and exactly one actor and one critic forward per batch call at every N.

    pytest perf/suites/bench_calf.py                     # full sweep
    pytest perf/suites/bench_calf.py --quick -s          # CI sizes; -s prints the ratio table
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from calf.batch_policy import PerAgentLoop
from calf.config import RunConfig
from calf.trainer import make_controller
from perf.bench_compare import REPORT_ONLY
from perf.suites.gates import Speedup, measure_speedup

FULL = [1, 5, 10, 20, 25, 30, 100, 1000]
QUICK = [1, 25, 1000]
# Issue 3's targets, reported (met / missed) by the gate:
RATIO_TARGET_N25 = 30.0
BATCH_TARGET_MS_N1000 = 1.0  # an absolute time: reported, never asserted
# What the gate asserts. Both paths run the same forwards, so the N = 25 ratio is bounded by
# 25 * S / F25 (S: one single-agent select_action, F25: the bare batched actor + critic forward),
# which the gate prints: about 40x here. The batch path's own bookkeeping (~50 small numpy
# operations: validation, certificate check, relax draws, fallback, state update) costs about
# what one single-agent call spends on its own, and brings the measured ratio to 15-21x on these
# loaded 2-core machines. The floor catches a regression to per-agent work (ratio about 1).
RATIO_GATE_N25 = 10.0
RATIO_GATE_N1000 = 50.0  # the loop costs ~0.1-0.3 ms per agent, the batch ~1 ms for all 1000


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """Set torch's intra-op threads for one test and restore them afterwards."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


def make_paths(n: int, seed: int = 0) -> tuple[Callable[[], object], Callable[[], object]]:
    """(loop call, batch call) on the same N states, each on its own identically built
    controller, agents already created (the first call creates them)."""
    states = np.random.default_rng(seed).uniform(-4.0, 4.0, size=(n, 2))
    # The controller a run uses (RunConfig's defaults), built alike on both paths.
    loop = PerAgentLoop(make_controller(RunConfig(), seed=seed))
    batch = make_controller(RunConfig(), seed=seed)
    loop.select_action_batch_codes(states)
    batch.select_action_batch_codes(states)
    return (
        lambda: loop.select_action_batch_codes(states),
        lambda: batch.select_action_batch_codes(states),
    )


# ------------------------------------------------------------------ benchmarks
@pytest.mark.sizes("n", full=FULL, quick=QUICK)
def test_bench_loop_reference(benchmark, n: int, quick: bool) -> None:
    benchmark.group = f"calf N={n}"
    loop, _ = make_paths(n)
    if n >= 100:  # 0.1-0.3 s per call at N = 1000: a few rounds are plenty
        benchmark.pedantic(loop, rounds=3 if quick else 5, iterations=1, warmup_rounds=1)
    else:
        benchmark(loop)


@pytest.mark.sizes("n", full=FULL, quick=QUICK)
def test_bench_batched(benchmark, n: int) -> None:
    benchmark.group = f"calf N={n}"
    _, batch = make_paths(n)
    benchmark(batch)


@pytest.mark.sizes("n", full=[25, 1000], quick=[25, 1000])
@pytest.mark.parametrize("threads", [1, 2])
def test_bench_batched_torch_threads(benchmark, n: int, threads: int, torch_threads) -> None:
    """The same batched call with 1 and 2 torch threads (reported, not gated)."""
    torch_threads(threads)
    benchmark.group = f"calf threads N={n}"
    if threads > 1:  # measured up to 58x apart in two processes of identical code: never gated
        benchmark.extra_info["compare"] = REPORT_ONLY
    _, batch = make_paths(n)
    benchmark(batch)


# ------------------------------------------------------------------ gates
def _measure(n: int, quick: bool) -> Speedup:
    """Loop vs batch at N, interleaved; more inner calls for the fast path."""
    loop, batch = make_paths(n)
    if n >= 1000:
        return measure_speedup(loop, batch, rounds=3 if quick else 5, inner_optimised=20, warmup=1)
    inner_loop = max(1, 50 // n)
    return measure_speedup(
        loop,
        batch,
        rounds=11 if quick else 21,
        inner_reference=inner_loop,
        inner_optimised=50,
    )


def _bare_forward_vs_single_call() -> Speedup:
    """One single-agent select_action (reference) vs the bare batched actor + critic forward
    at N = 25 (optimised): 25 x this ratio is the ceiling of the N = 25 loop/batch ratio."""
    ctrl = make_controller(RunConfig())
    states = np.random.default_rng(0).uniform(-4.0, 4.0, size=(25, 2))
    s_t = ctrl.td3.to_tensor(states)
    return measure_speedup(
        lambda: ctrl.select_action(states[0]),
        lambda: ctrl.td3.act_and_q1(s_t),
        rounds=11,
        inner_reference=50,
        inner_optimised=50,
    )


def test_gate_batched_calf_speedup(quick: bool, torch_threads) -> None:
    """The loop/batch ratio at N = 25 and N = 1000, loop and batch interleaved in one run;
    prints the table (``pytest -s``) and how it stands against issue 3's targets.

    One torch thread for both paths: on these 2-core machines a second intra-op thread competes
    with the render thread and the other processes (see the thread benchmark)."""
    torch_threads(1)
    sizes = QUICK if quick else FULL
    results = {n: _measure(n, quick) for n in sizes}
    bare = _bare_forward_vs_single_call()
    print(f"\nbatched CALF vs per-agent loop (torch threads: {torch.get_num_threads()})")
    print(f"{'N':>6} {'loop ms':>10} {'batch ms':>10} {'ratio':>8}")
    for n, r in results.items():
        print(
            f"{n:>6} {r.reference.median_ms:>10.3f} {r.optimised.median_ms:>10.4f} {r.ratio:>8.1f}"
        )
    r25, ms1000 = results[25].ratio, results[1000].optimised.median_ms
    print(
        f"N=25: {r25:.1f}x, target {RATIO_TARGET_N25:.0f}x "
        f"{'met' if r25 >= RATIO_TARGET_N25 else 'missed'}; ceiling 25 x "
        f"{bare.reference.median_ms:.4f} ms (one select_action) / {bare.optimised.median_ms:.4f} "
        f"ms (bare batched forward) = {25 * bare.ratio:.1f}x"
    )
    print(
        f"N=1000: batch {ms1000:.3f} ms per call, target {BATCH_TARGET_MS_N1000} ms "
        f"{'met' if ms1000 <= BATCH_TARGET_MS_N1000 else 'missed'}"
    )
    results[25].check_at_least(RATIO_GATE_N25, "N=25")
    results[1000].check_at_least(RATIO_GATE_N1000, "N=1000")


@pytest.mark.sizes("n", full=[0, *FULL], quick=[0, *QUICK])
def test_gate_two_forward_passes_per_batch_call(n: int) -> None:
    """Exactly one actor and one critic forward per batch call at every N (none at N = 0); the
    loop reference makes N of each."""
    states = np.random.default_rng(n).uniform(-4.0, 4.0, size=(n, 2))
    ctrl = make_controller(RunConfig())
    loop = PerAgentLoop(make_controller(RunConfig()))
    counter, loop_counter = ctrl.td3.forward_counter, loop.controller.td3.forward_counter
    for step in range(3):
        counter.reset()
        ctrl.select_action_batch_codes(states, exploration_noise=0.1 * step)
        expected = 0 if n == 0 else 1
        assert counter.count(module="actor") == expected
        assert counter.count(module="critic") == expected
        assert counter.count() == 2 * expected
        states = 0.9 * states
    if n <= 100:
        loop_counter.reset()
        loop.select_action_batch_codes(states)
        assert loop_counter.count(module="actor") == loop_counter.count(module="critic") == n
