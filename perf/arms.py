"""The arms of an A/B run: one tree's trainer (base, head, or head with injected work) producing
blocks of measured frames.

``ServeArm`` keeps the trainer alive in serve mode (``--probe serve=1``): each block is a command
on its stdin and one ``@block`` JSON line back, so the arms take turns every second or so with no
restart, and block i of every arm simulates the same frames (same seeds). ``RunArm`` is for trees
that predate serve mode: every block is a fresh headless run (start-up, prefill and warm-up
each time), slower and noisier, used for both arms whenever one tree needs it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from perf.runner import PREFILL, RUN_ENV, RunError, tail
from perf.trees import Tree

HASH_SEED = "0"  # every arm hashes alike: identical code, identical dict layouts


@dataclass(frozen=True)
class ArmSpec:
    """What every arm of a run shares."""

    agents: int
    size: tuple[int, int] = (640, 360)
    seed: int = 0
    warmup: int = 60  # frames before the first measured block
    timeout_s: float = 300.0
    late: bool = True  # an hour-long run's state with its run folder, else an early run's

    def app_args(self, tree: Tree, out: Path) -> list[str]:
        """The trainer's options for this arm, in the tree's own spelling; ``out`` the arm's
        temporary directory (a late run writes its run folder there)."""
        w, h = self.size
        starts = "--td3.learning-starts" if tree.takes_run_config() else "--learning-starts"
        return [
            "--headless", "--no-progress",
            *(("--out", str(out / "run")) if self.late else ("--no-save",)),
            "--agents", str(self.agents), "--size", f"{w}x{h}", "--seed", str(self.seed),
            starts, str(PREFILL),
        ]  # fmt: skip

    def start(self) -> str:
        """The probe's setting that builds the run's state before the first frame."""
        return "late=1" if self.late else f"prefill={PREFILL}"


class Arm(Protocol):
    label: str

    def block(self, frames: int, inject: tuple[str, float] | None = None) -> dict[str, Any]:
        """Measure ``frames`` frames: the profiler's frame, sections and counters."""
        ...

    def close(self) -> None: ...


def _env(tree: Tree) -> dict[str, str]:
    return {**os.environ, **RUN_ENV, "PYTHONPATH": str(tree.path), "PYTHONHASHSEED": HASH_SEED}


def _fixed_layout(cmd: list[str]) -> list[str]:
    """``cmd`` without address-space randomisation where ``setarch -R`` exists: processes of
    the same code lay their memory out alike, one source of steady offsets fewer."""
    if shutil.which("setarch"):
        return ["setarch", os.uname().machine, "-R", *cmd]
    return cmd


class ServeArm:
    """A trainer kept alive in serve mode."""

    SETTLE = 5  # unrecorded frames at the start of every block: caches refill after a switch

    def __init__(self, tree: Tree, spec: ArmSpec, label: str) -> None:
        self.label = label
        self.spec = spec
        self._log = tempfile.TemporaryFile()
        self._out = tempfile.TemporaryDirectory(prefix="calf-ab-arm-")
        cmd = [
            tree.python, "-m", "visuals", *spec.app_args(tree, Path(self._out.name)),
            "--probe", f"{spec.start()},serve=1",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            _fixed_layout(cmd),
            cwd=tree.path,
            env=_env(tree),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._buffer = b""
        self._expect("@ready")
        if spec.warmup:
            self.block(spec.warmup)

    def _fail(self, why: str) -> RunError:
        self.proc.kill()
        self._log.seek(0)
        return RunError(f"{self.label} N={self.spec.agents}: {why}\n{tail(self._log.read())}")

    def _expect(self, prefix: str) -> str:
        """The next stdout line starting with ``prefix`` (other lines are Ursina's chatter)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.spec.timeout_s
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(prefix):
                    return text[len(prefix) :].strip()
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"no {prefix} within {self.spec.timeout_s:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._fail(f"exited with status {self.proc.wait()} before {prefix}")
                self._buffer += chunk

    def block(self, frames: int, inject: tuple[str, float] | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        cmd = {"frames": frames, "settle": self.SETTLE, "inject": list(inject) if inject else None}
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail("the trainer went away") from None
        block: dict[str, Any] = json.loads(self._expect("@block"))
        return block

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"quit": true}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self._log.close()
        self._out.cleanup()


class RunArm:
    """Every block a fresh headless run, for trees that predate serve mode."""

    def __init__(self, tree: Tree, spec: ArmSpec, label: str) -> None:
        self.tree = tree
        self.spec = spec
        self.label = label

    def block(self, frames: int, inject: tuple[str, float] | None = None) -> dict[str, Any]:
        spec = self.spec
        with tempfile.TemporaryDirectory(prefix="calf-ab-run-") as tmp:
            profile = Path(tmp) / "profile.json"
            frame_args = ["--frames", str(spec.warmup + frames), "--profile", str(profile)]
            if self.tree.serves():  # the probe's knobs
                probe = [f"warmup={spec.warmup}", spec.start()]
                if inject:
                    probe.append(f"inject={inject[0]}:{inject[1]}")
                frame_args += ["--probe", ",".join(probe)]
            elif inject:
                raise RunError(f"{self.label}: this tree cannot take injected work")
            else:  # the options trees had before the probe
                frame_args += ["--warmup", str(spec.warmup), "--prefill", str(PREFILL)]
            cmd = [
                self.tree.python,
                "-m",
                "visuals",
                *spec.app_args(self.tree, Path(tmp)),
                *frame_args,
            ]
            if not spec.late:
                cmd += ["--out", tmp]
            try:
                proc = subprocess.run(
                    _fixed_layout(cmd),
                    cwd=self.tree.path,
                    env=_env(self.tree),
                    capture_output=True,
                    text=True,
                    timeout=spec.timeout_s,
                )
            except subprocess.TimeoutExpired:
                raise RunError(f"{self.label}: a run exceeded {spec.timeout_s:.0f} s") from None
            if proc.returncode != 0 or not profile.is_file():
                output = tail(proc.stdout, proc.stderr)
                raise RunError(f"{self.label}: a run exited {proc.returncode}:\n{output}")
            data = json.loads(profile.read_text())
        return {k: data[k] for k in ("frame", "sections", "counters")}

    def close(self) -> None:
        """Nothing stays alive between blocks."""
