"""The micro side of ``calf-perf ab``, end to end on two small suites: both trees' pytest
processes stay alive, walk their benchmarks in the same order, pair the common ones round by
round, skip what only one side has, and the calibration arm carries its known slowdown."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from perf.micro import BenchmarkRounds, measure
from perf.trees import Tree

CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true")
"""

SUITE = """
import time


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_steady(benchmark):
    benchmark(spin, 200e-6)


def test_changed(benchmark):
    benchmark(spin, {changed})


def test_with_setup(benchmark):
    benchmark.pedantic(spin, setup=lambda: ((100e-6,), {{}}), rounds=3)
{extra}
"""

ONLY_HEAD = """

def test_only_in_head(benchmark):
    benchmark(spin, 50e-6)
"""


def make_tree(root: Path, label: str, changed: float, extra: str = "") -> Tree:
    (root / "perf").mkdir(parents=True)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text("[pytest]\npython_files = bench_*.py\n")
    (root / "perf" / "bench_small.py").write_text(
        textwrap.dedent(SUITE).format(changed=changed, extra=extra)
    )
    return Tree(label, root, "0" * 40)


def test_common_benchmarks_are_paired_round_by_round_and_a_2x_change_shows(tmp_path: Path):
    base = make_tree(tmp_path / "base", "base", 200e-6)
    head = make_tree(tmp_path / "head", "head", 400e-6, ONLY_HEAD)

    def rounds_for(r: BenchmarkRounds, m: int) -> int:
        assert m == 3  # the common benchmarks
        return 12 - len(r.base)

    run = measure(base, head, rounds_for, threshold=0.5)
    assert sorted(run.benchmarks) == [
        "bench_small.py::test_changed",
        "bench_small.py::test_steady",
        "bench_small.py::test_with_setup",
    ]
    assert run.only == ["bench_small.py::test_only_in_head"]
    ratio = {n: float(np.median(np.divide(r.head, r.base))) for n, r in run.benchmarks.items()}
    assert ratio["bench_small.py::test_changed"] == pytest.approx(2.0, rel=0.25)
    assert ratio["bench_small.py::test_steady"] == pytest.approx(1.0, rel=0.25)
    assert all(len(r.base) == len(r.head) == 12 for r in run.benchmarks.values())
    # the calibration benchmark: the same loop in both, +50 % of the work in its third arm
    cal = run.calibration
    assert cal is not None and len(cal.base) == len(cal.head) == len(cal.cal) == 12
    assert float(np.median(np.divide(cal.cal, cal.base))) == pytest.approx(1.5, rel=0.15)
    assert float(np.median(np.divide(cal.head, cal.base))) == pytest.approx(1.0, rel=0.15)


def test_a_suite_that_dies_is_a_run_error_with_its_output(tmp_path: Path):
    from perf.runner import RunError

    base = make_tree(tmp_path / "base", "base", 200e-6)
    head = make_tree(tmp_path / "head", "head", 200e-6, "\nraise SystemExit('broken suite')\n")
    with pytest.raises(RunError, match="head benchmark suites"):
        measure(base, head, lambda r, m: 3 - len(r.base))


SENSITIVE = """

import pytest


@pytest.mark.process_sensitive("tens of nanoseconds an operation")
def test_sensitive(benchmark):
    benchmark(spin, 50e-6)
"""


def test_a_process_sensitive_benchmark_is_measured_and_reported_but_not_judged(tmp_path: Path):
    from perf.ab import AbConfig, micro_comparisons

    base = make_tree(tmp_path / "base", "base", 200e-6, SENSITIVE)
    head = make_tree(tmp_path / "head", "head", 200e-6, SENSITIVE)
    run = measure(base, head, lambda r, _m: 6 - len(r.base), threshold=0.5)
    name = "bench_small.py::test_sensitive"
    assert name in run.benchmarks and len(run.benchmarks[name].base) == 6
    assert run.process_sensitive == {name}
    judged = {c.metric for c in micro_comparisons(run, AbConfig().micro_rule)}
    assert judged and not any("test_sensitive" in m for m in judged)
