"""``calf-perf ab``: this change against its base commit, measured in one job, decided knowing the
noise.

Macro: for every N, three arms of the real trainer run side by side, alive in serve mode (see
``perf.arms``): base, head, and head with a known slowdown injected (the calibration arm). A round
runs one short block of frames in every arm, base and calibration swapping places each round
(base, head, cal / cal, head, base), so slow drift of the machine hits every arm alike and block
i of every arm simulates the same frames. Per round and N the metrics are the frame's p50 and
process and main-thread CPU per frame (judged by time) and every section, judged twice: by its
time and by its share of the frame. A section regressed only when both say so: its share alone
also grows when another section gets faster, its time alone also grows when the whole machine
slows down (drift is mostly common-mode). ``perf.decision`` turns paired rounds into verdicts
(Wilcoxon signed-rank, Hodges-Lehmann, Holm across all metrics, alpha spent across looks);
while a metric is ambiguous, more rounds run, up to ``max_looks`` looks. The exact counters of
both trees (forward passes by stage, buffer writes by layer, wasted text layouts, draw calls)
are compared as counts: an increase is a regression outright.

Calibration: the calibration arm must come out a regression against head on the frame metric;
if it does not, the run could not have caught a change of the threshold's size and it says so
("inconclusive", exit 3) instead of passing.

Micro: the pytest-benchmark suites of perf/ (quick sizes) in both trees, paired by name, decided
by ``perf.micro`` (separation by a wide margin across processes) and reported with the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perf.arms import Arm, ArmSpec, RunArm, ServeArm
from perf.decision import (
    Comparison,
    Decision,
    DecisionRule,
    compare_paired,
    decide,
    decide_count,
    decide_paired,
    needs_more_rounds,
)
from perf.trees import Tree

# Sections that can take injected work (a `with` block in the frame); render cannot.
INJECTABLE = ("training", "policy", "trails", "ui", "physics", "heights")
# Sections below this share of the frame are reported but not judged (a share of ~0 has no
# meaningful ratio, and the calibration promise is about sections that matter).
MIN_SHARE = 0.01
# Exact counters compared as counts (per-frame means over all blocks).
COUNT_PREFIXES = ("forwards.", "uploads.", "wasted_layouts.", "vertex_bytes.")
COUNT_NAMES = ("vis_forward_passes", "draw_calls")
COUNT_TOLERANCE = 0.02


@dataclass(frozen=True)
class AbConfig:
    agents: tuple[int, ...] = (5, 20, 100)
    frames: int = 120  # measured frames per block
    rounds: int = 12  # rounds per look
    rule: DecisionRule = field(default_factory=DecisionRule)
    calibrate: tuple[str, float] | None = None  # (section, fraction of the frame); None: rotate
    warmup: int = 60

    def __post_init__(self) -> None:
        if not self.agents or min(self.agents) < 1:
            raise ValueError(f"agents must be positive, got {self.agents}")
        if self.frames < 10 or self.rounds < 3:
            raise ValueError("a block needs >= 10 frames and a look >= 3 rounds")
        if self.calibrate is not None and self.calibrate[0] not in INJECTABLE:
            raise ValueError(
                f"cannot inject work into {self.calibrate[0]!r}; choose from {INJECTABLE}"
            )


@dataclass
class Calibration:
    agents: int
    section: str
    fraction: float  # of head's frame time
    ms: float
    decision: Decision | None = None

    @property
    def caught(self) -> bool:
        return self.decision is not None and self.decision.verdict == "regression"


@dataclass
class AbResult:
    base: Tree
    head: Tree
    mode: str  # "serve" or "runs"
    looks: int
    rounds: int
    decisions: list[Decision]
    counts: list[Decision]
    calibrations: list[Calibration]
    samples: dict[str, dict[str, list[float]]]  # metric -> {"base": [...], "head": [...]}
    skipped: list[str]  # metrics measured but not judged, and why

    def confirmed(self, d: Decision) -> bool:
        """A change that stands: for a section, its time and its share both moved that way."""
        if d.verdict not in ("regression", "improvement"):
            return False
        partner = section_partner(d.metric)
        if partner is None:
            return True
        return any(p.metric == partner and p.verdict == d.verdict for p in self.decisions)

    @property
    def regressions(self) -> list[Decision]:
        return [
            d
            for d in (*self.decisions, *self.counts)
            if d.verdict == "regression" and self.confirmed(d)
        ]

    @property
    def inconclusive(self) -> list[Calibration]:
        return [c for c in self.calibrations if not c.caught]


def section_partner(metric: str) -> str | None:
    """'trails time N=20' <-> 'trails share N=20'; None for other metrics."""
    for a, b in ((" time N=", " share N="), (" share N=", " time N=")):
        if a in metric:
            return metric.replace(a, b)
    return None


def _rotation(head: Tree, base: Tree) -> int:
    """Which injectable section the calibration starts from: fixed per commit pair, so
    successive changes calibrate different sections."""
    return int((head.commit or base.commit)[:8], 16) % len(INJECTABLE)


def _frame_ms(block: dict[str, Any]) -> float:
    return float(block["frame"]["frame_ms_mean"])


def _time_metrics(block: dict[str, Any]) -> dict[str, float]:
    frame = block["frame"]
    return {
        "frame p50": frame["frame_ms_p50"],
        "cpu/frame": frame["cpu_ms_per_frame"],
        "main-thread cpu/frame": frame.get("thread_cpu_ms_per_frame", frame["cpu_ms_per_frame"]),
    }


def _shares(block: dict[str, Any]) -> dict[str, float]:
    frame = _frame_ms(block)
    return {name: s["ms_per_frame"] / frame for name, s in block["sections"].items()}


def _counts(block: dict[str, Any]) -> dict[str, float]:
    return {
        k: v
        for k, v in block["counters"].items()
        if k.startswith(COUNT_PREFIXES) or k in COUNT_NAMES
    }


class _Series:
    """Per-round blocks of one N: base, head and calibration."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[dict[str, Any]]] = {"base": [], "head": [], "cal": []}

    def paired(self, a: str, b: str, sections: list[str]) -> dict[str, tuple[list, list]]:
        """Per-round samples of arm ``a`` against arm ``b``: the frame's time metrics, and each
        named section's time and share."""
        out: dict[str, tuple[list, list]] = {}
        xa, xb = self.blocks[a], self.blocks[b]
        ta, tb = [_time_metrics(x) for x in xa], [_time_metrics(x) for x in xb]
        for metric in ta[0]:
            out[metric] = ([t[metric] for t in ta], [t[metric] for t in tb])
        sa, sb = [_shares(x) for x in xa], [_shares(x) for x in xb]
        for name in sections:
            out[f"{name} time"] = (
                [x["sections"].get(name, {}).get("ms_per_frame", 0.0) for x in xa],
                [x["sections"].get(name, {}).get("ms_per_frame", 0.0) for x in xb],
            )
            out[f"{name} share"] = ([s.get(name, 0.0) for s in sa], [s.get(name, 0.0) for s in sb])
        return out


