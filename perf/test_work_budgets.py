"""The work budgets in make test: a seeded headless run at N = 5 and N = 100 within every
budget, the retained-memory slope under its limit, and the same budgets failing when the app
runs its loop references (each budget can fail)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def calf_perf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perf", *args],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip


def test_a_frame_stays_within_its_work_budgets_at_5_and_100_agents(tmp_path: Path) -> None:
    report = tmp_path / "budgets.json"
    proc = calf_perf("budgets", "--leak", "--json", str(report))
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data = json.loads(report.read_text())
    budgets = {(f["budget"], f["agents"]) for f in data["findings"]}
    assert ("forwards: visual agents (policy)", 100) in budgets
    assert any(b.startswith("retained Python memory") for b, _ in budgets)
    assert all(f["ok"] for f in data["findings"])
    assert {len(rows) for rows in data["frames"].values()} == {400}


def test_the_loop_reference_paths_break_the_budgets(tmp_path: Path) -> None:
    report = tmp_path / "budgets.json"
    proc = calf_perf(
        "budgets", "--mode", "reference", "--agents", "5", "30", "--frames", "40",
        "--warmup", "10", "--json", str(report),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    failed = {f["budget"] for f in json.loads(report.read_text())["findings"] if not f["ok"]}
    assert {
        "forwards: visual agents (policy)",  # N actor + N critic forwards
        "forwards: panel (ui)",  # the panel's own critic query
        "text layouts: panel",  # the whole text rebuilt and laid out every frame
        "uploads: trails",  # one rebuilt mesh per trail segment
        "draw calls",  # an entity per agent and per trail segment
    } <= failed, failed
