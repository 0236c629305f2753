"""The two source trees ``calf-perf ab`` compares: base checked out into a temporary git
worktree, head the working tree as it is (uncommitted changes included) or a worktree of a named
commit. Both run on the one installed environment, so their ``pyproject.toml`` must agree.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path


class TreeError(ValueError):
    """A ref, repository or tree that cannot be compared (a usage error: exit status 2)."""


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TreeError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def repo_root(start: Path) -> Path:
    """The top of the git repository holding ``start``."""
    try:
        return Path(_git(start, "rev-parse", "--show-toplevel"))
    except TreeError:
        raise TreeError(f"{start} is not inside a git repository") from None


def resolve(root: Path, ref: str) -> str:
    """The full commit id ``ref`` names; TreeError for an unknown ref."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except TreeError:
        raise TreeError(f"unknown ref {ref!r}") from None


@dataclass(frozen=True)
class Tree:
    """One side of the comparison: where its code lives and what it is."""

    label: str  # "base" or "head"
    path: Path
    commit: str  # the commit it is at ("" never: a dirty working tree says so in `dirty`)
    dirty: bool = False

    @property
    def name(self) -> str:
        return f"{self.label} {self.commit[:10]}{' + uncommitted changes' if self.dirty else ''}"

    def takes_run_config(self) -> bool:
        """Whether this tree's trainer reads the run config flags (``--td3.learning-starts``);
        older trees had ``--learning-starts``."""
        options = self.path / "visuals" / "options.py"
        return options.is_file() and "add_config_arguments" in options.read_text()

    def ages(self) -> bool:
        """Whether this tree's trainer builds a long run's state (``--probe late=1``); older
        trees are measured from a nearly empty replay, base and head alike."""
        probe = self.path / "visuals" / "probe.py"
        return probe.is_file() and "late: bool" in probe.read_text()

    def serves(self) -> bool:
        """Whether this tree's trainer runs blocks of frames on command (``--probe serve=1``);
        older trees are measured one process per block."""
        probe = self.path / "visuals" / "probe.py"
        return probe.is_file() and "def serve(" in probe.read_text()


@contextmanager
def worktree(root: Path, commit: str) -> Iterator[Path]:
    """A temporary detached worktree of ``commit``, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="calf-ab-"))
    path = parent / commit[:10]
    _git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)], cwd=root, capture_output=True
        )
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)


def check_same_environment(base: Tree, head: Tree) -> None:
    """Both trees run on this environment: their pyproject.toml must be the same file."""
    a, b = (t.path / "pyproject.toml" for t in (base, head))
    if not (a.is_file() and b.is_file()):
        raise TreeError("pyproject.toml is missing from base or head")
    if a.read_bytes() != b.read_bytes():
        raise TreeError(
            "pyproject.toml differs between base and head: both would need their own "
            "environment; install and measure each separately"
        )


@contextmanager
def trees(start: Path, base_ref: str, head_ref: str | None) -> Iterator[tuple[Tree, Tree]]:
    """(base, head) ready to run; head is the working tree unless ``head_ref`` names a commit."""
    root = repo_root(start)
    base_commit = resolve(root, base_ref)
    with ExitStack() as stack:
        base = Tree("base", stack.enter_context(worktree(root, base_commit)), base_commit)
        if head_ref is None:
            dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
            head = Tree("head", root, resolve(root, "HEAD"), dirty)
        else:
            head_commit = resolve(root, head_ref)
            head = Tree("head", stack.enter_context(worktree(root, head_commit)), head_commit)
        check_same_environment(base, head)
        yield base, head
