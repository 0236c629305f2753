"""The training agent's CALF rule (``CALFController.select_action``), checked step by step against
a plain scalar re-statement of the rule written here, independent of the controller's internals:

    a = clip(actor(s) + noise);  q = Q1(s, a)
    certified <=> no certificate, or q - q_dag >= nu_bar and kl |s|^2 <= -q <= ku |s|^2
    certified -> use a; (s_dag, a_dag, q_dag) = (s, a, q)
    otherwise -> u ~ U[0, 1): u >= P_relax -> fallback (nominal), else relax (use a)
    P_relax *= lambda_relax
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from calf import CALFController, ReplayBuffer
from calf.config import RunConfig
from calf.trainer import make_controller

KP, KD = RunConfig().nominal.kp, RunConfig().nominal.kd


class ScriptedRng:
    """Stands in for a numpy Generator: ``random(size)`` returns the next ``size`` scripted
    draws, in order."""

    def __init__(self, draws: list[float]) -> None:
        self._draws: Iterator[float] = iter(draws)
        self.calls = 0

    def random(self, size: int) -> np.ndarray:
        self.calls += 1
        return np.array([next(self._draws) for _ in range(size)])


@dataclass
class PlainAgent:
    """The rule's state for one agent, in plain Python."""

    nu_bar: float
    kappa_low: float
    kappa_up: float
    lambda_relax: float
    p_relax: float
    s_cert: list[float] | None = None
    a_cert: list[float] | None = None
    q_cert: float | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"td3": 0, "relax": 0, "fallback": 0, "total": 0}
    )

    def certified(self, s: list[float], q: float) -> bool:
        if self.q_cert is None:
            return True
        norm_sq = sum(x * x for x in s)
        decrease = q - self.q_cert >= self.nu_bar
        bounds = self.kappa_low * norm_sq <= -q <= self.kappa_up * norm_sq
        return decrease and bounds

    def step(self, s: list[float], a: list[float], q: float, draw, nominal) -> tuple[list, str]:
        if self.certified(s, q):
            mode, action = "td3", a
            self.s_cert, self.a_cert, self.q_cert = s, a, q
        elif draw() >= self.p_relax:
            mode = "fallback"
            action = [min(max(x, -5.0), 5.0) for x in nominal(s)]
        else:
            mode, action = "relax", a
        self.counts[mode] += 1
        self.counts["total"] += 1
        self.p_relax *= self.lambda_relax
        return action, mode


def pd(s: list[float]) -> list[float]:
    """The run's PD fallback, before clipping."""
    return [-KP * s[0] - KD * s[1]]


def make(dtype: torch.dtype = torch.float64, seed: int = 0, q_bias: float = 0.0, **kw):
    """The run's controller (float64 networks unless asked) with ``kw`` CALF parameters."""
    ctrl = make_controller(RunConfig(), seed=seed, dtype=dtype, **kw)
    with torch.no_grad():
        ctrl.td3.critic.q1_net[-1].bias += q_bias
    return ctrl


def network_action_and_q(ctrl: CALFController, s: list[float], eps: float = 0.0):
    """a = clip(actor(s) + eps), q = Q1(s, a), straight from the modules (float64)."""
    with torch.no_grad():
        s_t = torch.tensor([s], dtype=torch.float64)
        a_t = ctrl.td3.actor(s_t)
        if eps:
            a_t = (a_t + eps).clamp(-5.0, 5.0)
        q1, _ = ctrl.td3.critic(s_t, a_t)
    return [float(a_t[0, 0])], float(q1[0, 0])


