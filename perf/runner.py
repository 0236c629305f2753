"""One headless run of the real visual trainer in its own process, reduced to a run record.

Ursina allows one app per process, so every run is a subprocess of ``python -m visuals`` (the
``calf-train`` entry point); it writes the profiler JSON and this module reads it back. Nothing
here imports ``visuals``.

By default a run is the trainer a user runs late in a run: its run folder written (in a
temporary directory: metrics, evaluations, report figures, checkpoints, TensorBoard) and its
state that of an hour-long run (``--probe late=1``: the replay full, 1000 episodes of history,
trails full). ``save=False`` runs with ``--no-save`` (no folder, no evaluations) and
``late=False`` from a nearly empty replay (``PREFILL`` random steps, so every frame learns).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES = ("optimised", "reference")

RECORD_KEYS = (
    "agents",
    "mode",
    "frames",
    "frame_ms_p50",
    "frame_ms_p95",
    "fps",
    "cpu_ms_per_frame",
    "forward_passes_per_frame",
    "training_forward_passes_per_frame",
    "mesh_updates_per_frame",
    "draw_calls_per_frame",
    "rss_mb",
    "sections_ms",
    "frame_ms_p99",
    "frame_ms_p999",
    "frame_ms_max",
    "hitches_4x_median",
    "hitches_over_50ms",
    "fps_1pct_low",
)
PACING_KEYS = RECORD_KEYS[-6:]
PREFILL = 256  # random training steps before an early run's first frame: every frame learns


# The environment of every measured run. OPENBLAS_NUM_THREADS: numpy's BLAS threads spin against
# the render and torch threads on two cores. MALLOC_MMAP_THRESHOLD_: glibc raises its mmap
# threshold the first time a large temporary is freed, after which such buffers come from the
# heap, which then grows ~30 MB once, at a random frame; a short soak reads that as a leak. A
# fixed threshold keeps large temporaries mmapped and returned, so RSS reflects what is live.
RUN_ENV = {"PYTHONUNBUFFERED": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}


class RunError(RuntimeError):
    """A headless run failed; the message carries the tail of its output."""


def tail(*outputs: str | bytes | None, lines: int = 15) -> str:
    """The last ``lines`` lines of a process's output (its streams, text or bytes, in turn):
    what a RunError shows of a run that failed."""
    text = "".join(o.decode(errors="replace") if isinstance(o, bytes) else o for o in outputs if o)
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class RunSpec:
    agents: int
    frames: int = 300
    warmup: int = 60
    mode: str = "optimised"
    size: tuple[int, int] = (640, 360)
    preset: str = "medium"
    seed: int = 0
    probe: tuple[str, ...] = ()  # further probe settings ("churn=25", "series=250", ...)
    extra: tuple[str, ...] = ()
    timeout_s: float = 600.0
    save: bool = True  # the run folder (in the run's temporary directory), evaluations included
    late: bool = True  # start from an hour-long run's state (else PREFILL random steps)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.agents < 0 or self.frames <= 0 or self.warmup < 0:
            raise ValueError(
                f"bad run: agents={self.agents} frames={self.frames} warmup={self.warmup}"
            )

    def command(self, profile: Path, out: Path) -> list[str]:
        """The trainer's command line; ``out`` is the run's temporary directory (its run
        folder goes in ``out/run``)."""
        w, h = self.size
        start = "late=1" if self.late else f"prefill={PREFILL}"
        return [
            sys.executable, "-m", "visuals",
            "--headless", "--no-progress",
            *(("--out", str(out / "run")) if self.save else ("--no-save",)),
            "--preset", self.preset,
            "--agents", str(self.agents),
            "--frames", str(self.warmup + self.frames),
            "--size", f"{w}x{h}",
            "--seed", str(self.seed),
            # An early run fills the replay before the first frame: every frame learns.
            "--td3.learning-starts", str(PREFILL),
            "--probe", ",".join((f"warmup={self.warmup}", start, *self.probe)),
            "--reference", "all" if self.mode == "reference" else "none",
            "--profile", str(profile),
            *self.extra,
        ]  # fmt: skip


def record_from_profile(data: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The run record of issue 8 from the profiler JSON the trainer wrote."""
    frame, counters = data["frame"], data["counters"]
    sections = data.get("sections", {})
    return {
        "agents": spec.agents,
        "mode": spec.mode,
        "frames": int(frame["frames"]),
        "frame_ms_p50": frame["frame_ms_p50"],
        "frame_ms_p95": frame["frame_ms_p95"],
        "fps": frame["fps"],
        "cpu_ms_per_frame": frame["cpu_ms_per_frame"],
        "forward_passes_per_frame": counters.get("vis_forward_passes", 0.0),
        "training_forward_passes_per_frame": counters.get("train_forward_passes", 0.0),
        "mesh_updates_per_frame": counters.get("mesh_updates", 0.0),
        "draw_calls_per_frame": counters.get("draw_calls", 0.0),
        "rss_mb": frame["rss_mb"],
        # Pacing over every measured frame: the tail a median hides.
        "frame_ms_p99": frame.get("frame_ms_p99", 0.0),
        "frame_ms_p999": frame.get("frame_ms_p999", 0.0),
        "frame_ms_max": frame.get("frame_ms_max", 0.0),
        "hitches_4x_median": frame.get("hitches_4x_median", 0.0),
        "hitches_over_50ms": frame.get("hitches_over_50ms", 0.0),
        "fps_1pct_low": frame.get("fps_1pct_low", 0.0),
        # Mean milliseconds per frame spent in each section (they add up to the update part of
        # the frame; "render" is what the frame spent outside the update).
        "sections_ms": {name: s["ms_per_frame"] for name, s in sections.items()},
        "sections_max_ms": {name: s["max_ms"] for name, s in sections.items()},
        "series": data.get("probe", {}).get("series", []),
        # What the probe recorded frame by frame (work counts, call counts, traced memory).
        "probe": {k: v for k, v in data.get("probe", {}).items() if k != "series"},
    }


def run_once(spec: RunSpec) -> dict[str, Any]:
    """Run the trainer headless as ``spec`` says; its run record."""
    with tempfile.TemporaryDirectory(prefix="calf-perf-") as tmp:
        work = Path(tmp)
        profile = work / f"profile-{spec.mode}-{spec.agents}.json"
        env = {**os.environ, **RUN_ENV}
        try:
            proc = subprocess.run(
                spec.command(profile, work),
                capture_output=True,
                text=True,
                timeout=spec.timeout_s,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise RunError(
                f"headless run {spec.mode} N={spec.agents} exceeded {spec.timeout_s:.0f} s:\n"
                + tail(exc.stdout, exc.stderr)
            ) from None
        if proc.returncode != 0 or not profile.is_file():
            raise RunError(
                f"headless run {spec.mode} N={spec.agents} exited {proc.returncode}:\n"
                + tail(proc.stdout, proc.stderr)
            )
        data = json.loads(profile.read_text())
    return record_from_profile(data, spec)
