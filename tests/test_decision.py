"""perf.decision: the paired comparison, Holm, the rule with its margin, counts.

Cross-checks against scipy and brute force, hypothesis properties named after the invariant
they state, and seeded simulations of the false-alarm rate (process offsets within the margin
included) and the power the rule promises.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import assume, given, settings
from hypothesis import strategies as hs

import perf.decision as dec
from perf.decision import (
    DecisionRule,
    compare_paired,
    decide,
    decide_count,
    holm,
    log_ratios,
    needs_more_rounds,
)

RULE = DecisionRule()
FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None)
positive = hs.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


@hs.composite
def paired_samples(draw: hs.DrawFn, min_n: int = 1, max_n: int = 30) -> tuple[list, list]:
    n = draw(hs.integers(min_n, max_n))
    return draw(hs.lists(positive, min_size=n, max_size=n)), draw(
        hs.lists(positive, min_size=n, max_size=n)
    )


def lognormal(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, size=shape))


def comparisons(base: np.ndarray, head: np.ndarray, rule: DecisionRule = RULE) -> list:
    return [
        compare_paired(f"m{i}", b, h, rule) for i, (b, h) in enumerate(zip(base, head, strict=True))
    ]


# --- one metric -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 9, 12, 20, 33, 50])
def test_the_signed_rank_null_is_the_distribution_over_all_sign_patterns(n: int) -> None:
    cdf = dec._null_cdf(n)
    if n <= 12:  # brute force: every pattern of signs of the ranks 1..n
        sums = [sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s)
                for signs in itertools.product((0, 1), repeat=n)]  # fmt: skip
        want = np.cumsum(np.bincount(sums, minlength=len(cdf))) / 2**n
        np.testing.assert_allclose(cdf, want, rtol=1e-12)
    assert cdf[-1] == pytest.approx(1.0)
    assert cdf[0] == pytest.approx(2.0**-n)


@FAST
@given(paired_samples(min_n=2, max_n=40), hs.floats(1e-4, 0.45))
def test_the_lower_bound_clears_zero_exactly_when_scipys_one_sided_test_rejects(
    samples: tuple, alpha: float
) -> None:
    d = log_ratios("m", *samples)
    assume(np.all(d != 0) and np.unique(np.abs(d)).size == d.size)  # continuous: exact null
    c = compare_paired("m", *samples)
    p = float(st.wilcoxon(d, alternative="greater").pvalue)
    assume(abs(p - alpha) > 1e-9 * alpha)
    assert (c.lower(alpha) > 0) == (p <= alpha)


@FAST
@given(paired_samples(), hs.floats(1e-4, 0.45))
def test_the_interval_holds_the_estimate_and_widens_at_stricter_levels(
    samples: tuple, alpha: float
) -> None:
    c = compare_paired("m", *samples)
    assert c.lower(alpha) <= c.log_ratio <= c.upper(alpha)
    assert c.lower(alpha / 10) <= c.lower(alpha) and c.upper(alpha / 10) >= c.upper(alpha)


@FAST
@given(paired_samples(min_n=2), hs.floats(0.5, 2.0))
def test_scaling_head_by_a_factor_shifts_the_estimate_by_that_factor(
    samples: tuple, factor: float
) -> None:
    base, head = samples
    a, b = compare_paired("m", base, head), compare_paired("m", base, [h * factor for h in head])
    assert b.log_ratio == pytest.approx(a.log_ratio + math.log(factor), abs=1e-9)


@FAST
@given(paired_samples(min_n=2, max_n=20), hs.lists(hs.floats(0.5, 2.0), min_size=20))
def test_drift_common_to_both_sides_of_a_round_changes_nothing(samples: tuple, drift) -> None:
    base, head = samples
    k = drift[: len(base)]
    a = compare_paired("m", base, head)
    scaled = [[x * f for x, f in zip(side, k, strict=True)] for side in (base, head)]
    b = compare_paired("m", *scaled)
    assert b.log_ratio == pytest.approx(a.log_ratio, abs=1e-9)
    assert b.p_slower == pytest.approx(a.p_slower, rel=1e-9)


def test_the_margin_is_a_minimum_effect_test() -> None:
    rng = np.random.default_rng(0)
    base = lognormal(rng, 0.02, (40,))
    head = base * 1.04 * lognormal(rng, 0.005, (40,))  # a precisely measured +4 %
    plain = compare_paired("m", base, head, DecisionRule(margin=0.0))
    margin = compare_paired("m", base, head, DecisionRule(margin=0.05))
    assert plain.p_slower < 1e-6 and margin.p_slower > 0.5  # +4 % is within a 5 % margin
    (d,) = decide([margin])
    assert d.verdict != "regression" and d.margin == 0.05


# --- many metrics -----------------------------------------------------------------------------


@FAST
@given(hs.lists(hs.floats(0, 1), max_size=30))
def test_holm_adjusted_pvalues_are_monotone_and_at_least_raw(p: list[float]) -> None:
    adj = holm(p)
    order = np.argsort(p, kind="stable")
    assert np.all(adj >= np.asarray(p)) and np.all(np.diff(adj[order]) >= -1e-15)
    assert np.all(adj <= 1)


@FAST
@given(hs.lists(hs.floats(0, 1), min_size=1, max_size=12), hs.floats(0.001, 0.2))
def test_holm_rejects_exactly_what_the_step_down_procedure_rejects(p, alpha: float) -> None:
    m, rejected = len(p), set()
    for step, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (m - step):
            break
        rejected.add(int(i))
    assert {i for i, a in enumerate(holm(p)) if a <= alpha} == rejected


@FAST
@given(hs.lists(positive, min_size=1, max_size=30), hs.integers(1, 20))
def test_identical_base_and_head_are_never_a_change(times: list[float], m: int) -> None:
    verdicts = decide([compare_paired(f"m{i}", times, times) for i in range(m)])
    assert all(d.verdict != "regression" and d.verdict != "improvement" for d in verdicts)


@FAST
@given(paired_samples(min_n=4, max_n=20))
def test_swapping_base_and_head_mirrors_the_decision(samples: tuple) -> None:
    base, head = samples
    (a,) = decide([compare_paired("m", base, head)])
    (b,) = decide([compare_paired("m", head, base)])
    mirror = {"regression": "improvement", "improvement": "regression"}
    assert b.verdict == mirror.get(a.verdict, a.verdict)
    assert b.ratio == pytest.approx(1 / a.ratio)


@FAST
@given(hs.lists(paired_samples(min_n=3, max_n=12), min_size=2, max_size=6), hs.randoms())
def test_decisions_do_not_depend_on_the_order_of_metrics(metrics: list[tuple], rnd) -> None:
    named = [compare_paired(f"m{i}", b, h) for i, (b, h) in enumerate(metrics)]
    shuffled = named[:]
    rnd.shuffle(shuffled)
    by_name = {d.metric: d for d in decide(shuffled)}
    for d in decide(named):
        assert by_name[d.metric] == d


def test_false_alarms_with_steady_offsets_within_the_margin_stay_under_alpha() -> None:
    """20 metrics, 5 % noise per round, each pair of processes offset by up to +-3 % (the
    margin 5 %): a regression or an improvement flagged in at most alpha of runs."""
    rng = np.random.default_rng(1)
    rule = DecisionRule(margin=0.05)
    alarms = 0
    for _ in range(200):
        offsets = rng.uniform(-0.03, 0.03, (20, 1))
        base = lognormal(rng, 0.05, (20, 40))
        head = lognormal(rng, 0.05, (20, 40)) * np.exp(offsets)
        alarms += any(d.verdict in ("regression", "improvement")
                      for d in decide(comparisons(base, head, rule)))  # fmt: skip
    assert alarms / 200 <= rule.alpha


def test_without_the_margin_steady_offsets_are_false_alarms() -> None:
    """Why the margin: the same offsets, judged against 0, are flagged in most runs."""
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(50):
        offsets = rng.uniform(-0.03, 0.03, (20, 1))
        base, head = lognormal(rng, 0.05, (20, 40)), lognormal(rng, 0.05, (20, 40))
        head *= np.exp(offsets)
        verdicts = decide(comparisons(base, head, DecisionRule(min_effect=0.0)))
        alarms += any(d.verdict in ("regression", "improvement") for d in verdicts)
    assert alarms / 50 > 0.5


def test_a_change_well_past_the_margin_is_caught_and_nothing_else_is() -> None:
    rng = np.random.default_rng(2)
    rule, hits, others = DecisionRule(threshold=0.25, margin=0.10), 0, 0
    for _ in range(100):
        base, head = lognormal(rng, 0.05, (20, 20)), lognormal(rng, 0.05, (20, 20))
        head[0] *= 2.0  # a benchmark made 2x slower
        decisions = decide(comparisons(base, head, rule))
        hits += decisions[0].verdict == "regression"
        others += sum(d.verdict != "unchanged" and d.verdict != "ambiguous" for d in decisions[1:])
    assert hits == 100 and others == 0


def test_a_small_precise_change_is_unchanged_not_flagged() -> None:
    rng = np.random.default_rng(3)
    base = lognormal(rng, 0.001, (30,))
    (d,) = decide([compare_paired("m", base, base * 1.01)])
    assert d.p_slower_adj <= RULE.alpha and d.low > 1 and d.verdict == "unchanged"


def test_too_few_pairs_are_ambiguous_until_the_last_look() -> None:
    rng = np.random.default_rng(4)
    base, head = lognormal(rng, 0.03, (6,)), lognormal(rng, 0.03, (6,)) * 1.2
    samples = {f"m{i}": (base, head) for i in range(5)}
    for look in (1, 2, 3):  # 6 pairs cannot reach alpha / (3 looks * 5 metrics)
        decisions = decide([compare_paired(n, b, h) for n, (b, h) in samples.items()], look)
        assert all(d.verdict == "ambiguous" and math.isinf(d.mde) for d in decisions)
        assert needs_more_rounds(decisions, look, RULE) == (look < RULE.max_looks)


def test_more_pairs_lower_the_detectable_change_to_near_the_margin() -> None:
    rng = np.random.default_rng(5)
    rule = DecisionRule(margin=0.05)
    mde = []
    for n in (12, 40, 200):
        base, head = lognormal(rng, 0.1, (10, n)), lognormal(rng, 0.1, (10, n))
        mde.append(np.median([d.mde for d in decide(comparisons(base, head, rule))]))
    assert mde[0] > mde[1] > mde[2] > rule.margin


def test_one_run_spends_one_budget() -> None:
    a = compare_paired("a", [1, 2, 3], [1, 2, 3], DecisionRule(alpha=0.05))
    b = compare_paired("b", [1, 2, 3], [1, 2, 3], DecisionRule(alpha=0.01))
    with pytest.raises(ValueError, match="one false-alarm budget"):
        decide([a, b])
    with pytest.raises(ValueError, match="unique"):
        decide([a, a])


# --- counts and input -------------------------------------------------------------------------


def test_counts_have_no_statistics_any_increase_is_a_regression() -> None:
    assert decide_count("fwd", 2, 3).verdict == "regression"
    assert decide_count("fwd", 3, 2).verdict == "improvement"
    assert decide_count("fwd", 2, 2).verdict == "unchanged"
    assert decide_count("fwd", 0, 1).ratio == math.inf
    with pytest.raises(ValueError, match="fwd: head count"):
        decide_count("fwd", 1, -1)


@pytest.mark.parametrize(
    ("base", "head", "match"),
    [
        ([], [], "no base samples"),
        ([1.0, 2.0], [1.0], "2 base samples but 1 head"),
        ([1.0, float("nan")], [1.0, 1.0], "NaN"),
        ([1.0, 0.0], [1.0, 1.0], "positive"),
        ([[1.0]], [[1.0]], "1-D"),
    ],
)
def test_bad_samples_are_a_value_error_naming_the_metric(base, head, match: str) -> None:
    with pytest.raises(ValueError, match=f"frame p50.*{match}|{match}"):
        compare_paired("frame p50", base, head)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0}, "threshold"),
        ({"min_effect": 0.5}, "min_effect"),
        ({"margin": 0.2}, "margin"),
        ({"alpha": 0.6}, "alpha"),
        ({"max_looks": 0}, "max_looks"),
        ({"power": 0.2}, "power"),
    ],
)
def test_rule_arguments_are_checked(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DecisionRule(**kwargs)
    with pytest.raises(ValueError, match="look"):
        RULE.alpha_at(4)
