"""One network's parameters in one flat tensor, and Adam stepping them there.

The fused TD3 update moves a whole network with a handful of tensor ops (one Adam, one soft
update) and runs both critic heads' layers as one batched matmul over stacked weights. For that
the parameters live in one flat storage, ``p.data`` being views into it. They stay the ordinary
``nn.Parameter`` objects of the module: ``state_dict`` keys, the optimiser's per-parameter state
and in-place edits (``critic.q1_net[4].bias += 1``) are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Slot = tuple[nn.Module, str]  # a parameter by where it lives: (module, name)


def _param(module: nn.Module, name: str) -> torch.Tensor:
    # _parameters, not getattr: nn.Module.__getattr__ costs ~4x as much, several times an update.
    p = module._parameters[name]
    if p is None:
        raise ValueError(f"parameter {name!r} of {type(module).__name__} is None")
    return p


class FlatParams:
    """Parameters bound as views into one flat tensor, with a flat gradient of the same layout.

    ``groups``: the layout, in order, as ``(module, parameter name)`` slots; each group holds
    parameters of one shape that lie next to each other, so ``blocks[i]`` is a zero-copy stacked
    view ``(len(group), *shape)``. Anything that replaces a parameter or its tensor
    (``module.to``, ``copy.deepcopy``, ``load_state_dict(..., assign=True)``) unbinds it;
    ``ensure_bound`` notices (it compares the slots' data pointers, ~2 us for a dozen) and binds
    the current parameters again, keeping their values; ``flat``, ``grad`` (zeroed) and the
    blocks are new tensors then, so read them after ``ensure_bound``."""

    def __init__(self, groups: Sequence[Sequence[Slot]]) -> None:
        self.slot_groups = tuple(tuple(g) for g in groups)
        if not self.slot_groups or not all(self.slot_groups):
            raise ValueError("FlatParams needs at least one non-empty group of parameters")
        self._slots = tuple(slot for g in self.slot_groups for slot in g)
        self.groups: tuple[tuple[torch.Tensor, ...], ...] = ()
        self.params: tuple[torch.Tensor, ...] = ()
        self._ptrs: tuple[int, ...] = ()
        self.flat = torch.empty(0)
        self.grad = torch.empty(0)
        self.blocks: tuple[torch.Tensor, ...] = ()
        self.grad_blocks: tuple[torch.Tensor, ...] = ()
        self.ensure_bound()

    def is_bound(self) -> bool:
        return tuple([_param(m, n).data_ptr() for m, n in self._slots]) == self._ptrs

    def ensure_bound(self) -> None:
        """Bind the parameters again if they or their tensors were replaced; values are kept."""
        if not self.is_bound():
            self._bind()

    def _bind(self) -> None:
        groups = tuple(tuple(_param(m, n) for m, n in g) for g in self.slot_groups)
        for group in groups:
            if len({p.shape for p in group}) != 1:
                raise ValueError(f"a group holds parameters of different shapes: {group}")
        params = tuple(p for g in groups for p in g)
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in params):
            raise ValueError("flat parameters need one dtype and one device")
        sizes = [len(g) * g[0].numel() for g in groups]
        flat = torch.empty(sum(sizes), dtype=first.dtype, device=first.device)
        grad = torch.zeros_like(flat)
        blocks, grad_blocks = [], []
        offset = 0
        for group, size in zip(groups, sizes, strict=True):
            shape = (len(group), *group[0].shape)
            block = flat[offset : offset + size].view(shape)
            with torch.no_grad():
                for i, p in enumerate(group):
                    block[i].copy_(p)
                    p.data = block[i]
            blocks.append(block)
            grad_blocks.append(grad[offset : offset + size].view(shape))
            offset += size
        self.groups, self.params = groups, params
        self.flat, self.grad = flat, grad
        self.blocks, self.grad_blocks = tuple(blocks), tuple(grad_blocks)
        self._ptrs = tuple(p.data_ptr() for p in params)


# The kernel behind ``torch.optim.Adam(fused=True)``: the whole step in one op. It is private
# API, so FlatAdam checks for it and falls back to the foreach arithmetic without it.
_fused_adam = getattr(torch, "_fused_adam_", None)


class FlatAdam:
    """Steps ``optimizer`` (a ``torch.optim.Adam`` over exactly ``params.params``) on the flat
    tensors: two ops per step (nine without the fused kernel) instead of ``Optimizer.step``'s
    per-parameter work (~8x the time here).

    ``fused=True`` (default) runs Adam's fused kernel, the arithmetic of ``Adam(fused=True)``, to
    an ulp or two (its vector loop may split one flat tensor at other elements than a dozen small
    ones); ``fused=False``, or a torch or device without that kernel, runs the foreach Adam's
    arithmetic op for op, bit for bit. Both agree with each other to float rounding.

    The optimiser's state entries (``step``, ``exp_avg``, ``exp_avg_sq``) become views into flat
    moments: its ``state_dict`` keeps the usual per-parameter form, so either update path loads
    the other's checkpoints. A ``load_state_dict`` on the optimiser replaces its state; the next
    step notices and re-binds (copying the loaded values in)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, params: FlatParams, fused: bool = True
    ) -> None:
        self.optimizer = optimizer
        self.params = params
        self._check_params()
        self.fused = bool(fused and _fused_adam is not None)
        self._state: object = None
        self._group: object = None
        self._steps = torch.empty(0)
        self._step0 = torch.empty(0)
        self._exp_avg = torch.empty(0)
        self._exp_avg_sq = torch.empty(0)
        self._denom = torch.empty(0)

    def _check_params(self) -> None:
        if len(self.optimizer.param_groups) != 1:
            raise ValueError("FlatAdam needs an optimiser with one parameter group")
        stepped = {id(p) for p in self.optimizer.param_groups[0]["params"]}
        if stepped != {id(p) for p in self.params.params}:
            raise ValueError("the optimiser does not step exactly the flat parameters")

    def _bind(self) -> None:
        """Flat moments and step counters, filled from the optimiser's state (zeros if it has
        none yet), and the optimiser's state entries re-pointed at views of them."""
        self._check_params()
        group = self.optimizer.param_groups[0]
        unsupported = {
            k: group.get(k)
            for k in ("weight_decay", "amsgrad", "maximize", "capturable", "differentiable")
            if group.get(k)
        }
        if unsupported:
            raise ValueError(f"FlatAdam supports plain Adam only, the optimiser has {unsupported}")
        flat = self.params.flat
        steps = torch.zeros(len(self.params.params), dtype=torch.float32)  # Adam's step dtype
        exp_avg, exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat)
        views = []
        offset = 0
        for group_params in self.params.groups:
            for p in group_params:
                part = slice(offset, offset + p.numel())
                views.append((p, exp_avg[part].view_as(p), exp_avg_sq[part].view_as(p)))
                offset += p.numel()
        state = self.optimizer.state
        if any(p in state for p in self.params.params):
            if not all(p in state for p in self.params.params):
                raise ValueError("the optimiser holds state for some parameters only")
            stored = {float(state[p]["step"]) for p in self.params.params}
            if len(stored) != 1:
                raise ValueError(f"the parameters were stepped unequally often: {sorted(stored)}")
            steps.fill_(stored.pop())
            with torch.no_grad():
                for p, m, v in views:
                    m.copy_(state[p]["exp_avg"])
                    v.copy_(state[p]["exp_avg_sq"])
        for i, (p, m, v) in enumerate(views):
            state[p] = {"step": steps[i], "exp_avg": m, "exp_avg_sq": v}
        self._steps, self._step0 = steps, steps[0]
        self._exp_avg, self._exp_avg_sq = exp_avg, exp_avg_sq
        self._denom = torch.empty_like(flat)
        self._state, self._group = state, group

    def step(self) -> None:
        """One Adam step of the flat parameters with the flat gradient."""
        self.params.ensure_bound()
        flat = self.params.flat
        if (
            self.optimizer.state is not self._state
            or self.optimizer.param_groups[0] is not self._group
            or (self._exp_avg.dtype, self._exp_avg.device) != (flat.dtype, flat.device)
        ):
            self._bind()
        group = self.optimizer.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        param, grad, exp_avg, exp_avg_sq = flat, self.params.grad, self._exp_avg, self._exp_avg_sq
        self._steps.add_(1.0)  # every parameter's step counter, as Adam keeps one each
        if self.fused:
            try:
                _fused_adam(  # type: ignore[misc]
                    [param], [grad], [exp_avg], [exp_avg_sq], [], [self._step0],
                    amsgrad=False, lr=lr, beta1=beta1, beta2=beta2,
                    weight_decay=0.0, eps=eps, maximize=False,
                )  # fmt: skip
                return
            except (RuntimeError, NotImplementedError):  # no kernel for this device or dtype
                self.fused = False
        step = float(self._step0)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = (lr / (1 - beta1**step)) * -1
        denom = torch.sqrt(exp_avg_sq, out=self._denom)
        denom.div_((1 - beta2**step) ** 0.5).add_(eps)
        param.addcdiv_(exp_avg, denom, value=step_size)
