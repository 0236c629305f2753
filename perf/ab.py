"""``calf-perf ab``: this change against its base commit, measured in one job, decided knowing the
noise.

Macro: for every N, three arms of the real trainer run side by side, alive in serve mode
(``perf.arms``): base, head, and head with a known slowdown injected (the calibration arm). A
round runs one short block of frames in every arm, base and calibration swapping places each
round, so slow drift hits every arm alike and block i of every arm simulates the same frames.
Per round and N the metrics are the frame's p50, process and main-thread CPU per frame, and
every section judged twice: by its time and by its share of the frame. A section regressed only
when both say so: its share alone also grows when another section gets faster, its time alone
when the whole machine slows down.

Micro: the pytest-benchmark suites of both trees, alive side by side, every benchmark measured
in short rounds in turn (``perf.micro``), with a calibration benchmark of its own.

Both go through one decision (``perf.decision``): paired per-round log ratios, Hodges-Lehmann
and Wilcoxon, beyond a margin for the steady offset of two processes, Holm across every metric
of the run, more rounds while a metric is ambiguous, up to ``max_looks`` looks. The exact
counters of both trees (forward passes by stage, buffer writes by layer, wasted text layouts,
draw calls) are compared as counts: an increase is a regression outright.

Calibration: at every N the calibration arm (``threshold`` of the frame as busy work in one
section, rotating) must come out a regression against head by the same rule, its section's time
and share both; and the micro calibration benchmark (``threshold`` of its time added to every
call) against base. If one is not caught, the run could not have seen a change of that size:
"inconclusive" (exit 3), not a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from perf.arms import Arm, ArmSpec, RunArm, ServeArm
from perf.decision import (
    Comparison,
    Decision,
    DecisionRule,
    compare_paired,
    decide,
    decide_count,
    needs_more_rounds,
)
from perf.micro import BenchmarkRounds, MicroRun
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
# The steady offset two trainer processes of the same code keep: 2-4 % on the frame and up to
# 6 % on a section, measured over 466 rounds of one A/A pair here (README, "The false-alarm
# rate"); a change must clear it, not just 0.
MACRO_MARGIN = 0.05
# Micro-benchmarks: the run promises to catch a change of 40 % (a loop put back, an extra
# forward: 2x and more), and flags one from half that. Two suite processes of the same code,
# pinned to one core, kept offsets of 1-2 % (median over 52 benchmarks), 4-7 % at the 90th
# percentile and 13 % at most in four A/A runs here (perf.micro); the margin sits above that.
# With 25 % promised, one run in five of ten could not show it: the calibration measured +16 %
# when head's process ran 7 % faster than base's.
MICRO_THRESHOLD = 0.40
MICRO_MARGIN = 0.15

Family = Literal["frame", "section", "micro"]


@dataclass(frozen=True)
class Metric:
    """What a decision is about: ``family`` frame (``name`` p50, cpu/frame, main-thread
    cpu/frame), section (``name`` the section, ``kind`` time or share) or micro (``name`` the
    benchmark); ``agents`` for the macro families."""

    family: Family
    name: str
    agents: int = 0
    kind: str = ""

    def __str__(self) -> str:
        if self.family == "micro":
            return f"bench {self.name}"
        if self.family == "frame":
            return f"{self.name} N={self.agents}"
        return f"{self.name} {self.kind} N={self.agents}"

    @property
    def partner(self) -> Metric | None:
        """A section's time for its share and the other way round; None otherwise."""
        if self.family != "section":
            return None
        other = "share" if self.kind == "time" else "time"
        return Metric("section", self.name, self.agents, other)


