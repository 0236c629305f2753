"""``python -m calf``: train the CALF (or TD3) agent on the point mass, no graphics.

Every setting is a flag (``--calf.nu-bar 1``, ``--nominal.kp 1``; short forms --algo, --episodes,
--seed, --device, --max-steps) or a key of a TOML file (``--config run.toml``). The run is
written to ``runs/<date>-<time>-<algo>-s<seed>/`` (``runs/latest`` points at it), or to
``--out DIR``; ``--resume RUN_DIR`` continues one from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from calf.config import (
    ConfigError,
    OneLineParser,
    UsageError,
    add_config_arguments,
    config_from_args,
    config_to_toml,
)
from calf.evaluation import format_eval_line
from calf.run_folder import RunFolderError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m calf", description=__doc__, allow_abbrev=False)
    parser.add_argument("--out", metavar="DIR", help="write the run here instead of runs/...")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    parser.add_argument("--checkpoint", metavar="PATH", help="also write the final checkpoint here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-figures", action="store_true", help="write no report figures")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as TOML and exit"
    )
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (UsageError, ConfigError, RunFolderError) as exc:
        print(f"python -m calf: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    import torch

    from calf.session import ResumeError, TrainingSession

    args = build_parser().parse_args(argv)
    if args.resume and args.out:
        raise UsageError("--resume continues a run in its own folder; drop --out")
    if args.print_config:
        print(config_to_toml(config_from_args(args)), end="")
        return 0
    torch.set_num_threads(1)  # tiny networks: one thread is faster (docs/ARCHITECTURE.md)
    figures = not args.no_figures
    if args.resume:
        try:
            session = TrainingSession.resume(
                args.resume, lambda base: config_from_args(args, base), figures=figures
            )
        except ResumeError as exc:
            raise UsageError(str(exc)) from None
    else:
        session = TrainingSession.start(config_from_args(args), out=args.out, figures=figures)
        if session.folder is not None and session.folder.latest_linked is False:
            print(f"note: {session.folder.path.parent / 'latest'} is not a link; left as it is")
    try:
        summary = session.run(progress=not args.no_progress)
    except KeyboardInterrupt:
        where = session.folder.path if session.folder is not None else "?"
        print(
            f"python -m calf: interrupted after episode {session.trainer.episode}; "
            f"continue with --resume {where}",
            file=sys.stderr,
        )
        return 130

    rewards = np.asarray(summary["episode_rewards"])
    print(f"{summary['algo']}: {summary['episodes']} episodes, {summary['steps']} steps")
    if rewards.size:
        print(f"  reward first/last episode: {rewards[0]:.1f} / {rewards[-1]:.1f}")
    print(f"  success rate (last 20): {summary['success_rate_last_20']:.0%}")
    print(
        f"  modes: certified {summary['certified_rate']:.1%}, relax {summary['relax_rate']:.1%},"
        f" fallback {summary['fallback_rate']:.1%}; P_relax {summary['P_relax']:.4f}"
    )
    if summary["last_eval"] is not None:
        print(f"  {format_eval_line(summary['last_eval'])}")
    print(f"  run folder: {summary['folder']}")
    if args.checkpoint:
        session.controller.save(Path(args.checkpoint))
        print(f"  checkpoint: {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
