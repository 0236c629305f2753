"""The training agent's loop: act, step the env, store the transition, one TD3 update.

``AgentTrainer.step()`` is one step of that loop. ``TrainingSession`` (calf/session.py) drives it
for ``python -m calf`` and the visual trainer and adds evaluations and the run folder.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from calf.config import ALGOS, RunConfig
from calf.controller import CALFController
from calf.envs import PointMassEnv
from calf.modes import Mode
from calf.nominal import pd_from_config
from calf.replay import ReplayBuffer

__all__ = ["ALGOS", "AgentTrainer", "StepResult", "make_controller"]


@dataclass
class StepResult:
    state: np.ndarray
    action: np.ndarray
    mode: Mode
    reward: float
    next_state: np.ndarray
    episode_ended: bool
    losses: dict[str, float | None] | None
    terminated: bool = False  # the episode ended in the goal radius


def make_controller(cfg: RunConfig, **overrides: Any) -> CALFController:
    """The CALF controller (networks, certificate, nominal fallback) the config describes;
    ``overrides`` replace or add ``CALFController`` arguments (tests: a float64 ``dtype``,
    injected generators, other CALF parameters)."""
    t, calf = cfg.td3, cfg.calf
    settings: dict[str, Any] = {
        "nu_bar": calf.nu_bar,
        "kappa_low_coef": calf.kappa_low_coef,
        "kappa_up_coef": calf.kappa_up_coef,
        "lambda_relax": calf.lambda_relax,
        "relax_prob_init": calf.relax_prob_init,
        "hidden_dim": t.hidden_dim,
        "lr": t.lr,
        "device": cfg.train.device,
        "seed": cfg.train.seed,
        "discount": t.discount,
        "tau": t.tau,
        "policy_noise": t.policy_noise,
        "noise_clip": t.noise_clip,
        "policy_delay": t.policy_delay,
        "fused_update": t.fused_update,
    }
    return CALFController(2, 1, cfg.env.max_action, pd_from_config(cfg), **settings | overrides)


class AgentTrainer:
    """One training agent on a PointMassEnv, learning from its own transitions.

    ``learn=False`` acts only (no replay, no updates, no exploration noise)."""

    def __init__(
        self, cfg: RunConfig, controller: CALFController | None = None, learn: bool = True
    ) -> None:
        self.cfg = cfg
        self.learn = learn
        self.controller = controller or make_controller(self.cfg)
        self.env = PointMassEnv(self.cfg.env.params())
        self.replay = ReplayBuffer(2, 1, self.cfg.td3.replay_capacity)
        seed = self.cfg.train.seed
        self.rng = np.random.default_rng(seed)
        self.state, _ = self.env.reset(seed=seed)
        self.global_step = 0
        self.episode = 0
        self.episode_reward = 0.0
        self.episode_length = 0
        self.episode_rewards: list[float] = []
        self.recent_success: deque[bool] = deque(maxlen=20)
        self.last_losses: dict[str, float | None] = {"critic_loss": None, "actor_loss": None}

    @property
    def success_rate(self) -> float:
        """Share of the last 20 episodes that reached the goal."""
        return float(np.mean(self.recent_success)) if self.recent_success else 0.0

    def act(self, state: np.ndarray) -> tuple[np.ndarray, Mode]:
        """The action the agent takes now, and its mode (warm-up and TD3-only steps are
        ``Mode.UNCHECKED``: no certificate was asked about)."""
        t = self.cfg.td3
        if self.learn and self.global_step < t.learning_starts:
            bound = self.cfg.env.max_action
            return self.rng.uniform(-bound, bound, size=1), Mode.UNCHECKED
        noise = t.exploration_noise if self.learn else 0.0
        if self.cfg.train.algo == "td3":
            return self.controller.td3.select_action(state, noise), Mode.UNCHECKED
        return self.controller.select_action_with_mode(state, noise)

    def step(self) -> StepResult:
        """One environment step, its replay entry and (after warm-up) one TD3 update. Its
        network calls count under the forward counter's "training" tag."""
        batch_size = self.cfg.td3.batch_size
        with self.controller.td3.forward_counter.tag("training"):
            state = self.state
            action, mode = self.act(state)
            next_state, reward, terminated, truncated, _ = self.env.step(action)
            losses = None
            if self.learn:
                self.replay.add(state, action, reward, next_state, terminated)
                # Learn once past the warm-up and once the replay holds a full batch (a warm-up
                # shorter than the batch size must not make TD3.train refuse the replay).
                if (
                    self.global_step >= self.cfg.td3.learning_starts
                    and len(self.replay) >= batch_size
                ):
                    losses = self.controller.train(self.replay, batch_size)
                    self.last_losses = losses
        self.global_step += 1
        self.episode_reward += reward
        self.episode_length += 1
        ended = terminated or truncated
        if ended:
            self.episode_rewards.append(self.episode_reward)
            self.recent_success.append(bool(terminated))
            self.episode += 1
            self.episode_reward = 0.0
            self.episode_length = 0
            self.state, _ = self.env.reset()
            self.controller.reset_certificate()
        else:
            self.state = next_state
        return StepResult(state, action, mode, reward, next_state, ended, losses, terminated)
