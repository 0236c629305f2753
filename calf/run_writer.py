"""Where a run's files are written: in the caller's thread, or by a worker process.

A training session hands its outputs over as jobs: an episode's record, an evaluation's record,
a report figure, a checkpoint. ``FolderJobs`` does them against a ``RunFolder`` and keeps the
history the report figure draws (every episode and evaluation record so far, the certificate
traces of the last episodes), so a job carries only what is new: its size does not grow with
the run's length.

- ``InlineWriter`` does each job at once (``python -m calf``: nothing else is waiting).
- ``BackgroundWriter`` sends each job to a worker process (``python -m calf.run_writer``) that
  does the same jobs in the same order, so the visual trainer's frame never waits for a report
  figure (1.4-2 s of matplotlib here) or a checkpoint write. A process rather than a thread: a
  figure holds the GIL for its whole drawing, and a frame waiting on the GIL is a frame late.
  The worker runs at a lower priority (``WORKER_NICE``): it takes the CPU the frame leaves.
  The caller pickles a job (its size is the job's, not the run's) and a sender thread writes
  the bytes to the pipe: a pipe holds 64 KiB, and a report's trajectories (~1.6 MB) would
  otherwise block the frame until the worker, busy with the previous figure, reads them.

Nothing is lost at exit: ``close`` waits for the jobs sent so far and names any it had to drop
(a worker that died, or did not finish in time). Every file is written atomically, so a job cut
short leaves the previous file, never half of a new one.
"""

from __future__ import annotations

import io
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from calf.atomic import atomic_write
from calf.report import CriticGrid, ReportData, save_report
from calf.run_folder import RunFolder

Q_CERT_EPISODES = 6  # certificate traces the report shows (the last episodes)
WORKER_NICE = 10  # the worker's niceness: it yields the CPU to the frame
_FRAME = struct.Struct("<I")  # a job on the pipe: its pickled length, then the pickle


@dataclass(frozen=True)
class ReportParts:
    """What one report figure adds to the writer's history: the title, the critic over the
    plane, the evaluation's CALF trajectories and a fixed-size sample of the replay."""

    episode: int
    title: str
    critic: CriticGrid | None
    trajectories: NDArray[np.float64] | None
    trajectory_modes: NDArray[np.int8] | None
    replay_sample: NDArray[np.float64] | None
    replay_size: int
    init_range: float
    goal_radius: float


class RunWriter(Protocol):
    """Writes a run's files; jobs are done in the order they are given."""

    def restore(self, records: list[dict[str, Any]]) -> None:
        """The metrics records a resumed run already has (the history the report draws)."""

    def episode(self, record: dict[str, Any], q_cert: NDArray[np.float64] | None) -> None:
        """An episode's metrics line, and its certificate trace for the report (None: none)."""

    def evaluation(self, record: dict[str, Any], global_step: int) -> None:
        """An evaluation: eval.json and its metrics line."""

    def report(self, parts: ReportParts) -> None:
        """A report figure: numbered, and as report.png."""

    def checkpoint(self, episode: int, data: bytes, progress: dict[str, Any]) -> None:
        """A kept checkpoint (the bytes of a checkpoint file) with the trainer's progress."""

    @property
    def busy(self) -> bool:
        """Whether jobs given are not done yet."""

    def close(self, timeout_s: float = 120.0) -> list[str]:
        """Finish the jobs given (waiting at most ``timeout_s``); the jobs dropped."""