@pytest.mark.parametrize(
    "params",
    [
        dict(nu_bar=0.0, kappa_low_coef=0.01, kappa_up_coef=1.0, lambda_relax=0.97),
        dict(nu_bar=-0.01, kappa_low_coef=0.0, kappa_up_coef=0.3, lambda_relax=0.99),
        dict(nu_bar=0.005, kappa_low_coef=0.02, kappa_up_coef=5.0, lambda_relax=0.999),
    ],
)
@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_select_action_follows_the_plain_calf_rule_step_by_step(params, noise) -> None:
    ctrl = make(seed=3, q_bias=-0.7, relax_prob_init=0.6, **params)
    ctrl.noise_rng = np.random.default_rng(10)
    ctrl.relax_rng = np.random.default_rng(20)
    twin_noise, twin_relax = np.random.default_rng(10), np.random.default_rng(20)
    plain = PlainAgent(
        params["nu_bar"],
        params["kappa_low_coef"],
        params["kappa_up_coef"],
        params["lambda_relax"],
        0.6,
    )
    counter = ctrl.td3.forward_counter
    s = [3.0, -2.0]
    modes = set()
    for t in range(150):
        eps = float(twin_noise.normal(0.0, noise * 5.0)) if noise else 0.0
        a, q = network_action_and_q(ctrl, s, eps)
        want_action, want_mode = plain.step(s, a, q, twin_relax.random, pd)

        counter.reset()
        action, mode = ctrl.select_action(np.array(s), exploration_noise=noise, return_mode=True)
        # q is computed once, with the action: never recomputed for the certificate.
        assert counter.count(module="actor") == 1 and counter.count(module="critic") == 1
        assert counter.count() == 2

        assert mode == want_mode, t
        assert action.tolist() == want_action
        assert ctrl.last_q == q and ctrl.get_statistics()["last_mode"] == mode
        assert ctrl.q_cert == plain.q_cert
        assert (None if ctrl.s_cert is None else ctrl.s_cert.tolist()) == plain.s_cert
        assert (None if ctrl.a_cert is None else ctrl.a_cert.tolist()) == plain.a_cert
        assert ctrl.P_relax == plain.p_relax
        assert ctrl.certified_steps == plain.counts["td3"]
        assert ctrl.relax_events == plain.counts["relax"]
        assert ctrl.nominal_interventions == plain.counts["fallback"]
        assert ctrl.total_steps == plain.counts["total"]
        modes.add(mode)

        s = [s[0] + 0.05 * s[1], s[1] + 0.05 * action[0]]
        if t % 40 == 39:  # a new episode
            ctrl.reset_certificate()
            plain.s_cert = plain.a_cert = plain.q_cert = None
            s = [float(x) for x in np.random.default_rng(t).uniform(-4, 4, 2)]
    assert modes == {"td3", "relax", "fallback"}, modes


# ---------------------------------------------------------------- relax vs fallback
def _uncertified_controller(p_relax: float, draws: list[float]) -> tuple[CALFController, list]:
    """A controller with a certificate whose next step is uncertified (nu_bar impossible to
    meet): P_relax = ``p_relax`` now, halving every step; its counters start from zero."""
    ctrl = make(nu_bar=1e9, relax_prob_init=2 * p_relax, lambda_relax=0.5)
    ctrl.select_action([1.0, 1.0])  # the first step is certified: no draw
    ctrl.total_steps = ctrl.certified_steps = 0
    ctrl.relax_rng = ScriptedRng(draws)  # type: ignore[assignment]
    return ctrl, draws


@pytest.mark.parametrize(
    ("u", "mode"), [(0.0, "relax"), (0.49, "relax"), (0.5, "fallback"), (0.9, "fallback")]
)
def test_relax_or_fallback_by_the_injected_draw(u: float, mode: str) -> None:
    ctrl, _ = _uncertified_controller(0.5, [u])
    s = np.array([1.0, -0.25])
    actor_a, _ = network_action_and_q(ctrl, s.tolist())
    cert_before = (ctrl.s_cert.copy(), ctrl.a_cert.copy(), ctrl.q_cert)
    action, got = ctrl.select_action(s, return_mode=True)
    assert got == mode
    assert ctrl.relax_rng.calls == 1
    if mode == "relax":
        assert action.tolist() == actor_a
        assert (ctrl.relax_events, ctrl.nominal_interventions) == (1, 0)
    else:
        assert action.tolist() == pd(s.tolist())  # = [-0.75]
        assert (ctrl.relax_events, ctrl.nominal_interventions) == (0, 1)
    # An uncertified step leaves the certificate alone.
    assert ctrl.s_cert.tolist() == cert_before[0].tolist()
    assert ctrl.a_cert.tolist() == cert_before[1].tolist() and ctrl.q_cert == cert_before[2]
    assert ctrl.certified_steps == 0 and ctrl.total_steps == 1
    assert ctrl.P_relax == 0.25


def test_fallback_action_is_clipped_to_the_action_bounds() -> None:
    ctrl, _ = _uncertified_controller(0.0, [0.7])
    action, mode = ctrl.select_action([4.0, 4.0], return_mode=True)
    assert mode == "fallback" and action.tolist() == [-5.0]  # PD asks for -8


def test_no_relax_draw_when_certified() -> None:
    ctrl = make(nu_bar=-1e9, kappa_low_coef=-1e9, kappa_up_coef=1e9)
    ctrl.relax_rng = ScriptedRng([])  # type: ignore[assignment]
    for _ in range(5):
        assert ctrl.select_action([1.0, 0.0], return_mode=True)[1] == "td3"
    assert ctrl.relax_rng.calls == 0 and ctrl.certified_steps == 5


