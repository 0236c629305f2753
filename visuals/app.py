"""``calf-train``: watch CALF learn in 3D, in a window or headless.

One frame, top to bottom (``VisualTrainerApp.frame``): the visual agents' step (one batched
policy call, physics, heights, trails and markers) -> the training agent's step (act, env step,
replay, one TD3 update) -> drawing (the training agent, the certificate timeline, the periodic
surface refresh) -> outputs (an episode's end hands its records over) -> a slice of any
evaluation due -> the panel -> the probe. No frame waits for episode-end work: evaluations run
on a frozen copy of the networks a slice per frame, and a worker process writes the files
(``calf.session``, ``calf.run_writer``). docs/ARCHITECTURE.md follows the same data through
the frame. One ``VisualTrainerApp`` object holds all state; nothing happens at import.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calf.config import UsageError
from visuals.options import AppOptions, parse_options

if TYPE_CHECKING:  # torch loads when the app is built, not when calf-train parses its options
    from calf.session import TrainingSession
    from calf.trainer import StepResult

__all__ = ["VisualTrainerApp", "main", "parse_options"]


class VisualTrainerApp:
    """The visual trainer: training agent, visual agents, scene, keys and outputs."""

    def __init__(self, opts: AppOptions) -> None:
        import torch

        from calf.envs import PointMassBatch
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
        if opts.config.train.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("--device cuda: CUDA is not available on this machine")
        torch.set_num_threads(opts.torch_threads)
        self.session = self._session()
        self.run_config = run = self.session.cfg  # a resumed run's config, or the new one
        self.trainer = self.session.trainer
        self.controller = controller = self.session.controller
        self.out = None if self.session.folder is None else self.session.folder.path
        self._eval_line: str | None = None
        self.session.on_eval.append(self._show_evaluation)

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
            cfg, controller, heatmap, run.train.algo, opts.reference, self.scene.world, n_agents
        )
        # Visual agents that leave the drawn plane start over, like those that finish.
        edge = max(map(abs, (*cfg.x_range, *cfg.v_range)))
        env = PointMassBatch(
            n_agents,
            run.env.params(max_steps=cfg.agent_max_steps, boundary=edge),
            rng=np.random.default_rng(run.train.seed + 1),
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
        self._profile_line: str | None = None
        self._surface_on = self._overlay_on = True
        self._done = False
        self.probe = Probe(opts.probe, run.train.seed)
        self.probe.start(self)
        self.meter.start()  # what set-up and prefill did is no frame's work
        # Everything set up so far lives as long as the app: out of the collector's sight, a
        # full collection walks the few objects frames make, not the ~330 000 of torch, Panda3D
        # and Ursina (230-280 ms a collection here: a frame frozen for a quarter second).
        gc.collect()
        gc.freeze()

    def _session(self) -> TrainingSession:
        """The training session: a new run (its folder under runs/ or --out), a resumed run
        folder, a new run from a checkpoint file (--resume FILE), or a checkpoint evaluated
        without learning (--eval); with --no-save nothing is written and nothing evaluated."""
        from calf.checkpoint import CheckpointError
        from calf.config import ConfigError
        from calf.run_folder import RunFolderError
        from calf.session import ResumeError, TrainingSession
        from calf.trainer import make_controller

        opts, cfg = self.opts, self.opts.config
        try:
            if opts.resume is not None and opts.resume.is_dir():
                return TrainingSession.resume(opts.resume, opts.resumed_config, background=True)
            controller = None
            source = opts.eval or opts.resume
            if source is not None:
                controller = make_controller(cfg)
                controller.load(source)
                if opts.eval is not None:
                    controller.set_relax_probability(0.0)  # as deployed: certified or fallback
                    return TrainingSession(cfg, None, controller, learn=False, evaluations=False)
            if not opts.save:
                return TrainingSession(cfg, None, controller, evaluations=False)
            return TrainingSession.start(cfg, out=opts.out, controller=controller, background=True)
        except (CheckpointError, ConfigError, ResumeError, RunFolderError) as exc:
            raise UsageError(str(exc)) from None

    def _show_evaluation(self, result: Any) -> None:
        from calf.evaluation import format_eval_line

        self._eval_line = format_eval_line(result)

    # ------------------------------------------------------------ window
    def _open_window(self) -> None:
        from panda3d.core import load_prc_file_data
        from ursina import Entity, camera, window

        from visuals.offscreen import disable_generated_shaders, make_offscreen_app
        from visuals.palette import BACKGROUND

        # Both before the GL context exists: Mesa reads LP_NUM_THREADS when the driver loads.
        if self.opts.render_threads is not None:
            os.environ["LP_NUM_THREADS"] = str(self.opts.render_threads)
        if self.opts.render_sync:
            load_prc_file_data("calf-train", "gl-finish true")
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
        """One frame: visual agents -> training step -> draw -> panel -> probe."""
        self.clock.start_frame()
        stage = self.meter.stage
        if not self.paused:
            # The agents first: while the software rasteriser finishes the last frame on the
            # other core, the small stages run; the TD3 update, the frame's largest block, then
            # runs alone (1.16 -> 1.01 x its time alone at N = 20: README, contention).
            self.agents.step(self.stages.heights, stage)
            with stage("training"):
                self.last_step = step = self.session.train_step()
            with stage("trails"):
                self.scene.draw_training_agent(step.state, step.mode, step.episode_ended)
                self.scene.push_timeline(self.controller.q_cert, step.mode)
            with stage("heatmap"):
                self.scene.refresh_surface(self.trainer.global_step)
            with stage("outputs"):  # an episode's end: its record, evaluation and checkpoint due
                self.session.after_step(step)
            with stage("evaluation"):
                self.session.advance(self.cfg.evaluation_budget / max(self.clock.fps, 1.0))
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
            evaluation=self._eval_line,
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
        return o.stop_at_episodes and self.trainer.episode >= self.run_config.train.episodes

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
            "mode": "reference" if o.reference else "optimised",
            "reference": sorted(o.reference),
            "algo": self.run_config.train.algo,
            "preset": o.preset,
            "size": list(o.size),
            "frames_total": self.frame_index,
        }

    def export_profile(self, path: Path | None = None) -> Path:
        """The profiler's JSON plus this run's settings and the probe's records (F1, and
        --profile at exit): to ``path``, --profile, the run folder, or the working folder."""
        target = Path(path or self.opts.profile or (self.out or Path(".")) / "profile.json")
        extra = {"run": self.run_info(), "probe": self.probe.report()}
        return self.profiler.to_json(target, extra=extra)

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
            "evaluation": self._eval_line,
        }

    def finish(self) -> dict[str, Any]:
        """Outputs at exit: profile, screenshot, the session's final evaluation, report and
        checkpoint; the summary."""
        from visuals.offscreen import save_screenshot

        self.probe.finish(self)
        if self.opts.profile is not None:
            self.export_profile(self.opts.profile)
        screenshot = self.opts.screenshot
        if screenshot is None and self.opts.headless and self.out is not None:
            screenshot = self.out / "screenshot.png"
        if screenshot is not None:
            save_screenshot(screenshot)
        self.session.close()
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
    if summary["evaluation"]:
        print(f"  {summary['evaluation']}")
    if trainer.out is not None:
        print(f"  run folder: {trainer.out}")
    return 0
