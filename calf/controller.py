"""CALF: Critic As Lyapunov Function, a safe actor-critic controller on top of TD3.

The rule for one agent, one step:

    a = actor(s) (+ exploration noise, clipped);  q = Q1(s, a)
    certified  <=>  no certificate yet, or  q - q_dag >= nu_bar  and
                    kappa_low * |s|^2 <= -q <= kappa_up * |s|^2
    certified   -> use a, and (s_dag, a_dag, q_dag) = (s, a, q)   (q stored, never recomputed)
    otherwise   -> draw u ~ U[0, 1): u >= P_relax -> fallback (nominal policy), else relax (use a)
    then P_relax *= lambda_relax

``select_action`` runs it for the training agent, as the plain single-agent reference.
``select_action_batch`` runs it for N *batch agents* at once: each row is an independent CALF
agent (own certificate, own P_relax, own counters) sharing the networks, with exactly one actor and
one critic forward per call and no Python loop over agents.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from calf.checkpoint import CheckpointError, read_checkpoint, require, write_checkpoint
from calf.config import CALFConfig, TD3Config
from calf.modes import Mode, mode_names, seed_name
from calf.replay import ReplayBuffer
from calf.td3 import TD3
from calf.validation import as_row_indices, as_state, as_state_batch

NominalPolicy = Callable[[NDArray[np.float64]], ArrayLike]


@dataclass
class BatchAgents:
    """CALF state of the batch agents, one row per agent."""

    state_dim: int
    action_dim: int
    s_cert: NDArray[np.float64] = field(init=False)
    a_cert: NDArray[np.float64] = field(init=False)
    q_cert: NDArray[np.float64] = field(init=False)
    has_cert: NDArray[np.bool_] = field(init=False)
    p_relax: NDArray[np.float64] = field(init=False)
    last_q: NDArray[np.float64] = field(init=False)
    total_steps: NDArray[np.int64] = field(init=False)
    certified_steps: NDArray[np.int64] = field(init=False)
    relax_events: NDArray[np.int64] = field(init=False)
    nominal_interventions: NDArray[np.int64] = field(init=False)

    _ROW_FIELDS = (
        "s_cert",
        "a_cert",
        "q_cert",
        "has_cert",
        "p_relax",
        "last_q",
        "total_steps",
        "certified_steps",
        "relax_events",
        "nominal_interventions",
    )

    def __post_init__(self) -> None:
        self.s_cert = np.zeros((0, self.state_dim))
        self.a_cert = np.zeros((0, self.action_dim), dtype=np.float64)
        self.q_cert = np.zeros(0)
        self.has_cert = np.zeros(0, dtype=bool)
        self.p_relax = np.zeros(0)
        self.last_q = np.zeros(0)
        for name in ("total_steps", "certified_steps", "relax_events", "nominal_interventions"):
            setattr(self, name, np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.p_relax)

    def add(self, n: int, p_relax: float) -> None:
        """Append ``n`` fresh agents: no certificate, P_relax at its initial value."""
        if n <= 0:  # p_relax[-0:] below would be every row
            return
        for name in self._ROW_FIELDS:
            old = getattr(self, name)
            new = np.zeros((n, *old.shape[1:]), dtype=old.dtype)
            setattr(self, name, np.concatenate([old, new]))
        self.p_relax[-n:] = p_relax
        self.last_q[-n:] = np.nan

    def keep(self, mask: NDArray[np.bool_]) -> None:
        for name in self._ROW_FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def reset_certificates(self, rows: NDArray[np.intp]) -> None:
        self.has_cert[rows] = False
        self.s_cert[rows] = 0.0
        self.a_cert[rows] = 0.0
        self.q_cert[rows] = 0.0


class CALFController:
    """A TD3 agent whose actions are certified by its critic, with a safe nominal fallback."""

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

        # The training agent (single-agent path).
        self.s_cert: NDArray[np.float64] | None = None
        self.a_cert: NDArray[np.float64] | None = None
        self.q_cert: float | None = None
        self.P_relax = self.relax_prob_init
        self.total_steps = 0
        self.certified_steps = 0
        self.relax_events = 0
        self.nominal_interventions = 0
        self.last_q: float | None = None  # Q(s, a) of the last select_action, for the panel
        self.last_mode: Mode | None = None

        # The batch agents (select_action_batch).
        self.batch = BatchAgents(self.state_dim, self.action_dim)

    # ------------------------------------------------------------ shared pieces
    def _clip(self, a: NDArray[np.float64]) -> NDArray[np.float64]:
        # Same values as np.clip (which costs twice as much at these sizes).
        return np.minimum(np.maximum(a, -self.max_action), self.max_action)

    def _nominal(self, state: NDArray[np.float64]) -> NDArray[np.float64]:
        a = np.asarray(self.nominal_policy(state), dtype=np.float64).reshape(self.action_dim)
        return self._clip(a)

    def _nominal_rows(self, states: NDArray[np.float64]) -> NDArray[np.float64]:
        """Nominal actions for some rows: one call if the policy takes batches, else row by row."""
        k = len(states)
        if self._nominal_takes_batch:
            raw = np.asarray(self.nominal_policy(states), dtype=np.float64)
            if raw.size != k * self.action_dim:
                raise ValueError(
                    f"nominal policy returned shape {raw.shape} for {k} states; "
                    f"expected ({k}, {self.action_dim})"
                )
            return self._clip(raw.reshape(k, self.action_dim))
        return np.stack([self._nominal(s) for s in states])

    def _q1(self, state: NDArray[np.float64], action: ArrayLike) -> float:
        s_t = self.td3.to_tensor(state.reshape(1, -1))
        a = np.asarray(action, dtype=np.float64).reshape(1, -1)
        with torch.no_grad():
            (q1,) = self.td3.critic(s_t, self.td3.to_tensor(a), q1_only=True)
        return float(q1.item())

    # ------------------------------------------------------- the training agent
    def check_lyapunov_certificate(
        self, state: ArrayLike, action: ArrayLike, q_value: float | None = None
    ) -> bool:
        """Whether (state, action) passes the certificate; ``q_value`` saves a critic call."""
        s = as_state(state, self.state_dim)
        if self.q_cert is None:
            return True
        q = self._q1(s, action) if q_value is None else float(q_value)
        norm_sq = float(np.sum(s * s))
        decrease_ok = q - self.q_cert >= self.nu_bar
        bounds_ok = self.kappa_low_coef * norm_sq <= -q <= self.kappa_up_coef * norm_sq
        return bool(decrease_ok and bounds_ok)

    def update_certificate(
        self, state: ArrayLike, action: ArrayLike, q_value: float | None = None
    ) -> None:
        """Store (s_dag, a_dag, q_dag); pass ``q_value`` when it is known, to skip a critic call."""
        s = as_state(state, self.state_dim)
        a = np.asarray(action, dtype=np.float64).reshape(self.action_dim).copy()
        self.q_cert = self._q1(s, a) if q_value is None else float(q_value)
        self.s_cert = s.copy()
        self.a_cert = a

    def reset_certificate(self) -> None:
        """Forget the certificate (new episode); P_relax keeps decaying across episodes."""
        self.s_cert = self.a_cert = None
        self.q_cert = None

    def select_action_with_mode(
        self, state: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], Mode]:
        """The CALF rule for the training agent: one actor and one critic forward; the action
        and its ``Mode``."""
        s = as_state(state, self.state_dim)
        s_t = self.td3.to_tensor(s[None, :])
        a_t, q1 = self.td3.act_and_q1(s_t, exploration_noise, self.noise_rng)
        action = a_t[0].cpu().numpy().astype(np.float64)
        q = float(q1.item())
        self.last_q = q

        if self.check_lyapunov_certificate(s, action, q_value=q):
            mode = Mode.CERTIFIED
            self.update_certificate(s, action, q_value=q)
            self.certified_steps += 1
        elif self.relax_rng.random() >= self.P_relax:
            mode = Mode.FALLBACK
            action = self._nominal(s)
            self.nominal_interventions += 1
        else:
            mode = Mode.RELAX
            self.relax_events += 1
        self.P_relax *= self.lambda_relax
        self.total_steps += 1
        self.last_mode = mode
        return action, mode

    def select_action(
        self, state: ArrayLike, exploration_noise: float = 0.0, return_mode: bool = False
    ) -> NDArray[np.float64] | tuple[NDArray[np.float64], str]:
        """The seeds' API of ``select_action_with_mode``: with ``return_mode``, the mode as
        'td3' (certified) | 'relax' | 'fallback'."""
        action, mode = self.select_action_with_mode(state, exploration_noise)
        return (action, seed_name(mode)) if return_mode else action

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
            "last_mode": None if self.last_mode is None else seed_name(self.last_mode),
            "num_batch_agents": len(self.batch),
        }

    def set_relax_probability(self, p: float) -> None:
        """Set P_relax for the training agent, every batch agent and agents added later
        (``--eval`` uses 0: certified or fallback, never relax)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"P_relax must lie in [0, 1], got {p}")
        self.relax_prob_init = self.P_relax = float(p)
        self.batch.p_relax[:] = p

    # ---------------------------------------------------------- the batch agents
    @property
    def num_batch_agents(self) -> int:
        return len(self.batch)

    def add_batch_agents(self, n: int) -> None:
        """Append ``n`` fresh batch agents."""
        if n < 0:
            raise ValueError(f"cannot add {n} agents")
        if n:
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
        (N,) int8)."""
        s = as_state_batch(states, self.state_dim)
        n = len(s)
        b = self.batch
        if n < len(b):
            raise ValueError(
                f"got {n} states for {len(b)} batch agents; remove agents explicitly "
                "with remove_batch_agents()"
            )
        self.add_batch_agents(n - len(b))
        codes = np.zeros(n, dtype=np.int8)
        if n == 0:
            return np.zeros((0, self.action_dim), dtype=np.float64), codes

        # One transfer in, one actor and one critic forward, one transfer out.
        a_t, q_t = self.td3.act_and_q1(
            self.td3.to_tensor(s), exploration_noise, self.batch_noise_rng
        )
        if self.device.type == "cpu":  # no copy to make: skip the cat (a few us at small N)
            actions = a_t.numpy().astype(np.float64)
            q = q_t.numpy()[:, 0].astype(np.float64)
        else:
            out = torch.cat([a_t, q_t], dim=1).cpu().numpy()
            actions = out[:, : self.action_dim].astype(np.float64)
            q = out[:, self.action_dim].astype(np.float64)

        # The certificate check for every row (q - q_dag >= nu_bar, kappa bounds), in place.
        norm_sq = np.add.reduce(s * s, axis=1)  # np.sum's arithmetic, without its wrapper
        neg_q = -q
        certified = q - b.q_cert >= self.nu_bar
        certified &= self.kappa_low_coef * norm_sq <= neg_q
        certified &= neg_q <= self.kappa_up_coef * norm_sq
        certified |= ~b.has_cert

        uncertified = (~certified).nonzero()[0]
        if uncertified.size:
            # One draw per uncertified agent, in row order: the draws a loop would make.
            u = self.batch_relax_rng.random(uncertified.size)
            falls_back = u >= b.p_relax[uncertified]
            fallback = uncertified[falls_back]
            codes[uncertified] = Mode.RELAX
            codes[fallback] = Mode.FALLBACK
            b.relax_events += codes == Mode.RELAX
            b.nominal_interventions += codes == Mode.FALLBACK
            if fallback.size:
                actions[fallback] = self._nominal_rows(s[fallback])

        rows = certified[:, None]
        np.copyto(b.s_cert, s, where=rows)
        np.copyto(b.a_cert, actions, where=rows)
        np.copyto(b.q_cert, q, where=certified)
        b.has_cert |= certified
        b.certified_steps += certified
        b.p_relax *= self.lambda_relax
        b.total_steps += 1
        b.last_q = q
        return actions, codes

    def select_action_batch(
        self, states: ArrayLike, exploration_noise: float = 0.0, return_modes: bool = False
    ) -> NDArray[np.float64] | tuple[NDArray[np.float64], list[str]]:
        """Actions for N batch agents (row i is agent i); with ``return_modes``, also their
        modes as a list of 'td3' | 'relax' | 'fallback'."""
        actions, codes = self.select_action_batch_codes(states, exploration_noise)
        return (actions, mode_names(codes)) if return_modes else actions

    # ----------------------------------------------------------------- learning
    def train(
        self, replay: ReplayBuffer, batch_size: int = TD3Config.batch_size
    ) -> dict[str, float | None]:
        return self.td3.train(replay, batch_size)

    # -------------------------------------------------------------- checkpoints
    def _calf_state(self) -> dict[str, Any]:
        return {
            "nu_bar": self.nu_bar,
            "kappa_low_coef": self.kappa_low_coef,
            "kappa_up_coef": self.kappa_up_coef,
            "lambda_relax": self.lambda_relax,
            "relax_prob_init": self.relax_prob_init,
            "P_relax": self.P_relax,
            "s_cert": None if self.s_cert is None else self.s_cert.tolist(),
            "a_cert": None if self.a_cert is None else self.a_cert.tolist(),
            "q_cert": self.q_cert,
            "total_steps": self.total_steps,
            "certified_steps": self.certified_steps,
            "relax_events": self.relax_events,
            "nominal_interventions": self.nominal_interventions,
        }

    def save(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Weights, optimiser states and the training agent's CALF state, in one file."""
        write_checkpoint(path, "calf", {"td3": self.td3.state_dict(), "calf": self._calf_state()})

    def load(self, path: str | os.PathLike[str]) -> None:
        """Load a checkpoint written by ``save``; on any problem raise CheckpointError and
        leave this controller exactly as it was."""
        data = read_checkpoint(path, "calf")
        calf = require(path, data, "calf")
        if not isinstance(calf, dict):
            raise CheckpointError(path, "the 'calf' entry is not a dict")
        staged = self._check_calf_state(path, calf)
        self.td3.load_state_dict(require(path, data, "td3"), path)  # checks before it changes
        for name, value in staged.items():
            setattr(self, name, value)

    def _check_calf_state(
        self, path: str | os.PathLike[str], calf: dict[str, Any]
    ) -> dict[str, Any]:
        staged: dict[str, Any] = {}
        for name in (
            "nu_bar",
            "kappa_low_coef",
            "kappa_up_coef",
            "lambda_relax",
            "relax_prob_init",
            "P_relax",
        ):
            value = require(path, calf, name)
            if not isinstance(value, int | float) or not np.isfinite(value):
                raise CheckpointError(path, f"{name} is not a finite number: {value!r}")
            staged[name] = float(value)
        for name in ("total_steps", "certified_steps", "relax_events", "nominal_interventions"):
            value = require(path, calf, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise CheckpointError(path, f"{name} is not a count: {value!r}")
            staged[name] = value
        q_cert = require(path, calf, "q_cert")
        s_cert, a_cert = require(path, calf, "s_cert"), require(path, calf, "a_cert")
        if q_cert is None:
            staged.update(q_cert=None, s_cert=None, a_cert=None)
        else:
            if not isinstance(q_cert, int | float) or not np.isfinite(q_cert):
                raise CheckpointError(path, f"q_cert is not a finite number: {q_cert!r}")
            try:
                s_arr = np.asarray(s_cert, dtype=np.float64).reshape(self.state_dim)
                a_arr = np.asarray(a_cert, dtype=np.float64).reshape(self.action_dim)
            except (TypeError, ValueError):
                raise CheckpointError(
                    path,
                    f"certificate does not fit state_dim={self.state_dim}, "
                    f"action_dim={self.action_dim}",
                ) from None
            if not (np.isfinite(s_arr).all() and np.isfinite(a_arr).all()):
                raise CheckpointError(path, "certificate contains NaN or inf")
            staged.update(q_cert=float(q_cert), s_cert=s_arr, a_cert=a_arr)
        return staged
