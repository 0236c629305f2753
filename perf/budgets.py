"""Work budgets: the exact work one frame may do, checked on every frame of a seeded run.

Timing catches only what is bigger than the noise; the three slow patterns of the upstream code
(per-agent Python loops, redundant network queries, per-frame rebuilds) are countable, and a
count does not flake.
A headless run with ``--probe work=1`` records each frame's counts (forward passes by the stage
that made them, vertex-buffer uploads and bytes by drawn layer, text layouts by text); the
budgets below are checked on those rows, at N = 5 and N = 100 in one ``calf-perf budgets`` run.
Two more budgets need their own measurements: Python work per stage call
(``perf/suites/test_stage_calls``, the same stage called on the same state of the world at both
sizes) and retained Python memory per frame (``perf.leak``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]

VERTEX_BYTES = 16  # one interleaved vertex: float32 x, y, z and RGBA uint8
# Per agent and frame: its new vertex and up to 12 four-byte index entries (the two segments a
# push re-points, and with trail level of detail the few older segments it re-links).
TRAIL_BYTES_PER_AGENT = VERTEX_BYTES + 12 * 4
# Per frame, whatever the N: clearing a finished agent's trail, the training agent's trail and
# timeline, a run's odd extra write.
BYTES_CONSTANT = 16_384
FPS_PERIOD = 30  # frames between two layouts of the FPS counter
PANEL_LAYOUTS_PER_FRAME = 0.3  # the StatsCache's periods show fast fields every 10-60 frames
# Who may run the networks: the agents' batched policy, the surface refresh, training, and the
# periodic evaluations of a run that writes its folder (the budgets' runs write none).
FORWARD_STAGES = ("policy", "heatmap", "training", "evaluation")
SURFACE_MIN_PERIOD = 100  # frames between surface refreshes, at least (presets: 250-1000 steps)
# A stage's Python work per frame in the app may differ between N = 5 and N = 100 by what the
# world does (a row falling back, trails switching to level of detail), never by one per agent.
CALL_GROWTH_LIMIT = 48


@dataclass(frozen=True)
class Budget:
    """One line of the contract: what is counted, its limit, and how a run is checked."""

    name: str
    limit: str
    check: Callable[[Sequence[Row]], tuple[float, bool]]  # rows -> (measured, within budget)


def _col(rows: Sequence[Row], key: str) -> list[float]:
    return [float(r.get(key, 0.0)) for r in rows]


def _refresh(rows: Sequence[Row]) -> list[bool]:
    return [f > 0 for f in _col(rows, "forwards.heatmap")]


def _exactly(key: str, value: float) -> Callable[[Sequence[Row]], tuple[float, bool]]:
    def check(rows: Sequence[Row]) -> tuple[float, bool]:
        seen = _col(rows, key)
        worst = max(seen, key=lambda v: abs(v - value))
        return worst, all(v == value for v in seen)

    return check


def _other_forwards(rows: Sequence[Row]) -> tuple[float, bool]:
    extra = [
        sum(v for k, v in r.items() if k.startswith("forwards.") and k[9:] not in FORWARD_STAGES)
        for r in rows
    ]
    return max(extra), max(extra) == 0


def _surface_forwards(rows: Sequence[Row]) -> tuple[float, bool]:
    seen = _col(rows, "forwards.heatmap")
    return max(seen), all(v in (0.0, 1.0) for v in seen)


def _surface_refresh_rate(rows: Sequence[Row]) -> tuple[float, bool]:
    refreshes = sum(_refresh(rows))
    return refreshes, refreshes <= len(rows) // SURFACE_MIN_PERIOD + 1


def _surface_writes_only_on_refresh(rows: Sequence[Row]) -> tuple[float, bool]:
    off = [
        b for b, r in zip(_col(rows, "vertex_bytes.surface"), _refresh(rows), strict=True) if not r
    ]
    return max(off, default=0.0), not any(off)


def _surface_uploads(rows: Sequence[Row]) -> tuple[float, bool]:
    ups = _col(rows, "uploads.surface")
    ok = all(u == (2.0 if r else 0.0) for u, r in zip(ups, _refresh(rows), strict=True))
    return max(ups), ok


def _mean_bytes_per_agent_limit(
    layer: str, per_agent: int
) -> Callable[[Sequence[Row]], tuple[float, bool]]:
    """Mean bytes per frame of ``layer`` <= N x per_agent + BYTES_CONSTANT."""

    def check(rows: Sequence[Row]) -> tuple[float, bool]:
        written = _col(rows, f"vertex_bytes.{layer}")
        allowed = [a * per_agent + BYTES_CONSTANT for a in _col(rows, "agents")]
        mean, limit = sum(written) / len(written), sum(allowed) / len(allowed)
        return mean, mean <= limit

    return check


def _at_most_one_upload(layer: str) -> Callable[[Sequence[Row]], tuple[float, bool]]:
    def check(rows: Sequence[Row]) -> tuple[float, bool]:
        worst = max(_col(rows, f"uploads.{layer}"))
        return worst, worst <= 1

    return check


def _no_wasted_layouts(rows: Sequence[Row]) -> tuple[float, bool]:
    wasted = [sum(v for k, v in r.items() if k.startswith("wasted_layouts.")) for r in rows]
    return sum(wasted), sum(wasted) == 0


def _fps_once_per_period(rows: Sequence[Row]) -> tuple[float, bool]:
    layouts = _col(rows, "layouts.fps")
    windows = [
        sum(layouts[i : i + FPS_PERIOD]) for i in range(max(len(layouts) - FPS_PERIOD + 1, 1))
    ]
    return max(windows), max(windows) <= 1


def _panel_layouts(rows: Sequence[Row]) -> tuple[float, bool]:
    mean = sum(_col(rows, "layouts.panel")) / len(rows)
    return mean, mean <= PANEL_LAYOUTS_PER_FRAME


BUDGETS: tuple[Budget, ...] = (
    Budget(
        "forwards: visual agents (policy)",
        "exactly 2 per frame (1 actor + 1 critic)",
        _exactly("forwards.policy", 2.0),
    ),
    Budget("forwards: heights", "0", _exactly("forwards.heights", 0.0)),
    Budget("forwards: panel (ui)", "0", _exactly("forwards.ui", 0.0)),
    Budget("forwards: surface (heatmap)", "1 on a refresh frame, else 0", _surface_forwards),
    Budget(
        "surface refreshes",
        f"at most 1 per {SURFACE_MIN_PERIOD} frames",
        _surface_refresh_rate,
    ),
    Budget("forwards: any other stage, or none", "0", _other_forwards),
    Budget(
        "vertex bytes: trails",
        f"mean <= N x {TRAIL_BYTES_PER_AGENT} + {BYTES_CONSTANT}",
        _mean_bytes_per_agent_limit("trails", TRAIL_BYTES_PER_AGENT),
    ),
    Budget(
        "vertex bytes: markers",
        f"mean <= N x {VERTEX_BYTES} + {BYTES_CONSTANT}",
        _mean_bytes_per_agent_limit("markers", VERTEX_BYTES),
    ),
    Budget("vertex bytes: surface", "0 except on refresh frames", _surface_writes_only_on_refresh),
    Budget(
        "uploads: surface", "2 on a refresh frame (surface + overlay), else 0", _surface_uploads
    ),
    Budget("uploads: trails", "<= 1 per frame", _at_most_one_upload("trails")),
    Budget("uploads: markers", "<= 1 per frame", _at_most_one_upload("markers")),
    Budget("uploads: training agent's trail", "<= 1 per frame", _at_most_one_upload("agent_trail")),
    Budget("uploads: certificate timeline", "<= 1 per frame", _at_most_one_upload("timeline")),
    Budget(
        "text layouts: unchanged text",
        "0 (no text assigned the string it shows)",
        _no_wasted_layouts,
    ),
    Budget("text layouts: FPS counter", f"<= 1 in any {FPS_PERIOD} frames", _fps_once_per_period),
    Budget("text layouts: panel", f"mean <= {PANEL_LAYOUTS_PER_FRAME} per frame", _panel_layouts),
)
# Checked across a run's sizes, and measured apart (see the module doc); listed for the table.
CROSS_BUDGETS: tuple[tuple[str, str], ...] = (
    ("draw calls", "the same at N = 5 and N = 100"),
    ("Python work per frame by stage (the app, sampled frames: calls + lines)",
     f"grow by less than {CALL_GROWTH_LIMIT} from N = 5 to N = 100"),
    ("Python work per stage call (calls + lines)",
     "the same at N = 5 and N = 100 (policy, physics, heights, trail push, markers, panel)"),
    ("retained Python memory", "< 64 bytes per frame (tracemalloc slope over 1000 frames, agents "
     "churning)"),
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    budget: str
    limit: str
    agents: int
    measured: float
    ok: bool


def check_rows(rows: Sequence[Row]) -> list[Finding]:
    """Every per-frame budget on one run's rows (all at one N)."""
    if not rows:
        raise ValueError("no frames recorded: run with --probe work=1 past the warm-up")
    agents = int(rows[0].get("agents", 0))
    return [Finding(b.name, b.limit, agents, *b.check(rows)) for b in BUDGETS]


