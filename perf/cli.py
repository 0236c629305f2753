"""``calf-perf`` (also ``python -m perf``): headless performance runs of the visual trainer.

calf-perf run      one run, one record
calf-perf compare  reference vs optimised, interleaved; table, JSON, plot, --check
calf-perf sweep    optimised only, up to N = 1000: the scale targets
calf-perf soak     a long optimised run with agents churning: RSS and node-count drift
calf-perf pacing   the default trainer (run folder written, evaluations inside the run): frame
                   pacing during episode-end work and outside it, and its limits
calf-perf flame    py-spy flamegraphs of the measured frames; --base REF: a differential one
calf-perf budgets  the exact work of a frame at N = 5 and 100 against its budgets, and the
                   retained-memory slope
calf-perf selftest behaviour-preserving regressions patched into a copy of the tree, each of
                   which the harness must catch (exit 1 if one is missed)
calf-perf ab       this change against its base commit, in one job (exit 1: regression,
                   3: too noisy to tell, 2: usage error)
calf-perf noise    a noisy neighbour: busy work switching on and off at random over seconds
calf-perf trust    ab's false-alarm rate (or power) measured: K runs on an unchanged (or a
                   slowed) commit, quiet or beside the noise (exit 1: over the budget)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from perf import flame, provenance
from perf.ab import AbConfig
from perf.compare import (
    format_table,
    format_targets,
    interleaved_runs,
    save_scaling_plot,
    scale_targets,
    stage4_targets,
    summarize,
)
from perf.runner import MODES, RunError, RunSpec, run_once
from perf.soak import soak_findings, soak_targets


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    return w, h


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Every JSON a calf-perf command writes: the report with its provenance block first."""
    provenance.write_json(path, data)


def _pacing_line(record: dict[str, Any]) -> str:
    """A run's frame pacing in one line: what a median hides."""
    return (
        f"pacing: p50 {record['frame_ms_p50']:.2f} ms, p99 {record['frame_ms_p99']:.2f} ms, "
        f"1% low {record['fps_1pct_low']:.0f} FPS, worst {record['frame_ms_max']:.1f} ms, "
        f"hitches {record['hitches_4x_median']:.0f} over 4x the median, "
        f"{record['hitches_over_50ms']:.0f} over 50 ms"
    )


def _progress(record: dict[str, Any]) -> None:
    print(
        f"  round {record.get('round', 0)} N={record['agents']:<5} {record['mode']:<10} "
        f"{record['fps']:7.1f} FPS  cpu {record['cpu_ms_per_frame']:6.2f} ms/frame",
        flush=True,
    )


def cmd_run(a: argparse.Namespace) -> int:
    spec = RunSpec(
        a.agents,
        frames=a.frames,
        warmup=a.warmup,
        mode=a.mode,
        size=a.size,
        late=not a.early,
        save=not a.no_save,
    )
    record = run_once(spec)
    if a.json:
        _write_json(a.json, record)
    print(json.dumps({k: v for k, v in record.items() if k != "series"}, indent=2))
    return 0


def cmd_pacing(a: argparse.Namespace) -> int:
    from perf.pacing import Pacing

    extra = ["--train.eval-every", str(a.eval_every)]
    extra += ["--train.checkpoint-every", str(a.checkpoint_every)]
    if a.max_steps:
        extra += ["--env.max-steps", str(a.max_steps)]
    results = []
    for n in a.agents:
        spec = RunSpec(
            n,
            frames=a.frames,
            warmup=a.warmup,
            size=a.size,
            probe=("frames=1",),
            extra=tuple(extra),
            timeout_s=a.timeout,
            late=not a.early,
        )
        print(
            f"pacing: N={n}, {a.frames} frames (+{a.warmup} warm-up), an evaluation every "
            f"{a.eval_every} episodes",
            flush=True,
        )
        pacing = Pacing.of(n, run_once(spec)["probe"])
        print(pacing.table())
        results.append(pacing)
    checks = [c for p in results for c in p.checks()]
    print("\nchecks:")
    for c in checks:
        print(f"  [{'ok ' if c['ok'] else 'FAIL'}] {c['name']}: {c['value']:.3g} ({c['limit']})")
    if a.json:
        _write_json(a.json, {"pacing": [p.to_json() for p in results]})
    return 1 if a.check and not all(c["ok"] for c in checks) else 0