def run_ab(
    base: Tree,
    head: Tree,
    cfg: AbConfig,
    micro: Sequence[Decision] = (),
    on_round: Callable[[str], None] = lambda _line: None,
) -> AbResult:
    """Measure base, head and the calibration arm at every N and decide; the ``micro``
    decisions (made already) join the result (module docstring)."""
    serve = base.serves() and head.serves()
    arm_type: Callable[[Tree, ArmSpec, str], Arm] = ServeArm if serve else RunArm
    series = {n: _Series() for n in cfg.agents}
    arms: list[dict[str, Arm]] = []
    try:
        calibrations = []
        for i, n in enumerate(cfg.agents):
            spec = ArmSpec(n, warmup=cfg.warmup)
            arms.append(
                {label: arm_type(tree, spec, label) for label, tree in _arms_of(base, head)}
            )
            pilot = _frame_ms(arms[-1]["head"].block(cfg.frames))
            cal = _calibration(cfg, n, pilot, (_rotation(head, base) + i) % len(INJECTABLE))
            calibrations.append(cal)
            on_round(
                f"N={n}: arms ready ({'serve mode' if serve else 'one process per block'}); "
                f"calibration: +{cal.fraction:.0%} of the frame ({cal.ms:.2f} ms) in {cal.section}"
            )
        rounds = look = 0
        sections: dict[int, list[str]] = {}
        while True:
            look += 1
            for _ in range(cfg.rounds):
                order = ("base", "head", "cal") if rounds % 2 == 0 else ("cal", "head", "base")
                for cal, by_arm in zip(calibrations, arms, strict=True):
                    blocks = series[cal.agents].blocks
                    for label in order:
                        inject = (cal.section, cal.ms) if label == "cal" else None
                        blocks[label].append(by_arm[label].block(cfg.frames, inject))
                rounds += 1
                on_round(_round_line(rounds, series))
            for n in cfg.agents:
                sections.setdefault(n, _judged_sections(series[n]))
            macro = compare_paired_samples(_samples(series, sections, "base", "head"))
            decisions = decide(macro, cfg.rule, look)
            for cal in calibrations:
                frame = series[cal.agents].paired("head", "cal", [])["frame p50"]
                (cal.decision,) = decide_paired(
                    {f"frame p50 N={cal.agents}": frame}, cfg.rule, look
                )
            more = needs_more_rounds(decisions, look, cfg.rule) or (
                look < cfg.rule.max_looks and any(not c.caught for c in calibrations)
            )
            if not more:
                break
    finally:
        for by_arm in arms:
            for arm in by_arm.values():
                arm.close()
    samples = _samples(series, sections, "base", "head")
    skipped = [
        f"{name} N={n}: under {MIN_SHARE:.0%} of the frame"
        for n in cfg.agents
        for name in sorted(series[n].blocks["head"][0]["sections"])
        if name not in sections[n]
    ]
    return AbResult(
        base=base,
        head=head,
        mode="serve" if serve else "runs",
        looks=look,
        rounds=rounds,
        decisions=[*decisions, *micro],
        counts=_count_decisions(series, look),
        calibrations=calibrations,
        samples={k: {"base": list(v[0]), "head": list(v[1])} for k, v in samples.items()},
        skipped=skipped,
    )


