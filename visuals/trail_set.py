"""The trails stage's interface, ``TrailSet``: one trail per agent, pushed a point per step.

Two implementations: ``BatchedTrailRenderer`` (visuals/trails.py, the optimised path: every trail
in one Geom) and ``LineTrailGroup`` (visuals/line_trails.py, the loop reference behind
``--reference trails``: one ``LineTrail`` per agent).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike


@runtime_checkable
class TrailSet(Protocol):
    """What the visual trainer needs from a set of trails (both implementations satisfy it).
    ``mesh_updates`` counts vertex-buffer uploads and ``bytes_written`` their bytes (monotone).
    Agents are rows: ``ids`` are indices (negative ones count from the end) or a boolean mask,
    ``calf.validation.as_row_indices``'s rule."""

    entity: Any

    @property
    def num_agents(self) -> int: ...
    @property
    def mesh_updates(self) -> int: ...
    @property
    def bytes_written(self) -> int: ...

    def add_agents(self, n: int) -> None: ...
    def remove_agents(self, ids: ArrayLike) -> None: ...
    def clear(self, ids: ArrayLike) -> None: ...
    def push(self, positions: np.ndarray, modes: np.ndarray) -> None: ...
    def destroy(self) -> None: ...
