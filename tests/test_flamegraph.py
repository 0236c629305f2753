"""calf-perf flame: collapsed stacks, per-frame profiles, the SVG renderer (plain and
differential), the trainer's hold protocol, the command, and one real run under py-spy."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf import flame
from perf.cli import build_parser
from perf.flamegraph import (
    NEUTRAL,
    Node,
    Profile,
    Recording,
    build_tree,
    diff_colour,
    drop_through,
    fit_label,
    function_changes,
    layout,
    main_thread,
    only_in_base_notes,
    own_noise,
    parse_collapsed,
    render_svg,
    stack_noise,
    thread_of,
)
from visuals.probe import Probe, ProbeConfig, hold

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"

# What py-spy 0.4.3 writes with `record --format raw --idle --threads --nolineno` (abridged).
PYSPY_RAW = """\
thread (7211): MainThread;main (visuals/app.py);VisualTrainerApp.run (visuals/app.py);Ursina.step (ursina/main.py);ShowBase.__igLoop (direct/showbase/ShowBase.py) 315
thread (7211): MainThread;main (visuals/app.py);VisualTrainerApp.run (visuals/app.py);Ursina.step (ursina/main.py);VisualTrainerApp.frame (visuals/app.py);VisualAgents.step (visuals/agents.py) 40
thread (7211): MainThread;main (visuals/app.py);VisualTrainerApp.run (visuals/app.py);Ursina.step (ursina/main.py);VisualTrainerApp.frame (visuals/app.py);Probe.after_frame (visuals/probe.py);hold (visuals/probe.py) 55
thread (7240): tqdm_monitor;Thread._bootstrap (threading.py);TMonitor.run (tqdm/_monitor.py);Event.wait (threading.py) 862
"""  # noqa: E501


def prof(stacks: dict[str, int], frames: int = 10, ms_per_sample: float = 5.0) -> Profile:
    samples = {tuple(k.split(";")): v for k, v in stacks.items()}
    return Profile.of([Recording(samples, frames, sum(samples.values()) * ms_per_sample)])


def subtract(head: Profile, base: Profile) -> dict[tuple[str, ...], float]:
    """head - base per stack, read off the diff tree the graph draws (each stack's own time)."""
    tree = build_tree(head, base)
    out: dict[tuple[str, ...], float] = {}

    def walk(node: Node, path: tuple[str, ...]) -> None:
        if path and not node.children:
            out[path] = node.total - node.base_total
        for name, child in node.children.items():
            walk(child, (*path, name))

    walk(tree.root, ())
    return out


def fills(svg: str) -> dict[str, tuple[int, int, int]]:
    """Each frame's fill by its name (the first line of its tooltip)."""
    out = {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        name = g.find(f"{SVG}title").text.splitlines()[0]
        fill = g.find(f"{SVG}rect").get("fill")
        out[name] = tuple(int(v) for v in re.findall(r"\d+", fill))
    return out


# ----------------------------------------------------------------------------- parsing
def test_parse_collapsed_reads_stacks_and_sums_repeats():
    text = "a;b;c 12\n\na;b 3\n<module> (t.py);busy (t.py) 4\na;b;c 1\n"
    assert parse_collapsed(text) == {
        ("a", "b", "c"): 13,
        ("a", "b"): 3,
        ("<module> (t.py)", "busy (t.py)"): 4,
    }


@pytest.mark.parametrize("line", ["a;b;c", "a;b x", "a;;b 3", " 3", "a;b -1"])
def test_parse_collapsed_refuses_a_malformed_line_naming_it(line):
    with pytest.raises(ValueError, match="line 2"):
        parse_collapsed("ok 1\n" + line + "\n")


def test_thread_and_process_frames_are_split_off():
    assert thread_of(("thread (7211): MainThread", "f (a.py)")) == (
        7211,
        "MainThread",
        ("f (a.py)",),
    )
    assert thread_of(("thread (0x1a2b)", "f (a.py)")) == (0x1A2B, None, ("f (a.py)",))
    assert thread_of(("process 9: python -m visuals", "thread (9): MainThread", "f")) == (
        9,
        "MainThread",
        ("f",),
    )
    assert thread_of(("f (a.py)", "g (a.py)")) == (None, None, ("f (a.py)", "g (a.py)"))


def test_only_the_main_thread_is_kept_and_the_wait_for_go_is_dropped():
    main, other = main_thread(parse_collapsed(PYSPY_RAW), pid=7211)
    assert other == 862
    assert all(not s[0].startswith("thread") for s in main)
    kept, waiting = drop_through(main, "hold", "visuals/probe.py")
    assert waiting == 55
    assert sum(kept.values()) == 355
    # no pid match: the thread named MainThread
    by_name, _ = main_thread(parse_collapsed(PYSPY_RAW), pid=1)
    assert by_name == main
    # stacks that name no thread (py-spy without --threads) are all kept
    plain = {("a", "b"): 2, ("a",): 1}
    assert main_thread(plain, pid=5) == (plain, 0)


# ----------------------------------------------------------------------------- profiles
def test_profiles_are_in_ms_per_measured_frame_from_the_sampled_wall_time():
    # 100 samples over 1 s and 10 frames: 100 ms a frame, split as the samples are.
    r = Recording({("a", "b"): 75, ("a",): 25}, frames=10, window_ms=1000.0)
    p = Profile.of([r])
    assert p.total_ms == pytest.approx(100.0)
    assert p.ms[("a", "b")] == pytest.approx(75.0)
    # Two recordings: each sample weighs its own recording's interval; frames add up.
    fast = Recording({("a",): 50}, frames=10, window_ms=250.0)  # py-spy kept up: 5 ms a sample
    slow = Recording({("a",): 40}, frames=10, window_ms=400.0)  # lagged: 10 ms a sample
    both = Profile.of([fast, slow])
    assert both.frames == 20 and both.recordings == 2
    assert both.total_ms == pytest.approx((250 + 400) / 20)
    assert both.total_samples == 90


def test_a_uniformly_slower_head_differs_by_its_extra_time_per_frame_not_by_its_length():
    base = prof({"f;a": 60, "f;b": 40}, frames=100)
    # head: same stacks, 600 frames instead of 100 (6x the samples) and b twice as slow.
    head = prof({"f;a": 360, "f;b": 480}, frames=600)
    d = subtract(head, base)
    assert d[("f", "a")] == pytest.approx(0.0)
    assert d[("f", "b")] == pytest.approx(base.ms[("f", "b")])


def test_the_noise_of_a_change_is_its_standard_error_from_each_sides_recordings():
    def rec(a: int, b: int) -> Recording:  # 5 ms a sample, 10 frames: 0.5 ms/frame a sample
        return Recording({("m", "a"): a, ("m", "b"): b}, 10, 5.0 * (a + b))

    # a: base 5, 7 (variance 2), head 10, 10 (variance 0): sqrt(2/2 + 0/2) = 1
    noise = own_noise([rec(10, 10), rec(14, 10)], [rec(20, 10), rec(20, 10)])
    assert noise["a"] == pytest.approx(1.0) and noise["b"] == pytest.approx(0.0)
    assert noise[""] == pytest.approx(1.0)  # the whole frame
    assert own_noise([rec(1, 1)], [rec(2, 2), rec(2, 3)]) == {}  # one recording tells nothing
    assert stack_noise([rec(10, 10), rec(14, 10)], [rec(20, 10)] * 2)[("m", "a")] == 1.0
    head, base = Profile.of([rec(20, 10)]), Profile.of([rec(10, 10)])
    (a, b) = function_changes(head, base, noise)
    assert (a.function, a.delta_ms, a.noise_ms) == ("a", pytest.approx(5.0), pytest.approx(1.0))


def test_function_changes_rank_own_time_increases_first():
    base = prof({"main;frame;step": 10, "main;frame;train": 50, "main;render": 40})
    head = prof({"main;frame;step": 30, "main;frame;train": 40, "main;render": 40})
    changes = function_changes(head, base)
    # 5 ms a sample over 10 frames: a sample is 0.5 ms/frame
    assert changes[0].function == "step" and changes[0].delta_ms == pytest.approx(10.0)
    assert changes[-1].function == "train" and changes[-1].delta_ms == pytest.approx(-5.0)


def test_the_tree_merges_stacks_and_keeps_what_only_base_had():
    base = prof({"m;f;old": 10, "m;f": 10, "m;g": 20})
    head = prof({"m;f;new": 30, "m;f": 10})
    tree = build_tree(head, base)  # a sample is 0.5 ms/frame
    m = tree.root.children["m"]
    assert m.total == pytest.approx(20.0) and m.base_total == pytest.approx(20.0)
    f = m.children["f"]
    assert f.own == pytest.approx(5.0) and f.base_own == pytest.approx(5.0)
    assert f.total == pytest.approx(20.0) and f.base_total == pytest.approx(10.0)
    assert f.children["new"].base_total == 0.0
    assert tree.only_in_base == {
        ("m", "f", "old"): pytest.approx(5.0),
        ("m", "g"): pytest.approx(10.0),
    }
    notes = only_in_base_notes(tree)
    assert "2 call paths" in notes[0] and "g" in notes[1] and "old" in notes[2]


def test_layout_places_callees_inside_their_caller():
    tree = build_tree(prof({"m;a": 30, "m;b": 10, "m": 10, "n": 50}))
    boxes = {b.node.name: b for b in layout(tree, 1000.0)}
    assert boxes["all"].width == pytest.approx(1000.0)
    assert boxes["m"].width == pytest.approx(500.0) and boxes["n"].x == pytest.approx(500.0)
    assert (boxes["a"].x, boxes["a"].width) == (pytest.approx(0.0), pytest.approx(300.0))
    assert (boxes["b"].x, boxes["b"].width) == (pytest.approx(300.0), pytest.approx(100.0))
    assert boxes["a"].depth == 2


def test_labels_are_cut_to_fit_their_rectangle():
    assert fit_label("VisualAgents.step (visuals/agents.py)", 1000, 11) == (
        "VisualAgents.step (visuals/agents.py)"
    )
    cut = fit_label("VisualAgents.step (visuals/agents.py)", 80, 11)
    assert cut.endswith("..") and len(cut) < 15 and cut.startswith("Visual")
    assert fit_label("anything", 15, 11) == ""


# ----------------------------------------------------------------------------- SVG
def test_a_plain_svg_is_well_formed_with_one_rect_and_tooltip_per_frame():
    p = prof({"main;frame;step": 30, "main;frame;train": 50, "main;<render>": 20}, frames=10)
    svg = render_svg(build_tree(p), "title & <more>", ["header 1"], ["a note"], frames=10)
    root = ET.fromstring(svg)
    groups = list(root.iter(f"{SVG}g"))
    names = [g.find(f"{SVG}title").text.splitlines()[0] for g in groups]
    assert sorted(names) == sorted(["all", "main", "frame", "step", "train", "<render>"])
    assert all(len(g.findall(f"{SVG}rect")) == 1 for g in groups)
    # the graph's rects plus the background
    assert len(list(root.iter(f"{SVG}rect"))) == len(groups) + 1
    step = next(g for g in groups if g.find(f"{SVG}title").text.startswith("step"))
    tip = step.find(f"{SVG}title").text
    # 30 samples of 100 at 5 ms a sample over 10 frames: 15 ms/frame, 30 %
    assert "30 samples" in tip and "30.00 %" in tip and "15.0 ms/frame" in tip
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "title & <more>" in texts and "header 1" in texts and "a note" in texts


def test_a_diff_is_red_where_head_spends_more_blue_where_less_grey_where_same():
    base = prof({"main;frame;step": 10, "main;frame;train": 50, "main;render": 40})
    head = prof({"main;frame;step": 40, "main;frame;train": 20, "main;render": 40})
    svg = render_svg(build_tree(head, base), "diff", diff=True, frames=10)
    ET.fromstring(svg)
    colour = fills(svg)
    r, g, b = colour["step"]
    assert r > g and r > b  # red: head spends more in step
    r, g, b = colour["train"]
    assert b > r and b > g  # blue: less in train
    assert colour["render"] == NEUTRAL and colour["frame"] == NEUTRAL
    # the larger change is the more intense
    assert diff_colour(3.0, 3.0)[1] < diff_colour(1.0, 3.0)[1]


def test_a_change_within_its_noise_stays_grey():
    def rec(step: int, render: int) -> Recording:
        return Recording({("m", "step"): step, ("m", "render"): render}, 10, 5.0 * (step + render))

    bases, heads = [rec(10, 100), rec(10, 140)], [rec(30, 90), rec(30, 110)]  # render -10
    noise = stack_noise(bases, heads)  # render: base 50, 70; head 45, 55: sqrt(200/2 + 50/2)
    assert noise[("m", "render")] == pytest.approx(125**0.5) and noise[("m", "step")] == 0.0
    tree = build_tree(Profile.of(heads), Profile.of(bases), noise)
    render = tree.root.children["m"].children["render"]
    assert render.delta_own == pytest.approx(-10.0) and render.shown_delta == 0.0  # 2 x 11.2
    render.noise = 4.0
    assert render.shown_delta == pytest.approx(-2.0)
    render.noise = noise[("m", "render")]
    colour = fills(render_svg(tree, "noisy", diff=True))
    assert colour["render"] == NEUTRAL
    r, g, b = colour["step"]
    assert r > g and r > b and g < 120  # the real change gets the full colour
    assert f"noise {125**0.5:.3f}" in render_svg(tree, "noisy", diff=True)


def test_widths_in_a_diff_come_from_head():
    base = prof({"m;a": 90, "m;b": 10})
    head = prof({"m;a": 10, "m;b": 90})
    boxes = {b.node.name: b for b in layout(build_tree(head, base), 100.0)}
    assert boxes["b"].width == pytest.approx(90.0)


stacks = st.dictionaries(
    st.lists(st.sampled_from(["a", "b", "c", "d <x>", "e&f"]), min_size=1, max_size=5).map(
        ";".join
    ),
    st.integers(1, 500),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(stacks, st.integers(1, 1000))
def test_a_profile_against_itself_is_all_neutral(counts, frames):
    p = prof(counts, frames=frames)
    svg = render_svg(build_tree(p, p), "same", diff=True, frames=frames)
    assert set(fills(svg).values()) == {NEUTRAL}
    assert all(v == 0 for v in subtract(p, p).values())


@settings(max_examples=60, deadline=None)
@given(stacks, st.floats(100, 3000))
def test_widths_add_up_to_the_total(counts, width):
    tree = build_tree(prof(counts))
    boxes = layout(tree, width, min_width=0.0)
    by_node = {id(b.node): b for b in boxes}
    assert len(boxes) == sum(1 for _ in tree.root.walk())  # one box per frame
    assert by_node[id(tree.root)].width == pytest.approx(width)
    scale = width / tree.root.total
    for b in boxes:
        children = b.node.children.values()
        inside = sum(by_node[id(c)].width for c in children)
        assert inside + b.node.own * scale == pytest.approx(b.width)
        for c in children:  # callees sit on their caller
            cb = by_node[id(c)]
            assert b.x - 1e-6 <= cb.x and cb.x + cb.width <= b.x + b.width + 1e-6
            assert cb.depth == b.depth + 1


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
    """What ``Probe.after_frame`` reads of the app (its other settings off)."""

    def __init__(self, frames: int) -> None:
        self.frame_index = 0
        self.opts = argparse.Namespace(frames=frames)
        self.session = argparse.Namespace(busy=False)
        self.profiler = argparse.Namespace(last_frame_ms=0.0)
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


# ----------------------------------------------------------------------------- the command
def _flame(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(["flame", *args])


def test_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        _flame("--help")
    text = capsys.readouterr().out
    for option in ("--base", "--out", "--svg", "--agents", "--mode", "--frames", "--warmup"):
        assert option in text
    for option in ("--size", "--seed", "--rate", "--repeat", "--timeout", "--markdown"):
        assert option in text
    assert text.count("default") >= 13


@pytest.mark.parametrize(
    "args",
    [
        ["--warmup", "0"],
        ["--frames", "0"],
        ["--repeat", "0"],
        ["--rate", "0"],
        ["--base", "HEAD", "--svg", "x.svg"],
    ],
)
def test_usage_errors_exit_2(args, capsys):
    assert flame.main(_flame(*args)) == 2
    assert "error" in capsys.readouterr().err


def test_alternating_order_puts_drift_on_both_sides():
    assert flame.alternate(1) == ["base", "head"]
    assert flame.alternate(2) == ["base", "head", "head", "base"]
    assert flame.alternate(3).count("base") == 3


def _measured(stacks: dict[str, int], window_ms: float) -> flame.Measured:
    rec = Recording({tuple(k.split(";")): v for k, v in stacks.items()}, 100, window_ms)
    return flame.Measured(rec, pid=1, other_threads=0, waiting=0, seconds=1.0)


def test_base_head_and_diff_are_drawn_with_a_markdown_summary(tmp_path, monkeypatch):
    """The --base flow, with the recordings faked: order, files, header, markdown."""
    order = []

    def fake_record(spec, tree, pyspy):
        order.append(tree.label)
        slow = 300 + 10 * len(order) if tree.label == "head" else 100
        return _measured({"m;frame;VisualAgents.step": slow, "m;frame;train": 500}, 1000.0)

    monkeypatch.setattr(flame, "record", fake_record)
    monkeypatch.setattr(flame, "holds", lambda tree: True)  # whatever HEAD is
    monkeypatch.chdir(ROOT)
    md = tmp_path / "summary.md"
    md.write_text("earlier\n")
    a = _flame("--base", "HEAD", "--out", str(tmp_path / "out"), "--markdown", str(md))
    assert flame.run_diff(a, flame.FlameSpec(frames=100, warmup=5), "py-spy") == 0
    assert order == ["base", "head", "head", "base"]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["base.folded", "base.svg", "diff.svg", "head.folded", "head.svg"]
    diff = (tmp_path / "out" / "diff.svg").read_text()
    header = " ".join(t.text for t in ET.fromstring(diff).iter(f"{SVG}text"))
    assert "top added ms/frame" in header and "VisualAgents.step" in header
    assert "100 frame periods" in header and "base head head base" in header
    r, g, b = fills(diff)["VisualAgents.step"]
    assert r > g and r > b
    text = md.read_text()
    assert text.startswith("earlier\n") and "VisualAgents.step" in text
    assert "diff.svg" in text and "head.svg" in text and "base.svg" in text
    assert "standard error" in text and "noise ±" in header


def test_a_base_from_before_the_hold_probe_is_a_usage_error(tmp_path, monkeypatch, capsys):
    holds_before = flame.holds
    assert holds_before(flame.Tree("head", ROOT, "0" * 40))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(flame, "find_pyspy", lambda: "py-spy")
    monkeypatch.setattr(flame, "holds", lambda tree: tree.label == "head")
    assert flame.main(_flame("--base", "HEAD", "--out", str(tmp_path))) == 2
    assert "predates `--probe hold=1`" in capsys.readouterr().err
    old = tmp_path / "old"
    (old / "visuals").mkdir(parents=True)
    (old / "visuals" / "probe.py").write_text("    serve: bool = False\n")
    assert not holds_before(flame.Tree("base", old, "0" * 40))


def test_an_attach_failure_says_how_to_get_ptrace_rights(tmp_path, monkeypatch, capsys):
    err = flame._attach_error("Error: Operation not permitted (os error 1)\n", 123)
    assert "ptrace_scope" in str(err) and "CAP_SYS_PTRACE" in str(err) and "\n" not in str(err)

    def refused(spec, tree, pyspy):
        raise err

    monkeypatch.setattr(flame, "record", refused)
    monkeypatch.setattr(flame, "find_pyspy", lambda: "py-spy")
    md = tmp_path / "summary.md"
    assert flame.main(_flame("--svg", str(tmp_path / "f.svg"), "--markdown", str(md))) == 1
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and "could not attach" in err_text
    assert "no flamegraph" in md.read_text() and "ptrace_scope" in md.read_text()


# ----------------------------------------------------------------------------- the real thing
def test_a_real_flame_run_samples_frames_and_no_start_up(tmp_path):
    if flame.find_pyspy() is None:
        pytest.skip("py-spy is not installed")
    svg = tmp_path / "flame.svg"
    md = tmp_path / "summary.md"
    proc = subprocess.run(
        [
            sys.executable, "-m", "perf", "flame", "--agents", "5", "--frames", "100",
            "--warmup", "5", "--size", "640x360", "--svg", str(svg), "--markdown", str(md),
        ],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode == 1 and "could not attach" in proc.stderr:
        pytest.skip(f"py-spy cannot attach here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stacks = parse_collapsed(svg.with_suffix(".folded").read_text())
    frames = [f for s in stacks for f in s]
    assert "VisualTrainerApp.frame (visuals/app.py)" in frames  # the frame's work
    assert any(f.startswith("VisualAgents.step") for f in frames)
    for start_up in ("Probe.start", "VisualTrainerApp.__init__", "VisualTrainerApp.finish"):
        assert not any(f.startswith(start_up) for f in frames), start_up
    assert not any(f.startswith("hold (") for f in frames)  # the waits are dropped
    root = ET.fromstring(svg.read_text())
    header = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "frames 6-105 (100 frame periods" in header
    assert "`" in md.read_text() and str(svg) in md.read_text()
