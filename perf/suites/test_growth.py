"""Work budget: the training step's and an episode end's work, the same early and late in a run.

As the stage-calls gate holds Python work per call equal at N = 5 and N = 100, this gate holds
it equal at an early run state (the replay 1 % full, episode 1) and a late one (the replay full,
episode 1000: ``calf.late_run``). Counted per step or per episode end, exactly: Python calls and
lines executed (``visuals.probe.PythonWork``), the peak of bytes allocated above the start
(``tracemalloc``: a copy of the replay or of the history shows), and the bytes an episode end
hands to the run writer's worker. A cost that grows with the replay's fill, the episodes so far
or the history grows one of them; the references shown to grow below prove the gate can fail.

Two settings keep a count a function of the run's length alone: the training step is counted
on TD3 (``train.algo td3``: CALF's certificate takes a branch per mode, whose work is the same
early and late and is held by the stage-calls gate), and an episode end with no learning (its
evaluation rolls out the same weights in both states, so the rollouts run the same steps).

    pytest perf/suites/test_growth.py -s      # prints the table
"""

from __future__ import annotations

import statistics
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from calf.config import RunConfig, apply_overrides
from calf.late_run import LATE_EPISODES, age, fill_replay
from calf.run_writer import BackgroundWriter
from calf.session import TrainingSession
from calf.trainer import StepResult
from visuals.probe import PythonWork

# Handing a job to a thread (the run writer's sender, TensorBoard's) wakes the threads waiting
# at that moment: their number depends on timing, not on the run's length.
THREAD_HAND_OFF = ("/threading.py", "/queue.py")
# Allocator and dict-resize noise moves a step's peak by ~1 KB (the actor's update every other
# step too); a copy of 1000 episodes' returns is 8000 bytes, of the replay 400 000.
BYTES_TOLERANCE = 4096
SENT_TOLERANCE = 64  # a pickled count takes more bytes when it is larger (episode 1004 vs 4)
STEPS = 9  # counted training steps per state (median), after two that warm up
EPISODE_ENDS = 3  # counted episode ends per state (median), after one that warms up
_TABLE: dict[tuple[str, str], tuple[int, int, int]] = {}


def config(**values: object) -> RunConfig:
    return apply_overrides(
        RunConfig(),
        {"env.max_steps": 25, "eval.rollouts": 4, "eval.max_steps": 30, "train.eval_every": 1,
         "train.checkpoint_every": 1, **values},
    )  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def session_at(state: str, cfg: RunConfig, folder: Path) -> TrainingSession:
    """A background session (the visual trainer's) early or late in a run."""
    session = TrainingSession.start(cfg, out=folder, background=True)
    if state == "late":
        age(session, LATE_EPISODES)
    else:  # 1 % of the replay, episode 1
        fill_replay(session, share=0.01)
        session.restore(1, {"global_step": len(session.trainer.replay)}, [])
    return session


def counted(fn: Callable[[], object], writer: object = None) -> tuple[int, int, int]:
    """(Python calls + lines, peak bytes allocated above the start, bytes sent to the worker)
    of one call of ``fn``."""
    sent = writer.sent_bytes if isinstance(writer, BackgroundWriter) else 0
    work = PythonWork(skip=THREAD_HAND_OFF)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        work.start()
        try:
            fn()
        finally:
            work.stop()
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    after = writer.sent_bytes if isinstance(writer, BackgroundWriter) else 0
    return work.total, peak, after - sent


def medians(rows: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return tuple(int(statistics.median(col)) for col in zip(*rows, strict=True))  # type: ignore[return-value]


def training_steps(session: TrainingSession) -> tuple[int, int, int]:
    rows: list[tuple[int, int, int]] = []
    while len(rows) < STEPS + 2:
        if session.trainer.episode_length >= session.cfg.env.max_steps - 1:
            session.step()  # an episode is about to end: not a plain training step
            continue
        rows.append(counted(session.train_step))
    return medians(rows[2:])


def episode_ends(session: TrainingSession) -> tuple[int, int, int]:
    rows: list[tuple[int, int, int]] = []
    for i in range(EPISODE_ENDS + 1):
        result = session.train_step()
        while not result.episode_ended:
            result = session.train_step()

        def end(result: StepResult = result) -> None:
            session.after_step(result)  # its record, evaluation and checkpoint due
            session.advance(float("inf"))  # the evaluation to its end, the report handed over

        row = counted(end, session.writer)
        if i:  # the first end warms up (the nominal rollouts, the worker's imports)
            rows.append(row)
    return medians(rows)


def measure(kind: str, state: str, tmp_path: Path, **values: object) -> tuple[int, int, int]:
    if kind == "training step":
        cfg = config(**{"train.algo": "td3", **values})
        measure_fn = training_steps
    else:
        cfg = config(**{"td3.learning_starts": 10**9, **values})  # no learning: same weights
        measure_fn = episode_ends
    session = session_at(state, cfg, tmp_path / f"{kind}-{state}".replace(" ", "-"))
    try:
        return measure_fn(session)
    finally:
        session.close()


@pytest.mark.parametrize("kind", ["training step", "episode end"])
def test_the_same_work_early_and_late_in_a_run(kind: str, tmp_path: Path) -> None:
    early = measure(kind, "early", tmp_path)
    late = measure(kind, "late", tmp_path)
    _TABLE[(kind, "early")], _TABLE[(kind, "late")] = early, late
    assert late[0] == early[0], f"{kind}: Python calls + lines {early[0]} early, {late[0]} late"
    assert late[1] - early[1] <= BYTES_TOLERANCE, f"{kind}: peak bytes {early[1]} -> {late[1]}"
    assert abs(late[2] - early[2]) <= SENT_TOLERANCE, f"{kind}: sent {early[2]} -> {late[2]}"


def test_a_copy_of_the_replay_each_step_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calf.replay import ReplayBuffer

    real = ReplayBuffer.sample_into

    def with_copy(self: ReplayBuffer, out: np.ndarray, rng: object = None) -> None:
        self.state[: len(self)].copy()  # e.g. a coverage figure recomputed every step
        real(self, out, rng)  # type: ignore[arg-type]

    monkeypatch.setattr(ReplayBuffer, "sample_into", with_copy)
    early = measure("training step", "early", tmp_path)
    late = measure("training step", "late", tmp_path)
    assert late[1] - early[1] > BYTES_TOLERANCE


def test_an_episode_end_that_walks_the_history_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = TrainingSession.after_step

    def with_walk(self: TrainingSession, result: object) -> None:
        if result.episode_ended:  # type: ignore[attr-defined]
            self.best = max((r["return"] for r in self.episodes), default=0.0)  # type: ignore[attr-defined]
        real(self, result)  # type: ignore[arg-type]

    monkeypatch.setattr(TrainingSession, "after_step", with_walk)
    early = measure("episode end", "early", tmp_path)
    late = measure("episode end", "late", tmp_path)
    assert late[0] > early[0]


def test_print_table() -> None:
    if not _TABLE:
        pytest.skip("run with the equality tests to print the table")
    print("\nwork per call   state   calls+lines   peak bytes   bytes to the writer")
    for (kind, state), (calls, peak, sent) in sorted(_TABLE.items()):
        print(f"{kind:<15} {state:<7} {calls:>11} {peak:>12} {sent:>21}")
