"""A training session: the training agent plus everything around it that a researcher reads.

``TrainingSession`` owns an ``AgentTrainer`` and, when given a ``RunFolder``, writes the run: the
resolved config, one metrics line per episode, an evaluation every ``train.eval_every`` episodes
(``eval.json``, report figure, TensorBoard), a kept checkpoint every ``train.checkpoint_every``
episodes, and at ``close()`` a final evaluation and checkpoint. ``python -m calf`` calls
``run()``; the visual trainer calls ``train_step()`` and ``after_step()`` once per frame,
``advance()`` with the frame's budget for evaluations, and ``close()`` at exit, and can subscribe
to ``on_episode`` / ``on_eval``. Both write the same run folder.

Episode-end work, two ways (``background``). Inline (``python -m calf``): an evaluation runs
to its end when it falls due and every file is written at once. In the background (the visual
trainer, whose frame must not wait): an evaluation runs on a frozen copy of the networks,
a slice per ``advance`` call, and the files are written by a worker process
(``calf.run_writer``); the results are the same. What an episode end hands over does not grow
with the run's length: one record, the episode's certificate trace, a checkpoint's bytes, a
fixed-size sample of the replay for the report (the history stays with the writer).
"""

from __future__ import annotations

import io
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calf.checkpoint import CheckpointError
from calf.config import ConfigError, RunConfig
from calf.controller import CALFController
from calf.evaluation import (
    EVAL_TAG,
    EvalResult,
    EvaluationRun,
    Evaluator,
    format_eval_line,
    frozen_copy,
)
from calf.modes import Mode
from calf.report import MAX_DRAWN_TRAJECTORIES, CriticGrid
from calf.run_folder import RunFolder, RunFolderError
from calf.run_writer import BackgroundWriter, InlineWriter, ReportParts, RunWriter
from calf.td3 import TD3
from calf.trainer import AgentTrainer, StepResult, make_controller

LOSS_LOG_EVERY = 100  # steps between TensorBoard loss points (CleanRL's cadence)
CRITIC_GRID = 81  # points per axis of the report's critic contour
CRITIC_ROWS_PER_SLICE = 9  # grid rows per forward when the critic grid is computed in slices
REPLAY_SAMPLE = 5000  # replay states drawn for the report's coverage panel


def _finite(value: float | None) -> float | None:
    """A loss for JSON: None when missing or not finite (a diverged update)."""
    return None if value is None or not math.isfinite(value) else float(value)


class ResumeError(Exception):
    """A run folder cannot be resumed (bad config, no checkpoint, networks that do not fit);
    the message is one line and nothing in the folder was changed."""


