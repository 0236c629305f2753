"""The training loop (``AgentTrainer``), the controller factory, and a short seeded run showing
that TD3 learning works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calf import Mode, PointMassParams, step_batch
from calf.config import RunConfig, apply_overrides
from calf.td3 import TD3
from calf.trainer import AgentTrainer, make_controller


def run_config(**values: object) -> RunConfig:
    """The run's defaults with {'section.key': value} set (keys spelled with ``__``)."""
    return apply_overrides(RunConfig(), {k.replace("__", "."): v for k, v in values.items()})


@pytest.fixture
def one_thread():
    """Tiny networks: one torch thread is faster and gives reproducible sums."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def actor_only_final_distance(td3: TD3, starts: np.ndarray, steps: int = 300) -> float:
    """Mean |s| after ``steps`` steps of the deterministic actor alone (no CALF, no fallback)."""
    s = starts.copy()
    params = PointMassParams()
    for _ in range(steps):
        s = step_batch(s, td3.select_action_batch(s), params)[0]
    return float(np.linalg.norm(s, axis=1).mean())


def test_short_seeded_training_run_teaches_the_actor_to_reach_the_goal(one_thread) -> None:
    # Seed 2 learns clearly within 1500 updates (measured: 8.8 -> about 1.7).
    cfg = run_config(
        train__seed=2, env__max_steps=200, td3__learning_starts=500, td3__batch_size=64
    )
    trainer = AgentTrainer(cfg)
    starts = np.random.default_rng(123).uniform(-4.0, 4.0, size=(32, 2))
    untrained = actor_only_final_distance(trainer.controller.td3, starts)
    for _ in range(2000):
        trainer.step()
    trained = actor_only_final_distance(trainer.controller.td3, starts)
    assert trainer.controller.td3.total_it == 1500
    assert trained < 0.5 * untrained and trained < 3.0, (untrained, trained)


def test_step_before_and_after_learning_starts(one_thread) -> None:
    cfg = run_config(td3__learning_starts=20, td3__batch_size=8)
    trainer = AgentTrainer(cfg)
    for i in range(25):
        result = trainer.step()
        assert result.action.shape == (1,)
        # Random warm-up actions were not certified; after it every step has a CALF mode.
        if i < 20:
            assert result.mode is Mode.UNCHECKED
        else:
            assert result.mode in (Mode.CERTIFIED, Mode.RELAX, Mode.FALLBACK)
        assert (result.losses is None) == (i < 20)
        assert len(trainer.replay) == i + 1
    assert trainer.global_step == 25
    assert trainer.controller.td3.total_it == 5
    assert trainer.last_losses["critic_loss"] is not None


def test_updates_wait_for_a_full_batch_when_warm_up_is_shorter(one_thread) -> None:
    trainer = AgentTrainer(run_config(td3__learning_starts=5, td3__batch_size=16))
    losses = [trainer.step().losses for _ in range(20)]
    # Steps 0-14 hold fewer than 16 transitions when they would update.
    assert all(x is None for x in losses[:15])
    assert all(x is not None for x in losses[15:])
    assert trainer.controller.td3.total_it == 5


def test_episode_end_resets_env_and_certificate(one_thread) -> None:
    cfg = run_config(train__seed=1, env__max_steps=5, td3__learning_starts=1000)
    trainer = AgentTrainer(cfg)
    trainer.controller.select_action([1.0, 1.0])  # a first step is always certified
    assert trainer.controller.q_cert is not None
    results = [trainer.step() for _ in range(5)]
    assert [r.episode_ended for r in results] == [False] * 4 + [True]
    assert trainer.episode == 1 and len(trainer.episode_rewards) == 1
    assert trainer.episode_rewards[0] == pytest.approx(sum(r.reward for r in results))
    assert trainer.controller.q_cert is None
    assert trainer.episode_reward == 0.0
    assert trainer.success_rate == 0.0


def test_td3_algo_acts_with_the_actor_only(one_thread) -> None:
    cfg = run_config(
        train__algo="td3", td3__learning_starts=0, td3__exploration_noise=0.0, td3__batch_size=1
    )
    trainer = AgentTrainer(cfg)
    state = trainer.state.copy()
    result = trainer.step()
    assert result.mode is Mode.UNCHECKED
    np.testing.assert_array_equal(result.action, trainer.controller.td3.select_action(state))
    assert trainer.controller.total_steps == 0  # the CALF rule was not used


def test_evaluation_mode_neither_stores_nor_learns(one_thread) -> None:
    trainer = AgentTrainer(run_config(td3__learning_starts=0), learn=False)
    for _ in range(10):
        assert trainer.step().losses is None
    assert len(trainer.replay) == 0 and trainer.controller.td3.total_it == 0
    assert trainer.controller.total_steps == 10


def test_controller_factory_takes_the_action_bound_and_explicit_overrides() -> None:
    ctrl = make_controller(run_config(env__max_action=2.0))
    assert ctrl.max_action == 2.0 and ctrl.nominal_policy.max_action == 2.0
    ctrl = make_controller(RunConfig(), nu_bar=0.01, dtype=torch.float64)
    assert ctrl.nu_bar == 0.01 and ctrl.td3.dtype == torch.float64
    assert ctrl.kappa_up_coef == RunConfig().calf.kappa_up_coef


def test_the_controller_takes_every_setting_from_the_config() -> None:
    cfg = apply_overrides(
        RunConfig(),
        {
            "calf.nu_bar": 0.2,
            "calf.kappa_low_coef": 0.02,
            "calf.kappa_up_coef": 30.0,
            "calf.lambda_relax": 0.9,
            "calf.relax_prob_init": 0.5,
            "nominal.kp": 3.0,
            "nominal.kd": 2.0,
            "td3.hidden_dim": 16,
            "td3.discount": 0.9,
            "td3.tau": 0.01,
            "td3.policy_delay": 3,
            "td3.lr": 1e-3,
        },
    )
    ctrl = make_controller(cfg)
    assert (ctrl.nu_bar, ctrl.kappa_low_coef, ctrl.kappa_up_coef) == (0.2, 0.02, 30.0)
    assert (ctrl.lambda_relax, ctrl.relax_prob_init, ctrl.P_relax) == (0.9, 0.5, 0.5)
    assert (ctrl.nominal_policy.kp, ctrl.nominal_policy.kd) == (3.0, 2.0)
    td3 = ctrl.td3
    assert (td3.hidden_dim, td3.discount, td3.tau, td3.policy_delay, td3.lr) == (
        16,
        0.9,
        0.01,
        3,
        1e-3,
    )


def test_episode_length_counts_the_steps_of_the_running_episode(one_thread) -> None:
    trainer = AgentTrainer(apply_overrides(RunConfig(), {"env.max_steps": 4}))
    lengths = []
    for _ in range(6):
        trainer.step()
        lengths.append(trainer.episode_length)
    assert lengths == [1, 2, 3, 0, 1, 2]
