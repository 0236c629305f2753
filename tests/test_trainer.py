"""The training loop (``AgentTrainer``), the controller factory, the legacy ``TrainerConfig``,
and a short seeded run showing that TD3 learning works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calf import Mode, PointMassParams, step_batch
from calf.config import RunConfig, apply_overrides
from calf.td3 import TD3
from calf.trainer import AgentTrainer, TrainerConfig, as_run_config, make_controller


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
    cfg = TrainerConfig(
        seed=2, env=PointMassParams(max_steps=200), learning_starts=500, batch_size=64
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
    cfg = TrainerConfig(seed=0, learning_starts=20, batch_size=8)
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
    trainer = AgentTrainer(TrainerConfig(seed=0, learning_starts=5, batch_size=16))
    losses = [trainer.step().losses for _ in range(20)]
    # Steps 0-14 hold fewer than 16 transitions when they would update.
    assert all(x is None for x in losses[:15])
    assert all(x is not None for x in losses[15:])
    assert trainer.controller.td3.total_it == 5


def test_episode_end_resets_env_and_certificate(one_thread) -> None:
    cfg = TrainerConfig(seed=1, env=PointMassParams(max_steps=5), learning_starts=1000)
    trainer = AgentTrainer(cfg)
    trainer.controller.update_certificate([1.0, 1.0], [0.0], q_value=-1.0)
    results = [trainer.step() for _ in range(5)]
    assert [r.episode_ended for r in results] == [False] * 4 + [True]
    assert trainer.episode == 1 and len(trainer.episode_rewards) == 1
    assert trainer.episode_rewards[0] == pytest.approx(sum(r.reward for r in results))
    assert trainer.controller.q_cert is None
    assert trainer.episode_reward == 0.0
    assert trainer.success_rate == 0.0


def test_td3_algo_acts_with_the_actor_only(one_thread) -> None:
    cfg = TrainerConfig(algo="td3", seed=0, learning_starts=0, exploration_noise=0.0, batch_size=1)
    trainer = AgentTrainer(cfg)
    state = trainer.state.copy()
    result = trainer.step()
    assert result.mode is Mode.UNCHECKED
    np.testing.assert_array_equal(result.action, trainer.controller.td3.select_action(state))
    assert trainer.controller.total_steps == 0  # the CALF rule was not used


def test_evaluation_mode_neither_stores_nor_learns(one_thread) -> None:
    cfg = TrainerConfig(seed=0, learn=False, learning_starts=0)
    trainer = AgentTrainer(cfg)
    for _ in range(10):
        assert trainer.step().losses is None
    assert len(trainer.replay) == 0 and trainer.controller.td3.total_it == 0
    assert trainer.controller.total_steps == 10


def test_legacy_config_validation_and_controller_factory() -> None:
    with pytest.raises(ValueError, match="algo must be one of"):
        TrainerConfig(algo="sac")
    ctrl = make_controller(TrainerConfig(env=PointMassParams(max_action=2.0)))
    assert ctrl.max_action == 2.0 and ctrl.nominal_policy.max_action == 2.0
    legacy = TrainerConfig(seed=4, learning_starts=7, env=PointMassParams(max_steps=9))
    cfg = as_run_config(legacy)
    assert (cfg.train.seed, cfg.td3.learning_starts, cfg.env.max_steps) == (4, 7, 9)
    assert cfg.calf == RunConfig().calf and cfg.nominal == RunConfig().nominal
    assert as_run_config(cfg) is cfg


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