def _report(a: argparse.Namespace, runs: list[dict[str, Any]], targets_fn: Any, title: str) -> int:
    summary = summarize(runs)
    targets = targets_fn(summary)
    report = {"runs": runs, "summary": summary, "targets": targets}
    print(f"\n{title}\n" + format_table(summary))
    if targets:
        print("\ntargets:\n" + format_targets(targets))
    if a.json:
        _write_json(a.json, report)
        print(f"report: {a.json}")
    if a.plot:
        a.plot.parent.mkdir(parents=True, exist_ok=True)
        save_scaling_plot(summary, str(a.plot))
        print(f"plot: {a.plot}")
    failed = [t for t in targets if not t["ok"]]
    if a.check and failed:
        print(f"\n{len(failed)} Stage-4 target(s) failed:", file=sys.stderr)
        print(format_targets(failed), file=sys.stderr)
        return 1
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    print(f"compare: N={a.agents}, {a.rounds} round(s), {a.frames} frames (+{a.warmup} warm-up)")
    runs = interleaved_runs(
        a.agents,
        a.rounds,
        a.frames,
        a.warmup,
        a.size,
        on_run=_progress,
        extra=tuple(a.extra),
        late=not a.early,
        save=not a.no_save,
    )
    return _report(a, runs, stage4_targets, "medians over rounds")


def cmd_sweep(a: argparse.Namespace) -> int:
    print(f"sweep (optimised): N={a.agents}, {a.frames} frames (+{a.warmup} warm-up)")
    runs = []
    for r in range(a.rounds):
        for n in a.agents:
            spec = RunSpec(
                n,
                frames=a.frames,
                warmup=a.warmup,
                mode="optimised",
                size=a.size,
                late=not a.early,
                save=not a.no_save,
            )
            record = {**run_once(spec), "round": r}
            _progress(record)
            runs.append(record)
    return _report(a, runs, scale_targets, "optimised, medians over rounds")


def cmd_soak(a: argparse.Namespace) -> int:
    from perf.leak import SETTLE_FRAMES, leak_slope
    from perf.soak import frame_time_slope, traced_frames, window_pacing

    traced = traced_frames(a.frames)
    probe = [
        f"series={a.sample_every}",
        "frames=1",
        f"tracemalloc={a.sample_every // 10 or 1}",
        f"trace_from={a.warmup + a.frames - traced}",
    ]
    if a.churn:
        probe.append(f"churn={a.churn_every}")
    spec = RunSpec(
        a.agents,
        frames=a.frames,
        warmup=a.warmup,
        mode="optimised",
        size=a.size,
        probe=tuple(probe),
        timeout_s=a.timeout,
        late=not a.early,
        save=not a.no_save,
    )
    print(f"soak: N={a.agents}, {a.frames} frames, churn={'on' if a.churn else 'off'}")
    record = run_once(spec)
    found = soak_findings(record["series"], a.warmup)
    # Pacing and the frame-time slope from the frames before tracing began (module perf.soak).
    untraced = [ms for ms, _ in record["probe"]["frames"][: a.frames - traced]]
    found.update(frame_time_slope(untraced))
    found["pacing_untraced"] = window_pacing(untraced)
    found["leak_bytes_per_frame"] = leak_slope(record["probe"]["traced"], settle=SETTLE_FRAMES)
    targets = soak_targets(found, judge_slope=not a.churn)
    for s in record["series"]:
        print(
            f"  frame {s['frame']:>6}  rss {s['rss_mb']:7.1f} MB  nodes {s['nodes']:>5}  "
            f"agents {s.get('agents', '-')}"
        )
    print(
        f"RSS after warm-up: {found['rss_start_mb']:.1f} -> {found['rss_end_mb']:.1f} MB "
        f"({found['rss_growth_pct']:+.2f} %), trend {found['rss_drift_pct']:+.2f} %, largest "
        f"single step {found['largest_step_mb']:+.1f} MB; retained Python memory "
        f"{found['leak_bytes_per_frame']:.1f} B/frame"
    )
    print(
        f"frame time: median {found['frame_ms_median']:.2f} ms, slope "
        f"{found['frame_slope_ms_per_10k']:+.3f} ms per 10 000 frames "
        f"({found['frame_slope_pct_per_10k']:+.1f} % of the median), over the "
        f"{len(untraced)} untraced frames; the last {traced} ran traced for the leak slope"
        + ("; not judged: churn moves N, and the frame time with it" if a.churn else "")
    )
    print(_pacing_line(found["pacing_untraced"]))
    print("targets:\n" + format_targets(targets))
    if a.json:
        _write_json(a.json, {"record": record, "findings": found, "targets": targets})
    failed = [t for t in targets if not t["ok"]]
    return 1 if (a.check and failed) else 0


