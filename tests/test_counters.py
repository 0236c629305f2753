"""ForwardCounter: counts by tag and by module, nested tags, reset, close."""

from __future__ import annotations

import torch
from torch import nn

from calf import ForwardCounter
from calf.counters import DEFAULT_TAG


def modules() -> tuple[nn.Module, nn.Module]:
    return nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.ReLU())


def test_counts_each_forward_call_by_module() -> None:
    a, b = modules()
    counter = ForwardCounter({"a": a, "b": b})
    x = torch.zeros(3, 2)
    a(x)
    a(x)
    b(x)  # the Sequential's inner modules are not watched: one call
    assert counter.count() == 3
    assert counter.count(module="a") == 2 and counter.count(module="b") == 1
    assert counter.count(tag=DEFAULT_TAG) == 3 and DEFAULT_TAG == "inference"
    assert counter.count(module="nope") == 0


def test_tags_group_calls_and_nest() -> None:
    a, b = modules()
    counter = ForwardCounter({"a": a, "b": b})
    x = torch.zeros(1, 2)
    a(x)
    with counter.tag("training"):
        a(x)
        b(x)
        with counter.tag("panel"):
            b(x)
        b(x)
    a(x)
    assert counter.count(tag="inference") == 2
    assert counter.count(tag="training") == 3
    assert counter.count(tag="panel") == 1
    assert counter.count(tag="training", module="b") == 2
    assert counter.count(tag="panel", module="a") == 0
    assert counter.count(module="b") == 3
    assert set(counter.tags()) == {"inference", "training", "panel"}


def test_tag_is_restored_after_an_exception() -> None:
    a, _ = modules()
    counter = ForwardCounter({"a": a})
    try:
        with counter.tag("training"):
            raise RuntimeError
    except RuntimeError:
        pass
    a(torch.zeros(1, 2))
    assert counter.count(tag="inference") == 1


def test_reset_and_watch_later() -> None:
    a, b = modules()
    counter = ForwardCounter()
    counter.watch("a", a)
    a(torch.zeros(1, 2))
    counter.reset()
    assert counter.count() == 0 and tuple(counter.tags()) == ()
    counter.watch("b", b)
    b(torch.zeros(1, 2))
    assert counter.count(module="b") == 1


def test_close_removes_the_hooks() -> None:
    a, _ = modules()
    counter = ForwardCounter({"a": a})
    counter.close()
    a(torch.zeros(1, 2))
    assert counter.count() == 0


def test_counts_under_no_grad_too() -> None:
    a, _ = modules()
    counter = ForwardCounter({"a": a})
    with torch.no_grad():
        a(torch.zeros(1, 2))
    assert counter.count() == 1
