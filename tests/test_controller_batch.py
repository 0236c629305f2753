"""The batched CALF path (``select_action_batch_codes``) against its loop reference
(``calf.batch_policy.PerAgentLoop``: one single-agent controller per agent, looped over).

Both paths get controllers built alike (same seed, same weights, same CALF parameters) whose batch
generators are seeded alike, so they consume the same draws; the properties run multi-step
rollouts in float64 (where a batched and a batch-of-1 matmul agree to ~1e-16, so no certificate
decision sitting on a threshold can flip) with agents reset, added and removed between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from calf import CALFController, PDPolicy
from calf.batch_policy import PerAgentLoop
from calf.modes import UPSTREAM_MODE_NAMES, Mode


class LinearNominal:
    """A batch-capable nominal policy for any dims: a = -gain * s[..., :action_dim]."""

    accepts_batch = True

    def __init__(self, action_dim: int, gain: float = 0.5) -> None:
        self.action_dim, self.gain = action_dim, gain

    def __call__(self, state: np.ndarray) -> np.ndarray:
        return -self.gain * np.asarray(state)[..., : self.action_dim]


class SingleStateNominal:
    """The PD policy behind a single-state-only interface (no ``accepts_batch``), counting calls."""

    def __init__(self) -> None:
        self.pd = PDPolicy()
        self.calls = 0

    def __call__(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state)
        if state.shape != (2,):
            raise AssertionError(f"single-state policy called with shape {state.shape}")
        self.calls += 1
        return self.pd(state)


@dataclass(frozen=True)
class Setup:
    """One controller configuration plus one scenario (start states and between-step events)."""

    state_dim: int = 2
    action_dim: int = 1
    weight_seed: int = 0
    q_bias: float = -0.5  # added to Q1's output bias: moves -q into the kappa bounds, or not
    nu_bar: float = 0.0
    kappa_low: float = 0.01
    kappa_up: float = 1.0
    lambda_relax: float = 0.95
    relax_prob_init: float = 0.5
    noise_seed: int = 1
    relax_seed: int = 2
    exploration_noise: float = 0.0
    n0: int = 16
    steps: int = 6
    scenario_seed: int = 3


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    state_dim, action_dim = draw(st.sampled_from([(2, 1), (3, 2)]))
    seeds = st.integers(0, 2**32 - 1)
    return Setup(
        state_dim=state_dim,
        action_dim=action_dim,
        weight_seed=draw(seeds),
        q_bias=draw(st.floats(-2.0, 0.5)),
        nu_bar=draw(st.floats(-0.05, 0.05)),
        kappa_low=draw(st.floats(0.0, 0.05)),
        kappa_up=draw(st.floats(0.02, 2.0)),
        lambda_relax=draw(st.floats(0.8, 1.0)),
        relax_prob_init=draw(st.floats(0.0, 1.0)),
        noise_seed=draw(seeds),
        relax_seed=draw(seeds),
        exploration_noise=draw(st.sampled_from([0.0, 0.1, 0.3])),
        n0=draw(st.integers(0, 64)),
        steps=draw(st.integers(1, 8)),
        scenario_seed=draw(seeds),
    )


def build(
    setup: Setup,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    nominal: object | None = None,
) -> CALFController:
    """A controller for ``setup``, every CALF parameter explicit (the properties draw them); two
    calls give identical controllers and generators."""
    if nominal is None:
        nominal = PDPolicy() if setup.state_dim == 2 else LinearNominal(setup.action_dim)
    ctrl = CALFController(
        setup.state_dim,
        setup.action_dim,
        5.0,
        nominal,  # type: ignore[arg-type]
        nu_bar=setup.nu_bar,
        kappa_low_coef=setup.kappa_low,
        kappa_up_coef=setup.kappa_up,
        lambda_relax=setup.lambda_relax,
        relax_prob_init=setup.relax_prob_init,
        seed=setup.weight_seed,
        dtype=dtype,
        device=device,
        batch_noise_rng=np.random.default_rng(setup.noise_seed),
        batch_relax_rng=np.random.default_rng(setup.relax_seed),
    )
    with torch.no_grad():
        ctrl.td3.critic.q1_net[-1].bias += setup.q_bias
    return ctrl


def loop_agents_state(loop: PerAgentLoop) -> dict[str, np.ndarray]:
    """The loop agents' CALF state as arrays laid out like ``CALFController.batch``."""
    agents = loop.agents
    c = loop.controller
    has = np.array([a.q_cert is not None for a in agents], dtype=bool)
    return {
        "has_cert": has,
        "s_cert": np.array(
            [a.s_cert if a.s_cert is not None else np.zeros(c.state_dim) for a in agents]
        ).reshape(len(agents), c.state_dim),
        "a_cert": np.array(
            [a.a_cert if a.a_cert is not None else np.zeros(c.action_dim) for a in agents]
        ).reshape(len(agents), c.action_dim),
        "q_cert": np.array([a.q_cert if a.q_cert is not None else 0.0 for a in agents]),
        "P_relax": np.array([a.P_relax for a in agents]),
        "last_q": np.array([np.nan if a.last_q is None else a.last_q for a in agents]),
        "total_steps": np.array([a.total_steps for a in agents], dtype=np.int64),
        "certified_steps": np.array([a.certified_steps for a in agents], dtype=np.int64),
        "relax_events": np.array([a.relax_events for a in agents], dtype=np.int64),
        "nominal_interventions": np.array(
            [a.nominal_interventions for a in agents], dtype=np.int64
        ),
    }


