"""``calf-perf ab`` end to end, in a temporary repository made from this tree: a committed
slowdown is flagged (exit 1), a commit that changes nothing is not (exit 0).

The slowdown is behaviour-preserving busy work in the physics stage, 2.5 ms: about +25 % of an
N = 20 frame here (the ab run's own calibration proves +10 %).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perf.selftest import copies

ROOT = Path(__file__).resolve().parents[2]
SLOWDOWN = (
    "visuals/agents.py",
    '        with stage("physics"):\n',
    '        with stage("physics"):\n'
    '            _t = __import__("time").perf_counter() + 2.5e-3\n'
    '            while __import__("time").perf_counter() < _t:\n'
    "                pass\n",
)


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ab", "GIT_AUTHOR_EMAIL": "ab@example.com",
           "GIT_COMMITTER_NAME": "ab", "GIT_COMMITTER_EMAIL": "ab@example.com"}  # fmt: skip
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def repo() -> Iterator[Path]:
    """A fresh repository holding this tree as it is (uncommitted changes included)."""
    with copies(ROOT, 1) as (tree,):
        yield tree


def ab(repo: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run(
        [sys.executable, "-m", "perf", "ab", "--base", "HEAD~1", "--head", "HEAD", "--quick",
         "--no-micro", "--rounds", "8", "--json", str(out)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_ab_flags_a_committed_slowdown(repo: Path, tmp_path: Path) -> None:
    path, old, new = SLOWDOWN
    target = repo / path
    text = target.read_text()
    assert old in text, "the slowdown patch no longer applies"
    target.write_text(text.replace(old, new, 1))
    git(repo, "commit", "-q", "-am", "slow physics")
    try:
        proc = ab(repo, tmp_path / "ab.json")
        print(proc.stdout[-3000:])
        assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
        data = json.loads((tmp_path / "ab.json").read_text())
        assert data["verdict"].startswith("regression")
        flagged = {d["metric"] for d in data["decisions"] if d["verdict"] == "regression"}
        assert {"physics time N=20", "physics share N=20"} <= flagged
    finally:
        git(repo, "reset", "-q", "--hard", "HEAD~1")


def test_ab_passes_a_commit_that_changes_nothing(repo: Path, tmp_path: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "nothing")
    try:
        proc = ab(repo, tmp_path / "ab.json")
        print(proc.stdout[-3000:])
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        data = json.loads((tmp_path / "ab.json").read_text())
        assert all(c["caught"] for c in data["calibrations"])
    finally:
        git(repo, "reset", "-q", "--hard", "HEAD~1")


def test_ab_refuses_an_unknown_ref_with_one_line(repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perf", "ab", "--base", "no-such-ref", "--quick"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["calf-perf: error: unknown ref 'no-such-ref'"]
