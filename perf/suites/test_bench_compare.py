"""The local benchmark loop works out of the box (perf/bench_compare.py): in a fresh copy of
this tree, with its own benchmark storage (never the user's), ``pytest perf --benchmark-autosave``
then ``pytest perf --benchmark-compare`` shows a comparison and passes on unchanged code, and the
same compare command fails, with no extra flag, once the batched CALF path is 2 ms slower per
call. A saved run from another machine is flagged where it is seen; a compare with nothing
saved is an error. All at quick sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perf.bench_compare import (
    BUSY_CORES,
    FLOOR_FEW,
    FLOOR_MANY,
    REPORT_ONLY,
    SPREAD_FACTOR,
    STORAGE_DIR,
    judge,
    machine_differences,
    machine_key,
)
from perf.selftest import copies

ROOT = Path(__file__).resolve().parents[2]
# Behaviour-preserving: the same call, 2 ms later (the batched call itself takes 0.2-0.7 ms).
SLOWDOWN = """

# test_bench_compare: the batched CALF path made 2 ms slower per call, behaviour kept.
def _two_ms_slower(fn):
    def slower(self, *args, **kwargs):
        end = __import__("time").perf_counter() + 2e-3
        while __import__("time").perf_counter() < end:
            pass
        return fn(self, *args, **kwargs)

    return slower


