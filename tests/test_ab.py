"""calf-perf ab's pure parts: which changes stand, counts, the report, the trees' checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from perf.ab import AbConfig, AbResult, Calibration, Metric, _count_decisions, _Series
from perf.ab_report import format_markdown, format_text, to_json, verdict_line
from perf.decision import Decision, decide_count
from perf.trees import Tree, TreeError, resolve

CFG = AbConfig()
FRAME = Metric("frame", "frame p50", 20)
UI_TIME, UI_SHARE = Metric("section", "ui", 20, "time"), Metric("section", "ui", 20, "share")
BENCH = Metric("micro", "bench_calf.py::test_bench_batched[n=25]")


def decision(metric: Metric, verdict: str, ratio: float = 1.2, mde: float = 0.05) -> Decision:
    return Decision(
        str(metric), 12, ratio, ratio - 0.05, ratio + 0.05, 1e-4, 1.0, 1e-3, 1.0, verdict, mde,
        "wilcoxon", threshold=0.1,
    )  # fmt: skip


def result(decisions: list[Decision], counts=(), caught: bool = True) -> AbResult:
    tree = Tree("base", Path("."), "0" * 40)
    verdict = "regression" if caught else "ambiguous"
    cal = Calibration("policy", 0.1, 20, 1.0, [decision(UI_TIME, verdict, mde=math.inf)])
    metrics = {str(m): m for m in (FRAME, UI_TIME, UI_SHARE, BENCH)}
    return AbResult(tree, tree, "serve", 1, 12, decisions, list(counts), [cal], {}, [], metrics)


def test_metric_ids_name_themselves_and_pair_a_sections_time_with_its_share():
    assert str(UI_TIME) == "ui time N=20" and str(FRAME) == "frame p50 N=20"
    assert UI_TIME.partner == UI_SHARE and UI_SHARE.partner == UI_TIME
    assert FRAME.partner is None and BENCH.partner is None
    assert str(BENCH).startswith("bench bench_calf.py")


def test_a_section_regressed_only_when_its_time_and_its_share_both_did():
    share_only = result([decision(UI_SHARE, "regression"), decision(UI_TIME, "unchanged")])
    assert share_only.regressions == []
    both = result([decision(UI_SHARE, "regression"), decision(UI_TIME, "regression")])
    assert {d.metric for d in both.regressions} == {str(UI_SHARE), str(UI_TIME)}
    frame = result([decision(FRAME, "regression")])
    assert [d.metric for d in frame.regressions] == [str(FRAME)]


def test_an_increased_count_is_a_regression_and_trajectory_jitter_is_not():
    series = _Series(20)
    counters = lambda fwd, up: {"counters": {"forwards.policy": fwd, "uploads.timeline": up}}  # noqa: E731
    series.blocks["base"] = [counters(2.0, 0.50)] * 3
    series.blocks["head"] = [counters(3.0, 0.505)] * 3
    verdicts = {d.metric: d.verdict for d in _count_decisions({20: series}, look=1)}
    assert verdicts == {"forwards.policy N=20": "regression", "uploads.timeline N=20": "unchanged"}


def test_verdict_line_says_regression_inconclusive_or_clear():
    assert verdict_line(result([decision(FRAME, "regression")]), CFG).startswith("regression")
    assert verdict_line(result([], caught=False), CFG).startswith("inconclusive: too noisy")
    assert verdict_line(result([]), CFG).startswith("no regression")
    counted = result([], counts=[decide_count("forwards.policy N=20", 2.0, 3.0)])
    assert verdict_line(counted, CFG) == "regression: forwards.policy N=20"


def test_a_benchmark_too_noisy_for_its_threshold_says_so_instead_of_flagging():
    r = result([decision(BENCH, "ambiguous", ratio=1.3, mde=0.6)])
    assert r.regressions == [] and "undetectable at 10%" in format_text(r, CFG)


def test_the_report_renders_as_text_markdown_and_strict_json():
    r = result([decision(FRAME, "unchanged", ratio=1.01, mde=math.inf)])
    text = format_text(r, CFG)
    assert "frame p50 N=20" in text and "calibration: +10% of the frame in policy at N=20" in text
    md = format_markdown(r, CFG)
    assert md.startswith("## calf-perf ab") and "| metric |" in md
    data = to_json(r, CFG)
    json.dumps(data, allow_nan=False)
    assert data["decisions"][0]["family"] == "frame"


def test_trees_refuse_unknown_refs():
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(TreeError, match="unknown ref 'no-such-ref'"):
        resolve(repo, "no-such-ref")
    # a different pyproject.toml is judged, not refused: tests/test_tree_environments.py
