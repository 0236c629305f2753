"""The pacing gate: the default trainer with its run folder and evaluations every 2 episodes
(so two evaluations, their report figures and checkpoints happen inside the run) has no frame
over the limits of ``perf.pacing`` and keeps its frame rate while episode-end work is under way.
It fails on the evaluation run inside the frame (the selftest patches that in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_frame_waits_for_episode_end_work(tmp_path: Path) -> None:
    out = tmp_path / "pacing.json"
    cmd = [sys.executable, "-m", "perf", "pacing", "--agents", "20", "--frames", "1800",
           "--warmup", "60", "--max-steps", "400", "--early", "--check",
           "--json", str(out)]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    print(proc.stdout[-2000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (pacing,) = json.loads(out.read_text())["pacing"]
    assert pacing["evaluations"] >= 2