def assert_same_agents(ctrl: CALFController, loop: PerAgentLoop, atol: float) -> None:
    """Certificates, P_relax, last Q and counters of the batch agents equal the loop agents'."""
    b = ctrl.batch
    ref = loop_agents_state(loop)
    assert len(b) == loop.num_batch_agents == ctrl.num_batch_agents
    np.testing.assert_array_equal(b.has_cert, ref["has_cert"])
    has = ref["has_cert"]
    # s_dag is the state as given: exact. a_dag, q_dag come out of the networks: tolerance.
    np.testing.assert_array_equal(b.s_cert[has], ref["s_cert"][has])
    np.testing.assert_allclose(b.a_cert[has], ref["a_cert"][has], rtol=0, atol=atol)
    np.testing.assert_allclose(b.q_cert[has], ref["q_cert"][has], rtol=0, atol=atol)
    np.testing.assert_array_equal(b.P_relax, ref["P_relax"])
    np.testing.assert_allclose(b.last_q, ref["last_q"], rtol=0, atol=atol, equal_nan=True)
    for name in ("total_steps", "certified_steps", "relax_events", "nominal_interventions"):
        np.testing.assert_array_equal(getattr(b, name), ref[name], err_msg=name)


def rollout(setup: Setup, dtype: torch.dtype = torch.float64, atol: float = 1e-9) -> np.ndarray:
    """Run the batched path and the loop reference side by side; assert they agree after every
    step and every event. Returns the count of each mode over the rollout."""
    batch_ctrl = build(setup, dtype)
    loop = PerAgentLoop(build(setup, dtype))
    rng = np.random.default_rng(setup.scenario_seed)
    d = setup.state_dim
    states = rng.uniform(-4.0, 4.0, size=(setup.n0, d))
    modes_seen = np.zeros(3, dtype=np.int64)
    for _ in range(setup.steps):
        a1, c1 = batch_ctrl.select_action_batch_codes(states, setup.exploration_noise)
        a2, c2 = loop.select_action_batch_codes(states, setup.exploration_noise)
        assert a1.shape == a2.shape == (len(states), setup.action_dim)
        assert c1.dtype == c2.dtype == np.int8
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_allclose(a1, a2, rtol=0, atol=atol)
        assert_same_agents(batch_ctrl, loop, atol)
        modes_seen += np.bincount(c1, minlength=3)

        # Move: a damped integrator driven by the (batch) actions, so states and Q change.
        push = np.zeros_like(states)
        push[:, : setup.action_dim] = a1
        states = 0.97 * states + 0.05 * np.roll(states, 1, axis=1) + 0.05 * push

        # Events between steps, the same on both sides.
        n = len(states)
        if n and rng.random() < 0.5:  # episodes end: reset some certificates (mask or indices)
            done = rng.random(n) < 0.3
            rows = done if rng.random() < 0.5 else np.flatnonzero(done)
            batch_ctrl.reset_batch_agents(rows)
            loop.reset_batch_agents(rows)
            states[done] = rng.uniform(-4.0, 4.0, size=(int(done.sum()), d))
        if n and rng.random() < 0.3:  # remove a few agents
            rows = rng.choice(n, size=int(rng.integers(1, min(n, 4) + 1)), replace=False)
            batch_ctrl.remove_batch_agents(rows)
            loop.remove_batch_agents(rows)
            states = np.delete(states, rows, axis=0)
        if rng.random() < 0.3:  # add agents: explicitly, or by calling with more rows
            k = int(rng.integers(1, 4))
            if rng.random() < 0.5:
                batch_ctrl.add_batch_agents(k)
                loop.add_batch_agents(k)
            states = np.concatenate([states, rng.uniform(-4.0, 4.0, size=(k, d))])
        assert_same_agents(batch_ctrl, loop, atol)
    return modes_seen


