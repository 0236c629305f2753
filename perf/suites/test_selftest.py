"""The quick deterministic part of ``calf-perf selftest`` in make test: for each counted check
(stage work, work budgets, leak slope, growth) its first regression of the catalogue is caught,
and the unchanged tree (budgets at N = 5 and 100, stage work, leak slope, growth) flags nothing.
The whole catalogue runs in the nightly workflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from perf.selftest import CATALOGUE, CHECKS, first_per_check

ROOT = Path(__file__).resolve().parents[2]


def test_selftest_catches_a_regression_for_each_counted_check_and_flags_nothing_unchanged(tmp_path):
    report = tmp_path / "selftest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "perf", "selftest", "--deterministic", "--quick", "--jobs", "2",
         "--json", str(report)],
        capture_output=True, text=True, timeout=1500, cwd=ROOT,
    )  # fmt: skip
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["provenance"]["command"].startswith("calf-perf selftest")
    outcomes = {o["regression"]: o for o in data["outcomes"]}
    counted = {n for n, c in CHECKS.items() if c.deterministic}
    shown = [r for r in first_per_check(CATALOGUE) if counted & set(r.checks)]
    assert counted == {c for r in shown for c in r.checks} & counted  # every counted check
    assert all(outcomes[r.name]["caught"] for r in shown)
    assert len(outcomes) == len(shown) + 1
    unchanged = outcomes["(unchanged tree)"]
    assert set(unchanged["checks"]) == counted
    assert not unchanged["caught"]
