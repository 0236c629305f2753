"""A training session: the training agent plus everything around it that a researcher reads.

``TrainingSession`` owns an ``AgentTrainer`` and, when given a ``RunFolder``, writes the run: the
resolved config, one metrics line per episode, an evaluation every ``train.eval_every`` episodes
(``eval.json``, report figure, TensorBoard), a kept checkpoint every ``train.checkpoint_every``
episodes, and at ``close()`` a final evaluation and checkpoint. ``python -m calf`` calls
``run()``; the visual trainer calls ``step()`` once per frame and ``close()`` at exit, and can
subscribe to ``on_episode`` / ``on_eval``. Both write the same run folder.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from calf.checkpoint import CheckpointError
from calf.config import ConfigError, RunConfig
from calf.controller import CALFController
from calf.evaluation import EVAL_TAG, EvalResult, Evaluator, format_eval_line
from calf.modes import Mode
from calf.run_folder import RunFolder, RunFolderError
from calf.trainer import AgentTrainer, StepResult, make_controller

Q_CERT_EPISODES = 6  # certificate traces kept for the report (the last episodes)
LOSS_LOG_EVERY = 100  # steps between TensorBoard loss points (CleanRL's cadence)
CRITIC_GRID = 81  # points per axis of the report's critic contour


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
    ) -> None:
        """``evaluations=False``: no evaluation rollouts at all (runs that only measure the
        frame, and runs that evaluate a fixed checkpoint)."""
        self.cfg = cfg
        self.folder = folder
        self.trainer = AgentTrainer(cfg, controller, learn=learn)
        self.controller = self.trainer.controller
        self.evaluator = Evaluator(cfg)
        self.evaluations = evaluations
        self.figures = figures and folder is not None
        self.tensorboard = tensorboard and folder is not None
        self.episodes: list[dict[str, Any]] = []  # the "episode" records of metrics.jsonl
        self.evals: list[dict[str, Any]] = []  # eval.json records, oldest first
        self.last_eval: EvalResult | None = None
        self.on_episode: list[Callable[[dict[str, Any]], None]] = []
        self.on_eval: list[Callable[[EvalResult], None]] = []
        self.q_cert_traces: deque[tuple[int, np.ndarray]] = deque(maxlen=Q_CERT_EPISODES)
        self._writer: Any = None
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
        session._restore(saved.episode, saved.progress, records)
        return session

    def _restore(self, episode: int, progress: dict[str, Any], records: list[dict]) -> None:
        tr = self.trainer
        self.episodes = [r for r in records if r.get("type") == "episode"]
        self.evals = [
            {k: v for k, v in r.items() if k not in ("type", "global_step")}
            for r in records
            if r.get("type") == "eval"
        ]
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
        if np.isfinite(self._q_cert).any():
            self.q_cert_traces.append((tr.episode, np.asarray(self._q_cert)))
        if self.folder is not None:
            self.folder.append_metrics(record)
        self._log_episode(record)
        for hook in self.on_episode:
            hook(record)
        if self.evaluations and tr.episode % self.cfg.train.eval_every == 0:
            self.evaluate()
        if tr.episode % self.cfg.train.checkpoint_every == 0:
            self.save_checkpoint()
        self._reset_episode_stats()  # after the evaluation, so steps/s leaves it out

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
            if self._writer is not None:
                self._writer.close()
            self._closed = True
            raise
        finally:
            self.on_episode.remove(show)
            self.on_eval.remove(announce)
            bar.close()
        return self.summary()

    # ----------------------------------------------------------- evaluation
    def evaluate(self) -> EvalResult:
        """Evaluate now (CALF as deployed, actor, nominal); write eval.json, a metrics line,
        TensorBoard scalars and the report figure."""
        tr = self.trainer
        result = self.evaluator.evaluate(self.controller.td3, tr.episode)
        record = result.to_json()
        self.evals.append(record)
        self.last_eval = result
        if self.folder is not None:
            self.folder.write_eval(record)
            self.folder.append_metrics({"type": "eval", "global_step": tr.global_step, **record})
        if self.tensorboard:
            writer = self._tb()
            for policy in ("calf", "actor", "nominal"):
                for key, value in record[policy].items():
                    if value is not None:
                        writer.add_scalar(f"eval/{policy}_{key}", value, tr.global_step)
        if self.figures:
            self.write_report(result)
        for hook in self.on_eval:
            hook(result)
        return result

    def write_report(self, result: EvalResult | None = None) -> list[Path]:
        """The report figure for ``result`` (default: the latest evaluation), numbered and as
        report.png."""
        from calf.report import ReportData, save_report

        if self.folder is None:
            raise RunFolderError("this session has no run folder to write a report into")
        result = result or self.last_eval
        episode = self.trainer.episode if result is None else result.episode
        calf = None if result is None else result.rollouts.get("calf")
        replay = self.trainer.replay
        data = ReportData(
            title=f"{self.folder.path.name}: {self.cfg.train.algo}, seed {self.cfg.train.seed}, "
            f"episode {episode}, step {self.trainer.global_step}",
            episodes=self.episodes,
            evals=self.evals,
            critic=self.critic_grid(),
            trajectories=None if calf is None or not calf.states.size else calf.states,
            trajectory_modes=None if calf is None or not calf.modes.size else calf.modes,
            q_cert_traces=list(self.q_cert_traces),
            replay_states=np.asarray(replay.state[: len(replay)], dtype=np.float64),
            init_range=self.cfg.env.init_range,
            goal_radius=self.cfg.env.goal_radius,
        )
        return save_report(data, self.folder.figure_path(episode), self.folder.report_path)

    def critic_grid(self, n: int = CRITIC_GRID) -> Any:
        """Q1(s, actor(s)) over the plane around the reset box, in one forward."""
        from calf.report import CriticGrid

        td3 = self.controller.td3
        span = 1.5 * self.cfg.env.init_range
        xs = np.linspace(-span, span, n)
        vs = np.linspace(-span, span, n)
        xx, vv = np.meshgrid(xs, vs)
        grid = np.stack([xx.ravel(), vv.ravel()], axis=1)
        with td3.forward_counter.tag(EVAL_TAG):
            _, q = td3.act_and_q1(td3.to_tensor(grid))
        return CriticGrid(xs, vs, q.cpu().numpy().astype(np.float64).reshape(n, n))

    # ---------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path | None:
        """Keep a checkpoint of this episode (once per episode); None without a folder."""
        tr = self.trainer
        if self.folder is None or self._last_checkpoint == tr.episode:
            return None
        progress = {"global_step": tr.global_step, "time": time.perf_counter() - self._started}
        path = self.folder.save_checkpoint(self.controller.save, tr.episode, progress)
        self._last_checkpoint = tr.episode
        return path

    def close(self) -> None:
        """The end of the run: a final evaluation and checkpoint unless this episode already
        has them, and the TensorBoard file closed. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.evaluations and (
            not self.evals or self.evals[-1]["episode"] != self.trainer.episode
        ):
            self.evaluate()
        self.save_checkpoint()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> TrainingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self._writer is not None:  # a failed run: keep what was written, add nothing
            self._writer.close()
            self._closed = True

    # ------------------------------------------------------------ TensorBoard
    def _tb(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            assert self.folder is not None
            # purge_step: a resumed run drops the points it is about to write again.
            self._writer = SummaryWriter(
                str(self.folder.path), purge_step=self.trainer.global_step or None
            )
        return self._writer

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
