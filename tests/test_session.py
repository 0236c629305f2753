"""``TrainingSession`` and ``python -m calf`` end to end: the run folder it writes, resuming,
the hooks the visual trainer uses, and bad input (one line on stderr, exit 2, nothing written)."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

import pytest
import torch

from calf.__main__ import main
from calf.config import RunConfig, apply_overrides, load_config
from calf.evaluation import Evaluator, frozen_copy
from calf.session import ResumeError, TrainingSession
from calf.trainer import make_controller

TINY = [
    "--max-steps", "40", "--td3.learning-starts", "30", "--td3.batch-size", "16",
    "--td3.replay-capacity", "2000", "--td3.hidden-dim", "16", "--eval.rollouts", "4",
    "--eval.max-steps", "60", "--train.eval-every", "2", "--train.checkpoint-every", "2",
    "--no-progress", "--no-figures",
]  # fmt: skip


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder with one torch thread (runs/ is created in the cwd)."""
    monkeypatch.chdir(tmp_path)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(previous)


def tiny_config(**values: object) -> RunConfig:
    return apply_overrides(
        RunConfig(),
        {
            "env.max_steps": 40,
            "td3.learning_starts": 30,
            "td3.batch_size": 16,
            "td3.replay_capacity": 2000,
            "td3.hidden_dim": 16,
            "eval.rollouts": 4,
            "eval.max_steps": 60,
            "train.eval_every": 2,
            "train.checkpoint_every": 2,
            **values,
        },
    )


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def records(folder: Path, kind: str) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_python_m_calf_writes_a_complete_run_folder(in_tmp: Path, capsys) -> None:
    assert main(["--episodes", "4", *TINY[:-1]]) == 0  # with figures
    out = capsys.readouterr().out
    assert "calf: 4 episodes" in out and "eval ep 4: CALF" in out
    latest = in_tmp / "runs" / "latest"
    folder = latest.resolve()
    assert latest.is_symlink() and folder.name.endswith("-calf-s0")

    cfg = load_config(folder / "config.toml")
    assert cfg.train.episodes == 4 and cfg.td3.hidden_dim == 16 and cfg.calf == RunConfig().calf
    episodes = records(folder, "episode")
    assert [r["episode"] for r in episodes] == [1, 2, 3, 4]
    assert sum(r["length"] for r in episodes) == episodes[-1]["global_step"]
    for r in episodes:
        shares = r["certified_share"] + r["relax_share"] + r["fallback_share"]
        assert shares + r["unchecked_share"] == pytest.approx(1.0)
    assert [r["episode"] for r in records(folder, "eval")] == [2, 4]  # no second one at exit

    latest_eval = json.loads((folder / "eval.json").read_text())
    assert latest_eval["episode"] == 4 and set(latest_eval) == {
        "episode",
        "calf",
        "actor",
        "nominal",
    }
    kept = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert kept == ["episode-000002.json", "episode-000002.pt", "episode-000004.json",
                    "episode-000004.pt"]  # fmt: skip
    make_controller(cfg).load(folder / "checkpoint.pt")
    figures = sorted(p.name for p in (folder / "figures").iterdir())
    assert figures == ["report-000002.png", "report-000004.png"]
    assert (folder / "report.png").read_bytes() == (folder / "figures" / figures[-1]).read_bytes()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "losses/qf_loss",
        "losses/actor_loss",
        "eval/calf_success_rate",
        "eval/nominal_success_rate",
    ):
        assert tag in tags, tag
    assert len(events.Scalars("charts/episodic_return")) == 4


def test_out_and_save(in_tmp: Path) -> None:
    assert main(["--episodes", "1", "--out", "mine", "--checkpoint", "extra.pt", *TINY]) == 0
    assert (in_tmp / "mine" / "config.toml").is_file() and (in_tmp / "extra.pt").is_file()
    assert not (in_tmp / "runs").exists()


