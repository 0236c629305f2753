"""Checkpoint files: atomic writes, ``weights_only=True`` reads, errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

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
