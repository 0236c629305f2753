"""The PD nominal policy on one state and on a batch, its errors, and whether the configured
one reaches the goal from every reset state."""

from __future__ import annotations

import numpy as np
import pytest

from calf import PDPolicy
from calf.config import RunConfig
from calf.envs import step_batch
from calf.nominal import pd_from_config

# The gains the project started with (damping ratio 0.14); the run's are RunConfig's.
HISTORICAL = {"kp": 2.0, "kd": 0.4}


def test_the_defaults_are_the_runs() -> None:
    assert PDPolicy() == pd_from_config(RunConfig())
    cfg = RunConfig()
    assert (PDPolicy().kp, PDPolicy().kd) == (cfg.nominal.kp, cfg.nominal.kd)


def test_single_state_gives_one_action() -> None:
    pd = PDPolicy(**HISTORICAL)
    a = pd(np.array([1.0, 0.5]))
    assert a.shape == (1,) and a.dtype == np.float64
    assert a.tolist() == [-2.0 * 1.0 - 0.4 * 0.5]


def test_batch_gives_one_action_per_row_equal_to_single_calls() -> None:
    pd = PDPolicy(max_action=5.0, kp=2.0, kd=0.4)
    states = np.random.default_rng(0).uniform(-4, 4, (50, 2))
    batch = pd(states)
    assert batch.shape == (50, 1)
    np.testing.assert_array_equal(batch, np.stack([pd(s) for s in states]))
    np.testing.assert_array_equal(
        batch[:, 0], np.clip(-2.0 * states[:, 0] - 0.4 * states[:, 1], -5, 5)
    )


def test_output_is_clipped_to_max_action() -> None:
    pd = PDPolicy(max_action=1.5, **HISTORICAL)
    assert pd([10.0, 10.0]).tolist() == [-1.5]
    assert pd([-10.0, 0.0]).tolist() == [1.5]
    assert pd(np.array([[10.0, 0.0], [0.1, 0.0]])).tolist() == [[-1.5], [-0.2]]


def test_empty_batch_and_list_input() -> None:
    pd = PDPolicy()
    assert pd(np.zeros((0, 2))).shape == (0, 1)
    assert pd([[0.0, 0.0]]).tolist() == [[0.0]]


def test_gains_and_batch_flag() -> None:
    pd = PDPolicy(max_action=3.0, kp=1.0, kd=2.0)
    assert isinstance(pd, PDPolicy) and pd.accepts_batch
    assert (pd.max_action, pd.kp, pd.kd) == (3.0, 1.0, 2.0)
    assert pd([0.5, 0.5]).tolist() == [-1.5]


@pytest.mark.parametrize(
    "bad", [np.zeros(3), np.zeros((4, 3)), np.zeros((2, 2, 2)), np.float64(1.0)]
)
def test_bad_shapes_raise(bad) -> None:
    with pytest.raises(ValueError, match=r"expects a state \(2,\) or states \(N, 2\)"):
        PDPolicy()(bad)


def steps_to_goal(pd: PDPolicy, starts: np.ndarray, cfg: RunConfig) -> np.ndarray:
    """Steps each start state needs to reach the goal radius under ``pd`` (-1: never within the
    step limit, or it left the box), all rows at once."""
    params = cfg.env.params()
    s, steps = starts.copy(), np.full(len(starts), -1)
    rows = np.arange(len(starts))
    for t in range(params.max_steps):
        s, _, hit, outside = step_batch(s, pd(s), params)
        steps[rows[hit]] = t + 1
        keep = ~(hit | outside)
        rows, s = rows[keep], s[keep]
        if rows.size == 0:
            break
    return steps


def test_the_configured_nominal_reaches_the_goal_from_every_reset_state() -> None:
    """CALF's safety rests on its fallback: from every reset state the default PD must reach
    the goal radius within the step limit. 4000 seeded reset states plus the box's corners
    (measured: 100 %, mean 540 steps, worst 717 of 1000)."""
    cfg = RunConfig()
    r = cfg.env.init_range
    corners = np.array([[a, b] for a in (-r, r) for b in (-r, r)])
    starts = np.concatenate([np.random.default_rng(7).uniform(-r, r, (4000, 2)), corners])
    steps = steps_to_goal(pd_from_config(cfg), starts, cfg)
    assert (steps > 0).all(), f"{(steps < 0).sum()} of {len(starts)} reset states never arrive"
    assert steps.max() <= 0.8 * cfg.env.max_steps  # with a margin, not just within the limit


def test_the_historical_gains_reach_the_goal_from_few_reset_states() -> None:
    """Why the defaults moved: kp 2, kd 0.4 (damping ratio 0.14) rings around the goal."""
    cfg = RunConfig()
    starts = np.random.default_rng(7).uniform(-4, 4, (1000, 2))
    steps = steps_to_goal(PDPolicy(**HISTORICAL), starts, cfg)
    assert (steps > 0).mean() < 0.25