def check_draw_calls(rows_by_n: dict[int, Sequence[Row]]) -> Finding:
    """Draw calls the same at every N of the run."""
    calls = {n: max(_col(rows, "draw_calls")) for n, rows in rows_by_n.items()}
    spread = max(calls.values()) - min(calls.values())
    return Finding("draw calls", CROSS_BUDGETS[0][1], max(calls), spread, spread == 0)


def check_call_growth(calls_by_n: dict[int, Sequence[Row]]) -> list[Finding]:
    """Per stage: the median Python work (calls + lines) of the sampled frames at the largest N
    minus the smallest N's, under CALL_GROWTH_LIMIT (a per-agent loop adds a line per agent at
    least)."""
    small, large = min(calls_by_n), max(calls_by_n)
    if small == large:
        return []
    limit = CROSS_BUDGETS[1][1]

    def median(rows: Sequence[Row], stage: str) -> float:
        values = sorted(float(r.get(stage, 0)) for r in rows)
        return values[len(values) // 2]

    stages = sorted({k for r in calls_by_n[large] for k in r if k not in ("frame", "agents", "-")})
    out = []
    for stage in stages:
        growth = median(calls_by_n[large], stage) - median(calls_by_n[small], stage)
        out.append(
            Finding(
                f"Python work per frame: {stage}", limit, large, growth, growth < CALL_GROWTH_LIMIT
            )
        )
    return out


def format_findings(findings: Sequence[Finding]) -> str:
    width = max(len(f.budget) for f in findings)
    lines = []
    for f in findings:
        value = "inf" if math.isinf(f.measured) else f"{f.measured:g}"
        lines.append(
            f"  [{'ok ' if f.ok else 'FAIL'}] N={f.agents:<4} {f.budget:<{width}}  {value:>10}"
            f"  (budget: {f.limit})"
        )
    return "\n".join(lines)
