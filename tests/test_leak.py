"""The leak slope: retained bytes per frame, robust to what happens just after tracing starts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perf.leak import LEAK_LIMIT_BYTES_PER_FRAME, SETTLE_FRAMES, leak_slope


def series(
    slope: float, frames: int = 1000, every: int = 10, seed: int = 0
) -> list[tuple[int, int]]:
    """Traced bytes of a run leaking ``slope`` bytes a frame: objects allocated just after
    tracing starts (20 kB in the first 30 frames, caches refilling), then transient objects
    alive at each sample (up to 2 kB either way)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(0, frames + 1, every):
        noise = int(rng.integers(-2000, 2000))
        warm = 20_000 * min(f, 30) // 30
        out.append((f, int(slope * f) + noise + warm))
    return out


def test_a_kilobyte_a_frame_fails_the_gate_and_a_clean_run_passes():
    assert leak_slope(series(1024.0), settle=SETTLE_FRAMES) > LEAK_LIMIT_BYTES_PER_FRAME
    assert leak_slope(series(0.0), settle=SETTLE_FRAMES) < LEAK_LIMIT_BYTES_PER_FRAME


@given(slope=st.floats(-500, 5000), seed=st.integers(0, 1000))
def test_the_fit_recovers_any_steady_slope_within_a_few_bytes(slope, seed):
    fitted = leak_slope(series(slope, seed=seed), settle=SETTLE_FRAMES)
    assert fitted == pytest.approx(slope, abs=8.0)


def test_memory_retained_once_in_the_window_counts_as_its_average_over_the_window():
    # 40 kB kept once, halfway through 1000 frames: about 40 bytes a frame on average (a step
    # in the middle reads as a slope, which is what "retained per frame" means).
    stepped = [(f, b + (40_000 if f >= 500 else 0)) for f, b in series(0.0)]
    assert 20 < leak_slope(stepped, settle=SETTLE_FRAMES) < LEAK_LIMIT_BYTES_PER_FRAME


def test_too_few_samples_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        leak_slope([(0, 1), (1, 2)])
