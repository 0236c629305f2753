"""Ratio gates: time the reference and the optimised path interleaved in one run, compare them.

These machines are noisy, so no gate compares against an absolute time: both paths are measured
in the same process, alternating which goes first each round. Each round gives one paired ratio
(reference / optimised, measured back to back); a gate fails only when those ratios *show* the
speedup below its floor: the one-sided 99 % sign-test upper bound of the median ratio is under
it. A gate on the median alone fails about half the runs whenever the true ratio sits at the
floor (CI measured the cached panel at 9.9x against 10x); the bound keeps that under 1 %, and a
real loss of the speedup (every round below the floor) still fails.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

GATE_ALPHA = 0.01


@dataclass(frozen=True)
class Timing:
    """Per-call seconds of one path: the median over rounds, and every round's value."""

    median_s: float
    rounds_s: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


@dataclass(frozen=True)
class Speedup:
    reference: Timing
    optimised: Timing

    @property
    def ratio(self) -> float:
        """reference median / optimised median (> 1 means the optimised path is faster)."""
        return self.reference.median_s / self.optimised.median_s

    @property
    def round_ratios(self) -> tuple[float, ...]:
        """Each round's reference / optimised: the two were timed back to back in that round."""
        return tuple(
            r / o for r, o in zip(self.reference.rounds_s, self.optimised.rounds_s, strict=True)
        )

    def upper_bound(self, alpha: float = GATE_ALPHA) -> float:
        """One-sided (1 - alpha) upper confidence bound of the median round ratio (sign test:
        the k-th smallest ratio for the smallest k with P(Binomial(n, 1/2) >= k) <= alpha); the
        largest ratio when there are too few rounds for that level (under 7 rounds at 1 %)."""
        ratios = sorted(self.round_ratios)
        n = len(ratios)
        k = n  # 1-based rank; P(Binomial(n, 1/2) >= k) for the current k in `tail`
        tail = 1 / 2**n
        while k > 1 and tail + math.comb(n, k - 1) / 2**n <= alpha:
            k -= 1
            tail += math.comb(n, k) / 2**n
        return ratios[k - 1]

    def check_at_least(self, floor: float, label: str) -> None:
        """AssertionError naming ``label`` when the rounds show the ratio below ``floor``."""
        bound = self.upper_bound()
        assert bound >= floor, (
            f"{label}: {self}; the rounds show it below {floor:g}x (99 % upper bound "
            f"{bound:.2f}x, {len(self.round_ratios)} rounds)"
        )

    def __str__(self) -> str:
        return (
            f"reference {self.reference.median_ms:.4f} ms, optimised "
            f"{self.optimised.median_ms:.4f} ms, ratio {self.ratio:.1f}x"
        )


def _time_calls(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def interleaved(
    fns: dict[str, Callable[[], object]],
    rounds: int = 15,
    inner: dict[str, int] | int = 1,
    warmup: int = 2,
) -> dict[str, Timing]:
    """Time every function ``inner`` calls per round for ``rounds`` rounds; the order of the
    functions rotates each round so neither always runs first (cache, turbo, the other core)."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(fns)
    counts = {n: inner if isinstance(inner, int) else inner[n] for n in names}
    for _ in range(warmup):
        for n in names:
            fns[n]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            samples[n].append(_time_calls(fns[n], counts[n]))
    return {n: Timing(statistics.median(v), tuple(v)) for n, v in samples.items()}


def measure_speedup(
    reference: Callable[[], object],
    optimised: Callable[[], object],
    rounds: int = 15,
    inner_reference: int = 1,
    inner_optimised: int = 1,
    warmup: int = 2,
) -> Speedup:
    """Reference vs optimised, interleaved; ``inner_*`` calls per round (more for fast paths)."""
    t = interleaved(
        {"reference": reference, "optimised": optimised},
        rounds=rounds,
        inner={"reference": inner_reference, "optimised": inner_optimised},
        warmup=warmup,
    )
    return Speedup(t["reference"], t["optimised"])