class FolderJobs:
    """The jobs done against one run folder, and the history the report figure draws."""

    def __init__(self, folder: RunFolder, figures: bool = True) -> None:
        self.folder = folder
        self.figures = figures
        self.episodes: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.q_cert_traces: deque[tuple[int, NDArray[np.float64]]] = deque(maxlen=Q_CERT_EPISODES)

    def do(self, job: tuple[Any, ...]) -> None:
        """Do one job: ``(kind, *arguments)`` as ``RunWriter`` names them."""
        kind, *args = job
        getattr(self, f"_{kind}")(*args)

    def _restore(self, records: list[dict[str, Any]]) -> None:
        self.episodes = [r for r in records if r.get("type") == "episode"]
        self.evals = [
            {k: v for k, v in r.items() if k not in ("type", "global_step")}
            for r in records
            if r.get("type") == "eval"
        ]

    def _episode(self, record: dict[str, Any], q_cert: NDArray[np.float64] | None) -> None:
        self.folder.append_metrics(record)
        self.episodes.append(record)
        if q_cert is not None:
            self.q_cert_traces.append((int(record["episode"]), q_cert))

    def _evaluation(self, record: dict[str, Any], global_step: int) -> None:
        self.folder.write_eval(record)
        self.folder.append_metrics({"type": "eval", "global_step": global_step, **record})
        self.evals.append(record)

    def _report(self, parts: ReportParts) -> None:
        if not self.figures:
            return
        data = ReportData(
            title=parts.title,
            episodes=self.episodes,
            evals=self.evals,
            critic=parts.critic,
            trajectories=parts.trajectories,
            trajectory_modes=parts.trajectory_modes,
            q_cert_traces=list(self.q_cert_traces),
            replay_states=parts.replay_sample,
            replay_size=parts.replay_size,
            init_range=parts.init_range,
            goal_radius=parts.goal_radius,
        )
        save_report(data, self.folder.figure_path(parts.episode), self.folder.report_path)

    def _checkpoint(self, episode: int, data: bytes, progress: dict[str, Any]) -> None:
        def write(path: Path) -> None:
            atomic_write(path, lambda fh: fh.write(data), binary=True)

        self.folder.save_checkpoint(write, episode, progress)


class InlineWriter:
    """Every job done at once, in the caller's thread."""

    def __init__(self, folder: RunFolder, figures: bool = True) -> None:
        self.jobs = FolderJobs(folder, figures)

    def restore(self, records: list[dict[str, Any]]) -> None:
        self.jobs.do(("restore", records))

    def episode(self, record: dict[str, Any], q_cert: NDArray[np.float64] | None) -> None:
        self.jobs.do(("episode", record, q_cert))

    def evaluation(self, record: dict[str, Any], global_step: int) -> None:
        self.jobs.do(("evaluation", record, global_step))

    def report(self, parts: ReportParts) -> None:
        self.jobs.do(("report", parts))

    def checkpoint(self, episode: int, data: bytes, progress: dict[str, Any]) -> None:
        self.jobs.do(("checkpoint", episode, data, progress))

    @property
    def busy(self) -> bool:
        return False

    def close(self, timeout_s: float = 120.0) -> list[str]:
        return []


def _describe(job: tuple[Any, ...]) -> str:
    kind = job[0]
    if kind == "episode":
        return f"metrics of episode {job[1]['episode']}"
    if kind == "evaluation":
        return f"evaluation of episode {job[1]['episode']}"
    if kind in ("report", "checkpoint"):
        episode = job[1].episode if kind == "report" else job[1]
        return f"{kind} of episode {episode}"
    return kind


