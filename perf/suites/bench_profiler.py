"""Cost of the profiler: section enter/exit, counters, frame bookkeeping, enabled and disabled.

Benchmarks (pytest-benchmark, groups "profiler <op> x<n>") time n = 1000 operations (200 frames
for the whole-frame case) per round, enabled beside disabled. The gates are ordinary tests on one
interleaved measurement (perf.suites.gates.interleaved; per operation, the fastest round minus
the bare loop's fastest round):

* the overhead of a fully profiled frame (the app's sections, 4 counters, begin/end_frame) is
  < 1 % of a 10 ms frame. It is computed directly, as the per-frame profiler cost measured in a
  tight loop (profiled frame with empty section bodies minus the same loop unprofiled) divided by
  10 ms: comparing a real 10 ms frame with and without the profiler swings by several per cent
  from round to round on these shared 2-core machines, far more than the ~0.2 % being measured,
  so that comparison is printed for information only. (The tight loop runs with warm caches; a
  real frame's cold-cache cost is somewhat higher, and the margin to 1 % is about 6x.)
* a disabled profiler costs a small fraction of an enabled one (per section and per frame).

``pytest perf/suites/bench_profiler.py -s`` prints the measured table.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from perf.suites.gates import Timing, interleaved
from visuals.profiler import PerformanceProfiler
from visuals.stages import FRAME_SECTIONS as SECTIONS

FRAME_LABEL = f"frame: {len(SECTIONS)} sections + 4 counters"
REPS = 1000  # operations per benchmark call / per timed call (amortises the timer)
FRAMES = 200  # frames per timed call in the frame measurements
FRAME_MS = 10.0  # the nominal frame the overhead is expressed against


def _profiler(enabled: bool) -> PerformanceProfiler:
    prof = PerformanceProfiler(enabled=enabled)
    # warm the names so registration is not timed; leave a frame open so sections accumulate
    _frame(prof)
    prof.begin_frame()
    return prof


def _frame(prof: PerformanceProfiler, work: Callable[[], object] | None = None) -> None:
    """One app frame as the visual trainer profiles it: its sections, 3 counts and 1 gauge."""
    prof.begin_frame()
    for name in SECTIONS:
        with prof.section(name):
            if work is not None:
                work()
    prof.count("vis_forward_passes", 2)
    prof.count("train_forward_passes", 6)
    prof.count("mesh_updates")
    prof.set_counter("draw_calls", 12)
    prof.end_frame()


def _bare_frame(work: Callable[[], object] | None = None) -> None:
    """The same frame without the profiler (the loop over the section bodies stays)."""
    for _name in SECTIONS:
        if work is not None:
            work()


def _ops(prof: PerformanceProfiler) -> dict[str, Callable[[], None]]:
    """Each callable performs REPS operations (or FRAMES frames) on ``prof``."""

    def section() -> None:
        for _ in range(REPS):
            with prof.section("physics"):
                pass

    def count() -> None:
        for _ in range(REPS):
            prof.count("vis_forward_passes")

    def set_counter() -> None:
        for _ in range(REPS):
            prof.set_counter("draw_calls", 12)

    def add_time() -> None:
        for _ in range(REPS):
            prof.add_time("render", 1e-3)

    def begin_end() -> None:
        for _ in range(REPS):
            prof.begin_frame()
            prof.end_frame()

    def frame() -> None:
        for _ in range(FRAMES):
            _frame(prof)

    return {
        "section enter/exit": section,
        "count()": count,
        "set_counter()": set_counter,
        "add_time()": add_time,
        "begin_frame()+end_frame()": begin_end,
        FRAME_LABEL: frame,
    }


# operation -> operations per timed call
PER_CALL = {
    "section enter/exit": REPS,
    "count()": REPS,
    "set_counter()": REPS,
    "add_time()": REPS,
    "begin_frame()+end_frame()": REPS,
    FRAME_LABEL: FRAMES,
}


def _baselines() -> dict[str, Callable[[], None]]:
    def loop() -> None:
        for _ in range(REPS):
            pass

    def frames() -> None:
        for _ in range(FRAMES):
            _bare_frame()

    return {"bare loop": loop, "bare frame": frames}


def _measure(rounds: int) -> dict[str, Timing]:
    fns: dict[str, Callable[[], object]] = dict(_baselines())
    for enabled in (True, False):
        tag = "on" if enabled else "off"
        for name, fn in _ops(_profiler(enabled)).items():
            assert name in PER_CALL
            fns[f"{name} [{tag}]"] = fn
    return interleaved(fns, rounds=rounds, warmup=2)


def _best(t: Timing) -> float:
    # Sub-millisecond calls on 2 shared cores: a round is either clean or preempted, and
    # preemption only ever adds time, so the fastest round is the estimate (as timeit advises);
    # the median would measure the neighbours' load.
    return min(t.rounds_s)


def _cost_us(t: dict[str, Timing], op: str, tag: str) -> float:
    """Microseconds per operation, the bare loop's own cost taken off."""
    base = "bare frame" if op.startswith("frame") else "bare loop"
    n = PER_CALL[op]
    return (_best(t[f"{op} [{tag}]"]) - _best(t[base])) / n * 1e6