def _arms_of(base: Tree, head: Tree) -> tuple[tuple[str, Tree], ...]:
    return (("base", base), ("head", head), ("cal", head))


def _calibration(cfg: AbConfig, agents: int, frame_ms: float, rotation: int) -> Calibration:
    section, fraction = cfg.calibrate or (INJECTABLE[rotation], cfg.rule.threshold)
    return Calibration(agents, section, fraction, fraction * frame_ms)


def _judged_sections(series: _Series) -> list[str]:
    """Sections at least MIN_SHARE of the frame in every head block so far."""
    shares = [_shares(b) for b in series.blocks["head"]]
    return sorted(name for name in shares[0] if min(s.get(name, 0.0) for s in shares) >= MIN_SHARE)


def compare_paired_samples(samples: dict[str, tuple[list, list]]) -> list[Comparison]:
    """The paired comparison of every metric."""
    return [compare_paired(name, b, h) for name, (b, h) in samples.items()]


def _samples(
    series: dict[int, _Series], sections: dict[int, list[str]], a: str, b: str
) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for n, s in series.items():
        for metric, pair in s.paired(a, b, sections[n]).items():
            out[f"{metric} N={n}"] = pair
    return out


def _count_decisions(series: dict[int, _Series], look: int) -> list[Decision]:
    """Per-frame counts over all blocks, head against base. Counts that follow the learning
    trajectory (the certificate timeline waits for a certificate) move by a few per cent when
    a change alters the numbers; within COUNT_TOLERANCE they count as unchanged."""
    out = []
    for n, s in series.items():
        base = [_counts(b) for b in s.blocks["base"]]
        head = [_counts(b) for b in s.blocks["head"]]
        for name in sorted(set(base[0]) & set(head[0])):
            b = float(np.mean([x[name] for x in base]))
            h = float(np.mean([x[name] for x in head]))
            if abs(h - b) <= COUNT_TOLERANCE * b:
                h = b
            out.append(decide_count(f"{name} N={n}", b, h, look))
    return out


def _round_line(rounds: int, series: dict[int, _Series]) -> str:
    parts = []
    for n, s in series.items():
        last = {arm: _frame_ms(blocks[-1]) for arm, blocks in s.blocks.items()}
        parts.append(f"N={n} base {last['base']:.2f} head {last['head']:.2f} cal {last['cal']:.2f}")
    return f"  round {rounds:>2} (frame ms): " + " | ".join(parts)
