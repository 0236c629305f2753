"""The safe nominal policy CALF falls back to: a PD controller on the point mass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calf.config import EnvConfig, NominalConfig, RunConfig


@dataclass(frozen=True)
class PDPolicy:
    """a = clip(-kp * x - kd * v); accepts one state (2,) -> (1,) or a batch (N, 2) -> (N, 1).
    The defaults are the run's (``RunConfig``)."""

    max_action: float = EnvConfig.max_action
    kp: float = NominalConfig.kp
    kd: float = NominalConfig.kd
    # Tells CALFController it may pass all uncertified rows in one call.
    accepts_batch: bool = True

    def __call__(self, state: ArrayLike) -> NDArray[np.float64]:
        s = np.asarray(state, dtype=np.float64)
        if s.shape[-1:] != (2,) or s.ndim not in (1, 2):
            raise ValueError(f"PD policy expects a state (2,) or states (N, 2), got {s.shape}")
        a = -self.kp * s[..., 0:1] - self.kd * s[..., 1:2]
        # np.minimum/np.maximum: np.clip's values at half its cost on small arrays.
        return np.minimum(np.maximum(a, -self.max_action), self.max_action)


def pd_from_config(cfg: RunConfig) -> PDPolicy:
    """The PD nominal policy a run uses: the config's gains and action bound."""
    return PDPolicy(max_action=cfg.env.max_action, kp=cfg.nominal.kp, kd=cfg.nominal.kd)
