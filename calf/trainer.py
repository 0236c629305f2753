"""The training agent's loop: act, step the env, store the transition, one TD3 update.

``AgentTrainer.step()`` is one step of that loop; the visual trainer calls it once per frame and
``run_training`` calls it in a plain loop (``python -m calf``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calf.controller import CALFController
from calf.envs import PointMassEnv, PointMassParams
from calf.modes import Mode
from calf.nominal import pd_nominal_policy
from calf.replay import ReplayBuffer

ALGOS = ("calf", "td3")


@dataclass
class TrainerConfig:
    algo: str = "calf"  # "calf", or "td3" for the plain TD3 agent (no certificate)
    seed: int = 0
    device: str = "cpu"
    env: PointMassParams = field(default_factory=PointMassParams)
    learning_starts: int = 1000  # random actions until then, and no updates
    batch_size: int = 256
    exploration_noise: float = 0.1
    replay_capacity: int = 100_000
    learn: bool = True  # False: act only (evaluation)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")


@dataclass
class StepResult:
    state: np.ndarray
    action: np.ndarray
    mode: Mode
    reward: float
    next_state: np.ndarray
    episode_ended: bool
    losses: dict[str, float | None] | None


def make_controller(cfg: TrainerConfig) -> CALFController:
    p = cfg.env
    return CALFController(
        2, 1, p.max_action, pd_nominal_policy(p.max_action), seed=cfg.seed, device=cfg.device
    )


class AgentTrainer:
    """One training agent on a PointMassEnv, learning from its own transitions."""

    def __init__(self, cfg: TrainerConfig, controller: CALFController | None = None) -> None:
        self.cfg = cfg
        self.controller = controller or make_controller(cfg)
        self.env = PointMassEnv(cfg.env)
        self.replay = ReplayBuffer(2, 1, cfg.replay_capacity)
        self.rng = np.random.default_rng(cfg.seed)
        self.state, _ = self.env.reset(seed=cfg.seed)
        self.global_step = 0
        self.episode = 0
        self.episode_reward = 0.0
        self.episode_rewards: list[float] = []
        self.recent_success: deque[bool] = deque(maxlen=20)
        self.last_losses: dict[str, float | None] = {"critic_loss": None, "actor_loss": None}

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.recent_success)) if self.recent_success else 0.0

    def act(self, state: np.ndarray) -> tuple[np.ndarray, Mode]:
        """The action the agent takes now, and its mode (warm-up and TD3-only steps are
        ``Mode.UNCHECKED``: no certificate was asked about)."""
        cfg = self.cfg
        if cfg.learn and self.global_step < cfg.learning_starts:
            a = self.rng.uniform(-cfg.env.max_action, cfg.env.max_action, size=1)
            return a, Mode.UNCHECKED
        noise = cfg.exploration_noise if cfg.learn else 0.0
        if cfg.algo == "td3":
            return self.controller.td3.select_action(state, noise), Mode.UNCHECKED
        return self.controller.select_action_with_mode(state, noise)

    def step(self) -> StepResult:
        """One environment step, its replay entry and (after warm-up) one TD3 update. Its
        network calls count under the forward counter's "training" tag."""
        with self.controller.td3.forward_counter.tag("training"):
            state = self.state
            action, mode = self.act(state)
            next_state, reward, terminated, truncated, _ = self.env.step(action)
            losses = None
            if self.cfg.learn:
                self.replay.add(state, action, reward, next_state, terminated)
                # Learn once past the warm-up and once the replay holds a full batch (a warm-up
                # shorter than the batch size must not make TD3.train refuse the replay).
                if (
                    self.global_step >= self.cfg.learning_starts
                    and len(self.replay) >= self.cfg.batch_size
                ):
                    losses = self.controller.train(self.replay, self.cfg.batch_size)
                    self.last_losses = losses
        self.global_step += 1
        self.episode_reward += reward
        ended = terminated or truncated
        if ended:
            self.episode_rewards.append(self.episode_reward)
            self.recent_success.append(bool(terminated))
            self.episode += 1
            self.episode_reward = 0.0
            self.state, _ = self.env.reset()
            self.controller.reset_certificate()
        else:
            self.state = next_state
        return StepResult(state, action, mode, reward, next_state, ended, losses)


def run_training(cfg: TrainerConfig, episodes: int, progress: bool = True) -> dict[str, Any]:
    """Train for ``episodes`` episodes; a summary dict at the end."""
    trainer = AgentTrainer(cfg)
    bar = tqdm(total=episodes, desc=f"{cfg.algo} training", unit="ep", disable=not progress)
    while trainer.episode < episodes:
        result = trainer.step()
        if result.episode_ended:
            bar.update(1)
            bar.set_postfix(
                reward=f"{trainer.episode_rewards[-1]:.1f}", success=f"{trainer.success_rate:.0%}"
            )
    bar.close()
    stats = trainer.controller.get_statistics()
    return {
        "algo": cfg.algo,
        "episodes": trainer.episode,
        "steps": trainer.global_step,
        "episode_rewards": trainer.episode_rewards,
        "success_rate_last_20": trainer.success_rate,
        "certified_rate": stats["certified_rate"],
        "relax_rate": stats["relax_rate"],
        "fallback_rate": stats["fallback_rate"],
        "P_relax": stats["P_relax"],
        "trainer": trainer,
    }
