"""ProbeConfig: the one option perf runs switch the instrumentation on with."""

from __future__ import annotations

import pytest

from visuals.probe import ProbeConfig


def test_parse_reads_every_setting():
    cfg = ProbeConfig.parse(
        "warmup=60, prefill=256,churn=25,series=250,work=1,inject=policy:0.5,late=1,frames=1"
    )
    assert cfg == ProbeConfig(
        warmup=60, prefill=256, churn=25, series=250, work=True, inject=("policy", 0.5),
        late=True, frames=True,
    )  # fmt: skip
    assert ProbeConfig.parse("") == ProbeConfig()


@pytest.mark.parametrize(
    "text, words",
    [
        ("warmpu=3", "unknown probe setting"),
        ("warmup", "unknown probe setting"),
        ("warmup=x", "must be an integer"),
        ("churn=-1", "must be >= 0"),
        ("inject=policy", "STAGE:MS"),
        ("inject=policy:fast", "STAGE:MS"),
        ("inject=:1", "STAGE:MS"),
        ("inject=policy:-1", "STAGE:MS"),
    ],
)
def test_bad_settings_are_refused_naming_the_problem(text, words):
    with pytest.raises(ValueError, match=words):
        ProbeConfig.parse(text)
