"""perf: the profiler, the headless runner (calf-perf), benchmark suites and the Stage-4 gate.

Importing this package has no side effects; it never imports ``visuals`` (the runner drives
``calf-train`` in subprocesses and reads the JSON it writes).
"""