def cmd_budgets(a: argparse.Namespace) -> int:
    from perf.budgets import (
        Finding,
        check_call_growth,
        check_draw_calls,
        check_rows,
        format_findings,
    )
    from perf.leak import LEAK_LIMIT_BYTES_PER_FRAME, SETTLE_FRAMES, leak_slope

    findings: list[Finding] = []
    rows_by_n, calls_by_n = {}, {}
    for n in a.agents:
        spec = RunSpec(
            n,
            frames=a.frames,
            warmup=a.warmup,
            mode=a.mode,
            size=a.size,
            probe=("work=1", f"calls={max(a.frames // 4, 1)}"),
            late=not a.early,
            save=not a.no_save,
        )
        record = run_once(spec)
        probe = record["probe"]
        rows_by_n[n], calls_by_n[n] = probe["work"], probe["calls"]
        findings += check_rows(probe["work"])
        print(f"  N={n}: {_pacing_line(record)}", flush=True)
    if rows_by_n:
        findings.append(check_draw_calls(rows_by_n))
        findings += check_call_growth(calls_by_n)
    if a.leak:
        spec = RunSpec(
            a.leak_agents,
            frames=a.leak_frames,
            warmup=a.leak_warmup,
            size=a.size,
            probe=("churn=25", "tracemalloc=10"),
            late=not a.early,
            save=not a.no_save,
        )
        traced = run_once(spec)["probe"]["traced"]
        slope = leak_slope(traced, settle=SETTLE_FRAMES)
        findings.append(
            Finding(
                "retained Python memory (bytes/frame)",
                f"< {LEAK_LIMIT_BYTES_PER_FRAME:g} (tracemalloc slope, agents churning)",
                a.leak_agents,
                slope,
                slope < LEAK_LIMIT_BYTES_PER_FRAME,
            )
        )
    print("work budgets:\n" + format_findings(findings))
    print("\nPython work per frame by stage (calls + lines, sampled frames, medians):")
    for n, calls in calls_by_n.items():
        stages = sorted({k for c in calls for k in c if k not in ("frame", "agents")})
        cells = [f"{s} {sorted(c.get(s, 0) for c in calls)[len(calls) // 2]}" for s in stages]
        print(f"  N={n}: " + ", ".join(cells))
    if a.json:
        data = {
            "findings": [f.__dict__ for f in findings],
            "frames": {str(n): rows for n, rows in rows_by_n.items()},
            "calls": {str(n): c for n, c in calls_by_n.items()},
        }
        _write_json(a.json, data)
    failed = [f for f in findings if not f.ok]
    if failed:
        print(f"\n{len(failed)} work budget(s) exceeded", file=sys.stderr)
    return 1 if failed else 0


