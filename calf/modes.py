"""The mode of one step: what the CALF rule did with the actor's proposal.

Code paths carry modes as ``Mode`` values (an ``IntEnum``, so arrays of them are plain int8 codes
that index colour tables). The upstream public string API (``select_action(..., return_mode=True)``,
``select_action_batch(..., return_modes=True)``) keeps their names: ``'td3'`` for certified,
``'relax'``, ``'fallback'``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray


class Mode(IntEnum):
    CERTIFIED = 0  # the critic certified the actor's action: it is used, the certificate moves
    RELAX = 1  # not certified, used anyway (drawn with probability P_relax)
    FALLBACK = 2  # not certified, replaced by the nominal policy's action
    UNCHECKED = 3  # no certificate was asked about: warm-up random actions, TD3-only steps


# The upstream names of the three CALF modes, indexed by Mode value.
UPSTREAM_MODE_NAMES: tuple[str, str, str] = ("td3", "relax", "fallback")
_UPSTREAM_NAMES = np.array(UPSTREAM_MODE_NAMES, dtype=object)


def upstream_name(mode: Mode) -> str:
    """The upstream name of a CALF mode ('td3' | 'relax' | 'fallback')."""
    if mode is Mode.UNCHECKED:
        raise ValueError("an unchecked step has no CALF mode name")
    return UPSTREAM_MODE_NAMES[mode]


def mode_names(codes: NDArray[np.integer]) -> list[str]:
    """CALF mode codes (0, 1, 2) -> ['td3' | 'relax' | 'fallback', ...]."""
    return _UPSTREAM_NAMES[np.asarray(codes, dtype=np.intp)].tolist()