@dataclass(frozen=True)
class AbConfig:
    agents: tuple[int, ...] = (5, 20, 100, 1000)
    frames: int = 20  # measured frames per block
    rounds: int = 16  # rounds per look
    rule: DecisionRule = field(default_factory=lambda: DecisionRule(margin=MACRO_MARGIN))
    micro_rule: DecisionRule = field(
        default_factory=lambda: DecisionRule(threshold=MICRO_THRESHOLD, margin=MICRO_MARGIN)
    )
    micro_rounds: int = 20  # rounds per look of each benchmark
    calibrate: tuple[str, float] | None = None  # (section, fraction of the frame); None: rotate
    warmup: int = 60
    late: bool = True  # an hour-long run's state, run folder written (perf.runner's default)

    def __post_init__(self) -> None:
        if not self.agents or min(self.agents) < 1:
            raise ValueError(f"agents must be positive, got {self.agents}")
        if self.frames < 5 or self.rounds < 3 or self.micro_rounds < 5:
            raise ValueError("a block needs >= 5 frames, a look >= 3 rounds (micro: >= 5)")
        if self.calibrate is not None and self.calibrate[0] not in INJECTABLE:
            raise ValueError(
                f"cannot inject work into {self.calibrate[0]!r}; choose from {INJECTABLE}"
            )
        if (self.rule.alpha, self.rule.max_looks) != (
            self.micro_rule.alpha,
            self.micro_rule.max_looks,
        ):
            raise ValueError("macro and micro share one false-alarm budget (alpha, looks)")


@dataclass
class Calibration:
    """A known slowdown the run must catch: ``where`` a section at ``agents`` (``ms`` of busy
    work, ``fraction`` of the frame) or a micro-benchmark (``fraction`` of its time)."""

    where: str
    fraction: float
    agents: int = 0
    ms: float = 0.0
    decisions: list[Decision] = field(default_factory=list)
    same: Decision | None = None  # micro: the calibration benchmark unslowed, head vs base (A/A)

    @property
    def caught(self) -> bool:
        return bool(self.decisions) and all(d.verdict == "regression" for d in self.decisions)

    @property
    def micro(self) -> bool:
        return self.agents == 0


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
    metrics: dict[str, Metric] = field(default_factory=dict)  # decision name -> what it is
    micro_only: list[str] = field(default_factory=list)  # benchmarks on one side only
    micro_seconds: float = 0.0
    pacing: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # N -> arm -> ..

    def confirmed(self, d: Decision) -> bool:
        """A change that stands: for a section, its time and its share both moved that way."""
        if d.verdict not in ("regression", "improvement"):
            return False
        metric = self.metrics.get(d.metric)
        partner = None if metric is None else metric.partner
        if partner is None:
            return True
        return any(p.metric == str(partner) and p.verdict == d.verdict for p in self.decisions)

    @property
    def regressions(self) -> list[Decision]:
        return [
            d
            for d in (*self.decisions, *self.counts)
            if d.verdict == "regression" and self.confirmed(d)
        ]

    @property
    def improvements(self) -> list[Decision]:
        return [d for d in (*self.decisions, *self.counts) if d.verdict == "improvement"]

    @property
    def inconclusive(self) -> list[Calibration]:
        return [c for c in self.calibrations if not c.caught]


def rotation(head: Tree, base: Tree) -> int:
    """Where the calibration starts: fixed per commit pair, so successive changes calibrate
    different sections and benchmarks."""
    return int((head.commit or base.commit)[:8], 16)


def _frame_ms(block: dict[str, Any]) -> float:
    return float(block["frame"]["frame_ms_mean"])


def _shares(block: dict[str, Any]) -> dict[str, float]:
    frame = _frame_ms(block)
    return {name: s["ms_per_frame"] / frame for name, s in block["sections"].items()}


def _counts(block: dict[str, Any]) -> dict[str, float]:
    return {
        k: v
        for k, v in block["counters"].items()
        if k.startswith(COUNT_PREFIXES) or k in COUNT_NAMES
    }


FRAME_METRICS = {
    "frame p50": lambda f: f["frame_ms_p50"],
    "cpu/frame": lambda f: f["cpu_ms_per_frame"],
    "main-thread cpu/frame": lambda f: f.get("thread_cpu_ms_per_frame", f["cpu_ms_per_frame"]),
}


class _Series:
    """Per-round blocks of one N: base, head and calibration."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.blocks: dict[str, list[dict[str, Any]]] = {"base": [], "head": [], "cal": []}

    def paired(self, a: str, b: str, sections: Sequence[str]) -> dict[Metric, tuple[list, list]]:
        """Per-round samples of arm ``a`` against arm ``b``: the frame's metrics and each named
        section's time and share."""
        xa, xb = self.blocks[a], self.blocks[b]
        out: dict[Metric, tuple[list, list]] = {}
        for name, read in FRAME_METRICS.items():
            out[Metric("frame", name, self.agents)] = (
                [read(x["frame"]) for x in xa],
                [read(x["frame"]) for x in xb],
            )
        sa, sb = [_shares(x) for x in xa], [_shares(x) for x in xb]
        for name in sections:
            time = [[x["sections"].get(name, {}).get("ms_per_frame", 0.0) for x in xs]
                    for xs in (xa, xb)]  # fmt: skip
            out[Metric("section", name, self.agents, "time")] = (time[0], time[1])
            out[Metric("section", name, self.agents, "share")] = (
                [s.get(name, 0.0) for s in sa],
                [s.get(name, 0.0) for s in sb],
            )
        return out


