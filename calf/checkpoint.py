"""Checkpoint files: atomic writes, ``weights_only=True`` reads, errors that name the file, and
the check of what a CALF controller keeps in one (``check_calf_entry``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from calf.atomic import atomic_write

FORMAT = "calf-viz"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of another kind or does not fit the agent."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"checkpoint {os.fspath(path)!r}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


def write_checkpoint(
    path: str | os.PathLike[str] | BinaryIO, kind: str, payload: dict[str, Any]
) -> None:
    """Write ``payload`` to ``path`` via a temporary file and a rename, so a crash never leaves
    a half-written checkpoint where a good one was; or into an open binary file (e.g. a
    ``BytesIO`` whose bytes a worker process writes)."""
    data = {"format": FORMAT, "version": VERSION, "kind": kind, **payload}
    if isinstance(path, str | os.PathLike):
        atomic_write(path, lambda fh: torch.save(data, fh), binary=True)
    else:
        torch.save(data, path)


def read_checkpoint(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Read a checkpoint of ``kind``; never unpickles arbitrary objects."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(path, "no such file")
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            path, f"not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(path, "not a calf-viz checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(path, f"unsupported checkpoint version {data.get('version')!r}")
    if data.get("kind") != kind:
        raise CheckpointError(path, f"holds a {data.get('kind')!r} agent, expected {kind!r}")
    return data


def require(path: str | os.PathLike[str], data: dict[str, Any], key: str) -> Any:
    """``data[key]``, or a CheckpointError naming the missing entry."""
    if key not in data:
        raise CheckpointError(path, f"missing entry {key!r}")
    return data[key]


# The CALF entry of a controller's checkpoint: its parameters and P_relax (finite numbers), the
# training agent's counters, and its certificate (s_cert, a_cert, q_cert; all None when it has
# none).
CALF_NUMBERS = (
    "nu_bar",
    "kappa_low_coef",
    "kappa_up_coef",
    "lambda_relax",
    "relax_prob_init",
    "P_relax",
)
CALF_COUNTS = ("total_steps", "certified_steps", "relax_events", "nominal_interventions")


def check_calf_entry(
    path: str | os.PathLike[str], calf: Any, state_dim: int, action_dim: int
) -> dict[str, Any]:
    """The checkpoint's 'calf' entry, checked and converted ({name: value} for every name of
    ``CALF_NUMBERS``, ``CALF_COUNTS`` and the certificate); CheckpointError naming the first
    problem otherwise."""
    if not isinstance(calf, dict):
        raise CheckpointError(path, "the 'calf' entry is not a dict")
    staged: dict[str, Any] = {}
    for name in CALF_NUMBERS:
        value = require(path, calf, name)
        if not isinstance(value, int | float) or not np.isfinite(value):
            raise CheckpointError(path, f"{name} is not a finite number: {value!r}")
        staged[name] = float(value)
    for name in CALF_COUNTS:
        value = require(path, calf, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(path, f"{name} is not a count: {value!r}")
        staged[name] = value
    q_cert = require(path, calf, "q_cert")
    s_cert, a_cert = require(path, calf, "s_cert"), require(path, calf, "a_cert")
    if q_cert is None:
        staged.update(q_cert=None, s_cert=None, a_cert=None)
        return staged
    if not isinstance(q_cert, int | float) or not np.isfinite(q_cert):
        raise CheckpointError(path, f"q_cert is not a finite number: {q_cert!r}")
    try:
        s_arr = np.asarray(s_cert, dtype=np.float64).reshape(state_dim)
        a_arr = np.asarray(a_cert, dtype=np.float64).reshape(action_dim)
    except (TypeError, ValueError):
        raise CheckpointError(
            path, f"certificate does not fit state_dim={state_dim}, action_dim={action_dim}"
        ) from None
    if not (np.isfinite(s_arr).all() and np.isfinite(a_arr).all()):
        raise CheckpointError(path, "certificate contains NaN or inf")
    staged.update(q_cert=float(q_cert), s_cert=s_arr, a_cert=a_arr)
    return staged
