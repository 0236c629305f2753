"""What ``calf-perf ab`` prints and writes: a table on stdout, markdown for a GitHub job summary,
JSON with every sample and every decision."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from perf.ab import AbResult
from perf.decision import Decision, DecisionRule

_MARK = {"regression": "REGRESSION", "improvement": "improved", "unchanged": "ok"}


def verdict_line(result: AbResult, rule: DecisionRule) -> str:
    """The one-line outcome; its first word says which of the exit statuses it is."""
    if result.regressions:
        names = ", ".join(d.metric for d in result.regressions[:6])
        more = "" if len(result.regressions) <= 6 else f" and {len(result.regressions) - 6} more"
        return f"regression: {names}{more}"
    if result.inconclusive:
        parts = []
        for c in result.inconclusive:
            d = c.decision
            could = "nothing" if d is None or math.isinf(d.mde) else f"{d.mde:.0%}"
            parts.append(
                f"+{c.fraction:.0%} of the frame at N={c.agents} (it could detect {could})"
            )
        return "inconclusive: too noisy to detect " + "; ".join(parts)
    return f"no regression of {rule.threshold:.0%} or more (calibration caught at every N)"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _verdict(d: Decision, result: AbResult) -> str:
    if d.verdict in ("regression", "improvement") and not result.confirmed(d):
        other = "time" if " share N=" in d.metric else "share"
        way = "up" if d.verdict == "regression" else "down"
        return f"{way}; its {other} not: unconfirmed"
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


def _rows(result: AbResult) -> list[list[str]]:
    shown = [d for d in result.decisions if not d.metric.startswith("bench ")]
    micro = [d for d in result.decisions if d.metric.startswith("bench ")]
    # Micro-benchmarks: only those that moved or could not be told, the rest summarised.
    shown += [d for d in micro if d.verdict != "unchanged"]
    shown += [d for d in result.counts if d.verdict != "unchanged"]
    return [_row(d, result) for d in shown]


def _notes(result: AbResult) -> list[str]:
    micro = [d for d in result.decisions if d.metric.startswith("bench ")]
    counts_same = sum(d.verdict == "unchanged" for d in result.counts)
    notes = [
        f"{result.rounds} rounds in {result.looks} look(s), "
        f"{'trainers alive in serve mode' if result.mode == 'serve' else 'one process per block'}",
        f"micro-benchmarks: {sum(d.verdict == 'unchanged' for d in micro)} of {len(micro)} "
        "unchanged (others listed)",
        f"exact counts: {counts_same} of {len(result.counts)} unchanged (others listed)",
    ]
    for c in result.calibrations:
        d = c.decision
        got = "not decided" if d is None else f"{d.change:+.1%} -> {d.verdict}"
        notes.append(
            f"calibration N={c.agents}: +{c.fraction:.0%} of the frame ({c.ms:.2f} ms) "
            f"injected in {c.section}: {got}"
        )
    notes += [f"not judged: {s}" for s in result.skipped]
    return notes


def format_text(result: AbResult, rule: DecisionRule) -> str:
    rows = [HEADER, *_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        f"calf-perf ab: {result.base.name}  vs  {result.head.name}",
        "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows[1:]]
    lines += ["", *_notes(result), "", verdict_line(result, rule)]
    return "\n".join(lines)


def format_markdown(result: AbResult, rule: DecisionRule) -> str:
    lines = [
        "## calf-perf ab",
        "",
        f"**{verdict_line(result, rule)}**",
        "",
        f"`{result.base.name}` vs `{result.head.name}`; threshold {rule.threshold:.0%}, "
        f"alpha {rule.alpha}, ratios head / base, intervals Holm-adjusted.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(result)]
    lines += ["", *(f"- {n}" for n in _notes(result))]
    return "\n".join(lines) + "\n"


def to_json(result: AbResult, rule: DecisionRule) -> dict[str, Any]:
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
            "rule": dataclasses.asdict(rule),
            "mode": result.mode,
            "rounds": result.rounds,
            "looks": result.looks,
            "verdict": verdict_line(result, rule),
            "decisions": [dataclasses.asdict(d) for d in result.decisions],
            "counts": [dataclasses.asdict(d) for d in result.counts],
            "calibrations": [
                {
                    **{k: v for k, v in dataclasses.asdict(c).items() if k != "decision"},
                    "decision": None if c.decision is None else dataclasses.asdict(c.decision),
                    "caught": c.caught,
                }
                for c in result.calibrations
            ],
            "samples": result.samples,
            "not_judged": result.skipped,
        }
    )
