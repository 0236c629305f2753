"""The training loop (``AgentTrainer``), ``run_training``, ``python -m calf``, and a short seeded
run showing that TD3 learning works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calf import Mode, PointMassParams, step_batch
from calf.__main__ import main
from calf.checkpoint import read_checkpoint
from calf.td3 import TD3
from calf.trainer import AgentTrainer, TrainerConfig, make_controller, run_training


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


def test_config_validation_and_controller_factory() -> None:
    with pytest.raises(ValueError, match="algo must be one of"):
        TrainerConfig(algo="sac")
    ctrl = make_controller(TrainerConfig(env=PointMassParams(max_action=2.0)))
    assert ctrl.max_action == 2.0 and ctrl.nominal_policy.max_action == 2.0


def test_run_training_summary(one_thread) -> None:
    cfg = TrainerConfig(
        seed=0, env=PointMassParams(max_steps=30), learning_starts=40, batch_size=16
    )
    summary = run_training(cfg, episodes=3, progress=False)
    assert summary["episodes"] == 3 and len(summary["episode_rewards"]) == 3
    assert summary["steps"] <= 90
    # CALF decides every step after the 40 random warm-up steps.
    assert summary["trainer"].controller.total_steps == summary["steps"] - 40 > 0
    rates = summary["certified_rate"] + summary["relax_rate"] + summary["fallback_rate"]
    assert rates == pytest.approx(1.0)


def test_python_m_calf_trains_and_saves(tmp_path: Path, capsys, one_thread) -> None:
    path = tmp_path / "agent.pt"
    assert main(["--episodes", "2", "--max-steps", "20", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "calf: 2 episodes" in out and "checkpoint" in out
    assert read_checkpoint(path, "calf")["kind"] == "calf"


def test_python_m_calf_rejects_bad_arguments(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--episodes", "0"])
    assert "must be positive" in capsys.readouterr().err