# ------------------------------------------------------------------ properties (float64)
@settings(max_examples=40, deadline=None)
@given(setups())
def test_batched_rollout_equals_per_agent_loop_reference(setup: Setup) -> None:
    rollout(setup)


def test_equivalence_rollouts_exercise_td3_relax_and_fallback() -> None:
    """The setups the property draws do reach all three modes (else it would be vacuous)."""
    seen = np.zeros(3, dtype=np.int64)
    examples_with_all_modes = []

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(setups())
    def run(setup: Setup) -> None:
        counts = rollout(setup)
        seen[:] += counts
        examples_with_all_modes.append(bool((counts > 0).all()))

    run()
    total = seen.sum()
    for code in (Mode.CERTIFIED, Mode.RELAX, Mode.FALLBACK):
        assert seen[code] >= 0.05 * total, f"mode {UPSTREAM_MODE_NAMES[code]!r}: {seen.tolist()}"
    assert sum(examples_with_all_modes) >= 5


def test_float32_batched_rollout_equals_loop_reference_in_practice() -> None:
    """Production dtype, fixed seeds, moderate size: actions to ~1e-5, modes and counters
    equal (a float32 certificate sitting exactly on a threshold could flip; none does here)."""
    setup = Setup(
        weight_seed=7,
        q_bias=-0.6,
        nu_bar=0.0,
        kappa_low=0.01,
        kappa_up=0.5,
        lambda_relax=0.97,
        relax_prob_init=0.6,
        exploration_noise=0.1,
        n0=48,
        steps=15,
        scenario_seed=11,
    )
    counts = rollout(setup, dtype=torch.float32, atol=1e-5)
    assert (counts > 0).all(), counts


# ------------------------------------------------------------------ forward-pass counts
@pytest.mark.parametrize("n", [1, 5, 64, 1000])
def test_one_actor_and_one_critic_forward_per_batch_call(n: int) -> None:
    ctrl = build(Setup(), torch.float32)
    states = np.random.default_rng(n).uniform(-4, 4, size=(n, 2))
    counter = ctrl.td3.forward_counter
    for _ in range(3):  # first call (new agents) and later calls (certificates in place)
        counter.reset()
        ctrl.select_action_batch_codes(states, exploration_noise=0.1)
        assert counter.count(module="actor") == 1
        assert counter.count(module="critic") == 1
        assert counter.count() == 2
        states = states * 0.9


def test_per_agent_loop_makes_n_actor_and_n_critic_forwards() -> None:
    loop = PerAgentLoop(build(Setup(), torch.float32))
    counter = loop.controller.td3.forward_counter
    counter.reset()
    loop.select_action_batch_codes(np.ones((7, 2)))
    assert counter.count(module="actor") == 7
    assert counter.count(module="critic") == 7


@pytest.mark.parametrize("make", [lambda c: c, PerAgentLoop], ids=["batch", "loop"])
def test_zero_agents_returns_empty_arrays_and_makes_no_forward(make) -> None:
    policy = make(build(Setup(), torch.float32))
    counter = (policy.controller if isinstance(policy, PerAgentLoop) else policy).td3
    counter.forward_counter.reset()
    actions, codes = policy.select_action_batch_codes(np.zeros((0, 2)))
    assert actions.shape == (0, 1) and actions.dtype == np.float64
    assert codes.shape == (0,) and codes.dtype == np.int8
    assert policy.select_action_batch_codes([])[0].shape == (0, 1)
    if isinstance(policy, CALFController):  # the upstream string API
        actions, modes = policy.select_action_batch(np.zeros((0, 2)), return_modes=True)
        assert actions.shape == (0, 1) and modes == []
    assert counter.forward_counter.count() == 0
    assert policy.num_batch_agents == 0


