"""Ratio gates: time the reference and the optimised path interleaved in one run, compare medians.

These machines are noisy, so no gate compares against an absolute time: both paths are measured
in the same process, alternating which goes first each round, and the gate asserts on the ratio
of their medians.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


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