def test_resume_continues_from_the_newest_checkpoint(in_tmp: Path) -> None:
    assert main(["--episodes", "3", "--out", "run", *TINY]) == 0
    run = in_tmp / "run"
    # Pretend the run died after episode 3's metrics but before its checkpoint.
    for suffix in (".pt", ".json"):
        (run / "checkpoints" / f"episode-000003{suffix}").unlink()
    step_at_2 = records(run, "episode")[1]["global_step"]

    assert main(["--resume", "run", "--episodes", "5", "--no-progress"]) == 0
    episodes = records(run, "episode")
    assert [r["episode"] for r in episodes] == [1, 2, 3, 4, 5]  # episode 3 replayed once
    assert episodes[2]["global_step"] > step_at_2
    assert [r["episode"] for r in records(run, "eval")] == [2, 4, 5]
    assert load_config(run / "config.toml").train.episodes == 5
    assert (run / "checkpoints" / "episode-000005.pt").is_file()


@pytest.mark.parametrize("how", ["edited config", "flag"])
def test_resume_with_networks_that_do_not_fit_is_refused_and_changes_nothing(
    in_tmp: Path, capsys, how: str
) -> None:
    assert main(["--episodes", "2", "--out", "run", *TINY]) == 0
    run = in_tmp / "run"
    extra = []
    if how == "edited config":
        text = (run / "config.toml").read_text().replace("hidden_dim = 16", "hidden_dim = 32")
        (run / "config.toml").write_text(text)
    else:
        extra = ["--td3.hidden-dim", "32"]
    before = snapshot(run)
    capsys.readouterr()
    assert main(["--resume", "run", "--episodes", "4", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume run" in err and "network shape" in err
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "bad.toml"], "bad.toml: calf.nu: unknown key (did you mean 'calf.nu_bar'?)"),
        (["--calf.nu-bar", "high"], "--calf.nu-bar: expected a number, got 'high'"),
        (["--calf.nu-bar", "-1"], "calf.nu_bar: must be >= 0.0, got -1.0"),
        (["--episodes", "0"], "train.episodes: must be >= 1, got 0"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--resume", "nowhere"], "cannot resume nowhere: nowhere is not a run folder"),
        (["--resume", "a", "--out", "b"], "drop --out"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    in_tmp: Path, capsys, argv: list[str], message: str
) -> None:
    (in_tmp / "bad.toml").write_text("[calf]\nnu = 1.0\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m calf: error: ")
    assert message in err
    assert sorted(os.listdir(in_tmp)) == ["bad.toml"]


def test_out_refuses_a_folder_that_holds_a_run(in_tmp: Path, capsys) -> None:
    assert main(["--episodes", "1", "--out", "run", *TINY]) == 0
    before = snapshot(in_tmp / "run")
    assert main(["--episodes", "1", "--out", "run", *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert snapshot(in_tmp / "run") == before


def test_print_config_is_the_resolved_toml(in_tmp: Path, capsys) -> None:
    assert main(["--print-config", "--calf.nu-bar", "0.3"]) == 0
    data = tomllib.loads(capsys.readouterr().out)
    assert data["calf"]["nu_bar"] == 0.3 and data["nominal"] == {"kp": 1.0, "kd": 1.0}
    assert os.listdir(in_tmp) == []


def test_a_session_without_a_folder_steps_evaluates_and_calls_its_hooks(in_tmp: Path) -> None:
    session = TrainingSession(tiny_config(), folder=None)
    seen: dict[str, list[int]] = {"episode": [], "eval": []}
    session.on_episode.append(lambda r: seen["episode"].append(r["episode"]))
    session.on_eval.append(lambda e: seen["eval"].append(e.episode))
    while session.trainer.episode < 3:
        session.step()
    session.close()
    session.close()  # twice is harmless
    assert seen == {"episode": [1, 2, 3], "eval": [2, 3]}
    assert session.last_eval is not None and session.last_eval.episode == 3
    assert len(session.episodes) == 3 and os.listdir(in_tmp) == []
    summary = session.summary()
    assert summary["episodes"] == 3 and summary["folder"] is None


def test_a_session_can_run_the_visual_trainers_own_controller(in_tmp: Path) -> None:
    cfg = tiny_config()
    controller = make_controller(cfg)
    session = TrainingSession(cfg, folder=None, controller=controller, learn=False)
    for _ in range(5):
        assert session.step().losses is None
    assert session.controller is controller and len(session.trainer.replay) == 0


def test_resume_errors_are_resume_errors(in_tmp: Path) -> None:
    with pytest.raises(ResumeError, match="is not a run folder"):
        TrainingSession.resume(in_tmp / "missing")


def test_an_interrupted_run_keeps_a_checkpoint_to_resume_from(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real_step = TrainingSession.step

    def step(self: TrainingSession):  # Ctrl-C in the third episode
        if self.trainer.episode == 2:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(TrainingSession, "step", step)
    argv = ["--episodes", "5", "--out", "run", *TINY, "--train.checkpoint-every", "10"]
    assert main(argv) == 130
    assert "interrupted after episode 2; continue with --resume run" in capsys.readouterr().err
    assert (in_tmp / "run" / "checkpoints" / "episode-000002.pt").is_file()


def run_session(folder: Path, background: bool, episodes: int = 4) -> TrainingSession:
    """A seeded tiny run to ``episodes`` episodes; in the background, one evaluation step per
    training step (the visual trainer gives it a slice of every frame)."""
    cfg = tiny_config(**{"train.episodes": episodes})
    session = TrainingSession.start(cfg, out=folder, background=background)
    while session.trainer.episode < episodes:
        session.step()
        session.advance(0.0)
    session.close()
    return session


def test_background_episode_ends_write_what_inline_ones_write(in_tmp: Path) -> None:
    inline = run_session(in_tmp / "inline", background=False)
    background = run_session(in_tmp / "background", background=True)
    a, b = in_tmp / "inline", in_tmp / "background"
    assert (a / "eval.json").read_text() == (b / "eval.json").read_text()
    for kind in ("episode", "eval"):
        strip = [{k: v for k, v in r.items() if k not in ("sps", "time")} for r in records(a, kind)]
        other = [{k: v for k, v in r.items() if k not in ("sps", "time")} for r in records(b, kind)]
        assert strip == other, kind
    assert [r["episode"] for r in records(b, "eval")] == [2, 4]
    for name in ("episode-000002.pt", "episode-000004.pt"):
        assert (a / "checkpoints" / name).read_bytes() == (b / "checkpoints" / name).read_bytes()
    assert (b / "checkpoint.pt").read_bytes() == (
        b / "checkpoints" / "episode-000004.pt"
    ).read_bytes()
    assert sorted(p.name for p in (b / "figures").iterdir()) == [
        "report-000002.png",
        "report-000004.png",
    ]
    assert inline.last_eval is not None and background.last_eval is not None
    assert inline.last_eval.to_json() == background.last_eval.to_json()
    assert not background.busy
    assert not [p for p in b.rglob(".*.tmp")]  # no temporary file left behind


def test_a_background_evaluation_is_of_the_weights_at_the_episode_end(in_tmp: Path) -> None:
    cfg = tiny_config(**{"train.episodes": 2, "train.eval_every": 1})
    session = TrainingSession(cfg, folder=None, background=True)
    seen: list[int] = []
    session.on_eval.append(lambda e: seen.append(e.episode))
    while session.trainer.episode < 1:
        session.step()
    weights = {k: v.clone() for k, v in session.controller.td3.actor.state_dict().items()}
    expected = Evaluator(cfg).evaluate(frozen_copy(session.controller.td3), 1).to_json()
    assert session.busy and seen == []
    for _ in range(30):  # training goes on while the evaluation advances
        session.step()
        session.advance(0.0)
    assert any(
        not torch.equal(weights[k], v) for k, v in session.controller.td3.actor.state_dict().items()
    )
    while session.busy:
        session.advance(1.0)
    assert seen == [1] and session.last_eval is not None
    assert session.last_eval.to_json() == expected
