"""Soak findings: memory, scene-graph and frame-time drift over a long headless run with agent
churn.

The run has two windows: the frames are timed untraced, then the last ``traced_frames`` run
under tracemalloc for the leak slope. Tracing the whole run made its pacing about the tracer: a
snapshot every 25 frames was a 200-350 ms hitch (381 frames over 50 ms in 10 000).

The frame-time slope is judged only in a run whose agent count stays fixed: churn walks N at
random and the frame time follows it (a late soak with churn read +16 % per 10 000 frames
untraced while its mean N went from 20.5 in the first quarter to 27.6 in the last; with N as a
covariate the trend was +6.7 %). With churn the slope is reported, not judged.

The frame-time slope is the Theil-Sen slope of the median frame time of each block of
``SLOPE_BLOCK`` frames against the block's frame number, in ms per 10 000 frames: a per-frame
cost that grows with the frames so far (a list walked every frame, a cache never trimmed) shows
as a steady slope, while an evaluation's slices or a burst of machine load move a few blocks
and not the median of the pairwise slopes. The limit is a share of the run's median frame.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from perf.compare import target
from perf.pacing import PacingSplit
from perf.trend import theil_sen

RSS_DRIFT_LIMIT_PCT = 5.0
SLOPE_BLOCK = 100  # frames per block median
SLOPE_PER = 10_000  # the slope's unit: ms per this many frames
SLOPE_LIMIT_PCT = 10.0  # of the median frame, per 10 000 frames
# The slope is judged from 20 blocks (2000 frames) on: a short run's slope is the start-up
# settling (the run writer's worker importing, the first evaluation), not a trend.
SLOPE_MIN_BLOCKS = 20
HITCH_FACTOR, HITCH_MS = 4.0, 50.0  # the profiler's hitches (visuals/running_stats.py)
LEAK_WINDOW = 2000  # traced frames at the end of a long run (the leak gate traces 1000)


def window_pacing(frame_ms: Sequence[float]) -> dict[str, float]:
    """The pacing of a window of frames, in the keys of a run record's pacing (``frame_ms_p50``,
    ``frame_ms_p99``, ``fps_1pct_low``, ``frame_ms_max``, ``hitches_*``); hitches as the
    profiler counts them (over 4x the median, over 50 ms)."""
    split = PacingSplit.of(frame_ms)
    ms = np.asarray(frame_ms, dtype=np.float64)
    return {
        "frame_ms_p50": split.p50_ms,
        "frame_ms_p99": split.p99_ms,
        "fps_1pct_low": 1000.0 / split.p99_ms if split.p99_ms else 0.0,
        "frame_ms_max": split.max_ms,
        "hitches_4x_median": float((ms > HITCH_FACTOR * split.p50_ms).sum()),
        "hitches_over_50ms": float((ms > HITCH_MS).sum()),
    }


def traced_frames(frames: int) -> int:
    """How many of a soak's ``frames`` run traced at its end: ``LEAK_WINDOW``, or half of a
    shorter run, leaving the 3 blocks a frame-time slope needs untraced (0 for a run too short
    for both: the leak slope then says it has too few samples)."""
    return max(0, min(LEAK_WINDOW, frames // 2, frames - 3 * SLOPE_BLOCK))


def frame_time_slope(frame_ms: Sequence[float]) -> dict[str, float]:
    """The Theil-Sen slope of the block medians of ``frame_ms`` (every frame's time, in
    order): ms per 10 000 frames, and as a share of the median frame."""
    ms = np.asarray(frame_ms, dtype=np.float64)
    blocks = len(ms) // SLOPE_BLOCK
    if blocks < 3:
        raise ValueError(f"a frame-time slope needs {3 * SLOPE_BLOCK} frames, got {len(ms)}")
    medians = np.median(ms[: blocks * SLOPE_BLOCK].reshape(blocks, SLOPE_BLOCK), axis=1)
    centres = (np.arange(blocks) + 0.5) * SLOPE_BLOCK
    slope = theil_sen(centres, medians) * SLOPE_PER
    median = float(np.median(ms))
    return {
        "frame_ms_median": median,
        "frame_slope_ms_per_10k": slope,
        "frame_slope_pct_per_10k": 100.0 * slope / median,
        "slope_blocks": float(blocks),
    }


def soak_findings(series: list[dict[str, float]], warmup_frames: int) -> dict[str, Any]:
    """RSS and node counts after the warm-up, from the run's periodic samples.

    ``rss_growth_pct`` is last sample vs first. ``rss_drift_pct`` is the trend: the median
    increment between consecutive samples times the number of intervals. A leak raises every
    interval and shows in both; a one-time step (glibc keeping a freed burst of heap, seen here
    at random frames, ~30 MB once per run at most) moves one interval and barely the median.
    """
    after = [s for s in series if s["frame"] >= warmup_frames]
    if len(after) < 3:
        raise ValueError("soak run too short: need at least 3 samples after the warm-up")
    rss = [s["rss_mb"] for s in after]
    steps = [b - a for a, b in zip(rss, rss[1:], strict=False)]
    nodes = [s["nodes"] for s in after]
    return {
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "rss_growth_pct": 100.0 * (rss[-1] - rss[0]) / rss[0],
        "rss_drift_pct": 100.0 * statistics.median(steps) * len(steps) / rss[0],
        "largest_step_mb": max(steps),
        "nodes_min": min(nodes),
        "nodes_max": max(nodes),
        "samples": len(after),
    }


def soak_targets(found: dict[str, Any], judge_slope: bool = True) -> list[dict[str, Any]]:
    """RSS drift and scene nodes always; the frame-time slope from ``SLOPE_MIN_BLOCKS`` blocks
    on, when ``judge_slope`` (no churn: module docstring)."""
    targets = [
        target("RSS drift after warm-up (%)", found["rss_drift_pct"], "<", RSS_DRIFT_LIMIT_PCT),
        target("scene nodes max - min after warm-up", found["nodes_max"] - found["nodes_min"],
               "<=", 0),
    ]  # fmt: skip
    if judge_slope and found.get("slope_blocks", 0) >= SLOPE_MIN_BLOCKS:
        targets.append(
            target(
                "frame-time slope (% of the median frame per 10 000 frames)",
                found["frame_slope_pct_per_10k"],
                "<",
                SLOPE_LIMIT_PCT,
            )
        )
    return targets