def cmd_selftest(a: argparse.Namespace) -> int:
    from perf.selftest import format_table, run_selftest, to_json, verdicts
    from perf.trees import repo_root

    start = time.perf_counter()
    part = "deterministic part" if a.deterministic else "all checks, timed ones alone at the end"
    part += ", one regression per check" if a.quick else ""
    print(f"selftest ({part}), {a.jobs} job(s)", flush=True)

    def report(o: Any) -> None:
        flags = ", ".join(f"{c}: {'flagged' if f else 'quiet'}" for c, f in o.checks.items())
        print(f"  {o.regression}: {flags} ({o.seconds:.0f} s)", flush=True)

    outcomes = run_selftest(
        repo_root(Path.cwd()), a.deterministic, a.jobs, on_outcome=report, quick=a.quick
    )
    print("\n" + format_table(outcomes))
    missed, false_alarms = verdicts(outcomes)
    print(
        f"\n{sum(o.kind != '-' for o in outcomes)} regression runs, {len(missed)} missed; "
        f"unchanged tree flagged by {len(false_alarms)} run(s); "
        f"{time.perf_counter() - start:.0f} s"
    )
    if a.json:
        _write_json(a.json, to_json(outcomes))
    return 1 if missed or false_alarms else 0


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction or a percentage, got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a size between 0 and 100%, got {text!r}")
    return value


def _calibration(text: str) -> tuple[str, float | None]:
    section, colon, pct = text.partition(":")
    return section, (_percent(pct) if colon else None)


