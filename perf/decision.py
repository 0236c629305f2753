"""Per-metric verdicts for ``calf-perf ab``: did head regress against base, knowing the noise?

Statistics only, no I/O. The runner measures base and head in alternating rounds inside
long-lived processes and hands over, per metric, paired per-round samples ``(base_i, head_i)``;
every metric is a cost (a time, a share of the frame: bigger is worse). Everything happens on
the log scale, ``d_i = log(head_i / base_i)``, so a change is a ratio and drift that scales both
alike cancels.

One metric (``compare_paired``)
-------------------------------
The Hodges-Lehmann estimate of the shift (the median of the Walsh averages ``(d_i + d_j) / 2,
i <= j``) and its one-sided confidence bounds (order statistics of the Walsh averages, their
rank from the signed-rank null distribution: exact up to ``EXACT_MAX_N`` pairs, normal above;
Hollander & Wolfe, *Nonparametric Statistical Methods*, 3rd ed., section 3.3), and the Wilcoxon
signed-rank p-values from ``scipy.stats.wilcoxon``. Valid when base and head are exchangeable
within a round under no change, which alternating their order is for; robust to the heavy tails
of a shared machine's timings.

The margin. Two processes of the same code keep a steady offset of a few per cent (memory
layout, the cores their pages and threads landed on) that no pairing of rounds cancels: with
enough rounds any such offset is "significant". So the test is not of "no change" but of "no
change beyond the margin": ``p_slower`` tests ``d - log(1 + margin)`` for a positive shift,
``p_faster`` ``d + log(1 + margin)`` for a negative one, and a bound must clear the margin, not 0
(a minimum-effect test). The margin is measured: the spread of that offset over many runs of
identical code on these machines (README, "The false-alarm rate").

The rule (``DecisionRule``, ``decide``)
---------------------------------------
``threshold``: the change a run promises to catch; ``min_effect`` (default ``threshold / 2``):
the smallest change worth a flag; ``alpha``: the chance of any false flag in a run, over every
metric and look. At look ``k`` the rule spends ``alpha / max_looks`` (a union bound over looks).
Within a look, Holm's step-down procedure runs over every metric compared, once for "slower"
and once for "faster"; each bound is taken at the level Holm tested that metric at, so an
adjusted p-value under alpha and a bound beyond the margin say the same thing. Verdicts:

* ``regression``: adjusted p(slower) <= alpha, lower bound > log(1 + margin), estimate >
  log(1 + min_effect);
* ``improvement``: the mirror image (noise called an improvement misleads as much);
* ``unchanged``: the interval lies within the threshold both ways;
* ``ambiguous``: anything else; ``needs_more_rounds`` says whether another look may run.

The detectable change (``Decision.mde``): the slowdown the run would flag with probability
``power`` at its strictest Holm level ``a = alpha_k / m``: ``log(1 + mde) = max(log(1 +
margin) + w, log(1 + min_effect)) + z_power * se``, with ``w`` the distance from the estimate
to its lower bound at level ``a`` in this run and ``se`` the estimate's standard error
(``sd(d) * sqrt(pi / (3 n))``, the Hodges-Lehmann variance under normal noise). ``inf`` when ``n``
pairs cannot reach level ``a`` at all (``2 ** -n > a``).

Exact counts (forward passes, draw calls, bytes): ``decide_count``, no statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "Comparison",
    "Decision",
    "DecisionRule",
    "compare_paired",
    "decide",
    "decide_count",
    "holm",
    "log_ratios",
    "needs_more_rounds",
]

FloatArray = npt.NDArray[np.float64]
Verdict = Literal["regression", "improvement", "unchanged", "ambiguous"]
Method = Literal["wilcoxon", "count"]

EXACT_MAX_N = 50  # exact signed-rank null up to this many pairs (scipy's cutoff too)
_RELATIVE_TOL = 1e-9  # a p-value equal to a level up to rounding reaches it
_NORMAL = NormalDist()


@dataclass(frozen=True)
class DecisionRule:
    """How one family of metrics is judged, and the run's false-alarm budget (module
    docstring): ``threshold``, ``min_effect`` (None: ``threshold / 2``), ``margin`` (the
    steady offset allowed between two processes of the same code), ``alpha``, ``max_looks``,
    ``power`` (of ``Decision.mde``)."""

    threshold: float = 0.10
    min_effect: float | None = None
    margin: float = 0.0
    alpha: float = 0.05
    max_looks: int = 3
    power: float = 0.9

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be positive, got {self.threshold!r}")
        if self.min_effect is not None and not 0 <= self.min_effect <= self.threshold:
            raise ValueError(
                f"min_effect must lie in [0, threshold={self.threshold}], got {self.min_effect!r}"
            )
        if not 0 <= self.margin < self.threshold:
            raise ValueError(f"margin must lie in [0, threshold), got {self.margin!r}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must lie in (0, 0.5), got {self.alpha!r}")
        if not (isinstance(self.max_looks, int) and self.max_looks >= 1):
            raise ValueError(f"max_looks must be a positive integer, got {self.max_looks!r}")
        if not 0.5 <= self.power < 1:
            raise ValueError(f"power must lie in [0.5, 1), got {self.power!r}")

    @property
    def effect_floor(self) -> float:
        """``min_effect`` with its default applied."""
        return self.threshold / 2 if self.min_effect is None else self.min_effect

    def alpha_at(self, look: int) -> float:
        """The false-alarm budget spent at ``look`` (1-based): ``alpha / max_looks``."""
        if not (isinstance(look, int) and 1 <= look <= self.max_looks):
            raise ValueError(f"look must be an integer in 1..{self.max_looks}, got {look!r}")
        return self.alpha / self.max_looks


# --- one metric -------------------------------------------------------------------------------


def _positive(metric: str, values: npt.ArrayLike, side: str) -> FloatArray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{metric}: {side} samples must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{metric}: no {side} samples")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{metric}: {side} samples contain NaN or infinite values")
    if np.any(a <= 0):
        raise ValueError(f"{metric}: {side} samples must be positive, got {a.min()!r}")
    return a


def log_ratios(metric: str, base: npt.ArrayLike, head: npt.ArrayLike) -> FloatArray:
    """Paired log ratios ``log(head_i / base_i)``; ValueError naming the metric when the samples
    are empty, unequal in number, non-finite or not positive."""
    b, h = _positive(metric, base, "base"), _positive(metric, head, "head")
    if b.size != h.size:
        raise ValueError(f"{metric}: {b.size} base samples but {h.size} head samples")
    return np.log(h) - np.log(b)


@lru_cache(maxsize=128)
def _null_cdf(n: int) -> tuple[float, ...]:
    """P(W+ <= w) for w = 0..n(n+1)/2 under no shift: the signed-rank null (each rank's sign
    a fair coin), by the usual dynamic programme over ranks."""
    pmf = np.zeros(n * (n + 1) // 2 + 1)
    pmf[0] = 1.0
    for rank in range(1, n + 1):
        pmf[rank:] = 0.5 * pmf[rank:] + 0.5 * pmf[:-rank].copy()
        pmf[:rank] *= 0.5
    return tuple(np.cumsum(pmf).tolist())


def _bound_rank(n: int, alpha: float) -> int:
    """The largest k with P(W+ <= k - 1) <= alpha: the k-th smallest Walsh average is a lower
    bound of the shift at one-sided level alpha (0: no bound that tight exists)."""
    size = n * (n + 1) // 2
    if n <= EXACT_MAX_N:
        cdf = _null_cdf(n)
        return int(np.searchsorted(cdf, alpha * (1 + _RELATIVE_TOL), side="right"))
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    z = _NORMAL.inv_cdf(min(max(alpha, 1e-300), 0.5))
    return int(min(max(math.floor(size / 2 + 0.5 + sd * z), 0), size))


@dataclass(frozen=True, eq=False)
class Comparison:
    """One metric's head-vs-base analysis on the log scale, before multiplicity: the estimate,
    the margin-shifted one-sided p-values, the sorted Walsh averages its bounds come from."""

    metric: str
    rule: DecisionRule
    n: int
    log_ratio: float  # Hodges-Lehmann
    p_slower: float  # for log ratio > log(1 + margin)
    p_faster: float  # for log ratio < -log(1 + margin)
    noise: float  # sd of the log ratios
    walsh: FloatArray  # sorted

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    @property
    def std_error(self) -> float:
        return self.noise * math.sqrt(math.pi / (3 * self.n))

    def lower(self, alpha: float) -> float:
        """The lower confidence bound of the log ratio at one-sided level ``alpha``."""
        k = _bound_rank(self.n, alpha)
        return float(self.walsh[k - 1]) if k >= 1 else -math.inf

    def upper(self, alpha: float) -> float:
        """The upper confidence bound of the log ratio at one-sided level ``alpha``."""
        k = _bound_rank(self.n, alpha)
        return float(self.walsh[-k]) if k >= 1 else math.inf

    def detectable(self, alpha: float, power: float) -> float:
        """The slowdown (fraction) flagged with probability ``power`` at level ``alpha``
        (module docstring); inf when ``n`` pairs cannot reach ``alpha``."""
        low = self.lower(alpha)
        if not math.isfinite(low) or not math.isfinite(self.noise):
            return math.inf
        width = self.log_ratio - low
        start = max(math.log1p(self.rule.margin) + width, math.log1p(self.rule.effect_floor))
        return math.expm1(start + _NORMAL.inv_cdf(power) * self.std_error)


def _one_sided(d: FloatArray, alternative: Literal["greater", "less"]) -> float:
    if not np.any(d):
        return 1.0  # no difference at all: nothing to test
    return float(stats.wilcoxon(d, zero_method="pratt", alternative=alternative).pvalue)


def compare_paired(
    metric: str, base: npt.ArrayLike, head: npt.ArrayLike, rule: DecisionRule = DecisionRule()
) -> Comparison:
    """Paired comparison of per-round samples (module docstring)."""
    d = log_ratios(metric, base, head)
    shift = math.log1p(rule.margin)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2)
    return Comparison(
        metric=metric,
        rule=rule,
        n=int(d.size),
        log_ratio=float(np.median(walsh)),
        p_slower=_one_sided(d - shift, "greater"),
        p_faster=_one_sided(d + shift, "less"),
        noise=float(np.std(d, ddof=1)) if d.size > 1 else math.inf,
        walsh=walsh,
    )


# --- many metrics: Holm, looks, verdicts -------------------------------------------------------


def holm(pvalues: npt.ArrayLike) -> FloatArray:
    """Holm-adjusted p-values (Holm 1979), in the order given."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):  # also rejects NaN
        raise ValueError("p-values must lie in [0, 1] (no NaN)")
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * (p.size - np.arange(p.size)))
    out = np.empty(p.size)
    out[order] = np.minimum(steps, 1.0)
    return out


