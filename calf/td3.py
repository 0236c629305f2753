"""TD3 (Fujimoto et al., 2018): a deterministic actor, a twin critic, delayed policy updates.

Read top to bottom: the networks, the reference update, then the agent (acting, learning,
checkpoints). The default update is ``calf.fused_update.FusedUpdate``: the same arithmetic as
``ReferenceUpdate`` in a fraction of the ops; ``TD3(fused_update=False)`` runs the reference.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import nn

from calf.checkpoint import CheckpointError, read_checkpoint, require, write_checkpoint
from calf.config import TD3Config
from calf.counters import ForwardCounter
from calf.flat import FlatParams
from calf.fused_update import FusedUpdate
from calf.replay import ReplayBuffer
from calf.twin_critic import ActorPass, Q1Pass, TwinCriticPass
from calf.validation import as_state, as_state_batch

WEIGHT_BIAS = ("weight", "bias")


def _linear_layers(net: nn.Sequential) -> tuple[nn.Linear, ...]:
    return tuple(m for m in net if isinstance(m, nn.Linear))


def _mlp(x: torch.Tensor, layers: tuple[nn.Linear, ...]) -> torch.Tensor:
    """Linear -> ReLU -> ... -> Linear, as ``nn.Sequential`` would compute it."""
    for layer in layers[:-1]:
        x = F.relu(F.linear(x, layer.weight, layer.bias))
    last = layers[-1]
    return F.linear(x, last.weight, last.bias)


class Actor(nn.Module):
    """s -> a in [-max_action, max_action]."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float,
        hidden_dim: int = TD3Config.hidden_dim,
    ):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, action_dim),
            nn.Tanh(),
        )
        self.max_action = float(max_action)

        # The Linear layers, kept outside the module registry (a plain tuple), so forward can
        # call them functionally: the same arithmetic as running ``self.net``, without the
        # nested module calls that dominate the cost of a forward at small N.
        self._layers = _linear_layers(self.net)
        # The same parameters as views into one flat tensor, for the fused update.
        self.flat = FlatParams([[(layer, name)] for layer in self._layers for name in WEIGHT_BIAS])

    def forward(self, state: torch.Tensor, *, fused_pass: ActorPass | None = None) -> torch.Tensor:
        """``fused_pass``: run the fused update's pass instead (activations kept for its
        hand-written backward); still one counted actor forward."""
        if fused_pass is not None:
            self.flat.ensure_bound()
            return fused_pass.forward(self.flat.blocks, state)
        return torch.tanh(_mlp(state, self._layers)) * self.max_action


class Critic(nn.Module):
    """Twin Q heads: ``critic(s, a) -> (q1, q2)``, each of shape (N, 1).

    One module over both heads: ``q1_net`` and ``q2_net`` keep their ``nn.Sequential`` layout
    (``state_dict`` keys ``q1_net.*``/``q2_net.*``), while their parameters are views into one
    flat tensor with the heads' weights stacked layer by layer (``self.flat``), so the fused
    update runs both heads as one batched matmul (``calf.twin_critic``)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = TD3Config.hidden_dim):
        super().__init__()

        def head() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(state_dim + action_dim, hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, 1),
            )

        self.q1_net = head()
        self.q2_net = head()
        self._q1_layers = _linear_layers(self.q1_net)
        self._q2_layers = _linear_layers(self.q2_net)
        self.flat = FlatParams(
            [
                [(l1, name), (l2, name)]
                for l1, l2 in zip(self._q1_layers, self._q2_layers, strict=True)
                for name in WEIGHT_BIAS
            ]
        )

    def forward(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        q1_only: bool = False,
        *,
        fused_pass: TwinCriticPass | Q1Pass | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """``(q1, q2)``; with ``q1_only`` just ``(q1,)`` (acting and the actor loss need only
        Q1, the Lyapunov candidate), still one counted critic forward. ``fused_pass``: run the
        fused update's pass instead (a ``TwinCriticPass`` for both heads, a ``Q1Pass`` with
        ``q1_only``), activations kept for its hand-written backward."""
        if fused_pass is not None:
            if isinstance(fused_pass, Q1Pass) != q1_only:
                raise ValueError("a Q1Pass goes with q1_only=True, a TwinCriticPass without")
            self.flat.ensure_bound()
            q = fused_pass.forward(self.flat.blocks, state, action)
            return fused_pass.heads if isinstance(fused_pass, TwinCriticPass) else (q,)
        sa = torch.cat([state, action], dim=1)
        q1 = _mlp(sa, self._q1_layers)
        if q1_only:
            return (q1,)
        return q1, _mlp(sa, self._q2_layers)


class UpdateRule(Protocol):
    """One TD3 gradient step on ``td3``'s networks: (critic loss, actor loss or None)."""

    def __call__(
        self, replay: ReplayBuffer, batch_size: int, policy_step: bool
    ) -> tuple[float, float | None]: ...


