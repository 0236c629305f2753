"""The CALF rule itself (``calf.certificate``): the certificate's cases at their boundaries, one
row or many at once, and one step of ``calf_step`` on rows of every kind, checked against the rule
as written in calf/certificate.py's docstring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from calf.certificate import CALFAgents, calf_step, certified_rows
from calf.modes import Mode


@dataclass
class Rule:
    nu_bar: float = 0.01
    kappa_low_coef: float = 0.1
    kappa_up_coef: float = 10.0
    lambda_relax: float = 0.5


class ScriptedDraws:
    """``random(size)`` returns the next ``size`` scripted numbers; the sizes asked are kept."""

    def __init__(self, draws: list[float]) -> None:
        self.draws = list(draws)
        self.sizes: list[int] = []

    def random(self, size: int) -> np.ndarray:
        self.sizes.append(size)
        out, self.draws = self.draws[:size], self.draws[size:]
        return np.array(out)


def agents_with(q_cert: list[float | None], P_relax: float = 0.5) -> CALFAgents:
    """One agent per entry: a certificate (s = [0.5, 0.5], a = [1]) with that q_dag, or none."""
    agents = CALFAgents(2, 1)
    agents.add(len(q_cert), P_relax)
    for i, q in enumerate(q_cert):
        if q is not None:
            agents.has_cert[i] = True
            agents.s_cert[i] = [0.5, 0.5]
            agents.a_cert[i] = [1.0]
            agents.q_cert[i] = q
    return agents


# (q_dag, q, certified, why) at |s|^2 = 1, nu_bar 0.01, kappa bounds 0.1 and 10.
CASES = [
    (-1.0, -0.5, True, "decrease 0.5 >= nu_bar, -q inside the bounds"),
    (-1.0, -1.0, False, "no decrease"),
    (-1.0, -0.995, False, "decrease 0.005 < nu_bar"),
    (-1.0, -0.05, False, "-q below kappa_low |s|^2 = 0.1"),
    (-1.0, -0.1, True, "-q exactly at kappa_low |s|^2 (inclusive)"),
    (-20.0, -12.0, False, "-q above kappa_up |s|^2 = 10"),
    (-20.0, -10.0, True, "-q exactly at kappa_up |s|^2 (inclusive)"),
    (-1.0, 0.5, False, "q > 0: -q below any non-negative lower bound"),
    (None, 0.5, True, "no certificate yet: anything passes"),
]


@pytest.mark.parametrize(("q_cert", "q", "expected", "why"), CASES)
def test_certificate_cases(q_cert: float | None, q: float, expected: bool, why: str) -> None:
    got = certified_rows(Rule(), agents_with([q_cert]), np.array([[1.0, 0.0]]), np.array([q]))
    assert got.tolist() == [expected], why


def test_all_cases_at_once_equal_each_case_alone() -> None:
    agents = agents_with([c[0] for c in CASES])
    states = np.tile([1.0, 0.0], (len(CASES), 1))
    got = certified_rows(Rule(), agents, states, np.array([c[1] for c in CASES]))
    assert got.tolist() == [c[2] for c in CASES]


def test_certificate_with_zero_state_needs_q_exactly_zero() -> None:
    rule = Rule(nu_bar=-1.0)
    agents = agents_with([-0.5, -0.5])
    got = certified_rows(rule, agents, np.zeros((2, 2)), np.array([0.0, -1e-9]))
    assert got.tolist() == [True, False]


def test_one_step_on_rows_of_every_kind() -> None:
    """Rows: no certificate (certified), a met certificate (certified), and three uncertified
    ones whose draws say relax, fallback, relax. One draw per uncertified row, in row order, in
    one call; fallback rows take the nominal action; only certified rows move their certificate;
    P_relax decays on every row."""
    agents = agents_with([None, -1.0, -1.0, -1.0, -1.0], P_relax=0.5)
    states = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    q = np.array([-3.0, -0.5, -2.0, -2.0, -2.0])  # rows 2-4: no decrease
    actions = np.array([[0.1], [0.2], [0.3], [0.4], [0.5]])
    draws = ScriptedDraws([0.49, 0.5, 0.0])
    asked = []

    def nominal(rows: np.ndarray) -> np.ndarray:
        asked.append(rows.copy())
        return -rows[:, :1]

    codes = calf_step(Rule(), agents, states, actions, q, draws, nominal)
    c, r, f = Mode.CERTIFIED, Mode.RELAX, Mode.FALLBACK
    assert codes.tolist() == [c, c, r, f, r] and codes.dtype == np.int8
    assert draws.sizes == [3]
    assert len(asked) == 1 and asked[0].tolist() == [[0.0, 3.0]]
    assert actions.ravel().tolist() == [0.1, 0.2, 0.3, -0.0, 0.5]
    assert agents.has_cert.all()
    np.testing.assert_array_equal(agents.s_cert[:2], states[:2])
    np.testing.assert_array_equal(agents.s_cert[2:], np.tile([0.5, 0.5], (3, 1)))
    assert agents.a_cert.ravel().tolist() == [0.1, 0.2, 1.0, 1.0, 1.0]
    assert agents.q_cert.tolist() == [-3.0, -0.5, -1.0, -1.0, -1.0]
    assert agents.P_relax.tolist() == [0.25] * 5
    assert agents.last_q.tolist() == q.tolist()
    assert agents.total_steps.tolist() == [1] * 5
    assert agents.certified_steps.tolist() == [1, 1, 0, 0, 0]
    assert agents.relax_events.tolist() == [0, 0, 1, 0, 1]
    assert agents.nominal_interventions.tolist() == [0, 0, 0, 1, 0]


def test_no_draw_when_every_row_is_certified() -> None:
    agents = agents_with([None, None])
    draws = ScriptedDraws([])
    codes = calf_step(
        Rule(), agents, np.ones((2, 2)), np.zeros((2, 1)), np.zeros(2), draws, lambda s: s
    )
    assert codes.tolist() == [Mode.CERTIFIED] * 2 and draws.sizes == []


def test_agents_add_keep_and_reset_by_row() -> None:
    agents = agents_with([-1.0, None, -2.0], P_relax=0.7)
    assert len(agents) == 3 and np.isnan(agents.last_q).all()
    agents.reset_certificates(np.array([0]))
    assert agents.has_cert.tolist() == [False, False, True] and agents.q_cert[0] == 0.0
    agents.keep(np.array([False, True, True]))
    assert agents.q_cert.tolist() == [0.0, -2.0] and agents.P_relax.tolist() == [0.7, 0.7]
    agents.add(0, 0.1)
    assert len(agents) == 2
