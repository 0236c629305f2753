"""Shared pieces of the perf suites.

``@pytest.mark.sizes("n", full=[...], quick=[...])`` parametrises ``n`` by the run mode: the full
sweep by default (``pytest perf``), the quick subset under ``--quick`` (``make test``, CI).

``@pytest.mark.process_sensitive("why")``: a benchmark whose time differs between two processes
of the same code by more than ``calf-perf ab``'s micro margin (tens of nanoseconds an operation,
where the process's memory layout and interpreter caches decide the cost). ab measures and
reports it, and does not judge it; its in-process gate still holds it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sizes(name, full, quick): parametrise `name` by the perf run mode"
    )
    config.addinivalue_line(
        "markers", "process_sensitive(why): calf-perf ab reports this benchmark, not judges it"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("sizes")
    if marker is None:
        return
    name = marker.args[0]
    full = list(marker.kwargs["full"])
    quick = list(marker.kwargs.get("quick", full))
    values = quick if metafunc.config.getoption("--quick") else full
    metafunc.parametrize(name, values, ids=[f"{name}={v}" for v in values])


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Every suite measures what the app runs: one torch thread (``--torch-threads 1``). A test
    that wants more sets them itself. Two intra-op threads on these two shared cores wait for
    each other whenever the other core is busy: the batched CALF call then took 16 ms instead of
    0.3 ms, for whole runs, with identical code."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