class ReferenceUpdate:
    """The straightforward TD3 update: autograd, ``torch.optim.Adam``, per-parameter soft
    update. The fused update is proven against it (``tests/test_td3_update.py``)."""

    def __init__(self, td3: TD3) -> None:
        self.td3 = td3

    def __call__(
        self, replay: ReplayBuffer, batch_size: int, policy_step: bool
    ) -> tuple[float, float | None]:
        td3 = self.td3
        state, action, reward, next_state, not_done = (
            t.to(td3.dtype) for t in replay.sample(batch_size, td3.device, td3.sample_rng)
        )
        with torch.no_grad():
            noise = (
                torch.randn(
                    action.shape, generator=td3.torch_gen, device=td3.device, dtype=td3.dtype
                )
                * td3.policy_noise
            )
            noise = noise.clamp(-td3.noise_clip, td3.noise_clip)
            next_action = (td3.actor_target(next_state) + noise).clamp(
                -td3.max_action, td3.max_action
            )
            target_q1, target_q2 = td3.critic_target(next_state, next_action)
            target_q = reward + not_done * td3.discount * torch.min(target_q1, target_q2)

        current_q1, current_q2 = td3.critic(state, action)
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        td3.critic_optimizer.zero_grad()
        critic_loss.backward()
        td3.critic_optimizer.step()

        actor_loss_value: float | None = None
        if policy_step:
            actor_loss = -td3.critic(state, td3.actor(state), q1_only=True)[0].mean()
            td3.actor_optimizer.zero_grad()
            actor_loss.backward()
            td3.actor_optimizer.step()
            actor_loss_value = float(actor_loss.item())
            td3._soft_update(td3.critic, td3.critic_target)
            td3._soft_update(td3.actor, td3.actor_target)
        return float(critic_loss.item()), actor_loss_value


