"""The leak slope: retained bytes per frame, robust to one-off steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perf.leak import LEAK_LIMIT_BYTES_PER_FRAME, leak_slope


def series(
    slope: float, frames: int = 1000, every: int = 10, seed: int = 0
) -> list[tuple[int, int]]:
    """Traced bytes of a run leaking ``slope`` bytes a frame, with allocator noise and one
    40 kB one-off step halfway (a cache filling)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(0, frames + 1, every):
        noise = int(rng.integers(-2000, 2000))
        step = 40_000 if f >= frames // 2 else 0
        out.append((f, 50_000_000 + int(slope * f) + noise + step))
    return out


def test_a_kilobyte_a_frame_fails_the_gate_and_a_clean_run_passes():
    assert leak_slope(series(1024.0)) > LEAK_LIMIT_BYTES_PER_FRAME
    assert leak_slope(series(0.0)) < LEAK_LIMIT_BYTES_PER_FRAME


@given(slope=st.floats(-500, 5000), seed=st.integers(0, 1000))
def test_the_fit_recovers_any_steady_slope_within_a_few_bytes(slope, seed):
    assert leak_slope(series(slope, seed=seed)) == pytest.approx(slope, abs=8.0)


def test_too_few_samples_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        leak_slope([(0, 1), (1, 2)])
