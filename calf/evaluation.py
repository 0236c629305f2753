"""The evaluation protocol: E seeded rollouts of three policies from the same start states.

- ``calf``: CALF as deployed: no exploration noise, P_relax = 0, so every step is either the
  certified actor action or the nominal fallback. A fresh ``CALFController`` shares the trained
  networks (``td3=``) and acts through its batch agents, so the training agent's certificate,
  P_relax and random streams are never touched.
- ``actor``: the actor alone (``ActorOnly``), no certificate, no fallback.
- ``nominal``: the nominal PD policy alone (the same for every evaluation: computed once).

Each rollout runs until it reaches the goal radius, leaves the boundary box or hits the step
limit. All rows of a policy step together: one batched policy call and one batched RK4 step per
time step; finished rows are dropped from the batch. The network calls count under the forward
counter's ``"evaluation"`` tag, apart from training and the visualisation.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calf.batch_policy import ActorOnly, BatchPolicy, NominalOnly
from calf.config import RunConfig
from calf.controller import CALFController
from calf.envs import PointMassParams, step_batch
from calf.modes import Mode
from calf.nominal import pd_from_config
from calf.td3 import TD3

POLICIES = ("calf", "actor", "nominal")
EVAL_TAG = "evaluation"


@dataclass(frozen=True)
class PolicyEval:
    """One policy's figures over the E rollouts (``eval.json`` holds one per policy)."""

    success_rate: float  # share of rollouts that reached the goal radius
    mean_steps_to_goal: float | None  # over the successful rollouts; None when there are none
    mean_final_distance: float  # |s| where each rollout ended
    mean_return: float  # summed reward per rollout
    certified_share: float | None  # CALF only: share of all steps that were certified
    fallback_share: float | None  # CALF only: share of all steps the nominal policy took


@dataclass
class Rollouts:
    """What E rollouts did. ``states`` (E, T + 1, 2) and ``modes`` (E, T) are padded with NaN
    and -1 after each rollout's end; they are empty when the rollouts were not recorded."""

    lengths: NDArray[np.int64]
    reached: NDArray[np.bool_]
    returns: NDArray[np.float64]
    final_states: NDArray[np.float64]
    mode_counts: NDArray[np.int64]  # steps per Mode value, over all rollouts
    states: NDArray[np.float64]
    modes: NDArray[np.int8]

    def summary(self, with_modes: bool) -> PolicyEval:
        """The figures of ``PolicyEval``; mode shares only ``with_modes`` (CALF)."""
        total = max(int(self.mode_counts.sum()), 1)
        steps = self.lengths[self.reached]
        return PolicyEval(
            success_rate=float(self.reached.mean()),
            mean_steps_to_goal=float(steps.mean()) if steps.size else None,
            mean_final_distance=float(np.linalg.norm(self.final_states, axis=1).mean()),
            mean_return=float(self.returns.mean()),
            certified_share=float(self.mode_counts[Mode.CERTIFIED] / total) if with_modes else None,
            fallback_share=float(self.mode_counts[Mode.FALLBACK] / total) if with_modes else None,
        )