class TD3:
    """The TD3 agent: acting (single and batched), one gradient step at a time, checkpoints."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float,
        hidden_dim: int = TD3Config.hidden_dim,
        lr: float = TD3Config.lr,
        discount: float = TD3Config.discount,
        tau: float = TD3Config.tau,
        policy_noise: float = TD3Config.policy_noise,
        noise_clip: float = TD3Config.noise_clip,
        policy_delay: int = TD3Config.policy_delay,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        fused_update: bool = TD3Config.fused_update,
    ) -> None:
        """The defaults are the run's (``TD3Config``). ``fused_update``: train with
        ``FusedUpdate`` (default) or ``ReferenceUpdate``; both compute the same step to float
        rounding and read and write the same checkpoints."""
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.max_action = float(max_action)
        self.hidden_dim = int(hidden_dim)
        self.lr = float(lr)
        self.discount = float(discount)
        self.tau = float(tau)
        self.policy_noise = float(policy_noise)
        self.noise_clip = float(noise_clip)
        self.policy_delay = int(policy_delay)
        self.device = torch.device(device)
        # float64 networks make the batch and single paths agree to ~1e-16 (tests use it).
        self.dtype = dtype
        self._np_dtype = torch.empty(0, dtype=dtype).numpy().dtype

        # Seeded weights without touching the global torch generator.
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.actor = Actor(state_dim, action_dim, max_action, hidden_dim)
            self.critic = Critic(state_dim, action_dim, hidden_dim)
        self.actor.to(device=self.device, dtype=dtype)
        self.critic.to(device=self.device, dtype=dtype)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        # foreach: one fused kernel per step over all tensors instead of a Python loop over
        # them (the TD3 update runs every frame of the visual trainer).
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr, foreach=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, foreach=True)

        # Exploration noise comes from this generator; replace it to feed known draws.
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        # Target-policy smoothing noise and replay sampling use their own streams.
        self.torch_gen = torch.Generator(device=self.device)
        self.torch_gen.manual_seed(0 if seed is None else seed)
        self.sample_rng = np.random.default_rng(None if seed is None else seed + 1)
        self.total_it = 0

        self.fused_update = bool(fused_update)
        self._update: UpdateRule = FusedUpdate(self) if fused_update else ReferenceUpdate(self)

        self.forward_counter = ForwardCounter(
            {
                "actor": self.actor,
                "critic": self.critic,
                "actor_target": self.actor_target,
                "critic_target": self.critic_target,
            }
        )

    # ------------------------------------------------------------------ acting
    def to_tensor(self, states: NDArray[np.float64]) -> torch.Tensor:
        """A validated float64 numpy batch -> a tensor of the network dtype on the device (one
        transfer; on CPU a cast plus ``from_numpy``, the cheapest way in)."""
        arr = np.ascontiguousarray(states, dtype=self._np_dtype)
        if not arr.flags.writeable:  # from_numpy warns on read-only memory
            arr = arr.copy()
        t = torch.from_numpy(arr)
        return t if self.device.type == "cpu" else t.to(self.device)

    def act_tensor(
        self, states: torch.Tensor, noise: float = 0.0, rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """Actor on a (N, state_dim) tensor already on the device, plus clipped Gaussian
        exploration noise of std ``noise * max_action`` drawn from ``rng`` (default
        ``self.rng``), row by row in order, as N single calls would draw it."""
        with torch.no_grad():
            actions = self.actor(states)
            if noise > 0.0:
                actions = self._add_noise(actions, noise, rng)
        return actions

    def act_and_q1(
        self, states: torch.Tensor, noise: float = 0.0, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions (N, action_dim), Q1(s, a) (N, 1)): one actor and one critic forward."""
        with torch.no_grad():
            actions = self.actor(states)
            if noise > 0.0:
                actions = self._add_noise(actions, noise, rng)
            (q1,) = self.critic(states, actions, q1_only=True)
        return actions, q1

    def _add_noise(
        self, actions: torch.Tensor, noise: float, rng: np.random.Generator | None
    ) -> torch.Tensor:
        gen = self.rng if rng is None else rng
        # Row-major draws: N single-row calls on the same generator draw the same numbers.
        eps = gen.normal(0.0, noise * self.max_action, size=tuple(actions.shape))
        actions = actions + torch.as_tensor(eps, dtype=actions.dtype, device=actions.device)
        return actions.clamp(-self.max_action, self.max_action)

    def select_action(self, state: ArrayLike, noise: float = 0.0) -> NDArray[np.float64]:
        """One state (state_dim,) -> one action (action_dim,)."""
        s = as_state(state, self.state_dim)
        s_t = self.to_tensor(s[None, :])
        return self.act_tensor(s_t, noise)[0].cpu().numpy().astype(np.float64)

    def select_action_batch(self, states: ArrayLike, noise: float = 0.0) -> NDArray[np.float64]:
        """(N, state_dim) -> (N, action_dim) in one actor forward; N = 0 gives an empty array."""
        s = as_state_batch(states, self.state_dim)
        if s.shape[0] == 0:
            return np.zeros((0, self.action_dim), dtype=np.float64)
        return self.act_tensor(self.to_tensor(s), noise).cpu().numpy().astype(np.float64)

    # ---------------------------------------------------------------- learning
    def train(
        self, replay: ReplayBuffer, batch_size: int = TD3Config.batch_size
    ) -> dict[str, float | None]:
        """One TD3 gradient step; the actor and targets move every ``policy_delay`` steps.

        Returns the critic loss and, on policy steps, the actor loss (else None).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(replay) < batch_size:
            raise ValueError(f"replay holds {len(replay)} transitions, fewer than {batch_size}")
        self.total_it += 1
        with self.forward_counter.tag("training"):
            critic_loss, actor_loss = self._update(
                replay, batch_size, policy_step=self.total_it % self.policy_delay == 0
            )
        return {"critic_loss": critic_loss, "actor_loss": actor_loss}

    def _soft_update(self, source: nn.Module, target: nn.Module) -> None:
        # target <- (1 - tau) target + tau source, for all tensors in one fused call.
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), self.tau)

    # ------------------------------------------------------------- checkpoints
    def config(self) -> dict[str, Any]:
        return {
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "max_action": self.max_action,
            "hidden_dim": self.hidden_dim,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "total_it": self.total_it,
        }

    def load_state_dict(
        self, data: dict[str, Any], path: str | os.PathLike[str] = "<memory>"
    ) -> None:
        """Load everything or nothing: the dict is checked against copies first, so a bad
        entry raises CheckpointError and leaves this agent as it was."""
        if not isinstance(data, dict):
            raise CheckpointError(path, f"TD3 state is a {type(data).__name__}, not a dict")
        config = require(path, data, "config")
        if config != self.config():
            raise CheckpointError(path, f"network shape {config} does not match {self.config()}")
        staged = {}
        for name in ("actor", "actor_target", "critic", "critic_target"):
            module = copy.deepcopy(getattr(self, name))
            try:
                module.load_state_dict(require(path, data, name))
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise CheckpointError(
                    path, f"bad {name} weights: {str(exc).splitlines()[0]}"
                ) from None
            staged[name] = module
        for name, params in (("actor_optimizer", "actor"), ("critic_optimizer", "critic")):
            trial = torch.optim.Adam(staged[params].parameters(), lr=self.lr, foreach=True)
            try:
                trial.load_state_dict(require(path, data, name))
            except (ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as e:
                raise CheckpointError(path, f"bad {name} state: {e}") from None
        total_it = require(path, data, "total_it")
        if not isinstance(total_it, int) or isinstance(total_it, bool) or total_it < 0:
            raise CheckpointError(path, "total_it is not an integer")
        # Everything checked: now the real modules (hooks stay attached to them).
        for name in ("actor", "actor_target", "critic", "critic_target"):
            getattr(self, name).load_state_dict(data[name])
        self.actor_optimizer.load_state_dict(data["actor_optimizer"])
        self.critic_optimizer.load_state_dict(data["critic_optimizer"])
        self.total_it = total_it

    def save(self, path: str | os.PathLike[str]) -> None:
        write_checkpoint(path, "td3", self.state_dict())

    def load(self, path: str | os.PathLike[str]) -> None:
        self.load_state_dict(read_checkpoint(path, "td3"), path)
