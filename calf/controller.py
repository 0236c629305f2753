"""CALF: Critic As Lyapunov Function, a safe actor-critic controller on top of TD3.

The rule itself (calf/certificate.py) is written once, vectorised over agents. The controller
runs it for two kinds of agent sharing its networks, each call one actor and one critic forward
then ``calf_step`` on the rows:

- the training agent: ``select_action`` (its state is a ``CALFAgents`` of one row, shown as plain
  attributes: ``P_relax``, ``q_cert``, ``total_steps``...);
- the batch agents: ``select_action_batch_codes`` acts for N of them at once, each row an
  independent CALF agent (own certificate, own P_relax, own counters), with no Python loop over
  agents.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from calf.certificate import CALFAgents, RelaxDraws, calf_step
from calf.checkpoint import (
    CALF_COUNTS,
    CALF_NUMBERS,
    check_calf_entry,
    read_checkpoint,
    require,
    write_checkpoint,
)
from calf.config import CALFConfig, TD3Config
from calf.modes import Mode, mode_names, upstream_name
from calf.replay import ReplayBuffer
from calf.td3 import TD3
from calf.validation import as_row_indices, as_state, as_state_batch

NominalPolicy = Callable[[NDArray[np.float64]], ArrayLike]


class _TrainingAgentField:
    """Row 0 of the controller's ``training_agent`` as a plain attribute (``controller.P_relax``,
    ``controller.total_steps``, ...), read and written as the number it stands for. The
    certificate reads None while the agent has none, as does ``last_q`` before the first step;
    writing None to ``q_cert`` forgets the certificate."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.is_cert = name in ("s_cert", "a_cert", "q_cert")
        self.nan_is_none = name == "last_q"

    # The panel reads eight of these every frame. ``column.item(0)`` costs ~60 ns where
    # ``column[0].item()`` costs ~450 ns (a numpy scalar made, then converted): with that and a
    # np.isnan per read, bench_stats' cached panel frame went from 10 to 21 us.
    def __get__(self, controller: CALFController | None, owner: type | None = None) -> Any:
        if controller is None:
            return self
        agent = controller.training_agent
        if self.is_cert and not agent.has_cert[0]:
            return None
        column = getattr(agent, self.name)
        if column.ndim > 1:
            return column[0].copy()
        value = column.item(0)
        if self.nan_is_none and value != value:  # NaN: no Q yet
            return None
        return value

    def __set__(self, controller: CALFController, value: Any) -> None:
        agent = controller.training_agent
        if self.name == "q_cert":
            agent.has_cert[0] = value is not None
        if value is None:  # no certificate (its fields read zero), no Q yet (NaN)
            value = np.nan if self.name == "last_q" else 0.0
        getattr(agent, self.name)[0] = value


