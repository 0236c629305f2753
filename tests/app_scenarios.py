"""Scenarios that drive the visual trainer from code, one per process (Ursina allows one app per
process). ``python tests/app_scenarios.py NAME OUT_DIR`` prints one JSON object on its last line;
tests/test_app.py runs them in subprocesses and asserts on the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _scene_draw_calls() -> int:
    from visuals.app import _scene_draw_calls

    return _scene_draw_calls()


def _app(out: Path, *args: str) -> Any:
    from visuals.app import VisualTrainerApp, parse_options

    opts = parse_options(
        ["--headless", "--no-progress", "--out", str(out), "--td3.learning-starts", "64", *args]
    )
    return VisualTrainerApp(opts)


def rows_everywhere(app: Any) -> list[int]:
    """The number of agent rows each per-agent container holds (they must agree)."""
    a = app.agents
    return [len(a.env), a.policy.num_batch_agents, a.trails.num_agents, a.markers.num_agents]


def _steps(app: Any, n: int) -> None:
    for _ in range(n):
        app.app.step()


def keys(out: Path) -> dict[str, Any]:
    """Add and remove agents, pause, toggle the surface: all through on_key, as a user would."""
    app = _app(out, "--agents", "5", "--frames", "1000")
    _steps(app, 5)
    res: dict[str, Any] = {"start_agents": len(app.agents)}
    app.on_key("+")
    app.on_key("+")
    _steps(app, 3)
    res["after_add"] = rows_everywhere(app)
    app.on_key("-")
    _steps(app, 3)
    res["after_remove"] = rows_everywhere(app)
    step_before = app.trainer.global_step
    app.on_key("p")
    _steps(app, 5)
    res["paused_steps"] = app.trainer.global_step - step_before
    app.on_key("p")
    _steps(app, 2)
    res["resumed_steps"] = app.trainer.global_step - step_before
    res["surface_visible_before"] = not app.scene.heatmap.surface.is_hidden()
    app.on_key("h")
    res["surface_visible_after_h"] = not app.scene.heatmap.surface.is_hidden()
    app.on_key("h")
    res["surface_visible_after_hh"] = not app.scene.heatmap.surface.is_hidden()
    res["overlay_visible_before"] = not app.scene.heatmap.overlay.is_hidden()
    app.on_key("g")
    res["overlay_visible_after_g"] = not app.scene.heatmap.overlay.is_hidden()
    app.on_key("f2")
    res["profiler_after_f2"] = app.profiler.enabled
    app.on_key("f2")
    path = app.export_profile(out / "exported.json")
    res["exported"] = path.is_file()
    return res


def episode_end(out: Path) -> dict[str, Any]:
    """A visual agent that reaches the goal is reset: its state, certificate and trail, and
    only that row."""
    from trail_readback import drawn_trails  # beside this script: on sys.path

    app = _app(out, "--agents", "4", "--frames", "1000")
    _steps(app, 10)
    target = 2
    before_states = app.agents.env.states.copy()
    before_len = [len(points) for points, _ in drawn_trails(app.agents.trails)]
    app.agents.env.states[target] = [0.0, 0.0]  # inside the goal radius after one step
    steps_before = app.agents.env.steps.copy()
    _steps(app, 1)
    after_len = [len(points) for points, _ in drawn_trails(app.agents.trails)]
    return {
        "steps_before": steps_before.tolist(),
        "steps_after": app.agents.env.steps.tolist(),
        "target_state_after": app.agents.env.states[target].tolist(),
        "target_has_cert": bool(app.controller.batch.has_cert[target]),
        "others_have_cert": [bool(app.controller.batch.has_cert[i]) for i in (0, 1, 3)],
        "trail_len_before": before_len,
        "trail_len_after": after_len,
        "moved": np.linalg.norm(app.agents.env.states - before_states, axis=1).tolist(),
    }


def draw_calls(out: Path) -> dict[str, Any]:
    """Total draw calls of the scene at N = 5 and N = 50 (same app, agents added)."""
    app = _app(out, "--agents", "5", "--frames", "1000")
    _steps(app, 5)
    at5 = _scene_draw_calls()
    app.agents.add(45)
    _steps(app, 5)
    return {"n5": at5, "n50": _scene_draw_calls(), "agents": len(app.agents)}


def eval_run(out: Path, checkpoint: str) -> dict[str, Any]:
    """--eval: no learning (weights and replay untouched), P_relax = 0."""
    import torch

    app = _app(
        out, "--agents", "3", "--frames", "1000", "--eval", checkpoint, "--td3.learning-starts", "0"
    )
    before = {k: v.clone() for k, v in app.controller.td3.actor.state_dict().items()}
    _steps(app, 60)
    after = app.controller.td3.actor.state_dict()
    modes = app.controller.get_statistics()
    return {
        "weights_unchanged": all(torch.equal(before[k], after[k]) for k in before),
        "replay": len(app.trainer.replay),
        "steps": app.trainer.global_step,
        "relax_events": modes["relax_events"],
        "P_relax": modes["P_relax"],
        "training_forwards": app.controller.td3.forward_counter.count(module="critic_target"),
    }


SCENARIOS = {
    "keys": keys,
    "episode_end": episode_end,
    "draw_calls": draw_calls,
    "eval_run": eval_run,
}


if __name__ == "__main__":
    name, out_dir, *rest = sys.argv[1:]
    result = SCENARIOS[name](Path(out_dir), *rest)
    print(json.dumps(result))
