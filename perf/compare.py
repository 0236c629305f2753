"""Reference vs optimised headless runs, interleaved; the Stage-4 targets checked on the result.

Every target is a ratio measured in the same session or an exact count, never an absolute time
(except the scale targets of the full sweep, which the upstream documents state in FPS).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

from perf.runner import MODES, RECORD_KEYS, RunSpec, run_once

# The per-frame figures of a run record, summarised as medians over rounds.
METRICS = tuple(k for k in RECORD_KEYS if k not in ("agents", "mode", "frames", "sections_ms"))

Runner = Callable[[RunSpec], dict[str, Any]]


def interleaved_runs(
    agents: Iterable[int],
    rounds: int,
    frames: int,
    warmup: int,
    size: tuple[int, int] = (640, 360),
    runner: Runner = run_once,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    extra: tuple[str, ...] = (),
    late: bool = True,
    save: bool = True,
) -> list[dict[str, Any]]:
    """Reference and optimised runs per N and round; which mode goes first alternates each
    round (and each N), so drift in machine load hits both modes alike."""
    runs = []
    for r in range(rounds):
        for i, n in enumerate(agents):
            order = MODES if (r + i) % 2 == 0 else MODES[::-1]
            for mode in order:
                spec = RunSpec(
                    n, frames=frames, warmup=warmup, mode=mode, size=size, extra=extra,
                    late=late, save=save,
                )  # fmt: skip
                record = {**runner(spec), "round": r}
                runs.append(record)
                if on_run is not None:
                    on_run(record)
    return runs


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Medians over rounds: summary[mode][str(N)][metric]."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in sorted({r["mode"] for r in runs}):
        out[mode] = {}
        for n in sorted({r["agents"] for r in runs if r["mode"] == mode}):
            rows = [r for r in runs if r["mode"] == mode and r["agents"] == n]
            out[mode][str(n)] = {m: statistics.median(r[m] for r in rows) for m in METRICS}
            out[mode][str(n)]["rounds"] = len(rows)
    return out


def target(name: str, value: float, op: str, limit: float) -> dict[str, Any]:
    """One checked target: {name, value, op, limit, ok}."""
    ok = {
        "<=": value <= limit,
        "<": value < limit,
        ">=": value >= limit,
        ">": value > limit,
        "==": value == limit,
    }[op]
    return {"name": name, "value": round(float(value), 4), "op": op, "limit": limit, "ok": bool(ok)}


def _closest(ns: list[int], want: int) -> int:
    return min(ns, key=lambda n: (abs(n - want), n))


def stage4_targets(summary: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """The Stage-4 targets that a reference-vs-optimised comparison can check."""
    opt, ref = summary.get("optimised", {}), summary.get("reference", {})
    ns = sorted(int(n) for n in opt if n in ref)
    if not ns:
        return []
    targets = []
    n20 = _closest(ns, 20)
    o, r = opt[str(n20)], ref[str(n20)]
    targets.append(
        target(f"fps ratio optimised/reference at N={n20}", o["fps"] / r["fps"], ">=", 1.3)
    )
    targets.append(
        target(
            f"cpu ms/frame ratio optimised/reference at N={n20}",
            o["cpu_ms_per_frame"] / r["cpu_ms_per_frame"],
            "<=",
            0.5,
        )
    )
    worst = max(opt[str(n)]["forward_passes_per_frame"] for n in ns)
    targets.append(
        target("max visualisation forward passes per frame, optimised (all N)", worst, "<=", 3)
    )
    lo, hi = ns[0], ns[-1]
    if lo != hi:
        targets.append(
            target(
                f"reference forward passes grow: N={hi} minus N={lo}",
                ref[str(hi)]["forward_passes_per_frame"] - ref[str(lo)]["forward_passes_per_frame"],
                ">",
                0,
            )
        )
        a, b = _closest(ns, 5), _closest(ns, 30)
        targets.append(
            target(
                f"draw calls per frame, optimised: |N={b} - N={a}|",
                abs(opt[str(b)]["draw_calls_per_frame"] - opt[str(a)]["draw_calls_per_frame"]),
                "<=",
                0,
            )
        )
        targets.append(
            target(
                f"reference draw calls grow: N={hi} minus N={lo}",
                ref[str(hi)]["draw_calls_per_frame"] - ref[str(lo)]["draw_calls_per_frame"],
                ">",
                0,
            )
        )
    return targets  # fmt: skip


def scale_targets(summary: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """The sweep's scale targets: 100 agents >= 60 FPS, 1000 agents >= 20 FPS (optimised)."""
    opt = summary.get("optimised", {})
    out = []
    for n, fps in ((100, 60.0), (1000, 20.0)):
        if str(n) in opt:
            out.append(target(f"optimised FPS at N={n}", opt[str(n)]["fps"], ">=", fps))
    return out


