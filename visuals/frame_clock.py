"""Frame boundaries for the profiler: where one frame ends and the next begins, render included.

Ursina calls the app's update once per frame, then Panda3D culls and draws. The clock closes the
previous frame at the start of the next update, so a frame's wall time holds its update and its
render; the time since the last update finished is recorded as the ``render`` section.
"""

from __future__ import annotations

import time

from visuals.profiler import PerformanceProfiler


class FrameClock:
    """Opens and closes the profiler's frames and keeps a smoothed FPS figure."""

    def __init__(self, profiler: PerformanceProfiler) -> None:
        self.profiler = profiler
        self.fps = 0.0
        self._last_start: float | None = None
        self._update_done = 0.0
        self._open = False  # whether the profiler holds an open frame to add render time to

    def start_frame(self) -> None:
        now = time.perf_counter()
        if self._last_start is not None:
            dt = now - self._last_start
            self.fps = 1.0 / dt if self.fps == 0 else 0.95 * self.fps + 0.05 / dt
        self._last_start = now
        prof = self.profiler
        if self._open:
            prof.add_time("render", now - self._update_done)
        prof.end_frame()  # closes the previous frame: its update and its render
        prof.begin_frame()
        self._open = prof.enabled

    def update_done(self) -> None:
        self._update_done = time.perf_counter()

    def forget_open_frame(self) -> None:
        """After a profiler reset or toggle: the open frame was dropped."""
        self._open = False
