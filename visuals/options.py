"""calf-train's command line: the run's config (the same ``RunConfig`` as ``python -m calf``:
every ``--section.key`` flag and ``--config run.toml``), the visual trainer's own options, their
checks, and the headless decision."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calf.config import (
    ConfigError,
    OneLineParser,
    RunConfig,
    UsageError,
    add_config_arguments,
    apply_overrides,
    config_from_args,
    flag_values,
    load_config,
)
from visuals.probe import ProbeConfig

# The loop-reference paths --reference accepts (visuals.stages builds them).
REFERENCE_PATHS = ("calf", "interp", "stats", "trails")
KEYS_HELP = (
    "P pause | + / - add or remove an agent | H surface | G overlay | "
    "F1 export profile | F2 profiler on/off | F3 reset profiler | "
    "arrows orbit/tilt | Q / E zoom"
)
HEADLESS_FRAMES = 1500  # a headless run with no limit given stops here


@dataclass
class AppOptions:
    config: RunConfig = field(default_factory=RunConfig)  # the run: env, TD3, CALF, ...
    config_file: Path | None = None  # --config, and the flags given: what a resumed run's
    config_flags: dict[str, Any] = field(default_factory=dict)  # saved config is updated with
    stop_at_episodes: bool = False  # stop after config.train.episodes (given on the command line)
    agents: int | None = None  # None: the preset's number
    preset: str = "medium"
    resume: Path | None = None  # a run folder, or a checkpoint file to start a new run from
    eval: Path | None = None
    headless: bool = False
    frames: int | None = None  # stop after this many frames
    size: tuple[int, int] = (1280, 720)
    screenshot: Path | None = None
    profile: Path | None = None
    reference: frozenset[str] = field(default_factory=frozenset)
    out: Path | None = None  # None: a new run folder under runs/
    torch_threads: int = 1
    render_threads: int | None = None  # llvmpipe rasteriser threads (LP_NUM_THREADS); None: Mesa's
    render_sync: bool = False  # glFinish after each draw: the render ends within its frame
    progress: bool = True
    save: bool = True  # the run folder (config, metrics, evaluations, checkpoints, screenshot)
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # perf runs only

    def resumed_config(self, saved: RunConfig) -> RunConfig:
        """A resumed run's saved config with --config and the flags given applied on top."""
        cfg = saved if self.config_file is None else load_config(self.config_file, saved)
        return apply_overrides(cfg, self.config_flags)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size {w}x{h} is too small")
    return w, h


def _references(text: str) -> frozenset[str]:
    names = {t.strip() for t in text.split(",") if t.strip()}
    if names in ({"all"}, {"reference"}):
        return frozenset(REFERENCE_PATHS)
    if names in ({"none"}, set()):
        return frozenset()
    unknown = names - set(REFERENCE_PATHS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown reference path(s) {sorted(unknown)}; choose from "
            f"{','.join(REFERENCE_PATHS)} or all"
        )
    return frozenset(names)


def _probe(text: str) -> ProbeConfig:
    try:
        return ProbeConfig.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="calf-train",
        description="Watch CALF learn in 3D. Keys: " + KEYS_HELP,
        allow_abbrev=False,
    )
    p.add_argument("--agents", type=lambda t: _count(t, 0), help="visual agents (preset's)")
    p.add_argument("--preset", choices=("low", "medium", "high"), default="medium")
    p.add_argument(
        "--resume", type=Path, metavar="PATH", help="continue a run folder (or a checkpoint)"
    )
    p.add_argument("--eval", type=Path, metavar="PATH", help="run a checkpoint, no learning")
    p.add_argument("--headless", action="store_true", help="render offscreen (auto: no display)")
    p.add_argument("--frames", type=lambda t: _count(t, 1), help="stop after N frames")
    p.add_argument("--size", type=_size, default=None, metavar="WxH")
    p.add_argument("--screenshot", type=Path, metavar="PATH", help="PNG of the last frame")
    p.add_argument("--profile", type=Path, metavar="PATH", help="profiler JSON at exit")
    p.add_argument(
        "--reference",
        type=_references,
        default=frozenset(),
        metavar="LIST",
        help="run optimisations on their loop reference: calf,interp,stats,trails or all",
    )
    p.add_argument("--out", type=Path, help="the run folder (default: a new one under runs/)")
    p.add_argument("--torch-threads", type=lambda t: _count(t, 1), default=1)
    p.add_argument(
        "--render-threads",
        type=lambda t: _count(t, 1),
        metavar="N",
        help="software rasteriser threads (Mesa llvmpipe's LP_NUM_THREADS)",
    )
    p.add_argument(
        "--render-sync",
        action="store_true",
        help="finish each frame's drawing before the next update starts (gl-finish)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-save", action="store_true", help="no run folder, nothing written")
    p.add_argument(
        "--probe",
        type=_probe,
        default=ProbeConfig(),
        metavar="K=V,...",
        help="perf instrumentation (calf-perf sets it): warmup, prefill, churn, series, work, "
        "calls, tracemalloc, inject=STAGE:MS, serve",
    )
    add_config_arguments(p)
    return p


def has_display() -> bool:
    return sys.platform in ("win32", "darwin") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def parse_options(argv: list[str] | None = None) -> AppOptions:
    """Command line -> AppOptions; UsageError with one line on bad input."""
    a = build_parser().parse_args(argv)
    try:
        config = config_from_args(a)
        flags = flag_values(a)
        episodes_given = "train.episodes" in flags or a.config is not None
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if a.resume and a.eval:
        raise UsageError("--resume and --eval exclude each other")
    for flag, path in (("--resume", a.resume), ("--eval", a.eval)):
        if path is not None and not path.exists():
            raise UsageError(f"{flag}: no such checkpoint or run folder: {path}")
    if a.resume is not None and a.resume.is_dir() and a.out:
        raise UsageError("--resume of a run folder continues it there; drop --out")
    headless = a.headless or not has_display()
    frames = a.frames
    if headless and frames is None and not episodes_given:
        frames = HEADLESS_FRAMES  # a headless run always ends by itself
    return AppOptions(
        config=config,
        config_file=None if a.config is None else Path(a.config),
        config_flags=flags,
        stop_at_episodes=episodes_given,
        agents=a.agents,
        preset=a.preset,
        resume=a.resume,
        eval=a.eval,
        headless=headless,
        frames=frames,
        size=a.size or ((640, 360) if headless else (1280, 720)),
        screenshot=a.screenshot,
        profile=a.profile,
        reference=a.reference,
        out=a.out,
        torch_threads=a.torch_threads,
        render_threads=a.render_threads,
        render_sync=a.render_sync,
        progress=not a.no_progress,
        save=not a.no_save,
        probe=a.probe,
    )