def test_p_relax_starts_at_its_initial_value_and_decays_every_step() -> None:
    assert make(lambda_relax=0.9).P_relax == RunConfig().calf.relax_prob_init
    ctrl = make(lambda_relax=0.9, relax_prob_init=0.7)
    expected = 0.7
    for _ in range(25):
        ctrl.select_action([2.0, 1.0])
        expected *= 0.9
        assert ctrl.P_relax == expected
    ctrl.reset_certificate()
    assert ctrl.P_relax == expected  # a new episode does not restart the decay


def test_reset_certificate_forgets_it_and_next_step_is_certified() -> None:
    ctrl = make(nu_bar=1e9)
    ctrl.select_action([1.0, 1.0])
    assert ctrl.select_action([1.0, 1.0], return_mode=True)[1] != "td3"
    ctrl.reset_certificate()
    assert ctrl.s_cert is None and ctrl.a_cert is None and ctrl.q_cert is None
    assert ctrl.select_action([1.0, 1.0], return_mode=True)[1] == "td3"


def test_statistics_report_counters_and_rates() -> None:
    ctrl, _ = _uncertified_controller(0.5, [0.1, 0.9, 0.2, 0.3])
    for _ in range(4):
        ctrl.select_action([1.0, 1.0])
    stats = ctrl.get_statistics()
    assert stats["total_steps"] == 4
    assert (stats["relax_events"], stats["nominal_interventions"]) == (1, 3)
    # P_relax halves every step: 0.5 (relax at 0.1), 0.25 (0.9 fb), 0.125 (0.2 fb), ...
    assert stats["relax_rate"] == 0.25 and stats["fallback_rate"] == 0.75
    assert stats["certified_rate"] == 0.0
    assert stats["P_relax"] == 0.5**5
    assert stats["num_batch_agents"] == 0 and stats["last_mode"] == "fallback"
    assert make().get_statistics()["certified_rate"] == 0.0


def test_set_relax_probability() -> None:
    ctrl = make()
    ctrl.add_batch_agents(3)
    ctrl.set_relax_probability(0.0)
    assert ctrl.P_relax == 0.0 and ctrl.relax_prob_init == 0.0
    assert ctrl.batch.P_relax.tolist() == [0.0] * 3
    ctrl.add_batch_agents(1)
    assert ctrl.batch.P_relax[-1] == 0.0
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            ctrl.set_relax_probability(bad)


def test_seeded_controllers_are_reproducible_and_streams_injectable() -> None:
    a, b = make(seed=5, dtype=torch.float32), make(seed=5, dtype=torch.float32)
    for name in ("actor", "critic"):
        for pa, pb in zip(
            getattr(a.td3, name).parameters(), getattr(b.td3, name).parameters(), strict=True
        ):
            assert torch.equal(pa, pb)
    s = np.array([1.0, 2.0])
    assert [a.select_action(s, 0.3).tolist() for _ in range(5)] == [
        b.select_action(s, 0.3).tolist() for _ in range(5)
    ]
    rng = np.random.default_rng(0)
    c = make_controller(RunConfig(), noise_rng=rng)
    assert c.noise_rng is rng and c.td3.rng is rng


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("state", "match"),
    [
        ([1.0, 2.0, 3.0], r"shape \(2,\)"),
        ([[1.0, 2.0], [3.0, 4.0]], r"shape \(2,\)"),
        (1.0, r"shape \(2,\)"),
        ([np.nan, 0.0], "NaN or inf"),
        ([0.0, np.inf], "NaN or inf"),
        ([-np.inf, 0.0], "NaN or inf"),
    ],
)
def test_bad_state_raises_value_error_naming_the_problem(state, match) -> None:
    ctrl = make()
    with pytest.raises(ValueError, match=match):
        ctrl.select_action(state)
    assert ctrl.total_steps == 0 and ctrl.q_cert is None


def test_a_one_row_batch_is_accepted_as_a_state() -> None:
    ctrl = make()
    assert ctrl.select_action([[1.0, 2.0]]).shape == (1,)


def test_train_delegates_to_td3() -> None:
    ctrl = make(dtype=torch.float32)
    replay = ReplayBuffer(2, 1, 100)
    rng = np.random.default_rng(0)
    for _ in range(40):
        replay.add(rng.normal(size=2), rng.normal(size=1), -1.0, rng.normal(size=2), False)
    losses = ctrl.train(replay, batch_size=16)
    assert losses["critic_loss"] > 0 and losses["actor_loss"] is None
    assert ctrl.td3.total_it == 1