@pytest.fixture(scope="module")
def costs(quick: bool) -> dict[str, tuple[float, float]]:
    """op -> (enabled us, disabled us) per operation, from one interleaved measurement."""
    t = _measure(rounds=21 if quick else 61)
    table = {op: (_cost_us(t, op, "on"), _cost_us(t, op, "off")) for op in PER_CALL}
    print(
        "\nprofiler cost per operation (interleaved, fastest of the rounds, bare loop subtracted)"
    )
    head = ("operation", "enabled us", "disabled us", "ratio", "% of 10ms")
    print(f"{head[0]:34s} {head[1]:>11s} {head[2]:>12s} {head[3]:>7s} {head[4]:>10s}")
    for op, (on, off) in table.items():
        ratio = on / off if off > 0 else float("inf")
        pct = on / (FRAME_MS * 1e3) * 100
        print(f"{op:34s} {on:11.3f} {off:12.3f} {ratio:6.1f}x {pct:9.4f}%")
    return table


# ---------------------------------------------------------------- gates


def test_profiled_frame_overhead_is_below_1_percent_of_a_10ms_frame(costs, quick):
    on, _off = costs[FRAME_LABEL]
    overhead_pct = on / (FRAME_MS * 1e3) * 100
    print(
        f"per-frame profiler cost {on:.2f} us = {overhead_pct:.3f} % of a {FRAME_MS:.0f} ms frame"
    )
    assert 0 < on, "the profiled frame must cost something: is the real path being timed?"
    assert overhead_pct < 1.0

    # For information only (not gated: round-to-round noise here is several per cent): a real
    # ~10 ms frame of fixed work, with and without the profiler, interleaved.
    k = _calibrate_work(FRAME_MS / len(SECTIONS) / 1e3)
    prof = PerformanceProfiler()

    def work() -> None:
        sum(range(k))

    t = interleaved(
        {"bare": lambda: _bare_frame(work), "profiled": lambda: _frame(prof, work)},
        rounds=11 if quick else 31,
        inner=3,
    )
    bare, profiled = t["bare"].median_s * 1e3, t["profiled"].median_s * 1e3
    print(
        f"real frame (not gated): bare {bare:.3f} ms, profiled {profiled:.3f} ms, "
        f"difference {(profiled - bare) / bare * 100:+.2f} %"
    )
    assert prof.frames >= 11 * 3, "the profiled real frames were not recorded"


def test_disabled_profiler_costs_a_small_fraction_of_the_enabled_one(costs):
    frame_on, frame_off = costs[FRAME_LABEL]
    section_on, section_off = costs["section enter/exit"]
    print(
        f"disabled/enabled: frame {frame_off:.2f}/{frame_on:.2f} us, "
        f"section {section_off:.3f}/{section_on:.3f} us"
    )
    assert frame_off * 4 < frame_on
    assert section_off * 1.5 < section_on
    for op in ("count()", "set_counter()", "add_time()", "begin_frame()+end_frame()"):
        on, off = costs[op]
        assert off < on, op


def _calibrate_work(seconds: float) -> int:
    """How many integers ``sum(range(k))`` needs to take about ``seconds``."""
    k = 20_000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        sum(range(k))
        best = min(best, time.perf_counter() - t0)
    return max(1, int(k * seconds / best))


# ---------------------------------------------------------------- benchmarks


# A disabled profiler's operation costs tens of nanoseconds: two processes of the same code
# differ by more than ab's 15 % micro margin there (beside the noise generator, 2 of 15 runs
# flagged one, improved or regressed). The in-process gate above holds it instead.
DISABLED = pytest.param(
    False,
    id="disabled",
    marks=pytest.mark.process_sensitive("a disabled profiler's operation: tens of ns"),
)


@pytest.mark.parametrize("enabled", [True, DISABLED], ids=["enabled", "disabled"])
@pytest.mark.parametrize("op", list(PER_CALL))
def test_bench_profiler(benchmark, quick, op, enabled):
    prof = _profiler(enabled)
    fn = _ops(prof)[op]
    n = PER_CALL[op]
    benchmark.group = f"profiler {op} x{n}"
    benchmark.pedantic(fn, rounds=10 if quick else 50, iterations=1, warmup_rounds=1)
    if benchmark.disabled:  # --benchmark-disable ran fn once; the counts below assume rounds
        return
    prof.end_frame()
    stats = prof.section_stats()
    if not enabled:  # nothing recorded
        assert prof.frames == 0 and stats == {} and prof.counters_per_frame() == {}
    elif op == "section enter/exit":
        assert stats["physics"]["count"] >= n
    elif op == "add_time()":
        assert stats["render"]["count"] >= n
    elif op == "count()":
        assert prof.counters_per_frame()["vis_forward_passes"] >= n
    elif op.startswith("frame"):
        assert prof.frames >= n and stats["render"]["count"] >= n
