"""The micro side of ``calf-perf ab``: the pytest-benchmark suites of perf/ run in base and in
head in the same job, every benchmark paired by name.

Each suite run keeps every round's time (``--benchmark-save-data``); a benchmark's runs in one
tree are pooled and compared with the other tree's by the two-sample Hodges-Lehmann shift of log
times (``perf.decision.compare_unpaired``). Runs alternate base, head (head, base, ...), so drift
within the job spreads over both sides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from perf.decision import Comparison, compare_unpaired
from perf.runner import RUN_ENV, RunError
from perf.trees import Tree


def run_suites(tree: Tree, quick: bool, timeout_s: float = 900.0) -> dict[str, list[float]]:
    """{benchmark full name: every round's seconds} from one run of the tree's perf suites."""
    with tempfile.TemporaryDirectory(prefix="calf-ab-micro-") as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [
            sys.executable, "-m", "pytest", "perf", "--benchmark-only", "-q",
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


def micro_comparisons(
    base: Tree,
    head: Tree,
    quick: bool,
    runs: int = 1,
    on_run: Callable[[str], None] = lambda _line: None,
) -> tuple[list[Comparison], list[str]]:
    """Comparisons of every benchmark both trees have, and the names only one side has."""
    pooled: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
    order = [base, head] if quick else [base, head, head, base]
    for tree in (order * runs)[: max(2, len(order) * runs)]:
        for name, times in run_suites(tree, quick).items():
            pooled[tree.label].setdefault(name, []).extend(times)
        on_run(f"  micro: {tree.name} suites done")
    both = sorted(set(pooled["base"]) & set(pooled["head"]))
    only = sorted(set(pooled["base"]) ^ set(pooled["head"]))
    comparisons = [
        compare_unpaired(
            f"bench {name.removeprefix('perf/')}", pooled["base"][name], pooled["head"][name]
        )
        for name in both
    ]
    return comparisons, only