# ------------------------------------------------------------------ agents and bad input
@pytest.mark.parametrize("make", [lambda c: c, PerAgentLoop], ids=["batch", "loop"])
def test_fewer_rows_than_agents_raises(make) -> None:
    policy = make(build(Setup(), torch.float32))
    policy.select_action_batch_codes(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"got 3 states for 5 batch agents.*remove"):
        policy.select_action_batch_codes(np.ones((3, 2)))
    assert policy.num_batch_agents == 5
    policy.remove_batch_agents([0, 1])
    actions, _ = policy.select_action_batch_codes(np.ones((3, 2)))
    assert actions.shape == (3, 1)


@pytest.mark.parametrize("make", [lambda c: c, PerAgentLoop], ids=["batch", "loop"])
def test_bad_states_raise_value_error_naming_rows(make) -> None:
    policy = make(build(Setup(), torch.float32))
    states = np.ones((6, 2))
    states[2, 0] = np.nan
    states[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf in rows \[2, 4\]"):
        policy.select_action_batch_codes(states)
    with pytest.raises(ValueError, match=r"shape \(N, 2\).*\(6, 3\)"):
        policy.select_action_batch_codes(np.ones((6, 3)))
    with pytest.raises(ValueError, match="shape"):
        policy.select_action_batch_codes(np.ones(4))
    assert policy.num_batch_agents == 0  # a refused call adds no agents


@pytest.mark.parametrize("make", [lambda c: c, PerAgentLoop], ids=["batch", "loop"])
def test_agent_rows_accept_indices_and_masks_and_reject_bad_rows(make) -> None:
    policy = make(build(Setup(), torch.float32))
    policy.add_batch_agents(4)
    with pytest.raises(ValueError, match="cannot add -1"):
        policy.add_batch_agents(-1)
    with pytest.raises(ValueError, match="out of range"):
        policy.remove_batch_agents([4])
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        policy.reset_batch_agents(np.array([True, False]))
    with pytest.raises(ValueError, match="integer indices or a boolean mask"):
        policy.remove_batch_agents([0.5])
    policy.reset_batch_agents([])
    policy.remove_batch_agents([])
    assert policy.num_batch_agents == 4
    policy.remove_batch_agents(np.array([True, False, False, True]))
    assert policy.num_batch_agents == 2
    policy.remove_batch_agents([-1])
    assert policy.num_batch_agents == 1


def test_removed_agents_take_their_state_with_them() -> None:
    ctrl = build(Setup(relax_prob_init=1.0), torch.float64)
    states = np.random.default_rng(0).uniform(-4, 4, size=(5, 2))
    ctrl.select_action_batch_codes(states)
    before = {k: getattr(ctrl.batch, k).copy() for k in ("s_cert", "q_cert", "P_relax")}
    ctrl.remove_batch_agents([1, 3])
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(ctrl.batch, k), v[[0, 2, 4]])


def test_reset_forgets_certificates_only() -> None:
    ctrl = build(Setup(), torch.float64)
    ctrl.select_action_batch_codes(np.ones((3, 2)))
    p_relax, steps = ctrl.batch.P_relax.copy(), ctrl.batch.total_steps.copy()
    assert ctrl.batch.has_cert.all()
    ctrl.reset_batch_agents([1])
    np.testing.assert_array_equal(ctrl.batch.has_cert, [True, False, True])
    np.testing.assert_array_equal(ctrl.batch.P_relax, p_relax)
    np.testing.assert_array_equal(ctrl.batch.total_steps, steps)


def test_batch_modes_are_names_of_codes() -> None:
    setup = Setup(n0=30)
    a = build(setup)
    b = build(setup)
    states = np.random.default_rng(1).uniform(-4, 4, size=(30, 2))
    for _ in range(4):
        actions, codes = a.select_action_batch_codes(states)
        actions2, modes = b.select_action_batch(states, return_modes=True)
        np.testing.assert_array_equal(actions, actions2)
        assert modes == [UPSTREAM_MODE_NAMES[c] for c in codes]
        np.testing.assert_array_equal(
            b.select_action_batch(states * 0), a.select_action_batch(states * 0)
        )
        states = states * 0.9


