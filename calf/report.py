"""The report figure of a run (matplotlib, Agg, imported on first use; no window).

One PNG per evaluation, four rows:

1. training progress: episodic return, episode length, success, final distance (log axis);
2. the CALF mode shares of each training episode, P_relax, and the evaluations: success rate and
   mean steps to goal of CALF as deployed, the actor alone and the nominal policy alone;
3. the critic's Q(s, actor(s)) over the phase plane with the latest evaluation's CALF
   trajectories coloured by mode, and the certificate value Q-dagger over the last episodes;
4. where the replay buffer has been: a 2-D histogram over the plane and the share of cells
   of the reset box that hold at least one transition.

``ReportData`` is plain numbers (no torch), so a figure can be drawn from a run folder's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calf.atomic import atomic_write
from calf.modes import Mode

# Mode colours as the visual trainer draws them (certified green, relax orange, fallback red).
MODE_COLOURS = {
    Mode.CERTIFIED: "#2ca02c",
    Mode.RELAX: "#ff7f0e",
    Mode.FALLBACK: "#d62728",
    Mode.UNCHECKED: "#7f7f7f",
}
POLICY_STYLE = {
    "calf": {"color": "#1f77b4", "marker": "o", "label": "CALF as deployed"},
    "actor": {"color": "#9467bd", "marker": "s", "label": "actor alone"},
    "nominal": {"color": "#8c564b", "marker": "^", "label": "nominal alone"},
}
MAX_DRAWN_TRAJECTORIES = 40


@dataclass
class CriticGrid:
    """Q over a G x G grid of the phase plane: ``q[i, j]`` at (``xs[j]``, ``vs[i]``)."""

    xs: NDArray[np.float64]
    vs: NDArray[np.float64]
    q: NDArray[np.float64]


@dataclass
class ReportData:
    """Everything the figure shows."""

    title: str
    episodes: list[dict[str, Any]]  # metrics.jsonl "episode" records
    evals: list[dict[str, Any]]  # eval.json records, oldest first
    critic: CriticGrid | None = None
    trajectories: NDArray[np.float64] | None = None  # (E, T + 1, 2), NaN after each end
    trajectory_modes: NDArray[np.int8] | None = None  # (E, T), -1 after each end
    q_cert_traces: list[tuple[int, NDArray[np.float64]]] = field(default_factory=list)
    replay_states: NDArray[np.float64] | None = None  # (n, 2): all of the replay, or a sample
    replay_size: int | None = None  # transitions in the replay (None: replay_states is all)
    init_range: float = 4.0
    goal_radius: float = 0.2


def coverage(states: NDArray[np.float64], init_range: float, bins: int = 32) -> float:
    """Share of the ``bins`` x ``bins`` cells of the reset box [-r, r]^2 that hold at least one
    of ``states``."""
    if len(states) == 0:
        return 0.0
    r = init_range
    hist, _, _ = np.histogram2d(states[:, 0], states[:, 1], bins=bins, range=[[-r, r], [-r, r]])
    return float((hist > 0).mean())


def _series(records: list[dict[str, Any]], key: str) -> NDArray[np.float64]:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in records])


def _rolling_mean(x: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = np.nanmean(x[max(0, i - window + 1) : i + 1])
    return out


def _eval_series(evals: list[dict[str, Any]], policy: str, key: str) -> NDArray[np.float64]:
    return np.array(
        [np.nan if e[policy].get(key) is None else float(e[policy][key]) for e in evals]
    )


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend when the panel has labelled lines (an empty run has none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def draw_report(data: ReportData) -> Any:
    """The report as a matplotlib Figure (Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Patch
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    fig = Figure(figsize=(20, 18))
    fig.suptitle(data.title, fontsize=14)
    # Fixed margins, no layout engine: constrained layout would double the drawing time.
    grid = fig.add_gridspec(
        4,
        4,
        height_ratios=[1, 1, 1.6, 1.3],
        left=0.04,
        right=0.97,
        bottom=0.04,
        top=0.95,
        hspace=0.32,
        wspace=0.22,
    )
    top = [fig.add_subplot(grid[0, i]) for i in range(4)]
    middle = [fig.add_subplot(grid[1, i]) for i in range(4)]
    plane_ax, cert_ax = fig.add_subplot(grid[2, 0:2]), fig.add_subplot(grid[2, 2:4])
    cover_ax, table_ax = fig.add_subplot(grid[3, 0:2]), fig.add_subplot(grid[3, 2:4])
    ep = _series(data.episodes, "episode")
    eval_ep = np.array([e["episode"] for e in data.evals], dtype=float)

    last_episode = max([*ep.tolist(), *eval_ep.tolist(), 1.0])

    def panel(ax: Any, title: str) -> Any:
        ax.set_title(title)
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
        # One episode axis for every panel (a lone evaluation point would otherwise get its
        # own zoomed range).
        ax.set_xlim(0, last_episode + 1)
        return ax

    def per_episode(ax: Any, key: str, rolling: int = 0) -> None:
        y = _series(data.episodes, key)
        ax.plot(ep, y, ".", color="#aaaaaa", ms=4, label="episode")
        if rolling and len(y):
            ax.plot(ep, _rolling_mean(y, rolling), "-", color="k", label=f"mean of {rolling}")

    def eval_points(ax: Any, key: str, scale: float = 1.0) -> None:
        for policy, style in POLICY_STYLE.items():
            if len(eval_ep):
                y = _eval_series(data.evals, policy, key) * scale
                ax.plot(eval_ep, y, "-", lw=1.5, ms=6, **style)

    # Row 1: training progress.
    ax = panel(top[0], "episodic return")
    per_episode(ax, "return", rolling=10)
    eval_points(ax, "mean_return")
    _legend(ax, fontsize=8)
    ax = panel(top[1], "episode length (steps)")
    per_episode(ax, "length", rolling=10)
    ax = panel(top[2], "success (%)")
    success = _series(data.episodes, "success") * 100
    if len(success):
        ax.plot(ep, _rolling_mean(success, 20), "-", color="k", label="training, last 20")
    eval_points(ax, "success_rate", scale=100)
    ax.set_ylim(-5, 105)
    _legend(ax, fontsize=8)
    ax = panel(top[3], "final distance |s|")
    per_episode(ax, "final_distance")
    eval_points(ax, "mean_final_distance")
    ax.axhline(data.goal_radius, color="#1f77b4", ls=":", lw=1, label="goal radius")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())  # no 2x10^0, 3x10^0... clutter
    _legend(ax, fontsize=8)

    # Row 2: modes, P_relax, evaluations.
    ax = panel(middle[0], "training modes (share of episode steps)")
    if len(ep):
        shares = [
            _series(data.episodes, f"{name}_share")
            for name in ("certified", "relax", "fallback", "unchecked")
        ]
        # One step-shaped polygon per mode (cheaper to draw than a bar per episode).
        ax.stackplot(
            ep,
            *[np.nan_to_num(share) for share in shares],
            colors=[MODE_COLOURS[m] for m in Mode],
            labels=[m.name.lower() for m in Mode],
            step="mid",
        )
        ax.set_ylim(0, 1.2)  # room for the legend above the data
        _legend(ax, fontsize=7, loc="upper center", ncol=4, frameon=False)
    ax = panel(middle[1], "P_relax (training agent, end of episode)")
    per_episode(ax, "P_relax")
    ax.set_ylim(-0.05, 1.05)
    ax = panel(middle[2], "evaluation: success rate (%)")
    eval_points(ax, "success_rate", scale=100)
    ax.set_ylim(-5, 105)
    _legend(ax, fontsize=8)
    # Same policies and styles as the success panel beside it: no second legend.
    ax = panel(middle[3], "evaluation: mean steps to goal (dashed: CALF certified %)")
    eval_points(ax, "mean_steps_to_goal")
    if data.evals:
        cert = _eval_series(data.evals, "calf", "certified_share")
        twin = ax.twinx()
        twin.plot(eval_ep, cert * 100, "--", color=MODE_COLOURS[Mode.CERTIFIED])
        twin.set_ylabel("CALF certified steps (%)", color=MODE_COLOURS[Mode.CERTIFIED])
        twin.set_ylim(0, 105)

    # Row 3: the critic over the plane, and the certificate.
    ax = plane_ax
    latest = f" after episode {data.evals[-1]['episode']}" if data.evals else ""
    ax.set_title(f"critic Q(s, actor(s)) and CALF evaluation trajectories{latest}")
    ax.set_xlabel("x")
    ax.set_ylabel("v")
    if data.critic is not None:
        c = data.critic
        low, high = float(np.nanmin(c.q)), float(np.nanmax(c.q))
        # A flat critic (all weights zero, say) still gets a figure: contours need a range.
        levels = np.linspace(low, high if high > low else low + 1.0, 25)
        filled = ax.contourf(c.xs, c.vs, c.q, levels=levels, cmap="viridis")
        ax.contour(c.xs, c.vs, c.q, levels=levels[::3], colors="k", linewidths=0.4, alpha=0.5)
        fig.colorbar(filled, ax=ax, label="Q", pad=0.01)
        ax.set_xlim(c.xs[0], c.xs[-1])
        ax.set_ylim(c.vs[0], c.vs[-1])
    if data.trajectories is not None and data.trajectory_modes is not None:
        states = data.trajectories[:MAX_DRAWN_TRAJECTORIES]
        modes = data.trajectory_modes[:MAX_DRAWN_TRAJECTORIES]
        segments = np.stack([states[:, :-1], states[:, 1:]], axis=2)  # (E, T, 2 points, 2)
        keep = modes >= 0
        colour_table = np.array([MODE_COLOURS[m] for m in Mode])
        lines = LineCollection(
            list(segments[keep]), colors=list(colour_table[modes[keep]]), linewidths=1.2
        )
        ax.add_collection(lines)
        ax.plot(states[:, 0, 0], states[:, 0, 1], "o", color="white", mec="k", ms=4)
        handles = [Patch(color=MODE_COLOURS[m], label=m.name.lower()) for m in Mode][:3]
        ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.add_patch(Circle((0, 0), data.goal_radius, fill=False, color="w", lw=1.5))
    r = data.init_range
    ax.plot([-r, r, r, -r, -r], [-r, -r, r, r, -r], ":", color="w", lw=1)

    ax = cert_ax
    ax.set_title("certificate value Q-dagger, last training episodes")
    ax.set_xlabel("step of the episode")
    ax.set_ylabel("Q-dagger")
    ax.grid(alpha=0.3)
    if data.q_cert_traces:
        cmap = matplotlib.colormaps["plasma"]
        n = len(data.q_cert_traces)
        for i, (episode, trace) in enumerate(data.q_cert_traces):
            ax.plot(trace, color=cmap(0.1 + 0.8 * i / max(n - 1, 1)), lw=1.2, label=f"ep {episode}")
        _legend(ax, fontsize=8, ncol=2)
    else:
        message = "no certificate (TD3 or no CALF steps yet)"
        ax.text(0.5, 0.5, message, ha="center", transform=ax.transAxes)

    # Row 4: replay coverage.
    ax = cover_ax
    drawn = data.replay_states
    if drawn is not None:
        drawn = drawn[np.isfinite(drawn).all(axis=1)]  # a padded sample: its real rows
    if drawn is not None and len(drawn):
        s = drawn
        share = coverage(s, data.init_range)
        span = 1.5 * data.init_range
        hist, xe, ve = np.histogram2d(
            s[:, 0], s[:, 1], bins=60, range=[[-span, span], [-span, span]]
        )
        masked = np.ma.masked_equal(hist.T, 0)
        mesh = ax.pcolormesh(xe, ve, np.ma.log10(masked), cmap="magma_r")
        fig.colorbar(mesh, ax=ax, label="log10 transitions per cell", pad=0.01)
        ax.plot([-r, r, r, -r, -r], [-r, -r, r, r, -r], ":", color="k", lw=1)
        size = len(s) if data.replay_size is None else data.replay_size
        sampled = "" if size == len(s) else f" ({len(s)} sampled)"
        ax.set_title(
            f"replay coverage: {size} transitions{sampled}, {share:.0%} of the reset box's "
            "32x32 cells visited"
        )
    else:
        ax.set_title("replay coverage: empty")
    ax.set_xlabel("x")
    ax.set_ylabel("v")
    ax.set_aspect("equal")
    ax = table_ax
    ax.axis("off")
    if data.evals:
        ax.text(0.0, 1.0, _eval_table(data.evals[-1]), va="top", family="monospace", fontsize=11)
    return fig


def _eval_table(record: dict[str, Any]) -> str:
    rows = [f"evaluation after episode {record['episode']}", ""]
    rows.append(f"{'':10s}{'success':>9s}{'steps':>8s}{'final |s|':>11s}{'return':>10s}")
    for policy in POLICY_STYLE:
        r = record[policy]
        steps = "-" if r["mean_steps_to_goal"] is None else f"{r['mean_steps_to_goal']:.0f}"
        rows.append(
            f"{policy:10s}{r['success_rate']:>9.0%}{steps:>8s}"
            f"{r['mean_final_distance']:>11.3f}{r['mean_return']:>10.1f}"
        )
    c = record["calf"]
    if c.get("certified_share") is not None:
        rows += [
            "",
            f"CALF: {c['certified_share']:.0%} certified, {c['fallback_share']:.0%} fallback",
        ]
    return "\n".join(rows)


def save_report(data: ReportData, *paths: str | os.PathLike[str]) -> list[Path]:
    """Draw the report once and write it (atomically) to each of ``paths``."""
    import io

    fig = draw_report(data)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    png = buf.getvalue()
    return [atomic_write(p, lambda fh: fh.write(png), binary=True) for p in paths]
