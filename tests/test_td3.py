"""TD3: network shapes and bounds, acting (single and batched), learning steps, policy delay."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from calf import TD3, Actor, Critic, ReplayBuffer


def filled_replay(n: int = 300, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer(2, 1, 1000)
    for _ in range(n):
        s = rng.uniform(-4, 4, 2)
        a = rng.uniform(-5, 5, 1)
        replay.add(s, a, -float(np.linalg.norm(s)), s + 0.01 * rng.normal(size=2), False)
    return replay


def params_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


# ---------------------------------------------------------------- networks
def test_actor_output_shape_and_bounds() -> None:
    actor = Actor(3, 2, max_action=2.5, hidden_dim=16)
    with torch.no_grad():
        out = actor(torch.randn(50, 3) * 100.0)  # huge inputs saturate tanh
    assert out.shape == (50, 2)
    assert out.abs().max() <= 2.5
    assert out.abs().max() > 2.0


def test_actor_and_critic_compute_what_their_sequentials_compute() -> None:
    actor, critic = Actor(2, 1, 5.0), Critic(2, 1)
    s, a = torch.randn(9, 2), torch.randn(9, 1)
    with torch.no_grad():
        assert torch.equal(actor(s), actor.net(s) * 5.0)
        q1, q2 = critic(s, a)
        sa = torch.cat([s, a], dim=1)
        assert torch.equal(q1, critic.q1_net(sa)) and torch.equal(q2, critic.q2_net(sa))
        (only,) = critic(s, a, q1_only=True)
        assert torch.equal(only, q1)
    assert q1.shape == q2.shape == (9, 1)
    assert not torch.equal(q1, q2)  # two independent heads


def test_network_copies_use_their_own_layers() -> None:
    actor = Actor(2, 1, 5.0)
    twin = copy.deepcopy(actor)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
        s = torch.randn(4, 2)
        assert not torch.equal(actor(s), twin(s))
        assert torch.equal(twin(s), twin.net(s) * 5.0)


def test_state_dict_keys_are_the_sequential_layout() -> None:
    assert list(Actor(2, 1, 5.0).state_dict()) == [
        f"net.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")
    ]
    # One module over both heads, stored flat, still saved as two nn.Sequential heads.
    assert list(Critic(2, 1).state_dict()) == [
        f"{head}.{i}.{p}"
        for head in ("q1_net", "q2_net")
        for i in (0, 2, 4)
        for p in ("weight", "bias")
    ]


def test_seeded_weights_are_reproducible_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b = TD3(2, 1, 5.0, seed=4), TD3(2, 1, 5.0, seed=4)
    assert torch.equal(torch.rand(1), expected)
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = TD3(2, 1, 5.0, seed=5)
    assert not torch.equal(next(a.actor.parameters()), next(c.actor.parameters()))


def test_targets_start_as_copies() -> None:
    td3 = TD3(2, 1, 5.0, seed=0)
    for net, target in ((td3.actor, td3.actor_target), (td3.critic, td3.critic_target)):
        assert target is not net
        for p, tp in zip(net.parameters(), target.parameters(), strict=True):
            assert torch.equal(p, tp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_applied(dtype: torch.dtype) -> None:
    td3 = TD3(2, 1, 5.0, seed=0, dtype=dtype)
    assert all(p.dtype == dtype for p in td3.actor.parameters())
    assert td3.to_tensor(np.ones((3, 2))).dtype == dtype
    assert td3.select_action([1.0, 2.0]).dtype == np.float64


# ---------------------------------------------------------------- acting
def test_select_action_shape_bounds_and_noise() -> None:
    td3 = TD3(2, 1, 5.0, seed=0)
    s = np.array([1.0, -1.0])
    a = td3.select_action(s)
    assert a.shape == (1,) and a.dtype == np.float64
    assert np.array_equal(a, td3.select_action(s))  # deterministic without noise
    noisy = np.array([td3.select_action(s, noise=1.0) for _ in range(200)])
    assert noisy.std() > 1.0 and np.abs(noisy).max() <= 5.0
    assert (np.abs(noisy) == 5.0).any()  # noise of std 5 gets clipped


def test_select_action_batch_matches_select_action_row_wise() -> None:
    td3 = TD3(2, 1, 5.0, seed=1)
    states = np.random.default_rng(0).uniform(-4, 4, (40, 2))
    batch = td3.select_action_batch(states)
    assert batch.shape == (40, 1) and batch.dtype == np.float64
    rows = np.stack([td3.select_action(s) for s in states])
    np.testing.assert_allclose(batch, rows, rtol=0, atol=1e-6)


def test_act_and_q1_is_one_actor_and_one_critic_forward() -> None:
    td3 = TD3(2, 1, 5.0, seed=2)
    s_t = td3.to_tensor(np.random.default_rng(0).uniform(-1, 1, (8, 2)))
    td3.forward_counter.reset()
    a, q = td3.act_and_q1(s_t)
    assert a.shape == (8, 1) and q.shape == (8, 1)
    assert td3.forward_counter.count(module="actor") == 1
    assert td3.forward_counter.count(module="critic") == 1
    with torch.no_grad():
        assert torch.equal(q, td3.critic(s_t, a)[0])
    assert not a.requires_grad and not q.requires_grad


def test_to_tensor_handles_views_and_read_only_arrays() -> None:
    td3 = TD3(2, 1, 5.0, seed=0, dtype=torch.float64)
    base = np.arange(20.0).reshape(10, 2)
    flipped = base[::-1]  # negative strides: torch.from_numpy alone refuses these
    assert torch.equal(td3.to_tensor(flipped), torch.tensor(flipped.copy()))
    ro = base.copy()
    ro.flags.writeable = False
    with_warnings = td3.to_tensor(ro)
    assert torch.equal(with_warnings, torch.tensor(base))
    np.testing.assert_array_equal(
        td3.select_action_batch(flipped), td3.select_action_batch(base)[::-1]
    )


@pytest.mark.parametrize(
    ("state", "match"),
    [([1.0], r"shape \(2,\)"), ([np.nan, 1.0], "NaN or inf"), ([[1.0, 2.0, 3.0]], "shape")],
)
def test_select_action_rejects_bad_states(state, match) -> None:
    with pytest.raises(ValueError, match=match):
        TD3(2, 1, 5.0).select_action(state)


def test_select_action_batch_rejects_bad_states_naming_rows() -> None:
    td3 = TD3(2, 1, 5.0)
    states = np.zeros((5, 2))
    states[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        td3.select_action_batch(states)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        td3.select_action_batch(np.zeros((5, 3)))


# ---------------------------------------------------------------- learning
# Every learning test runs both update paths: the fused default and the reference.
both_paths = pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])


def test_the_fused_update_is_the_default() -> None:
    assert TD3(2, 1, 5.0).fused_update and not TD3(2, 1, 5.0, fused_update=False).fused_update


@both_paths
def test_train_returns_losses_and_changes_weights(fused: bool) -> None:
    td3 = TD3(2, 1, 5.0, seed=0, fused_update=fused)
    replay = filled_replay()
    critic0, actor0 = params_of(td3.critic), params_of(td3.actor)
    target0 = params_of(td3.critic_target)
    first = td3.train(replay, batch_size=32)
    assert isinstance(first["critic_loss"], float) and first["critic_loss"] > 0
    assert first["actor_loss"] is None  # step 1: critic only
    assert changed(critic0, td3.critic) and not changed(actor0, td3.actor)
    assert not changed(target0, td3.critic_target)
    second = td3.train(replay, batch_size=32)
    assert isinstance(second["actor_loss"], float)
    assert changed(actor0, td3.actor) and changed(target0, td3.critic_target)


@both_paths
@pytest.mark.parametrize("delay", [1, 2, 3])
def test_policy_delay(delay: int, fused: bool) -> None:
    td3 = TD3(2, 1, 5.0, seed=0, policy_delay=delay, fused_update=fused)
    replay = filled_replay()
    actor_steps = []
    for it in range(1, 7):
        before = params_of(td3.actor)
        losses = td3.train(replay, batch_size=16)
        moved = changed(before, td3.actor)
        assert moved == (losses["actor_loss"] is not None) == (it % delay == 0)
        actor_steps.append(moved)
    assert td3.total_it == 6 and sum(actor_steps) == 6 // delay


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_a_policy_step_moves_the_targets_by_tau_toward_the_updated_networks(fused) -> None:
    td3 = TD3(2, 1, 5.0, seed=0, tau=0.1, policy_delay=1, fused_update=fused)
    replay = filled_replay()
    before = {net: params_of(getattr(td3, f"{net}_target")) for net in ("actor", "critic")}
    td3.train(replay, batch_size=32)
    for net in ("actor", "critic"):
        target, source = getattr(td3, f"{net}_target"), getattr(td3, net)
        assert changed(before[net], target)
        for tb, tp, p in zip(before[net], target.parameters(), source.parameters(), strict=True):
            torch.testing.assert_close(tp, 0.9 * tb + 0.1 * p.detach())


@both_paths
def test_training_forwards_are_counted_under_the_training_tag(fused: bool) -> None:
    td3 = TD3(2, 1, 5.0, seed=0, fused_update=fused)
    replay = filled_replay()
    td3.forward_counter.reset()
    td3.train(replay, batch_size=16)  # critic step: target actor, target critic, critic
    td3.train(replay, batch_size=16)  # + actor step: actor and critic once more
    c = td3.forward_counter
    assert c.count(tag="inference") == 0
    assert c.count(tag="training", module="actor_target") == 2
    assert c.count(tag="training", module="critic_target") == 2
    assert c.count(tag="training", module="critic") == 3
    assert c.count(tag="training", module="actor") == 1


@both_paths
def test_train_is_reproducible_with_a_seed(fused: bool) -> None:
    results = []
    for _ in range(2):
        td3 = TD3(2, 1, 5.0, seed=3, fused_update=fused)
        replay = filled_replay(seed=1)
        results.append([td3.train(replay, 32)["critic_loss"] for _ in range(4)])
    assert results[0] == results[1]


@both_paths
def test_train_refuses_a_replay_smaller_than_the_batch(fused: bool) -> None:
    with pytest.raises(ValueError, match="fewer than 64"):
        TD3(2, 1, 5.0, fused_update=fused).train(filled_replay(10), batch_size=64)
