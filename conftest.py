"""Project-wide pytest options: ``--quick`` runs the perf suites in their CI-sized mode."""

from __future__ import annotations

import os

import pytest

# The local benchmark loop (pytest perf --benchmark-autosave / --benchmark-compare): storage,
# per-benchmark fail thresholds, the machine check. See perf/bench_compare.py.
pytest_plugins = ("perf.bench_compare",)


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
def grab_frame():
    """A function returning the last rendered frame as an (H, W, 3) uint8 RGB array, top row
    first (the tests compare pixels)."""
    import numpy as np

    def grab():
        from ursina import application

        tex = application.base.win.get_screenshot()
        if tex is None:
            raise RuntimeError("no frame has been rendered yet")
        h, w = tex.get_y_size(), tex.get_x_size()
        rgb = np.frombuffer(tex.get_ram_image_as("RGB").get_data(), dtype=np.uint8)
        return rgb.reshape(h, w, 3)[::-1].copy()

    return grab


@pytest.fixture(scope="session")
def ursina_app():
    """One offscreen Ursina app for the whole session (Ursina allows one app per process).

    Tests that need their own app (the visual trainer) run it in a subprocess instead.
    """
    from visuals.offscreen import make_offscreen_app

    return make_offscreen_app(size=(640, 360))
