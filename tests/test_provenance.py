"""Every JSON a ``calf-perf`` command writes carries a provenance block, and every markdown
report ends with a provenance line: the cheap commands are run for real at tiny sizes, the
others are held to the one writer by reading perf/'s source."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perf import provenance

ROOT = Path(__file__).resolve().parents[1]
WRITER = ROOT / "perf" / "provenance.py"


def check_block(block: dict, command: str) -> None:
    assert set(provenance.KEYS) <= set(block), set(provenance.KEYS) - set(block)
    assert len(block["commit"]) == 40 and isinstance(block["dirty"], bool)
    assert block["machine"] and block["cpu"] and block["cores"] >= 1
    assert block["python"].startswith("3.")
    for lib in ("torch", "numpy", "panda3d"):
        assert block[lib], lib
    assert block["date"].endswith("+00:00")
    assert block["command"].startswith(command), block["command"]


def test_the_block_names_commit_machine_libraries_date_and_command() -> None:
    provenance.set_command(["run", "--agents", "2", "--json", "a b.json"])
    try:
        block = provenance.provenance()
    finally:
        provenance._command = None
    check_block(block, "calf-perf run --agents 2 --json 'a b.json'")
    line = provenance.markdown_line(block)
    assert block["commit"][:12] in line and block["torch"] in line and "calf-perf run" in line


def test_importing_the_module_imports_no_heavy_library() -> None:
    code = (
        "import sys, perf.provenance as p; p.provenance(); "
        "print(sorted(m for m in ('torch', 'numpy', 'panda3d', 'ursina', 'scipy') "
        "if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout.strip() == "[]"


def test_write_json_puts_the_block_first_and_refuses_a_bare_list(tmp_path: Path) -> None:
    path = provenance.write_json(tmp_path / "sub" / "r.json", {"x": 1})
    data = json.loads(path.read_text())
    assert list(data) == ["provenance", "x"]
    with pytest.raises(TypeError):
        provenance.write_json(tmp_path / "l.json", [1, 2])  # type: ignore[arg-type]


def test_markdown_reports_end_with_the_provenance_line(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    provenance.append_markdown(summary, "## report\n\nbody\n")
    lines = summary.read_text().splitlines()
    assert lines[0] == "earlier step" and "## report" in lines
    assert lines[-1].startswith("<sub>commit `") and lines[-1].endswith("</sub>")


def calf_perf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perf", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--agents", "2", "--frames", "20", "--warmup", "5"),
        ("budgets", "--agents", "2", "--frames", "30", "--warmup", "5"),
    ],
    ids=lambda a: a[0],
)
def test_cheap_commands_write_the_block_for_real(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "report.json"
    proc = calf_perf(*args, "--json", str(out))
    # budgets at N = 2 alone: a single N may not satisfy every cross-N budget; the report is
    # written either way
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert next(iter(data)) == "provenance"
    check_block(data["provenance"], f"calf-perf {args[0]} --agents 2")


# ------------------------------------------------------------------ the one writer, structurally
def _is_json_dumps(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "dumps" for n in ast.walk(node))


def _writes(path: Path, root: Path = ROOT) -> list[str]:
    """Every place in ``path`` that writes a JSON file or appends a report by itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        where = f"{path.relative_to(root)}:{node.lineno}"
        if name in ("dump", "atomic_write"):
            found.append(f"{where} {name}()")
        elif name in ("write_text", "write_bytes", "write") and any(
            _is_json_dumps(a) for a in node.args
        ):
            target = ast.unparse(func)
            if not target.endswith(("stdin.write", "_pipe.write")):  # a pipe's message, no file
                found.append(f"{where} {target}(json.dumps(...))")
        elif name == "open" and any(
            isinstance(a, ast.Constant) and isinstance(a.value, str) and "a" in a.value
            for a in [*node.args, *(k.value for k in node.keywords)]
        ):
            found.append(f"{where} open(..., 'a')")
    return found


def test_every_calf_perf_json_and_markdown_goes_through_the_one_writer() -> None:
    sources = [  # the harness and its suites; the suites' own tests may write what they like
        p
        for p in sorted((ROOT / "perf").rglob("*.py"))
        if p != WRITER and not (p.parent.name == "suites" and p.name.startswith("test_"))
    ]
    stray = [w for p in sources for w in _writes(p)]
    assert not stray, "write calf-perf reports with perf.provenance.write_json/append_markdown"
    # ... and the writer is used: by the CLI's one JSON function and the markdown reports
    cli = (ROOT / "perf" / "cli.py").read_text()
    assert "provenance.write_json(path, data)" in cli
    assert "provenance.append_markdown(" in cli


def test_the_structural_check_sees_a_stray_writer(tmp_path: Path) -> None:
    stray = tmp_path / "stray.py"
    stray.write_text(
        "import json\n"
        "def f(p, d, proc):\n"
        "    json.dump(d, open(p, 'w'))\n"
        "    p.write_text(json.dumps(d))\n"
        "    proc.stdin.write(json.dumps(d).encode())\n"
        "    open(p, 'a')\n"
    )
    found = _writes(stray, tmp_path)
    assert [f.split(" ", 1)[1] for f in found] == [
        "dump()",
        "p.write_text(json.dumps(...))",
        "open(..., 'a')",
    ]
