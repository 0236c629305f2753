"""The local benchmark loop: ``pytest perf --benchmark-autosave``, change something, then
``pytest perf --benchmark-compare``. A pytest plugin on top of pytest-benchmark (the root
conftest.py loads it), so the compare works with no extra flag:

- **storage**: runs are saved in ``.perf-history/<machine>/`` at the top of the checkout
  (git-ignored, kept by ``make clean``), ``<machine>`` being host name, CPU model and core count,
  so two machines sharing a checkout never compare with each other's runs by accident. An
  explicit ``--benchmark-storage`` wins.
- **a fail threshold per benchmark**: a compare fails when a benchmark's fastest round (``min``)
  is slower than the saved run's by more than its own threshold, from its measured noise: the
  relative interquartile range of its rounds (the larger of the saved run and this one), a floor
  for what within-run spread does not show (a process moves as a whole on a shared machine), and
  the load other processes put on the machine while it ran (measured, saved with every run).
  The rule and the measurements behind its numbers: the comment above ``FIELD``. An explicit
  ``--benchmark-compare-fail`` replaces these thresholds.
- **another machine**: when the saved run's machine differs from this one (host, CPU, core
  count, Python, kernel, the libraries), pytest-benchmark's warning is repeated at the end of the
  report, where it is seen, with the fields that differ.
- **nothing saved**: a compare with no saved run to compare with is a usage error, not a pass.

A quick local check for gross slips (a per-agent loop put back, a millisecond of work in a
sub-millisecond path). A pull request is judged by ``calf-perf ab``: base and head in one job,
interleaved and paired, which sees changes of a few per cent.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from perf.provenance import LIBRARIES, cpu_model, library_version

STORAGE_DIR = ".perf-history"
PYTEST_BENCHMARK_DEFAULT_STORAGE = "file://./.benchmarks"

FIELD = "min"
# The thresholds come from what identical code did here, run in separate processes on these
# 2-core machines shared with other work (quick suites, 10 runs in three sets, every ordered pair
# of runs within a set; `others_busy_cores` measured in the last set, up to 2 cores):
# - a benchmark with many rounds (>= MANY_ROUNDS in both runs) keeps its fastest round: some
#   rounds always ran undisturbed. Its min moved by at most +69 %, quiet or loaded: FLOOR_MANY.
# - one with few rounds (a slow call, or a pedantic 3-30 rounds) has a min of a few samples. It
#   moved by up to +129 % with the machine quiet (FLOOR_FEW), and by 3-21x while other work kept
#   1.5-2 cores busy: then it is not judged (BUSY_CORES), and below that its threshold widens by
#   (1 + the busy cores).
# - within-run spread (IQR / median of the rounds) did not predict those moves (5-21 % for the
#   largest), so the floors carry them; SPREAD_FACTOR x spread raises the threshold of a
#   benchmark whose rounds scatter widely (a frame with a mesh upload: IQR above its median).
# What the local loop is for clears the floors by far: a per-agent loop put back is 10-200x,
# +2 ms on the batched CALF call (0.2-0.7 ms, thousands of rounds) is 4-10x.
MANY_ROUNDS = 100
FLOOR_MANY = 1.0
FLOOR_FEW = 1.5
SPREAD_FACTOR = 2.0
BUSY_CORES = 1.0
# ``benchmark.extra_info["compare"] = REPORT_ONLY``: shown, never failed (a measurement of the
# machine more than of the code, e.g. two torch threads on two shared cores).
REPORT_ONLY = "report-only"
# ``extra_info[LOAD_KEY]``: the cores other processes kept busy while the benchmark ran (from
# /proc/stat, less this process's own CPU time), saved with every run.
LOAD_KEY = "others_busy_cores"

MACHINE_FIELDS = ("node", "machine", "system", "release", "python_version")
CPU_FIELDS = ("brand_raw", "count")


def machine_key() -> str:
    """The folder of this machine's saved runs: host name, CPU model, core count."""
    text = f"{socket.gethostname()}-{cpu_model()}-{os.cpu_count()}c"
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def storage_path(root: Path) -> Path:
    return root / STORAGE_DIR / machine_key()


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, this process's CPU seconds) so far; the
    first is 0 where /proc/stat cannot be read."""
    own = os.times()
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0, own.user + own.system
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait (steal included)
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def relative_spread(stats: Any) -> float:
    """IQR / median of a benchmark's rounds (0 when there are too few to tell)."""
    median = float(stats["median"])
    return float(stats["iqr"]) / median if median > 0 else 0.0