class TrainingSession:
    """Training with evaluations, metrics, checkpoints and figures; ``folder=None`` keeps
    everything in memory (no files)."""

    def __init__(
        self,
        cfg: RunConfig,
        folder: RunFolder | None = None,
        controller: CALFController | None = None,
        learn: bool = True,
        figures: bool = True,
        tensorboard: bool = True,
        evaluations: bool = True,
        background: bool = False,
    ) -> None:
        """``evaluations=False``: no evaluation rollouts at all (runs that only measure the
        frame, and runs that evaluate a fixed checkpoint). ``background``: episode-end work
        off the caller's thread (module docstring)."""
        self.cfg = cfg
        self.folder = folder
        self.trainer = AgentTrainer(cfg, controller, learn=learn)
        self.controller = self.trainer.controller
        self.evaluator = Evaluator(cfg)
        self.evaluations = evaluations
        self.background = background
        self.figures = figures and folder is not None
        self.tensorboard = tensorboard and folder is not None
        self.writer: RunWriter | None = None
        if folder is not None:
            make = BackgroundWriter if background else InlineWriter
            self.writer = make(folder, self.figures)
        self.episodes: list[dict[str, Any]] = []  # the "episode" records of metrics.jsonl
        self.evals: list[dict[str, Any]] = []  # eval.json records, oldest first
        self.last_eval: EvalResult | None = None
        self.on_episode: list[Callable[[dict[str, Any]], None]] = []
        self.on_eval: list[Callable[[EvalResult], None]] = []
        self._pending: deque[_PendingEvaluation] = deque()  # due, not finished; oldest first
        self._report_rng = np.random.default_rng(cfg.train.seed + 3)
        self._tb_writer: Any = None
        self._last_actor_loss: float | None = None
        self._last_checkpoint = -1
        self._closed = False
        self._started = time.perf_counter()
        self._reset_episode_stats()

    # ------------------------------------------------------------- opening
    @classmethod
    def start(
        cls,
        cfg: RunConfig,
        out: str | Path | None = None,
        root: str | Path = "runs",
        **kwargs: Any,
    ) -> TrainingSession:
        """A new run: ``out`` as its folder, else a new ``<root>/<date>-<time>-<algo>-s<seed>``
        (and ``<root>/latest``); config.toml written first. RunFolderError if ``out`` holds a
        run already."""
        folder = RunFolder.at(out) if out is not None else RunFolder.create(root, cfg)
        folder.write_config(cfg)
        return cls(cfg, folder, **kwargs)

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        configure: Callable[[RunConfig], RunConfig] | None = None,
        **kwargs: Any,
    ) -> TrainingSession:
        """Continue the run in ``run_dir`` from its newest checkpoint. ``configure`` may change
        the config read from config.toml (e.g. more episodes). Everything is checked before
        anything is written: ResumeError (one line) leaves the folder as it was. The replay
        buffer is not kept in checkpoints: it refills from the resumed policy."""
        try:
            folder = RunFolder.existing(run_dir)
            cfg = folder.read_config()
            if configure is not None:
                cfg = configure(cfg)
            saved = folder.newest_checkpoint()
            controller = make_controller(cfg)
            controller.load(saved.path)
        except (RunFolderError, ConfigError, CheckpointError) as exc:
            raise ResumeError(f"cannot resume {run_dir}: {exc}") from None
        records = folder.keep_metrics_until(saved.episode)
        folder.write_config(cfg)
        if (folder.path.parent / "latest").is_symlink():
            folder.link_latest()
        session = cls(cfg, folder, controller, **kwargs)
        session.restore(saved.episode, saved.progress, records)
        return session

    def restore(self, episode: int, progress: dict[str, Any], records: list[dict]) -> None:
        """Take up a run at ``episode``: its progress and its metrics ``records`` (a resumed
        run; also how a perf run builds a long run's state in seconds)."""
        tr = self.trainer
        self.episodes = [r for r in records if r.get("type") == "episode"]
        self.evals = [
            {k: v for k, v in r.items() if k not in ("type", "global_step")}
            for r in records
            if r.get("type") == "eval"
        ]
        if self.writer is not None:
            self.writer.restore(records)
        tr.episode = episode
        tr.global_step = int(progress.get("global_step", 0))
        tr.episode_rewards = [float(r["return"]) for r in self.episodes]
        tr.recent_success.extend(bool(r["success"]) for r in self.episodes)
        self._last_checkpoint = episode
        self._started -= float(progress.get("time", 0.0))  # wall time continues, not restarts
        self._reset_episode_stats()

    # ---------------------------------------------------------------- steps
    def _reset_episode_stats(self) -> None:
        self._mode_counts = np.zeros(len(Mode), dtype=np.int64)
        self._q_cert: list[float] = []
        self._episode_t0 = time.perf_counter()

    def step(self) -> StepResult:
        """One training step; at an episode's end, its record, and the evaluation and
        checkpoint that fall due."""
        result = self.train_step()
        self.after_step(result)
        return result

    def train_step(self) -> StepResult:
        """The training agent's step alone (act, env step, replay, update) and its counts; the
        visual trainer times it apart from ``after_step``."""
        result = self.trainer.step()
        self._mode_counts[result.mode] += 1
        q = self.controller.q_cert
        self._q_cert.append(math.nan if q is None else q)
        if result.losses is not None:
            if result.losses.get("actor_loss") is not None:
                self._last_actor_loss = result.losses["actor_loss"]
            if self.trainer.global_step % LOSS_LOG_EVERY == 0:
                self._log_losses(result.losses)
        return result

    def after_step(self, result: StepResult) -> None:
        """At an episode's end: its record, and the evaluation and checkpoint that fall due."""
        if result.episode_ended:
            self._end_episode(result)

    def _end_episode(self, result: StepResult) -> None:
        tr = self.trainer
        length = int(self._mode_counts.sum())
        elapsed = max(time.perf_counter() - self._episode_t0, 1e-9)
        shares = self._mode_counts / max(length, 1)
        record = {
            "type": "episode",
            "episode": tr.episode,
            "global_step": tr.global_step,
            "return": float(tr.episode_rewards[-1]),
            "length": length,
            "success": bool(result.terminated),
            "final_distance": float(np.linalg.norm(result.next_state)),
            "certified_share": float(shares[Mode.CERTIFIED]),
            "relax_share": float(shares[Mode.RELAX]),
            "fallback_share": float(shares[Mode.FALLBACK]),
            "unchecked_share": float(shares[Mode.UNCHECKED]),
            "P_relax": float(self.controller.P_relax),
            "critic_loss": _finite(tr.last_losses.get("critic_loss")),
            "actor_loss": _finite(self._last_actor_loss),
            "sps": length / elapsed,
            "time": time.perf_counter() - self._started,
        }
        self.episodes.append(record)
        if self.writer is not None:
            trace = np.asarray(self._q_cert)
            self.writer.episode(record, trace if np.isfinite(trace).any() else None)
        self._log_episode(record)
        for hook in self.on_episode:
            hook(record)
        if self.evaluations and tr.episode % self.cfg.train.eval_every == 0:
            self.evaluate()
        if tr.episode % self.cfg.train.checkpoint_every == 0:
            self.save_checkpoint()
        self._reset_episode_stats()  # after an inline evaluation, so steps/s leaves it out

    def run(self, progress: bool = True) -> dict[str, Any]:
        """Train until ``train.episodes`` episodes, then ``close()``; a summary dict."""
        from tqdm.auto import tqdm

        total = self.cfg.train.episodes
        bar = tqdm(
            total=total,
            initial=min(self.trainer.episode, total),
            desc=f"{self.cfg.train.algo}",
            unit="ep",
            disable=not progress,
        )

        def show(record: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix_str(
                f"return {record['return']:.1f}, success {self.trainer.success_rate:.0%}, "
                f"{record['sps']:.0f} steps/s"
            )

        def announce(result: EvalResult) -> None:
            bar.write(format_eval_line(result))

        self.on_episode.append(show)
        self.on_eval.append(announce)
        try:
            while self.trainer.episode < total:
                self.step()
            self.close()
        except KeyboardInterrupt:
            # Keep what the finished episodes learned, so --resume continues from here.
            self.save_checkpoint()
            self._close_writers()
            raise
        finally:
            self.on_episode.remove(show)
            self.on_eval.remove(announce)
            bar.close()
        return self.summary()

    # ----------------------------------------------------------- evaluation
    def evaluate(self) -> None:
        """Evaluate the networks as they are now (CALF as deployed, actor, nominal): at once
        when inline, in slices of ``advance`` in the background; when it is done its record
        goes to eval.json, metrics.jsonl, TensorBoard and a report figure, and to ``on_eval``."""
        tr = self.trainer
        td3 = frozen_copy(self.controller.td3) if self.background else self.controller.td3
        run = self.evaluator.start(td3, tr.episode)
        grid = _CriticGrid(td3, self.cfg.env.init_range) if self.figures else None
        self._pending.append(_PendingEvaluation(run, grid, tr.global_step))
        if not self.background:
            self._advance(None)

    @property
    def busy(self) -> bool:
        """Whether episode-end work is under way: an evaluation, or files being written."""
        return bool(self._pending) or (self.writer is not None and self.writer.busy)

    def advance(self, budget_s: float) -> None:
        """Spend about ``budget_s`` seconds on the evaluations due (at least one batched step
        when one is due): the visual trainer's evaluation stage, once per frame."""
        if self._pending:
            self._advance(time.perf_counter() + budget_s)

    def _advance(self, deadline: float | None) -> None:
        while self._pending:
            due = self._pending[0]
            if not due.advance(deadline):
                return
            self._pending.popleft()
            self._publish(due)
            if deadline is not None and time.perf_counter() >= deadline:
                return

    def _publish(self, due: _PendingEvaluation) -> None:
        result = due.run.result()
        record = result.to_json()
        self.evals.append(record)
        self.last_eval = result
        if self.writer is not None:
            self.writer.evaluation(record, due.global_step)
            if due.grid is not None:
                self.writer.report(self._report_parts(result, due))
        if self.tensorboard:
            writer = self._tb()
            for policy in ("calf", "actor", "nominal"):
                for key, value in record[policy].items():
                    if value is not None:
                        writer.add_scalar(f"eval/{policy}_{key}", value, due.global_step)
        for hook in self.on_eval:
            hook(result)

    def _report_parts(self, result: EvalResult, due: _PendingEvaluation) -> ReportParts:
        assert self.folder is not None and due.grid is not None
        calf = result.rollouts["calf"]
        drawn = slice(0, MAX_DRAWN_TRAJECTORIES)  # what the figure draws, no more
        steps = int(calf.lengths[drawn].max()) if calf.states.size else 0
        replay = self.trainer.replay
        size = len(replay)
        # REPLAY_SAMPLE rows whatever the fill (what a report hands over must not grow with the
        # run): a random sample of a larger replay, or all of a smaller one padded with NaN
        # (the figure's histograms skip NaN).
        picked = self._report_rng.integers(0, max(size, 1), REPLAY_SAMPLE)
        rows = np.where(size > REPLAY_SAMPLE, picked, np.arange(REPLAY_SAMPLE) % max(size, 1))
        sample = replay.state[rows].astype(np.float64)
        sample[size:] = np.nan
        return ReportParts(
            episode=result.episode,
            title=f"{self.folder.path.name}: {self.cfg.train.algo}, seed {self.cfg.train.seed}, "
            f"episode {result.episode}, step {due.global_step}",
            critic=due.grid.result(),
            trajectories=calf.states[drawn, : steps + 1] if steps else None,
            trajectory_modes=calf.modes[drawn, :steps] if steps else None,
            replay_sample=sample if size else None,
            replay_size=size,
            init_range=self.cfg.env.init_range,
            goal_radius=self.cfg.env.goal_radius,
        )

    # ---------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path | None:
        """Keep a checkpoint of this episode (once per episode); None without a folder."""
        tr = self.trainer
        if self.folder is None or self.writer is None or self._last_checkpoint == tr.episode:
            return None
        progress = {"global_step": tr.global_step, "time": time.perf_counter() - self._started}
        buffer = io.BytesIO()
        self.controller.save(buffer)
        self.writer.checkpoint(tr.episode, buffer.getvalue(), progress)
        self._last_checkpoint = tr.episode
        return self.folder.checkpoint_path(tr.episode)

    def close(self) -> None:
        """The end of the run: the evaluations due finished, a final evaluation and checkpoint
        unless this episode already has them, every file written, TensorBoard closed. Safe to
        call twice."""
        if self._closed:
            return
        self._closed = True
        self._advance(None)
        if self.evaluations and (
            not self.evals or self.evals[-1]["episode"] != self.trainer.episode
        ):
            self.evaluate()
            self._advance(None)
        self.save_checkpoint()
        self._close_writers()

    def _close_writers(self) -> None:
        self._closed = True
        if self.writer is not None:
            self.writer.close()
        if self._tb_writer is not None:
            self._tb_writer.close()

    def __enter__(self) -> TrainingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # a failed run: keep what was written, add nothing
            self._close_writers()

    # ------------------------------------------------------------ TensorBoard
    def _tb(self) -> Any:
        if self._tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            assert self.folder is not None
            # purge_step: a resumed run drops the points it is about to write again.
            self._tb_writer = SummaryWriter(
                str(self.folder.path), purge_step=self.trainer.global_step or None
            )
        return self._tb_writer

    def _log_episode(self, record: dict[str, Any]) -> None:
        if not self.tensorboard:
            return
        w, step = self._tb(), record["global_step"]
        w.add_scalar("charts/episodic_return", record["return"], step)
        w.add_scalar("charts/episodic_length", record["length"], step)
        w.add_scalar("charts/SPS", record["sps"], step)
        w.add_scalar("charts/success", float(record["success"]), step)
        w.add_scalar("charts/final_distance", record["final_distance"], step)
        w.add_scalar("charts/P_relax", record["P_relax"], step)
        for mode in ("certified", "relax", "fallback"):
            w.add_scalar(f"charts/{mode}_share", record[f"{mode}_share"], step)

    def _log_losses(self, losses: dict[str, float | None]) -> None:
        if not self.tensorboard:
            return
        w, step = self._tb(), self.trainer.global_step
        critic = losses.get("critic_loss")
        if critic is not None:
            # CleanRL's qf_loss: the mean of the two heads' MSE (our critic_loss is their sum).
            w.add_scalar("losses/qf_loss", critic / 2.0, step)
        for key in ("qf1_loss", "qf2_loss"):  # when TD3.train reports the heads apart
            if losses.get(key) is not None:
                w.add_scalar(f"losses/{key}", losses[key], step)
        if self._last_actor_loss is not None:
            w.add_scalar("losses/actor_loss", self._last_actor_loss, step)

    # --------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """What the run did, for a caller's last lines."""
        tr = self.trainer
        stats = self.controller.get_statistics()
        return {
            "algo": self.cfg.train.algo,
            "episodes": tr.episode,
            "steps": tr.global_step,
            "episode_rewards": list(tr.episode_rewards),
            "success_rate_last_20": tr.success_rate,
            "certified_rate": stats["certified_rate"],
            "relax_rate": stats["relax_rate"],
            "fallback_rate": stats["fallback_rate"],
            "P_relax": stats["P_relax"],
            "last_eval": self.last_eval,
            "folder": None if self.folder is None else self.folder.path,
        }


@dataclass
class _PendingEvaluation:
    """An evaluation that fell due at ``global_step``, and the critic grid its report draws."""

    run: EvaluationRun
    grid: _CriticGrid | None
    global_step: int

    def advance(self, deadline: float | None) -> bool:
        if not self.run.done and not self.run.advance(deadline):
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return self.grid is None or self.grid.done
        return self.grid is None or self.grid.advance(deadline)


class _CriticGrid:
    """Q1(s, actor(s)) over the plane around the reset box (``CRITIC_GRID`` points a side),
    ``CRITIC_ROWS_PER_SLICE`` rows per forward, so a frame never waits for all of it."""

    def __init__(self, td3: TD3, init_range: float) -> None:
        self.td3 = td3
        span = 1.5 * init_range
        self.xs = np.linspace(-span, span, CRITIC_GRID)
        self.vs = np.linspace(-span, span, CRITIC_GRID)
        self.q = np.empty((CRITIC_GRID, CRITIC_GRID))
        self.rows_done = 0

    @property
    def done(self) -> bool:
        return self.rows_done == CRITIC_GRID

    def advance(self, deadline: float | None) -> bool:
        td3 = self.td3
        with td3.forward_counter.tag(EVAL_TAG):
            while not self.done:
                rows = slice(
                    self.rows_done, min(self.rows_done + CRITIC_ROWS_PER_SLICE, CRITIC_GRID)
                )
                xx, vv = np.meshgrid(self.xs, self.vs[rows])
                states = np.stack([xx.ravel(), vv.ravel()], axis=1)
                _, q = td3.act_and_q1(td3.to_tensor(states))
                self.q[rows] = q.cpu().numpy().astype(np.float64).reshape(-1, CRITIC_GRID)
                self.rows_done = rows.stop
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        return self.done

    def result(self) -> CriticGrid:
        return CriticGrid(self.xs, self.vs, self.q)