CALFController.select_action_batch_codes = _two_ms_slower(
    CALFController.select_action_batch_codes
)
"""


# ------------------------------------------------------------------ the rule, fast
def stats(minimum: float, median: float, iqr: float, rounds: int = 1000) -> dict[str, float]:
    return {"min": minimum, "median": median, "iqr": iqr, "rounds": rounds}


def test_many_rounds_get_their_floor_and_a_noisy_benchmark_its_own_spread() -> None:
    quiet = judge("q", stats(1.0, 1.1, 0.11), stats(1.9, 2.0, 0.1))  # +90 %, spread 10 %
    assert quiet.threshold == FLOOR_MANY and quiet.status == "ok"
    assert judge("q", stats(1.0, 1.1, 0.11), stats(2.2, 2.3, 0.1)).failed  # +120 %
    noisy = judge("n", stats(1.0, 1.0, 1.2), stats(3.0, 3.0, 0.2))  # +200 %, spread 120 %
    assert noisy.threshold == pytest.approx(SPREAD_FACTOR * 1.2) and not noisy.failed
    # the spread is the larger of the two runs: a noisy run now widens its own threshold
    assert judge("n", stats(1.0, 1.0, 0.1), stats(3.0, 3.0, 3.6)).threshold > FLOOR_MANY
    # the min of many rounds is not widened by load: some rounds always ran undisturbed
    assert judge("q", stats(1.0, 1.0, 0.1), stats(2.2, 2.2, 0.1), load=(0, 1.8)).failed


def test_few_rounds_get_a_higher_floor_widened_by_load_and_none_when_busy() -> None:
    few = stats(1.0, 1.0, 0.1, rounds=10)
    assert judge("f", few, stats(2.4, 2.4, 0.1, 10)).threshold == FLOOR_FEW
    assert judge("f", few, stats(2.6, 2.6, 0.1, 10)).failed
    widened = judge("f", few, stats(3.0, 3.0, 0.1, 10), load=(0.5, None))
    assert widened.threshold == pytest.approx((1 + FLOOR_FEW) * 1.5 - 1) and not widened.failed
    busy = judge("f", few, stats(21.0, 21.0, 0.1, 10), load=(None, BUSY_CORES))
    assert busy.status == "busy" and not busy.failed
    # the fewer rounds of the two runs decide
    assert judge("f", stats(1.0, 1.0, 0.1), stats(2.4, 2.4, 0.1, 10)).threshold == FLOOR_FEW


def test_a_report_only_benchmark_is_shown_never_failed() -> None:
    v = judge("t", stats(1.0, 1.0, 0.0), stats(50.0, 50.0, 0.0), gated=False)
    assert v.change == pytest.approx(49.0) and v.status == "not gated" and not v.failed


def test_machine_differences_name_the_fields() -> None:
    now = {"node": "a", "cpu": {"brand_raw": "X", "count": 2}, "libraries": {"torch": "2.13"}}
    saved = {"node": "b", "cpu": {"brand_raw": "Y", "count": 2}, "libraries": {"torch": "2.12"}}
    diffs = machine_differences(now, saved)
    assert diffs == [
        "node: b (saved) vs a (now)",
        "cpu brand_raw: Y (saved) vs X (now)",
        "torch: 2.12 (saved) vs 2.13 (now)",
    ]
    assert machine_differences(now, now) == []


# ------------------------------------------------------------------ the loop, for real
@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """A fresh copy of this tree as it is (tracked and untracked files, nothing ignored: no
    saved benchmark runs), committed; removed afterwards."""
    with copies(ROOT, 1) as (repo,):
        assert not (repo / STORAGE_DIR).exists()
        yield repo


def pytest_in(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=repo, env=env, capture_output=True,
        text=True, timeout=1200,
    )  # fmt: skip


def saved_runs(repo: Path) -> list[Path]:
    return sorted((repo / STORAGE_DIR / machine_key()).glob("*/*.json"))


def test_save_then_compare_passes_unchanged_and_fails_2ms_slower(tree: Path) -> None:
    save = pytest_in(tree, "perf", "--quick", "--benchmark-only", "--benchmark-autosave")
    assert save.returncode == 0, save.stdout[-3000:] + save.stderr[-3000:]
    assert len(saved_runs(tree)) == 1  # in the copy's own storage

    same = pytest_in(tree, "perf", "--quick", "--benchmark-only", "--benchmark-compare")
    out = same.stdout + same.stderr
    print(out[-6000:])
    assert "Comparing against benchmarks from" in out
    assert "benchmark compare: a fail threshold per benchmark" in out
    assert same.returncode == 0, out[-6000:]
    assert " 0 over their threshold" in out

    controller = tree / "calf" / "controller.py"
    original = controller.read_text()
    controller.write_text(original + SLOWDOWN)
    try:
        slow = pytest_in(tree, "perf", "--quick", "--benchmark-only", "--benchmark-compare")
    finally:
        controller.write_text(original)
    out = slow.stdout + slow.stderr
    print(out[-6000:])
    assert slow.returncode == 1, out[-6000:]
    assert "Performance has regressed" in out
    flagged = [ln for ln in out.splitlines() if ln.rstrip().endswith("SLOWER")]
    assert flagged and all("batched" in ln for ln in flagged), flagged
    assert len(saved_runs(tree)) == 1  # a compare saves nothing


def test_a_run_saved_on_another_machine_is_flagged_at_the_end(tree: Path) -> None:
    """(runs after the save above) The saved run edited to come from another host and CPU."""
    [run] = saved_runs(tree)
    original = run.read_text()
    data = json.loads(original)
    data["machine_info"]["node"] = "another-host"
    data["machine_info"]["cpu"]["brand_raw"] = "Another CPU"
    run.write_text(json.dumps(data))
    try:
        proc = pytest_in(
            tree, "perf/suites/bench_stats.py", "--quick", "--benchmark-only",
            "--benchmark-compare", "-k", "panel_rebuild",
        )  # fmt: skip
    finally:
        run.write_text(original)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tail = proc.stdout.strip().splitlines()[-12:]  # where it is read: the end of the report
    text = "\n".join(tail)
    assert "WARNING: the saved run came from another machine" in text, text
    assert "node: another-host (saved) vs" in text and "cpu brand_raw: Another CPU" in text


def test_a_compare_with_nothing_saved_is_an_error(tree: Path, tmp_path: Path) -> None:
    proc = pytest_in(
        tree, "perf/suites/bench_stats.py", "--quick", "--benchmark-only", "--benchmark-compare",
        f"--benchmark-storage=file://{tmp_path / 'empty'}", "-k", "panel_rebuild",
    )  # fmt: skip
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr
    assert "no saved run" in proc.stderr and "make bench-save" in proc.stderr


def test_the_2_thread_benchmarks_are_report_only() -> None:
    text = (ROOT / "perf" / "suites" / "bench_calf.py").read_text()
    assert 'benchmark.extra_info["compare"] = REPORT_ONLY' in text and REPORT_ONLY
