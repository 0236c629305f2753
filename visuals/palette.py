"""Colours shared by every drawn piece (RGBA floats in [0, 1])."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Rows follow calf.modes.Mode: certified, relax, fallback, unchecked.
MODE_COLORS = np.array(
    [
        [0.20, 0.85, 0.35, 1.0],  # certified: green
        [1.00, 0.65, 0.10, 1.0],  # relax: orange
        [0.95, 0.20, 0.20, 1.0],  # fallback: red
        [0.60, 0.66, 0.78, 1.0],  # unchecked (TD3 only): grey-blue
    ],
    dtype=np.float32,
)

TRAINING_AGENT_CERTIFIED = (1.0, 0.9, 0.1, 1.0)  # yellow
TRAINING_AGENT_FALLBACK = (0.95, 0.2, 0.2, 1.0)  # red
TRAINING_AGENT_RELAX = (1.0, 0.65, 0.1, 1.0)  # orange
TRAINING_AGENT_UNCHECKED = (0.85, 0.85, 0.88, 1.0)  # light grey: warm-up and TD3-only steps
# The training agent's own colours, rows in Mode order like MODE_COLORS.
TRAINING_MODE_COLORS = np.array(
    [
        TRAINING_AGENT_CERTIFIED,
        TRAINING_AGENT_RELAX,
        TRAINING_AGENT_FALLBACK,
        TRAINING_AGENT_UNCHECKED,
    ],
    dtype=np.float32,
)
GOAL_COLOR = (0.3, 0.6, 1.0, 1.0)
TIMELINE_COLOR = (0.55, 0.8, 1.0, 1.0)
BACKGROUND = (0.09, 0.10, 0.12, 1.0)


def mode_color_table(mode_colors: ArrayLike) -> NDArray[np.float32]:
    """A table of mode colours, one RGBA row per mode code, as float32; ValueError unless it is
    (n_modes, 4) with 1 <= n_modes <= 127 (codes are stored as int8)."""
    table = np.asarray(mode_colors, dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 4 or table.shape[0] < 1:
        raise ValueError(f"mode_colors must be (n_modes, 4) RGBA rows, got shape {table.shape}")
    if table.shape[0] > 127:
        raise ValueError(f"at most 127 modes (stored as int8), got {table.shape[0]}")
    return table
