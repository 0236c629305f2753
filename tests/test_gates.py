"""The ratio gates' rule (perf/suites/gates.py): fail only when the rounds show the ratio under
the floor."""

from __future__ import annotations

import numpy as np
import pytest

from perf.suites.gates import Speedup, Timing


def _speedup(ratios: np.ndarray) -> Speedup:
    ones = (1.0,) * len(ratios)
    return Speedup(Timing(float(np.median(ratios)), tuple(map(float, ratios))), Timing(1.0, ones))


@pytest.mark.parametrize(("rounds", "rank"), [(3, 3), (7, 7), (11, 10), (15, 13), (21, 17)])
def test_upper_bound_is_the_sign_test_order_statistic(rounds: int, rank: int) -> None:
    ratios = np.arange(1.0, rounds + 1.0)
    assert _speedup(ratios).upper_bound() == ratios[rank - 1]


def test_a_true_ratio_at_the_floor_fails_under_one_percent_of_runs() -> None:
    rng = np.random.default_rng(0)
    fails = sum(
        _speedup(10.0 * np.exp(rng.normal(0.0, 0.1, 15))).upper_bound() < 10.0 for _ in range(4000)
    )
    assert fails / 4000 <= 0.01


def test_a_median_just_under_the_floor_passes_and_a_lost_speedup_fails() -> None:
    noisy = np.array(
        [9.2, 9.5, 9.9, 10.4, 9.8, 11.0, 9.9, 10.6, 9.7, 10.2, 9.9, 9.6, 10.8, 9.9, 9.4]
    )
    assert np.median(noisy) < 10.0
    _speedup(noisy).check_at_least(10.0, "panel")
    with pytest.raises(AssertionError, match=r"panel: .*below 10x"):
        _speedup(noisy * 0.8).check_at_least(10.0, "panel")
