"""The micro side of ``calf-perf ab``: the pytest-benchmark suites of base and head, alive side by
side, every benchmark measured in short interleaved rounds.

Each tree's suites run in one pytest process for the whole comparison, with
``perf/lockstep_plugin.py`` loaded: the two processes walk their benchmarks in the same (sorted)
order and stop at each one until this driver has timed it. A round times ``k`` calls of the
benchmark's function in one process, then in the other (the order alternating every round);
``k`` is chosen so a timing lasts about ``SAMPLE_S``. Rounds seconds apart would see the machine
change between them; a few milliseconds apart, they see the same machine, so a slow stretch
falls on both and the paired per-round ratio head/base cancels it. Measured here: one process's
rounds of a 1 ms workload drift by up to 2x over seconds, while two neighbouring 0.2 ms timings
differ by 2 % (median absolute deviation).

What the per-round ratios cannot cancel is the process itself. The two cores of these machines
run at different speeds for seconds at a time (their host neighbours differ), and a process
tends to stay on the core it last ran on: unpinned, two processes of the same code kept steady
offsets of 9-11 % (median over 52 benchmarks; 28 of 52 beyond 10 %, up to 68 %) here. So both
run pinned to the same core (``suite_cpu``): 2-3 % (median), 1 of 52 beyond 10 %, 13 % at most.
Both also start with the same hash seed and without address-space randomisation (where
``setarch -R`` exists), so identical code lays out alike. What offset is left, the decision
rule's ``margin`` (``perf.decision``) allows.

Calibration: before the suites, both processes serve the plugin's calibration benchmark (the
same interpreter loop in both trees); head's process also runs it with ``threshold`` more work,
a third arm compared with base like head is. If the run does not call that arm a regression,
it could not have seen a change of the threshold's size, and the micro verdicts are reported as
inconclusive. Its head arm against base is an A/A comparison of the pairing itself.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perf import lockstep_plugin
from perf.runner import RUN_ENV, RunError, tail
from perf.trees import Tree

SAMPLE_S = 0.002  # the length of one timing: many rounds, each one short
WARMUP_ROUNDS = 2  # per side, not recorded
EVENT_TIMEOUT_S = 600.0  # a test's set-up (fixtures, a headless app) may take a while
PLUGIN = "calf_lockstep_plugin"
HASH_SEED = "0"


@dataclass
class BenchmarkRounds:
    """One benchmark's paired per-call seconds, round by round (and the calibration arm's)."""

    name: str
    k: int
    base: list[float] = field(default_factory=list)
    head: list[float] = field(default_factory=list)
    cal: list[float] = field(default_factory=list)


@dataclass
class MicroRun:
    """What the micro side measured: the benchmarks both trees have, the names only one has,
    the calibration benchmark (its ``cal`` arm carries the known slowdown), and the benchmarks
    either tree marks ``process_sensitive`` (measured, reported, not judged)."""

    benchmarks: dict[str, BenchmarkRounds]
    only: list[str]
    calibration: BenchmarkRounds | None
    seconds: float
    process_sensitive: frozenset[str] = frozenset()


def suite_cpu() -> int | None:
    """The core both suite processes run on: the last one this process may use (None where
    affinity cannot be set)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def _pin() -> None:
    cpu = suite_cpu()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


