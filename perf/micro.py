"""The micro side of ``calf-perf ab``: the pytest-benchmark suites of perf/ run in base and in
head in the same job, every benchmark paired by name.

A micro-benchmark's rounds within one process agree to a per cent or two, but between processes
it moves by several per cent on its own (memory layout, caches), and a run disturbed by the
machine moves every benchmark of a suite file together: up to 50 % on identical code here. So
each tree's suites run several times, in ABBA order (base, head, head, base per cycle), each run
gives a benchmark one figure (the median of its rounds), and a benchmark regressed only when all
its head runs are slower than all its base runs by a wide margin (``decide_separated``): micro
comparisons catch gross slips (a per-agent loop multiplies a benchmark), the macro side the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perf.decision import Decision, DecisionRule, decide_separated
from perf.runner import RUN_ENV, RunError
from perf.trees import Tree


def run_suites(tree: Tree, quick: bool, timeout_s: float = 900.0) -> dict[str, list[float]]:
    """{benchmark full name: every round's seconds} from one run of the tree's perf suites."""
    with tempfile.TemporaryDirectory(prefix="calf-ab-micro-") as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [
            tree.python, "-m", "pytest", "perf", "--benchmark-only", "-q",
            "-p", "no:cacheprovider", "--benchmark-save-data", f"--benchmark-json={out}",
            *(["--quick"] if quick else []),
        ]  # fmt: skip
        env = {**os.environ, **RUN_ENV, "PYTHONPATH": str(tree.path)}
        try:
            proc = subprocess.run(
                cmd, cwd=tree.path, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise RunError(f"{tree.label}: benchmark suites exceeded {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RunError(f"{tree.label}: benchmark suites exited {proc.returncode}:\n{tail}")
        data = json.loads(out.read_text())
    return {b["fullname"]: list(b["stats"]["data"]) for b in data["benchmarks"]}


def micro_decisions(
    base: Tree,
    head: Tree,
    quick: bool,
    cycles: int = 1,
    rule: DecisionRule | None = None,
    on_run: Callable[[str], None] = lambda _line: None,
) -> tuple[list[Decision], list[str]]:
    """A decision for every benchmark both trees have, from ``cycles`` ABBA cycles of suite
    runs; and the names only one side has."""
    medians: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
    for tree in [base, head, head, base] * cycles:
        for name, times in run_suites(tree, quick).items():
            medians[tree.label].setdefault(name, []).append(float(np.median(times)))
        on_run(f"  micro: {tree.name} suites done")
    both = sorted(set(medians["base"]) & set(medians["head"]))
    only = sorted(set(medians["base"]) ^ set(medians["head"]))
    decisions = [
        decide_separated(
            f"bench {name.removeprefix('perf/')}",
            medians["base"][name],
            medians["head"][name],
            rule or DecisionRule(),
        )
        for name in both
    ]
    return decisions, only
