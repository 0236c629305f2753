"""``calf-train``: watch CALF learn in 3D, in a window or headless.

Each frame follows the data flow in ARCHITECTURE.md: one training step, the batched visual agents
(their own CALF modes), one batched physics step, resets of finished rows, heights from the
critic surface, trails, the periodic surface refresh and the cached panel. One
``VisualTrainerApp`` object holds all state; nothing happens at import.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from visuals.options import AppOptions, UsageError, parse_options
from visuals.stats_cache import panel_values_from

__all__ = ["VisualTrainerApp", "main", "parse_options"]


class VisualTrainerApp:
    """The visual trainer: training agent, visual agents, scene, keys and outputs."""

    def __init__(self, opts: AppOptions) -> None:
        import torch

        from calf.batch_policy import ActorOnly, PerAgentLoop
        from calf.checkpoint import CheckpointError
        from calf.envs import PointMassBatch, PointMassParams
        from calf.trainer import AgentTrainer, TrainerConfig, make_controller
        from perf.profiler import PerformanceProfiler
        from visuals.config import preset

        self.opts = opts
        self.cfg = preset(opts.preset)
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: CUDA is not available on this machine")
        torch.set_num_threads(opts.torch_threads)

        # ---- learning side (calf/)
        self.learning = opts.eval is None
        tcfg = TrainerConfig(
            algo=opts.algo,
            seed=opts.seed,
            device=opts.device,
            env=PointMassParams(max_steps=opts.max_steps),
            learning_starts=opts.learning_starts,
            learn=self.learning,
        )
        controller = make_controller(tcfg)
        source = opts.eval or opts.resume
        if source is not None:
            try:
                controller.load(source)
            except CheckpointError as exc:
                raise UsageError(str(exc)) from None
        if opts.eval is not None:
            controller.set_relax_probability(0.0)
        self.controller = controller
        self.trainer = AgentTrainer(tcfg, controller)
        for _ in range(opts.prefill):  # replay filled off-screen, so frame 1 already learns
            self.trainer.step()
        # The visual agents' policy: batched CALF, its per-agent loop reference, or plain TD3.
        self.policy: Any = controller
        if opts.algo == "td3":
            self.policy = ActorOnly(controller.td3)
        elif "calf" in opts.reference:
            self.policy = PerAgentLoop(controller)
        n_agents = self.cfg.n_agents if opts.agents is None else opts.agents
        self.vis_env = PointMassBatch(
            n_agents,
            # Visual agents that leave the drawn plane start over, like those that finish.
            PointMassParams(
                max_steps=self.cfg.agent_max_steps,
                boundary=max(map(abs, (*self.cfg.x_range, *self.cfg.v_range))),
            ),
            rng=np.random.default_rng(opts.seed + 1),
        )
        self.policy.add_batch_agents(n_agents)

        # ---- drawing side
        self.profiler = PerformanceProfiler(enabled=True)
        self._open_window()
        from visuals.visualizer import TrainingVisualizer

        self.viz = TrainingVisualizer(
            self.cfg, controller.td3, reference=opts.reference, n_agents=n_agents
        )
        self._setup_camera()

        self.paused = False
        self.frame_index = 0
        self.last_step_result: Any = None
        self._last_plot_episode = 0
        self._last_ckpt_episode = 0
        self._fps_ema = 0.0
        self._last_frame_t: float | None = None
        self._update_done_t = 0.0
        self._profile_line: str | None = None
        self._mesh_updates_seen = self.viz.mesh_updates()
        counter = controller.td3.forward_counter
        self._forward_seen = (counter.count(), counter.count(tag="training"))
        self._frame_open = False  # whether the profiler has an open frame to add render time to
        self.draw_calls = self.viz.draw_calls()
        self.out = opts.out
        self._done = False
        self._churn_rng = np.random.default_rng(opts.seed + 2)
        self._initial_agents = n_agents
        self.series: list[dict[str, float]] = []

    # ------------------------------------------------------------ window
    def _open_window(self) -> None:
        from ursina import Entity, window

        from visuals.offscreen import make_offscreen_app
        from visuals.palette import BACKGROUND

        if self.opts.headless:
            self.app = make_offscreen_app(size=self.opts.size, development_mode=False)
        else:
            from ursina import Ursina

            self.app = Ursina(
                title="calf-viz: CALF learning live",
                size=self.opts.size,
                borderless=False,
                development_mode=False,
            )
        from ursina import camera

        from visuals.offscreen import disable_generated_shaders

        disable_generated_shaders(camera.ui)  # also on screen: text needs no generated shader
        for name in ("fps_counter", "entity_counter", "collider_counter", "cog_button"):
            widget = getattr(window, name, None)
            if widget is not None:
                widget.enabled = False
        if getattr(window, "exit_button", None) is not None:
            window.exit_button.visible = False
        window.color = BACKGROUND

        app = self

        class _FrameDriver(Entity):
            """Ursina calls update() once per frame and input() on key presses."""

            def update(self) -> None:
                app.frame()

            def input(self, key: str) -> None:
                app.on_key(key)

        self._driver = _FrameDriver(name="frame_driver")

    def _setup_camera(self) -> None:
        from ursina import EditorCamera, camera

        self._orbit = np.array([32.0, -25.0])  # tilt, yaw in degrees
        self._distance = 25.0
        if self.opts.headless:
            self.editor_camera = None
            self._place_camera()
        else:
            self.editor_camera = EditorCamera(rotation=(25, -30, 0))
            camera.z = -self._distance

    def _place_camera(self) -> None:
        from ursina import camera

        tilt, yaw = np.radians(self._orbit)
        d = self._distance
        # Aim left of the plane's centre so the plane sits right of the panel.
        target = np.array([-1.6, 1.9, 1.0])
        offset = d * np.array(
            [np.cos(tilt) * np.sin(-yaw), np.sin(tilt), -np.cos(tilt) * np.cos(yaw)]
        )
        camera.position = tuple(target + offset)
        camera.look_at(tuple(target))

    # ------------------------------------------------------------- frame
    def frame(self) -> None:
        """One frame: training step, visual agents, physics, heights, trails, surface, panel."""
        prof = self.profiler
        now = time.perf_counter()
        if self._last_frame_t is not None:
            dt = now - self._last_frame_t
            self._fps_ema = 1.0 / dt if self._fps_ema == 0 else 0.95 * self._fps_ema + 0.05 / dt
        if self._frame_open:
            # Whatever the last frame spent after its update is Panda3D culling and drawing.
            prof.add_time("render", now - self._update_done_t)
        self._last_frame_t = now
        prof.end_frame()  # closes the previous frame: its update and its render
        prof.begin_frame()
        self._frame_open = prof.enabled
        if not self.paused:
            with prof.section("training"):
                result = self.trainer.step()
            self.last_step_result = result
            self._simulate_visual_agents()
            with prof.section("trails"):
                self.viz.draw_training_agent(result.state, result.mode, result.episode_ended)
                self.viz.push_timeline(self.controller.q_cert, result.mode)
            with prof.section("heatmap"):
                self.viz.refresh_surface(self.trainer.global_step)
            with prof.section("outputs"):  # a reward plot or checkpoint every few episodes
                self._write_outputs_on_episode_end(result)
        with prof.section("ui"):
            self._update_panel()
        self.frame_index += 1
        if self.opts.churn_every and self.frame_index % self.opts.churn_every == 0:
            with prof.section("churn"):
                self._churn()
        self._count_frame()
        if self.opts.series_every and self.frame_index % self.opts.series_every == 0:
            with prof.section("soak_sample"):
                self._sample_series()
        if self.frame_index == self.opts.warmup:
            self.reset_profiler()
        if self._should_stop():
            self._done = True
        self._update_done_t = time.perf_counter()

    def _churn(self) -> None:
        """Soak runs: add or remove a few agents, staying within [n0 / 2, 2 n0]."""
        n, n0 = len(self.vis_env), max(self._initial_agents, 2)
        k = int(self._churn_rng.integers(1, 4))
        grow = self._churn_rng.random() < 0.5
        if grow and n + k <= 2 * n0 or n - k < n0 // 2:
            self.add_agent(k)
        else:
            self.remove_agent(k)

    def _sample_series(self) -> None:
        import psutil
        from ursina import camera, scene

        from visuals.scene_stats import count_nodes

        self.series.append(
            {
                "frame": self.frame_index,
                "rss_mb": psutil.Process().memory_info().rss / 2**20,
                "nodes": count_nodes(scene) + count_nodes(camera.ui),
                "agents": len(self.vis_env),
            }
        )

    def _simulate_visual_agents(self) -> None:
        prof = self.profiler
        states = self.vis_env.states
        with prof.section("policy"):
            actions, codes = self.policy.select_action_batch_codes(states)
        with prof.section("physics"):
            next_states, _, done = self.vis_env.step(actions)
        with prof.section("heights"):
            heights = self.viz.heights(next_states)
        with prof.section("trails"):
            self.viz.draw_agents(next_states, heights, codes)
            if done.any():
                finished = np.flatnonzero(done)
                self.vis_env.reset_rows(finished)
                self.policy.reset_batch_agents(finished)
                self.viz.clear_trails(finished)

    def _update_panel(self) -> None:
        # The panel shows the step just taken: Q(s, a) and the K-infinity bounds at its state.
        r = self.last_step_result
        state = self.trainer.state if r is None else r.state
        action = np.zeros(1) if r is None else r.action
        values = panel_values_from(
            self.controller,
            self.trainer,
            heatmap=self.viz.heatmap,
            profiler_line=self._profiler_line(),
            fps=self._fps_ema,
            n_agents=len(self.vis_env),
            state=state,
        )
        self.viz.update_stats_display(values, state, action)
        if self.frame_index % 30 == 0:
            self.viz.set_fps(self._fps_ema)

    def _profiler_line(self) -> str | None:
        """A short profiler summary for the panel, rebuilt every 60 frames (reading the
        percentiles is not free, and the panel shows this field at that period anyway)."""
        if not self.profiler.enabled:
            return "off (F2)"
        if self.frame_index % 60 == 0 or self._profile_line is None:
            f = self.profiler.frame_stats()
            top = sorted(
                self.profiler.section_stats().items(), key=lambda kv: -kv[1]["ms_per_frame"]
            )[:3]
            self._profile_line = (
                f"{f['frame_ms_p50']:.1f} ms p50, {f['frame_ms_p95']:.1f} p95 | "
                + (", ".join(f"{name} {st['ms_per_frame']:.1f}" for name, st in top))
            )
        return self._profile_line

    def _count_frame(self) -> None:
        """Per-frame counts: forward passes (visualisation vs training), vertex-buffer writes,
        draw calls."""
        prof = self.profiler
        counter = self.controller.td3.forward_counter
        total, training = counter.count(), counter.count(tag="training")
        prof.count(
            "vis_forward_passes",
            (total - training) - (self._forward_seen[0] - self._forward_seen[1]),
        )
        prof.count("train_forward_passes", training - self._forward_seen[1])
        self._forward_seen = (total, training)
        mesh = self.viz.mesh_updates()
        prof.count("mesh_updates", mesh - self._mesh_updates_seen)
        self._mesh_updates_seen = mesh
        if self.frame_index % 60 == 1:  # from the first frame on; walking the graph is not free
            self.draw_calls = self.viz.draw_calls()
        prof.set_counter("draw_calls", self.draw_calls)

    def _should_stop(self) -> bool:
        o = self.opts
        if o.frames is not None and self.frame_index >= o.frames:
            return True
        return o.episodes is not None and self.trainer.episode >= o.episodes

    def _write_outputs_on_episode_end(self, result: Any) -> None:
        """The reward plot every few episodes and a checkpoint every K (not with --no-save)."""
        if not (result.episode_ended and self.opts.save):
            return
        ep = self.trainer.episode
        if ep - self._last_plot_episode >= self.opts.plot_every:
            self.save_reward_plot()
            self._last_plot_episode = ep
        if self.learning and ep - self._last_ckpt_episode >= self.opts.checkpoint_every:
            self.save_checkpoint()
            self._last_ckpt_episode = ep

    # ------------------------------------------------------------- actions
    def toggle_pause(self) -> None:
        self.paused = not self.paused

    def add_agent(self, n: int = 1) -> None:
        self.vis_env.add(n)
        self.policy.add_batch_agents(n)
        self.viz.add_agents(n)

    def remove_agent(self, n: int = 1) -> None:
        k = min(n, len(self.vis_env))
        if k == 0:
            return
        rows = np.arange(len(self.vis_env) - k, len(self.vis_env))
        self.vis_env.remove(rows)
        self.policy.remove_batch_agents(rows)
        self.viz.remove_agents(rows)

    def toggle_surface(self) -> None:
        self._surface_on = not getattr(self, "_surface_on", True)
        self.viz.set_surface_visible(self._surface_on)

    def toggle_overlay(self) -> None:
        self._overlay_on = not getattr(self, "_overlay_on", True)
        self.viz.set_overlay_visible(self._overlay_on)

    def run_info(self) -> dict[str, Any]:
        o = self.opts
        return {
            "agents": len(self.vis_env),
            "mode": "reference" if o.reference else "optimized",
            "reference": sorted(o.reference),
            "algo": o.algo,
            "preset": o.preset,
            "size": list(o.size),
            "warmup": o.warmup,
            "frames_total": self.frame_index,
            "series": self.series,
        }

    def export_profile(self, path: Path | None = None) -> Path:
        """The profiler's JSON plus this run's settings (F1, and --profile at exit)."""
        target = Path(path or self.opts.profile or self.out / "profile.json")
        self.profiler.to_json(target, extra={"run": self.run_info()})
        return target

    def toggle_profiler(self) -> None:
        self.profiler.enabled = not self.profiler.enabled
        self._frame_open = False

    def reset_profiler(self) -> None:
        self.profiler.reset()
        self._frame_open = False

    def orbit(self, d_tilt: float, d_yaw: float) -> None:
        self._orbit += (d_tilt, d_yaw)
        self._orbit[0] = float(np.clip(self._orbit[0], 5.0, 85.0))
        if self.editor_camera is not None:
            self.editor_camera.rotation = (self._orbit[0], self._orbit[1], 0)
        else:
            self._place_camera()

    def zoom(self, factor: float) -> None:
        self._distance = float(np.clip(self._distance * factor, 4.0, 60.0))
        if self.editor_camera is not None:
            from ursina import camera

            camera.z = -self._distance
        else:
            self._place_camera()

    def on_key(self, key: str) -> None:
        actions = {
            "p": self.toggle_pause,
            "+": self.add_agent,
            "=": self.add_agent,
            "plus": self.add_agent,
            "-": self.remove_agent,
            "minus": self.remove_agent,
            "h": self.toggle_surface,
            "g": self.toggle_overlay,
            "f1": self.export_profile,
            "f2": self.toggle_profiler,
            "f3": self.reset_profiler,
            "left arrow": lambda: self.orbit(0, -5),
            "right arrow": lambda: self.orbit(0, 5),
            "up arrow": lambda: self.orbit(5, 0),
            "down arrow": lambda: self.orbit(-5, 0),
            "q": lambda: self.zoom(0.9),
            "e": lambda: self.zoom(1.1),
        }
        action = actions.get(key)
        if action is not None:
            action()

    # ------------------------------------------------------------- outputs
    def save_reward_plot(self) -> Path:
        from visuals.outputs import save_reward_plot

        return save_reward_plot(
            self.trainer.episode_rewards,
            self.out / "rewards.png",
            title=f"{self.opts.algo} training",
        )

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoint.pt"
        self.controller.save(path)
        return path

    def summary(self) -> dict[str, Any]:
        stats = self.controller.get_statistics()
        frame = self.profiler.frame_stats()
        rewards = self.trainer.episode_rewards
        return {
            "frames": self.frame_index,
            "episodes": self.trainer.episode,
            "steps": self.trainer.global_step,
            "last_reward": rewards[-1] if rewards else None,
            "success_rate": self.trainer.success_rate,
            "certified_rate": stats["certified_rate"],
            "relax_rate": stats["relax_rate"],
            "fallback_rate": stats["fallback_rate"],
            "P_relax": stats["P_relax"],
            "agents": len(self.vis_env),
            "fps": frame.get("fps"),
        }

    def finish(self) -> dict[str, Any]:
        """Outputs at exit: screenshot, profile, reward plot, checkpoint; the summary."""
        from visuals.offscreen import save_screenshot

        if self.opts.profile is not None:
            self.export_profile(self.opts.profile)
        if self.opts.save:
            if self.opts.screenshot is not None:
                save_screenshot(self.opts.screenshot)
            self.save_reward_plot()
            if self.learning:
                self.save_checkpoint()
        return self.summary()

    # ------------------------------------------------------------- running
    def run(self) -> dict[str, Any]:
        """Headless: step until the frame/episode limit, with a progress bar. On screen: the
        Ursina main loop (until the window closes or a limit is reached)."""
        if self.opts.headless:
            from tqdm.auto import tqdm

            total = self.opts.frames
            with tqdm(
                total=total, desc="calf-train", unit="frame", disable=not self.opts.progress
            ) as bar:
                while not self._done:
                    self.app.step()
                    bar.update(1)
            return self.finish()
        from ursina import application

        def stop_when_done(task: Any) -> Any:
            if self._done:
                application.quit()
            return task.cont

        application.base.task_mgr.add(stop_when_done, "calf_stop_when_done")
        try:
            self.app.run()
        except SystemExit:
            pass
        return self.finish()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``calf-train``."""
    try:
        opts = parse_options(argv)
        trainer = VisualTrainerApp(opts)
    except UsageError as exc:
        print(f"calf-train: error: {exc}", file=sys.stderr)
        return 2
    summary = trainer.run()
    fps = summary["fps"]
    print(
        f"calf-train: {summary['frames']} frames, {summary['episodes']} episodes, "
        f"{summary['steps']} steps, {summary['agents']} agents"
        + (f", {fps:.1f} FPS" if fps else "")
    )
    print(
        f"  modes: certified {summary['certified_rate']:.1%}, relax {summary['relax_rate']:.1%}, "
        f"fallback {summary['fallback_rate']:.1%}; P_relax {summary['P_relax']:.4f}"
    )
    print(
        f"  outputs in {opts.out}/"
        + (f" (screenshot {opts.screenshot})" if opts.screenshot else "")
    )
    return 0