@dataclass(frozen=True)
class EvalResult:
    """One evaluation after ``episode`` training episodes; ``rollouts`` keeps the trajectories
    (for figures), not part of the JSON."""

    episode: int
    calf: PolicyEval
    actor: PolicyEval
    nominal: PolicyEval
    rollouts: dict[str, Rollouts] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The ``eval.json`` schema: {"episode", "calf": {...}, "actor": {...}, "nominal": ...}."""
        return {"episode": self.episode, **{p: asdict(getattr(self, p)) for p in POLICIES}}


def start_states(cfg: RunConfig) -> NDArray[np.float64]:
    """The E evaluation start states: uniform over the reset box, from ``eval.seed``."""
    r = cfg.env.init_range
    return np.random.default_rng(cfg.eval.seed).uniform(-r, r, size=(cfg.eval.rollouts, 2))


class RolloutStepper:
    """E rollouts of ``policy`` advanced one time step at a time (``step``), so an evaluation
    can be spread over frames.

    All rows step together: one batched policy call and one batched RK4 step per time step;
    finished rows leave the batch. ``policy`` must hold no agents."""

    def __init__(
        self,
        policy: BatchPolicy,
        starts: NDArray[np.float64],
        params: PointMassParams,
        record: bool = True,
    ) -> None:
        n, horizon = len(starts), params.max_steps
        if policy.num_batch_agents:
            raise ValueError(f"the policy already holds {policy.num_batch_agents} batch agents")
        self.policy, self.params, self.record = policy, params, record
        self.t = 0
        self.lengths = np.zeros(n, dtype=np.int64)
        self.reached = np.zeros(n, dtype=bool)
        self.returns = np.zeros(n)
        self.final = np.array(starts, dtype=np.float64)
        self.mode_counts = np.zeros(len(Mode), dtype=np.int64)
        self.states = np.full((n, horizon + 1, 2) if record else (0, 0, 2), np.nan)
        self.modes = np.full((n, horizon) if record else (0, 0), -1, dtype=np.int8)
        if record:
            self.states[:, 0] = starts
        policy.add_batch_agents(n)
        self.rows = np.arange(n)  # which rollouts are still running, in batch-agent order
        self.s = self.final.copy()

    @property
    def done(self) -> bool:
        return self.rows.size == 0 or self.t >= self.params.max_steps

    def step(self) -> None:
        """One time step of every running rollout."""
        t, rows, params = self.t, self.rows, self.params
        actions, codes = self.policy.select_action_batch_codes(self.s)
        s, rewards, hit, outside = step_batch(self.s, actions, params)
        self.returns[rows] += rewards
        self.mode_counts += np.bincount(codes, minlength=len(Mode))
        if self.record:
            self.states[rows, t + 1] = s
            self.modes[rows, t] = codes
        done = hit | outside if t + 1 < params.max_steps else np.ones(rows.size, dtype=bool)
        if done.any():
            ended = rows[done]
            self.lengths[ended] = t + 1
            self.reached[ended] = hit[done]
            self.final[ended] = s[done]
            self.policy.remove_batch_agents(done)
            rows, s = rows[~done], s[~done]
        self.rows, self.s, self.t = rows, s, t + 1

    def result(self) -> Rollouts:
        """What the rollouts did (call once ``done``)."""
        if not self.done:
            raise RuntimeError(f"{self.rows.size} rollouts are still running")
        return Rollouts(
            self.lengths,
            self.reached,
            self.returns,
            self.final,
            self.mode_counts,
            self.states,
            self.modes,
        )


def frozen_copy(td3: TD3) -> TD3:
    """``td3`` with its actor and critic copied as they are now: an evaluation of the copy is
    an evaluation of these weights, however long it takes while training goes on. The copy
    acts only (no targets, optimisers or update) and counts its forwards on ``td3``'s
    counter (the forward hooks travel with the copied modules)."""
    frozen = copy.copy(td3)
    frozen.actor = copy.deepcopy(td3.actor)
    frozen.critic = copy.deepcopy(td3.critic)
    return frozen


def deployed_calf(td3: TD3, cfg: RunConfig, seed: int | None = None) -> CALFController:
    """CALF as deployed on ``td3``'s networks: the config's certificate, P_relax = 0."""
    c = cfg.calf
    controller = CALFController(
        td3.state_dim,
        td3.action_dim,
        td3.max_action,
        pd_from_config(cfg),
        nu_bar=c.nu_bar,
        kappa_low_coef=c.kappa_low_coef,
        kappa_up_coef=c.kappa_up_coef,
        lambda_relax=c.lambda_relax,
        relax_prob_init=0.0,
        seed=seed,
        td3=td3,
    )
    return controller


class Evaluator:
    """Evaluates networks from the config's fixed start states; the nominal policy's result
    is computed once and reused."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.starts = start_states(cfg)
        self.params = cfg.env.params(max_steps=cfg.eval.max_steps)
        self.nominal_policy = pd_from_config(cfg)
        self.nominal_rollouts: Rollouts | None = None  # set by the first evaluation

    def start(self, td3: TD3, episode: int, record: bool = True) -> EvaluationRun:
        """An evaluation of ``td3``'s networks, to be advanced in slices (``EvaluationRun``);
        pass a ``frozen_copy`` when training goes on meanwhile."""
        return EvaluationRun(self, td3, episode, record)

    def evaluate(self, td3: TD3, episode: int, record: bool = True) -> EvalResult:
        """CALF as deployed, the actor alone and the nominal alone on ``td3``'s networks, now."""
        run = self.start(td3, episode, record)
        run.advance(None)
        return run.result()


