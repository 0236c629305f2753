"""calf: TD3 and the CALF safe actor-critic controller (torch + numpy only, never rendering)."""

from calf.controller import MODES, CALFController, mode_names
from calf.counters import ForwardCounter
from calf.envs import PointMassBatch, PointMassEnv, PointMassParams, rk4_step, step_batch
from calf.nominal import PDPolicy, pd_nominal_policy
from calf.reference import PerAgentLoop
from calf.replay import ReplayBuffer
from calf.td3 import TD3, Actor, Critic

__all__ = [
    "MODES",
    "TD3",
    "Actor",
    "CALFController",
    "Critic",
    "ForwardCounter",
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
