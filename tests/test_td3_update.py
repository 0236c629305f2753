"""The fused TD3 update computes what the reference update computes.

The proofs, bottom up: each hand-written pass equals autograd on the plain networks (outputs and
gradients, float64, random shapes); flat Adam equals ``torch.optim.Adam``; K whole updates of
both paths from one seed and one replay agree (parameters, optimiser states, losses); either
path's checkpoints load into the other; forward counts match.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from calf import TD3, Actor, Critic, ReplayBuffer
from calf.flat import FlatAdam, FlatParams
from calf.twin_critic import ActorPass, Q1Pass, TwinCriticPass

F64 = torch.float64
LAYERS = (0, 2, 4)  # the Linear layers of each nn.Sequential head


def filled_replay(n: int = 400, seed: int = 0, state_dim: int = 2, action_dim: int = 1):
    """Transitions with some terminal ones, so not_done = 0 rows are exercised."""
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer(state_dim, action_dim, 2 * n)
    for _ in range(n):
        s = rng.uniform(-4, 4, state_dim)
        a = rng.uniform(-5, 5, action_dim)
        replay.add(
            s,
            a,
            -float(np.linalg.norm(s)),
            s + 0.1 * rng.normal(size=state_dim),
            rng.random() < 0.1,
        )
    return replay


def seeded(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def critic_grad(critic: Critic, head: int, layer: int, name: str) -> torch.Tensor:
    """The fused gradient of one head's parameter, read from the critic's flat gradient."""
    group = 2 * LAYERS.index(layer) + ("weight", "bias").index(name)
    return critic.flat.grad_blocks[group][head]


dims = {
    "state_dim": st.integers(1, 4),
    "action_dim": st.integers(1, 3),
    "hidden": st.integers(1, 12),
    "batch": st.integers(1, 33),
    "seed": st.integers(0, 2**16),
}


# ------------------------------------------------------------------ the passes
@settings(max_examples=40, deadline=None)
@given(**dims)
def test_fused_twin_critic_equals_two_separate_critics_outputs_and_gradients(
    state_dim: int, action_dim: int, hidden: int, batch: int, seed: int
) -> None:
    torch.manual_seed(seed)
    critic = Critic(state_dim, action_dim, hidden).to(F64)
    heads = [copy.deepcopy(critic.q1_net), copy.deepcopy(critic.q2_net)]  # two plain critics
    s, a = seeded(seed, batch, state_dim), seeded(seed + 1, batch, action_dim)
    dq = seeded(seed + 2, 2, batch, 1)

    fused = TwinCriticPass(batch, state_dim, action_dim, hidden, F64)
    q1, q2 = critic(s, a, fused_pass=fused)
    fused.backward(critic.flat.grad_blocks, dq)

    sa = torch.cat([s, a], dim=1)
    for k, head in enumerate(heads):
        q = head(sa)
        torch.testing.assert_close((q1, q2)[k], q.detach(), rtol=1e-12, atol=1e-12)
        (q * dq[k]).sum().backward()
        for layer in LAYERS:
            for name in ("weight", "bias"):
                expected = getattr(head[layer], name).grad
                got = critic_grad(critic, k, layer, name)
                torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(**dims)
def test_q1_pass_equals_head_one_and_its_action_gradient(
    state_dim: int, action_dim: int, hidden: int, batch: int, seed: int
) -> None:
    torch.manual_seed(seed)
    critic = Critic(state_dim, action_dim, hidden).to(F64)
    s, dq = seeded(seed, batch, state_dim), seeded(seed + 2, batch, 1)
    a = seeded(seed + 1, batch, action_dim).requires_grad_()
    fused = Q1Pass(batch, state_dim, action_dim, hidden, F64)
    (q1,) = critic(s, a.detach(), q1_only=True, fused_pass=fused)
    d_action = fused.action_grad(dq)
    (expected,) = critic(s, a, q1_only=True)
    (expected * dq).sum().backward()
    torch.testing.assert_close(q1, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d_action, a.grad, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(**dims, max_action=st.floats(0.1, 10.0))
def test_actor_pass_equals_the_actor_outputs_and_gradients(
    state_dim: int, action_dim: int, hidden: int, batch: int, seed: int, max_action: float
) -> None:
    torch.manual_seed(seed)
    actor = Actor(state_dim, action_dim, max_action, hidden).to(F64)
    s, da = seeded(seed, batch, state_dim), seeded(seed + 1, batch, action_dim)
    fused = ActorPass(batch, state_dim, action_dim, hidden, max_action, F64)
    out = actor(s, fused_pass=fused).clone()
    fused.backward(actor.flat.grad_blocks, da)
    expected = actor(s)
    (expected * da).sum().backward()
    torch.testing.assert_close(out, expected.detach(), rtol=1e-12, atol=1e-12)
    for i, (p, g) in enumerate(zip(actor.parameters(), actor.flat.grad_blocks, strict=True)):
        torch.testing.assert_close(g[0], p.grad, rtol=1e-12, atol=1e-12, msg=f"parameter {i}")


def test_passes_refuse_wrong_shapes() -> None:
    critic = Critic(2, 1, 8)
    twin = TwinCriticPass(5, 2, 1, 8)
    with pytest.raises(ValueError, match=r"state has shape \(4, 2\)"):
        critic(torch.zeros(4, 2), torch.zeros(4, 1), fused_pass=twin)
    with pytest.raises(ValueError, match="weights have shapes"):
        TwinCriticPass(5, 2, 1, 16).forward(
            critic.flat.blocks, torch.zeros(5, 2), torch.zeros(5, 1)
        )
    with pytest.raises(ValueError, match="backward before forward"):
        twin.backward(critic.flat.grad_blocks, torch.zeros(2, 5, 1))
    twin.forward(critic.flat.blocks, torch.zeros(5, 2), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="dq has shape"):
        twin.backward(critic.flat.grad_blocks, torch.zeros(5, 1))
    with pytest.raises(ValueError, match="Q1Pass goes with q1_only=True"):
        critic(torch.zeros(5, 2), torch.zeros(5, 1), q1_only=True, fused_pass=twin)
    with pytest.raises(ValueError, match="must be positive"):
        TwinCriticPass(0, 2, 1, 8)


# ------------------------------------------------------------ flat parameters
def test_flat_parameters_are_the_modules_parameters_in_one_tensor() -> None:
    critic = Critic(2, 1, 8)
    flat = critic.flat
    assert sum(p.numel() for p in critic.parameters()) == flat.flat.numel()
    assert {id(p) for p in flat.params} == {id(p) for p in critic.parameters()}
    # Stacked blocks are views: the heads' weights, one after the other.
    assert torch.equal(flat.blocks[2][0], critic.q1_net[2].weight)
    assert torch.equal(flat.blocks[2][1], critic.q2_net[2].weight)
    with torch.no_grad():
        critic.q2_net[4].bias += 3.0  # an in-place edit lands in the flat tensor
    assert torch.equal(flat.blocks[5][1], critic.q2_net[4].bias)


@pytest.mark.parametrize(
    "rebuild",
    [
        pytest.param(lambda c: c.to(F64), id="to-float64"),
        pytest.param(copy.deepcopy, id="deepcopy"),
        pytest.param(
            lambda c: (c.load_state_dict(Critic(2, 1, 8).state_dict(), assign=True), c)[1],
            id="load-assign",
        ),
    ],
)
def test_fused_forward_follows_parameters_whose_tensors_were_replaced(rebuild) -> None:
    critic = rebuild(Critic(2, 1, 8))
    dtype = next(critic.parameters()).dtype
    s, a = torch.randn(6, 2, dtype=dtype), torch.randn(6, 1, dtype=dtype)
    with torch.no_grad():
        expected = critic(s, a)
        got = critic(s, a, fused_pass=TwinCriticPass(6, 2, 1, 8, dtype))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e)
    assert critic.flat.is_bound()


def test_flat_params_refuse_mixed_shapes_and_dtypes() -> None:
    a, b = torch.nn.Linear(2, 3), torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="different shapes"):
        FlatParams([[(a, "weight"), (b, "weight")]])
    with pytest.raises(ValueError, match="one dtype"):
        FlatParams([[(a, "weight")], [(b.to(F64), "weight")]])
    with pytest.raises(ValueError, match="non-empty"):
        FlatParams([])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "foreach-arithmetic"])
def test_flat_adam_equals_torch_adam(dtype: torch.dtype, fused: bool) -> None:
    """Same gradients, five steps: what ``torch.optim.Adam`` with the same implementation does,
    and the optimiser's own state ends up the same. The foreach arithmetic is elementwise op
    for op, so bit for bit; the fused kernel's vector loop may split one flat tensor at other
    elements than twelve small ones, so a few ulps are allowed there."""
    if fused and not hasattr(torch, "_fused_adam_"):
        pytest.skip("this torch has no fused Adam kernel")
    ulps = 4 * torch.finfo(dtype).eps if fused else 0.0
    tol = {"rtol": ulps, "atol": ulps}
    torch.manual_seed(0)
    a = Critic(2, 1, 8).to(dtype)
    b = copy.deepcopy(a)
    impl = {"fused": True} if fused else {"foreach": True}
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, **impl)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, foreach=True)
    flat_b = FlatAdam(opt_b, b.flat, fused=fused)
    assert flat_b.fused == fused
    a_params, b_index = list(a.parameters()), {id(q): i for i, q in enumerate(b.parameters())}
    for step in range(5):
        grads = [torch.randn_like(p) for p in a_params]
        for p, g in zip(a_params, grads, strict=True):
            p.grad = g
        opt_a.step()
        b.flat.ensure_bound()  # b is a deepcopy: its first use binds it
        for group, gblock in zip(b.flat.groups, b.flat.grad_blocks, strict=True):
            for k, p in enumerate(group):
                gblock[k].copy_(grads[b_index[id(p)]])
        flat_b.step()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pb, pa, **tol, msg=f"step {step}")
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for key in sa[i]:
            torch.testing.assert_close(sb[i][key], sa[i][key], **tol, msg=f"{i} {key}")


def test_flat_adam_picks_up_a_loaded_optimiser_state() -> None:
    torch.manual_seed(0)
    net = Actor(2, 1, 5.0, 8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    flat = FlatAdam(opt, net.flat)
    net.flat.grad.normal_()
    flat.step()
    saved = copy.deepcopy(opt.state_dict())
    params = copy.deepcopy(list(net.parameters()))
    for _ in range(3):
        flat.step()
    with torch.no_grad():
        for p, q in zip(net.parameters(), params, strict=True):
            p.copy_(q)
    opt.load_state_dict(saved)
    flat.step()  # re-binds: continues from the loaded step 1, not from step 4
    assert all(float(s["step"]) == 2.0 for s in opt.state.values())


def test_flat_adam_refuses_what_it_does_not_implement() -> None:
    net = Actor(2, 1, 5.0, 8)
    with pytest.raises(ValueError, match="weight_decay"):
        FlatAdam(torch.optim.Adam(net.parameters(), weight_decay=0.1), net.flat).step()
    with pytest.raises(ValueError, match="exactly the flat parameters"):
        FlatAdam(torch.optim.Adam(list(net.parameters())[:2]), net.flat)
    # Parameters replaced under the optimiser (load with assign=True): it would step the old ones.
    adam = FlatAdam(torch.optim.Adam(net.parameters()), net.flat)
    net.load_state_dict(Actor(2, 1, 5.0, 8).state_dict(), assign=True)
    with pytest.raises(ValueError, match="exactly the flat parameters"):
        adam.step()


# ------------------------------------------------------------ whole updates
def run_both(dtype: torch.dtype, k: int, batch: int, policy_delay: int = 2, seed: int = 3):
    replay = filled_replay(seed=seed)
    agents = [
        TD3(2, 1, 5.0, seed=seed, dtype=dtype, policy_delay=policy_delay, fused_update=f)
        for f in (False, True)
    ]
    losses = [[agent.train(replay, batch) for _ in range(k)] for agent in agents]
    return agents, losses


def assert_agents_close(ref: TD3, fast: TD3, rtol: float, atol: float) -> None:
    for name in ("actor", "critic", "actor_target", "critic_target"):
        for (key, p), q in zip(
            getattr(ref, name).named_parameters(), getattr(fast, name).parameters(), strict=True
        ):
            torch.testing.assert_close(q, p, rtol=rtol, atol=atol, msg=f"{name}.{key}")
    for name in ("actor_optimizer", "critic_optimizer"):
        sr, sf = getattr(ref, name).state_dict(), getattr(fast, name).state_dict()
        assert sr["param_groups"] == sf["param_groups"]
        assert sr["state"].keys() == sf["state"].keys()
        for i, state in sr["state"].items():
            assert state.keys() == sf["state"][i].keys()
            assert torch.equal(state["step"], sf["state"][i]["step"])
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(
                    sf["state"][i][key], state[key], rtol=rtol, atol=atol, msg=f"{name}.{i}.{key}"
                )
    assert ref.total_it == fast.total_it


@pytest.mark.parametrize(
    ("dtype", "rtol", "atol"), [(torch.float32, 1e-5, 1e-6), (F64, 1e-10, 1e-12)]
)
@pytest.mark.parametrize("batch", [1, 32, 256])
def test_k_fused_updates_equal_k_reference_updates(dtype, rtol, atol, batch) -> None:
    (ref, fast), (ref_losses, fast_losses) = run_both(dtype, k=12, batch=batch)
    for step, (lr, lf) in enumerate(zip(ref_losses, fast_losses, strict=True)):
        assert (lr["actor_loss"] is None) == (lf["actor_loss"] is None), step
        for key in ("critic_loss", "actor_loss"):
            if lr[key] is not None:
                assert isinstance(lf[key], float)
                assert lf[key] == pytest.approx(lr[key], rel=rtol, abs=atol), (step, key)
    assert_agents_close(ref, fast, rtol, atol)


@pytest.mark.parametrize("delay", [1, 3])
def test_fused_update_honours_the_policy_delay(delay: int) -> None:
    (ref, fast), (ref_losses, fast_losses) = run_both(F64, k=6, batch=16, policy_delay=delay)
    assert [lf["actor_loss"] is None for lf in fast_losses] == [
        lr["actor_loss"] is None for lr in ref_losses
    ]
    assert_agents_close(ref, fast, 1e-10, 1e-12)


def test_fused_update_with_wider_states_and_actions() -> None:
    replay = filled_replay(seed=5, state_dim=4, action_dim=3)
    agents = [
        TD3(4, 3, 2.0, seed=5, dtype=F64, hidden_dim=16, fused_update=f) for f in (False, True)
    ]
    for _ in range(6):
        losses = [agent.train(replay, 24) for agent in agents]
        assert losses[1]["critic_loss"] == pytest.approx(losses[0]["critic_loss"], rel=1e-10)
    assert_agents_close(*agents, 1e-10, 1e-12)


def test_batch_size_change_between_updates() -> None:
    replay = filled_replay()
    agents = [TD3(2, 1, 5.0, seed=1, dtype=F64, fused_update=f) for f in (False, True)]
    for batch in (16, 64, 16, 7):
        for agent in agents:
            agent.train(replay, batch)
    assert_agents_close(*agents, 1e-10, 1e-12)


@pytest.mark.parametrize("writer_fused", [False, True])
def test_either_paths_checkpoint_loads_into_the_other(tmp_path, writer_fused: bool) -> None:
    """One format: same keys, same shapes; training continues identically after the load."""
    replay = filled_replay()
    writer = TD3(2, 1, 5.0, seed=4, dtype=F64, fused_update=writer_fused)
    for _ in range(5):
        writer.train(replay, 32)
    writer.save(tmp_path / "a.pt")
    readers = [TD3(2, 1, 5.0, seed=9, dtype=F64, fused_update=f) for f in (False, True)]
    for reader in readers:
        reader.load(tmp_path / "a.pt")
        assert reader.state_dict().keys() == writer.state_dict().keys()
        assert list(reader.critic.state_dict()) == list(writer.critic.state_dict())
        # Same generators from here on, so both continue along the same draws.
        reader.torch_gen.set_state(writer.torch_gen.get_state())
        reader.sample_rng = copy.deepcopy(writer.sample_rng)
    for _ in range(5):
        losses = [reader.train(replay, 32) for reader in readers]
        assert losses[1]["critic_loss"] == pytest.approx(losses[0]["critic_loss"], rel=1e-10)
    assert_agents_close(*readers, 1e-10, 1e-12)


def test_in_memory_state_dict_round_trip_between_paths() -> None:
    replay = filled_replay()
    fast = TD3(2, 1, 5.0, seed=2)
    for _ in range(4):
        fast.train(replay, 32)
    ref = TD3(2, 1, 5.0, seed=2, fused_update=False)
    ref.load_state_dict(copy.deepcopy(fast.state_dict()))
    back = TD3(2, 1, 5.0, seed=2)
    back.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert_agents_close(fast, back, 0.0, 0.0)


def test_fused_and_reference_count_the_same_forwards() -> None:
    replay = filled_replay()
    counts = []
    for fused in (False, True):
        td3 = TD3(2, 1, 5.0, seed=0, fused_update=fused)
        td3.forward_counter.reset()
        for _ in range(4):
            td3.train(replay, 16)
        c = td3.forward_counter
        counts.append(
            {
                m: c.count(tag="training", module=m)
                for m in ("actor", "critic", "actor_target", "critic_target")
            }
            | {"inference": c.count(tag="inference")}
        )
    assert (
        counts[0]
        == counts[1]
        == {
            "actor": 2,
            "critic": 6,
            "actor_target": 4,
            "critic_target": 4,
            "inference": 0,
        }
    )


def test_inference_is_unchanged_by_fused_training() -> None:
    """Acting after fused updates: one actor and one critic forward, and exactly the values the
    plain module forwards give."""
    replay = filled_replay()
    td3 = TD3(2, 1, 5.0, seed=0)
    for _ in range(3):
        td3.train(replay, 32)
    s = td3.to_tensor(np.random.default_rng(0).uniform(-1, 1, (9, 2)))
    td3.forward_counter.reset()
    a, q = td3.act_and_q1(s)
    assert (
        td3.forward_counter.count(module="actor") == td3.forward_counter.count(module="critic") == 1
    )
    with torch.no_grad():
        sa = torch.cat([s, a], dim=1)
        assert torch.equal(q, td3.critic.q1_net(sa))
        assert torch.equal(a, td3.actor.net(s) * 5.0)


def test_train_refuses_a_non_positive_batch() -> None:
    for fused in (False, True):
        with pytest.raises(ValueError, match="batch_size must be positive"):
            TD3(2, 1, 5.0, fused_update=fused).train(filled_replay(10), batch_size=0)


def test_a_deep_copied_agent_trains_like_the_original() -> None:
    """The copy gets its own flat tensors and workspace, not views of the original's."""
    replay = filled_replay()
    original = TD3(2, 1, 5.0, seed=6, dtype=F64)
    original.train(replay, 32)
    twin = copy.deepcopy(original)
    for _ in range(4):
        assert twin.train(replay, 32) == original.train(replay, 32)
    assert_agents_close(original, twin, 0.0, 0.0)
    assert twin.critic.flat.flat.data_ptr() != original.critic.flat.flat.data_ptr()
