"""The evaluation protocol: batched rollouts equal a per-row loop, finished rows stop, CALF as
deployed never relaxes and leaves the training agent alone, one policy call per step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from calf.config import RunConfig, apply_overrides
from calf.envs import step_batch
from calf.evaluation import (
    POLICIES,
    Evaluator,
    NominalOnly,
    RolloutStepper,
    deployed_calf,
    format_eval_line,
    frozen_copy,
    start_states,
)
from calf.modes import Mode
from calf.nominal import pd_from_config
from calf.replay import ReplayBuffer
from calf.trainer import make_controller


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_config(**values: object) -> RunConfig:
    base = {"eval.rollouts": 12, "eval.max_steps": 300, **values}
    return apply_overrides(RunConfig(), base)


def loop_rollout(policy, start: np.ndarray, cfg: RunConfig) -> tuple[int, bool, float]:
    """The reference: one rollout, one row, step by step."""
    params = cfg.env.params(max_steps=cfg.eval.max_steps)
    s, total = start[None, :].copy(), 0.0
    for t in range(params.max_steps):
        s, reward, hit, outside = step_batch(s, policy(s), params)
        total += float(reward[0])
        if hit[0] or outside[0]:
            return t + 1, bool(hit[0]), total
    return params.max_steps, False, total


def run_rollouts(policy, starts, params, record: bool = True):
    """The rollouts stepped to their end, as an evaluation does between its slices."""
    stepper = RolloutStepper(policy, starts, params, record)
    while not stepper.done:
        stepper.step()
    return stepper.result()


def test_start_states_are_seeded_and_in_the_reset_box() -> None:
    cfg = small_config()
    a, b = start_states(cfg), start_states(cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 2) and np.abs(a).max() <= cfg.env.init_range
    other = start_states(apply_overrides(cfg, {"eval.seed": 1}))
    assert not np.array_equal(a, other)


def test_batched_rollouts_equal_a_per_row_loop() -> None:
    # Rows that reach the goal at different steps, hit the step limit or leave the box.
    cfg = small_config(**{"eval.max_steps": 650})
    pd = pd_from_config(cfg)
    starts = np.concatenate([start_states(cfg), [[9.5, 9.0], [0.05, 0.0]]])
    out = run_rollouts(NominalOnly(pd), starts, cfg.env.params(max_steps=cfg.eval.max_steps))
    for i, start in enumerate(starts):
        length, reached, total = loop_rollout(pd, start, cfg)
        assert out.lengths[i] == length and out.reached[i] == reached
        assert out.returns[i] == pytest.approx(total, rel=1e-12)
    assert len(set(out.lengths.tolist())) > 5 and out.reached.any() and not out.reached.all()
    assert not out.reached[-2] and out.lengths[-2] < 650  # left the box


def test_finished_rows_stop_and_are_padded() -> None:
    cfg = small_config()
    out = run_rollouts(
        NominalOnly(pd_from_config(cfg)),
        start_states(cfg),
        cfg.env.params(max_steps=cfg.eval.max_steps),
    )
    for i, n in enumerate(out.lengths):
        assert np.isfinite(out.states[i, : n + 1]).all() and np.isnan(out.states[i, n + 1 :]).all()
        assert (out.modes[i, :n] == Mode.FALLBACK).all() and (out.modes[i, n:] == -1).all()
        np.testing.assert_array_equal(out.final_states[i], out.states[i, n])
    assert out.mode_counts.sum() == out.lengths.sum()


def test_unrecorded_rollouts_give_the_same_figures() -> None:
    cfg = small_config()
    args = (start_states(cfg), cfg.env.params(max_steps=cfg.eval.max_steps))
    pd = pd_from_config(cfg)
    recorded = run_rollouts(NominalOnly(pd), *args)
    bare = run_rollouts(NominalOnly(pd), *args, record=False)
    assert bare.states.size == 0 and bare.summary(False) == recorded.summary(False)


def test_calf_as_deployed_never_relaxes_and_leaves_the_training_agent_alone(one_thread) -> None:
    cfg = small_config()
    trained = make_controller(cfg)
    trained.select_action([1.0, 1.0])  # a first step is certified: the agent holds a certificate
    trained.add_batch_agents(2)
    before = (trained.q_cert, trained.P_relax, trained.num_batch_agents)
    rng_states = [g.bit_generator.state for g in (trained.noise_rng, trained.relax_rng)]
    result = Evaluator(cfg).evaluate(trained.td3, episode=3)
    calf = result.rollouts["calf"]
    assert calf.mode_counts[Mode.RELAX] == 0 and calf.mode_counts[Mode.UNCHECKED] == 0
    assert result.calf.certified_share + result.calf.fallback_share == pytest.approx(1.0)
    assert (trained.q_cert, trained.P_relax, trained.num_batch_agents) == before
    assert [g.bit_generator.state for g in (trained.noise_rng, trained.relax_rng)] == rng_states


def test_deployed_calf_uses_the_config_certificate_and_no_relax() -> None:
    cfg = small_config(**{"calf.nu_bar": 0.3, "calf.kappa_up_coef": 77.0})
    ctrl = deployed_calf(make_controller(cfg).td3, cfg)
    assert (ctrl.nu_bar, ctrl.kappa_up_coef, ctrl.relax_prob_init) == (0.3, 77.0, 0.0)
    assert (ctrl.nominal_policy.kp, ctrl.nominal_policy.kd) == (cfg.nominal.kp, cfg.nominal.kd)


def test_one_batched_policy_call_per_step_counted_apart(one_thread) -> None:
    cfg = small_config()
    td3 = make_controller(cfg).td3
    counter = td3.forward_counter
    counter.reset()
    result = Evaluator(cfg).evaluate(td3, episode=0)
    steps = {p: int(result.rollouts[p].lengths.max()) for p in ("calf", "actor")}
    # CALF: one actor and one critic forward per step for all rows; actor alone: one actor.
    assert counter.count(tag="evaluation", module="actor") == steps["calf"] + steps["actor"]
    assert counter.count(tag="evaluation", module="critic") == steps["calf"]
    assert counter.count(tag="inference") == 0


def test_the_nominal_result_is_computed_once(one_thread) -> None:
    cfg = small_config()
    evaluator, td3 = Evaluator(cfg), make_controller(cfg).td3
    first, second = evaluator.start(td3, 1), evaluator.start(td3, 2)  # before either finished
    first.advance(None)
    second.advance(None)
    third = evaluator.start(td3, 3)
    third.advance(None)
    nominal = {id(run.result().rollouts["nominal"]) for run in (first, second, third)}
    assert len(nominal) == 1  # one object: computed by the first to finish, then reused
    assert third.steps < second.steps == first.steps  # the third ran no nominal rollouts


def test_json_schema_and_the_one_line_summary(one_thread) -> None:
    cfg = small_config(**{"eval.max_steps": 1000})
    result = Evaluator(cfg).evaluate(make_controller(cfg).td3, episode=20)
    data = result.to_json()
    assert list(data) == ["episode", *POLICIES] and data["episode"] == 20
    keys = {
        "success_rate",
        "mean_steps_to_goal",
        "mean_final_distance",
        "mean_return",
        "certified_share",
        "fallback_share",
    }
    for policy in POLICIES:
        assert set(data[policy]) == keys
    assert data["actor"]["certified_share"] is None and data["nominal"]["fallback_share"] is None
    assert data["nominal"]["success_rate"] == 1.0
    line = format_eval_line(result)
    assert line.startswith("eval ep 20: CALF ") and "| actor " in line and "| nominal 100%" in line
    assert "\n" not in line


def test_no_success_reports_no_mean_steps() -> None:
    cfg = small_config(**{"eval.max_steps": 3})
    result = Evaluator(cfg).evaluate(make_controller(cfg).td3, episode=0).nominal
    assert result.success_rate == 0.0 and result.mean_steps_to_goal is None


@settings(max_examples=8, deadline=None)
@given(slices=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30))
def test_an_evaluation_in_slices_equals_one_uninterrupted_evaluation(slices: list[int]) -> None:
    cfg = small_config()
    td3 = make_controller(cfg).td3
    whole = Evaluator(cfg).evaluate(td3, episode=7)
    run = Evaluator(cfg).start(td3, episode=7)
    budgets = iter(slices)
    while not run.done:  # slices of k steps each: a deadline already passed stops after one
        for _ in range(next(budgets, 10_000)):
            if run.advance(0.0):
                break
    sliced = run.result()
    assert sliced.to_json() == whole.to_json()
    for name in POLICIES:
        np.testing.assert_array_equal(sliced.rollouts[name].states, whole.rollouts[name].states)
        np.testing.assert_array_equal(sliced.rollouts[name].modes, whole.rollouts[name].modes)


def test_a_frozen_copy_evaluates_the_weights_it_was_taken_from(one_thread) -> None:
    cfg = small_config()
    controller = make_controller(cfg)
    frozen = frozen_copy(controller.td3)
    before = Evaluator(cfg).evaluate(controller.td3, episode=1).to_json()
    replay = ReplayBuffer(2, 1, 256)
    rng = np.random.default_rng(0)
    for _ in range(256):  # training moves the live networks...
        s = rng.uniform(-1, 1, 2)
        replay.add(s, rng.uniform(-1, 1, 1), -1.0, s * 0.9, False)
    for _ in range(20):
        controller.train(replay, 64)
    assert Evaluator(cfg).evaluate(controller.td3, episode=1).to_json() != before
    assert Evaluator(cfg).evaluate(frozen, episode=1).to_json() == before  # ...not the copy
    counter = controller.td3.forward_counter
    counter.reset()
    Evaluator(cfg).evaluate(frozen, episode=1)
    assert counter.count(tag="evaluation") > 0  # its forwards count where the live ones do
