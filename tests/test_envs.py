"""The point mass: gymnasium's checker, a hand-computed RK4 step, reward, termination and
truncation, seeding, and the batched N-row version."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from calf import PointMassBatch, PointMassEnv, PointMassParams, rk4_step, step_batch
from calf.envs import reward_fn


@pytest.mark.filterwarnings("ignore:.*WARN")  # advisory: unbounded Box, asymmetric actions
def test_gymnasium_env_checker_passes() -> None:
    check_env(PointMassEnv())


def test_spaces() -> None:
    env = PointMassEnv()
    assert env.observation_space.shape == (2,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (1,)
    assert env.action_space.low.tolist() == [-5.0] and env.action_space.high.tolist() == [5.0]


def test_rk4_step_equals_a_hand_computed_step() -> None:
    s, a, dt = np.array([[1.0, -2.0]]), np.array([[3.0]]), 0.01
    # ds/dt = [v, a] with a held: k1 = [v, a], k2 = k3 = [v + dt/2 a, a], k4 = [v + dt a, a]
    x, v = 1.0, -2.0
    k1, k2, k3, k4 = (
        (v, 3.0),
        (v + 0.5 * dt * 3.0, 3.0),
        (v + 0.5 * dt * 3.0, 3.0),
        (v + dt * 3.0, 3.0),
    )
    x_next = x + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
    v_next = v + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    np.testing.assert_allclose(rk4_step(s, a, dt), [[x_next, v_next]], rtol=0, atol=1e-15)
    # RK4 is exact for constant acceleration: x + v dt + a dt^2 / 2, v + a dt.
    np.testing.assert_allclose(
        rk4_step(s, a, dt), [[1.0 - 0.02 + 1.5e-4, -2.0 + 0.03]], rtol=0, atol=1e-14
    )


def test_rk4_step_is_row_wise() -> None:
    rng = np.random.default_rng(0)
    s, a = rng.normal(size=(20, 2)), rng.normal(size=(20, 1))
    np.testing.assert_array_equal(
        rk4_step(s, a, 0.01),
        np.concatenate([rk4_step(s[i : i + 1], a[i : i + 1], 0.01) for i in range(20)]),
    )


def test_env_step_uses_rk4_and_the_reward_formula() -> None:
    env = PointMassEnv()
    obs, info = env.reset(options={"state": [3.0, 4.0]})
    assert obs.tolist() == [3.0, 4.0] and info == {}
    obs, reward, terminated, truncated, info = env.step(np.array([2.0], dtype=np.float32))
    assert reward == pytest.approx(-5.0 - 0.01 * 4.0, abs=1e-12)  # charged on the old state
    assert obs.dtype == np.float32 and obs in env.observation_space
    np.testing.assert_allclose(
        obs, rk4_step(np.array([[3.0, 4.0]]), np.array([[2.0]]), 0.01)[0], rtol=1e-6
    )
    assert not terminated and not truncated and info == {}


def test_actions_are_clipped_before_reward_and_dynamics() -> None:
    env = PointMassEnv()
    env.reset(options={"state": [0.0, 1.0]})
    _, reward, *_ = env.step([50.0])
    assert reward == pytest.approx(-1.0 - 0.01 * 25.0)
    assert env.state[1] == pytest.approx(1.0 + 5.0 * 0.01)


def test_reward_fn_per_row() -> None:
    s = np.array([[3.0, 4.0], [0.0, 0.0]])
    a = np.array([[1.0], [-2.0]])
    np.testing.assert_allclose(reward_fn(s, a), [-5.01, -0.04])


def test_terminated_inside_the_goal_radius() -> None:
    env = PointMassEnv()
    env.reset(options={"state": [0.1, 0.0]})
    _, _, terminated, truncated, _ = env.step([0.0])
    assert terminated and not truncated
    env.reset(options={"state": [0.3, 0.0]})
    _, _, terminated, _, _ = env.step([0.0])
    assert not terminated


def test_truncated_at_the_step_limit() -> None:
    env = PointMassEnv(max_steps=3)
    env.reset(options={"state": [2.0, 0.0]})
    flags = [env.step([0.0])[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    env.reset(options={"state": [2.0, 0.0]})
    assert env.step([0.0])[3] is False  # reset restarts the count


def test_truncated_when_leaving_the_boundary() -> None:
    env = PointMassEnv()
    env.reset(options={"state": [9.99, 5.0]})
    _, _, terminated, truncated, _ = env.step([0.0])
    assert truncated and not terminated
    env.reset(options={"state": [0.0, 9.99]})
    assert env.step([5.0])[3]  # |v| > 10


def test_reset_with_a_seed_is_reproducible() -> None:
    env = PointMassEnv()
    a, _ = env.reset(seed=3)
    later = [env.reset()[0] for _ in range(3)]
    b, _ = env.reset(seed=3)
    assert a.tolist() == b.tolist()
    assert [env.reset()[0].tolist() for _ in range(3)] == [x.tolist() for x in later]
    c, _ = env.reset(seed=4)
    assert c.tolist() != a.tolist()
    assert all(np.abs(x).max() <= 4.0 for x in later)


def test_overrides_and_params() -> None:
    env = PointMassEnv(PointMassParams(dt=0.02), max_steps=7)
    assert env.params.dt == 0.02 and env.params.max_steps == 7


@pytest.mark.parametrize("bad", [[np.nan], [1.0, 2.0], [[np.inf]]])
def test_bad_action_raises(bad) -> None:
    env = PointMassEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one finite number"):
        env.step(bad)


# ---------------------------------------------------------------- batched
def test_step_batch_equals_single_env_steps() -> None:
    rng = np.random.default_rng(1)
    states, actions = rng.uniform(-4, 4, (30, 2)), rng.uniform(-7, 7, (30, 1))
    nxt, rewards, reached, outside = step_batch(states, actions, PointMassParams())
    for i in range(30):
        env = PointMassEnv()
        env.reset(options={"state": states[i]})
        env.step(actions[i])
        np.testing.assert_array_equal(nxt[i], env.state)
    assert rewards.shape == reached.shape == outside.shape == (30,)
    assert step_batch(states, actions[:, 0], PointMassParams())[0].tolist() == nxt.tolist()


def test_step_batch_rejects_mismatched_actions() -> None:
    with pytest.raises(ValueError, match="one action per state"):
        step_batch(np.zeros((3, 2)), np.zeros(2), PointMassParams())
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        step_batch(np.zeros((3, 3)), np.zeros(3), PointMassParams())


def test_batch_add_remove_reset_rows_and_step() -> None:
    batch = PointMassBatch(4, PointMassParams(max_steps=5), rng=np.random.default_rng(0))
    assert len(batch) == 4 and batch.states.shape == (4, 2)
    assert np.abs(batch.states).max() <= 4.0
    batch.add(2)
    assert len(batch) == 6 and batch.steps.tolist() == [0] * 6
    first = batch.states.copy()
    nxt, rewards, done = batch.step(np.zeros(6))
    assert nxt.shape == (6, 2) and rewards.shape == (6,) and done.shape == (6,)
    np.testing.assert_array_equal(nxt, step_batch(first, np.zeros(6), batch.params)[0])
    assert batch.steps.tolist() == [1] * 6

    kept = batch.states[[0, 2, 3, 5]].copy()
    batch.remove([1, 4])
    np.testing.assert_array_equal(batch.states, kept)
    batch.remove(np.array([False, True, False, False]))
    np.testing.assert_array_equal(batch.states, kept[[0, 2, 3]])
    batch.remove([])
    assert len(batch) == 3

    before = batch.states.copy()
    batch.reset_rows(np.array([False, True, False]))
    assert batch.steps.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(batch.states[[0, 2]], before[[0, 2]])
    assert not np.array_equal(batch.states[1], before[1])
    batch.reset_rows([])
    batch.reset_rows([0])
    assert batch.steps.tolist() == [0, 0, 1]


def test_batch_done_flags_goal_boundary_and_step_limit() -> None:
    batch = PointMassBatch(0, PointMassParams(max_steps=2))
    batch.states = np.array([[0.05, 0.0], [9.99, 5.0], [2.0, 0.0]])
    batch.steps = np.zeros(3, dtype=np.int64)
    _, _, done = batch.step(np.zeros(3))
    assert done.tolist() == [True, True, False]
    _, _, done = batch.step(np.zeros(3))
    assert done[2]  # step limit


def test_empty_batch_steps() -> None:
    batch = PointMassBatch(0)
    nxt, rewards, done = batch.step(np.zeros((0, 1)))
    assert nxt.shape == (0, 2) and rewards.shape == (0,) and done.shape == (0,)
    batch.add(0)
    batch.reset_rows(np.zeros(0, dtype=bool))
    assert len(batch) == 0


def test_batch_is_reproducible_with_a_seeded_rng() -> None:
    a = PointMassBatch(5, rng=np.random.default_rng(9))
    b = PointMassBatch(5, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a.states, b.states)
