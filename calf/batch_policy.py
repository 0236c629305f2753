"""The visual agents' policy stage: one interface, the batched CALF path and its loop reference.

``BatchPolicy`` is what the visual trainer needs from the policy of its N agents: agents added,
removed and reset by row, and one call that acts for all of them. Three implementations:

- ``CALFController`` itself (calf/controller.py): ``select_action_batch_codes`` runs the CALF rule
  for all N rows with one actor and one critic forward (the optimised path);
- ``PerAgentLoop``: one single-agent ``CALFController`` per agent, looped over: N actor and N
  critic forwards per call. It is the oracle the batched path is tested against, and the ``calf``
  reference path of the visual trainer (``--reference calf``);
- ``ActorOnly``: ``--algo td3``, the actor alone in one forward, every step ``Mode.UNCHECKED``;
- ``NominalOnly``: the nominal policy alone (evaluations), every step ``Mode.FALLBACK``.

``PerAgentLoop``'s controllers share the parent's networks (``td3``) and the parent's batch
generators: ``batch_noise_rng`` as their exploration-noise stream and ``batch_relax_rng`` as their
relax stream. Agent i draws its noise row (action_dim numbers) and, only when uncertified, one
relax number, in agent order: exactly the draws the batched path makes with
``normal(size=(N, action_dim))`` and ``random(k)`` for its k uncertified rows in row order. So a
loop and a batch controller with the same weights and identically seeded generators agree.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calf.controller import CALFController, NominalPolicy
from calf.modes import Mode
from calf.td3 import TD3
from calf.validation import as_row_indices, as_state_batch


@runtime_checkable
class BatchPolicy(Protocol):
    """The policy of N visual agents, row i being agent i."""

    @property
    def num_batch_agents(self) -> int: ...

    def add_batch_agents(self, n: int) -> None: ...

    def remove_batch_agents(self, rows: ArrayLike) -> None: ...

    def reset_batch_agents(self, rows: ArrayLike) -> None: ...

    def select_action_batch_codes(
        self, states: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]: ...


class PerAgentLoop:
    """N single-agent ``CALFController``s looped over, sharing ``controller``'s networks and
    batch generators. CALF parameters (nu_bar, kappa, lambda_relax, the initial P_relax) are
    copied from ``controller`` when an agent is created."""

    def __init__(self, controller: CALFController) -> None:
        self.controller = controller
        self.agents: list[CALFController] = []

    def _new_agent(self) -> CALFController:
        c = self.controller
        return CALFController(
            c.state_dim,
            c.action_dim,
            c.max_action,
            c.nominal_policy,
            nu_bar=c.nu_bar,
            kappa_low_coef=c.kappa_low_coef,
            kappa_up_coef=c.kappa_up_coef,
            lambda_relax=c.lambda_relax,
            relax_prob_init=c.relax_prob_init,
            noise_rng=c.batch_noise_rng,
            relax_rng=c.batch_relax_rng,
            batch_noise_rng=c.batch_noise_rng,
            batch_relax_rng=c.batch_relax_rng,
            td3=c.td3,
        )

    @property
    def num_batch_agents(self) -> int:
        return len(self.agents)

    def add_batch_agents(self, n: int) -> None:
        """Append ``n`` fresh agents."""
        if n < 0:
            raise ValueError(f"cannot add {n} agents")
        self.agents.extend(self._new_agent() for _ in range(n))

    def remove_batch_agents(self, rows: ArrayLike) -> None:
        """Remove agents (indices or a boolean mask); the others keep their order and state."""
        drop = set(as_row_indices(rows, len(self.agents), "batch agent rows").tolist())
        self.agents = [a for i, a in enumerate(self.agents) if i not in drop]

    def reset_batch_agents(self, rows: ArrayLike) -> None:
        """Forget the certificates of the given agents (their episode ended)."""
        for i in as_row_indices(rows, len(self.agents), "batch agent rows"):
            self.agents[i].reset_certificate()

    def set_relax_probability(self, p: float) -> None:
        """P_relax = ``p`` for every agent and for agents added later, as
        ``CALFController.set_relax_probability`` does for the batch agents."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"P_relax must lie in [0, 1], got {p}")
        for agent in self.agents:
            agent.P_relax = agent.relax_prob_init = float(p)
        self.controller.set_relax_probability(p)

    def select_action_batch_codes(
        self, states: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        """Agent i acts on row i with ``select_action``: (actions (N, action_dim), codes (N,))."""
        c = self.controller
        s = as_state_batch(states, c.state_dim)
        n = len(s)
        if n < len(self.agents):
            raise ValueError(
                f"got {n} states for {len(self.agents)} batch agents; remove agents explicitly "
                "with remove_batch_agents()"
            )
        self.add_batch_agents(n - len(self.agents))
        actions = np.zeros((n, c.action_dim), dtype=np.float64)
        codes = np.zeros(n, dtype=np.int8)
        for i, agent in enumerate(self.agents):
            actions[i], codes[i] = agent.select_action_with_mode(s[i], exploration_noise)
        return actions, codes


class StatelessRows:
    """The batch-agent bookkeeping of a policy that keeps nothing per agent: the number of rows,
    checked like ``CALFController`` checks its own (indices or a boolean mask)."""

    def __init__(self) -> None:
        self._n = 0

    @property
    def num_batch_agents(self) -> int:
        return self._n

    def add_batch_agents(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"cannot add {n} agents")
        self._n += n

    def remove_batch_agents(self, rows: ArrayLike) -> None:
        self._n -= len(as_row_indices(rows, self._n, "batch agent rows"))

    def reset_batch_agents(self, rows: ArrayLike) -> None:
        """Checks the rows; there is no per-agent state to forget."""
        as_row_indices(rows, self._n, "batch agent rows")

    def _rows_for(self, states: ArrayLike, state_dim: int) -> NDArray[np.float64]:
        """The checked states, one row per agent (new rows become agents)."""
        s = as_state_batch(states, state_dim)
        if len(s) < self._n:
            raise ValueError(
                f"got {len(s)} states for {self._n} batch agents; remove agents explicitly "
                "with remove_batch_agents()"
            )
        self._n = len(s)
        return s


class ActorOnly(StatelessRows):
    """``--algo td3``: the visual agents follow the actor alone (one batched forward, exploration
    noise from its own generator ``rng``, so the training agent's draws never shift); no
    certificate is asked about, so every step is ``Mode.UNCHECKED``."""

    def __init__(self, td3: TD3, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.td3 = td3
        self.rng = rng if rng is not None else np.random.default_rng()

    def select_action_batch_codes(
        self, states: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        s = self._rows_for(states, self.td3.state_dim)
        codes = np.full(len(s), Mode.UNCHECKED, dtype=np.int8)
        if len(s) == 0:
            return np.zeros((0, self.td3.action_dim)), codes
        a_t = self.td3.act_tensor(self.td3.to_tensor(s), exploration_noise, self.rng)
        return a_t.cpu().numpy().astype(np.float64), codes


class NominalOnly(StatelessRows):
    """The nominal policy alone (evaluations): every step is the nominal policy's, coded
    ``Mode.FALLBACK``; ``exploration_noise`` does not apply."""

    def __init__(self, policy: NominalPolicy, state_dim: int = 2) -> None:
        super().__init__()
        self.policy = policy
        self.state_dim = state_dim

    def select_action_batch_codes(
        self, states: ArrayLike, exploration_noise: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        s = self._rows_for(states, self.state_dim)
        actions = np.asarray(self.policy(s), dtype=np.float64).reshape(len(s), -1)
        return actions, np.full(len(s), Mode.FALLBACK, dtype=np.int8)