class EvaluationRun:
    """One evaluation, advanced a slice at a time: the rollouts of CALF as deployed, then of
    the actor alone, then (on the first evaluation only) of the nominal policy. However it is
    sliced, ``result`` is what one uninterrupted ``Evaluator.evaluate`` of the same weights
    gives: the rollouts depend on the weights and the start states, not on when they run."""

    def __init__(self, evaluator: Evaluator, td3: TD3, episode: int, record: bool) -> None:
        self.evaluator, self.td3, self.episode = evaluator, td3, episode
        e = evaluator
        self._phases: dict[str, RolloutStepper] = {
            "calf": RolloutStepper(
                deployed_calf(td3, e.cfg, e.cfg.eval.seed), e.starts, e.params, record
            ),
            "actor": RolloutStepper(ActorOnly(td3), e.starts, e.params, record),
        }
        if e.nominal_rollouts is None:
            self._phases["nominal"] = RolloutStepper(
                NominalOnly(e.nominal_policy), e.starts, e.params
            )
        self._pending = list(self._phases.items())
        self.steps = 0  # batched time steps run so far, all phases

    @property
    def done(self) -> bool:
        return not self._pending

    def advance(self, deadline: float | None) -> bool:
        """Run time steps until ``time.perf_counter()`` passes ``deadline`` (at least one step;
        None: to the end); whether the evaluation is done."""
        with self.td3.forward_counter.tag(EVAL_TAG):
            while self._pending:
                name, stepper = self._pending[0]
                stepper.step()
                self.steps += 1
                if stepper.done:
                    self._pending.pop(0)
                    if name == "nominal" and self.evaluator.nominal_rollouts is None:
                        self.evaluator.nominal_rollouts = stepper.result()
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        return self.done

    def result(self) -> EvalResult:
        """The evaluation's figures and rollouts (call once ``done``)."""
        rollouts = {name: p.result() for name, p in self._phases.items() if name != "nominal"}
        nominal = self.evaluator.nominal_rollouts
        assert nominal is not None  # this run or an earlier one computed it
        rollouts["nominal"] = nominal
        return EvalResult(
            episode=self.episode,
            calf=rollouts["calf"].summary(with_modes=True),
            actor=rollouts["actor"].summary(with_modes=False),
            nominal=rollouts["nominal"].summary(with_modes=False),
            rollouts=rollouts,
        )


def _steps(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_eval_line(result: EvalResult) -> str:
    """One line for a progress bar or a panel, e.g. ``eval ep 60: CALF 100% 364 st (cert 71%)
    | actor 97% 330 st | nominal 100% 522 st``."""
    c, a, n = result.calf, result.actor, result.nominal
    cert = "" if c.certified_share is None else f" (cert {c.certified_share:.0%})"
    return (
        f"eval ep {result.episode}: CALF {c.success_rate:.0%} {_steps(c.mean_steps_to_goal)} st"
        f"{cert} | actor {a.success_rate:.0%} {_steps(a.mean_steps_to_goal)} st"
        f" | nominal {n.success_rate:.0%} {_steps(n.mean_steps_to_goal)} st"
    )
