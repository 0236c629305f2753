"""The fused TD3 update: the reference update's arithmetic in under a third of the tensor ops.

Per update: one replay gather into a reused buffer; every forward into preallocated buffers,
both critic heads (target and online) as one batched matmul per layer (``calf.twin_critic``);
a hand-written backward instead of an autograd graph; Adam and the soft update as one op per
network on flat tensors (``calf.flat``); losses read once at the end. Every network forward
still goes through the module (one counted forward each, as in the reference update).

It computes what ``ReferenceUpdate`` computes, to float rounding: the same draws (replay indices,
smoothing noise), the same formulas; only summation orders differ
(``tests/test_td3_update.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from calf.flat import FlatAdam
from calf.replay import ReplayBuffer
from calf.twin_critic import ActorPass, Q1Pass, TwinCriticPass

if TYPE_CHECKING:
    from calf.td3 import TD3


class _Workspace:
    """Everything one batch size needs, allocated once: the sampled rows and the passes."""

    def __init__(self, td3: TD3, replay: ReplayBuffer, batch: int) -> None:
        sd, ad, h = td3.state_dim, td3.action_dim, td3.hidden_dim
        dtype, device = td3.dtype, td3.device
        self.batch = batch
        self.width = replay.width
        self.rows = np.empty((batch, replay.width), dtype=np.float32)
        rows_t = torch.from_numpy(self.rows)
        # float32 on the CPU reads the gathered rows in place; anything else converts once.
        same = td3.dtype == torch.float32 and td3.device.type == "cpu"
        self.source = rows_t
        self.tensor = (
            rows_t if same else torch.empty((batch, replay.width), dtype=dtype, device=device)
        )
        self.convert = not same
        cols = replay.columns
        t = self.tensor
        self.state, self.action = t[:, cols["state"]], t[:, cols["action"]]
        self.reward, self.next_state = t[:, cols["reward"]], t[:, cols["next_state"]]
        self.not_done = t[:, cols["not_done"]]
        self.noise = torch.empty((batch, ad), dtype=dtype, device=device)
        self.target_q = torch.empty((batch, 1), dtype=dtype, device=device)
        self.dq = torch.empty((2, batch, 1), dtype=dtype, device=device)
        self.dq_flat = self.dq.view(-1)
        # d(actor loss)/dQ1 for actor loss = -mean(Q1): a constant.
        self.actor_dq = torch.full((batch, 1), -1.0 / batch, dtype=dtype, device=device)
        self.target_critic = TwinCriticPass(batch, sd, ad, h, td3.dtype, td3.device)
        self.critic = TwinCriticPass(batch, sd, ad, h, td3.dtype, td3.device)
        self.q1 = Q1Pass(batch, sd, ad, h, td3.dtype, td3.device)
        # The target actor too: the same arithmetic as its module forward, into reused buffers.
        self.target_actor = ActorPass(batch, sd, ad, h, td3.max_action, td3.dtype, td3.device)
        self.actor = ActorPass(batch, sd, ad, h, td3.max_action, td3.dtype, td3.device)

    def fits(self, batch: int, replay: ReplayBuffer) -> bool:
        return batch == self.batch and replay.width == self.width


class FusedUpdate:
    """The fast TD3 update (``TD3(fused_update=True)``, the default)."""

    def __init__(self, td3: TD3) -> None:
        self.td3 = td3
        self.critic_adam = FlatAdam(td3.critic_optimizer, td3.critic.flat)
        self.actor_adam = FlatAdam(td3.actor_optimizer, td3.actor.flat)
        self._ws: _Workspace | None = None

    def __getstate__(self) -> dict:
        # The workspace's tensor reads its numpy rows in place; a copy would split the two.
        # Copies (copy.deepcopy, pickle) rebuild it on their first update instead.
        return {**self.__dict__, "_ws": None}

    def __call__(
        self, replay: ReplayBuffer, batch_size: int, policy_step: bool
    ) -> tuple[float, float | None]:
        td3 = self.td3
        ws = self._ws
        if ws is None or not ws.fits(batch_size, replay):
            ws = self._ws = _Workspace(td3, replay, batch_size)
        replay.sample_into(ws.rows, td3.sample_rng)
        if ws.convert:
            ws.tensor.copy_(ws.source)
        with torch.no_grad():  # no graph anywhere: the backward below is written out
            # Target policy smoothing, then the TD target from the twin target heads.
            noise = torch.randn(ws.noise.shape, generator=td3.torch_gen, out=ws.noise)
            noise.mul_(td3.policy_noise).clamp_(-td3.noise_clip, td3.noise_clip)
            next_action = td3.actor_target(ws.next_state, fused_pass=ws.target_actor)
            next_action.add_(noise)
            next_action.clamp_(-td3.max_action, td3.max_action)
            tq1, tq2 = td3.critic_target(ws.next_state, next_action, fused_pass=ws.target_critic)
            target_q = torch.minimum(tq1, tq2, out=ws.target_q)
            torch.addcmul(ws.reward, target_q, ws.not_done, value=td3.discount, out=target_q)

            # Critic: loss = mean((q1 - y)^2) + mean((q2 - y)^2), dloss/dq = 2 (q - y) / B.
            td3.critic(ws.state, ws.action, fused_pass=ws.critic)
            dq = torch.sub(ws.critic.q, target_q, out=ws.dq)
            critic_loss = torch.vdot(ws.dq_flat, ws.dq_flat)
            dq.mul_(2.0 / batch_size)
            ws.critic.backward(td3.critic.flat.grad_blocks, dq)
            self.critic_adam.step()

            actor_loss = None
            if policy_step:
                # Actor: loss = -mean(Q1(s, actor(s))); the gradient flows through Q1 into the
                # action only (the reference's stray critic gradients are zeroed before use).
                pi = td3.actor(ws.state, fused_pass=ws.actor)
                (q1,) = td3.critic(ws.state, pi, q1_only=True, fused_pass=ws.q1)
                actor_loss = q1.sum()
                ws.actor.backward(td3.actor.flat.grad_blocks, ws.q1.action_grad(ws.actor_dq))
                self.actor_adam.step()
                self._soft_update()
        actor_value = None if actor_loss is None else -float(actor_loss) / batch_size
        return float(critic_loss) / batch_size, actor_value

    def _soft_update(self) -> None:
        # target <- (1 - tau) target + tau source: one lerp per network on the flat tensors.
        td3 = self.td3
        for source, target in ((td3.critic, td3.critic_target), (td3.actor, td3.actor_target)):
            source.flat.ensure_bound()
            target.flat.ensure_bound()
            target.flat.flat.lerp_(source.flat.flat, td3.tau)
