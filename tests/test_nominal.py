"""The PD nominal policy on one state and on a batch, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from calf import PDPolicy, pd_nominal_policy


def test_single_state_gives_one_action() -> None:
    pd = pd_nominal_policy()
    a = pd(np.array([1.0, 0.5]))
    assert a.shape == (1,) and a.dtype == np.float64
    assert a.tolist() == [-2.0 * 1.0 - 0.4 * 0.5]


def test_batch_gives_one_action_per_row_equal_to_single_calls() -> None:
    pd = pd_nominal_policy(max_action=5.0, kp=2.0, kd=0.4)
    states = np.random.default_rng(0).uniform(-4, 4, (50, 2))
    batch = pd(states)
    assert batch.shape == (50, 1)
    np.testing.assert_array_equal(batch, np.stack([pd(s) for s in states]))
    np.testing.assert_array_equal(
        batch[:, 0], np.clip(-2.0 * states[:, 0] - 0.4 * states[:, 1], -5, 5)
    )


def test_output_is_clipped_to_max_action() -> None:
    pd = pd_nominal_policy(max_action=1.5)
    assert pd([10.0, 10.0]).tolist() == [-1.5]
    assert pd([-10.0, 0.0]).tolist() == [1.5]
    assert pd(np.array([[10.0, 0.0], [0.1, 0.0]])).tolist() == [[-1.5], [-0.2]]


def test_empty_batch_and_list_input() -> None:
    pd = pd_nominal_policy()
    assert pd(np.zeros((0, 2))).shape == (0, 1)
    assert pd([[0.0, 0.0]]).tolist() == [[0.0]]


def test_gains_and_batch_flag() -> None:
    pd = pd_nominal_policy(max_action=3.0, kp=1.0, kd=2.0)
    assert isinstance(pd, PDPolicy) and pd.accepts_batch
    assert (pd.max_action, pd.kp, pd.kd) == (3.0, 1.0, 2.0)
    assert pd([0.5, 0.5]).tolist() == [-1.5]


@pytest.mark.parametrize(
    "bad", [np.zeros(3), np.zeros((4, 3)), np.zeros((2, 2, 2)), np.float64(1.0)]
)
def test_bad_shapes_raise(bad) -> None:
    with pytest.raises(ValueError, match=r"expects a state \(2,\) or states \(N, 2\)"):
        pd_nominal_policy()(bad)
