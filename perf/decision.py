"""Per-metric verdicts for ``calf-perf ab``: did head regress against base, knowing the noise?

Pure statistics, no I/O, numpy only. The runner measures base and head alternately (ABBA) in one
job and hands over, per metric, paired per-round samples ``(base_i, head_i)``; every metric is a
cost (a time, a share of the frame: bigger is worse). Everything happens on the log scale,
``d_i = log(head_i / base_i)``, so a shift is a ratio and drift that scales both alike cancels.

Methods
-------
* Paired (default): the Wilcoxon signed-rank test on ``d`` with the Hodges–Lehmann estimate (the
  median of the Walsh averages ``(d_i + d_j) / 2, i <= j``) and its confidence bounds (order
  statistics of the Walsh averages). Null distribution: exact by dynamic programming up to
  ``EXACT_MAX_N`` pairs (conditional on the ranks, so ties and zeros are exact too; zeros are
  ranked and given no sign, Pratt's method), normal approximation with tie and zero corrections
  and a continuity correction above.
* Paired bootstrap (``compare_bootstrap``, BCa or percentile, seeded): a second opinion, not the
  default. The signed-rank method is exact in small samples whenever base and head are
  exchangeable within a round (what ABBA interleaving buys), it reaches the tiny per-metric levels
  that Holm over ~20 metrics and several looks demand (down to ``2**-n``), and it does not care
  about outliers. A bootstrap of 12 pairs is discrete and too narrow (it resamples a spread
  that is already shrunk), and its tail quantiles at ``alpha / 60`` need tens of thousands of
  resamples.
* Unpaired (``compare_unpaired``), for micro-benchmarks with two independent sample sets: the
  two-sample Hodges–Lehmann shift of log times (median of all head–base differences) with the
  Mann–Whitney test and its confidence bounds; exact up to ``EXACT_MAX_TOTAL`` samples in all.
* Exact counts (forward passes, draw calls, bytes): ``decide_count``, no statistics: any
  increase is a regression, any decrease an improvement.

Decision rule (``DecisionRule``, ``decide``)
--------------------------------------------
``threshold`` (default 0.10) is the size of regression the run promises to catch; ``min_effect``
(default ``threshold / 2``) the smallest slowdown worth flagging. At look ``k`` the rule spends
``alpha_k = alpha / max_looks`` (Bonferroni over looks: the union bound keeps the chance of any
false flag over all looks <= ``alpha`` however the looks depend on each other). Within a look,
Holm's step-down procedure runs over all metrics compared, once for the one-sided "head slower"
p-values and once for the "head faster" ones, so false regressions (and, separately, false
improvements) are flagged in at most ``alpha`` of runs. Each metric's lower bound is computed at
the level Holm tested its "slower" hypothesis at (``alpha_k / (m - j)`` at step ``j``, or the
level of the step where Holm stopped), its upper bound likewise for "faster"; so "adjusted p <=
alpha" and "bound beyond 1" say the same thing. They can differ only when ``d`` has ties or zeros
(the test then uses the exact tie-aware null, the bounds the continuous one); the verdict asks
for both, which keeps the report self-consistent and the error rate where it was. The p-values
are valid when base and head are exchangeable within a round under no change, which is what
alternating the order (ABBA) is for. Verdicts, in order:

* ``regression``: adjusted p(slower) <= alpha, lower bound > 1, and estimate > 1 + min_effect.
* ``improvement``: adjusted p(faster) <= alpha, upper bound < 1, and estimate < 1/(1 + min_effect).
* ``unchanged``: 1/(1 + threshold) < lower bound and upper bound < 1 + threshold: no change as
  large as the threshold happened (a precisely measured 1 % shift lands here).
* ``ambiguous``: anything else; ``needs_more_rounds`` says whether another look is allowed.

Reported adjusted p-values include the look spending (``min(1, holm * alpha / alpha_k)``), so they
compare with ``rule.alpha`` directly.

Looks: decide at look 1; while ``needs_more_rounds(decisions, look, rule)`` (some metric is
ambiguous and ``look < max_looks``), run more rounds and re-decide every metric on all rounds so
far at ``look + 1``. The last look's verdicts stand; what is still ambiguous there is reported as
such (the run could not tell at the promised threshold; ``Decision.mde`` says what it could).
``pairs_needed`` sizes the rounds in advance from a noise estimate.

Shares
------
Section times move together with machine speed (6-39 % across runs) while their shares of the
frame barely move (1-13 %), so ``paired_shares`` turns per-round section and frame times into
metrics where the frame is judged by time and each section by its share of the frame.

Minimum detectable effect
-------------------------
``Decision.mde`` is the slowdown this run would have flagged with probability ``rule.power``, at
the strictest Holm step ``a = alpha_k / m``. The rule flags a metric when the lower bound (the
k-th smallest Walsh average, k set by ``a``) is above 0 and the estimate above ``floor =
log(1 + min_effect)``; a true log shift ``delta`` moves both by exactly ``delta``, and at noise
``s = sd(d)`` both are ``s`` times their value for unit noise. So::

    log(1 + mde) = power-quantile over null runs of  max(-s * L_k,  floor - s * HL)

with ``L_k`` and ``HL`` the bound and estimate of n unit-normal log ratios, from a seeded
simulation cached per (n, k): exact-test discreteness included, which the textbook formula
misses badly at n = 12 (at 3 % per-sample noise and 20 metrics it says 5.7 % where about 8 %
is true). ``inf`` when
``a`` is below the smallest p-value n pairs can produce (``2**-n``). Above ``EXACT_MAX_N`` pairs,
and for the unpaired and bootstrap methods, the normal-theory version::

    log(1 + mde) = max(w, floor) + z_power * se

with ``w`` the half-width of this run's interval at level ``a`` and ``se`` the estimate's standard
error (paired: ``sd(d) * sqrt(pi / (3 n))``, the Hodges–Lehmann variance under normal noise);
for large n, ``w`` tends to ``z_{1-a} * se`` and this is ``(z_{1-a} + z_power) * se``. The sample
standard deviation lets outliers inflate it, which errs on the side of promising less.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXACT_MAX_N",
    "EXACT_MAX_TOTAL",
    "Comparison",
    "Decision",
    "DecisionRule",
    "Verdict",
    "compare_bootstrap",
    "compare_paired",
    "compare_paired_many",
    "compare_unpaired",
    "decide",
    "decide_count",
    "decide_separated",
    "decide_paired",
    "holm",
    "log_ratios",
    "needs_more_rounds",
    "pairs_needed",
    "paired_shares",
    "section_shares",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Verdict = Literal["regression", "improvement", "unchanged", "ambiguous"]
Method = Literal["wilcoxon", "mann-whitney", "bootstrap", "count", "separation"]

EXACT_MAX_N = 50  # paired: exact null distribution up to this many pairs (scipy's cutoff too)
EXACT_MAX_TOTAL = 100  # unpaired: exact up to this many samples in both sets together
_MATERIALISE_MAX = 4_000_000  # elementary estimates held in memory; selected by bisection above
_RELATIVE_TOL = 1e-9  # p-values equal to a level up to rounding count as reaching it
_NORMAL = NormalDist()


# --- input checks -----------------------------------------------------------------------------


def _positive(metric: str, values: npt.ArrayLike, side: str) -> FloatArray:
    """One side's samples as a 1-D float array; they must be finite and positive."""
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
    """Paired log ratios ``d_i = log(head_i / base_i)``; ValueError naming the metric when the
    samples are empty, unequal in number, non-finite or not positive."""
    b = _positive(metric, base, "base")
    h = _positive(metric, head, "head")
    if b.size != h.size:
        raise ValueError(
            f"{metric}: {b.size} base samples but {h.size} head samples (pairs need one of each)"
        )
    return np.log(h) - np.log(b)


