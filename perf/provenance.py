"""Where a calf-perf report came from: commit, machine, libraries, date and command.

Every JSON a ``calf-perf`` command writes goes through :func:`write_json`, which puts a
``provenance`` block first; every markdown report (``--markdown``, e.g. a GitHub job summary)
goes through :func:`append_markdown`, which ends it with a provenance line. A number read weeks
later, or next to one from another runner, means little without them.

Cheap by design: importing this module imports nothing heavy (library versions are read with
``importlib.metadata``, never by importing the library), and building a block costs two short
``git`` calls.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from calf.atomic import atomic_write

# The libraries whose versions move the numbers (distribution names, as pip spells them).
LIBRARIES = {"torch": "torch", "numpy": "numpy", "panda3d": "panda3d", "ursina": "ursina"}
KEYS = (
    "commit",
    "dirty",
    "machine",
    "cpu",
    "cores",
    "platform",
    "python",
    *LIBRARIES,
    "date",
    "command",
)

_command: list[str] | None = None


def set_command(argv: list[str], prog: str = "calf-perf") -> None:
    """Record the command being run (``calf-perf``'s ``main`` calls this with its arguments)."""
    global _command
    _command = [prog, *argv]


def command() -> str:
    """The command line this report comes from, as a shell would take it."""
    return shlex.join(_command if _command is not None else sys.argv)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def source_tree() -> Path:
    """The tree whose harness is running: the checkout holding this package, else the
    current directory (an installed, non-editable copy)."""
    here = Path(__file__).resolve().parents[1]
    return here if _git(here, "rev-parse", "--show-toplevel") else Path.cwd()


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(commit, uncommitted changes to tracked files) of the repository at ``root``; (None,
    None) outside one."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def provenance(root: Path | None = None) -> dict[str, Any]:
    """The provenance block: commit and dirty flag, machine (hostname), CPU model, core count,
    platform, Python and library versions, date (UTC) and the exact command."""
    commit, dirty = git_state(source_tree() if root is None else root)
    block: dict[str, Any] = {
        "commit": commit,
        "dirty": dirty,
        "machine": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    block.update({key: library_version(dist) for key, dist in LIBRARIES.items()})
    block["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    block["command"] = command()
    return block


def write_json(path: Path, data: dict[str, Any], block: dict[str, Any] | None = None) -> Path:
    """Write a calf-perf report: ``data`` with the provenance block first, atomically (a reader
    sees the old file or the new one). The one writer of every calf-perf JSON."""
    if not isinstance(data, dict):
        raise TypeError(f"a calf-perf report is a JSON object, not {type(data).__name__}")
    report = {"provenance": provenance() if block is None else block, **data}
    return atomic_write(path, lambda fh: json.dump(report, fh, indent=2))


def markdown_line(block: dict[str, Any]) -> str:
    """One markdown line saying where a report came from."""
    commit = block.get("commit")
    where = "no git commit" if commit is None else f"commit `{commit[:12]}`"
    if block.get("dirty"):
        where += " + uncommitted changes"
    libs = ", ".join(f"{k} {block[k]}" for k in LIBRARIES if block.get(k))
    cmd = str(block.get("command", "")).replace("`", "'")
    return (
        f"<sub>{where} · {block.get('machine')} ({block.get('cpu')}, {block.get('cores')} cores)"
        f" · Python {block.get('python')}, {libs} · {block.get('date')} · `{cmd}`</sub>"
    )


def append_markdown(path: Path, text: str, block: dict[str, Any] | None = None) -> None:
    """Append a markdown report ending with its provenance line, in one write (a GitHub job
    summary, ``$GITHUB_STEP_SUMMARY``, is appended to). The one writer of calf-perf markdown."""
    line = markdown_line(provenance() if block is None else block)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text.rstrip("\n") + "\n\n" + line + "\n")
