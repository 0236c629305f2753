"""``calf-perf trust``: the false-alarm rate and the power of ``calf-perf ab``, measured.

A gate that fails unchanged code gets switched off, and a null measured once on one quiet
machine does not hold on the next. So the rate is a measurement, taken where the gate runs:
``runs`` runs of ``calf-perf ab`` in a temporary copy of this tree, each comparing a commit
against its parent, quiet or beside the noise generator (``--noise``, ``perf.noise``):

- ``--inject none``: the commit changes nothing. Any regression or improvement flagged (frame,
  section, micro-benchmark or count) is a false alarm; exit 3 (inconclusive) is counted apart.
- ``--inject frame``: the commit adds about 10 % of an N = 20 frame as busy work in the physics
  stage (the selftest's timed regression); the power is the share of runs flagging it.
- ``--inject micro``: the commit makes the heights interpolation (the benchmark
  ``bench_heatmap.py::test_agent_heights[*-vectorized]``) do its work twice;
- ``--inject both``: both in one commit (one run measures both powers: the table says which
  were flagged).

The table gives every run's exit, what it flagged, its calibrations and the change each metric
family could have detected. With ``--inject none`` the command exits 1 when the false-alarm
rate exceeds ``--budget`` (the nightly job's verdict).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf.runner import RUN_ENV
from perf.selftest import CATALOGUE, Regression, _git, apply, copies

_HEIGHTS = (
    "        return self._heights_unchecked("
    "self._interpolate_checked(self._states_array(states)))\n"
)
_FRAME = next(r for r in CATALOGUE if r.checks == ("ab",))
_MICRO = Regression(
    "the heights interpolation done twice", "micro-benchmark 2x slower", "visuals/heatmap.py",
    _HEIGHTS,
    "        self._interpolate_checked(self._states_array(states))\n" + _HEIGHTS,
    ("ab",),
)  # fmt: skip
INJECTIONS: dict[str, tuple[Regression, ...]] = {
    "none": (),
    "frame": (_FRAME,),
    "micro": (_MICRO,),
    "both": (_FRAME, _MICRO),
}


@dataclass
class TrustRun:
    """One ``calf-perf ab`` run: its exit and what it said."""

    index: int
    exit: int
    seconds: float
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    calibrations: dict[str, bool] = field(default_factory=dict)
    detectable: dict[str, float] = field(default_factory=dict)  # family -> median mde
    verdict: str = ""

    @property
    def false_alarm(self) -> bool:
        return self.exit == 1 or bool(self.regressions or self.improvements)


def _read(
    index: int, proc: subprocess.CompletedProcess[str], seconds: float, out: Path
) -> TrustRun:
    run = TrustRun(index, proc.returncode, seconds)
    if not out.is_file():
        run.verdict = ((proc.stdout + proc.stderr).strip().splitlines() or ["no output"])[-1]
        return run
    data = json.loads(out.read_text())
    run.verdict = str(data["verdict"])
    decisions = [d for d in data["decisions"] if d.get("stands", True)] + data["counts"]
    run.regressions = [d["metric"] for d in decisions if d["verdict"] == "regression"]
    run.improvements = [d["metric"] for d in decisions if d["verdict"] == "improvement"]
    run.calibrations = {c["where"]: bool(c["caught"]) for c in data["calibrations"]}
    families: dict[str, list[float]] = {}
    for d in data["decisions"]:
        mde = d["mde"]
        if isinstance(mde, float):
            families.setdefault(d.get("family") or "?", []).append(mde)
    run.detectable = {f: statistics.median(v) for f, v in families.items()}
    return run


def measure(
    root: Path,
    runs: int,
    inject: str,
    ab_args: list[str],
    on_run: Callable[[TrustRun], None] = lambda _r: None,
) -> list[TrustRun]:
    """``runs`` runs of ``calf-perf ab --base HEAD~1 --head HEAD`` in a copy of ``root`` whose
    last commit is the injection (module docstring)."""
    out: list[TrustRun] = []
    with copies(root, 1) as (tree,), tempfile.TemporaryDirectory(prefix="calf-trust-") as tmp:
        _git(tree, "commit", "-q", "--allow-empty", "-m", "nothing")
        for regression in INJECTIONS[inject]:  # each its own commit; ab compares with "base"
            apply(tree, regression)
        env = {**os.environ, **RUN_ENV, "PYTHONPATH": str(tree)}
        for i in range(1, runs + 1):
            report = Path(tmp) / f"ab-{i}.json"
            cmd = [sys.executable, "-m", "perf", "ab", "--base", "base", "--head", "HEAD",
                   "--json", str(report), *ab_args]  # fmt: skip
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
            run = _read(i, proc, time.perf_counter() - start, report)
            out.append(run)
            on_run(run)
    return out


@dataclass(frozen=True)
class TrustSummary:
    runs: int
    inject: str
    false_alarms: int  # runs that flagged anything (inject none)
    flagged: int  # runs that exited 1
    inconclusive: int  # runs that exited 3
    failed: int  # runs that did not finish (exit 2 or a crash)

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.runs if self.runs else 0.0

    @property
    def power(self) -> float:
        return self.flagged / self.runs if self.runs else 0.0


def summarize(runs: list[TrustRun], inject: str) -> TrustSummary:
    return TrustSummary(
        runs=len(runs),
        inject=inject,
        false_alarms=sum(r.false_alarm for r in runs) if inject == "none" else 0,
        flagged=sum(r.exit == 1 for r in runs),
        inconclusive=sum(r.exit == 3 for r in runs),
        failed=sum(r.exit not in (0, 1, 3) for r in runs),
    )


def table(runs: list[TrustRun]) -> list[str]:
    lines = ["run  exit  s     flagged (regressions / improvements)        detectable (median)"]
    for r in runs:
        flagged = ", ".join(r.regressions + [f"{m} (improved)" for m in r.improvements]) or "-"
        found = ", ".join(f"{f} {v:.0%}" for f, v in sorted(r.detectable.items()))
        lines.append(f"{r.index:>3}  {r.exit:>4}  {r.seconds:>4.0f}  {flagged[:42]:<42}  {found}")
    return lines


def to_json(runs: list[TrustRun], summary: TrustSummary, budget: float) -> dict[str, Any]:
    return {
        "summary": {
            **summary.__dict__,
            "false_alarm_rate": summary.false_alarm_rate,
            "power": summary.power,
            "budget": budget,
        },  # fmt: skip
        "runs": [{**r.__dict__, "false_alarm": r.false_alarm} for r in runs],
    }
