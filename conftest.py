"""Project-wide pytest options: ``--quick`` runs the perf suites in their CI-sized mode."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        default=os.environ.get("CALF_PERF_QUICK") == "1",
        help="perf suites: fewer sizes and rounds (what `make test` and CI run)",
    )


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick"))


@pytest.fixture(scope="session")
def ursina_app():
    """One offscreen Ursina app for the whole session (Ursina allows one app per process).

    Tests that need their own app (the visual trainer) run it in a subprocess instead.
    """
    from visuals.offscreen import make_offscreen_app

    return make_offscreen_app(size=(640, 360))
