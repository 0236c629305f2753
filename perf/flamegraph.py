"""Collapsed stacks, per-frame profiles and their SVG flamegraphs, plain and differential.

The input is py-spy's ``--format raw`` output: one line per distinct stack, frames root first,
joined by ``;``, then a space and a sample count (``a;b;c 12``). With ``--threads`` the first frame
names the thread (``thread (TID): NAME``; with ``--subprocesses`` a ``process PID:...`` frame comes
first); ``--nolineno`` leaves frames as ``function (file)``, so one function is one frame and the
same function matches across commits whose line numbers differ. With ``--idle`` a thread's
samples cover its wall time (waits included: a frame that waits for the rasteriser shows where
it waits), and every Python thread is sampled at every tick, idle or not, so only the main
thread's stacks are kept.

A ``Profile`` holds a recording's stacks in milliseconds per measured frame (samples times the
wall time one sample stands for, divided by the frames), so two profiles compare frame for
frame even when one side is slower overall or was sampled over a different number of frames.
``render_svg`` draws a plain graph (``diff=False``) or a differential one: widths from head,
colour from the change in each frame's own time (red: head spends more, blue: less), less the
frame's noise where several recordings of a side tell it (twice ``stack_noise``, the standard
error of the change), so a change within what recordings of the same code differ by stays
grey.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

Stack = tuple[str, ...]

_THREAD = re.compile(r"^thread \((0x[0-9a-fA-F]+|\d+)\)(?::\s?(.*))?$")
_PROCESS = re.compile(r"^process \d+:")


# ----------------------------------------------------------------------------- parsing
def parse_collapsed(text: str) -> dict[Stack, int]:
    """``a;b;c 12`` lines -> {("a", "b", "c"): 12}; a stack listed twice is summed. Blank lines
    are skipped; a line without a trailing non-negative count is a ValueError naming it."""
    stacks: dict[Stack, int] = defaultdict(int)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            raise ValueError(f"line {number}: not a collapsed stack ('a;b;c COUNT'): {raw!r}")
        stack = tuple(frames.split(";"))
        if any(not f for f in stack):
            raise ValueError(f"line {number}: empty frame in {frames!r}")
        stacks[stack] += int(count)
    return dict(stacks)


def thread_of(stack: Stack) -> tuple[int | None, str | None, Stack]:
    """(thread id, thread name, the stack without its process and thread frames). A stack that
    names no thread (py-spy without ``--threads``) gives (None, None, stack)."""
    rest = stack
    if rest and _PROCESS.match(rest[0]):
        rest = rest[1:]
    match = _THREAD.match(rest[0]) if rest else None
    if match is None:
        return None, None, rest
    tid_text, name = match.groups()
    return int(tid_text, 0), name, rest[1:]


def main_thread(stacks: Mapping[Stack, int], pid: int | None) -> tuple[dict[Stack, int], int]:
    """The main thread's stacks (thread frames dropped) and the samples of other threads.

    The main thread is the one whose id is the process id (Linux), else the one named
    ``MainThread``; stacks that name no thread are all kept."""
    ids = {thread_of(s)[:2] for s in stacks}
    keep_tid = pid if any(tid == pid for tid, _ in ids) else None
    kept: dict[Stack, int] = defaultdict(int)
    other = 0
    for stack, n in stacks.items():
        tid, name, rest = thread_of(stack)
        if tid is None or (tid == keep_tid if keep_tid is not None else name == "MainThread"):
            if rest:
                kept[rest] += n
        else:
            other += n
    return dict(kept), other


def function_of(frame: str) -> str:
    """``VisualAgents.step (visuals/agents.py:90)`` -> ``VisualAgents.step``."""
    name, sep, _ = frame.rpartition(" (")
    return name if sep else frame


def drop_through(stacks: Mapping[Stack, int], function: str, file_suffix: str) -> tuple[dict, int]:
    """Stacks that do not pass through ``function`` in a file ending ``file_suffix``, and the
    samples of those that do (the app waiting for ``go``: no frame's work)."""

    def matches(frame: str) -> bool:
        name, _, where = frame.rpartition(" (")
        path = where.rstrip(")").split(":")[0]
        return name == function and path.endswith(file_suffix)

    kept: dict[Stack, int] = {}
    dropped = 0
    for stack, n in stacks.items():
        if any(matches(f) for f in stack):
            dropped += n
        else:
            kept[stack] = n
    return kept, dropped


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Recording:
    """One recording of measured frames: the main thread's samples over a known wall time."""

    samples: dict[Stack, int]
    frames: int
    window_ms: float  # wall time from the first to the end of the last measured frame

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    @property
    def ms_per_sample(self) -> float:
        """The wall time one sample stands for (the effective sampling interval)."""
        return self.window_ms / self.total if self.total else 0.0


@dataclass(frozen=True)
class Profile:
    """Stacks in milliseconds per measured frame, summed over one or more recordings."""

    ms: dict[Stack, float]
    samples: dict[Stack, int]
    frames: int  # measured frames, all recordings together
    recordings: int = 1
    window_ms: float = 0.0

    @classmethod
    def of(cls, recordings: Sequence[Recording]) -> Profile:
        """Sum recordings: each stack's samples times its recording's ms per sample, over all
        the recordings' frames together."""
        if not recordings:
            raise ValueError("a profile needs at least one recording")
        frames = sum(r.frames for r in recordings)
        if frames <= 0:
            raise ValueError("a profile needs at least one measured frame")
        ms: dict[Stack, float] = defaultdict(float)
        samples: dict[Stack, int] = defaultdict(int)
        for r in recordings:
            scale = r.ms_per_sample / frames
            for stack, n in r.samples.items():
                ms[stack] += n * scale
                samples[stack] += n
        window = sum(r.window_ms for r in recordings)
        return cls(dict(ms), dict(samples), frames, len(recordings), window)

    @property
    def total_ms(self) -> float:
        """Milliseconds per frame, all stacks."""
        return sum(self.ms.values())

    @property
    def total_samples(self) -> int:
        return sum(self.samples.values())

    def self_ms(self) -> dict[str, float]:
        """Each frame's own time (its stacks' leaf), by frame name, ms per frame."""
        out: dict[str, float] = defaultdict(float)
        for stack, v in self.ms.items():
            out[stack[-1]] += v
        return dict(out)


@dataclass(frozen=True)
class Change:
    """One function's own time per frame in base and head."""

    function: str
    base_ms: float
    head_ms: float
    noise_ms: float = 0.0  # the standard error of the change (``own_noise``); 0: unknown

    @property
    def delta_ms(self) -> float:
        return self.head_ms - self.base_ms


def function_changes(
    head: Profile, base: Profile, noise: Mapping[str, float] | None = None
) -> list[Change]:
    """Every function's own time (self, ms per frame) in base and head, largest increase
    first; ``noise``: each function's (``own_noise``)."""
    h, b, noise = head.self_ms(), base.self_ms(), noise or {}
    changes = [Change(f, b.get(f, 0.0), h.get(f, 0.0), noise.get(f, 0.0)) for f in set(h) | set(b)]
    return sorted(changes, key=lambda c: (-c.delta_ms, c.function))


def _standard_error(base: list[float], head: list[float]) -> float:
    """The standard error of mean(head) - mean(base) from the spread within each side."""

    def var(v: list[float]) -> float:
        m = sum(v) / len(v)
        return sum((x - m) ** 2 for x in v) / (len(v) - 1)

    return math.sqrt(var(base) / len(base) + var(head) / len(head))


def _noise_of(
    base: Sequence[Recording],
    head: Sequence[Recording],
    values: Callable[[Profile], Mapping[Any, float]],
) -> dict[Any, float]:
    if len(base) < 2 or len(head) < 2:
        return {}  # one recording a side tells nothing of the noise
    b = [values(Profile.of([r])) for r in base]
    h = [values(Profile.of([r])) for r in head]
    keys = set().union(*b, *h)
    return {
        k: _standard_error([v.get(k, 0.0) for v in b], [v.get(k, 0.0) for v in h]) for k in keys
    }


def own_noise(base: Sequence[Recording], head: Sequence[Recording]) -> dict[str, float]:
    """The noise of each function's change in own time (ms per frame): the standard error of
    head - base from how each side's recordings differ among themselves; the key ``""`` holds
    the same for the whole frame. Empty with fewer than two recordings a side."""
    return _noise_of(base, head, lambda p: {**p.self_ms(), "": p.total_ms})


def stack_noise(base: Sequence[Recording], head: Sequence[Recording]) -> dict[Stack, float]:
    """``own_noise`` per stack: the noise of each frame's own time in a diff."""
    return _noise_of(base, head, lambda p: p.ms)


# ----------------------------------------------------------------------------- the tree
@dataclass
class Node:
    """One frame of the merged tree: its time (ms per frame) with its callees and alone."""

    name: str
    total: float = 0.0
    own: float = 0.0
    samples: int = 0
    base_total: float = 0.0
    base_own: float = 0.0
    noise: float = 0.0  # the standard error of the change in its own time (``stack_noise``)
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def delta_own(self) -> float:
        return self.own - self.base_own

    @property
    def shown_delta(self) -> float:
        """The change in own time beyond twice its standard error (0 within it): what a diff
        colours."""
        d = self.delta_own
        beyond = max(0.0, abs(d) - 2.0 * self.noise)
        return beyond if d > 0 else -beyond

    def child(self, name: str) -> Node:
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = Node(name)
        return node

    def walk(self) -> Iterable[Node]:
        yield self
        for c in self.children.values():
            yield from c.walk()


@dataclass
class Tree:
    """The merged tree of a profile (widths), with base's time on the same paths in a diff, and
    what base spent on paths head does not have (``only_in_base``, ms per frame by the path to
    the first frame head lacks)."""

    root: Node
    only_in_base: dict[Stack, float] = field(default_factory=dict)


def build_tree(
    profile: Profile,
    base: Profile | None = None,
    noise: Mapping[Stack, float] | None = None,
    root: str = "all",
) -> Tree:
    """The merged tree of ``profile``; with ``base``, base's time on the same paths; with
    ``noise`` (``stack_noise``), each frame's noise in its own time."""
    top = Node(root)
    for stack, ms in sorted(profile.ms.items()):
        n = profile.samples.get(stack, 0)
        node = top
        node.total += ms
        node.samples += n
        for frame in stack:
            node = node.child(frame)
            node.total += ms
            node.samples += n
        node.own += ms
    tree = Tree(top)
    if base is None:
        return tree
    missing: dict[Stack, float] = defaultdict(float)
    for stack, ms in sorted(base.ms.items()):
        node = top
        node.base_total += ms
        for depth, frame in enumerate(stack):
            found = node.children.get(frame)
            if found is None:
                missing[stack[: depth + 1]] += ms
                break
            node = found
            node.base_total += ms
        else:
            node.base_own += ms
    tree.only_in_base = dict(missing)
    for stack, se in (noise or {}).items():
        node = top
        for frame in stack:
            found = node.children.get(frame)
            if found is None:
                break
            node = found
        else:
            node.noise = se
    return tree


@dataclass(frozen=True)
class Box:
    """A frame's rectangle: x and width in pixels, depth 0 at the root."""

    node: Node
    x: float
    width: float
    depth: int


def layout(tree: Tree, width: float, min_width: float = 0.1) -> list[Box]:
    """Rectangles root first: a frame as wide as its time, its callees side by side above it
    from its left edge in name order; frames narrower than ``min_width`` pixels (and their
    callees) are left out."""
    root = tree.root
    scale = width / root.total if root.total > 0 else 0.0
    boxes: list[Box] = []

    def place(node: Node, x: float, depth: int) -> None:
        w = node.total * scale
        if w < min_width:
            return
        boxes.append(Box(node, x, w, depth))
        for name in sorted(node.children):
            child = node.children[name]
            place(child, x, depth + 1)
            x += child.total * scale

    if root.total > 0:
        place(root, 0.0, 0)
    return boxes


# ----------------------------------------------------------------------------- colours
def plain_colour(name: str) -> tuple[int, int, int]:
    """A warm colour that is the same for a function on every graph."""
    h = zlib.crc32(function_of(name).encode())
    a, b = (h & 0xFF) / 255, ((h >> 8) & 0xFF) / 255
    return 205 + int(50 * a), 90 + int(140 * b), 55 + int(40 * a * b)


NEUTRAL = (226, 226, 226)
_RED = (236, 70, 60)
_BLUE = (64, 120, 236)


def diff_colour(delta: float, scale: float) -> tuple[int, int, int]:
    """Grey for no change; towards red (head spends more) or blue (less) with |delta|/scale."""
    if delta == 0 or scale <= 0:
        return NEUTRAL
    t = min(1.0, abs(delta) / scale)
    target = _RED if delta > 0 else _BLUE
    r, g, b = (round(n + (c - n) * t) for n, c in zip(NEUTRAL, target, strict=True))
    return r, g, b


def diff_scale(tree: Tree, floor_share: float = 0.02) -> float:
    """The change in own time (beyond noise) that gets the full colour: the largest one, but
    at least ``floor_share`` of head's frame, so that small changes alone stay pale."""
    biggest = max((abs(n.shown_delta) for n in tree.root.walk()), default=0.0)
    return max(biggest, floor_share * tree.root.total)


# ----------------------------------------------------------------------------- SVG
FONT = "Verdana, DejaVu Sans, sans-serif"
CHAR_W = 0.59  # a character's width per pixel of font size (average, proportional font)


def fit_label(text: str, width: float, font_size: float) -> str:
    """``text`` cut to fit ``width`` pixels with ``..`` at the end; "" when not 3 characters
    fit."""
    room = int((width - 6) / (font_size * CHAR_W))
    if room < 3:
        return ""
    return text if len(text) <= room else text[: room - 2] + ".."


def _ms(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def tooltip(node: Node, root: Node, diff: bool, frames: int) -> str:
    share = 100.0 * node.total / root.total if root.total else 0.0
    if not diff:
        return (
            f"{node.name}\n{node.samples} samples, {share:.2f} % of the frame, "
            f"{_ms(node.total)} ms/frame ({_ms(node.own)} ms/frame in itself), {frames} frames"
        )
    d, d_own = node.total - node.base_total, node.delta_own
    return (
        f"{node.name}\nhead {_ms(node.total)} ms/frame ({share:.2f} %, {node.samples} samples), "
        f"base {_ms(node.base_total)} ms/frame: {d:+.3f} ms/frame\n"
        f"in itself: head {_ms(node.own)}, base {_ms(node.base_own)}: {d_own:+.3f} ms/frame"
        + (f" (noise {node.noise:.3f})" if node.noise else "")
    )


@dataclass(frozen=True)
class SvgOptions:
    width: int = 1200
    frame_height: int = 17
    font_size: float = 11.0
    pad: int = 10
    min_width: float = 0.1


def render_svg(
    tree: Tree,
    title: str,
    header: Sequence[str] = (),
    notes: Sequence[str] = (),
    diff: bool = False,
    frames: int = 1,
    options: SvgOptions = SvgOptions(),
) -> str:
    """The flamegraph as an SVG document: ``title`` and ``header`` lines above the graph (root
    at the bottom), ``notes`` below it; one ``<g>`` per frame holding its ``<title>`` tooltip, its
    ``<rect>`` and its label. ``diff``: colour by the change in own time beyond its noise
    (``Node.shown_delta``)."""
    o = options
    graph_w = o.width - 2 * o.pad
    boxes = layout(tree, graph_w, o.min_width)
    depth = max((b.depth for b in boxes), default=0)
    line_h = o.font_size + 6
    top = o.pad + 20 + line_h * len(header) + 8
    graph_h = (depth + 1) * o.frame_height
    height = int(top + graph_h + 10 + line_h * len(notes) + o.pad)
    scale = diff_scale(tree) if diff else 0.0
    colour: Callable[[Node], tuple[int, int, int]] = (
        (lambda n: diff_colour(n.shown_delta, scale)) if diff else (lambda n: plain_colour(n.name))
    )
    text_room = graph_w  # header and note lines are cut to the graph's width

    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{o.width}" '
        f'height="{height}" viewBox="0 0 {o.width} {height}" font-family={quoteattr(FONT)}>',
        "<style>g.f:hover rect { stroke: #000; stroke-width: 0.6; } "
        "text { pointer-events: none; }</style>",
        f'<rect x="0" y="0" width="{o.width}" height="{height}" fill="#fdfdf8"/>',
        f'<text x="{o.width / 2:.0f}" y="{o.pad + 14}" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(fit_label(title, text_room, 15))}</text>',
    ]
    for i, line in enumerate(header):
        y = o.pad + 20 + line_h * (i + 1) - 4
        out.append(
            f'<text class="header" x="{o.pad}" y="{y:.1f}" font-size="{o.font_size + 1}" '
            'xml:space="preserve">'
            f"{escape(fit_label(line, text_room, o.font_size + 1))}</text>"
        )
    for box in boxes:
        node = box.node
        x = o.pad + box.x
        y = top + (depth - box.depth) * o.frame_height
        r, g, b = colour(node)
        label = fit_label(node.name, box.width, o.font_size)
        out.append(
            '<g class="f">'
            f"<title>{escape(tooltip(node, tree.root, diff, frames))}</title>"
            f'<rect x="{x:.2f}" y="{y:.1f}" width="{box.width:.2f}" '
            f'height="{o.frame_height - 1}" fill="rgb({r},{g},{b})" rx="2" ry="2"/>'
            + (
                f'<text x="{x + 3:.2f}" y="{y + o.frame_height - 5:.1f}" '
                f'font-size="{o.font_size}">{escape(label)}</text>'
                if label
                else ""
            )
            + "</g>"
        )
    for i, line in enumerate(notes):
        y = top + graph_h + 10 + line_h * (i + 1) - 4
        out.append(
            f'<text class="note" x="{o.pad}" y="{y:.1f}" font-size="{o.font_size}" '
            'xml:space="preserve">'
            f"{escape(fit_label(line, text_room, o.font_size))}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- summaries
def top_own(profile: Profile, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` functions with the most own time, ms per frame."""
    return sorted(profile.self_ms().items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def only_in_base_notes(tree: Tree, k: int = 5) -> list[str]:
    """A note line per path base had and head has not (largest first), after a total line."""
    if not tree.only_in_base:
        return []
    items = sorted(tree.only_in_base.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(v for _, v in items)
    lines = [
        f"only in base ({len(items)} call paths head does not have, {_ms(total)} ms/frame, not "
        "drawn):"
    ]
    for path, v in items[:k]:
        lines.append(f"  -{_ms(v)} ms/frame  {path[-1]}  (under {' < '.join(path[-2::-1][:3])})")
    if len(items) > k:
        lines.append(f"  ... and {len(items) - k} more")
    return lines
