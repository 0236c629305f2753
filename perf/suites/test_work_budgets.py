"""The work budgets fail when the app runs its loop references (each budget can fail). That the
optimised app keeps them at N = 5 and N = 100, leak slope included, is the unchanged-tree run of
the selftest (perf/suites/test_selftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def calf_perf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perf", *args],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip


def test_the_loop_reference_paths_break_the_budgets(tmp_path: Path) -> None:
    report = tmp_path / "budgets.json"
    proc = calf_perf(
        "budgets", "--early", "--mode", "reference", "--agents", "5", "30", "--frames", "40",
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
