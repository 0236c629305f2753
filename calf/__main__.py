"""``python -m calf``: train the CALF (or TD3) agent on the point mass, no graphics."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from calf.envs import PointMassParams
from calf.trainer import ALGOS, TrainerConfig, run_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calf", description=__doc__)
    parser.add_argument("--algo", choices=ALGOS, default="calf")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=300, help="steps per episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint at the end")
    args = parser.parse_args(argv)
    if args.episodes <= 0 or args.max_steps <= 0:
        parser.error("--episodes and --max-steps must be positive")

    torch.set_num_threads(1)
    cfg = TrainerConfig(
        algo=args.algo,
        seed=args.seed,
        env=PointMassParams(max_steps=args.max_steps),
        learning_starts=500,
    )
    summary = run_training(cfg, args.episodes)
    rewards = np.asarray(summary["episode_rewards"])
    print(f"{summary['algo']}: {summary['episodes']} episodes, {summary['steps']} steps")
    print(f"  reward first/last episode: {rewards[0]:.1f} / {rewards[-1]:.1f}")
    print(f"  success rate (last 20): {summary['success_rate_last_20']:.0%}")
    print(
        f"  modes: certified {summary['certified_rate']:.1%}, relax {summary['relax_rate']:.1%},"
        f" fallback {summary['fallback_rate']:.1%}; P_relax {summary['P_relax']:.4f}"
    )
    if args.save:
        summary["trainer"].controller.save(args.save)
        print(f"  checkpoint: {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
