"""The Stage-4 target logic of calf-perf on synthetic summaries, and the soak's drift measure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf.compare import scale_targets, stage4_targets, summarize
from perf.soak import (
    frame_time_slope,
    soak_findings,
    soak_targets,
    traced_frames,
    window_pacing,
)


def row(fps: float, cpu: float, fwd: float, draws: float) -> dict[str, float]:
    return {
        "fps": fps, "frame_ms_p50": 1000 / fps, "frame_ms_p95": 1200 / fps,
        "cpu_ms_per_frame": cpu, "forward_passes_per_frame": fwd,
        "training_forward_passes_per_frame": 6.0, "mesh_updates_per_frame": 4.0,
        "draw_calls_per_frame": draws, "rss_mb": 500.0, "frame_ms_p99": 1500 / fps,
        "frame_ms_p999": 1800 / fps, "frame_ms_max": 2000 / fps, "hitches_4x_median": 0.0,
        "hitches_over_50ms": 0.0, "fps_1pct_low": fps / 1.5,
    }  # fmt: skip


def summary(opt: dict[int, dict], ref: dict[int, dict]) -> dict:
    return {
        "optimised": {str(n): r for n, r in opt.items()},
        "reference": {str(n): r for n, r in ref.items()},
    }


GOOD_OPT = {5: row(100, 16, 2, 41), 20: row(92, 17, 2, 41), 30: row(80, 20, 2, 41)}
GOOD_REF = {5: row(57, 25, 11, 66), 20: row(28, 45, 41, 132), 30: row(23, 54, 61, 184)}


def test_stage4_targets_pass_on_a_healthy_comparison():
    targets = stage4_targets(summary(GOOD_OPT, GOOD_REF))
    assert len(targets) == 6 and all(t["ok"] for t in targets), targets


@pytest.mark.parametrize(
    "broken, fails",
    [
        ({20: row(30, 17, 2, 41)}, "fps ratio"),  # optimised no faster
        ({20: row(92, 40, 2, 41)}, "cpu ms/frame ratio"),  # optimised burns the CPU
        ({30: row(80, 20, 61, 41)}, "max visualisation forward passes"),  # per-agent forwards
        ({30: row(80, 20, 2, 184)}, "draw calls per frame, optimised"),  # draw calls grow
    ],
)
def test_each_stage4_target_fails_on_its_regression(broken, fails):
    opt = {**GOOD_OPT, **broken}
    failed = [t["name"] for t in stage4_targets(summary(opt, GOOD_REF)) if not t["ok"]]
    assert len(failed) == 1 and fails in failed[0], failed


def test_scale_targets_read_fps_at_100_and_1000_agents():
    s = {"optimised": {"100": row(59, 20, 2, 41), "1000": row(21, 60, 2, 41)}}
    ok = {t["name"]: t["ok"] for t in scale_targets(s)}
    assert ok == {"optimised FPS at N=100": False, "optimised FPS at N=1000": True}


def test_summarize_takes_medians_over_rounds():
    runs = [
        {**row(fps, 10, 2, 41), "mode": "optimised", "agents": 5, "round": r}
        for r, fps in enumerate((50.0, 90.0, 70.0))
    ]
    assert summarize(runs)["optimised"]["5"]["fps"] == 70.0


def series(rss: list[float], nodes: int = 79, every: int = 100) -> list[dict[str, float]]:
    return [{"frame": (i + 1) * every, "rss_mb": r, "nodes": nodes} for i, r in enumerate(rss)]


def test_soak_drift_ignores_a_one_time_step_but_reports_it_as_raw_growth():
    found = soak_findings(series([540, 541, 541, 571, 571, 572, 571, 571]), warmup_frames=0)
    assert found["rss_growth_pct"] > 5.0
    assert abs(found["rss_drift_pct"]) < 0.5
    assert found["largest_step_mb"] == 30
    assert all(t["ok"] for t in soak_targets(found))


def test_soak_drift_catches_a_steady_leak():
    leak = [540 + 5 * i for i in range(10)]  # 5 MB per sample: 45 MB over the run
    found = soak_findings(series(leak), warmup_frames=0)
    assert found["rss_drift_pct"] == pytest.approx(found["rss_growth_pct"])
    assert not soak_targets(found)[0]["ok"]


def test_soak_node_count_must_stay_flat():
    s = series([540] * 5)
    s[3]["nodes"] = 80
    assert not soak_targets(soak_findings(s, warmup_frames=0))[1]["ok"]


@settings(max_examples=50, deadline=None)
@given(
    slope=st.floats(min_value=-2.0, max_value=2.0),
    base=st.floats(min_value=2.0, max_value=30.0),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_the_frame_time_slope_recovers_a_steady_growth_through_noise_and_spikes(
    slope: float, base: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    frames = np.arange(6000)
    ms = base + slope * frames / 10_000 + rng.normal(0.0, 0.05 * base, frames.size)
    ms[rng.integers(0, frames.size, 40)] += 50.0 * base  # evaluations, load bursts
    found = frame_time_slope(ms)
    assert abs(found["frame_slope_ms_per_10k"] - slope) < 0.02 * base + 0.01


@pytest.mark.parametrize(("frames", "traced"), [(10_000, 2000), (4000, 2000), (500, 200), (250, 0)])
def test_a_soak_traces_its_last_frames_and_leaves_three_blocks_untraced(frames, traced):
    assert traced_frames(frames) == traced


def test_window_pacing_counts_the_hitches_of_its_frames_only():
    ms = [10.0] * 990 + [300.0] * 10
    p = window_pacing(ms)
    assert p["frame_ms_max"] == 300.0 and p["hitches_over_50ms"] == 10.0
    assert p["hitches_4x_median"] == 10.0 and 9.0 < p["frame_ms_p50"] < 11.0
    assert window_pacing(ms[:990])["hitches_over_50ms"] == 0.0


def test_the_frame_time_slope_is_judged_only_when_the_agent_count_stays_fixed():
    found = {**soak_findings(series([540] * 8), warmup_frames=0), "slope_blocks": 80.0,
             "frame_slope_pct_per_10k": 16.0}  # fmt: skip
    assert [t["ok"] for t in soak_targets(found)] == [True, True, False]
    assert [t["ok"] for t in soak_targets(found, judge_slope=False)] == [True, True]
