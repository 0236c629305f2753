"""The deterministic part of ``calf-perf selftest`` in make test: every regression of the
catalogue that the work budgets, the stage-work budget or the leak gate must catch is caught,
and the unchanged tree (budgets at N = 5 and 100, stage work, leak slope) flags nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from perf.selftest import CATALOGUE, CHECKS

ROOT = Path(__file__).resolve().parents[2]


def test_selftest_catches_every_counted_regression_and_flags_nothing_unchanged(tmp_path):
    report = tmp_path / "selftest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "perf", "selftest", "--deterministic", "--jobs", "2",
         "--json", str(report)],
        capture_output=True, text=True, timeout=1500, cwd=ROOT,
    )  # fmt: skip
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["provenance"]["command"].startswith("calf-perf selftest")
    outcomes = {o["regression"]: o for o in data["outcomes"]}
    counted = [r for r in CATALOGUE if any(CHECKS[c].deterministic for c in r.checks)]
    assert len(counted) >= 10
    assert all(outcomes[r.name]["caught"] for r in counted)
    unchanged = outcomes["(unchanged tree)"]
    assert set(unchanged["checks"]) == {n for n, c in CHECKS.items() if c.deterministic}
    assert not unchanged["caught"]
