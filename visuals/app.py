"""``calf-train``: watch CALF learn in 3D, in a window or headless.

One frame, top to bottom (``VisualTrainerApp.frame``): the training agent's step (act, env step,
replay, one TD3 update) -> the visual agents' step (one batched policy call, physics, heights,
trails and markers) -> drawing (the training agent, the certificate timeline, the periodic
surface refresh, outputs) -> the panel -> the probe. docs/ARCHITECTURE.md follows the same data
through the frame. One ``VisualTrainerApp`` object holds all state; nothing happens at import.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from calf.trainer import StepResult
from visuals.options import AppOptions, UsageError, parse_options

__all__ = ["VisualTrainerApp", "main", "parse_options"]


class VisualTrainerApp:
    """The visual trainer: training agent, visual agents, scene, keys and outputs."""

    def __init__(self, opts: AppOptions) -> None:
        import torch

        from calf.envs import PointMassBatch, PointMassParams
        from visuals.agents import VisualAgents
        from visuals.config import preset
        from visuals.frame_clock import FrameClock
        from visuals.heatmap import CriticHeatmap
        from visuals.panel import FpsCounter
        from visuals.probe import Probe
        from visuals.profiler import PerformanceProfiler
        from visuals.scene import Scene
        from visuals.stages import FRAME_SECTIONS, build_stages
        from visuals.work_meter import WorkMeter

        self.opts = opts
        self.cfg = cfg = preset(opts.preset)
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: CUDA is not available on this machine")
        torch.set_num_threads(opts.torch_threads)
        self.learning = opts.eval is None
        self.trainer = self._training_agent()
        self.controller = controller = self.trainer.controller

        self.profiler = PerformanceProfiler(sections=FRAME_SECTIONS)
        self.clock = FrameClock(self.profiler)
        self._open_window()
        self.meter = WorkMeter(self.profiler, controller.td3.forward_counter, _scene_draw_calls)
        heatmap = CriticHeatmap(
            controller.td3,
            grid_size=cfg.grid_size,
            x_range=cfg.x_range,
            v_range=cfg.v_range,
            height_scale=cfg.height_scale,
            update_frequency=cfg.heatmap_update_every,
        )
        self.scene = Scene(cfg, heatmap)
        n_agents = cfg.n_agents if opts.agents is None else opts.agents
        self.stages = build_stages(
            cfg, controller, heatmap, opts.algo, opts.reference, self.scene.world, n_agents
        )
        # Visual agents that leave the drawn plane start over, like those that finish.
        edge = max(map(abs, (*cfg.x_range, *cfg.v_range)))
        env = PointMassBatch(
            n_agents,
            PointMassParams(max_steps=cfg.agent_max_steps, boundary=edge),
            rng=np.random.default_rng(opts.seed + 1),
        )
        s = self.stages
        self.agents = VisualAgents(env, s.policy, s.trails, s.markers, heatmap.mapping)
        self.initial_agents = n_agents
        self.fps_counter = FpsCounter()
        self.meter.watch(
            layers={"trails": s.trails, "markers": s.markers, **self.scene.layers()},
            texts={"panel": s.panel.text, "fps": self.fps_counter.text},
        )
        self._setup_camera()

        self.paused = False
        self.frame_index = 0
        self.last_step: StepResult | None = None
        self._last_plot_episode = 0
        self._last_ckpt_episode = 0
        self._profile_line: str | None = None
        self._surface_on = self._overlay_on = True
        self.out = opts.out
        self._done = False
        self.probe = Probe(opts.probe, opts.seed)
        self.probe.start(self)
        self.meter.start()  # what set-up and prefill did is no frame's work

    def _training_agent(self) -> Any:
        from calf.checkpoint import CheckpointError
        from calf.envs import PointMassParams
        from calf.trainer import AgentTrainer, TrainerConfig, make_controller

        opts = self.opts
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
        return AgentTrainer(tcfg, controller)

    # ------------------------------------------------------------ window
    def _open_window(self) -> None:
        from ursina import Entity, camera, window

        from visuals.offscreen import disable_generated_shaders, make_offscreen_app
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
        from visuals.camera_rig import CameraRig

        self.camera = CameraRig(self.opts.headless)

    # ------------------------------------------------------------- frame
    def frame(self) -> None:
        """One frame: training step -> visual agents -> draw -> panel -> probe."""
        self.clock.start_frame()
        stage = self.meter.stage
        if not self.paused:
            with stage("training"):
                self.last_step = step = self.trainer.step()
            self.agents.step(self.stages.heights, stage)
            with stage("trails"):
                self.scene.draw_training_agent(step.state, step.mode, step.episode_ended)
                self.scene.push_timeline(self.controller.q_cert, step.mode)
            with stage("heatmap"):
                self.scene.refresh_surface(self.trainer.global_step)
            with stage("outputs"):  # a reward plot or checkpoint every few episodes
                self._write_outputs_on_episode_end(step)
        with stage("ui"):
            self._show_panel()
        self.frame_index += 1
        self.meter.end_frame()
        self.probe.after_frame(self)
        self._done = self._should_stop()
        self.clock.update_done()

    def _show_panel(self) -> None:
        from visuals.stats_cache import panel_values_from

        # The panel shows the step just taken: Q(s, a) and the K-infinity bounds at its state.
        step = self.last_step
        state = self.trainer.state if step is None else step.state
        action = np.zeros(1) if step is None else step.action
        values = panel_values_from(
            self.controller,
            self.trainer,
            heatmap=self.scene.heatmap,
            profiler_line=self._profiler_line(),
            fps=self.clock.fps,
            n_agents=len(self.agents),
            state=state,
            mode=None if step is None else step.mode,
        )
        self.stages.panel.show(values, state, action)
        self.fps_counter.show(self.clock.fps, self.frame_index)

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

    def _should_stop(self) -> bool:
        o = self.opts
        if o.frames is not None and self.frame_index >= o.frames:
            return True
        return o.episodes is not None and self.trainer.episode >= o.episodes

    def _write_outputs_on_episode_end(self, step: StepResult) -> None:
        """The reward plot every few episodes and a checkpoint every K (not with --no-save)."""
        if not (step.episode_ended and self.opts.save):
            return
        ep = self.trainer.episode
        if ep - self._last_plot_episode >= self.opts.plot_every:
            self.save_reward_plot()
            self._last_plot_episode = ep
        if self.learning and ep - self._last_ckpt_episode >= self.opts.checkpoint_every:
            self.save_checkpoint()
            self._last_ckpt_episode = ep

    # ------------------------------------------------------------- keys
    def on_key(self, key: str) -> None:
        actions: dict[str, Callable[[], object]] = {
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
            "left arrow": lambda: self.camera.orbit(0, -5),
            "right arrow": lambda: self.camera.orbit(0, 5),
            "up arrow": lambda: self.camera.orbit(5, 0),
            "down arrow": lambda: self.camera.orbit(-5, 0),
            "q": lambda: self.camera.zoom(0.9),
            "e": lambda: self.camera.zoom(1.1),
        }
        action = actions.get(key)
        if action is not None:
            action()

    def toggle_pause(self) -> None:
        self.paused = not self.paused

    def add_agent(self) -> None:
        self.agents.add(1)

    def remove_agent(self) -> None:
        n = len(self.agents)
        if n:
            self.agents.remove([n - 1])

    def toggle_surface(self) -> None:
        self._surface_on = not self._surface_on
        self.scene.set_surface_visible(self._surface_on)

    def toggle_overlay(self) -> None:
        self._overlay_on = not self._overlay_on
        self.scene.set_overlay_visible(self._overlay_on)

    def toggle_profiler(self) -> None:
        self.profiler.enabled = not self.profiler.enabled
        self.clock.forget_open_frame()

    def reset_profiler(self) -> None:
        self.profiler.reset()
        self.clock.forget_open_frame()

    # ------------------------------------------------------------- outputs
    def run_info(self) -> dict[str, Any]:
        o = self.opts
        return {
            "agents": len(self.agents),
            "mode": "reference" if o.reference else "optimized",
            "reference": sorted(o.reference),
            "algo": o.algo,
            "preset": o.preset,
            "size": list(o.size),
            "frames_total": self.frame_index,
        }

    def export_profile(self, path: Path | None = None) -> Path:
        """The profiler's JSON plus this run's settings and the probe's records (F1, and
        --profile at exit)."""
        target = Path(path or self.opts.profile or self.out / "profile.json")
        extra = {"run": self.run_info(), "probe": self.probe.report()}
        return self.profiler.to_json(target, extra=extra)

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
            "agents": len(self.agents),
            "fps": self.profiler.frame_stats().get("fps"),
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
        Ursina main loop (until the window closes or a limit is reached). With the probe's
        ``serve``: blocks of frames on command (calf-perf ab), nothing written at the end."""
        if self.opts.probe.serve:
            self.probe.serve(self)
            return self.summary()
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


def _scene_draw_calls() -> int:
    """Geoms the renderer draws this frame: the 3D scene plus the UI."""
    from ursina import camera, scene

    from visuals.scene_stats import count_draw_calls

    return count_draw_calls(scene) + count_draw_calls(camera.ui)


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