def cmd_ab(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from perf.ab import micro_rounds_for, run_ab
    from perf.ab_report import format_markdown, format_text, to_json
    from perf.micro import MicroRun, measure
    from perf.noise import noise_beside
    from perf.trees import trees

    defaults = AbConfig()
    rule = replace(defaults.rule, threshold=a.threshold)
    calibrate = None
    if a.calibrate:
        section, size = a.calibrate
        calibrate = (section, a.threshold if size is None else size)
    quick = a.quick
    agents = tuple(a.agents)
    if quick and agents == defaults.agents:
        agents = (20,)
    cfg = AbConfig(
        agents=agents,
        frames=a.frames,
        rounds=a.rounds,
        rule=rule,
        calibrate=calibrate,
        warmup=30 if quick else defaults.warmup,
        late=not a.early,
    )
    with noise_beside(a.noise), trees(Path.cwd(), a.base, a.head) as (base, head):
        print(f"ab: {base.name} vs {head.name}", flush=True)
        micro: MicroRun | None = None
        if not a.no_micro:
            micro = measure(
                base,
                head,
                micro_rounds_for(cfg.micro_rule, cfg.micro_rounds),
                quick=True,
                threshold=cfg.micro_rule.threshold,
                on_line=lambda line: print(line, flush=True),
            )
        result = run_ab(base, head, cfg, micro, on_round=lambda line: print(line, flush=True))
    print("\n" + format_text(result, cfg))
    if a.markdown:  # appended, as GitHub's job summary expects, in one write
        provenance.append_markdown(a.markdown, format_markdown(result, cfg))
    if a.json:
        _write_json(a.json, to_json(result, cfg))
    if result.regressions:
        return 1
    return 3 if result.inconclusive else 0


def cmd_noise(a: argparse.Namespace) -> int:
    from perf.noise import NoiseConfig, noise_beside

    cfg = NoiseConfig(workers=a.workers, memory=a.memory, seed=a.seed, seconds=a.seconds)
    kind = "memory copies" if cfg.memory else "busy loops"
    length = f"{cfg.seconds:.0f} s" if cfg.seconds else "until interrupted"
    print(f"noise: {cfg.workers} worker(s), {kind}, {length}", flush=True)
    try:
        with noise_beside(True, cfg):
            time.sleep(cfg.seconds or float("inf"))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_trust(a: argparse.Namespace) -> int:
    from perf import trust
    from perf.trees import repo_root

    ab_args = [*(["--quick"] if a.quick else []), *(["--noise"] if a.noise else [])]
    where = "beside the noise generator" if a.noise else "quiet"
    print(f"trust: {a.runs} run(s) of calf-perf ab {' '.join(ab_args)}, injected: {a.inject}, "
          f"{where}", flush=True)  # fmt: skip

    def show(run: trust.TrustRun) -> None:
        print(
            f"  run {run.index}: exit {run.exit} in {run.seconds:.0f} s: {run.verdict}", flush=True
        )

    runs = trust.measure(repo_root(Path.cwd()), a.runs, a.inject, ab_args, on_run=show)
    summary = trust.summarize(runs, a.inject)
    lines = trust.table(runs)
    if a.inject == "none":
        verdict = (
            f"false alarms: {summary.false_alarms} of {summary.runs} runs "
            f"({summary.false_alarm_rate:.0%}; budget {a.budget:.0%}), "
            f"inconclusive {summary.inconclusive}, failed {summary.failed}"
        )
        failed = summary.false_alarm_rate > a.budget or summary.failed > 0
    else:
        verdict = (
            f"flagged {summary.flagged} of {summary.runs} runs ({summary.power:.0%}), "
            f"inconclusive {summary.inconclusive}, failed {summary.failed}"
        )
        failed = summary.power < a.min_power or summary.failed > 0
    print("\n" + "\n".join(lines) + "\n\n" + verdict)
    if a.json:
        _write_json(a.json, trust.to_json(runs, summary, a.budget))
    if a.markdown:
        text = "\n".join(["## calf-perf trust", "", f"**{verdict}**", "", "```", *lines, "```"])
        provenance.append_markdown(a.markdown, text)
    return 1 if failed else 0


def cmd_flame(a: argparse.Namespace) -> int:
    return flame.main(a)


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, every option's default shown."""


EXITS = {
    "run": "exit 0: done; 1: the run failed; 2: usage error",
    "compare": "exit 0: done (with --check: every Stage-4 target met); 1: a target missed "
    "(--check) or a run failed; 2: usage error",
    "sweep": "exit 0: done (with --check: the scale targets met); 1: a target missed (--check) "
    "or a run failed; 2: usage error",
    "soak": "exit 0: done (with --check: RSS, scene and frame-time drift within limits); 1: a "
    "limit broken (--check) or the run failed; 2: usage error",
    "pacing": "exit 0: done (with --check: no frame over the limit, FPS during episode-end work "
    "kept); 1: a limit broken (--check) or a run failed; 2: usage error",
    "budgets": "exit 0: every budget kept; 1: a budget exceeded or a run failed; 2: usage error",
    "selftest": "exit 0: every regression caught, the unchanged tree clean; 1: one missed or a "
    "false flag; 2: usage error",
    "ab": "exit 0: no regression; 1: a regression (or a run failed); 3: inconclusive (a "
    "calibration was not caught: too noisy to tell); 2: usage error",
    "trust": "exit 0: within the budget (or the power reached); 1: the false-alarm rate over "
    "--budget (--inject none), the power under --min-power, or a run failed; 2: usage error",
    "noise": "exit 0 when stopped (Ctrl-C) or after --seconds",
    "flame": "exit 0: done; 1: py-spy failed or could not attach, or the trainer failed; 2: "
    "usage error (or a base that predates the probe's hold)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="calf-perf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, fn: Any, **kwargs: Any) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help, epilog=EXITS[name], formatter_class=kwargs.pop("formatter", _Help),
            **kwargs,
        )  # fmt: skip
        sp.set_defaults(fn=fn)
        return sp

    def common(sp: argparse.ArgumentParser, frames: int, warmup: int, json: bool = True) -> None:
        sp.add_argument("--frames", type=int, default=frames, help="measured frames per run")
        sp.add_argument("--warmup", type=int, default=warmup, help="frames before measuring")
        sp.add_argument("--size", type=_size, default=(640, 360), metavar="WxH",
                        help="the offscreen window")  # fmt: skip
        sp.add_argument(
            "--early",
            action="store_true",
            help="start from a nearly empty replay, not an hour-long run's state",
        )
        sp.add_argument(
            "--no-save",
            action="store_true",
            help="no run folder (no evaluations, figures, checkpoints), as calf-train --no-save",
        )
        if json:
            sp.add_argument("--json", type=Path, metavar="PATH", help="the report as JSON")

    def plot_and_check(sp: argparse.ArgumentParser, check: str) -> None:
        sp.add_argument("--plot", type=Path, metavar="PNG", help="FPS and CPU against N")
        sp.add_argument("--check", action="store_true", help=f"exit 1 if {check}")

    r = command("run", "one headless run", cmd_run)
    r.add_argument("--agents", type=int, required=True, help="visual agents")
    r.add_argument("--mode", choices=MODES, default="optimised", help="code paths")
    common(r, 300, 60)

    c = command("compare", "reference vs optimised, interleaved", cmd_compare)
    c.add_argument("--agents", type=int, nargs="+", default=[5, 10, 20, 30], help="visual agents")
    c.add_argument("--rounds", type=int, default=3, help="runs of each mode per N")
    plot_and_check(c, "a Stage-4 target fails")
    c.add_argument(
        "--extra",
        nargs=argparse.REMAINDER,
        default=[],
        help="further calf-train options for every run",
    )
    common(c, 300, 60)

    s = command("sweep", "optimised only, the scale targets", cmd_sweep)
    s.add_argument(
        "--agents", type=int, nargs="+", default=[5, 20, 100, 300, 1000], help="visual agents"
    )
    s.add_argument("--rounds", type=int, default=1, help="runs per N")
    plot_and_check(s, "a scale target fails")
    # 550 warm-up frames: trails reach their steady length (episodes end by 500 steps).
    common(s, 200, 550)

    k = command("soak", "a long run with agent churn: RSS, scene and frame-time drift", cmd_soak)
    k.add_argument("--agents", type=int, default=20, help="visual agents at the start")
    k.add_argument("--churn", action="store_true", help="add and remove agents as it runs")
    k.add_argument("--churn-every", type=int, default=25, metavar="FRAMES", help="churn period")
    k.add_argument("--sample-every", type=int, default=250, metavar="FRAMES",
                   help="RSS, nodes and traced memory sampled this often")  # fmt: skip
    k.add_argument("--check", action="store_true", help="exit 1 if a drift limit is broken")
    k.add_argument("--timeout", type=float, default=3600.0, metavar="S", help="the run's limit")
    common(k, 10000, 1000)

    f = command(
        "flame",
        "py-spy flamegraph of the measured frames; --base REF: base, head and diff",
        cmd_flame,
        description=flame.__doc__,
        formatter=argparse.RawDescriptionHelpFormatter,  # its options state their defaults
    )
    flame.add_arguments(f, size=_size)

    pc = command("pacing", "frame pacing of the default trainer, evaluations inside", cmd_pacing)
    pc.add_argument("--agents", type=int, nargs="+", default=[20], help="visual agents")
    pc.add_argument("--eval-every", type=int, default=2, help="episodes between evaluations")
    pc.add_argument("--checkpoint-every", type=int, default=2, help="episodes between checkpoints")
    pc.add_argument("--max-steps", type=int, help="the training episodes' step limit (None: the "
                    "config's)")  # fmt: skip
    pc.add_argument("--check", action="store_true", help="exit 1 if a pacing limit is broken")
    pc.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="a run's limit")
    common(pc, 5000, 60)

    b = command("budgets", "the exact work of a frame against its budgets", cmd_budgets)
    b.add_argument("--agents", type=int, nargs="*", default=[5, 100], help="none: only --leak")
    b.add_argument("--mode", choices=MODES, default="optimised", help="reference: every loop path")
    b.add_argument("--leak", action="store_true", help="also measure the retained-memory slope")
    b.add_argument("--leak-agents", type=int, default=20, help="agents of the leak run")
    b.add_argument("--leak-frames", type=int, default=1000, help="frames traced in the leak run")
    b.add_argument("--leak-warmup", type=int, default=600, help="frames before tracing")
    common(b, 400, 30)

    st = command("selftest", "prove the harness catches a set of regressions", cmd_selftest)
    st.add_argument("--deterministic", action="store_true", help="counted checks only")
    st.add_argument(
        "--quick", action="store_true", help="the first regression for each check (make test)"
    )
    st.add_argument("--jobs", type=int, default=2, help="counted checks in parallel")
    st.add_argument("--json", type=Path, metavar="PATH", help="every outcome as JSON")

    defaults = AbConfig()
    ab = command("ab", "this change against its base commit, in one job", cmd_ab)
    ab.add_argument("--base", required=True, metavar="REF", help="the commit to compare with")
    ab.add_argument(
        "--head", metavar="REF", help="a commit (None: the working tree, uncommitted included)"
    )
    ab.add_argument("--quick", action="store_true", help="N = 20 only, a shorter warm-up")
    ab.add_argument("--agents", type=int, nargs="+", default=list(defaults.agents),
                    help="visual agents of the macro arms (--quick: 20)")  # fmt: skip
    ab.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds per look")
    ab.add_argument("--frames", type=int, default=defaults.frames,
                    help="measured frames per block")  # fmt: skip
    ab.add_argument(
        "--threshold", type=_percent, default=0.10, help="the frame change to catch (fraction)"
    )
    ab.add_argument(
        "--calibrate",
        type=_calibration,
        metavar="SECTION[:PCT]",
        help="inject this share of the frame into SECTION (None: the threshold, rotating)",
    )
    ab.add_argument("--no-micro", action="store_true", help="skip the pytest-benchmark suites")
    ab.add_argument(
        "--noise",
        action="store_true",
        help="run a noise generator beside the measurement (a busy loop switching on and off "
        "at random over seconds: a noisy neighbour)",
    )
    ab.add_argument(
        "--early",
        action="store_true",
        help="measure an early run (a nearly empty replay, no run folder) instead of an "
        "hour-long run's state with its run folder",
    )
    ab.add_argument("--json", type=Path, metavar="PATH", help="every sample and decision")
    ab.add_argument("--markdown", type=Path, metavar="PATH",
                    help="append the report (e.g. $GITHUB_STEP_SUMMARY)")  # fmt: skip

    tr = command("trust", "the false-alarm rate (or the power) of calf-perf ab, measured",
                 cmd_trust)  # fmt: skip
    tr.add_argument("--runs", type=int, default=5, help="ab runs")
    tr.add_argument("--quick", action="store_true", help="ab --quick (N = 20 only)")
    tr.add_argument("--noise", action="store_true", help="each run beside the noise generator")
    tr.add_argument(
        "--inject",
        choices=("none", "frame", "micro", "both"),
        default="none",
        help="the change measured: nothing, +10%% of the frame in physics, a benchmark made 2x "
        "slower, or both",
    )
    tr.add_argument("--budget", type=_percent, default=0.2,
                    help="largest false-alarm rate accepted, --inject none")  # fmt: skip
    tr.add_argument("--min-power", type=_percent, default=0.8,
                    help="smallest share of runs flagging an injected regression")  # fmt: skip
    tr.add_argument("--json", type=Path, metavar="PATH", help="every run's outcome")
    tr.add_argument("--markdown", type=Path, metavar="PATH", help="append the table")

    nz = command("noise", "a noisy neighbour: random on/off busy work", cmd_noise)
    nz.add_argument("--workers", type=int, default=1, help="busy processes")
    nz.add_argument("--memory", action="store_true", help="copy a 64 MiB array when busy")
    nz.add_argument("--seconds", type=float, default=0.0, help="0: until interrupted")
    nz.add_argument("--seed", type=int, default=0, help="the phases' random seed")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    provenance.set_command(argv)
    a = build_parser().parse_args(argv)
    try:
        return int(a.fn(a))
    except RunError as exc:
        print(f"calf-perf: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # TreeError too: an unknown ref, pyproject.toml differs
        print(f"calf-perf: error: {exc}", file=sys.stderr)
        return 2
