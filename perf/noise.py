"""A noisy neighbour on demand: busy work that switches on and off at random over seconds.

A shared CI runner's neighbours come and go: a core busy for a few seconds, idle, busy again.
A gate's false-alarm rate measured only on a quiet machine says little about that, so this
generator makes the neighbour: ``workers`` processes, each alternating a busy phase (a pure
Python loop, or with ``memory`` a numpy copy of a 64 MiB array that also loads the memory bus)
and an idle phase, each phase's length uniform in its range, seeded. ``calf-perf noise`` runs it
in the foreground; ``calf-perf ab --noise`` and ``calf-perf trust --noise`` beside their
measurements.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ON_S = (0.3, 3.0)  # busy phases last this long (uniform)
OFF_S = (0.3, 3.0)  # and idle phases this long
_MEMORY_BYTES = 64 * 2**20


@dataclass(frozen=True)
class NoiseConfig:
    workers: int = 1
    memory: bool = False  # busy phases copy a large array (memory bandwidth) instead of looping
    seed: int = 0
    seconds: float = 0.0  # 0: until stopped

    def __post_init__(self) -> None:
        if self.workers < 1 or self.seconds < 0:
            raise ValueError(f"need workers >= 1 and seconds >= 0, got {self}")


def _busy(until: float, memory: bool) -> None:
    if memory:
        import numpy as np

        a = np.ones(_MEMORY_BYTES // 8)
        b = np.empty_like(a)
        while time.perf_counter() < until:
            np.copyto(b, a)
        return
    x = 0
    while time.perf_counter() < until:
        for i in range(10_000):
            x += i


def work(cfg: NoiseConfig, worker: int) -> None:
    """One worker's loop: busy, idle, busy, ... until ``cfg.seconds`` have passed (or for ever)."""
    rng = random.Random(cfg.seed * 1000 + worker)
    end = time.perf_counter() + cfg.seconds if cfg.seconds else float("inf")
    while time.perf_counter() < end:
        _busy(min(end, time.perf_counter() + rng.uniform(*ON_S)), cfg.memory)
        time.sleep(max(0.0, min(end - time.perf_counter(), rng.uniform(*OFF_S))))


@contextmanager
def noise_beside(enabled: bool, cfg: NoiseConfig = NoiseConfig()) -> Iterator[None]:
    """Run the generator's workers in their own processes for the block's duration."""
    if not enabled:
        yield
        return
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perf.noise",
                str(i),
                str(cfg.seed),
                str(int(cfg.memory)),
                str(cfg.seconds),
            ],
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
        for i in range(cfg.workers)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv: list[str] | None = None) -> int:
    """``python -m perf.noise WORKER SEED MEMORY SECONDS``: one worker, until terminated (or
    for SECONDS, when not 0)."""
    worker, seed, memory, seconds = argv or sys.argv[1:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    work(NoiseConfig(seed=int(seed), memory=bool(int(memory)), seconds=float(seconds)), int(worker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
