"""A run folder: everything one training run leaves behind, and how to find it again.

    runs/<YYYYmmdd>-<HHMMSS>-<algo>-s<seed>/
        config.toml                   the resolved RunConfig
        metrics.jsonl                 one JSON line per episode ("type": "episode") and per
                                      evaluation ("type": "eval")
        eval.json                     the latest evaluation
        checkpoints/episode-NNNNNN.pt kept every train.checkpoint_every episodes and at exit,
        checkpoints/episode-NNNNNN.json   with the trainer's progress beside each
        checkpoint.pt                 the newest checkpoint (what ``calf-train --eval`` loads)
        figures/report-NNNNNN.png     the report figure of each evaluation; report.png: newest
        events.out.tfevents.*         TensorBoard
    runs/latest -> the newest run folder (a symlink, replaced atomically)

Every file but metrics.jsonl is written through ``atomic_write``: a crash leaves the old file or
the new one. metrics.jsonl is appended one whole line per write; a reader skips a torn last line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from calf.atomic import atomic_write
from calf.config import RunConfig, load_config, write_config

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
REPORT = "report.png"
CHECKPOINT = "checkpoint.pt"
LATEST = "latest"
_NUMBERED = re.compile(r"^episode-(\d+)\.pt$")


class RunFolderError(Exception):
    """A run folder cannot be created, opened or resumed; the message is one line."""


@dataclass(frozen=True)
class SavedCheckpoint:
    """A kept checkpoint: the weights file and the trainer's progress when it was written."""

    path: Path
    episode: int
    progress: dict[str, Any]


class RunFolder:
    """The files of one run under ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.latest_linked: bool | None = None  # create(): whether <root>/latest points here

    # ---------------------------------------------------------------- opening
    @classmethod
    def create(
        cls, root: str | os.PathLike[str], cfg: RunConfig, now: datetime | None = None
    ) -> RunFolder:
        """A new folder ``<root>/<date>-<time>-<algo>-s<seed>`` (``-2``, ``-3``... if taken),
        with ``<root>/latest`` pointing at it."""
        base = Path(root)
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{cfg.train.algo}-s{cfg.train.seed}"
        for i in range(1, 1000):
            path = base / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunFolderError(f"cannot create {path}: {exc.strerror or exc}") from None
            folder = cls(path)
            folder.latest_linked = folder.link_latest()
            return folder
        raise RunFolderError(f"{base}: no free run-folder name for {name}")

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RunFolder:
        """``--out DIR``: a new or empty folder; one that already holds a run is refused."""
        folder = cls(path)
        if (folder.path / CONFIG).exists() or folder.checkpoints_dir.exists():
            raise RunFolderError(
                f"{folder.path} already holds a run; use --resume {folder.path} or another --out"
            )
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot create {folder.path}: {exc.strerror or exc}") from None
        return folder

    @classmethod
    def existing(cls, path: str | os.PathLike[str]) -> RunFolder:
        """A folder written by an earlier run (``--resume``): it must hold config.toml."""
        folder = cls(path)
        if not (folder.path / CONFIG).is_file():
            raise RunFolderError(f"{folder.path} is not a run folder (no {CONFIG})")
        return folder

    def link_latest(self) -> bool:
        """Point ``<parent>/latest`` at this folder: a new symlink renamed over the old one, so
        readers never see it missing. A real file or folder named latest is left alone (False)."""
        link = self.path.parent / LATEST
        if link.exists() and not link.is_symlink():
            return False
        tmp = self.path.parent / f".{LATEST}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(self.path.name, tmp)
        os.replace(tmp, link)
        return True

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def eval_path(self) -> Path:
        return self.path / EVAL

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    def checkpoint_path(self, episode: int) -> Path:
        return self.checkpoints_dir / f"episode-{episode:06d}.pt"

    def figure_path(self, episode: int) -> Path:
        return self.figures_dir / f"report-{episode:06d}.png"

    # ----------------------------------------------------------------- config
    def write_config(self, cfg: RunConfig) -> Path:
        return write_config(self.config_path, cfg)

    def read_config(self) -> RunConfig:
        return load_config(self.config_path)

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, save: Any, episode: int, progress: dict[str, Any]) -> Path:
        """Keep checkpoint ``episode``: ``save(path)`` writes the weights (e.g.
        ``CALFController.save``), ``progress`` goes beside it; checkpoint.pt becomes a copy.
        The progress file is written first, so a numbered .pt always has its progress."""
        path = self.checkpoint_path(episode)
        text = json.dumps({"episode": episode, **progress}, indent=1)
        atomic_write(path.with_suffix(".json"), lambda fh: fh.write(text))
        save(path)
        data = path.read_bytes()
        atomic_write(self.path / CHECKPOINT, lambda fh: fh.write(data), binary=True)
        return path

    def checkpoints(self) -> list[SavedCheckpoint]:
        """The kept checkpoints, oldest first."""
        found = []
        if self.checkpoints_dir.is_dir():
            for p in self.checkpoints_dir.iterdir():
                m = _NUMBERED.match(p.name)
                if m is None:
                    continue
                sidecar = p.with_suffix(".json")
                try:
                    progress = json.loads(sidecar.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    progress = {}
                found.append(SavedCheckpoint(p, int(m.group(1)), progress))
        return sorted(found, key=lambda c: c.episode)

    def newest_checkpoint(self) -> SavedCheckpoint:
        kept = self.checkpoints()
        if not kept:
            raise RunFolderError(f"{self.path} holds no checkpoint to resume from")
        return kept[-1]

    # ---------------------------------------------------------------- metrics
    def append_metrics(self, record: dict[str, Any]) -> None:
        """One JSON line, written with a single call."""
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete record; a torn or bad line (a crash mid-write) is skipped."""
        records = []
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
        return records

    def keep_metrics_until(self, episode: int) -> list[dict[str, Any]]:
        """Drop the records after ``episode`` (a resume replays those episodes); the records
        kept."""
        kept = [r for r in self.read_metrics() if int(r.get("episode", 0)) <= episode]
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
        atomic_write(self.metrics_path, lambda fh: fh.write(text))
        return kept

    def write_eval(self, record: dict[str, Any]) -> Path:
        text = json.dumps(record, indent=1, allow_nan=False) + "\n"
        return atomic_write(self.eval_path, lambda fh: fh.write(text))
