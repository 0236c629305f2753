"""No public name in ``calf``, ``visuals`` or the perf harness is reached only from tests.

A public function, method or class (no leading underscore) that nothing outside ``tests/`` and
``perf/suites/`` names is API kept alive by its own tests: it is deleted with its tests, or made
private where a non-test caller needs it. Read from the source: every ``ast.Name`` and
``ast.Attribute`` in ``calf/``, ``visuals/`` and the harness (``perf/`` less its suites) counts
as a use; imports and ``__all__`` do not (a re-export is not a use). Names are matched by
spelling, so a name another object also uses (``add``, ``push``) counts as used: the check can
miss a test-only name, never flag a used one.

``python tests/test_public_api.py`` prints every candidate, one ``module:qualname`` a line
(``--all``: the listed exceptions too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFINING = ("calf", "visuals", "perf")  # perf: the harness, its suites are tests
# Called by name from outside the code base: torch (nn.Module.forward), Ursina (an entity's
# update and input), the console scripts and ``python -m`` (main).
FRAMEWORK_HOOKS = {"forward", "update", "input", "main"}
# ... argparse (a parser's error) and pytest-benchmark (a compare-fail rule's fails).
FRAMEWORK_HOOKS |= {"error", "fails"}
FRAMEWORK_PREFIXES = ("pytest_",)  # pytest's hooks in the harness's plugins
# The upstream API the project started from, kept for its users (docs/ARCHITECTURE.md).
UPSTREAM = {
    "CALFController.select_action",
    "CALFController.select_action_batch",
    "TD3.select_action_batch",
}
# Reached only from the perf suites, which measure them; each says where.
MEASURED = {
    "Drawable.set_visible": "perf/suites/bench_trails.py shows one trail set at a time",
    "CriticHeatmap.vertex_buffers_reference": "perf/suites/bench_heatmap.py's surface reference",
}
# Reached only from tests, in a module another change owns: to be settled there.
PENDING: dict[str, str] = {}


def _sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def _is_non_test(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return parts[0] != "tests" and parts[:2] != ("perf", "suites")


def public_definitions() -> list[tuple[str, str]]:
    """(module path, qualified name) of every public class, function and method defined at
    module or class level in ``calf`` and ``visuals``."""
    found = []

    def visit(body: list[ast.stmt], module: str, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.name.startswith("_"):
                    continue
                found.append((module, prefix + node.name))
                if isinstance(node, ast.ClassDef):
                    visit(node.body, module, f"{prefix}{node.name}.")

    for path in filter(_is_non_test, _sources(*DEFINING)):
        tree = ast.parse(path.read_text(), str(path))
        visit(tree.body, str(path.relative_to(ROOT)), "")
    return found


def names_used_outside_tests() -> set[str]:
    """Every identifier read, written or called in the non-test code."""
    used: set[str] = set()
    for path in _sources("calf", "visuals", "perf"):
        if not _is_non_test(path):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
    return used


def names_reached_only_from_tests() -> list[str]:
    """``module:qualname`` of every public definition no non-test code names (the upstream
    API and what the perf suites measure aside)."""
    used = names_used_outside_tests() | FRAMEWORK_HOOKS
    return [
        f"{module}:{qualname}"
        for module, qualname in public_definitions()
        if qualname.rsplit(".", 1)[-1] not in used
        and not qualname.rsplit(".", 1)[-1].startswith(FRAMEWORK_PREFIXES)
        and qualname not in UPSTREAM
        and qualname not in MEASURED
        and qualname not in PENDING
    ]


def test_no_public_name_is_reached_only_from_tests() -> None:
    assert names_reached_only_from_tests() == []


if __name__ == "__main__":
    import sys

    if "--all" in sys.argv:
        UPSTREAM.clear()
        MEASURED.clear()
        PENDING.clear()
    print("\n".join(names_reached_only_from_tests()))
