"""WorkMeter: forwards counted under the stage that made them, per-frame deltas of the watched
layers and texts, injected work."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from calf.counters import ForwardCounter
from visuals.profiler import PerformanceProfiler
from visuals.work_meter import WorkMeter


@dataclass
class Layer:
    mesh_updates: int = 0
    bytes_written: int = 0


@dataclass
class Text:
    layouts: int = 0
    wasted: int = 0


def make() -> tuple[WorkMeter, nn.Module, Layer, Text]:
    net = nn.Linear(2, 1)
    counter = ForwardCounter({"net": net})
    meter = WorkMeter(PerformanceProfiler(), counter, draw_calls=lambda: 7, draw_call_every=2)
    layer, text = Layer(), Text()
    meter.watch(layers={"trails": layer}, texts={"panel": text})
    meter.start()
    return meter, net, layer, text


def test_forwards_count_under_the_stage_that_made_them():
    meter, net, layer, text = make()
    x = torch.zeros(1, 2)
    net(x)  # before the first frame: not any frame's work
    meter.start()
    with meter.stage("policy"):
        net(x)
        net(x)
        with meter.stage("heights"):
            net(x)
        net(x)
    with meter.stage("training"):
        net(x)
    net(x)  # outside every stage
    layer.mesh_updates += 2
    layer.bytes_written += 320
    text.layouts += 1
    last = meter.end_frame()
    assert last["forwards.policy"] == 3
    assert last["forwards.heights"] == 1
    assert last["forwards.training"] == 1
    assert last["forwards.inference"] == 1
    assert last["vis_forward_passes"] == 5 and last["train_forward_passes"] == 1
    assert last["uploads.trails"] == 2 and last["mesh_updates"] == 2
    assert last["vertex_bytes.trails"] == 320
    assert last["layouts.panel"] == 1 and last["wasted_layouts.panel"] == 0
    assert last["draw_calls"] == 7
    assert meter.counter.swap_tag("x") == "inference"  # every stage put its outer tag back


def test_counts_are_per_frame_deltas():
    meter, net, layer, _ = make()
    for frame in range(3):
        with meter.stage("policy"):
            for _ in range(frame):
                net(torch.zeros(1, 2))
        layer.mesh_updates += 1
        last = meter.end_frame()
        assert last["forwards.policy"] == frame
        assert last["uploads.trails"] == 1


def test_injected_work_lengthens_only_its_stage():
    meter, *_ = make()
    meter.inject("physics", ms=5.0)
    t0 = time.perf_counter()
    with meter.stage("physics"):
        pass
    t1 = time.perf_counter()
    with meter.stage("policy"):
        pass
    t2 = time.perf_counter()
    assert t1 - t0 >= 5e-3 and t2 - t1 < 5e-3
    meter.inject(None)
    t0 = time.perf_counter()
    with meter.stage("physics"):
        pass
    assert time.perf_counter() - t0 < 5e-3


def test_a_stage_that_raises_still_restores_the_tag_and_records_its_time():
    meter, net, *_ = make()
    meter.profiler.begin_frame()
    with pytest.raises(RuntimeError), meter.stage("ui"):
        raise RuntimeError("boom")
    assert meter.counter.swap_tag("inference") == "inference"
    assert meter.active == ""
    meter.profiler.end_frame()
    assert meter.profiler.section_stats()["ui"]["count"] == 1
