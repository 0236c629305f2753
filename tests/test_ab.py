"""calf-perf ab's pure parts: which changes stand, counts, the report, the trees' checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from perf.ab import AbResult, Calibration, _count_decisions, _Series, section_partner
from perf.ab_report import format_markdown, format_text, to_json, verdict_line
from perf.decision import Decision, DecisionRule, decide_count
from perf.trees import Tree, TreeError, resolve


def decision(metric: str, verdict: str, ratio: float = 1.2, mde: float = 0.05) -> Decision:
    return Decision(
        metric, 12, ratio, ratio - 0.05, ratio + 0.05, 1e-4, 1.0, 1e-3, 1.0, verdict, mde, "paired"
    )


def result(decisions: list[Decision], counts=(), caught: bool = True) -> AbResult:
    tree = Tree("base", Path("."), "0" * 40)
    cal = Calibration(
        20,
        "policy",
        0.1,
        1.0,
        decision("frame p50 N=20", "regression" if caught else "ambiguous", mde=math.inf),
    )
    return AbResult(tree, tree, "serve", 1, 12, decisions, list(counts), [cal], {}, [])


def test_section_partner_pairs_time_and_share():
    assert section_partner("trails time N=20") == "trails share N=20"
    assert section_partner("trails share N=5") == "trails time N=5"
    assert section_partner("frame p50 N=20") is None


def test_a_section_regressed_only_when_its_time_and_its_share_both_did():
    share_only = result(
        [decision("ui share N=20", "regression"), decision("ui time N=20", "unchanged")]
    )
    assert share_only.regressions == []
    both = result([decision("ui share N=20", "regression"), decision("ui time N=20", "regression")])
    assert {d.metric for d in both.regressions} == {"ui share N=20", "ui time N=20"}
    frame = result([decision("frame p50 N=20", "regression")])
    assert [d.metric for d in frame.regressions] == ["frame p50 N=20"]


def test_an_increased_count_is_a_regression_and_trajectory_jitter_is_not():
    series = _Series()
    counters = lambda fwd, up: {"counters": {"forwards.policy": fwd, "uploads.timeline": up}}  # noqa: E731
    series.blocks["base"] = [counters(2.0, 0.50)] * 3
    series.blocks["head"] = [counters(3.0, 0.505)] * 3
    verdicts = {d.metric: d.verdict for d in _count_decisions({20: series}, look=1)}
    assert verdicts == {"forwards.policy N=20": "regression", "uploads.timeline N=20": "unchanged"}


def test_verdict_line_says_regression_inconclusive_or_clear():
    rule = DecisionRule()
    assert verdict_line(result([decision("frame p50 N=20", "regression")]), rule).startswith(
        "regression"
    )
    assert verdict_line(result([], caught=False), rule).startswith("inconclusive: too noisy")
    assert verdict_line(result([]), rule).startswith("no regression")
    counted = result([], counts=[decide_count("forwards.policy N=20", 2.0, 3.0)])
    assert verdict_line(counted, rule) == "regression: forwards.policy N=20"


def test_the_report_renders_as_text_markdown_and_strict_json():
    r = result([decision("frame p50 N=20", "unchanged", ratio=1.01, mde=math.inf)])
    text = format_text(r, DecisionRule())
    assert "frame p50 N=20" in text and "calibration N=20" in text
    md = format_markdown(r, DecisionRule())
    assert md.startswith("## calf-perf ab") and "| metric |" in md
    json.dumps(to_json(r, DecisionRule()), allow_nan=False)


def test_trees_refuse_unknown_refs():
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(TreeError, match="unknown ref 'no-such-ref'"):
        resolve(repo, "no-such-ref")
    # a different pyproject.toml is judged, not refused: tests/test_tree_environments.py