def _holm_levels(p: FloatArray, alpha: float) -> FloatArray:
    """The level Holm's procedure tests each hypothesis at: ``alpha / (m - j)`` at step ``j``,
    and for the hypotheses after the step where it stops, that step's level."""
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    stop = int(np.searchsorted(steps > alpha * (1 + _RELATIVE_TOL), True))
    levels = np.empty(m)
    levels[order] = alpha / (m - np.minimum(np.arange(m), stop))
    return levels


@dataclass(frozen=True)
class Decision:
    """One metric's verdict. Ratios are head/base; ``low``/``high`` the Holm-level bounds;
    ``*_adj`` p-values are Holm-adjusted and include the look spending (compare with alpha);
    ``mde`` the slowdown (fraction) this run could have detected (inf: none); ``margin`` and
    ``threshold`` the rule it was judged by. Exact counts have NaN p-values."""

    metric: str
    n: int
    ratio: float
    low: float
    high: float
    p_slower: float
    p_faster: float
    p_slower_adj: float
    p_faster_adj: float
    verdict: Verdict
    mde: float
    method: Method
    look: int = 1
    margin: float = 0.0
    threshold: float = 0.0

    @property
    def change(self) -> float:
        """Relative change head vs base (+0.08 = head 8 % slower)."""
        return self.ratio - 1


