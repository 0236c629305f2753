"""The noise generator: its workers are busy for part of the time and idle for the rest, and
stop with the block that started them."""

from __future__ import annotations

import time

import psutil
import pytest

from perf.noise import NoiseConfig, noise_beside, work


def test_a_worker_alternates_busy_and_idle_phases_within_its_seconds() -> None:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    work(NoiseConfig(seed=3, seconds=4.0), worker=0)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    assert wall == pytest.approx(4.0, abs=0.3)
    assert 0.05 * wall < cpu < 0.95 * wall  # busy some of the time, idle the rest


def test_the_workers_run_beside_the_block_and_stop_with_it() -> None:
    me = psutil.Process()
    with noise_beside(True, NoiseConfig(workers=2)):
        time.sleep(0.5)
        workers = [p for p in me.children() if "perf.noise" in " ".join(p.cmdline())]
        assert len(workers) == 2
    time.sleep(0.2)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)
    with noise_beside(False):
        assert not me.children()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        NoiseConfig(workers=0)