@dataclass(frozen=True)
class Verdict:
    name: str
    saved: float  # seconds, FIELD of the saved run
    now: float
    rounds: int  # the fewer of the two runs'
    spread: float  # IQR / median, the larger of the two runs'
    load: float  # cores other processes kept busy while it ran, the larger of the two runs'
    threshold: float  # the allowed relative slow-down (inf: not judged)
    status: str  # "ok", "SLOWER", "not gated" (report-only), "busy" (not judged)

    @property
    def change(self) -> float:
        return self.now / self.saved - 1.0 if self.saved > 0 else float("inf")

    @property
    def failed(self) -> bool:
        return self.status == "SLOWER"

    def rule(self) -> str:
        if self.rounds >= MANY_ROUNDS:
            return f"max({FLOOR_MANY:.0%}, {SPREAD_FACTOR:g} x spread {self.spread:.0%})"
        return (
            f"max({FLOOR_FEW:.0%}, {SPREAD_FACTOR:g} x spread {self.spread:.0%}) widened by "
            f"{self.load:.1f} cores busy with other work"
        )


def judge(
    name: str,
    saved: Any,
    now: Any,
    gated: bool = True,
    load: tuple[float | None, float | None] = (None, None),
) -> Verdict:
    """The verdict on one benchmark: ``saved`` and ``now`` hold its statistics (``min``,
    ``median``, ``iqr``, ``rounds``), ``load`` the cores other processes kept busy while each
    ran (None: not measured). The rule and its numbers: the comment above FIELD."""
    spread = max(relative_spread(saved), relative_spread(now))
    busy = max([0.0, *(x for x in load if x is not None)])
    rounds = min(int(saved["rounds"]), int(now["rounds"]))
    if rounds >= MANY_ROUNDS:
        threshold = max(FLOOR_MANY, SPREAD_FACTOR * spread)
    elif busy >= BUSY_CORES:
        threshold = float("inf")
    else:
        threshold = (1.0 + max(FLOOR_FEW, SPREAD_FACTOR * spread)) * (1.0 + busy) - 1.0
    v = Verdict(name, float(saved[FIELD]), float(now[FIELD]), rounds, spread, busy, threshold, "")
    if not gated:
        status = "not gated"
    elif threshold == float("inf"):
        status = "busy"
    else:
        status = "SLOWER" if v.change > threshold else "ok"
    return dataclasses.replace(v, status=status)


