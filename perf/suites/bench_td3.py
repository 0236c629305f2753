"""One TD3 update: the fused update (``calf.fused_update``, the default) against the reference
(``TD3(fused_update=False)``: autograd, ``torch.optim.Adam``, per-parameter soft update).

Benchmarks (pytest-benchmark, group ``td3 update``, both paths side by side at each batch size),
and the gates: the reference/fused ratio measured interleaved in one run, and the number of
tensor ops each path issues per update (deterministic, so a tight gate).

    pytest perf/suites/bench_td3.py              # batch 64, 256, 1024
    pytest perf/suites/bench_td3.py --quick -s   # batch 256; -s prints the ratio and op tables
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from calf import TD3, ReplayBuffer
from perf.suites.gates import Speedup, measure_speedup

FULL = [64, 256, 1024]
QUICK = [256]
HIDDEN = 64
# Issue 15's target for the production batch, reported (met / missed) by the gate:
RATIO_TARGET_B256 = 2.0
# What the gate asserts, safely below what these loaded 2-core machines measure interleaved
# (reference/fused medians: 2.3-2.9x at 64, 2.1-2.3x at 256, 1.6-1.7x at 1024, where the matmuls
# both paths share dominate). A floor catches a fused path that lost its edge, not noise.
RATIO_GATES = {64: 1.8, 256: 1.5, 1024: 1.2}
# Per update the reference issues ~214 tensor ops (autograd nodes, Adam's per-tensor work),
# the fused path 66; the count does not depend on the machine.
OPS_FRACTION_GATE = 0.45


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """Set torch's intra-op threads for one test and restore them afterwards."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


def filled_replay(n: int = 20_000, seed: int = 0) -> ReplayBuffer:
    """A replay like the trainer's after a while: 2-D states, 1-D actions, a few terminals."""
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer(2, 1, 100_000)
    for _ in range(n):
        s = rng.uniform(-4.0, 4.0, 2)
        a = rng.uniform(-5.0, 5.0, 1)
        replay.add(
            s, a, -float(np.linalg.norm(s)), s + 0.05 * rng.normal(size=2), rng.random() < 0.01
        )
    return replay


_REPLAY: ReplayBuffer | None = None


def shared_replay() -> ReplayBuffer:
    global _REPLAY
    if _REPLAY is None:
        _REPLAY = filled_replay()
    return _REPLAY


def make_agent(fused: bool, seed: int = 0) -> TD3:
    """The production set-up: float32, hidden 64, default hyper-parameters."""
    return TD3(2, 1, 5.0, hidden_dim=HIDDEN, seed=seed, fused_update=fused)


def make_paths(batch: int) -> tuple[Callable[[], object], Callable[[], object]]:
    """(reference update, fused update) on identically seeded agents and one replay, each
    already past its first update (the fused path allocates its buffers there)."""
    replay = shared_replay()
    reference, fused = make_agent(False), make_agent(True)
    for agent in (reference, fused):
        agent.train(replay, batch)
        agent.train(replay, batch)
    return (lambda: reference.train(replay, batch), lambda: fused.train(replay, batch))


# ------------------------------------------------------------------ benchmarks
def _bench(benchmark, update: Callable[[], object], quick: bool) -> None:
    benchmark.group = "td3 update"
    if quick:  # a fixed, short run: the gate below is what CI relies on
        benchmark.pedantic(update, rounds=60, iterations=1, warmup_rounds=5)
    else:
        benchmark(update)


@pytest.mark.sizes("batch", full=FULL, quick=QUICK)
def test_bench_reference_update(benchmark, batch: int, quick: bool, torch_threads) -> None:
    torch_threads(1)
    _bench(benchmark, make_paths(batch)[0], quick)


@pytest.mark.sizes("batch", full=FULL, quick=QUICK)
def test_bench_fused_update(benchmark, batch: int, quick: bool, torch_threads) -> None:
    torch_threads(1)
    _bench(benchmark, make_paths(batch)[1], quick)


# ------------------------------------------------------------------ gates
def _measure(batch: int, quick: bool) -> Speedup:
    reference, fused = make_paths(batch)
    inner = max(2, 2048 // batch)  # ~1-4 ms a call: a few ms per round and path
    return measure_speedup(
        reference,
        fused,
        rounds=11 if quick else 21,
        inner_reference=inner,
        inner_optimised=inner,
    )


def test_gate_fused_update_speedup(quick: bool, torch_threads) -> None:
    """reference/fused per update at each batch size, interleaved in one run; prints the table
    (``pytest -s``) and how batch 256 stands against issue 15's 2x target. One torch thread,
    as the visual trainer runs it."""
    torch_threads(1)
    sizes = QUICK if quick else FULL
    results = {batch: _measure(batch, quick) for batch in sizes}
    print(f"\nTD3 update, reference vs fused (hidden {HIDDEN}, float32, 1 torch thread)")
    print(f"{'batch':>6} {'reference ms':>13} {'fused ms':>10} {'ratio':>7}")
    for batch, r in results.items():
        print(
            f"{batch:>6} {r.reference.median_ms:>13.3f} {r.optimised.median_ms:>10.3f} "
            f"{r.ratio:>7.2f}"
        )
    if 256 in results:
        ratio = results[256].ratio
        met = "met" if ratio >= RATIO_TARGET_B256 else "missed"
        print(f"batch 256: {ratio:.2f}x, target {RATIO_TARGET_B256:.0f}x {met}")
    for batch, r in results.items():
        r.check_at_least(RATIO_GATES[batch], f"batch {batch}")


def _ops_per_update(agent: TD3, batch: int, updates: int = 2) -> Counter[str]:
    """Tensor ops issued per update (each counted once, not the ops they call inside), over
    a critic-only and a policy update."""
    replay = shared_replay()
    agent.train(replay, batch)
    agent.train(replay, batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(updates):
            agent.train(replay, batch)

    def outermost(event) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return event.name.startswith("aten::")

    counts = Counter(e.name for e in prof.events() if outermost(e))
    return Counter({name: n / updates for name, n in counts.items()})


def test_gate_fused_update_issues_a_third_of_the_ops(torch_threads) -> None:
    """Fewer tensor ops is where the fused update's time goes: no autograd graph, Adam and the
    soft update as one op per network, views made once. Prints both paths' op tables."""
    torch_threads(1)
    reference = _ops_per_update(make_agent(False), 256)
    fused = _ops_per_update(make_agent(True), 256)
    total_ref, total_fused = sum(reference.values()), sum(fused.values())
    print(
        f"\ntensor ops per update (batch 256): reference {total_ref:.0f}, fused {total_fused:.0f}"
    )
    print(f"{'op':>28} {'reference':>10} {'fused':>7}")
    for name in sorted(reference.keys() | fused.keys(), key=lambda n: -reference[n] - fused[n]):
        print(f"{name:>28} {reference[name]:>10.1f} {fused[name]:>7.1f}")
    assert total_fused <= OPS_FRACTION_GATE * total_ref, (total_ref, total_fused)
