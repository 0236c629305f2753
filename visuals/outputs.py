"""Files the visual trainer leaves behind: the reward plot (matplotlib, no window)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def save_reward_plot(
    rewards: Sequence[float], path: str | os.PathLike[str], title: str = "CALF training"
) -> Path:
    """Episode rewards and their 10-episode moving average, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    r = np.asarray(rewards, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    try:
        if r.size:
            episodes = np.arange(1, r.size + 1)
            ax.plot(episodes, r, color="#9ab", lw=1, label="episode reward")
            k = min(10, r.size)
            avg = np.convolve(r, np.ones(k) / k, mode="valid")
            ax.plot(episodes[k - 1 :], avg, color="#c33", lw=2, label=f"{k}-episode mean")
            ax.legend(loc="lower right")
        else:
            ax.text(0.5, 0.5, "no finished episode yet", ha="center", va="center")
        ax.set_xlabel("episode")
        ax.set_ylabel("reward")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=target.parent)
        os.close(fd)
        try:
            fig.savefig(tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        plt.close(fig)
    return target
