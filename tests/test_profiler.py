"""PerformanceProfiler: sections, frames, counters, statistics, export, disabled mode, bounds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visuals.profiler import PerformanceProfiler


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make(**kwargs: object) -> tuple[PerformanceProfiler, FakeClock, FakeClock]:
    clock, cpu = FakeClock(), FakeClock(5.0)
    prof = PerformanceProfiler(clock=clock, cpu_clock=cpu, **kwargs)  # type: ignore[arg-type]
    return prof, clock, cpu


# ---------------------------------------------------------------- sections


def test_section_times_a_real_sleep():
    prof = PerformanceProfiler()
    with prof.section("physics"):
        time.sleep(0.02)
    s = prof.section_stats()["physics"]
    assert s["count"] == 1 and s["samples"] == 1
    assert 20.0 <= s["last_ms"] < 500.0
    assert s["last_ms"] == s["min_ms"] == s["max_ms"] == s["total_ms"] == s["ema_ms"]


def test_section_times_with_fake_clock_and_frame_wall_time():
    prof, clock, _ = make()
    prof.begin_frame()
    clock.advance(0.001)
    with prof.section("policy"):
        clock.advance(0.002)
    clock.advance(0.0005)
    prof.end_frame()
    assert prof.section_stats()["policy"]["last_ms"] == pytest.approx(2.0)
    f = prof.frame_stats()
    assert f["frames"] == 1
    assert f["frame_ms_mean"] == pytest.approx(3.5)
    assert f["fps"] == pytest.approx(1000.0 / 3.5)


def test_nested_sections_each_measure_inclusive_time():
    prof, clock, _ = make()
    prof.begin_frame()
    with prof.section("training"):
        clock.advance(0.001)
        with prof.section("policy"):
            clock.advance(0.002)
        clock.advance(0.003)
    prof.end_frame()
    stats = prof.section_stats()
    assert stats["training"]["last_ms"] == pytest.approx(6.0)
    assert stats["policy"]["last_ms"] == pytest.approx(2.0)


def test_recursive_section_is_timed_once_by_its_outermost_call():
    prof, clock, _ = make()

    def walk(depth: int) -> None:
        with prof.section("heatmap"):
            clock.advance(0.001)
            if depth:
                walk(depth - 1)

    prof.begin_frame()
    walk(3)  # 4 nested calls, 4 ms in all
    prof.end_frame()
    s = prof.section_stats()["heatmap"]
    assert s["count"] == 4
    assert s["samples"] == 1
    assert s["total_ms"] == pytest.approx(4.0)


def test_section_records_when_its_block_raises():
    prof, clock, _ = make()
    with pytest.raises(RuntimeError), prof.section("ui"):
        clock.advance(0.004)
        raise RuntimeError("boom")
    assert prof.section_stats()["ui"]["last_ms"] == pytest.approx(4.0)
    # the section is usable again afterwards (its nesting depth went back to 0)
    with prof.section("ui"):
        clock.advance(0.001)
    assert prof.section_stats()["ui"]["last_ms"] == pytest.approx(1.0)


def test_per_frame_sample_is_the_sum_of_the_calls_in_that_frame():
    prof, clock, _ = make()
    prof.begin_frame()
    for ms in (1.0, 2.0, 3.0):
        with prof.section("trails"):
            clock.advance(ms / 1e3)
    prof.end_frame()
    prof.begin_frame()
    with prof.section("trails"):
        clock.advance(0.004)
    prof.end_frame()
    prof.begin_frame()  # a frame without the section gives it no sample
    clock.advance(0.010)
    prof.end_frame()
    s = prof.section_stats()["trails"]
    assert s["count"] == 4
    assert s["samples"] == 2
    assert [s["min_ms"], s["max_ms"], s["last_ms"]] == pytest.approx([4.0, 6.0, 4.0])
    assert s["total_ms"] == pytest.approx(10.0)
    assert s["mean_ms"] == pytest.approx(5.0)
    assert s["ms_per_frame"] == pytest.approx(10.0 / 3)
    assert s["p50_ms"] == pytest.approx(5.0)


def test_add_time_records_a_section_measured_elsewhere():
    prof, _, _ = make()
    prof.begin_frame()
    prof.add_time("render", 0.007)
    prof.add_time("render", 0.001)
    prof.end_frame()
    s = prof.section_stats()["render"]
    assert s["count"] == 2 and s["samples"] == 1
    assert s["last_ms"] == pytest.approx(8.0)


def test_sections_outside_a_frame_still_count_one_sample_per_call():
    prof, clock, _ = make()
    with prof.section("heatmap"):
        clock.advance(0.002)
    prof.add_time("heatmap", 0.003)
    s = prof.section_stats()["heatmap"]
    assert s["count"] == 2 and s["samples"] == 2
    assert s["total_ms"] == pytest.approx(5.0)
    assert prof.frame_stats()["frames"] == 0


# ---------------------------------------------------------------- statistics


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.floats(min_value=0.0, max_value=500.0, allow_nan=False), min_size=1, max_size=120
    ),
    window=st.integers(min_value=1, max_value=50),
)
def test_p50_p95_equal_numpy_percentile_of_last_window_samples(samples, window):
    prof, clock, _ = make(window=window)
    for ms in samples:
        prof.begin_frame()
        prof.add_time("policy", ms / 1e3)
        clock.advance(ms / 1e3)
        prof.end_frame()
    tail = np.asarray(samples[-window:])
    want50, want95 = np.percentile(tail, [50, 95])
    s = prof.section_stats()["policy"]
    assert s["p50_ms"] == pytest.approx(want50, rel=1e-9, abs=1e-9)
    assert s["p95_ms"] == pytest.approx(want95, rel=1e-9, abs=1e-9)
    # min / max / total cover every sample since reset, not only the window
    assert s["min_ms"] == pytest.approx(min(samples), abs=1e-9)
    assert s["max_ms"] == pytest.approx(max(samples), abs=1e-9)
    assert s["total_ms"] == pytest.approx(sum(samples), rel=1e-9, abs=1e-9)
    # the frame percentiles use the same ring logic (frame time == sample here, up to clock
    # rounding of the fake clock's float additions)
    f = prof.frame_stats()
    assert f["frame_ms_p50"] == pytest.approx(np.percentile(tail, 50), rel=1e-6, abs=1e-6)
    assert f["frame_ms_p95"] == pytest.approx(np.percentile(tail, 95), rel=1e-6, abs=1e-6)
    assert f["frames"] == len(samples)


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(
        st.floats(min_value=0.0, max_value=100.0, allow_nan=False), min_size=1, max_size=60
    ),
    alpha=st.floats(min_value=0.01, max_value=1.0),
)
def test_ema_follows_first_sample_then_alpha_recurrence(samples, alpha):
    prof, _, _ = make(ema_alpha=alpha)
    ema = samples[0]
    for x in samples[1:]:
        ema += alpha * (x - ema)
    for x in samples:
        prof.begin_frame()
        prof.add_time("ui", x / 1e3)
        prof.end_frame()
    assert prof.section_stats()["ui"]["ema_ms"] == pytest.approx(ema, rel=1e-9, abs=1e-9)


def test_counters_per_frame_sums_and_gauges():
    prof, _, _ = make()
    for frame in range(4):
        prof.begin_frame()
        prof.count("vis_forward_passes", 2)
        prof.count("vis_forward_passes")  # several counts in one frame add up
        if frame % 2 == 0:
            prof.count("mesh_updates")  # touched in 2 of 4 frames: mean 0.5
            prof.set_counter("draw_calls", 10 + frame)  # a gauge sampled every 2nd frame
        prof.set_counter("draw_calls_every_frame", 7)
        prof.set_counter("draw_calls_every_frame", 9)  # set overrides within a frame
        prof.end_frame()
    c = prof.counters_per_frame()
    assert c["vis_forward_passes"] == pytest.approx(3.0)
    assert c["mesh_updates"] == pytest.approx(0.5)
    assert c["draw_calls"] == pytest.approx((10 + 12) / 2)
    assert c["draw_calls_every_frame"] == pytest.approx(9.0)


def test_counts_made_outside_a_frame_go_to_the_next_frame():
    prof, _, _ = make()
    prof.count("train_forward_passes", 5)
    prof.begin_frame()
    prof.end_frame()
    assert prof.counters_per_frame()["train_forward_passes"] == pytest.approx(5.0)


def test_cpu_ms_per_frame_is_exact_over_the_frames_including_gaps():
    prof, clock, cpu = make()
    for cpu_in, cpu_gap in ((0.004, 0.001), (0.006, 0.0), (0.002, 0.003)):
        prof.begin_frame()
        cpu.advance(cpu_in)
        clock.advance(0.010)
        prof.end_frame()
        cpu.advance(cpu_gap)  # CPU spent between frames counts towards the next frame
        clock.advance(0.001)
    f = prof.frame_stats()
    # 0.004 + (0.001 + 0.006) + (0.0 + 0.002) = 13 ms over 3 frames; the last gap is not closed
    assert f["cpu_ms_per_frame"] == pytest.approx(13.0 / 3)
    assert f["cpu_percent_at_60fps"] == pytest.approx(13.0 / 3 / (1000 / 60) * 100)
    assert f["cpu_percent"] == pytest.approx(13.0 / 32.0 * 100)  # wall: 3 x 10 ms + 2 gaps


def test_cpu_time_matches_psutil_process_cpu_times():
    prof = PerformanceProfiler()
    proc = psutil.Process()
    before = proc.cpu_times()
    frames = 5
    for _ in range(frames):
        prof.begin_frame()
        end = time.process_time() + 0.03
        while time.process_time() < end:  # 30 ms of CPU per frame
            pass
        prof.end_frame()
    after = proc.cpu_times()
    psutil_ms = (after.user + after.system - before.user - before.system) * 1e3 / frames
    ours = prof.frame_stats()["cpu_ms_per_frame"]
    assert ours >= 30.0
    # psutil counts in clock ticks (10 ms): allow two ticks over the whole run, per frame
    assert abs(ours - psutil_ms) <= 20.0 / frames + 1.0


def test_thread_cpu_is_the_main_threads_own_time_per_frame():
    clock, cpu, thread = FakeClock(), FakeClock(5.0), FakeClock(1.0)
    prof = PerformanceProfiler(clock=clock, cpu_clock=cpu, thread_clock=thread)
    prof.begin_frame()
    for _ in range(4):
        clock.advance(0.010)
        cpu.advance(0.008)  # the process: main thread plus render threads
        thread.advance(0.005)
        prof.end_frame()
    f = prof.frame_stats()
    assert f["frames"] == 4
    assert f["cpu_ms_per_frame"] == pytest.approx(8.0)
    assert f["thread_cpu_ms_per_frame"] == pytest.approx(5.0)


def test_sections_keep_the_order_their_user_registered():
    prof = PerformanceProfiler(sections=("training", "policy", "render"))
    prof.begin_frame()
    for name in ("render", "extra", "training", "policy"):
        with prof.section(name):
            pass
    prof.end_frame()
    assert list(prof.section_stats()) == ["training", "policy", "render", "extra"]


def test_rss_is_sampled():
    prof, _, _ = make(rss_every=2)
    for _ in range(4):
        prof.begin_frame()
        prof.end_frame()
    f = prof.frame_stats()
    rss = psutil.Process().memory_info().rss / 2**20
    assert 0.5 * rss < f["rss_mb"] < 2 * rss
    assert f["rss_mb_max"] >= f["rss_mb"] > 0


# ---------------------------------------------------------------- frames


def test_end_frame_alone_works_as_a_lap_timer():
    prof, clock, _ = make()
    prof.end_frame()  # starts the clocks only
    for ms in (5.0, 7.0):
        with prof.section("physics"):
            clock.advance(ms / 1e3)
        prof.end_frame()
    f = prof.frame_stats()
    assert f["frames"] == 2
    assert f["frame_ms_mean"] == pytest.approx(6.0)
    assert f["frame_ms_last"] == pytest.approx(7.0)


def test_begin_frame_while_open_closes_the_open_frame():
    prof, clock, _ = make()
    prof.begin_frame()
    clock.advance(0.002)
    prof.begin_frame()
    clock.advance(0.003)
    prof.end_frame()
    f = prof.frame_stats()
    assert f["frames"] == 2
    assert f["frame_ms_min"] == pytest.approx(2.0)
    assert f["frame_ms_max"] == pytest.approx(3.0)


def test_disabled_records_nothing_and_hands_out_one_shared_no_op():
    prof, clock, cpu = make(enabled=False)
    assert prof.section("physics") is prof.section("policy")
    for _ in range(3):
        prof.begin_frame()
        with prof.section("physics"):
            clock.advance(0.001)
        prof.add_time("render", 0.002)
        prof.count("vis_forward_passes")
        prof.set_counter("draw_calls", 4)
        prof.end_frame()
    assert prof.frames == 0
    assert prof.section_stats() == {}
    assert prof.counters_per_frame() == {}
    assert prof.frame_stats()["frames"] == 0


def test_toggling_off_drops_the_open_frame_and_disabled_time_counts_nowhere():
    prof, clock, cpu = make()
    prof.begin_frame()
    with prof.section("policy"):
        clock.advance(0.001)
    prof.enabled = False  # F2 during a frame
    prof.end_frame()
    clock.advance(10.0)
    cpu.advance(10.0)
    prof.enabled = True
    prof.begin_frame()
    with prof.section("policy"):
        clock.advance(0.002)
    cpu.advance(0.002)
    prof.end_frame()
    f = prof.frame_stats()
    assert f["frames"] == 1
    assert f["frame_ms_mean"] == pytest.approx(2.0)
    assert f["cpu_ms_per_frame"] == pytest.approx(2.0)
    s = prof.section_stats()["policy"]
    assert s["samples"] == 1 and s["last_ms"] == pytest.approx(2.0)


def test_section_running_while_disabled_is_not_recorded():
    prof, clock, _ = make()
    with prof.section("ui"):
        clock.advance(0.001)
        prof.enabled = False
    prof.enabled = True
    assert "ui" not in prof.section_stats() or prof.section_stats()["ui"]["samples"] == 0


def test_reset_forgets_everything_and_drops_the_open_frame():
    prof, clock, _ = make()
    for _ in range(3):
        prof.begin_frame()
        with prof.section("physics"):
            clock.advance(0.002)
        prof.count("mesh_updates")
        prof.end_frame()
    prof.begin_frame()
    prof.count("mesh_updates", 100)
    prof.reset()  # F3 in the middle of a frame
    prof.end_frame()  # only restarts the clocks
    assert prof.frames == 0
    assert prof.section_stats() == {}
    assert prof.counters_per_frame() == {"mesh_updates": 0.0}
    prof.begin_frame()
    with prof.section("physics"):
        clock.advance(0.001)
    prof.end_frame()
    s = prof.section_stats()["physics"]
    assert s["samples"] == 1 and s["max_ms"] == pytest.approx(1.0)
    assert s["p95_ms"] == pytest.approx(1.0)  # the ring was emptied too


# ---------------------------------------------------------------- export


def run_frames(prof: PerformanceProfiler, clock: FakeClock, n: int) -> None:
    for i in range(n):
        prof.begin_frame()
        with prof.section("policy"):
            clock.advance(0.001)
        if i % 2:
            with prof.section("physics"):
                clock.advance(0.002)
        prof.count("vis_forward_passes", 2)
        if i % 3 == 0:
            prof.set_counter("draw_calls", 5)
        clock.advance(0.010)
        prof.end_frame()


def test_to_json_round_trip(tmp_path: Path):
    prof, clock, _ = make()
    run_frames(prof, clock, 10)
    path = prof.to_json(tmp_path / "sub" / "profile.json")
    assert path == tmp_path / "sub" / "profile.json"
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert set(data) == {"frame", "sections", "counters", "meta"}
    for key in (
        "frames",
        "frame_ms_p50",
        "frame_ms_p95",
        "frame_ms_mean",
        "fps",
        "cpu_ms_per_frame",
        "cpu_percent_at_60fps",
        "rss_mb",
    ):
        assert key in data["frame"]
    for key in ("count", "last_ms", "ema_ms", "min_ms", "max_ms", "p50_ms", "p95_ms", "total_ms"):
        assert key in data["sections"]["policy"]
    assert data["frame"]["frames"] == 10
    assert data["counters"] == {"vis_forward_passes": 2.0, "draw_calls": 5.0}
    assert data["sections"] == json.loads(json.dumps(prof.section_stats()))
    assert data["meta"]["window"] == 1000
    assert [p.name for p in path.parent.iterdir()] == ["profile.json"]  # no temp file left


def test_to_json_of_an_empty_profiler_is_valid_json(tmp_path: Path):
    prof, _, _ = make()
    data = json.loads(prof.to_json(tmp_path / "p.json").read_text())
    assert data["frame"]["frames"] == 0 and data["sections"] == {}


# ---------------------------------------------------------------- bounds, errors, imports


def test_memory_is_bounded_by_the_window_over_a_long_soak():
    prof, clock, cpu = make(window=100, rss_every=1000)
    names = ("training", "policy", "physics", "heights", "trails", "heatmap", "ui", "render")

    def frames(n: int) -> None:
        for _ in range(n):
            prof.begin_frame()
            for name in names:
                with prof.section(name):
                    clock.advance(1e-4)
            prof.count("vis_forward_passes", 2)
            prof.set_counter("draw_calls", 3)
            cpu.advance(1e-3)
            prof.end_frame()

    frames(300)  # past the window: every ring is full
    tracemalloc.start()
    try:
        frames(200)
        before = tracemalloc.get_traced_memory()[0]
        frames(12_000)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert prof.frames == 12_500 and prof.frame_stats()["frames"] == 12_500
    assert after - before < 4096, f"grew by {after - before} bytes over 12000 frames"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ema_alpha": 0.0},
        {"ema_alpha": 1.5},
        {"window": 0},
        {"window": 2.5},
        {"rss_every": 0},
    ],
)
def test_bad_constructor_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PerformanceProfiler(**kwargs)


def test_bad_values_raise_value_error():
    prof, _, _ = make()
    with pytest.raises(ValueError, match="seconds"):
        prof.add_time("render", -1.0)
    with pytest.raises(ValueError, match="seconds"):
        prof.add_time("render", math.nan)
    with pytest.raises(ValueError, match="NaN"):
        prof.set_counter("draw_calls", math.nan)
    with pytest.raises(ValueError, match="name"):
        prof.section("")
    with pytest.raises(ValueError, match="name"):
        prof.count("")


def test_importing_the_profiler_pulls_in_nothing_heavy():
    code = (
        "import sys, visuals.profiler\n"
        "heavy = [m for m in ('torch', 'ursina', 'panda3d', 'gymnasium', 'matplotlib')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
