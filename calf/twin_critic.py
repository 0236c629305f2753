"""Hand-written forward and backward passes of the TD3 networks, for the fused update.

Both critic heads are one computation: their weights lie stacked in one flat tensor (see
``calf.flat``), layer 1 is one matmul with the heads' units side by side (the input is shared),
layers 2 and 3 are one batched matmul each over ``(2, B, h)`` (the block-diagonal matmul, without
its zero blocks). A pass owns preallocated activation buffers for one batch size, so an update
allocates almost nothing, and its backward is a fixed list of matmuls and ReLU masks: no autograd
graph is built. The passes compute what autograd computes for the same networks, to float
rounding (``tests/test_td3_update.py`` holds the proofs).

Weights come as the ``blocks`` of a ``FlatParams``:

* critic: ``W1 (2, h, in)``, ``b1 (2, h)``, ``W2 (2, h, h)``, ``b2 (2, h)``, ``W3 (2, 1, h)``,
  ``b3 (2, 1)``; head ``k`` is index ``k`` of each block;
* actor: ``W1 (1, h, s)``, ``b1 (1, h)``, ..., ``W3 (1, a, h)``, ``b3 (1, a)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Blocks = Sequence[torch.Tensor]

# The aten kernels autograd itself runs for ReLU and tanh backward, in their out= form: one op
# each where masking by hand costs two (a compare and a multiply, the latter ~10x slower on bool).
_relu_backward = torch.ops.aten.threshold_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


def _check_input(x: torch.Tensor, batch: int, width: int, what: str) -> None:
    if x.shape != (batch, width):
        raise ValueError(f"{what} has shape {tuple(x.shape)}, this pass takes ({batch}, {width})")


def _check_blocks(blocks: Blocks, shapes: Sequence[tuple[int, ...]], what: str) -> None:
    got = [tuple(b.shape) for b in blocks]
    if got != list(shapes):
        raise ValueError(f"{what} have shapes {got}, this pass takes {list(shapes)}")


class _Pass:
    """Shared plumbing: sizes, buffers, and the weight views derived once per weight binding
    (each view op costs about a microsecond; a pass would otherwise make dozens per update)."""

    def __init__(
        self,
        batch: int,
        in_dim: int,
        hidden: int,
        dtype: torch.dtype,
        device: str | torch.device,
    ) -> None:
        if batch < 1 or in_dim < 1 or hidden < 1:
            raise ValueError(f"batch, in_dim and hidden must be positive: {batch, in_dim, hidden}")
        self.batch, self.in_dim, self.hidden = int(batch), int(in_dim), int(hidden)
        self.dtype, self.device = dtype, torch.device(device)
        self._blocks: Blocks = ()
        self._w: tuple[torch.Tensor, ...] = ()
        self._grads: Blocks = ()
        self._g: tuple[torch.Tensor, ...] = ()
        self._ready = False

    def _empty(self, *shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=self.dtype, device=self.device)

    def _weights(self, blocks: Blocks) -> tuple[torch.Tensor, ...]:
        if blocks is not self._blocks:
            _check_blocks(blocks, self._shapes(), "weights")
            self._w, self._blocks = self._weight_views(blocks), blocks
        self._ready = True
        return self._w

    def _grad_views(self, grads: Blocks) -> tuple[torch.Tensor, ...]:
        if not self._ready:
            raise ValueError("backward before forward")
        if grads is not self._grads:
            _check_blocks(grads, self._shapes(), "gradients")
            self._g, self._grads = self._gradient_views(grads), grads
        return self._g

    def _shapes(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def _weight_views(self, blocks: Blocks) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _gradient_views(self, grads: Blocks) -> tuple[torch.Tensor, ...]:
        return tuple(grads)


class TwinCriticPass(_Pass):
    """Both Q heads of a twin critic on one batch: ``forward`` returns ``Q (2, B, 1)`` and keeps
    its activations; ``backward(dq)`` writes the parameter gradients of ``sum(dq * Q)``."""

    def __init__(
        self,
        batch: int,
        state_dim: int,
        action_dim: int,
        hidden: int,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(batch, state_dim + action_dim, hidden, dtype, device)
        b, h = self.batch, self.hidden
        self.state_dim = int(state_dim)
        self.x = self._empty(b, self.in_dim)
        self.a1 = self._empty(b, 2 * h)  # layer-1 output, the heads' units side by side
        self.a1_heads = self.a1.view(b, 2, h).transpose(0, 1)  # (2, B, h) view: no copy
        self.a2 = self._empty(2, b, h)
        self.q = self._empty(2, b, 1)
        self.heads = (self.q[0], self.q[1])  # (q1, q2) views, made once
        self._d1 = self._empty(b, 2 * h)
        self._d1_heads = self._d1.view(b, 2, h).transpose(0, 1)
        self._d2 = self._empty(2, b, h)

    def _shapes(self) -> list[tuple[int, ...]]:
        h, n = self.hidden, self.in_dim
        return [(2, h, n), (2, h), (2, h, h), (2, h), (2, 1, h), (2, 1)]

    def _weight_views(self, blocks: Blocks) -> tuple[torch.Tensor, ...]:
        w1, b1, w2, b2, w3, b3 = blocks
        h2 = 2 * self.hidden
        return (
            b1.view(h2),
            w1.view(h2, self.in_dim).t(),
            b2.unsqueeze(1),
            w2.transpose(1, 2),
            b3.unsqueeze(1),
            w3.transpose(1, 2),
            w2,
            w3,
        )

    def _gradient_views(self, grads: Blocks) -> tuple[torch.Tensor, ...]:
        g1, gb1, g2, gb2, g3, gb3 = grads
        h2 = 2 * self.hidden
        return g1.view(h2, self.in_dim), gb1.view(h2), g2, gb2, g3, gb3

    def forward(self, blocks: Blocks, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        _check_input(state, self.batch, self.state_dim, "state")
        _check_input(action, self.batch, self.in_dim - self.state_dim, "action")
        b1, w1t, b2, w2t, b3, w3t, _, _ = self._weights(blocks)
        torch.cat((state, action), dim=1, out=self.x)
        torch.addmm(b1, self.x, w1t, out=self.a1).relu_()
        torch.baddbmm(b2, self.a1_heads, w2t, out=self.a2).relu_()
        return torch.baddbmm(b3, self.a2, w3t, out=self.q)

    def backward(self, grads: Blocks, dq: torch.Tensor) -> None:
        """Parameter gradients of ``sum(dq * Q)`` (``dq (2, B, 1)``) into ``grads`` (the
        ``grad_blocks`` of the weights' ``FlatParams``), overwritten, not accumulated."""
        if dq.shape != self.q.shape:
            raise ValueError(f"dq has shape {tuple(dq.shape)}, expected {tuple(self.q.shape)}")
        g1, gb1, g2, gb2, g3, gb3 = self._grad_views(grads)
        w2, w3 = self._w[6], self._w[7]
        torch.bmm(dq.transpose(1, 2), self.a2, out=g3)
        torch.sum(dq, dim=1, out=gb3)
        d2 = torch.bmm(dq, w3, out=self._d2)
        _relu_backward(d2, self.a2, 0, grad_input=d2)
        torch.bmm(d2.transpose(1, 2), self.a1_heads, out=g2)
        torch.sum(d2, dim=1, out=gb2)
        # Layer-1 gradient back in the side-by-side layout, so dW1 and db1 are one op each.
        d1 = torch.bmm(d2, w2, out=self._d1_heads)
        _relu_backward(d1, self.a1_heads, 0, grad_input=d1)
        torch.mm(self._d1.t(), self.x, out=g1)
        torch.sum(self._d1, dim=0, out=gb1)


class Q1Pass(_Pass):
    """Head 1 of a twin critic (the Lyapunov candidate, and the actor's objective):
    ``forward`` returns ``Q1 (B, 1)``; ``action_grad(dq)`` returns d sum(dq * Q1) / d action."""

    def __init__(
        self,
        batch: int,
        state_dim: int,
        action_dim: int,
        hidden: int,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(batch, state_dim + action_dim, hidden, dtype, device)
        b, h = self.batch, self.hidden
        self.state_dim = int(state_dim)
        self.x = self._empty(b, self.in_dim)
        self.a1 = self._empty(b, h)
        self.a2 = self._empty(b, h)
        self.q = self._empty(b, 1)
        self._d1 = self._empty(b, h)
        self._d2 = self._empty(b, h)
        self._da = self._empty(b, self.in_dim - self.state_dim)

    def _shapes(self) -> list[tuple[int, ...]]:
        h, n = self.hidden, self.in_dim
        return [(2, h, n), (2, h), (2, h, h), (2, h), (2, 1, h), (2, 1)]

    def _weight_views(self, blocks: Blocks) -> tuple[torch.Tensor, ...]:
        w1, b1, w2, b2, w3, b3 = (blk[0] for blk in blocks)  # head 1
        return b1, w1.t(), b2, w2.t(), b3, w3.t(), w1[:, self.state_dim :], w2, w3

    def forward(self, blocks: Blocks, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        _check_input(state, self.batch, self.state_dim, "state")
        _check_input(action, self.batch, self.in_dim - self.state_dim, "action")
        b1, w1t, b2, w2t, b3, w3t, _, _, _ = self._weights(blocks)
        torch.cat((state, action), dim=1, out=self.x)
        torch.addmm(b1, self.x, w1t, out=self.a1).relu_()
        torch.addmm(b2, self.a1, w2t, out=self.a2).relu_()
        return torch.addmm(b3, self.a2, w3t, out=self.q)

    def action_grad(self, dq: torch.Tensor) -> torch.Tensor:
        """d sum(dq * Q1) / d action, ``(B, action_dim)``; valid until the next call."""
        if dq.shape != self.q.shape:
            raise ValueError(f"dq has shape {tuple(dq.shape)}, expected {tuple(self.q.shape)}")
        if not self._ready:
            raise ValueError("action_grad before forward")
        w1_action, w2, w3 = self._w[6:]
        d2 = torch.mm(dq, w3, out=self._d2)
        _relu_backward(d2, self.a2, 0, grad_input=d2)
        d1 = torch.mm(d2, w2, out=self._d1)
        _relu_backward(d1, self.a1, 0, grad_input=d1)
        return torch.mm(d1, w1_action, out=self._da)


class ActorPass(_Pass):
    """The actor ``max_action * tanh(MLP(s))`` on one batch: ``forward`` returns the actions
    and keeps its activations; ``backward(da)`` writes the parameter gradients of
    ``sum(da * actions)``."""

    def __init__(
        self,
        batch: int,
        state_dim: int,
        action_dim: int,
        hidden: int,
        max_action: float,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(batch, state_dim, hidden, dtype, device)
        b, h = self.batch, self.hidden
        self.action_dim = int(action_dim)
        self.max_action = float(max_action)
        self.s = self._empty(b, self.in_dim)
        self.a1 = self._empty(b, h)
        self.a2 = self._empty(b, h)
        self.t = self._empty(b, self.action_dim)  # tanh output
        self.out = self._empty(b, self.action_dim)
        self._d1 = self._empty(b, h)
        self._d2 = self._empty(b, h)
        self._d3 = self._empty(b, self.action_dim)

    def _shapes(self) -> list[tuple[int, ...]]:
        h, n, a = self.hidden, self.in_dim, self.action_dim
        return [(1, h, n), (1, h), (1, h, h), (1, h), (1, a, h), (1, a)]

    def _weight_views(self, blocks: Blocks) -> tuple[torch.Tensor, ...]:
        w1, b1, w2, b2, w3, b3 = (blk[0] for blk in blocks)
        return b1, w1.t(), b2, w2.t(), b3, w3.t(), w2, w3

    def _gradient_views(self, grads: Blocks) -> tuple[torch.Tensor, ...]:
        return tuple(g[0] for g in grads)

    def forward(self, blocks: Blocks, state: torch.Tensor) -> torch.Tensor:
        _check_input(state, self.batch, self.in_dim, "state")
        b1, w1t, b2, w2t, b3, w3t, _, _ = self._weights(blocks)
        self.s.copy_(state)  # the input is kept for dW1: the caller may reuse its buffer
        torch.addmm(b1, self.s, w1t, out=self.a1).relu_()
        torch.addmm(b2, self.a1, w2t, out=self.a2).relu_()
        torch.addmm(b3, self.a2, w3t, out=self.t).tanh_()
        return torch.mul(self.t, self.max_action, out=self.out)

    def backward(self, grads: Blocks, da: torch.Tensor) -> None:
        """Parameter gradients of ``sum(da * actions)`` into ``grads``, overwritten."""
        if da.shape != self.out.shape:
            raise ValueError(f"da has shape {tuple(da.shape)}, expected {tuple(self.out.shape)}")
        g1, gb1, g2, gb2, g3, gb3 = self._grad_views(grads)
        w2, w3 = self._w[6], self._w[7]
        d3 = torch.mul(da, self.max_action, out=self._d3)
        _tanh_backward(d3, self.t, grad_input=d3)
        torch.mm(d3.t(), self.a2, out=g3)
        torch.sum(d3, dim=0, out=gb3)
        d2 = torch.mm(d3, w3, out=self._d2)
        _relu_backward(d2, self.a2, 0, grad_input=d2)
        torch.mm(d2.t(), self.a1, out=g2)
        torch.sum(d2, dim=0, out=gb2)
        d1 = torch.mm(d2, w2, out=self._d1)
        _relu_backward(d1, self.a1, 0, grad_input=d1)
        torch.mm(d1.t(), self.s, out=g1)
        torch.sum(d1, dim=0, out=gb1)