# --- ranks and null distributions --------------------------------------------------------------


def _doubled_midranks(x: FloatArray) -> IntArray:
    """Twice the mid-rank of each value (ties share the mean of their ranks): integers, exact."""
    s = np.sort(x)
    return np.searchsorted(s, x, "left") + np.searchsorted(s, x, "right") + 1


def _reduced(scores: IntArray) -> tuple[IntArray, int]:
    """Scores divided by their common factor (2 for doubled ranks without ties), and the factor."""
    g = int(np.gcd.reduce(scores)) if scores.size else 1
    return scores // max(g, 1), max(g, 1)


def _frozen(a: FloatArray) -> FloatArray:
    a.flags.writeable = False  # cached arrays are shared between callers
    return a


@lru_cache(maxsize=512)
def _signed_rank_pmf(scores: tuple[int, ...]) -> FloatArray:
    """pmf of ``sum(scores_i * B_i)`` with ``B_i`` independent fair coins: the signed-rank
    statistic's null distribution given the ranks (each nonzero difference is + or - alike)."""
    pmf = np.zeros(sum(scores) + 1)
    pmf[0] = 1.0
    top = 0
    for s in scores:
        shifted = pmf[: top + 1].copy()
        pmf[: top + 1] *= 0.5
        pmf[s : s + top + 1] += 0.5 * shifted
        top += s
    return _frozen(pmf)


@lru_cache(maxsize=128)
def _subset_sum_pmf(scores: tuple[int, ...], k: int) -> FloatArray:
    """pmf of the sum of ``k`` of ``scores`` drawn without replacement (the rank-sum null)."""
    total = sum(sorted(scores)[len(scores) - k :]) if k else 0
    ways = np.zeros((k + 1, total + 1))  # ways[j, s]: subsets of j scores so far summing to s
    ways[0, 0] = 1.0
    for s in scores:
        if s <= total:
            ways[1:, s:] += ways[:-1, : total + 1 - s].copy()
    pmf = ways[k]
    return _frozen(pmf / pmf.sum())


@dataclass(frozen=True)
class _CountNull:
    """Null distribution of ``C = #{elementary estimates > true shift}`` for continuous data:
    symmetric on ``0..size``; exact (``cdf``) or normal with a continuity correction (``sd``)."""

    size: int
    cdf: tuple[float, ...] | None  # a tuple: bisect and indexing on it beat numpy's per-call cost
    sd: float

    def at_most(self, c: int) -> float:
        """P(C <= c)."""
        if self.cdf is not None:
            return 0.0 if c < 0 else self.cdf[min(c, self.size)]
        return _NORMAL.cdf((c + 0.5 - self.size / 2) / self.sd)

    def rank(self, alpha: float) -> int:
        """The largest k with P(C <= k - 1) <= alpha (0 when none): the k-th smallest
        elementary estimate is a lower confidence bound at one-sided level alpha."""
        if self.cdf is not None:
            return bisect.bisect_right(self.cdf, alpha * (1 + _RELATIVE_TOL))
        z = _NORMAL.inv_cdf(min(max(alpha, 1e-300), 0.5))
        return int(min(max(math.floor(self.size / 2 + 0.5 + self.sd * z), 0), self.size))


