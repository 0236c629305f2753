"""The packages' arrows point one way: perf -> visuals -> calf.

Read from the source (every import statement, at any depth), not from what happens to be
imported at run time: ``calf`` imports neither ``visuals``, ``perf`` nor rendering code,
``visuals`` never imports ``perf``, and ``perf`` imports ``visuals`` only in its pytest suites
(``perf/suites``: in-process measurements); the harness drives the app as a subprocess.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RENDERING = {"ursina", "panda3d", "direct"}


def imported_roots(path: Path) -> set[str]:
    """Top-level package names every import in ``path`` names."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("calf"), ids=lambda p: p.name)
def test_calf_imports_no_other_package_and_no_rendering_code(path: Path) -> None:
    assert not imported_roots(path) & ({"visuals", "perf"} | RENDERING)


@pytest.mark.parametrize("path", modules("visuals"), ids=lambda p: p.name)
def test_visuals_never_imports_perf(path: Path) -> None:
    assert "perf" not in imported_roots(path)


@pytest.mark.parametrize(
    "path",
    [p for p in modules("perf") if "suites" not in p.relative_to(ROOT).parts],
    ids=lambda p: p.name,
)
def test_perf_imports_visuals_only_in_its_pytest_suites(path: Path) -> None:
    assert not imported_roots(path) & ({"visuals"} | RENDERING)
