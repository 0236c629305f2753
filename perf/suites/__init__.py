"""The pytest suites of the harness: pytest-benchmark benchmarks (``bench_*``), ratio gates and
the gates that run the harness end to end (``test_*``)."""
