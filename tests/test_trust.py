"""calf-perf trust's bookkeeping: what counts as a false alarm, the rate, the power, the
reading of an ab report; the injections still apply to this tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from perf.trust import INJECTIONS, TrustRun, _read, summarize, table, to_json

ROOT = Path(__file__).resolve().parents[1]


def test_anything_flagged_on_unchanged_code_is_a_false_alarm_and_exit_3_is_not() -> None:
    runs = [
        TrustRun(1, 0, 90.0),
        TrustRun(2, 0, 90.0, improvements=["bench x"]),  # noise called an improvement
        TrustRun(3, 1, 90.0, regressions=["frame p50 N=20"]),
        TrustRun(4, 3, 90.0),  # inconclusive: too noisy, said so
    ]
    s = summarize(runs, "none")
    assert (s.false_alarms, s.inconclusive, s.flagged) == (2, 1, 1)
    assert s.false_alarm_rate == pytest.approx(0.5)
    flagged = summarize(runs, "frame")
    assert flagged.false_alarms == 0 and flagged.power == pytest.approx(0.25)
    assert "bench x (improved)" in "\n".join(table(runs))
    json.dumps(to_json(runs, s, budget=0.2), allow_nan=False)


def test_an_ab_report_is_read_for_what_stands(tmp_path: Path) -> None:
    report = tmp_path / "ab.json"
    report.write_text(json.dumps({
        "verdict": "regression: physics time N=20, physics share N=20",
        "decisions": [
            {"metric": "physics time N=20", "verdict": "regression", "stands": True,
             "family": "section", "mde": 0.06},
            {"metric": "ui share N=20", "verdict": "regression", "stands": False,
             "family": "section", "mde": 0.08},
            {"metric": "bench b", "verdict": "unchanged", "family": "micro", "mde": "inf"},
        ],
        "counts": [{"metric": "draw_calls N=20", "verdict": "unchanged"}],
        "calibrations": [{"where": "trails", "caught": True}],
    }))  # fmt: skip
    proc = subprocess.CompletedProcess([], 1, "", "")
    run = _read(1, proc, 80.0, report)
    assert run.regressions == ["physics time N=20"]  # the unconfirmed share does not stand
    assert run.calibrations == {"trails": True}
    assert run.detectable == {"section": pytest.approx(0.07)}
    assert run.false_alarm


@pytest.mark.parametrize("name", ["frame", "micro", "both"])
def test_the_injections_apply_to_this_tree(name: str) -> None:
    assert INJECTIONS[name]
    for injection in INJECTIONS[name]:
        assert (ROOT / injection.path).read_text().count(injection.old) == 1
