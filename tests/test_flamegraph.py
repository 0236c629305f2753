"""calf-perf flame: the trainer's hold protocol (``--probe hold=1``)."""

from __future__ import annotations

import argparse
import io
import os

from visuals.probe import Probe, ProbeConfig, hold


# ----------------------------------------------------------------------------- hold protocol
def test_probe_hold_parses():
    assert ProbeConfig.parse("warmup=5,hold=1").hold is True
    assert ProbeConfig.parse("warmup=5").hold is False


def test_hold_prints_its_line_and_waits_for_go():
    out = io.StringIO()
    commands = io.StringIO("noise\ngo\nafter\n")
    hold("@warm 42", commands, out)
    assert out.getvalue() == "@warm 42\n"
    assert commands.readline() == "after\n"  # it read up to go and no further
    hold("@measured", io.StringIO(""), out)  # the end of the input lets it go too


class _App:
    def __init__(self, frames: int) -> None:
        self.frame_index = 0
        self.opts = argparse.Namespace(frames=frames)
        self.resets = 0

    def reset_profiler(self) -> None:
        self.resets += 1


def test_the_trainer_holds_after_the_warm_up_and_after_the_last_frame(monkeypatch):
    calls = []
    monkeypatch.setattr("visuals.probe.hold", lambda line: calls.append(line))
    monkeypatch.setattr("visuals.probe.allow_any_tracer", lambda: calls.append("ptracer"))
    probe = Probe(ProbeConfig(warmup=3, hold=True))
    app = _App(frames=8)
    for i in range(1, 9):
        app.frame_index = i
        probe.after_frame(app)
        if i == 3:
            assert calls[-2:] == ["ptracer", f"@warm {os.getpid()}"]
    assert calls[-1] == "@measured" and len(calls) == 3
    calls.clear()
    quiet = Probe(ProbeConfig(warmup=3))
    for i in range(1, 9):
        app.frame_index = i
        quiet.after_frame(app)
    assert calls == []