def _verdict(c: Comparison, low: float, high: float, slower: bool, faster: bool) -> Verdict:
    rule = c.rule
    floor, band = math.log1p(rule.effect_floor), math.log1p(rule.threshold)
    margin = math.log1p(rule.margin)
    if slower and low > margin and c.log_ratio > floor:
        return "regression"
    if faster and high < -margin and c.log_ratio < -floor:
        return "improvement"
    if -band < low and high < band:
        return "unchanged"
    return "ambiguous"


def decide(comparisons: Sequence[Comparison], look: int = 1) -> list[Decision]:
    """One Decision per comparison, Holm over all of them at ``look`` (module docstring);
    every comparison's rule must spend the same budget (alpha, looks)."""
    names = [c.metric for c in comparisons]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names must be unique, repeated: {sorted(names)}")
    if not comparisons:
        return []
    budgets = {(c.rule.alpha, c.rule.max_looks) for c in comparisons}
    if len(budgets) > 1:
        raise ValueError(f"one run spends one false-alarm budget, got {sorted(budgets)}")
    rule = comparisons[0].rule
    alpha_k = rule.alpha_at(look)
    p_slow = np.array([c.p_slower for c in comparisons])
    p_fast = np.array([c.p_faster for c in comparisons])
    adj_s, adj_f = holm(p_slow), holm(p_fast)
    lev_s, lev_f = _holm_levels(p_slow, alpha_k), _holm_levels(p_fast, alpha_k)
    spend, cut, m = rule.alpha / alpha_k, alpha_k * (1 + _RELATIVE_TOL), len(comparisons)
    out = []
    for idx, c in enumerate(comparisons):
        low, high = c.lower(float(lev_s[idx])), c.upper(float(lev_f[idx]))
        slower, faster = bool(adj_s[idx] <= cut), bool(adj_f[idx] <= cut)
        out.append(
            Decision(
                metric=c.metric,
                n=c.n,
                ratio=c.ratio,
                low=math.exp(low),
                high=math.exp(high),
                p_slower=c.p_slower,
                p_faster=c.p_faster,
                p_slower_adj=min(1.0, float(adj_s[idx]) * spend),
                p_faster_adj=min(1.0, float(adj_f[idx]) * spend),
                verdict=_verdict(c, low, high, slower, faster),
                mde=c.detectable(alpha_k / m, c.rule.power),
                method="wilcoxon",
                look=look,
                margin=c.rule.margin,
                threshold=c.rule.threshold,
            )
        )
    return out


def needs_more_rounds(decisions: Iterable[Decision], look: int, rule: DecisionRule) -> bool:
    """Whether the caller should run more rounds and decide again: some metric is ambiguous
    and ``look`` was not the last one the rule allows."""
    rule.alpha_at(look)
    return look < rule.max_looks and any(d.verdict == "ambiguous" for d in decisions)


def decide_count(metric: str, base: float, head: float, look: int = 1) -> Decision:
    """Exact counts (forward passes, draw calls, bytes): any increase is a regression, any
    decrease an improvement, no statistics."""
    for side, v in (("base", base), ("head", head)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{metric}: {side} count must be finite and >= 0, got {v!r}")
    verdict: Verdict
    if head == base:
        ratio, verdict = 1.0, "unchanged"
    else:
        ratio = head / base if base > 0 else math.inf
        verdict = "regression" if head > base else "improvement"
    nan = math.nan
    return Decision(metric, 1, ratio, ratio, ratio, nan, nan, nan, nan, verdict, 0.0, "count", look)
