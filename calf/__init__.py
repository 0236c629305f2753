"""calf: TD3 and the CALF safe actor-critic controller (torch + numpy only, never rendering).

The names below load on first use, so ``import calf.atomic`` (the atomic-write helper the other
packages share) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calf.batch_policy import ActorOnly, BatchPolicy, PerAgentLoop
    from calf.config import RunConfig
    from calf.controller import CALFController
    from calf.counters import ForwardCounter
    from calf.envs import PointMassBatch, PointMassEnv, PointMassParams, rk4_step, step_batch
    from calf.evaluation import Evaluator, format_eval_line
    from calf.modes import UPSTREAM_MODE_NAMES, Mode, mode_names
    from calf.nominal import PDPolicy
    from calf.replay import ReplayBuffer
    from calf.session import TrainingSession
    from calf.td3 import TD3, Actor, Critic

_HOME = {
    "ActorOnly": "batch_policy",
    "BatchPolicy": "batch_policy",
    "PerAgentLoop": "batch_policy",
    "CALFController": "controller",
    "RunConfig": "config",
    "Evaluator": "evaluation",
    "format_eval_line": "evaluation",
    "TrainingSession": "session",
    "ForwardCounter": "counters",
    "PointMassBatch": "envs",
    "PointMassEnv": "envs",
    "PointMassParams": "envs",
    "rk4_step": "envs",
    "step_batch": "envs",
    "UPSTREAM_MODE_NAMES": "modes",
    "Mode": "modes",
    "mode_names": "modes",
    "PDPolicy": "nominal",
    "ReplayBuffer": "replay",
    "TD3": "td3",
    "Actor": "td3",
    "Critic": "td3",
}
__all__ = [
    "Actor",
    "ActorOnly",
    "BatchPolicy",
    "CALFController",
    "Critic",
    "Evaluator",
    "ForwardCounter",
    "Mode",
    "PDPolicy",
    "PerAgentLoop",
    "PointMassBatch",
    "PointMassEnv",
    "PointMassParams",
    "ReplayBuffer",
    "RunConfig",
    "UPSTREAM_MODE_NAMES",
    "TD3",
    "TrainingSession",
    "format_eval_line",
    "mode_names",
    "rk4_step",
    "step_batch",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'calf' has no attribute {name!r}")
    return getattr(importlib.import_module(f"calf.{home}"), name)