@lru_cache(maxsize=256)
def _signed_rank_null(n: int) -> _CountNull:
    size = n * (n + 1) // 2
    if n <= EXACT_MAX_N:
        cdf = np.cumsum(_signed_rank_pmf(tuple(range(1, n + 1))))
        return _CountNull(size, tuple(cdf.tolist()), 0.0)
    return _CountNull(size, None, math.sqrt(n * (n + 1) * (2 * n + 1) / 24))


@lru_cache(maxsize=256)
def _rank_sum_null(m: int, n: int) -> _CountNull:
    size = m * n
    if m + n <= EXACT_MAX_TOTAL:
        k = min(m, n)  # U of the smaller set has the same (symmetric) distribution
        pmf = _subset_sum_pmf(tuple(range(1, m + n + 1)), k)[k * (k + 1) // 2 :]
        return _CountNull(size, tuple(np.cumsum(pmf).tolist()), 0.0)
    return _CountNull(size, None, math.sqrt(m * n * (m + n + 1) / 12))


# --- order statistics of the elementary estimates ----------------------------------------------


def _bisect_kth(count_le: Callable[[float], int], k: int, lo: float, hi: float) -> float:
    """The k-th smallest (1-based) of an implicit set, ``count_le(x) = #{values <= x}``, found by
    bisection on the value (``count_le(lo) < k <= count_le(hi)``); exact to a few ulps."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if count_le(mid) >= k:
            hi = mid
        else:
            lo = mid
    return hi


@lru_cache(maxsize=64)
def _triu(n: int) -> tuple[IntArray, IntArray]:
    i, j = np.triu_indices(n)
    return i, j


def _row_kth(sorted_values: FloatArray) -> Callable[[int], float]:
    """k -> the k-th smallest (1-based) of already sorted values."""
    return lambda k: float(sorted_values[k - 1])


def _walsh_kth(d: FloatArray) -> Callable[[int], float]:
    """k -> the k-th smallest Walsh average ``(d_i + d_j) / 2, i <= j`` (1-based)."""
    n = d.size
    if n * (n + 1) // 2 <= _MATERIALISE_MAX:
        i, j = _triu(n)
        return _row_kth(np.sort((d[i] + d[j]) / 2))
    s = np.sort(d)
    idx = np.arange(n)

    def count_le(x: float) -> int:
        # pairs i <= j with s_j <= 2x - s_i
        return int(np.maximum(np.searchsorted(s, 2 * x - s, "right") - idx, 0).sum())

    return lambda k: _bisect_kth(count_le, k, float(s[0]) - 1.0, float(s[-1]) + 1.0)


def _difference_kth(b: FloatArray, h: FloatArray) -> Callable[[int], float]:
    """k -> the k-th smallest of all ``h_j - b_i`` (1-based)."""
    if b.size * h.size <= _MATERIALISE_MAX:
        return _row_kth(np.sort((h[None, :] - b[:, None]).ravel()))
    bs, hs = np.sort(b), np.sort(h)

    def count_le(x: float) -> int:
        # h_j - b_i <= x  <=>  b_i >= h_j - x
        return int((bs.size - np.searchsorted(bs, hs - x, "left")).sum())

    lo, hi = float(hs[0] - bs[-1]) - 1.0, float(hs[-1] - bs[0]) + 1.0
    return lambda k: _bisect_kth(count_le, k, lo, hi)


def _median_of(kth: Callable[[int], float], size: int) -> float:
    return 0.5 * (kth((size + 1) // 2) + kth(size // 2 + 1))


# --- one metric: the comparison before multiplicity --------------------------------------------


@dataclass(frozen=True, eq=False)
class Comparison:
    """One metric's head-vs-base analysis on the log scale, before any multiplicity adjustment.

    ``log_ratio`` estimates ``log(head / base)``; ``p_slower`` / ``p_faster`` are the one-sided
    p-values for "head slower" / "head faster"; ``lower(a)`` / ``upper(a)`` the one-sided
    confidence bounds of the log ratio at level ``a``; ``std_error`` the estimate's standard
    error and ``noise`` the standard deviation of the log ratios (paired) or of the log samples
    (unpaired, pooled), for the detectable effect; ``min_p`` the smallest p-value the design
    can produce.
    """

    metric: str
    method: Method
    n: int
    log_ratio: float
    p_slower: float
    p_faster: float
    std_error: float
    noise: float
    min_p: float
    _lower: Callable[[float], float] = field(repr=False)
    _upper: Callable[[float], float] = field(repr=False)

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def lower(self, alpha: float) -> float:
        """Lower confidence bound of the log ratio at one-sided level ``alpha`` (-inf if none)."""
        return self._lower(_check_level(alpha))

    def upper(self, alpha: float) -> float:
        """Upper confidence bound of the log ratio at one-sided level ``alpha`` (+inf if none)."""
        return self._upper(_check_level(alpha))

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Two-sided interval for the ratio head/base at ``confidence``, no adjustment."""
        a = (1 - confidence) / 2
        return math.exp(self.lower(a)), math.exp(self.upper(a))

    def detectable(self, alpha: float, power: float, min_effect: float) -> float:
        """The slowdown (fraction) a one-sided test at ``alpha`` would flag with probability
        ``power`` at this run's noise, the estimate also clearing ``min_effect`` (module
        docstring); inf when the design cannot reach ``alpha``."""
        floor = math.log1p(min_effect)
        if not math.isfinite(self.std_error):
            return math.inf
        if self.method == "wilcoxon" and self.n <= EXACT_MAX_N:
            k = _signed_rank_null(self.n).rank(alpha)
            if k < 1:
                return math.inf
            if self.noise == 0:
                return min_effect  # no noise: any shift past the floor shows
            return math.expm1(self.noise * _unit_detectable(self.n, k, power, floor / self.noise))
        width = (self.upper(alpha) - self.lower(alpha)) / 2
        if alpha < self.min_p * (1 - _RELATIVE_TOL) or not math.isfinite(width):
            return math.inf
        return math.expm1(max(width, floor) + _NORMAL.inv_cdf(power) * self.std_error)


def _check_level(alpha: float) -> float:
    if not 0 < alpha < 0.5:
        raise ValueError(f"one-sided level must be in (0, 0.5), got {alpha!r}")
    return alpha


def _rank_bounds(
    null: _CountNull, kth: Callable[[int], float]
) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """Confidence bounds from the elementary estimates: the k-th smallest and k-th largest."""

    def lower(alpha: float) -> float:
        k = null.rank(alpha)
        return kth(k) if k >= 1 else -math.inf

    def upper(alpha: float) -> float:
        k = null.rank(alpha)
        return kth(null.size - k + 1) if k >= 1 else math.inf

    return lower, upper


def _normal_tails(stat: float, mean: float, var: float) -> tuple[float, float]:
    """P(T >= stat), P(T <= stat) under a normal null, continuity-corrected by half a rank."""
    if var <= 0:
        return 1.0, 1.0
    sd = math.sqrt(var)
    return (
        1 - _NORMAL.cdf((stat - mean - 0.5) / sd),
        _NORMAL.cdf((stat - mean + 0.5) / sd),
    )


def _signed_rank_pvalues(d: FloatArray, null: _CountNull) -> tuple[float, float]:
    """One-sided signed-rank p-values (head slower, head faster); Pratt's zeros, mid-ranks."""
    r2 = _doubled_midranks(np.abs(d))
    nonzero = d != 0
    if nonzero.all() and np.unique(r2).size == d.size:
        # Continuous data: the same null as the bounds use, so test and bounds agree exactly.
        t = int(r2[d > 0].sum()) // 2
        return null.at_most(null.size - t), null.at_most(t)
    scores, g = _reduced(r2[nonzero])
    pos = d[nonzero] > 0
    if d.size <= EXACT_MAX_N:
        cdf = np.cumsum(_signed_rank_pmf(tuple(sorted(scores.tolist()))))
        t, total = int(scores[pos].sum()), int(scores.sum())
        # symmetric null: P(T >= t) = P(T <= total - t), no cancellation in the tail
        return min(float(cdf[total - t]), 1.0), min(float(cdf[t]), 1.0)
    r = scores * (g / 2)
    return _normal_tails(float(r[pos].sum()), float(r.sum()) / 2, float((r**2).sum()) / 4)


def compare_paired(metric: str, base: npt.ArrayLike, head: npt.ArrayLike) -> Comparison:
    """Paired comparison: Wilcoxon signed-rank test, Hodges–Lehmann estimate and bounds."""
    d = log_ratios(metric, base, head)
    return _paired_comparisons([metric], d[None, :])[0]


def compare_paired_many(
    metrics: Sequence[str], base: npt.ArrayLike, head: npt.ArrayLike
) -> list[Comparison]:
    """``compare_paired`` for many metrics measured over the same rounds, vectorised: row i of
    the 2-D ``base`` and ``head`` holds metric i's per-round samples."""
    names = list(metrics)
    b, h = np.asarray(base, dtype=np.float64), np.asarray(head, dtype=np.float64)
    if b.ndim != 2 or b.shape != h.shape or b.shape[0] != len(names):
        raise ValueError(
            f"base and head must both be (metrics, rounds) = ({len(names)}, n) arrays, "
            f"got {b.shape} and {h.shape}"
        )
    valid = b.shape[1] > 0 and bool(np.all(np.isfinite(b) & np.isfinite(h) & (b > 0) & (h > 0)))
    if not valid:
        for name, bi, hi in zip(names, b, h, strict=True):
            log_ratios(name, bi, hi)  # raises, naming the first bad metric
    return _paired_comparisons(names, np.log(h) - np.log(b))


def _paired_comparisons(names: list[str], d: FloatArray) -> list[Comparison]:
    """The paired comparisons of the rows of ``d`` (checked log ratios, one row per metric)."""
    rows, n = d.shape
    null = _signed_rank_null(n)
    if rows * null.size > _MATERIALISE_MAX:
        kths = [_walsh_kth(row) for row in d]
    else:
        i, j = _triu(n)
        walsh = np.sort((d[:, i] + d[:, j]) / 2, axis=1)
        kths = [_row_kth(row) for row in walsh]
    absd = np.sort(np.abs(d), axis=1)
    # rows without zeros or tied |d| take the vectorised path; the rest the general one
    continuous = (absd[:, 0] > 0) & np.all(np.diff(absd, axis=1) > 0, axis=1)
    ranks = np.argsort(np.argsort(np.abs(d), axis=1), axis=1) + 1
    t_plus = np.where(d > 0, ranks, 0).sum(axis=1).tolist()
    noise = np.std(d, axis=1, ddof=1).tolist() if n > 1 else [math.inf] * rows
    out = []
    for r in range(rows):
        if continuous[r]:
            # the same null as the bounds use, so test and bounds agree exactly
            p_slower, p_faster = null.at_most(null.size - t_plus[r]), null.at_most(t_plus[r])
        else:
            p_slower, p_faster = _signed_rank_pvalues(d[r], null)
        lower, upper = _rank_bounds(null, kths[r])
        out.append(
            Comparison(
                metric=names[r],
                method="wilcoxon",
                n=n,
                log_ratio=_median_of(kths[r], null.size),
                p_slower=p_slower,
                p_faster=p_faster,
                std_error=noise[r] * math.sqrt(math.pi / (3 * n)),
                noise=noise[r],
                min_p=null.at_most(0),
                _lower=lower,
                _upper=upper,
            )
        )
    return out


def _rank_sum_pvalues(b: FloatArray, h: FloatArray, null: _CountNull) -> tuple[float, float]:
    """One-sided Mann–Whitney p-values (head slower, head faster) with mid-ranks for ties."""
    m, n = b.size, h.size
    r2 = _doubled_midranks(np.concatenate([b, h]))
    if np.unique(r2).size == m + n:
        u = int(r2[m:].sum()) // 2 - n * (n + 1) // 2  # #{(i, j): h_j > b_i}
        return null.at_most(null.size - u), null.at_most(u)
    scores, g = _reduced(r2)
    if m + n <= EXACT_MAX_TOTAL:
        # exact given the tie pattern; draw the smaller set, the other's sum is the rest
        k = min(m, n)
        pmf = _subset_sum_pmf(tuple(sorted(scores.tolist())), k)
        head_sum, total = int(scores[m:].sum()), int(scores.sum())
        # P(head sum >= s) = P(base sum <= total - s) when the base set is the one drawn
        small = head_sum if k == n else total - head_sum
        at_most, at_least = float(pmf[: small + 1].sum()), float(pmf[small:].sum())
        return (at_least, at_most) if k == n else (at_most, at_least)
    r = scores * (g / 2)
    u_mid = float(r[m:].sum()) - n * (n + 1) / 2
    var = m * n / ((m + n) * (m + n - 1)) * float(((r - r.mean()) ** 2).sum())
    return _normal_tails(u_mid, m * n / 2, var)


def compare_unpaired(metric: str, base: npt.ArrayLike, head: npt.ArrayLike) -> Comparison:
    """Unpaired comparison (two independent sample sets): two-sample Hodges–Lehmann shift of
    log times with the Mann–Whitney test and its confidence bounds. ``n`` is the smaller set."""
    b = np.log(_positive(metric, base, "base"))
    h = np.log(_positive(metric, head, "head"))
    m, n = b.size, h.size
    null = _rank_sum_null(m, n)
    kth = _difference_kth(b, h)
    p_slower, p_faster = _rank_sum_pvalues(b, h, null)
    lower, upper = _rank_bounds(null, kth)
    var_b, var_h = (float(np.var(x, ddof=1)) if x.size > 1 else math.inf for x in (b, h))
    return Comparison(
        metric=metric,
        method="mann-whitney",
        n=min(m, n),
        log_ratio=_median_of(kth, null.size),
        p_slower=p_slower,
        p_faster=p_faster,
        std_error=math.sqrt((var_b / m + var_h / n) * math.pi / 3),
        noise=math.sqrt((var_b + var_h) / 2),
        min_p=null.at_most(0),
        _lower=lower,
        _upper=upper,
    )


def _walsh_order_rows(x: FloatArray, ks: Sequence[int]) -> FloatArray:
    """For every row of ``x``, the ``ks``-th smallest (1-based) of its Walsh averages."""
    rows, n = x.shape
    i, j = _triu(n)
    picks = [k - 1 for k in ks]
    out = np.empty((rows, len(picks)))
    step = max(1, 2_000_000 // max(i.size, 1))  # bound the Walsh-average block in memory
    for start in range(0, rows, step):
        block = x[start : start + step]
        walsh = np.partition((block[:, i] + block[:, j]) / 2, picks, axis=1)
        out[start : start + step] = walsh[:, picks]
    return out


def _hodges_lehmann_rows(x: FloatArray) -> FloatArray:
    """The one-sample Hodges–Lehmann estimate (median Walsh average) of every row of ``x``."""
    size = x.shape[1] * (x.shape[1] + 1) // 2
    return _walsh_order_rows(x, [(size + 1) // 2, size // 2 + 1]).mean(axis=1)


_UNIT_DRAWS = 2000  # simulated runs behind each small-n detectable effect


@lru_cache(maxsize=256)
def _unit_walsh_null(n: int, k: int) -> tuple[FloatArray, FloatArray]:
    """Seeded simulation of n unit-normal log ratios with no shift: each run's k-th smallest
    Walsh average (the lower bound) and its Hodges–Lehmann estimate. Both scale with the noise
    and move by exactly the shift, which makes power at any noise and shift a lookup."""
    size = n * (n + 1) // 2
    x = np.random.default_rng([n, k]).standard_normal((_UNIT_DRAWS, n))
    stats = _walsh_order_rows(x, [k, (size + 1) // 2, size // 2 + 1])
    return _frozen(stats[:, 0].copy()), _frozen(stats[:, 1:].mean(axis=1))


def _shift_needed(n: int, k: int, noise: float, floor: float) -> FloatArray:
    """Per simulated run, the smallest log shift the rule flags: the lower bound must clear 0
    and the estimate ``floor``."""
    low, centre = _unit_walsh_null(n, k)
    return np.maximum(-noise * low, floor - noise * centre)


@lru_cache(maxsize=256)
def _detectable_curve(n: int, k: int, power: float) -> tuple[FloatArray, FloatArray, float]:
    """``Q(r)``, the power-quantile over the unit runs of ``max(-L_k, r - HL)``, on a grid of r
    from 0 to where the floor term wins in every run, and the offset of the line beyond it
    (``Q(r) = r + offset`` there). The detectable log shift at noise s is ``s * Q(floor / s)``."""
    low, centre = _unit_walsh_null(n, k)
    j = min(math.ceil(power * low.size), low.size) - 1  # the run at the power quantile
    grid = np.linspace(0.0, max(float(np.max(centre - low)), 0.0), 129)
    need = np.maximum(-low[None, :], grid[:, None] - centre[None, :])
    curve = np.partition(need, j, axis=1)[:, j]
    return _frozen(grid), _frozen(curve), float(np.partition(-centre, j)[j])


def _unit_detectable(n: int, k: int, power: float, ratio: float) -> float:
    """``Q(ratio)`` (see ``_detectable_curve``), interpolated; Q is 1-Lipschitz, so the grid
    step bounds the error."""
    grid, curve, offset = _detectable_curve(n, k, power)
    if ratio >= grid[-1]:
        return ratio + offset
    return float(np.interp(ratio, grid, curve))


def compare_bootstrap(
    metric: str,
    base: npt.ArrayLike,
    head: npt.ArrayLike,
    *,
    n_resamples: int = 4000,
    interval: Literal["bca", "percentile"] = "bca",
    seed: int | np.random.Generator = 0,
) -> Comparison:
    """Paired bootstrap of the Hodges–Lehmann estimate (resampling rounds), BCa or percentile.

    Not the default (module docstring): use it as a second opinion with many pairs. p-values
    invert the bounds: ``p_slower`` is the level at which the lower bound reaches 0, at least
    ``1 / (n_resamples + 1)``.
    """
    if n_resamples < 100:
        raise ValueError(f"{metric}: n_resamples must be at least 100, got {n_resamples}")
    if interval not in ("bca", "percentile"):
        raise ValueError(f"{metric}: interval must be 'bca' or 'percentile', got {interval!r}")
    d = log_ratios(metric, base, head)
    n = d.size
    if n < 3:
        raise ValueError(f"{metric}: the bootstrap needs at least 3 pairs, got {n}")
    rng = np.random.default_rng(seed)
    estimate = float(_hodges_lehmann_rows(d[None, :])[0])
    boot = np.sort(_hodges_lehmann_rows(d[rng.integers(0, n, size=(n_resamples, n))]))
    z0, accel = 0.0, 0.0
    if interval == "bca":
        below = np.count_nonzero(boot < estimate) + 0.5 * np.count_nonzero(boot == estimate)
        z0 = _NORMAL.inv_cdf(
            min(max(below / n_resamples, 0.5 / n_resamples), 1 - 0.5 / n_resamples)
        )
        if n > 2:
            jack = _hodges_lehmann_rows(np.array([np.delete(d, i) for i in range(n)]))
            dev = jack.mean() - jack
            denom = 6 * float((dev**2).sum()) ** 1.5
            accel = float((dev**3).sum()) / denom if denom > 0 else 0.0

    def level(z: float) -> float:
        """The bootstrap quantile level that BCa maps a normal quantile ``z`` to."""
        u = z0 + z
        return _NORMAL.cdf(z0 + u / max(1 - accel * u, 1e-12))

    def inverse(q: float) -> float:
        """The one-sided level ``a`` whose BCa lower bound sits at bootstrap quantile ``q``."""
        if q >= 1:
            return 1.0
        w = _NORMAL.inv_cdf(q) - z0
        return _NORMAL.cdf(w / max(1 + accel * w, 1e-12) - z0)

    smallest = 1 / (n_resamples + 1)
    q_slower = (1 + np.count_nonzero(boot <= 0)) / (n_resamples + 1)
    q_faster = (1 + np.count_nonzero(boot >= 0)) / (n_resamples + 1)
    p_slower = min(max(inverse(q_slower), smallest), 1.0)
    # "faster" mirrors "slower": the upper bound at level a sits at quantile 1 - level(z_a)
    p_faster = min(max(1 - inverse(1 - q_faster), smallest), 1.0) if q_faster < 1 else 1.0
    return Comparison(
        metric=metric,
        method="bootstrap",
        n=n,
        log_ratio=estimate,
        p_slower=p_slower,
        p_faster=p_faster,
        std_error=float(np.std(boot, ddof=1)),
        noise=float(np.std(d, ddof=1)) if n > 1 else math.inf,
        min_p=smallest,
        _lower=lambda a: float(np.quantile(boot, level(_NORMAL.inv_cdf(a)))),
        _upper=lambda a: float(np.quantile(boot, level(_NORMAL.inv_cdf(1 - a)))),
    )


# --- many metrics: Holm, looks, verdicts --------------------------------------------------------


def holm(pvalues: npt.ArrayLike) -> FloatArray:
    """Holm–Bonferroni step-down adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):  # also rejects NaN
        raise ValueError("p-values must lie in [0, 1] (no NaN)")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(steps, 1.0)
    return out


def _holm_levels(p: FloatArray, alpha: float) -> FloatArray:
    """The level Holm's procedure tests each hypothesis at: ``alpha / (m - j)`` at step ``j``,
    and for the hypotheses after the step where it stops, that step's level."""
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    stop = int(np.searchsorted(steps > alpha * (1 + _RELATIVE_TOL), True))  # first not rejected
    levels = np.empty(m)
    levels[order] = alpha / (m - np.minimum(np.arange(m), stop))
    return levels


@dataclass(frozen=True)
class DecisionRule:
    """What a run promises and how it spends its false-alarm budget (module docstring).

    ``threshold``: the regression size the run promises to catch (0.10 = +10 %).
    ``min_effect``: the smallest slowdown flagged; ``None`` means ``threshold / 2``.
    ``alpha``: the chance of any false regression flag per run, over all metrics and looks.
    ``max_looks``: how many times the caller may decide (with more rounds each time).
    ``power``: the power at which ``Decision.mde`` is stated.
    """

    threshold: float = 0.10
    min_effect: float | None = None
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
        _check_look(look, self)
        return self.alpha / self.max_looks


def _check_look(look: int, rule: DecisionRule) -> None:
    if not (isinstance(look, int) and 1 <= look <= rule.max_looks):
        raise ValueError(f"look must be an integer in 1..{rule.max_looks}, got {look!r}")


@dataclass(frozen=True)
class Decision:
    """One metric's verdict. Ratios are head/base; ``low``/``high`` the adjusted bounds;
    ``*_adj`` p-values are Holm-adjusted and include the look spending (compare with alpha);
    ``mde`` the slowdown (fraction) this run could have detected (inf: none). Exact counts
    have NaN p-values."""

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

    @property
    def change(self) -> float:
        """Relative change head vs base (+0.08 = head 8 % slower)."""
        return self.ratio - 1

    def summary(self) -> str:
        """One report line."""
        if self.method == "count":
            return f"{self.metric}: {self.change:+.1%} (exact count) -> {self.verdict}"
        detectable = "nothing" if math.isinf(self.mde) else f"{self.mde:.1%}"
        p_adj = min(self.p_slower_adj, self.p_faster_adj)
        return (
            f"{self.metric}: {self.change:+.1%} [{self.low - 1:+.1%}, {self.high - 1:+.1%}] "
            f"n={self.n} p_adj={p_adj:.3g} -> {self.verdict}; "
            f"could have detected {detectable}"
        )


def _verdict(
    log_est: float, low: float, high: float, slower: bool, faster: bool, rule: DecisionRule
) -> Verdict:
    floor = math.log1p(rule.effect_floor)
    band = math.log1p(rule.threshold)
    if slower and low > 0 and log_est > floor:
        return "regression"
    if faster and high < 0 and log_est < -floor:
        return "improvement"
    if -band < low and high < band:
        return "unchanged"
    return "ambiguous"


def decide(
    comparisons: Sequence[Comparison], rule: DecisionRule = DecisionRule(), look: int = 1
) -> list[Decision]:
    """One Decision per comparison, Holm over all of them, at ``look`` (module docstring)."""
    names = [c.metric for c in comparisons]
    if len(set(names)) != len(names):
        dupes = sorted({x for x in names if names.count(x) > 1})
        raise ValueError(f"metric names must be unique, repeated: {dupes}")
    alpha_k = rule.alpha_at(look)
    if not comparisons:
        return []
    m = len(comparisons)
    p_slow = np.array([c.p_slower for c in comparisons])
    p_fast = np.array([c.p_faster for c in comparisons])
    adj_slow, adj_fast = holm(p_slow), holm(p_fast)
    lev_slow, lev_fast = _holm_levels(p_slow, alpha_k), _holm_levels(p_fast, alpha_k)
    spend = rule.alpha / alpha_k
    cut = alpha_k * (1 + _RELATIVE_TOL)
    decisions = []
    for c, lev_s, lev_f, adj_s, adj_f in zip(
        comparisons,
        lev_slow.tolist(),
        lev_fast.tolist(),
        adj_slow.tolist(),
        adj_fast.tolist(),
        strict=True,
    ):
        low, high = c.lower(lev_s), c.upper(lev_f)
        decisions.append(
            Decision(
                metric=c.metric,
                n=c.n,
                ratio=c.ratio,
                low=math.exp(low),
                high=math.exp(high),
                p_slower=c.p_slower,
                p_faster=c.p_faster,
                p_slower_adj=min(1.0, adj_s * spend),
                p_faster_adj=min(1.0, adj_f * spend),
                verdict=_verdict(c.log_ratio, low, high, adj_s <= cut, adj_f <= cut, rule),
                mde=c.detectable(alpha_k / m, rule.power, rule.effect_floor),
                method=c.method,
                look=look,
            )
        )
    return decisions


def decide_paired(
    samples: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    rule: DecisionRule = DecisionRule(),
    look: int = 1,
) -> list[Decision]:
    """``decide`` over ``{metric: (base_samples, head_samples)}``, paired Wilcoxon each."""
    by_n: dict[int, list[tuple[str, FloatArray]]] = {}
    for name, (base, head) in samples.items():
        d = log_ratios(name, base, head)
        by_n.setdefault(d.size, []).append((name, d))
    comparisons: dict[str, Comparison] = {}
    for group in by_n.values():  # metrics with as many pairs go through in one batch
        names = [name for name, _ in group]
        batch = _paired_comparisons(names, np.stack([d for _, d in group]))
        comparisons.update(zip(names, batch, strict=True))
    return decide([comparisons[name] for name in samples], rule, look)


def needs_more_rounds(decisions: Iterable[Decision], look: int, rule: DecisionRule) -> bool:
    """Whether the caller should run more rounds and decide again: some metric is ambiguous
    and ``look`` was not the last one the rule allows."""
    _check_look(look, rule)
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


def pairs_needed(
    noise: float,
    effect: float | None = None,
    *,
    n_metrics: int = 1,
    rule: DecisionRule = DecisionRule(),
    look: int = 1,
) -> int:
    """Pairs for the paired rule to flag a slowdown of ``effect`` (default the threshold) with
    probability ``rule.power`` when it is the strongest of ``n_metrics`` at ``look``.

    ``noise`` is the standard deviation of ``d = log(head / base)`` (``sigma * sqrt(2)`` for
    independent per-sample noise ``sigma``). Starts from the normal-theory answer (module
    docstring, solved for n) and, up to ``EXACT_MAX_N``, steps up until the seeded simulation
    of normal noise behind ``Decision.mde`` reaches the power.
    """
    effect = rule.threshold if effect is None else effect
    if not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise must be positive, got {noise!r}")
    if not (math.isfinite(effect) and effect > rule.effect_floor):
        raise ValueError(f"effect {effect!r} must exceed min_effect {rule.effect_floor}")
    if n_metrics < 1:
        raise ValueError(f"n_metrics must be >= 1, got {n_metrics!r}")
    a = rule.alpha_at(look) / n_metrics
    z_power = _NORMAL.inv_cdf(rule.power)
    delta, floor = math.log1p(effect), math.log1p(rule.effect_floor)
    # se**2 = noise**2 * pi / (3 n); the estimate must clear both the test and the floor
    z = max((_NORMAL.inv_cdf(1 - a) + z_power) / delta, z_power / (delta - floor))
    n = max(math.ceil((z * noise) ** 2 * math.pi / 3), math.ceil(math.log2(1 / a)))
    # the exact test's discreteness costs pairs the formula misses: check by simulation
    while n < EXACT_MAX_N:
        k = _signed_rank_null(n).rank(a)
        if k >= 1 and np.mean(_shift_needed(n, k, noise, floor) < delta) >= rule.power:
            break
        n += 1
    return n


# --- shares of the frame --------------------------------------------------------------------


def section_shares(
    sections: Mapping[str, npt.ArrayLike], frame: npt.ArrayLike
) -> dict[str, FloatArray]:
    """Per-round share of the frame each section took: ``sections[name][i] / frame[i]``.

    Shares cancel drift that slows every section alike (most of the CI noise), so a section is
    judged by its share while whole-frame metrics are judged by time.
    """
    f = _positive("frame", frame, "frame")
    out = {}
    for name, values in sections.items():
        s = np.asarray(values, dtype=np.float64)
        if s.shape != f.shape:
            raise ValueError(f"{name}: {s.size} section times but {f.size} frame times")
        if not np.all(np.isfinite(s) & (s >= 0)):
            raise ValueError(f"{name}: section times must be finite and >= 0")
        out[name] = s / f
    return out


def paired_shares(
    base_sections: Mapping[str, npt.ArrayLike],
    base_frame: npt.ArrayLike,
    head_sections: Mapping[str, npt.ArrayLike],
    head_frame: npt.ArrayLike,
    *,
    sections: Iterable[str] | None = None,
    frame_metric: str = "frame",
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """The metrics to judge from per-round section and frame times: ``frame_metric`` by time,
    each section by its share of the frame (as ``"<section> share"``).

    ``sections`` defaults to those measured on both sides; a section only one side has cannot
    be paired (the caller should report it); naming one that a side lacks is a ValueError.
    """
    names = sorted(set(base_sections) & set(head_sections)) if sections is None else list(sections)
    for name in names:
        for side, secs in (("base", base_sections), ("head", head_sections)):
            if name not in secs:
                raise ValueError(f"{name}: no {side} times for this section")
    base = section_shares({k: base_sections[k] for k in names}, base_frame)
    head = section_shares({k: head_sections[k] for k in names}, head_frame)
    b_frame = _positive(frame_metric, base_frame, "base")
    h_frame = _positive(frame_metric, head_frame, "head")
    if b_frame.size != h_frame.size:
        raise ValueError(
            f"{frame_metric}: {b_frame.size} base rounds but {h_frame.size} head rounds"
        )
    out = {frame_metric: (b_frame, h_frame)}
    out.update({f"{k} share": (base[k], head[k]) for k in names})
    return out


# --- micro-benchmarks run in separate processes: separation by a margin ---------------------

MICRO_MARGIN = 0.5  # head's fastest run this much slower than base's slowest run: a regression


def decide_separated(
    metric: str,
    base_runs: Sequence[float],
    head_runs: Sequence[float],
    rule: DecisionRule = DecisionRule(),
    margin: float = MICRO_MARGIN,
) -> Decision:
    """A benchmark measured in a few processes per side (one figure per process): a REGRESSION
    when every head run is slower than every base run by more than ``margin``, an IMPROVEMENT
    the other way round, UNCHANGED when the best runs differ by less than ``rule.threshold``,
    else AMBIGUOUS.

    Between processes a micro-benchmark of a few microseconds moves by up to 50 % on identical
    code here (memory layout, caches, the machine), far more than its rounds within a process
    spread, so a within-process test calls that a change and a shared noise model does not fit
    every benchmark. Complete separation by a 50 % margin flagged no benchmark in any of 90
    two-against-two splits of six runs of identical code, and caught a doubled benchmark in
    91 % of simulated splits; a per-agent loop put back into a stage multiplies its benchmark
    many times.
    """
    b = _positive(metric, base_runs, "base")
    h = _positive(metric, head_runs, "head")
    log_gap_up = float(np.log(h.min() / b.max()))
    log_gap_down = float(np.log(b.min() / h.max()))
    ratio = float(h.min() / b.min())
    cut = math.log1p(margin)
    verdict: Verdict
    if log_gap_up > cut:
        verdict = "regression"
    elif log_gap_down > cut:
        verdict = "improvement"
    elif abs(math.log(ratio)) < math.log1p(rule.threshold):
        verdict = "unchanged"
    else:
        verdict = "ambiguous"
    nan = math.nan
    return Decision(
        metric=metric,
        n=min(b.size, h.size),
        ratio=ratio,
        low=float(h.min() / b.max()),
        high=float(h.max() / b.min()),
        p_slower=nan,
        p_faster=nan,
        p_slower_adj=nan,
        p_faster_adj=nan,
        verdict=verdict,
        mde=float(b.max() / b.min() * (1.0 + margin) - 1.0),
        method="separation",
    )