class CALFController:
    """A TD3 agent whose actions are certified by its critic, with a safe nominal fallback."""

    # The training agent's state, row 0 of ``training_agent``.
    s_cert = _TrainingAgentField()
    a_cert = _TrainingAgentField()
    q_cert = _TrainingAgentField()
    P_relax = _TrainingAgentField()
    last_q = _TrainingAgentField()  # Q(s, a) of the last select_action, for the panel
    total_steps = _TrainingAgentField()
    certified_steps = _TrainingAgentField()
    relax_events = _TrainingAgentField()
    nominal_interventions = _TrainingAgentField()

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float,
        nominal_policy: NominalPolicy,
        nu_bar: float = CALFConfig.nu_bar,
        kappa_low_coef: float = CALFConfig.kappa_low_coef,
        kappa_up_coef: float = CALFConfig.kappa_up_coef,
        lambda_relax: float = CALFConfig.lambda_relax,
        relax_prob_init: float = CALFConfig.relax_prob_init,
        hidden_dim: int = TD3Config.hidden_dim,
        lr: float = TD3Config.lr,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        noise_rng: np.random.Generator | None = None,
        relax_rng: np.random.Generator | None = None,
        batch_noise_rng: np.random.Generator | None = None,
        batch_relax_rng: np.random.Generator | None = None,
        td3: TD3 | None = None,
        **td3_kwargs: Any,
    ) -> None:
        """The defaults are the run's (``RunConfig``'s calf and td3 sections). ``td3``: networks
        to share with another controller (``PerAgentLoop`` builds its per-agent controllers on
        the parent's); when given, ``hidden_dim``, ``lr``, ``device``, ``dtype`` and
        ``td3_kwargs`` are not used."""
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.max_action = float(max_action)
        self.nominal_policy = nominal_policy
        self.nu_bar = float(nu_bar)
        self.kappa_low_coef = float(kappa_low_coef)
        self.kappa_up_coef = float(kappa_up_coef)
        self.lambda_relax = float(lambda_relax)
        self.relax_prob_init = float(relax_prob_init)

        # Four independent streams, so batch calls never shift the training agent's draws.
        streams = np.random.SeedSequence(seed).spawn(4)

        def stream(given: np.random.Generator | None, i: int) -> np.random.Generator:
            return given if given is not None else np.random.default_rng(streams[i])

        self.noise_rng = stream(noise_rng, 0)
        self.relax_rng = stream(relax_rng, 1)
        self.batch_noise_rng = stream(batch_noise_rng, 2)
        self.batch_relax_rng = stream(batch_relax_rng, 3)

        if td3 is None:
            td3 = TD3(
                state_dim,
                action_dim,
                max_action,
                hidden_dim=hidden_dim,
                lr=lr,
                device=device,
                seed=seed,
                rng=self.noise_rng,
                dtype=dtype,
                **td3_kwargs,
            )
        elif (td3.state_dim, td3.action_dim, td3.max_action) != (
            self.state_dim,
            self.action_dim,
            self.max_action,
        ):
            raise ValueError(
                f"shared TD3 has state_dim={td3.state_dim}, action_dim={td3.action_dim}, "
                f"max_action={td3.max_action}; this controller needs {self.state_dim}, "
                f"{self.action_dim}, {self.max_action}"
            )
        self.td3 = td3
        self.device = td3.device
        self._nominal_takes_batch = bool(getattr(nominal_policy, "accepts_batch", False))

        # The training agent (select_action): a batch of one.
        self.training_agent = CALFAgents(self.state_dim, self.action_dim)
        self.training_agent.add(1, self.relax_prob_init)
        self.last_mode: Mode | None = None
        # The batch agents (select_action_batch_codes).
        self.batch = CALFAgents(self.state_dim, self.action_dim)

    # ------------------------------------------------------------ shared pieces
    def _nominal_rows(self, states: NDArray[np.float64]) -> NDArray[np.float64]:
        """Nominal actions, clipped, for some rows: one call if the policy takes batches, else
        row by row."""
        k = len(states)
        if self._nominal_takes_batch:
            raw = np.asarray(self.nominal_policy(states), dtype=np.float64)
            if raw.size != k * self.action_dim:
                raise ValueError(
                    f"nominal policy returned shape {raw.shape} for {k} states; "
                    f"expected ({k}, {self.action_dim})"
                )
            raw = raw.reshape(k, self.action_dim)
        else:
            raw = np.stack(
                [
                    np.asarray(self.nominal_policy(s), dtype=np.float64).reshape(self.action_dim)
                    for s in states
                ]
            )
        # Same values as np.clip (which costs twice as much at these sizes).
        return np.minimum(np.maximum(raw, -self.max_action), self.max_action)

    def _act(
        self,
        agents: CALFAgents,
        states: NDArray[np.float64],
        exploration_noise: float,
        noise_rng: np.random.Generator,
        relax_draws: RelaxDraws,
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        """One actor and one critic forward for N >= 1 checked states, then the CALF rule on
        ``agents``' rows: (actions (N, action_dim), ``Mode`` codes (N,) int8)."""
        # One transfer in, one actor and one critic forward, one transfer out.
        a_t, q_t = self.td3.act_and_q1(self.td3.to_tensor(states), exploration_noise, noise_rng)
        if self.device.type == "cpu":  # no copy to make: skip the cat (a few us at small N)
            actions = a_t.numpy().astype(np.float64)
            q = q_t.numpy()[:, 0].astype(np.float64)
        else:
            out = torch.cat([a_t, q_t], dim=1).cpu().numpy()
            actions = out[:, : self.action_dim].astype(np.float64)
            q = out[:, self.action_dim].astype(np.float64)
        codes = calf_step(self, agents, states, actions, q, relax_draws, self._nominal_rows)
        return actions, codes

    # ------------------------------------------------------- the training agent
    def reset_certificate(self) -> None:
        """Forget the training agent's certificate (new episode); P_relax keeps decaying across
        episodes."""
        self.training_agent.reset_certificates(np.zeros(1, dtype=np.intp))

    def select_action_with_mode(
        self, state: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], Mode]:
        """The CALF rule for the training agent: one actor and one critic forward; the action
        and its ``Mode``."""
        s = as_state(state, self.state_dim)[None, :]
        actions, codes = self._act(
            self.training_agent, s, exploration_noise, self.noise_rng, self.relax_rng
        )
        self.last_mode = Mode(codes[0])
        return actions[0], self.last_mode

    def select_action(
        self, state: ArrayLike, exploration_noise: float = 0.0, return_mode: bool = False
    ) -> NDArray[np.float64] | tuple[NDArray[np.float64], str]:
        """The upstream API of ``select_action_with_mode``: with ``return_mode``, the mode as
        'td3' (certified) | 'relax' | 'fallback'."""
        action, mode = self.select_action_with_mode(state, exploration_noise)
        return (action, upstream_name(mode)) if return_mode else action

    def get_statistics(self) -> dict[str, Any]:
        """The training agent's counters and rates, and the certificate."""
        n = max(self.total_steps, 1)
        return {
            "total_steps": self.total_steps,
            "certified_steps": self.certified_steps,
            "relax_events": self.relax_events,
            "nominal_interventions": self.nominal_interventions,
            "certified_rate": self.certified_steps / n,
            "relax_rate": self.relax_events / n,
            "fallback_rate": self.nominal_interventions / n,
            "P_relax": self.P_relax,
            "q_cert": self.q_cert,
            "last_q": self.last_q,
            "last_mode": None if self.last_mode is None else upstream_name(self.last_mode),
            "num_batch_agents": len(self.batch),
        }

    def set_relax_probability(self, p: float) -> None:
        """Set P_relax for the training agent, every batch agent and agents added later
        (``--eval`` uses 0: certified or fallback, never relax)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"P_relax must lie in [0, 1], got {p}")
        self.relax_prob_init = float(p)
        self.training_agent.P_relax[:] = p
        self.batch.P_relax[:] = p

    # ---------------------------------------------------------- the batch agents
    @property
    def num_batch_agents(self) -> int:
        return len(self.batch)

    def add_batch_agents(self, n: int) -> None:
        """Append ``n`` fresh batch agents."""
        if n < 0:
            raise ValueError(f"cannot add {n} agents")
        self.batch.add(n, self.relax_prob_init)

    def _rows(self, rows: ArrayLike) -> NDArray[np.intp]:
        """Indices or a boolean mask over the batch agents -> sorted unique indices."""
        return as_row_indices(rows, len(self.batch), "batch agent rows")

    def remove_batch_agents(self, rows: ArrayLike) -> None:
        """Remove agents (indices or mask); the others keep their order and state."""
        keep = np.ones(len(self.batch), dtype=bool)
        keep[self._rows(rows)] = False
        self.batch.keep(keep)

    def reset_batch_agents(self, rows: ArrayLike) -> None:
        """Forget the certificates of the given agents (their episode ended)."""
        self.batch.reset_certificates(self._rows(rows))

    def select_action_batch_codes(
        self, states: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        """The CALF rule for all batch agents at once: (actions (N, action_dim), ``Mode`` codes
        (N,) int8). Rows past the current agents become new agents."""
        s = as_state_batch(states, self.state_dim)
        n = len(s)
        if n < len(self.batch):
            raise ValueError(
                f"got {n} states for {len(self.batch)} batch agents; remove agents explicitly "
                "with remove_batch_agents()"
            )
        self.add_batch_agents(n - len(self.batch))
        if n == 0:
            return np.zeros((0, self.action_dim), dtype=np.float64), np.zeros(0, dtype=np.int8)
        return self._act(
            self.batch, s, exploration_noise, self.batch_noise_rng, self.batch_relax_rng
        )

    def select_action_batch(
        self, states: ArrayLike, exploration_noise: float = 0.0, return_modes: bool = False
    ) -> NDArray[np.float64] | tuple[NDArray[np.float64], list[str]]:
        """The upstream API of ``select_action_batch_codes``: actions for N batch agents (row i
        is agent i); with ``return_modes``, also their modes as a list of 'td3' | 'relax' |
        'fallback'."""
        actions, codes = self.select_action_batch_codes(states, exploration_noise)
        return (actions, mode_names(codes)) if return_modes else actions

    # ----------------------------------------------------------------- learning
    def train(
        self, replay: ReplayBuffer, batch_size: int = TD3Config.batch_size
    ) -> dict[str, float | None]:
        return self.td3.train(replay, batch_size)

    # -------------------------------------------------------------- checkpoints
    def save(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Weights, optimiser states and the training agent's CALF state, in one file."""
        calf: dict[str, Any] = {name: getattr(self, name) for name in CALF_NUMBERS + CALF_COUNTS}
        for name in ("s_cert", "a_cert"):
            value = getattr(self, name)
            calf[name] = None if value is None else value.tolist()
        calf["q_cert"] = self.q_cert
        write_checkpoint(path, "calf", {"td3": self.td3.state_dict(), "calf": calf})

    def load(self, path: str | os.PathLike[str]) -> None:
        """Load a checkpoint written by ``save``; on any problem raise CheckpointError and
        leave this controller exactly as it was."""
        data = read_checkpoint(path, "calf")
        staged = check_calf_entry(
            path, require(path, data, "calf"), self.state_dim, self.action_dim
        )
        self.td3.load_state_dict(require(path, data, "td3"), path)  # checks before it changes
        for name, value in staged.items():
            setattr(self, name, value)
