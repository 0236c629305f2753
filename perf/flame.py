"""``calf-perf flame``: flamegraphs of the measured frames only, and a differential one for PRs.

The trainer runs with ``--probe hold=1`` (visuals/probe.py): at the end of warm-up frame W it
prints ``@warm PID`` and waits; py-spy attaches to that pid (``record --format raw --idle
--threads --nolineno``), the trainer is told ``go``, runs frames W+1 .. W+F and prints
``@measured`` at the end of frame W+F's update, where py-spy is stopped with SIGINT (it writes
its file then) before the trainer is let go to exit. What is sampled is exactly F frame
periods, from the end of frame W's update to the end of frame W+F's: start-up, replay prefill,
warm-up and the exit work are not in it. The main thread's stacks are kept (``--idle`` samples
every thread at every tick: the main thread's samples cover its wall time, waits included), the
samples taken while the trainer waited for ``go`` are dropped, and the rest are converted to
milliseconds per measured frame using the wall time between ``go`` and ``@measured``.

``--base REF`` records base (a temporary git worktree of REF) and head (the working tree)
alternately on the same seeded frames and draws base.svg, head.svg and diff.svg.

Exit status: 0 ok; 1 py-spy failed or could not attach (the message says how to get ptrace
rights), or the trainer failed; 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from perf import provenance
from perf.flamegraph import (
    Profile,
    Recording,
    Stack,
    build_tree,
    drop_through,
    function_changes,
    main_thread,
    only_in_base_notes,
    own_noise,
    parse_collapsed,
    render_svg,
    stack_noise,
    top_own,
)
from perf.runner import MODES, PREFILL, RUN_ENV, RunError, tail
from perf.trees import Tree, TreeError, repo_root, resolve, trees

PTRACE_HINT = (
    "ptrace is not permitted: run as root, or allow tracing with "
    "`sudo sysctl kernel.yama.ptrace_scope=0` (the trainer already allows it under scope 1 "
    "where the kernel lets it), or give py-spy the capability with "
    "`sudo setcap cap_sys_ptrace+ep $(command -v py-spy)`; in a container add CAP_SYS_PTRACE"
)


class FlameError(RuntimeError):
    """py-spy could not attach, failed, or wrote nothing (exit status 1)."""


@dataclass(frozen=True)
class FlameSpec:
    """What every recording of one ``calf-perf flame`` shares."""

    agents: int = 20
    frames: int = 600
    warmup: int = 60
    size: tuple[int, int] = (640, 360)
    mode: str = "optimised"
    seed: int = 0
    rate: int = 200
    preset: str = "medium"
    timeout_s: float = 600.0
    late: bool = True  # an hour-long run's state and its run folder (perf.runner's default)

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.frames < 1 or self.agents < 0 or not 1 <= self.rate <= 10000:
            raise ValueError(
                "calf-perf flame needs --warmup >= 1 (the trainer waits at the end of frame "
                f"W), --frames >= 1, --agents >= 0 and 1 <= --rate <= 10000; got warmup="
                f"{self.warmup} frames={self.frames} agents={self.agents} rate={self.rate}"
            )
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def first(self) -> int:
        return self.warmup + 1

    @property
    def last(self) -> int:
        return self.warmup + self.frames

    def command(self, out: Path, python: str = sys.executable) -> list[str]:
        """The trainer's command line; ``out``: the recording's temporary directory (the run
        folder goes in ``out/run``); ``python``: the interpreter (a tree's own)."""
        w, h = self.size
        start = "late=1" if self.late else f"prefill={PREFILL}"
        return [
            python, "-m", "visuals",
            "--headless", "--no-progress",
            *(("--out", str(out / "run")) if self.late else ("--no-save",)),
            "--preset", self.preset,
            "--agents", str(self.agents),
            "--frames", str(self.last),
            "--size", f"{w}x{h}",
            "--seed", str(self.seed),
            "--td3.learning-starts", str(PREFILL),
            "--probe", f"warmup={self.warmup},{start},hold=1",
            "--reference", "all" if self.mode == "reference" else "none",
        ]  # fmt: skip

    def describe_run(self) -> str:
        w, h = self.size
        return f"N={self.agents}, {self.mode}, {self.preset}, {w}x{h}, seed {self.seed}"

    def describe_frames(self) -> str:
        """Which frames are sampled, exactly."""
        return (
            f"frames {self.first}-{self.last} ({self.frames} frame periods: from the end of "
            f"update {self.warmup} to the end of update {self.last})"
        )

    def describe(self) -> str:
        return f"{self.describe_run()}; {self.describe_frames()}"


def holds(tree: Tree) -> bool:
    """Whether this tree's trainer waits for ``go`` around its measured frames (``hold=1``)."""
    probe = tree.path / "visuals" / "probe.py"
    return probe.is_file() and "hold: bool" in probe.read_text()


def find_pyspy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else None


class _Lines:
    """A process's stdout, line by line, read by a thread so waits can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, prefix: str, deadline: float) -> str | None:
        """The first line starting with ``prefix``; None at the end of the output or the
        deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self._q.put(None)  # the end stays the end for the next wait
                return None
            self.seen = [*self.seen[-20:], line.rstrip()]
            if line.startswith(prefix):
                return line.strip()


@dataclass(frozen=True)
class Measured:
    """One recording and what it took."""

    recording: Recording
    pid: int
    other_threads: int  # samples of other Python threads (dropped)
    waiting: int  # main-thread samples taken while the trainer waited for go (dropped)
    seconds: float  # the whole run: start-up to exit

    @property
    def effective_hz(self) -> float:
        r = self.recording
        return r.total / (r.window_ms / 1e3) if r.window_ms > 0 else 0.0


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return tail(path.read_text(errors="replace"), lines=lines)
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def _send(proc: subprocess.Popen[str], line: str, close: bool = False) -> bool:
    """Write a line to the trainer's stdin; False if it is gone."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        if close:
            proc.stdin.close()
    except (BrokenPipeError, OSError):
        return False
    return True


def _attach_error(text: str, pid: int) -> FlameError:
    last = " ".join(text.strip().splitlines()[-2:]) or "no output"
    lowered = text.lower()
    if any(w in lowered for w in ("permission", "not permitted", "ptrace", "eperm")):
        return FlameError(f"py-spy could not attach to pid {pid} ({last}): {PTRACE_HINT}")
    return FlameError(f"py-spy could not sample pid {pid}: {last}")


def record(
    spec: FlameSpec,
    tree: Tree | None,
    pyspy: str,
    settle_s: float = 0.3,
    attach_timeout_s: float = 60.0,
) -> Measured:
    """Run the trainer of ``tree`` (None: this environment, as imported) and sample its
    measured frames with py-spy."""
    env = {**os.environ, **RUN_ENV}
    cwd = None
    if tree is not None:
        env["PYTHONPATH"] = str(tree.path)
        cwd = tree.path
    start = time.monotonic()
    deadline = start + spec.timeout_s
    with tempfile.TemporaryDirectory(prefix="calf-flame-") as tmp:
        work = Path(tmp)
        app_log, spy_log, raw = work / "app.log", work / "py-spy.log", work / "raw.txt"
        app: subprocess.Popen[str] | None = None
        spy: subprocess.Popen[bytes] | None = None
        with app_log.open("w") as app_err, spy_log.open("w") as spy_out:
            try:
                app = subprocess.Popen(
                    spec.command(work, sys.executable if tree is None else tree.python),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=app_err,
                    text=True,
                    bufsize=1,
                    cwd=cwd,
                    env=env,
                )
                assert app.stdin is not None and app.stdout is not None
                lines = _Lines(app.stdout)

                def failed(what: str) -> RunError:
                    _stop(app)
                    out = "\n".join([*lines.seen[-6:], _tail(app_log)])
                    return RunError(f"the trainer {what} (exit {app.poll()}):\n{out}")

                warm = lines.wait_for("@warm", deadline)
                if warm is None:
                    raise failed(f"gave no @warm within {spec.timeout_s:.0f} s")
                try:
                    pid = int(warm.split()[1])
                except (IndexError, ValueError):
                    raise failed(f"printed {warm!r} instead of '@warm PID'") from None
                spy = subprocess.Popen(
                    [
                        pyspy, "record", "--pid", str(pid), "--format", "raw",
                        "--rate", str(spec.rate), "--idle", "--threads", "--nolineno",
                        "--output", str(raw),
                    ],
                    stdout=spy_out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
                attach_by = time.monotonic() + attach_timeout_s
                while "Sampling process" not in spy_log.read_text(errors="replace"):
                    if spy.poll() is not None:
                        raise _attach_error(spy_log.read_text(errors="replace"), pid)
                    if time.monotonic() > attach_by:
                        raise FlameError(
                            f"py-spy did not start sampling pid {pid} in "
                            f"{attach_timeout_s:.0f} s: {_tail(spy_log, 3)}"
                        )
                    time.sleep(0.05)
                time.sleep(settle_s)  # sampling for sure before the first measured frame
                if not _send(app, "go"):
                    raise failed("stopped while waiting for go")
                t0 = time.perf_counter()
                measured = lines.wait_for("@measured", deadline)
                t1 = time.perf_counter()
                if measured is None:
                    raise failed(f"did not reach @measured within {spec.timeout_s:.0f} s")
                if spy.poll() is not None:
                    raise FlameError(
                        f"py-spy stopped before the last measured frame (exit "
                        f"{spy.returncode}): {_tail(spy_log, 3)}"
                    )
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                try:
                    spy_rc = spy.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    raise FlameError("py-spy did not stop within 60 s of SIGINT") from None
                _send(app, "go", close=True)
                try:
                    app_rc = app.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise failed("did not exit after its measured frames") from None
                if app_rc != 0:
                    raise failed("failed after its measured frames")
            finally:
                _stop(spy)
                _stop(app)
        if spy_rc != 0 or not raw.is_file():
            raise FlameError(f"py-spy failed (exit {spy_rc}): {_tail(spy_log, 3)}")
        stacks = parse_collapsed(raw.read_text())
    main, other = main_thread(stacks, pid)
    kept, waiting = drop_through(main, "hold", "visuals/probe.py")
    if not kept:
        raise FlameError(f"py-spy sampled no measured frame of pid {pid}")
    recording = Recording(kept, spec.frames, (t1 - t0) * 1e3)
    return Measured(recording, pid, other, waiting, time.monotonic() - start)


def alternate(repeat: int) -> list[str]:
    """Recording order: base, head, head, base, base, head, ... (``repeat`` of each), so a
    drift of the machine falls on both sides alike."""
    order: list[str] = []
    for i in range(repeat):
        order += ["base", "head"] if i % 2 == 0 else ["head", "base"]
    return order


# ----------------------------------------------------------------------------- reports
def _hz(measured: Sequence[Measured]) -> str:
    hz = sorted(m.effective_hz for m in measured)
    return f"{hz[0]:.0f}" if len(hz) == 1 else f"{hz[0]:.0f}-{hz[-1]:.0f}"


def profile_header(
    spec: FlameSpec, name: str, profile: Profile, measured: Sequence[Measured]
) -> list[str]:
    return [
        f"{name}; {spec.describe_run()}",
        f"{spec.describe_frames()} x {profile.recordings} recording(s)",
        f"{profile.total_samples} main-thread samples at {spec.rate} Hz (effective {_hz(measured)}"
        f" Hz), wall time, waits included: {profile.total_ms:.3f} ms/frame",
        "most own time (ms/frame):",
        *(f"    {v:7.3f}  {f}" for f, v in top_own(profile, 5)),
    ]


def diff_header(
    spec: FlameSpec,
    base: Tree,
    head: Tree,
    profiles: dict[str, Profile],
    measured: dict[str, list[Measured]],
    order: Sequence[str],
) -> list[str]:
    b, h = profiles["base"], profiles["head"]
    d = h.total_ms - b.total_ms
    pct = 100 * d / b.total_ms if b.total_ms else 0.0
    noise = own_noise(recordings(measured["base"]), recordings(measured["head"]))
    added = [c for c in function_changes(h, b, noise) if c.delta_ms > 0][:5]
    return [
        f"{base.name}   vs   {head.name};   {spec.describe_run()}",
        f"{spec.describe_frames()} x {h.recordings} recording(s) per side, in the order "
        + " ".join(order),
        f"main-thread samples: base {b.total_samples}, head {h.total_samples} at {spec.rate} Hz "
        f"(effective {_hz(measured['base'] + measured['head'])} Hz), wall time, waits included",
        f"sampled frame: base {b.total_ms:.3f} ms, head {h.total_ms:.3f} ms ({d:+.3f} ms, "
        f"{pct:+.1f} %)" + _noise(noise.get("")),
        "width: head's ms/frame; colour: the change in a frame's own time"
        + (" beyond twice its noise" if noise else "")
        + ", red = head spends more, blue = less, grey = the same",
        "top added ms/frame (own time, head - base):" + ("" if added else " none"),
        *(
            f"    {c.delta_ms:+7.3f}  {c.function}  ({c.base_ms:.3f} -> {c.head_ms:.3f}"
            + _noise(c.noise_ms if noise else None, ", ")
            + ")"
            for c in added
        ),
    ]


def recordings(measured: Sequence[Measured]) -> list[Recording]:
    return [m.recording for m in measured]


def _noise(se: float | None, sep: str = "; ") -> str:
    """The noise of a change, for a reader to weigh it by."""
    if se is None:
        return ""
    return f"{sep}noise ±{se:.3f}"


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def diff_markdown(
    spec: FlameSpec,
    base: Tree,
    head: Tree,
    measured: dict[str, list[Measured]],
    files: Sequence[Path],
    k: int = 8,
) -> str:
    sides = {key: recordings(m) for key, m in measured.items()}
    b, h = Profile.of(sides["base"]), Profile.of(sides["head"])
    noise = own_noise(sides["base"], sides["head"])
    d = h.total_ms - b.total_ms
    pct = 100 * d / b.total_ms if b.total_ms else 0.0
    changes = function_changes(h, b, noise)
    changes = sorted(changes, key=lambda c: (-abs(c.delta_ms), c.function))[:k]
    rows = [
        f"| {_cell(c.function)} | {c.base_ms:.3f} | {c.head_ms:.3f} | **{c.delta_ms:+.3f}** | "
        + (f"±{c.noise_ms:.3f} |" if noise else "- |")
        for c in changes
    ]
    return "\n".join(
        [
            f"### calf-perf flame: {head.name} against {base.name}",
            "",
            f"{spec.describe()}; {h.recordings} recording(s) per side, py-spy at {spec.rate} Hz. "
            f"Sampled frame (wall time): base {b.total_ms:.3f} ms, head {h.total_ms:.3f} ms "
            f"({d:+.3f} ms, {pct:+.1f} %)" + _noise(noise.get("")) + " ms.",
            "",
            "| function (own time) | base ms/frame | head ms/frame | change | noise¹ |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Flamegraphs: "
            + ", ".join(f"`{f}`" for f in files)
            + " (diff: widths from head; red = head spends more, blue = less, beyond twice the "
            "noise).",
            "",
            "¹ the standard error of the change, from how each side's recordings differ among "
            "themselves (--repeat >= 2): a change under about twice it may be noise.",
            "",
        ]
    )


def plain_markdown(spec: FlameSpec, name: str, profile: Profile, svg: Path, k: int = 8) -> str:
    rows = [f"| {_cell(f)} | {v:.3f} |" for f, v in top_own(profile, k)]
    return "\n".join(
        [
            f"### calf-perf flame: {name}",
            "",
            f"{spec.describe()}; {profile.total_samples} samples at {spec.rate} Hz, "
            f"{profile.total_ms:.3f} ms/frame sampled.",
            "",
            "| function (own time) | ms/frame |",
            "|---|---|",
            *rows,
            "",
            f"Flamegraph: `{svg}`",
            "",
        ]
    )


def write_folded(path: Path, samples: dict[Stack, int]) -> None:
    path.write_text("".join(f"{';'.join(s)} {n}\n" for s, n in sorted(samples.items())))


# ----------------------------------------------------------------------------- the command
def add_arguments(p: argparse.ArgumentParser, size: Callable[[str], tuple[int, int]]) -> None:
    p.add_argument(
        "--base",
        metavar="REF",
        help="also record this commit (a temporary git worktree) and draw base.svg, head.svg "
        "and diff.svg into --out; head is the working tree (default: none, one plain graph)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("flame"),
        metavar="DIR",
        help="folder for base.svg, head.svg, diff.svg and the collapsed stacks, with --base "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--svg",
        type=Path,
        default=Path("flame.svg"),
        metavar="PATH",
        help="the plain graph, without --base (default: %(default)s; its collapsed stacks "
        "beside it as .folded)",
    )
    p.add_argument("--agents", type=int, default=20, help="visual agents (default: %(default)s)")
    p.add_argument(
        "--mode", choices=MODES, default="optimised", help="code paths (default: %(default)s)"
    )
    p.add_argument(
        "--frames",
        type=int,
        default=600,
        help="measured frames per recording: what is sampled (default: %(default)s)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=60,
        help="frames before sampling starts, at least 1 (default: %(default)s)",
    )
    p.add_argument(
        "--size",
        type=size,
        default=(640, 360),
        metavar="WxH",
        help="offscreen window size (default: 640x360)",
    )
    p.add_argument("--seed", type=int, default=0, help="the run's seed (default: %(default)s)")
    p.add_argument(
        "--rate", type=int, default=200, help="py-spy samples per second (default: %(default)s)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        metavar="R",
        help="recordings per side, summed; with --base in the order base, head, head, base, ... "
        "(default: 2 with --base, 1 without)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds one recording may take, start-up to exit (default: %(default)s)",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="append a short summary (e.g. $GITHUB_STEP_SUMMARY) (default: none)",
    )
    p.add_argument(
        "--early",
        action="store_true",
        help="sample an early run (a nearly empty replay, no run folder) instead of the "
        "default: an hour-long run's state with its run folder",
    )


def _commit_name(start: Path) -> str:
    try:
        root = repo_root(start)
        commit = resolve(root, "HEAD")
    except TreeError:
        return "this environment"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Tree("head", root, commit, bool(dirty)).name


def _append(path: Path, text: str) -> None:
    """Appended in one write, as GitHub expects, ending with the provenance line."""
    provenance.append_markdown(path, text)


def _progress(label: str, i: int, n: int, m: Measured) -> None:
    r = m.recording
    print(
        f"  {i}/{n} {label:<4} {r.total:6d} samples over {r.frames} frames "
        f"({r.window_ms / 1e3:5.2f} s sampled, {r.window_ms / r.frames:6.2f} ms/frame, "
        f"{m.effective_hz:5.0f} Hz; run {m.seconds:5.1f} s)",
        flush=True,
    )


def run_plain(a: argparse.Namespace, spec: FlameSpec, pyspy: str) -> int:
    repeat = a.repeat or 1
    print(f"flame: {spec.describe()}, {repeat} recording(s), py-spy at {spec.rate} Hz", flush=True)
    measured = []
    for i in range(repeat):
        measured.append(record(spec, None, pyspy))
        _progress("run", i + 1, repeat, measured[-1])
    profile = Profile.of([m.recording for m in measured])
    name = _commit_name(Path.cwd())
    svg = render_svg(
        build_tree(profile),
        "calf-perf flame: the measured frames",
        profile_header(spec, name, profile, measured),
        frames=profile.frames,
    )
    a.svg.parent.mkdir(parents=True, exist_ok=True)
    a.svg.write_text(svg)
    write_folded(a.svg.with_suffix(".folded"), profile.samples)
    print(f"flamegraph: {a.svg} ({profile.total_ms:.3f} ms/frame sampled)")
    if a.markdown:
        _append(a.markdown, plain_markdown(spec, name, profile, a.svg))
    return 0


def run_diff(a: argparse.Namespace, spec: FlameSpec, pyspy: str) -> int:
    repeat = a.repeat or 2
    order = alternate(repeat)
    with trees(Path.cwd(), a.base, None) as (base, head):
        tree = {"base": base, "head": head}
        for t in (base, head):
            if not holds(t):
                raise TreeError(
                    f"{t.name} predates `--probe hold=1`: its trainer cannot be sampled over "
                    "the measured frames only"
                )
        print(
            f"flame: {base.name} against {head.name}; {spec.describe()}; order "
            f"{' '.join(order)}, py-spy at {spec.rate} Hz",
            flush=True,
        )
        measured: dict[str, list[Measured]] = {"base": [], "head": []}
        for i, label in enumerate(order, 1):
            m = record(spec, tree[label], pyspy)
            measured[label].append(m)
            _progress(label, i, len(order), m)
    profiles = {k: Profile.of([m.recording for m in v]) for k, v in measured.items()}
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "base.svg", out / "head.svg", out / "diff.svg"]
    for label, path in zip(("base", "head"), files, strict=False):
        p = profiles[label]
        path.write_text(
            render_svg(
                build_tree(p),
                f"calf-perf flame: {label}, the measured frames",
                profile_header(spec, tree[label].name, p, measured[label]),
                frames=p.frames,
            )
        )
        write_folded(out / f"{label}.folded", p.samples)
    diff_tree = build_tree(
        profiles["head"],
        profiles["base"],
        stack_noise(recordings(measured["base"]), recordings(measured["head"])),
    )
    files[2].write_text(
        render_svg(
            diff_tree,
            "calf-perf flame: head - base, ms per measured frame",
            diff_header(spec, base, head, profiles, measured, order),
            notes=only_in_base_notes(diff_tree),
            diff=True,
            frames=profiles["head"].frames,
        )
    )
    b, h = profiles["base"], profiles["head"]
    print(
        f"frame (sampled): base {b.total_ms:.3f} ms, head {h.total_ms:.3f} ms "
        f"({h.total_ms - b.total_ms:+.3f} ms)"
    )
    noise = own_noise(recordings(measured["base"]), recordings(measured["head"]))
    for c in sorted(function_changes(h, b, noise), key=lambda c: -abs(c.delta_ms))[:5]:
        note = _noise(c.noise_ms, "  (") + ")" if noise else ""
        print(f"  {c.delta_ms:+.3f} ms/frame  {c.function}{note}")
    print("flamegraphs: " + ", ".join(map(str, files)))
    if a.markdown:
        _append(a.markdown, diff_markdown(spec, base, head, measured, files))
    return 0


def main(a: argparse.Namespace) -> int:
    """``calf-perf flame``: 0 ok, 1 py-spy failed or could not attach (or the trainer failed),
    2 usage error."""
    try:
        spec = FlameSpec(
            a.agents,
            a.frames,
            a.warmup,
            a.size,
            a.mode,
            a.seed,
            a.rate,
            timeout_s=a.timeout,
            late=not a.early,
        )
        if a.repeat is not None and a.repeat < 1:
            raise ValueError(f"--repeat must be >= 1, got {a.repeat}")
        if a.base is not None and a.svg != Path("flame.svg"):
            raise ValueError("--svg is the plain graph; with --base give --out DIR")
    except ValueError as exc:
        print(f"calf-perf flame: error: {exc}", file=sys.stderr)
        return 2
    pyspy = find_pyspy()
    try:
        if pyspy is None:
            raise FlameError("py-spy is not installed (pip install py-spy)")
        return run_diff(a, spec, pyspy) if a.base else run_plain(a, spec, pyspy)
    except TreeError as exc:
        message, status = f"error: {exc}", 2
    except (FlameError, RunError) as exc:
        message, status = str(exc), 1
    print(f"calf-perf flame: {message}", file=sys.stderr)
    if a.markdown:  # the job summary says why there is no flamegraph
        first = message.splitlines()[0] if message else "failed"
        _append(a.markdown, f"### calf-perf flame: no flamegraph\n\n{first}\n\n")
    return status
