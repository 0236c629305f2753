"""Soak findings: memory and scene-graph drift over a long headless run with agent churn."""

from __future__ import annotations

import statistics
from typing import Any

from perf.compare import target

RSS_DRIFT_LIMIT_PCT = 5.0


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


def soak_targets(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        target("RSS drift after warm-up (%)", found["rss_drift_pct"], "<", RSS_DRIFT_LIMIT_PCT),
        target("scene nodes max - min after warm-up", found["nodes_max"] - found["nodes_min"],
               "<=", 0),
    ]  # fmt: skip