class SuiteProcess:
    """One tree's benchmark suites in a pytest process that serves their timings."""

    def __init__(self, tree: Tree, quick: bool, plugin_dir: Path, log_dir: Path) -> None:
        self.tree = tree
        self.label = tree.label
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        env = {
            **os.environ,
            **RUN_ENV,
            "PYTHONPATH": os.pathsep.join((str(tree.path), str(plugin_dir))),
            "PYTHONHASHSEED": HASH_SEED,
            lockstep_plugin.ENV: f"{to_child_r},{to_parent_w}",
        }
        cmd = [
            tree.python, "-m", "pytest", "perf", "--benchmark-only", "-q",
            "-p", "no:cacheprovider", "-p", PLUGIN, *(["--quick"] if quick else []),
        ]  # fmt: skip
        if shutil.which("setarch"):  # the same layout for the same code in both processes
            cmd = ["setarch", os.uname().machine, "-R", *cmd]
        self.log = (log_dir / f"{tree.label}.log").open("w+")
        self.proc = subprocess.Popen(
            cmd,
            cwd=tree.path,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(to_child_r, to_parent_w),
            preexec_fn=_pin,
        )
        os.close(to_child_r)
        os.close(to_parent_w)
        self._to_suites_pipe = os.fdopen(to_child_w, "w", encoding="utf-8")
        self._events = to_parent_r  # read by hand: a buffered reader hides lines from select
        self._buffer = b""
        collected = self.expect("collected")
        self.collected: list[str] = collected["collected"]
        self.process_sensitive: set[str] = set(collected.get("process_sensitive", ()))

    def _fail(self, why: str) -> RunError:
        self.proc.kill()
        self.log.flush()
        self.log.seek(0)
        return RunError(f"{self.label} benchmark suites: {why}\n{tail(self.log.read())}")

    def event(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        """The next message from the suites (waiting at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._events], [], [], max(left, 0.0))
            if not ready:
                raise self._fail(f"no word from the suites in {timeout_s:.0f} s")
            chunk = os.read(self._events, 1 << 16)
            if not chunk:
                raise self._fail(f"exited with status {self.proc.wait()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def expect(self, key: str) -> dict[str, Any]:
        message = self.event()
        if key not in message:
            raise self._fail(f"expected {key!r}, got {message}")
        return message

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._to_suites_pipe.write(json.dumps(message) + "\n")
            self._to_suites_pipe.flush()
        except BrokenPipeError:
            raise self._fail("the suites went away") from None

    def time(self, k: int, scale: float = 1.0) -> float:
        """Seconds per call over ``k`` calls (``scale``: the calibration's work factor)."""
        self.send({"time": k, "scale": scale})
        return float(self.expect("t")["t"]) / k

    def finish(self) -> None:
        """The suites ran to their end: their pytest must have passed (a benchmark that fails
        or a suite that does not import is an error, not a comparison of nothing)."""
        try:
            status = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise self._fail("did not exit at the end of its suites") from None
        if status != 0:
            raise self._fail(f"pytest exited with status {status}")

    def close(self) -> None:
        try:
            self._to_suites_pipe.close()
            os.close(self._events)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class _Walker:
    """Where one process is: waiting at a benchmark, running a test, or at its end."""

    def __init__(self, proc: SuiteProcess) -> None:
        self.proc = proc
        self.at: str | None = None  # the benchmark it waits at
        self.call_s = 0.0
        self.ended = False

    def advance(self) -> None:
        """Read events until it waits at a benchmark or has ended."""
        while self.at is None and not self.ended:
            message = self.proc.event()
            if "ready" in message:
                self.at, self.call_s = message["ready"], float(message["call_s"])
            elif message.get("end"):
                self.ended = True

    def release(self) -> None:
        """The benchmark it waits at is over."""
        self.proc.send({"done": True})
        self.at = None


def measure(
    base: Tree,
    head: Tree,
    rounds_for: Callable[[BenchmarkRounds, int], int],
    quick: bool = True,
    threshold: float = 0.40,
    on_line: Callable[[str], None] = lambda _line: None,
) -> MicroRun:
    """Time every benchmark both trees have, in lockstep. ``rounds_for(rounds, m)`` says how
    many more rounds a benchmark gets (0: it is done), ``m`` the number of common benchmarks;
    the calibration benchmark's third arm does ``threshold`` more work in head's process."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calf-ab-micro-") as tmp:
        plugin_dir = Path(tmp)
        shutil.copy(lockstep_plugin.__file__, plugin_dir / f"{PLUGIN}.py")
        procs = {t.label: SuiteProcess(t, quick, plugin_dir, plugin_dir) for t in (base, head)}
        try:
            walkers = {label: _Walker(p) for label, p in procs.items()}
            common = set(procs["base"].collected) & set(procs["head"].collected)
            only = sorted(set(procs["base"].collected) ^ set(procs["head"].collected))
            more = lambda r: rounds_for(r, len(common))  # noqa: E731
            done: dict[str, BenchmarkRounds] = {}
            b, h = walkers["base"], walkers["head"]
            while True:
                b.advance()
                h.advance()
                if b.ended and h.ended:
                    break
                if b.at is not None and b.at == h.at:
                    name = b.at
                    scale = 1.0 + threshold if name == lockstep_plugin.CALIBRATION else None
                    done[name] = _compare(b, h, name, more, scale)
                    on_line(_line(done[name]))
                    b.release()
                    h.release()
                    continue
                # Different benchmarks (or one side at its end): the one that sorts first, or a
                # name the other never collected, runs alone, untimed.
                for w, other in ((b, h), (h, b)):
                    if w.at is not None and (
                        other.ended
                        or w.at not in common
                        or (other.at is not None and w.at < other.at)
                    ):
                        w.release()
                        break
            for p in procs.values():
                p.finish()
        finally:
            for p in procs.values():
                p.close()
    calibration = done.pop(lockstep_plugin.CALIBRATION, None)
    sensitive = frozenset(procs["base"].process_sensitive | procs["head"].process_sensitive)
    return MicroRun(done, only, calibration, time.perf_counter() - start, sensitive)


def _compare(
    b: _Walker,
    h: _Walker,
    name: str,
    rounds_for: Callable[[BenchmarkRounds], int],
    cal_scale: float | None,
) -> BenchmarkRounds:
    """Warm up, then rounds until ``rounds_for`` says done; with ``cal_scale`` a third arm:
    head's process doing that much more work."""
    call_s = max(min(b.call_s, h.call_s), 1e-7)
    k = max(1, round(SAMPLE_S / call_s))
    rounds = BenchmarkRounds(name, k)
    for _ in range(WARMUP_ROUNDS):
        b.proc.time(k)
        h.proc.time(k)
    arms = [("base", b, 1.0), ("head", h, 1.0)]
    if cal_scale is not None:
        arms.append(("cal", h, cal_scale))
    i = 0
    while (more := rounds_for(rounds)) > 0:
        for _ in range(more):
            times = {}
            for arm, walker, scale in arms if i % 2 == 0 else arms[::-1]:
                times[arm] = walker.proc.time(k, scale)
            rounds.base.append(times["base"])
            rounds.head.append(times["head"])
            if cal_scale is not None:
                rounds.cal.append(times["cal"])
            i += 1
    return rounds


def _line(r: BenchmarkRounds) -> str:
    ratio = float(np.median(np.asarray(r.head) / np.asarray(r.base)))
    cal = f", calibration {np.median(np.asarray(r.cal) / np.asarray(r.base)):.2f}" if r.cal else ""
    return (
        f"  micro {r.name}: {len(r.base)} rounds of {r.k} call(s), base "
        f"{np.median(r.base) * 1e6:.1f} us, head/base {ratio:.3f}{cal}"
    )