# ------------------------------------------------------------------ the training agent
def _training_trace(ctrl: CALFController, interleave_batch: bool) -> list:
    rng = np.random.default_rng(5)
    trace = []
    batch_states = rng.uniform(-4, 4, size=(20, 2))
    state = np.array([2.0, -1.0])
    for t in range(30):
        if interleave_batch:
            ctrl.select_action_batch_codes(batch_states, exploration_noise=0.3)
            if t % 7 == 3:
                ctrl.reset_batch_agents([0, 5])
        action, mode = ctrl.select_action(state, exploration_noise=0.2, return_mode=True)
        trace.append(
            (
                action.tolist(),
                mode,
                ctrl.last_q,
                ctrl.q_cert,
                None if ctrl.s_cert is None else ctrl.s_cert.tolist(),
                ctrl.P_relax,
                ctrl.total_steps,
                ctrl.certified_steps,
                ctrl.relax_events,
                ctrl.nominal_interventions,
            )
        )
        state = 0.95 * state + 0.05 * np.array([state[1], action[0]])
        if t == 15:
            ctrl.reset_certificate()
    return trace


def test_batch_calls_never_touch_the_training_agent() -> None:
    """Same select_action sequence, with and without batch calls in between: identical actions,
    modes, certificates, P_relax, counters and draws (the batch streams are separate)."""
    setup = Setup(relax_prob_init=0.5)
    plain = _training_trace(build(setup), interleave_batch=False)
    mixed = _training_trace(build(setup), interleave_batch=True)
    assert plain == mixed
    assert {m for _, m, *_ in plain} == {"td3", "relax", "fallback"}


def test_batch_call_leaves_training_agent_fields_unchanged() -> None:
    ctrl = build(Setup())
    ctrl.select_action(np.array([1.0, 0.5]))
    fields = (
        "s_cert a_cert q_cert P_relax last_q last_mode total_steps certified_steps "
        "relax_events nominal_interventions"
    ).split()
    before = {f: getattr(ctrl, f) for f in fields}
    noise_state = ctrl.noise_rng.bit_generator.state
    relax_state = ctrl.relax_rng.bit_generator.state
    ctrl.select_action_batch_codes(np.random.default_rng(0).uniform(-4, 4, (50, 2)), 0.3)
    for f in fields:
        after = getattr(ctrl, f)
        assert type(after) is type(before[f]) and np.array_equal(after, before[f]), f
    assert ctrl.noise_rng.bit_generator.state == noise_state
    assert ctrl.relax_rng.bit_generator.state == relax_state


# ------------------------------------------------------------------ nominal policies
def test_single_state_nominal_policy_runs_row_by_row_for_uncertified_rows_only() -> None:
    setup = Setup(relax_prob_init=0.3, lambda_relax=0.9)
    states = np.random.default_rng(2).uniform(-4, 4, size=(40, 2))
    batch_pd = build(setup)
    policy = SingleStateNominal()
    single = build(setup, nominal=policy)
    fallbacks = 0
    for _ in range(6):
        calls_before = policy.calls
        a1, c1 = batch_pd.select_action_batch_codes(states)
        a2, c2 = single.select_action_batch_codes(states)
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(a1, a2)
        n_fallback = int((c2 == Mode.FALLBACK).sum())
        assert policy.calls - calls_before == n_fallback
        fallbacks += n_fallback
        states = states * 0.95
    assert fallbacks > 0


def test_controller_detects_single_state_nominal_policy() -> None:
    policy = SingleStateNominal()
    ctrl = CALFController(2, 1, 5.0, policy, seed=0, relax_prob_init=0.0, nu_bar=1e9)
    states = np.random.default_rng(0).uniform(-4, 4, size=(10, 2))
    for _ in range(3):
        ctrl.select_action_batch_codes(states)
    assert policy.calls == int(ctrl.batch.nominal_interventions.sum()) == 20


def test_batch_nominal_policy_output_of_wrong_size_raises() -> None:
    ctrl = CALFController(
        2, 1, 5.0, LinearNominal(action_dim=2), seed=0, relax_prob_init=0.0, nu_bar=1e9
    )
    ctrl.select_action_batch_codes(np.ones((3, 2)))  # first step: no certificate, certified
    with pytest.raises(ValueError, match="nominal policy returned shape"):
        ctrl.select_action_batch_codes(np.ones((3, 2)))


