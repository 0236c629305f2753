"""The Stage-4 gate: real headless runs of the visual trainer, reference vs optimised,
interleaved, checked by ``calf-perf compare --check`` (ratios and exact counts only).

And the gate is tested: with the optimised run switched onto the reference paths, it must fail.
The comparisons run early (``--early``): they are ratios of two code paths, which a run's age
does not change, and the loop references would take minutes to fill a late run's trails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def calf_perf(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_stage4_gate_passes(tmp_path: Path, quick: bool) -> None:
    report = tmp_path / "report.json"
    rounds, frames = ("2", "150") if quick else ("3", "300")
    proc = calf_perf(
        "compare", "--agents", "5", "20", "30", "--rounds", rounds, "--frames", frames,
        "--warmup", "30", "--json", str(report), "--plot", str(tmp_path / "scaling.png"),
        "--check", "--early",
    )  # fmt: skip
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(report.read_text())
    assert {r["mode"] for r in data["runs"]} == {"optimised", "reference"}
    assert len(data["runs"]) == 6 * int(rounds)
    assert data["targets"] and all(t["ok"] for t in data["targets"])
    # Every measured frame carried the training agent's TD3 update.
    assert all(r["training_forward_passes_per_frame"] > 0 for r in data["runs"])
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_gate_fails_when_the_optimised_run_takes_the_reference_paths(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = calf_perf(
        "compare", "--agents", "5", "30", "--rounds", "1", "--frames", "60", "--warmup", "10",
        "--early", "--json", str(report), "--check", "--extra", "--reference", "calf,trails",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    failed = {t["name"] for t in json.loads(report.read_text())["targets"] if not t["ok"]}
    assert any("forward passes per frame, optimised" in name for name in failed), failed
    assert any("draw calls per frame, optimised" in name for name in failed), failed
    assert "Stage-4 target(s) failed" in proc.stderr


def test_short_soak_with_agent_churn_keeps_memory_and_scene_flat(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    proc = calf_perf(
        "soak", "--agents", "10", "--frames", "500", "--warmup", "300", "--sample-every", "50",
        "--churn", "--churn-every", "20", "--json", str(report), "--check",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(report.read_text())
    agents = {s["agents"] for s in data["record"]["series"]}
    assert len(agents) > 1  # the churn really changed the number of agents
    assert all(t["ok"] for t in data["targets"])