def micro_comparisons(run: MicroRun, rule: DecisionRule) -> list[Comparison]:
    """The micro-benchmarks' comparisons, head against base (not the process-sensitive ones)."""
    return [
        compare_paired(str(Metric("micro", name)), r.base, r.head, rule)
        for name, r in sorted(run.benchmarks.items())
        if name not in run.process_sensitive
    ]


def micro_calibration(run: MicroRun, rule: DecisionRule, look: int) -> Calibration | None:
    """The calibration benchmark: its slowed arm against base (must be a regression), and its
    head arm against base (the same code: an A/A check of the pairing)."""
    r = run.calibration
    if r is None:
        return None
    slowed, same = (
        compare_paired(f"calibration benchmark {arm}", r.base, values, rule)
        for arm, values in (("slowed", r.cal), ("as is", r.head))
    )
    decided = decide([slowed, same], look)
    return Calibration("the calibration benchmark", rule.threshold, decisions=decided[:1],
                       same=decided[1])  # fmt: skip


def micro_rounds_for(rule: DecisionRule, per_look: int) -> Callable[[BenchmarkRounds, int], int]:
    """How many more rounds a benchmark gets: a look's worth while it is ambiguous at the
    level it would be judged at (Bonferroni over the ``m`` benchmarks: a screen; the verdict
    itself is Holm's, over every metric of the run), until the last look."""

    def more(rounds: BenchmarkRounds, m: int) -> int:
        n = len(rounds.base)
        if n == 0:
            return per_look
        look = n // per_look
        if look >= rule.max_looks:
            return 0
        arms = [rounds.head] + ([rounds.cal] if rounds.cal else [])
        for arm in arms:
            c = compare_paired(rounds.name, rounds.base, arm, rule)
            alpha = rule.alpha_at(look) / max(m, 1)
            low, high = c.lower(alpha), c.upper(alpha)
            band, margin = np.log1p(rule.threshold), np.log1p(rule.margin)
            decided = low > margin or high < -margin or (-band < low and high < band)
            if not decided:
                return per_look
        return 0

    return more


