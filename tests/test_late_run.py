"""``calf.late_run``: a fresh session taken to a long run's state goes on like one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from calf.config import RunConfig, apply_overrides
from calf.late_run import LATE_EPISODE_STEPS, age, synthetic_records
from calf.session import TrainingSession


@pytest.fixture
def cfg() -> RunConfig:
    return apply_overrides(
        RunConfig(),
        {"env.max_steps": 40, "td3.learning_starts": 30, "td3.batch_size": 16,
         "td3.replay_capacity": 3000, "td3.hidden_dim": 16, "eval.rollouts": 4,
         "eval.max_steps": 60, "train.eval_every": 5, "train.checkpoint_every": 10},
    )  # fmt: skip


def test_records_are_in_run_order_with_an_evaluation_every_eval_every() -> None:
    records = synthetic_records(12, eval_every=5)
    kinds = [(r["type"], r["episode"]) for r in records]
    assert kinds[:6] == [("episode", i) for i in range(1, 6)] + [("eval", 5)]
    assert [e for t, e in kinds if t == "eval"] == [5, 10]
    assert records[-1]["global_step"] == 12 * LATE_EPISODE_STEPS


@pytest.mark.parametrize("background", [False, True])
def test_an_aged_session_has_a_long_runs_state_and_goes_on(
    cfg: RunConfig, tmp_path: Path, background: bool
) -> None:
    torch.set_num_threads(1)
    session = TrainingSession.start(cfg, out=tmp_path / "run", background=background)
    age(session, episodes=50)
    tr = session.trainer
    assert len(tr.replay) == tr.replay.capacity
    assert tr.episode == 50 and tr.global_step == 50 * LATE_EPISODE_STEPS
    assert len(tr.episode_rewards) == 50 and len(session.evals) == 10
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert kept == [f"episode-{e:06d}.pt" for e in (10, 20, 30, 40, 50)]
    while tr.episode < 55:  # an evaluation falls due at 55
        session.step()
        session.advance(1.0)
    session.close()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    episodes = [r["episode"] for r in lines if r["type"] == "episode"]
    assert episodes == list(range(1, 56))
    assert [r["episode"] for r in lines if r["type"] == "eval"][-2:] == [50, 55]
    assert (tmp_path / "run" / "figures" / "report-000055.png").is_file()
