"""A pytest plugin that hands a suite's benchmarks to a driver, round by round.

``calf-perf ab`` runs the pytest-benchmark suites of base and of head in two pytest processes
that stay alive side by side, and measures every benchmark in many short rounds, base and head
taking turns, so a slow second of the machine falls on both (``perf.micro``). This plugin is
the process side; it is loaded by file (it imports nothing from this project, since it runs in
the base tree's process too) and does nothing unless ``CALF_LOCKSTEP_FDS`` names the pipes to
its driver: ``"<read fd>,<write fd>"``.

Protocol, one JSON object per line:

- plugin -> driver: ``{"collected": [names], "process_sensitive": [names]}`` once, the
  benchmarks in the order they will run (sorted by name, so two trees meet their common
  benchmarks in the same order) and those marked ``process_sensitive`` (reported, not judged);
  ``{"ready": name, "call_s": seconds}`` when a benchmark's function is ready (one call made,
  its result kept for the test); ``{"t": seconds}`` after each timing; ``{"finished": name}``
  after each test; ``{"end": true}`` at the end of the session.
- driver -> plugin: ``{"time": k, "scale": s}``: call the function k times back to back, the
  garbage collector off, and answer the seconds; ``{"done": true}``: the benchmark is over, the
  test goes on (pytest-benchmark then times one round of its own, so the test's
  ``benchmark.stats`` exist).

Before the first test, every process serves one more benchmark, ``CALIBRATION``: a pure-Python
loop of ``CALIBRATION_LOOPS`` iterations times ``scale`` (the driver asks one process for
more: a known slowdown, in work rather than in time, so the machine's speed moves it as it
moves any benchmark). It is the same code in both trees: it shows what the pairing of two
processes can detect at this moment, whatever the change under test did.

A benchmark is named by its file name and test id, without the folder (``bench_calf.py::
test_bench_batched[n=20]``), so suites that moved between folders still pair up.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

ENV = "CALF_LOCKSTEP_FDS"
CALIBRATION = "~calibration"  # sorts before every benchmark file name
CALIBRATION_LOOPS = 20_000  # about 1 ms of Python here


def bench_name(nodeid: str) -> str:
    """``perf/suites/bench_calf.py::test_x[n=5]`` -> ``bench_calf.py::test_x[n=5]``."""
    path, sep, rest = nodeid.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


class _Link:
    def __init__(self, fds: str) -> None:
        read_fd, write_fd = (int(x) for x in fds.split(","))
        self._from_driver_pipe = os.fdopen(read_fd, "r", encoding="utf-8")
        self._to_driver_pipe = os.fdopen(write_fd, "w", encoding="utf-8")

    def send(self, message: dict[str, Any]) -> None:
        self._to_driver_pipe.write(json.dumps(message) + "\n")
        self._to_driver_pipe.flush()

    def receive(self) -> dict[str, Any]:
        line = self._from_driver_pipe.readline()
        if not line:
            raise RuntimeError("calf lockstep: the driver went away")
        message: dict[str, Any] = json.loads(line)
        return message


def calibration_work(loops: int) -> int:
    """The calibration benchmark's body: plain interpreter work."""
    total = 0
    for i in range(loops):
        total += i * i
    return total


class Lockstep:
    """The plugin object: sorts the benchmarks, then serves each one's timings."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.current = ""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items.sort(key=lambda item: bench_name(item.nodeid))
        benchmarks = [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]
        names = [bench_name(i.nodeid) for i in benchmarks]
        sensitive = [
            bench_name(i.nodeid) for i in benchmarks if i.get_closest_marker("process_sensitive")
        ]
        self.link.send({"collected": names, "process_sensitive": sensitive})
        self.current = CALIBRATION
        self.serve(lambda scale=1.0: calibration_work(round(CALIBRATION_LOOPS * scale)), None)
        self.link.send({"finished": CALIBRATION})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Any:
        self.current = bench_name(item.nodeid)
        yield
        self.link.send({"finished": self.current})

    def pytest_sessionfinish(self) -> None:
        self.link.send({"end": True})

    def serve(self, call: Callable[..., Any], setup: Callable[[], Any] | None) -> Any:
        """Make the first call, announce the benchmark, then time calls on command (a
        ``scale`` other than 1 goes to ``call``: only the calibration takes one)."""
        result = call() if setup is None else _with_setup(call, setup)
        start = time.perf_counter()
        call() if setup is None else _with_setup(call, setup)
        self.link.send({"ready": self.current, "call_s": time.perf_counter() - start})
        while True:
            command = self.link.receive()
            if command.get("done"):
                return result
            scale = float(command.get("scale", 1.0))
            timed = call if scale == 1.0 else functools.partial(call, scale)
            self.link.send({"t": _time(timed, setup, int(command["time"]))})


def _with_setup(call: Callable[..., Any], setup: Callable[[], Any]) -> Any:
    made = setup()
    if made:
        args, kwargs = made
        return call(*args, **kwargs)
    return call()


def _time(call: Callable[..., Any], setup: Callable[[], Any] | None, k: int) -> float:
    """Seconds of ``k`` calls (each after its ``setup``, which is not timed), GC off."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        total = 0.0
        if setup is None:
            start = time.perf_counter()
            for _ in range(k):
                call()
            total = time.perf_counter() - start
        else:
            for _ in range(k):
                made = setup()
                args, kwargs = made if made else ((), {})
                start = time.perf_counter()
                call(*args, **kwargs)
                total += time.perf_counter() - start
        return total
    finally:
        if collecting:
            gc.enable()


def pytest_configure(config: pytest.Config) -> None:
    fds = os.environ.get(ENV)
    if not fds:
        return
    lockstep = Lockstep(_Link(fds))
    config.pluginmanager.register(lockstep, "calf-lockstep")
    from pytest_benchmark.fixture import BenchmarkFixture

    raw_pedantic = BenchmarkFixture._raw_pedantic

    def lockstep_raw(self: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        lockstep.serve(lambda: function(*args, **kwargs), None)
        return raw_pedantic(self, function, args=args, kwargs=kwargs)

    def lockstep_pedantic(
        self: Any,
        target: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[..., Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> Any:
        kw = kwargs or {}
        if setup is None:
            lockstep.serve(lambda: target(*args, **kw), None)
        else:
            lockstep.serve(target, setup)
        return raw_pedantic(self, target, args=args, kwargs=kwargs, setup=setup, teardown=teardown)

    BenchmarkFixture._raw = lockstep_raw  # type: ignore[method-assign,assignment]
    BenchmarkFixture._raw_pedantic = lockstep_pedantic  # type: ignore[method-assign]
