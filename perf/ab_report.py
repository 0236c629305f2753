"""What ``calf-perf ab`` prints and writes: a table on stdout, markdown for a GitHub job summary,
JSON with every sample and every decision."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from perf.ab import AbConfig, AbResult, Calibration
from perf.decision import Decision

_MARK = {"regression": "REGRESSION", "improvement": "improved", "unchanged": "ok"}


def _where(c: Calibration) -> str:
    if c.micro:
        return f"+{c.fraction:.0%} more work in {c.where}"
    return f"+{c.fraction:.0%} of the frame in {c.where} at N={c.agents}"


def verdict_line(result: AbResult, cfg: AbConfig) -> str:
    """The one-line outcome; its first word says which of the exit statuses it is."""
    if result.regressions:
        names = ", ".join(d.metric for d in result.regressions[:6])
        more = "" if len(result.regressions) <= 6 else f" and {len(result.regressions) - 6} more"
        return f"regression: {names}{more}"
    if result.inconclusive:
        parts = []
        for c in result.inconclusive:
            mdes = [d.mde for d in c.decisions if math.isfinite(d.mde)]
            could = f"{max(mdes):.0%}" if mdes else "nothing"
            parts.append(f"{_where(c)} (it could detect {could})")
        return "inconclusive: too noisy to detect " + "; ".join(parts)
    return (
        f"no regression: none of {cfg.rule.threshold:.0%} of the frame in a section, none of "
        f"{cfg.micro_rule.threshold:.0%} in a micro-benchmark (every calibration caught)"
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _verdict(d: Decision, result: AbResult) -> str:
    if d.verdict in ("regression", "improvement") and not result.confirmed(d):
        other = "time" if " share N=" in d.metric else "share"
        way = "up" if d.verdict == "regression" else "down"
        return f"{way}; its {other} not: unconfirmed"
    if d.verdict == "ambiguous" and math.isfinite(d.mde) and d.mde > d.threshold:
        return f"undetectable at {d.threshold:.0%}"
    return _MARK.get(d.verdict, d.verdict)


def _row(d: Decision, result: AbResult) -> list[str]:
    sample = result.samples.get(d.metric)
    base = head = ""
    if sample is not None:
        base, head = (f"{_median(sample[k]):.4g}" for k in ("base", "head"))
    could = "-" if math.isinf(d.mde) or d.method == "count" else f"{d.mde:.1%}"
    p = min(d.p_slower_adj, d.p_faster_adj)
    return [
        d.metric,
        base,
        head,
        f"{d.change:+.1%}",
        f"[{d.low - 1:+.1%}, {d.high - 1:+.1%}]",
        "-" if math.isnan(p) else f"{p:.2g}",
        _verdict(d, result),
        could,
    ]


HEADER = ["metric", "base", "head", "change", "interval", "p adj", "verdict", "detectable"]


def _is_micro(d: Decision, result: AbResult) -> bool:
    metric = result.metrics.get(d.metric)
    return metric is not None and metric.family == "micro"


def _rows(result: AbResult) -> list[list[str]]:
    shown = [d for d in result.decisions if not _is_micro(d, result)]
    # Micro-benchmarks: only those that moved or could not be told, the rest summarised.
    shown += [d for d in result.decisions if _is_micro(d, result) and d.verdict != "unchanged"]
    shown += [d for d in result.counts if d.verdict != "unchanged"]
    return [_row(d, result) for d in shown]


def _family_mde(result: AbResult, family: str) -> str:
    mdes = sorted(
        d.mde
        for d in result.decisions
        if (m := result.metrics.get(d.metric)) is not None and m.family == family
    )
    finite = [x for x in mdes if math.isfinite(x)]
    if not finite:
        return "-"
    return f"median {statistics.median(finite):.0%}, worst {max(finite):.0%}"


def _notes(result: AbResult) -> list[str]:
    micro = [d for d in result.decisions if _is_micro(d, result)]
    counts_same = sum(d.verdict == "unchanged" for d in result.counts)
    notes = [
        f"{result.rounds} rounds in {result.looks} look(s), "
        f"{'trainers alive in serve mode' if result.mode == 'serve' else 'one process per block'}",
        f"micro-benchmarks: {sum(d.verdict == 'unchanged' for d in micro)} of {len(micro)} "
        f"unchanged (others listed), {result.micro_seconds:.0f} s",
        f"exact counts: {counts_same} of {len(result.counts)} unchanged (others listed)",
        "detectable change: frame metrics "
        + _family_mde(result, "frame")
        + "; sections "
        + _family_mde(result, "section")
        + "; micro-benchmarks "
        + _family_mde(result, "micro"),
    ]
    for n, arms in result.pacing.items():
        b, h = arms["base"], arms["head"]
        notes.append(
            f"pacing N={n} (base / head): p99 {b['p99_ms']:.1f} / {h['p99_ms']:.1f} ms, worst "
            f"frame {b['max_ms']:.0f} / {h['max_ms']:.0f} ms, hitches per 1000 frames "
            f"{b['hitches_4x_per_1000']:.1f} / {h['hitches_4x_per_1000']:.1f} (over 4x the "
            f"median), {b['hitches_50ms_per_1000']:.1f} / {h['hitches_50ms_per_1000']:.1f} "
            "(over 50 ms)"
        )
    for c in result.calibrations:
        got = ", ".join(f"{d.change:+.1%} -> {d.verdict}" for d in c.decisions) or "not decided"
        ms = f" ({c.ms:.2f} ms)" if not c.micro else ""
        same = (
            ""
            if c.same is None
            else (f"; unslowed, head against base: {c.same.change:+.1%} -> {c.same.verdict}")
        )
        notes.append(f"calibration: {_where(c)}{ms}: {got}{same}")
    notes += [f"not judged: {s}" for s in result.skipped]
    notes += [f"micro: {name} exists on one side only (not compared)" for name in result.micro_only]
    return notes


def format_text(result: AbResult, cfg: AbConfig) -> str:
    rows = [HEADER, *_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        f"calf-perf ab: {result.base.name}  vs  {result.head.name}",
        "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows[1:]]
    lines += ["", *_notes(result), "", verdict_line(result, cfg)]
    return "\n".join(lines)


def format_markdown(result: AbResult, cfg: AbConfig) -> str:
    lines = [
        "## calf-perf ab",
        "",
        f"**{verdict_line(result, cfg)}**",
        "",
        f"`{result.base.name}` vs `{result.head.name}`; thresholds {cfg.rule.threshold:.0%} "
        f"(frame, sections; margin {cfg.rule.margin:.0%}) and {cfg.micro_rule.threshold:.0%} "
        f"(micro; margin {cfg.micro_rule.margin:.0%}), alpha {cfg.rule.alpha}, ratios head / "
        "base, intervals Holm-adjusted.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(result)]
    lines += ["", *(f"- {n}" for n in _notes(result))]
    return "\n".join(lines) + "\n"


def to_json(result: AbResult, cfg: AbConfig) -> dict[str, Any]:
    def clean(value: Any) -> Any:  # JSON has no inf or nan
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return clean(
        {
            "base": {"commit": result.base.commit, "dirty": result.base.dirty},
            "head": {"commit": result.head.commit, "dirty": result.head.dirty},
            "config": dataclasses.asdict(cfg),
            "mode": result.mode,
            "rounds": result.rounds,
            "looks": result.looks,
            "verdict": verdict_line(result, cfg),
            "decisions": [
                {
                    **dataclasses.asdict(d),
                    "family": _family(d, result),
                    "stands": result.confirmed(d),
                }
                for d in result.decisions
            ],
            "counts": [dataclasses.asdict(d) for d in result.counts],
            "calibrations": [
                {
                    **{k: v for k, v in dataclasses.asdict(c).items() if k != "decisions"},
                    "decisions": [dataclasses.asdict(d) for d in c.decisions],
                    "caught": c.caught,
                }
                for c in result.calibrations
            ],
            "samples": result.samples,
            "not_judged": result.skipped,
            "micro_only": result.micro_only,
            "micro_seconds": result.micro_seconds,
            "pacing": {str(n): arms for n, arms in result.pacing.items()},
        }
    )


def _family(d: Decision, result: AbResult) -> str:
    metric = result.metrics.get(d.metric)
    return "" if metric is None else metric.family
