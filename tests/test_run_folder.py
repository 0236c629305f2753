"""Run folders: names, the atomically replaced ``latest`` link, kept checkpoints with their
progress, metrics lines that survive a torn write, and refusals that change nothing."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from calf.config import RunConfig, apply_overrides
from calf.run_folder import RunFolder, RunFolderError

WHEN = datetime(2026, 3, 4, 5, 6, 7)


def test_new_folders_are_named_by_time_algo_and_seed_and_latest_follows(tmp_path: Path) -> None:
    cfg = apply_overrides(RunConfig(), {"train.algo": "td3", "train.seed": 4})
    first = RunFolder.create(tmp_path, cfg, now=WHEN)
    assert first.path == tmp_path / "20260304-050607-td3-s4" and first.path.is_dir()
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == first.path.resolve()
    second = RunFolder.create(tmp_path, cfg, now=WHEN)  # same second: a suffix, not a clash
    assert second.path.name == "20260304-050607-td3-s4-2"
    assert latest.resolve() == second.path.resolve()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp link


def test_a_real_latest_folder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "keep.txt").write_text("mine")
    folder = RunFolder.create(tmp_path, RunConfig(), now=WHEN)
    assert (tmp_path / "latest" / "keep.txt").read_text() == "mine"
    assert folder.latest_linked is False and folder.path.is_dir()


def test_out_refuses_a_folder_that_holds_a_run(tmp_path: Path) -> None:
    folder = RunFolder.at(tmp_path / "mine")
    folder.write_config(RunConfig())
    before = folder.config_path.read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run; use --resume"):
        RunFolder.at(tmp_path / "mine")
    assert folder.config_path.read_bytes() == before
    assert RunFolder.at(tmp_path / "empty").path.is_dir()


def test_config_is_written_and_read_back(tmp_path: Path) -> None:
    cfg = apply_overrides(RunConfig(), {"calf.nu_bar": 0.5})
    folder = RunFolder.at(tmp_path)
    folder.write_config(cfg)
    assert RunFolder.existing(tmp_path).read_config() == cfg
    with pytest.raises(RunFolderError, match="is not a run folder"):
        RunFolder.existing(tmp_path / "nothing")


def test_checkpoints_are_kept_numbered_with_their_progress(tmp_path: Path) -> None:
    folder = RunFolder.at(tmp_path)
    with pytest.raises(RunFolderError, match="holds no checkpoint"):
        folder.newest_checkpoint()

    def save(path: Path) -> None:
        path.write_bytes(f"weights of {path.name}".encode())

    for episode in (10, 20, 5):
        folder.save_checkpoint(save, episode, {"global_step": episode * 100})
    kept = folder.checkpoints()
    assert [c.episode for c in kept] == [5, 10, 20]
    newest = folder.newest_checkpoint()
    assert newest.path == tmp_path / "checkpoints" / "episode-000020.pt"
    assert newest.progress == {"episode": 20, "global_step": 2000}
    # checkpoint.pt is the last one written.
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"weights of episode-000005.pt"


def test_a_failed_checkpoint_write_leaves_the_old_files(tmp_path: Path) -> None:
    folder = RunFolder.at(tmp_path)
    folder.save_checkpoint(lambda p: p.write_bytes(b"good"), 10, {})

    def broken(path: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folder.save_checkpoint(broken, 20, {})
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"good"
    assert folder.newest_checkpoint().episode == 10


def test_metrics_lines_are_read_back_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    folder = RunFolder.at(tmp_path)
    for episode in (1, 2, 3):
        folder.append_metrics({"type": "episode", "episode": episode})
    folder.append_metrics({"type": "eval", "episode": 3})
    with open(folder.metrics_path, "a") as fh:
        fh.write('{"type": "episode", "epis')  # a crash mid-line
    assert [r["episode"] for r in folder.read_metrics()] == [1, 2, 3, 3]
    kept = folder.keep_metrics_until(2)
    assert [r["episode"] for r in kept] == [1, 2]
    assert folder.metrics_path.read_text().count("\n") == 2


def test_eval_json_is_whole_json(tmp_path: Path) -> None:
    folder = RunFolder.at(tmp_path)
    folder.write_eval({"episode": 5, "calf": {"success_rate": 1.0}})
    assert json.loads(folder.eval_path.read_text())["episode"] == 5
    with pytest.raises(ValueError):
        folder.write_eval({"episode": 6, "calf": {"success_rate": float("nan")}})
    assert json.loads(folder.eval_path.read_text())["episode"] == 5
