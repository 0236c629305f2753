"""calf-perf ab on a pull request that changes pyproject.toml: base is judged in an environment
of its own when the running one does not satisfy it (perf/trees.py). The decisions are unit
tested here; one real venv build runs only when CALF_PERF_TEST_VENV=1 asks for it (minutes:
torch and the project's dependencies are installed into it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perf.provenance import library_version
from perf.trees import (
    Tree,
    TreeError,
    _project,
    build_environment,
    harness_extra,
    plan_environment,
    requirements,
    unsatisfied,
)

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[project]
name = "calf-viz"
version = "0.1.0"
dependencies = ["torch>=2.2,<2.14", "numpy>=1.24"]

[project.optional-dependencies]
perf = ["pytest>=8", "pytest-benchmark>=4"]
dev = ["calf-viz[perf]", "ruff>=0.6", "old-only; python_version < '3'"]
"""
VERSIONS = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "pytest": "9.0", "pytest-benchmark": "5.3"}


def versions(name: str) -> str | None:
    return VERSIONS.get(name)


def tree(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "pyproject.toml").write_text(text)
    return path


def test_a_tree_runs_with_its_own_python_field_defaulting_to_this_one() -> None:
    assert Tree("base", Path("."), "0" * 40).python == sys.executable


def test_the_harness_extra_self_references_expand_and_markers_apply() -> None:
    project = _project(PYPROJECT.encode())
    assert harness_extra(project) == "perf"
    assert requirements(project, "dev") == [
        "torch>=2.2,<2.14", "numpy>=1.24", "ruff>=0.6", "old-only; python_version < '3'",
        "pytest>=8", "pytest-benchmark>=4",
    ]  # fmt: skip
    # an older tree without the perf extra: its dev extra
    assert harness_extra(_project(b'[project]\n[project.optional-dependencies]\ndev = ["x"]')) == (
        "dev"
    )
    missing = unsatisfied(requirements(project, "dev"), versions)
    assert missing == ["ruff>=0.6 (here: not installed)"]  # old-only: not for Python 3


def test_the_same_pyproject_runs_here(tmp_path: Path) -> None:
    base, head = tree(tmp_path / "b", PYPROJECT), tree(tmp_path / "h", PYPROJECT)
    plan = plan_environment(base, head, tmp_path / "cache", versions)
    assert (plan.action, plan.python) == ("same", sys.executable)


def test_a_different_pyproject_that_this_environment_satisfies_is_reused(tmp_path: Path) -> None:
    # head raised a floor; base's older, looser pins are met by what is installed here
    base = tree(tmp_path / "b", PYPROJECT.replace("numpy>=1.24", "numpy>=1.20"))
    head = tree(tmp_path / "h", PYPROJECT)
    plan = plan_environment(base, head, tmp_path / "cache", versions)
    assert (plan.action, plan.python) == ("reuse", sys.executable)
    assert not (tmp_path / "cache").exists()


def test_a_pyproject_this_environment_cannot_satisfy_gets_a_venv_cached_by_hash(
    tmp_path: Path,
) -> None:
    base = tree(tmp_path / "b", PYPROJECT.replace("numpy>=1.24", "numpy<2"))
    head = tree(tmp_path / "h", PYPROJECT)
    cache = tmp_path / "cache"
    plan = plan_environment(base, head, cache, versions)
    assert plan.action == "build" and plan.extra == "perf"
    assert plan.venv is not None and plan.venv.parent == cache / "envs"
    assert plan.python == str(plan.venv / "bin" / "python")
    assert "numpy<2 (here: 2.4.6)" in plan.why
    # the same base pyproject.toml, another checkout: the same venv
    again = plan_environment(tree(tmp_path / "b2", base.joinpath("pyproject.toml").read_text()),
                             head, cache, versions)  # fmt: skip
    assert again.venv == plan.venv
    # another pyproject.toml: another venv
    other = tree(tmp_path / "b3", PYPROJECT.replace("numpy>=1.24", "numpy<1.9"))
    assert plan_environment(other, head, cache, versions).venv != plan.venv


def test_the_build_pins_torch_first_then_installs_the_tree_and_is_then_cached(
    tmp_path: Path,
) -> None:
    base = tree(tmp_path / "b", PYPROJECT.replace("numpy>=1.24", "numpy<2"))
    head = tree(tmp_path / "h", PYPROJECT)
    plan = plan_environment(base, head, tmp_path / "cache", versions)
    commands: list[list[str]] = []
    build_environment(plan, base, run=commands.append, torch_version="2.13.0+cpu")
    assert commands[0] == [sys.executable, "-m", "venv", str(plan.venv)]
    assert commands[1][-1] == "torch==2.13.0+cpu"
    assert commands[2][-1] == f"{base}[perf]"
    assert all(c[0] == plan.python for c in commands[1:])
    assert plan_environment(base, head, tmp_path / "cache", versions).action == "cached"
    build_environment(plan, base, run=commands.append)  # already built: nothing runs
    assert len(commands) == 3


def test_a_half_built_venv_is_built_again(tmp_path: Path) -> None:
    base = tree(tmp_path / "b", PYPROJECT.replace("numpy>=1.24", "numpy<2"))
    plan = plan_environment(base, tree(tmp_path / "h", PYPROJECT), tmp_path / "c", versions)
    assert plan.venv is not None
    (plan.venv / "bin").mkdir(parents=True)  # a build that died before .complete

    def fail(cmd: list[str]) -> None:
        raise RuntimeError("pip failed")

    with pytest.raises(RuntimeError):
        build_environment(plan, base, run=fail)
    assert not (plan.venv / ".complete").exists()
    assert plan_environment(base, tmp_path / "h", tmp_path / "c", versions).action == "build"


def test_a_missing_pyproject_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(TreeError, match="missing"):
        plan_environment(tmp_path / "a", tree(tmp_path / "h", PYPROJECT))


def test_the_arms_and_the_micro_suites_start_the_trees_own_python() -> None:
    for name in ("arms.py", "micro.py"):
        text = (ROOT / "perf" / name).read_text()
        assert "sys.executable" not in text and "python," in text, name


@pytest.mark.skipif(
    os.environ.get("CALF_PERF_TEST_VENV") != "1",
    reason="builds a real venv (torch + the project's dependencies, minutes): "
    "set CALF_PERF_TEST_VENV=1 to run it",
)
def test_a_real_venv_for_a_base_with_an_older_numpy_pin(tmp_path: Path) -> None:
    head_text = (ROOT / "pyproject.toml").read_text()
    numpy = library_version("numpy")
    assert numpy is not None
    major, minor = (int(v) for v in numpy.split(".")[:2])
    older = f"numpy>=1.24,<{major}.{minor}"  # what this environment does not have
    base_text = head_text.replace('"numpy>=1.24"', f'"{older}"')
    assert base_text != head_text
    base = tmp_path / "base"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file() and name.split("/")[0] in ("calf", "visuals", "perf", "README.md"):
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).write_bytes(src.read_bytes())
    (base / "pyproject.toml").write_text(base_text)
    plan = plan_environment(base, ROOT, tmp_path / "cache")
    assert plan.action == "build", plan
    build_environment(plan, base)
    probe = (
        "import numpy, torch, pytest_benchmark, importlib.metadata as m; "
        "print(numpy.__version__, m.version('torch'))"
    )
    out = subprocess.run(
        [plan.python, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.split()
    assert out[1] == library_version("torch")
    assert tuple(int(v) for v in out[0].split(".")[:2]) < (major, minor)
    assert plan_environment(base, ROOT, tmp_path / "cache").action == "cached"