def machine_differences(now: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """The fields of pytest-benchmark's machine_info (and ours) that differ, in words."""
    out = []
    for key in MACHINE_FIELDS:
        if now.get(key) != saved.get(key):
            out.append(f"{key}: {saved.get(key)} (saved) vs {now.get(key)} (now)")
    now_cpu, saved_cpu = now.get("cpu") or {}, saved.get("cpu") or {}
    for key in CPU_FIELDS:
        if now_cpu.get(key) != saved_cpu.get(key):
            out.append(f"cpu {key}: {saved_cpu.get(key)} (saved) vs {now_cpu.get(key)} (now)")
    now_libs, saved_libs = now.get("libraries") or {}, saved.get("libraries") or {}
    for key in sorted(set(now_libs) | set(saved_libs)):
        if now_libs.get(key) != saved_libs.get(key):
            out.append(f"{key}: {saved_libs.get(key)} (saved) vs {now_libs.get(key)} (now)")
    return out


@dataclass
class State:
    verdicts: list[Verdict] = field(default_factory=list)
    saved_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # by fullname
    machine: list[tuple[str, list[str]]] = field(default_factory=list)  # (saved file, diffs)
    session: pytest.Session | None = None


class NoiseThreshold:
    """A pytest-benchmark compare check (``--benchmark-compare-fail`` takes the same kind of
    object) whose threshold is each benchmark's own (module docstring)."""

    field = FIELD

    def __init__(self, state: State) -> None:
        self.state = state

    def fails(self, current: Any, compared: dict[str, Any]) -> str | None:
        now_extra = current.extra_info or {}
        saved_extra = self.state.saved_extra.get(compared["fullname"], {})
        verdict = judge(
            compared["name"],
            compared,
            current,
            gated=now_extra.get("compare") != REPORT_ONLY,
            load=(saved_extra.get(LOAD_KEY), now_extra.get(LOAD_KEY)),
        )
        self.state.verdicts.append(verdict)
        if not verdict.failed:
            return None
        return f"{FIELD} {verdict.change:+.0%} > its threshold +{verdict.threshold:.0%}: " + (
            verdict.rule()
        )


_STATE = pytest.StashKey[State]()


def _state(config: pytest.Config) -> State:
    if _STATE not in config.stash:
        config.stash[_STATE] = State()
    return config.stash[_STATE]


def _benchmarking(config: pytest.Config) -> bool:
    return getattr(config.option, "benchmark_storage", None) is not None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-benchmark opens its storage: ours, and our thresholds for a compare."""
    if not _benchmarking(config):
        return
    opt = config.option
    if opt.benchmark_storage == PYTEST_BENCHMARK_DEFAULT_STORAGE:
        opt.benchmark_storage = "file://" + str(storage_path(config.rootpath))
    if opt.benchmark_compare and not opt.benchmark_compare_fail:
        opt.benchmark_compare_fail = [NoiseThreshold(_state(config))]


def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-benchmark has loaded the run to compare with (when configured): none is an
    error, not a silent pass."""
    config = session.config
    _state(config).session = session
    bs = getattr(config, "_benchmarksession", None)
    compare = getattr(config.option, "benchmark_compare", None)
    if bs is not None and compare and not bs.compared_mapping:
        which = "" if compare is True else f" matching {compare!r}"
        raise pytest.UsageError(
            f"--benchmark-compare: no saved run{which} in {bs.storage} to compare with. "
            "Save one first, on unchanged code: `make bench-save` "
            "(pytest perf --benchmark-only --benchmark-autosave)"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Measure how busy the rest of the machine kept the cores while a benchmark ran: its
    ``extra_info[LOAD_KEY]``, saved with it and read by the compare."""
    bench = getattr(item, "funcargs", {}).get("benchmark")
    if bench is None or not hasattr(bench, "extra_info"):
        return (yield)
    start, (busy0, own0) = time.perf_counter(), busy_seconds()
    try:
        return (yield)
    finally:
        wall = time.perf_counter() - start
        busy1, own1 = busy_seconds()
        if busy1 > 0 and wall > 0:
            others = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
            bench.extra_info[LOAD_KEY] = round(others, 2)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """The library versions too: a torch upgrade moves timings as much as a new machine."""
    machine_info["libraries"] = {k: library_version(d) for k, d in LIBRARIES.items()}


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_compare_machine_info(
    config: pytest.Config, benchmarksession: Any, machine_info: dict, compared_benchmark: dict
) -> Any:
    """Note what differs for the end of the report; keep pytest-benchmark's own warning (its
    5.3 implementation raises ValueError when the storage is outside the current directory:
    then the same warning is given here)."""
    for bench in compared_benchmark.get("benchmarks", []):
        _state(config).saved_extra[bench["fullname"]] = bench.get("extra_info") or {}
    diffs = machine_differences(machine_info, compared_benchmark.get("machine_info") or {})
    if diffs:
        when = compared_benchmark.get("datetime", "?")
        _state(config).machine.append((f"the run saved {when}", diffs))
    try:
        return (yield)
    except ValueError:
        if machine_info != compared_benchmark.get("machine_info"):
            benchmarksession.logger.warning(
                "Benchmark machine_info is different. Current: "
                f"{machine_info} VS saved: {compared_benchmark.get('machine_info')} "
                f"(location: {benchmarksession.storage})."
            )
        return None


def _summary(tr: Any, state: State) -> None:
    if state.verdicts:
        tr.write_sep("-", "benchmark compare: a fail threshold per benchmark")
        tr.write_line(
            f"fails when a benchmark's {FIELD} is slower than the saved run's by more than its "
            f"threshold: max({FLOOR_MANY:.0%}, {SPREAD_FACTOR:g} x spread) with >= "
            f"{MANY_ROUNDS} rounds; else max({FLOOR_FEW:.0%}, {SPREAD_FACTOR:g} x spread) x "
            f"(1 + busy), not judged when busy >= {BUSY_CORES:g}. spread: IQR / median of its "
            "rounds; busy: cores other processes used while it ran (the larger of saved and now)"
        )

        def order(v: Verdict) -> tuple[bool, float]:
            margin = v.change - v.threshold if v.threshold != float("inf") else -1e9
            return (not v.failed, -margin)

        rows = sorted(state.verdicts, key=order)
        width = max(len(v.name) for v in rows)
        tr.write_line(
            f"{'benchmark':<{width}}  {'saved us':>10}  {'now us':>10}  {'change':>7}  "
            f"{'rounds':>6}  {'spread':>6}  {'busy':>4}  {'threshold':>9}  verdict"
        )
        for v in rows:
            limit = "-" if v.threshold == float("inf") else f"{v.threshold:+.0%}"
            tr.write_line(
                f"{v.name:<{width}}  {v.saved * 1e6:>10.2f}  {v.now * 1e6:>10.2f}  "
                f"{v.change:>+7.0%}  {v.rounds:>6}  {v.spread:>6.0%}  {v.load:>4.1f}  "
                f"{limit:>9}  {v.status}",
                red=v.failed,
            )
        failed = sum(v.failed for v in rows)
        busy = sum(v.status == "busy" for v in rows)
        ungated = sum(v.status == "not gated" for v in rows)
        tr.write_line(
            f"{len(rows)} compared, {failed} over their threshold"
            + (f", {ungated} shown but not gated" if ungated else "")
            + (
                f", {busy} not judged (other work kept >= {BUSY_CORES:g} core busy while they "
                "ran: compare again when the machine is quieter)"
                if busy
                else ""
            ),
            red=bool(failed),
            yellow=bool(busy) and not failed,
            green=not failed and not busy,
            bold=True,
        )
    for source, diffs in state.machine:
        tr.write_sep("!", "WARNING: the saved run came from another machine or set-up", red=True)
        tr.write_line(
            f"pytest-benchmark: 'Benchmark machine_info is different' ({source}):", red=True
        )
        for d in diffs:
            tr.write_line(f"  {d}", red=True, bold=True)
        tr.write_line(
            "Timings move 10-40 % between machines with no code change: compare runs saved on "
            "this machine (pytest perf --benchmark-only --benchmark-autosave here first).",
            red=True,
        )


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter: Any) -> Any:
    """After pytest-benchmark's tables: the thresholds and any machine warning; a regression
    fails the session (exit 1) without pytest-benchmark's traceback."""
    config = terminalreporter.config
    state = _state(config)
    try:
        result = yield
    except Exception as exc:
        if type(exc).__name__ != "PerformanceRegression" or state.session is None:
            raise
        _summary(terminalreporter, state)
        state.session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return None
    _summary(terminalreporter, state)
    return result