def run_ab(
    base: Tree,
    head: Tree,
    cfg: AbConfig,
    micro: MicroRun | None = None,
    on_round: Callable[[str], None] = lambda _line: None,
) -> AbResult:
    """Measure base, head and the calibration arm at every N and decide, with the micro
    side's measurements (made already) in the same decision (module docstring)."""
    serve = base.serves() and head.serves()
    late = cfg.late and base.ages() and head.ages()
    arm_type: Callable[[Tree, ArmSpec, str], Arm] = ServeArm if serve else RunArm
    series = {n: _Series(n) for n in cfg.agents}
    arms: list[dict[str, Arm]] = []
    micro_cmp = micro_comparisons(micro, cfg.micro_rule) if micro else []
    try:
        calibrations = []
        for i, n in enumerate(cfg.agents):
            spec = ArmSpec(n, warmup=cfg.warmup, late=late)
            arms.append({label: arm_type(tree, spec, label) for label, tree in _arms(base, head)})
            # A pilot block in every arm (head's sizes the calibration): the arms stay on the
            # same frames, so block i of each simulates the same world.
            pilots = {label: _frame_ms(arm.block(cfg.frames)) for label, arm in arms[-1].items()}
            pilot = pilots["head"]
            section, fraction = cfg.calibrate or (
                INJECTABLE[(rotation(head, base) + i) % len(INJECTABLE)],
                cfg.rule.threshold,
            )
            calibrations.append(Calibration(section, fraction, n, fraction * pilot))
            on_round(
                f"N={n}: arms ready ({'serve mode' if serve else 'one process per block'}, "
                f"{'late' if late else 'early'} run state); calibration: +{fraction:.0%} of the "
                f"frame ({fraction * pilot:.2f} ms) in {section}"
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
                        inject = (cal.where, cal.ms) if label == "cal" else None
                        blocks[label].append(by_arm[label].block(cfg.frames, inject))
                rounds += 1
                on_round(_round_line(rounds, series))
            for n in cfg.agents:
                sections.setdefault(n, _judged_sections(series[n]))
            metrics = _samples(series, sections, "base", "head")
            macro = [compare_paired(str(m), b, h, cfg.rule) for m, (b, h) in metrics.items()]
            decisions = decide([*macro, *micro_cmp], look)
            for cal in calibrations:
                s = series[cal.agents]
                pairs = s.paired("head", "cal", [cal.where])
                judged = [m for m in pairs if m.family == "section"]
                cal.decisions = decide(
                    [compare_paired(str(m), *pairs[m], cfg.rule) for m in judged], look
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
    micro_cal = None if micro is None else micro_calibration(micro, cfg.micro_rule, look)
    if micro_cal is not None:
        calibrations.append(micro_cal)
    samples = _samples(series, sections, "base", "head")
    skipped = [
        f"{name} N={n}: under {MIN_SHARE:.0%} of the frame"
        for n in cfg.agents
        for name in sorted(series[n].blocks["head"][0]["sections"])
        if name not in sections[n]
    ]
    if micro is not None:
        skipped += [
            f"micro {name}: marked process_sensitive (two processes of the same code differ "
            "by more than the margin)"
            for name in sorted(micro.process_sensitive & micro.benchmarks.keys())
        ]
    ids = {str(m): m for m in samples}
    if micro is not None:
        ids.update({str(Metric("micro", name)): Metric("micro", name) for name in micro.benchmarks})
        samples_micro = {
            str(Metric("micro", name)): (r.base, r.head) for name, r in micro.benchmarks.items()
        }
    else:
        samples_micro = {}
    return AbResult(
        base=base,
        head=head,
        mode="serve" if serve else "runs",
        looks=look,
        rounds=rounds,
        decisions=decisions,
        counts=_count_decisions(series, look),
        calibrations=calibrations,
        samples={
            str(k): {"base": list(v[0]), "head": list(v[1])}
            for k, v in [*samples.items(), *samples_micro.items()]
        },
        skipped=skipped,
        metrics=ids,
        micro_only=[] if micro is None else micro.only,
        micro_seconds=0.0 if micro is None else micro.seconds,
        pacing={
            n: {arm: pacing(s.blocks[arm]) for arm in ("base", "head")} for n, s in series.items()
        },  # fmt: skip
    )


def pacing(blocks: list[dict[str, Any]]) -> dict[str, float]:
    """An arm's frame pacing over its blocks: the median block's p99, the worst frame of all,
    the hitches (over 4x the median, over 50 ms) per 1000 frames. Reported, not judged: a
    block's tail is a handful of frames (the pacing gate judges a whole run's)."""
    frames = sum(b["frame"]["frames"] for b in blocks) or 1
    return {
        "p99_ms": float(np.median([b["frame"].get("frame_ms_p99", 0.0) for b in blocks])),
        "max_ms": max(b["frame"].get("frame_ms_max", 0.0) for b in blocks),
        "hitches_4x_per_1000": 1000 * sum(b["frame"].get("hitches_4x_median", 0.0)
                                          for b in blocks) / frames,
        "hitches_50ms_per_1000": 1000 * sum(b["frame"].get("hitches_over_50ms", 0.0)
                                            for b in blocks) / frames,
    }  # fmt: skip


def _arms(base: Tree, head: Tree) -> tuple[tuple[str, Tree], ...]:
    return (("base", base), ("head", head), ("cal", head))


def _judged_sections(series: _Series) -> list[str]:
    """Sections at least MIN_SHARE of the frame in every head block so far."""
    shares = [_shares(b) for b in series.blocks["head"]]
    return sorted(name for name in shares[0] if min(s.get(name, 0.0) for s in shares) >= MIN_SHARE)


def _samples(
    series: dict[int, _Series], sections: dict[int, list[str]], a: str, b: str
) -> dict[Metric, tuple[list, list]]:
    out: dict[Metric, tuple[list, list]] = {}
    for n, s in series.items():
        out.update(s.paired(a, b, sections[n]))
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
