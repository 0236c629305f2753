"""The run writers: a worker process does the jobs in order and ``close`` waits for them; a
worker that dies is replaced and what it lost is named; nothing is half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calf.report import CriticGrid
from calf.run_folder import RunFolder
from calf.run_writer import BackgroundWriter, FolderJobs, InlineWriter, ReportParts


def episode(i: int) -> dict:
    return {"type": "episode", "episode": i, "global_step": 10 * i, "return": -float(i),
            "length": 10, "success": i % 2 == 0, "final_distance": 0.1}  # fmt: skip


def evaluation(i: int) -> dict:
    policy = {"success_rate": 1.0, "mean_steps_to_goal": 5.0, "mean_final_distance": 0.1,
              "mean_return": -3.0, "certified_share": None, "fallback_share": None}  # fmt: skip
    return {"episode": i, "calf": policy, "actor": policy, "nominal": policy}


def parts(i: int) -> ReportParts:
    xs = np.linspace(-1, 1, 5)
    return ReportParts(
        episode=i,
        title=f"report {i}",
        critic=CriticGrid(xs, xs, np.zeros((5, 5))),
        trajectories=None,
        trajectory_modes=None,
        replay_sample=np.zeros((10, 2)),
        replay_size=1000,
        init_range=1.0,
        goal_radius=0.2,
    )


def lines(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("make", [InlineWriter, BackgroundWriter])
def test_jobs_are_done_in_order_and_close_waits_for_them(tmp_path: Path, make) -> None:
    writer = make(RunFolder(tmp_path), figures=True)
    writer.restore([episode(1)])
    for i in range(2, 40):
        writer.episode(episode(i), np.linspace(0.0, -1.0, 10))
    writer.evaluation(evaluation(39), global_step=390)
    writer.report(parts(39))
    writer.checkpoint(39, b"weights", {"global_step": 390})
    assert writer.close() == []
    assert not writer.busy
    got = lines(tmp_path)
    assert [r["episode"] for r in got] == [*range(2, 40), 39]
    assert got[-1]["type"] == "eval" and got[-1]["global_step"] == 390
    assert json.loads((tmp_path / "eval.json").read_text()) == evaluation(39)
    assert (tmp_path / "checkpoints" / "episode-000039.pt").read_bytes() == b"weights"
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"weights"
    assert (tmp_path / "figures" / "report-000039.png").is_file()
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_draws_the_history_the_writer_kept(tmp_path: Path) -> None:
    jobs = FolderJobs(RunFolder(tmp_path))
    jobs.do(("restore", [episode(1), {"type": "eval", "global_step": 10, **evaluation(1)}]))
    for i in range(2, 9):
        jobs.do(("episode", episode(i), np.zeros(3) if i > 6 else None))
    assert [r["episode"] for r in jobs.episodes] == list(range(1, 9))
    assert jobs.evals == [evaluation(1)]
    assert [e for e, _ in jobs.q_cert_traces] == [7, 8]


def test_a_worker_that_dies_is_replaced_and_what_it_lost_is_named(tmp_path: Path, capsys) -> None:
    writer = BackgroundWriter(RunFolder(tmp_path), figures=False)
    writer.episode(episode(1), None)
    assert writer.close() == []  # the first line is written; the worker exits
    writer = BackgroundWriter(RunFolder(tmp_path), figures=False)
    writer._proc.kill()  # the worker dies (killed, out of memory, ...)
    writer._proc.wait()
    for i in (2, 3):
        writer.episode(episode(i), None)
    assert "run writer exited" in capsys.readouterr().err
    assert writer.close() == []
    assert [r["episode"] for r in lines(tmp_path)] == [1, 2, 3]


def test_close_names_what_it_could_not_finish_and_leaves_no_half_file(tmp_path: Path) -> None:
    writer = BackgroundWriter(RunFolder(tmp_path), figures=True)
    for i in range(1, 4):
        writer.report(parts(i))  # a second or more each
    dropped = writer.close(timeout_s=0.05)
    assert dropped and all(d.startswith("report of episode") for d in dropped)
    assert not list(tmp_path.rglob(".*.tmp"))
    for png in tmp_path.rglob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_failing_job_is_reported_and_the_next_ones_still_run(tmp_path: Path, capsys) -> None:
    writer = BackgroundWriter(RunFolder(tmp_path), figures=False)
    bad = evaluation(1)
    bad["calf"]["mean_return"] = float("nan")  # eval.json refuses NaN
    writer.evaluation(bad, global_step=10)
    writer.episode(episode(2), None)
    assert writer.close() == []
    assert "evaluation of episode 1 failed: ValueError" in capsys.readouterr().err
    assert [r["episode"] for r in lines(tmp_path)] == [2]
