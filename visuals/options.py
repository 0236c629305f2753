"""calf-train's command line: the options, their checks, and the headless decision."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visuals.probe import ProbeConfig

# The loop-reference paths --reference accepts (visuals.stages builds them).
REFERENCE_PATHS = ("calf", "interp", "stats", "trails")
KEYS_HELP = (
    "P pause | + / - add or remove an agent | H surface | G overlay | "
    "F1 export profile | F2 profiler on/off | F3 reset profiler | "
    "arrows orbit/tilt | Q / E zoom"
)


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


@dataclass
class AppOptions:
    algo: str = "calf"
    agents: int | None = None  # None: the preset's number
    preset: str = "medium"
    episodes: int | None = None  # stop after this many training episodes
    max_steps: int = 500  # training-agent episode length
    seed: int = 0
    device: str = "cpu"
    resume: Path | None = None
    eval: Path | None = None
    headless: bool = False
    frames: int | None = None  # stop after this many frames
    size: tuple[int, int] = (1280, 720)
    screenshot: Path | None = None
    profile: Path | None = None
    reference: frozenset[str] = field(default_factory=frozenset)
    out: Path = Path("runs/latest")
    learning_starts: int = 300  # random steps before CALF acts and TD3 learns
    checkpoint_every: int = 10  # episodes
    plot_every: int = 5  # episodes
    torch_threads: int = 1
    progress: bool = True
    save: bool = True  # reward plot, checkpoint and screenshot at exit
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # perf runs only


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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="calf-train", description="Watch CALF learn in 3D. Keys: " + KEYS_HELP)
    p.add_argument("--algo", choices=("calf", "td3"), default="calf")
    p.add_argument("--agents", type=_non_negative, help="visual agents (default: the preset's)")
    p.add_argument("--preset", choices=("low", "medium", "high"), default="medium")
    p.add_argument("--episodes", type=_positive, help="stop after this many training episodes")
    p.add_argument("--max-steps", type=_positive, default=500, help="training episode length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--resume", type=Path, metavar="PATH", help="continue from a checkpoint")
    p.add_argument("--eval", type=Path, metavar="PATH", help="run a checkpoint, no learning")
    p.add_argument("--headless", action="store_true", help="render offscreen (auto: no display)")
    p.add_argument("--frames", type=_positive, help="stop after N frames")
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
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="outputs folder")
    p.add_argument(
        "--learning-starts", type=_non_negative, default=300, help="random steps before learning"
    )
    p.add_argument("--checkpoint-every", type=_positive, default=10, metavar="EPISODES")
    p.add_argument("--torch-threads", type=_positive, default=1)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-save", action="store_true", help="write no plot/checkpoint/screenshot")
    p.add_argument(
        "--probe",
        type=_probe,
        default=ProbeConfig(),
        metavar="K=V,...",
        help="perf instrumentation (calf-perf sets it): warmup, prefill, churn, series, work, "
        "inject=STAGE:MS",
    )
    return p


def has_display() -> bool:
    return sys.platform in ("win32", "darwin") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def parse_options(argv: list[str] | None = None) -> AppOptions:
    """Command line -> AppOptions; UsageError with one line on bad input."""
    a = build_parser().parse_args(argv)
    if a.resume and a.eval:
        raise UsageError("--resume and --eval exclude each other")
    for flag, path in (("--resume", a.resume), ("--eval", a.eval)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag}: no such checkpoint file: {path}")
    headless = a.headless or not has_display()
    frames = a.frames
    if headless and frames is None and a.episodes is None:
        frames = 1500  # a headless run always ends by itself
    size = a.size or ((640, 360) if headless else (1280, 720))
    out = a.out
    return AppOptions(
        algo=a.algo,
        agents=a.agents,
        preset=a.preset,
        episodes=a.episodes,
        max_steps=a.max_steps,
        seed=a.seed,
        device=a.device,
        resume=a.resume,
        eval=a.eval,
        headless=headless,
        frames=frames,
        size=size,
        screenshot=a.screenshot or (out / "screenshot.png" if headless and not a.no_save else None),
        profile=a.profile,
        reference=a.reference,
        out=out,
        learning_starts=a.learning_starts,
        checkpoint_every=a.checkpoint_every,
        torch_threads=a.torch_threads,
        progress=not a.no_progress,
        save=not a.no_save,
        probe=a.probe,
    )