class BackgroundWriter:
    """Jobs done by a worker process, in order; the caller never waits except in ``close``.

    ``sent_bytes`` counts the pickled bytes of every job sent (what the caller copied), so a
    job whose size grows with the run's length shows."""

    def __init__(self, folder: RunFolder, figures: bool = True) -> None:
        self.folder = folder
        self.figures = figures
        self.sent_bytes = 0
        self._pending: deque[str] = deque()  # descriptions of the jobs not yet done
        self._acks = b""
        self._fallback: InlineWriter | None = None
        root = str(Path(__file__).resolve().parents[1])  # the calf this process imported
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        cmd = [sys.executable, "-m", "calf.run_writer", str(folder.path)]
        if not figures:
            cmd.append("--no-figures")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._broken = threading.Event()  # the sender found the pipe closed
        self._sender = threading.Thread(target=self._send_loop, name="run-writer-sender")
        self._sender.daemon = True
        self._sender.start()

    def _send_loop(self) -> None:
        """The sender thread: write each job's bytes to the worker, then close its input."""
        stdin = self._proc.stdin
        assert stdin is not None
        while (blob := self._outbox.get()) is not None:
            try:
                stdin.write(blob)
                stdin.flush()
            except (BrokenPipeError, OSError):
                self._broken.set()
                return
        try:
            stdin.close()  # the end of the jobs
        except OSError:
            pass

    # -------------------------------------------------------------- the jobs
    def restore(self, records: list[dict[str, Any]]) -> None:
        self._send(("restore", records))

    def episode(self, record: dict[str, Any], q_cert: NDArray[np.float64] | None) -> None:
        self._send(("episode", record, q_cert))

    def evaluation(self, record: dict[str, Any], global_step: int) -> None:
        self._send(("evaluation", record, global_step))

    def report(self, parts: ReportParts) -> None:
        self._send(("report", parts))

    def checkpoint(self, episode: int, data: bytes, progress: dict[str, Any]) -> None:
        self._send(("checkpoint", episode, data, progress))

    def _send(self, job: tuple[Any, ...]) -> None:
        if self._fallback is None and (self._broken.is_set() or self._proc.poll() is not None):
            self._take_over(f"the run writer exited (status {self._proc.poll()})")
        if self._fallback is not None:
            self._fallback.jobs.do(job)
            return
        blob = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        self.sent_bytes += len(blob)
        self._outbox.put(_FRAME.pack(len(blob)) + blob)
        self._pending.append(_describe(job))

    def _take_over(self, why: str) -> None:
        """The worker is gone: say what it did not write, then write in this process."""
        self._read_acks()
        lost = ", ".join(self._pending) or "nothing"
        print(f"calf: {why}; not written: {lost}; writing in this process from now on",
              file=sys.stderr)  # fmt: skip
        self._pending.clear()
        self._fallback = InlineWriter(self.folder, self.figures)
        self._fallback.restore(self.folder.read_metrics())

    # ------------------------------------------------------------- progress
    def _read_acks(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        while True:
            try:
                chunk = os.read(stdout.fileno(), 4096)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._acks += chunk
            *lines, self._acks = self._acks.split(b"\n")
            for line in lines:
                if line.startswith(b"error "):
                    print(f"calf: run writer: {line[6:].decode(errors='replace')}",
                          file=sys.stderr)  # fmt: skip
                if self._pending:
                    self._pending.popleft()

    @property
    def busy(self) -> bool:
        if self._fallback is not None:
            return False
        self._read_acks()
        return bool(self._pending)

    def close(self, timeout_s: float = 120.0) -> list[str]:
        """Send the end, wait for the worker to finish every job sent; the jobs dropped."""
        if self._fallback is not None:
            return []
        proc = self._proc
        self._outbox.put(None)  # the sender closes the worker's input after the last job
        stdout = proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        told = False
        while proc.poll() is None and time.monotonic() < deadline:
            self._read_acks()
            if self._pending and not told and len(self._pending) > 1:
                print(f"calf: writing {len(self._pending)} pending outputs "
                      f"({', '.join(self._pending)})", file=sys.stderr)  # fmt: skip
                told = True
            select.select([stdout.fileno()], [], [], 0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._sender.join(timeout=5.0)
        self._read_acks()
        dropped = list(self._pending)
        self._pending.clear()
        if dropped:
            print(f"calf: dropped (not written): {', '.join(dropped)}", file=sys.stderr)
        return dropped


# ------------------------------------------------------------------ the worker process
def _read_job(stdin: io.BufferedReader) -> tuple[Any, ...] | None:
    head = stdin.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    job: tuple[Any, ...] = pickle.loads(stdin.read(size))
    return job


def serve(folder: Path, figures: bool) -> int:
    """The worker: do the jobs read from stdin in order, one ack line each on stdout, until
    stdin ends."""
    if hasattr(os, "nice"):
        os.nice(WORKER_NICE)
    jobs = FolderJobs(RunFolder(folder), figures)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (job := _read_job(stdin)) is not None:  # type: ignore[arg-type]
        try:
            jobs.do(job)
            stdout.write(b"ok\n")
        except Exception as exc:  # one bad job must not take the others with it
            text = f"{_describe(job)} failed: {type(exc).__name__}: {exc}".replace("\n", " ")
            stdout.write(f"error {text}\n".encode())
        stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return serve(Path(args[0]), "--no-figures" not in args[1:])


if __name__ == "__main__":
    sys.exit(main())
