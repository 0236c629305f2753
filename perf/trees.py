"""The two source trees ``calf-perf ab`` compares: base checked out into a temporary git
worktree, head the working tree as it is (uncommitted changes included) or a worktree of a named
commit.

Each tree runs with a Python environment (``Tree.python``): the running one, unless the tree's
``pyproject.toml`` differs from the working tree's and asks for something the running
environment does not have (a dependency pull request: base still has the old pins). Then the tree
gets its own virtual environment, built from its own ``pyproject.toml`` (torch first, pinned to
the running torch, then the tree with its harness extra) and cached by that file's hash, so the
next run against the same base starts at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from perf.provenance import library_version
from perf.runner import RunError, tail


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
    python: str = sys.executable  # the interpreter its processes run with

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


# ------------------------------------------------------------------ environments
Action = Literal["same", "reuse", "cached", "build"]


@dataclass(frozen=True)
class EnvPlan:
    """How a tree gets its Python: ``same`` (its pyproject.toml is the working tree's),
    ``reuse`` (it differs, and the running environment satisfies it), ``cached`` (a venv built
    earlier for the same pyproject.toml), ``build`` (one to build, in ``venv``)."""

    action: Action
    python: str
    why: str
    venv: Path | None = None
    extra: str | None = None  # the tree's harness extra, installed with it


def cache_root() -> Path:
    """Where tree environments are kept: $CALF_PERF_CACHE, else the user's cache folder."""
    if os.environ.get("CALF_PERF_CACHE"):
        return Path(os.environ["CALF_PERF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calf-perf"


def _project(pyproject: bytes) -> dict[str, Any]:
    try:
        project: dict[str, Any] = tomllib.loads(pyproject.decode())["project"]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise TreeError(f"cannot read pyproject.toml's [project]: {exc}") from None
    return project


def harness_extra(project: dict[str, Any]) -> str | None:
    """The extra a tree's harness needs: ``perf`` where it exists, else ``dev`` (older trees)."""
    extras = project.get("optional-dependencies") or {}
    return next((e for e in ("perf", "dev") if e in extras), None)


def requirements(project: dict[str, Any], extra: str | None) -> list[str]:
    """The requirement strings of the project and ``extra``, a self-reference
    (``calf-viz[perf]`` in ``dev``) expanded in place."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    name = canonicalize_name(project.get("name", ""))
    extras = project.get("optional-dependencies") or {}
    out: list[str] = list(project.get("dependencies") or [])
    todo, seen = [extra] if extra else [], set()
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        for text in extras.get(e, []):
            req = Requirement(text)
            if canonicalize_name(req.name) == name:
                todo.extend(req.extras)
            else:
                out.append(text)
    return out


def unsatisfied(
    reqs: list[str], version_of: Callable[[str], str | None] = library_version
) -> list[str]:
    """The requirements the running environment does not satisfy, each with what it has."""
    from packaging.requirements import Requirement

    missing = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # not for this platform or Python
        have = version_of(req.name)
        if have is None or not req.specifier.contains(have, prereleases=True):
            missing.append(f"{text} (here: {have or 'not installed'})")
    return missing


def plan_environment(
    tree: Path,
    reference: Path,
    cache: Path | None = None,
    version_of: Callable[[str], str | None] = library_version,
) -> EnvPlan:
    """How ``tree`` runs, the running environment having been installed from ``reference``'s
    pyproject.toml (the working tree's)."""
    a, b = tree / "pyproject.toml", reference / "pyproject.toml"
    if not (a.is_file() and b.is_file()):
        raise TreeError("pyproject.toml is missing from base or head")
    mine = a.read_bytes()
    if mine == b.read_bytes():
        return EnvPlan("same", sys.executable, "the same pyproject.toml")
    project = _project(mine)
    extra = harness_extra(project)
    missing = unsatisfied(requirements(project, extra), version_of)
    if not missing:
        return EnvPlan(
            "reuse", sys.executable, "pyproject.toml differs; this environment satisfies it"
        )
    venv = (cache or cache_root()) / "envs" / hashlib.sha256(mine).hexdigest()[:16]
    python = str(venv / "bin" / "python")
    needs = "; ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    if (venv / ".complete").is_file():
        return EnvPlan("cached", python, f"its own environment (built before): {needs}", venv)
    return EnvPlan("build", python, f"needs its own environment: {needs}", venv, extra)


def _pip_run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        output = tail(proc.stdout, proc.stderr)
        raise RunError(f"building a tree's environment: {' '.join(cmd)} failed:\n{output}")


def build_environment(
    plan: EnvPlan,
    tree: Path,
    run: Callable[[list[str]], None] = _pip_run,
    torch_version: str | None = None,
) -> None:
    """Build ``plan``'s venv for ``tree``: torch first, pinned to the running environment's
    (any other spec pulls a multi-GB CUDA build), then the tree itself with its harness extra.
    A half-built venv (no ``.complete``) is built again; a lock keeps two runs apart."""
    assert plan.venv is not None
    venv = plan.venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".complete").is_file():
            return
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        pip = [plan.python, "-m", "pip", "install", "--quiet"]
        torch = torch_version or library_version("torch")
        if torch:
            run([*pip, f"torch=={torch}"])
        run([*pip, f"{tree}[{plan.extra}]" if plan.extra else str(tree)])
        venv.mkdir(parents=True, exist_ok=True)
        (venv / ".complete").write_text(f"{tree}\n")


def environment(tree: Path, reference: Path, log: Callable[[str], None], label: str) -> str:
    """The Python ``tree`` runs with (building its environment if it needs one)."""
    plan = plan_environment(tree, reference)
    if plan.action != "same":
        log(f"ab: {label} environment: {plan.why}")
    if plan.action == "build":
        log(f"ab: building it in {plan.venv} (once per pyproject.toml)")
        build_environment(plan, tree)
    return plan.python


@contextmanager
def trees(
    start: Path,
    base_ref: str,
    head_ref: str | None,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> Iterator[tuple[Tree, Tree]]:
    """(base, head) ready to run; head is the working tree unless ``head_ref`` names a commit.
    The running environment is taken to be installed from the working tree's pyproject.toml: a
    tree whose pyproject.toml differs gets its own environment when the running one does not
    satisfy it (base's differs from head's in a dependency pull request)."""
    root = repo_root(start)
    base_commit = resolve(root, base_ref)
    with ExitStack() as stack:
        if head_ref is None:
            dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
            head = Tree("head", root, resolve(root, "HEAD"), dirty)
        else:
            head_commit = resolve(root, head_ref)
            path = stack.enter_context(worktree(root, head_commit))
            head = Tree("head", path, head_commit, python=environment(path, root, log, "head"))
        path = stack.enter_context(worktree(root, base_commit))
        base = Tree("base", path, base_commit, python=environment(path, root, log, "base"))
        yield base, head
