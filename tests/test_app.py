"""Smoke tests of the visual trainer (calf-train), headless, each in its own process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = Path(__file__).with_name("app_scenarios.py")


def run_app(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visuals", "--headless", "--no-progress", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def scenario(name: str, out: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCENARIOS), name, str(out), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))
    return (img[..., :3] * 255).round().astype(np.uint8) if img.dtype != np.uint8 else img[..., :3]


def color_share(img: np.ndarray, rgb: tuple[float, float, float], tol: int = 40) -> float:
    """Fraction of pixels within `tol` (per channel) of an RGB colour given in [0, 1]."""
    target = np.array(rgb) * 255
    close = np.all(np.abs(img.astype(int) - target) <= tol, axis=-1)
    return float(close.mean())


@pytest.fixture(scope="module")
def optimised_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("optimised")
    proc = run_app(
        "--agents", "5", "--frames", "150", "--out", str(out), "--td3.learning-starts", "64",
        "--profile", str(out / "profile.json"),
    )  # fmt: skip
    return out, proc


def test_optimised_run_of_150_frames_finishes_and_writes_its_run_folder(optimised_run):
    out, proc = optimised_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in (
        "screenshot.png", "profile.json", "config.toml", "metrics.jsonl", "eval.json",
        "report.png", "checkpoint.pt",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    assert "150 frames" in proc.stdout
    evaluation = json.loads((out / "eval.json").read_text())
    assert set(evaluation) >= {"episode", "calf", "actor", "nominal"}


def test_optimised_run_makes_at_most_three_visualisation_forwards_per_frame(optimised_run):
    out, _ = optimised_run
    profile = json.loads((out / "profile.json").read_text())
    counters = profile["counters"]
    assert counters["vis_forward_passes"] <= 3
    assert counters["vis_forward_passes"] >= 2  # the batched policy: 1 actor + 1 critic
    assert counters["train_forward_passes"] > 0
    assert profile["run"]["mode"] == "optimised"


def test_screenshot_is_not_blank_and_shows_the_surface_and_the_trails(optimised_run):
    from visuals.palette import BACKGROUND, MODE_COLORS

    out, _ = optimised_run
    img = load_png(out / "screenshot.png")
    assert img.shape[:2] == (360, 640)
    assert color_share(img, BACKGROUND[:3], tol=6) < 0.9  # something is drawn
    assert img.std() > 10
    # The trails carry mode colours; certified (green) or relax (orange) must be on screen.
    assert max(color_share(img, tuple(c[:3]), tol=50) for c in MODE_COLORS) > 0.0005


def test_reference_run_of_150_frames_uses_the_loop_paths(tmp_path):
    proc = run_app(
        "--agents", "5", "--frames", "150", "--out", str(tmp_path), "--reference", "all",
        "--td3.learning-starts", "64", "--profile", str(tmp_path / "profile.json"), "--no-save",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads((tmp_path / "profile.json").read_text())
    # 5 agents x (actor + critic) + the panel's critic query, per frame.
    assert profile["counters"]["vis_forward_passes"] >= 10
    assert profile["run"]["mode"] == "reference"
    assert sorted(profile["run"]["reference"]) == ["calf", "interp", "stats", "trails"]


def test_keys_driven_from_code_add_remove_pause_and_toggle(tmp_path):
    r = scenario("keys", tmp_path)
    assert r["start_agents"] == 5
    assert r["after_add"] == [7, 7, 7, 7]
    assert r["after_remove"] == [6, 6, 6, 6]
    assert r["paused_steps"] == 0
    assert r["resumed_steps"] == 2
    assert r["surface_visible_before"] and not r["surface_visible_after_h"]
    assert r["surface_visible_after_hh"]
    assert r["overlay_visible_before"] and not r["overlay_visible_after_g"]
    assert r["profiler_after_f2"] is False
    assert r["exported"]


def test_an_episode_end_resets_only_that_row(tmp_path):
    r = scenario("episode_end", tmp_path)
    target = 2
    assert r["steps_after"][target] == 0
    assert all(r["steps_after"][i] == r["steps_before"][i] + 1 for i in (0, 1, 3))
    assert np.linalg.norm(r["target_state_after"]) > 0.2  # a fresh start, not the goal
    assert r["target_has_cert"] is False
    assert all(r["others_have_cert"])
    assert r["trail_len_after"][target] == 0
    assert all(r["trail_len_after"][i] == r["trail_len_before"][i] + 1 for i in (0, 1, 3))


def test_total_draw_calls_are_the_same_at_5_and_50_agents(tmp_path):
    r = scenario("draw_calls", tmp_path)
    assert r["agents"] == 50
    assert r["n5"] == r["n50"]


def test_eval_runs_a_checkpoint_without_learning(tmp_path):
    from calf.config import RunConfig
    from calf.trainer import make_controller

    ckpt = tmp_path / "agent.pt"
    make_controller(RunConfig(), seed=3).save(ckpt)
    stamp = ckpt.stat().st_mtime_ns
    r = scenario("eval_run", tmp_path / "out", str(ckpt))
    assert r["weights_unchanged"]
    assert r["replay"] == 0
    assert r["steps"] == 60
    assert r["P_relax"] == 0.0 and r["relax_events"] == 0
    assert r["training_forwards"] == 0
    assert ckpt.stat().st_mtime_ns == stamp  # nothing overwritten


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "unrecognized arguments"),
        (["--agents", "-3"], "--agents"),
        (["--size", "big"], "size must look like"),
        (["--reference", "calf,warp"], "unknown reference"),
        (["--eval", "/nonexistent/ckpt.pt"], "no such checkpoint"),
    ],
)
def test_bad_options_give_one_line_and_a_nonzero_exit(tmp_path, args, message):
    proc = run_app(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("calf-train")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_corrupt_or_foreign_checkpoints_are_refused_and_nothing_is_overwritten(tmp_path):
    import torch

    from calf import CALFController, PDPolicy

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    other = tmp_path / "other.pt"
    CALFController(3, 1, 5.0, PDPolicy(), seed=0).save(other)  # another state size
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, words in (
        (corrupt, "not a readable checkpoint"),
        (other, "does not match"),
        (foreign, "not a calf-viz checkpoint"),
    ):
        before = path.read_bytes()
        for flag in ("--resume", "--eval"):
            proc = run_app(flag, str(path), "--out", str(tmp_path / "out"))
            assert proc.returncode == 2, proc.stderr
            line = proc.stderr.strip().splitlines()[-1]
            assert line.startswith("calf-train: error:") and words in line, line
            assert str(path) in line
        assert path.read_bytes() == before
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    shutil.which("xvfb-run") is None, reason="no virtual display (apt-get install xvfb)"
)
def test_with_a_display_the_trainer_opens_a_window(tmp_path):
    """On a desktop calf-train opens a real window (here: Xvfb) and still ends by itself."""
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x720x24", sys.executable, "-m", "visuals",
         "--frames", "60", "--agents", "3", "--no-progress", "--out", str(tmp_path),
         "--screenshot", str(tmp_path / "window.png")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    img = load_png(tmp_path / "window.png")
    # 1280x720 is the windowed default; a headless run would have defaulted to 640x360.
    assert img.shape[:2] == (720, 1280) and img.std() > 10