def format_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """A plain-text table: one row per (N, mode). Pacing beside the medians: the 1 % low FPS
    (1000 / p99), p99 and worst frame, hitches (frames over 4x the median / over 50 ms)."""
    head = (
        f"{'N':>5} {'mode':<10} {'fps':>7} {'1% low':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'hitches':>9} {'cpu ms':>7} "
        f"{'vis fwd':>7} {'trn fwd':>7} {'mesh':>6} {'draws':>6} {'rss MB':>7}"
    )
    lines = [head, "-" * len(head)]
    ns = sorted({int(n) for m in summary.values() for n in m})
    for n in ns:
        for mode in ("reference", "optimised"):
            s = summary.get(mode, {}).get(str(n))
            if s is None:
                continue
            hitches = f"{s['hitches_4x_median']:.0f}/{s['hitches_over_50ms']:.0f}"
            lines.append(
                f"{n:>5} {mode:<10} {s['fps']:>7.1f} {s['fps_1pct_low']:>7.1f} "
                f"{s['frame_ms_p50']:>7.2f} {s['frame_ms_p95']:>7.2f} {s['frame_ms_p99']:>7.2f} "
                f"{s['frame_ms_max']:>7.1f} {hitches:>9} {s['cpu_ms_per_frame']:>7.2f} "
                f"{s['forward_passes_per_frame']:>7.2f} "
                f"{s['training_forward_passes_per_frame']:>7.2f} "
                f"{s['mesh_updates_per_frame']:>6.1f} {s['draw_calls_per_frame']:>6.0f} "
                f"{s['rss_mb']:>7.1f}"
            )
    return "\n".join(lines)


def format_targets(targets: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  [{'ok ' if t['ok'] else 'FAIL'}] {t['name']}: {t['value']} "
        f"(want {t['op']} {t['limit']})"
        for t in targets
    )


def save_scaling_plot(summary: dict[str, dict[str, dict[str, float]]], path: str) -> None:
    """FPS and CPU ms per frame against N, both modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fps, ax_cpu) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    styles = {"optimised": ("#2a7", "o-"), "reference": ("#c44", "s--")}
    for mode, rows in summary.items():
        ns = sorted(int(n) for n in rows)
        col, style = styles.get(mode, ("#555", "x-"))
        ax_fps.plot(ns, [rows[str(n)]["fps"] for n in ns], style, color=col, label=mode)
        ax_cpu.plot(
            ns, [rows[str(n)]["cpu_ms_per_frame"] for n in ns], style, color=col, label=mode
        )
    ax_fps.set(xlabel="visual agents N", ylabel="FPS (headless 640x360)", title="frame rate")
    ax_cpu.set(xlabel="visual agents N", ylabel="CPU ms per frame", title="CPU cost")
    for ax in (ax_fps, ax_cpu):
        ax.grid(alpha=0.3)
        ax.legend()
        if max((int(n) for rows in summary.values() for n in rows), default=1) >= 100:
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
