"""calf: TD3 and the CALF safe actor-critic controller (torch + numpy only, never rendering)."""

from calf.batch_policy import ActorOnly, BatchPolicy, PerAgentLoop
from calf.controller import CALFController
from calf.counters import ForwardCounter
from calf.envs import PointMassBatch, PointMassEnv, PointMassParams, rk4_step, step_batch
from calf.modes import SEED_MODE_NAMES, Mode, mode_names
from calf.nominal import PDPolicy, pd_nominal_policy
from calf.replay import ReplayBuffer
from calf.td3 import TD3, Actor, Critic

__all__ = [
    "SEED_MODE_NAMES",
    "TD3",
    "Actor",
    "ActorOnly",
    "BatchPolicy",
    "CALFController",
    "Critic",
    "ForwardCounter",
    "Mode",
    "PDPolicy",
    "PerAgentLoop",
    "PointMassBatch",
    "PointMassEnv",
    "PointMassParams",
    "ReplayBuffer",
    "mode_names",
    "pd_nominal_policy",
    "rk4_step",
    "step_batch",
]
