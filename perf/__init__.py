"""perf: the harness that keeps calf-train fast (calf-perf: runs, comparisons, work budgets, the
A/B decision, the selftest), its benchmark and gate suites.

Importing this package has no side effects. Its modules never import ``visuals``: the runner
drives ``calf-train`` in subprocesses and reads the JSON it writes; only its pytest suites
(``bench_*``, ``test_*``) build stages in-process.
"""