# ------------------------------------------------------------------ sharing networks
def test_shared_td3_is_used_and_must_fit() -> None:
    parent = build(Setup(), torch.float32)
    child = CALFController(2, 1, 5.0, PDPolicy(), td3=parent.td3)
    assert child.td3 is parent.td3 and child.device == parent.device
    s = np.array([1.0, -2.0])
    np.testing.assert_array_equal(child.td3.select_action(s), parent.td3.select_action(s))
    with pytest.raises(ValueError, match="shared TD3"):
        CALFController(3, 1, 5.0, PDPolicy(), td3=parent.td3)
    with pytest.raises(ValueError, match="shared TD3"):
        CALFController(2, 1, 2.0, PDPolicy(), td3=parent.td3)


def test_per_agent_loop_agents_share_networks_and_batch_generators() -> None:
    parent = build(Setup(), torch.float32)
    loop = PerAgentLoop(parent)
    loop.add_batch_agents(3)
    for agent in loop.agents:
        assert agent.td3 is parent.td3
        assert agent.noise_rng is parent.batch_noise_rng
        assert agent.relax_rng is parent.batch_relax_rng
        assert agent.P_relax == parent.relax_prob_init
        assert (agent.nu_bar, agent.kappa_low_coef, agent.kappa_up_coef) == (
            parent.nu_bar,
            parent.kappa_low_coef,
            parent.kappa_up_coef,
        )


def test_set_relax_probability_matches_between_paths() -> None:
    setup = Setup(n0=12)
    ctrl, loop = build(setup), PerAgentLoop(build(setup))
    states = np.random.default_rng(3).uniform(-4, 4, size=(12, 2))
    for policy in (ctrl, loop):
        policy.select_action_batch_codes(states)
        policy.set_relax_probability(0.0)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            policy.set_relax_probability(1.5)
    for _ in range(3):
        _, c1 = ctrl.select_action_batch_codes(states)
        _, c2 = loop.select_action_batch_codes(states)
        np.testing.assert_array_equal(c1, c2)
        assert not (c1 == Mode.RELAX).any()  # P_relax = 0: certified or fallback, never relax
        states = states * 0.9
    assert_same_agents(ctrl, loop, atol=1e-9)


# ------------------------------------------------------------------ TD3 batch acting
def test_td3_select_action_batch_matches_select_action_row_wise() -> None:
    ctrl = build(Setup(), torch.float32)
    states = np.random.default_rng(4).uniform(-4, 4, size=(33, 2))
    batch = ctrl.td3.select_action_batch(states)
    assert batch.shape == (33, 1) and batch.dtype == np.float64
    rows = np.stack([ctrl.td3.select_action(s) for s in states])
    np.testing.assert_allclose(batch, rows, rtol=0, atol=1e-6)
    # With noise: the same row-major draws from identically seeded generators.
    ctrl.td3.rng = np.random.default_rng(9)
    noisy = ctrl.td3.select_action_batch(states, noise=0.2)
    ctrl.td3.rng = np.random.default_rng(9)
    noisy_rows = np.stack([ctrl.td3.select_action(s, noise=0.2) for s in states])
    np.testing.assert_allclose(noisy, noisy_rows, rtol=0, atol=1e-6)
    assert np.abs(noisy).max() <= 5.0
    assert ctrl.td3.select_action_batch(np.zeros((0, 2))).shape == (0, 1)


# ------------------------------------------------------------------ device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_path_equals_cpu() -> None:
    setup = Setup(n0=200, exploration_noise=0.1, relax_prob_init=0.5)
    cpu = build(setup, torch.float64, "cpu")
    gpu = build(setup, torch.float64, "cuda")
    assert gpu.td3.device.type == "cuda"
    states = np.random.default_rng(6).uniform(-4, 4, size=(200, 2))
    for _ in range(10):
        a1, c1 = cpu.select_action_batch_codes(states, 0.1)
        gpu.td3.forward_counter.reset()
        a2, c2 = gpu.select_action_batch_codes(states, 0.1)
        assert gpu.td3.forward_counter.count() == 2
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_allclose(a1, a2, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cpu.batch.q_cert, gpu.batch.q_cert, rtol=0, atol=1e-9)
        states = 0.95 * states + 0.05 * np.c_[states[:, 1], a1[:, 0]]
    loop = PerAgentLoop(build(setup, torch.float64, "cuda"))
    a3, c3 = loop.select_action_batch_codes(np.ones((4, 2)))
    assert a3.shape == (4, 1) and c3.shape == (4,)
