"""The report figure: drawn from plain numbers (full and empty runs), written atomically, and the
replay-coverage share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calf.modes import Mode
from calf.report import CriticGrid, ReportData, coverage, draw_report, save_report


def synthetic(episodes: int = 12) -> ReportData:
    rng = np.random.default_rng(0)
    records = [
        {
            "episode": e,
            "return": -500.0 + 20 * e,
            "length": 800 - 30 * e,
            "success": e > 4,
            "final_distance": 3.0 / e,
            "certified_share": 0.5,
            "relax_share": 0.3,
            "fallback_share": 0.1,
            "unchecked_share": 0.1,
            "P_relax": 0.99**e,
        }
        for e in range(1, episodes + 1)
    ]
    policy = {
        "success_rate": 1.0,
        "mean_steps_to_goal": 400.0,
        "mean_final_distance": 0.19,
        "mean_return": -300.0,
        "certified_share": 0.7,
        "fallback_share": 0.3,
    }
    no_steps = {**policy, "mean_steps_to_goal": None, "success_rate": 0.0}
    evals = [{"episode": e, "calf": policy, "actor": no_steps, "nominal": policy} for e in (5, 10)]
    xs = np.linspace(-6, 6, 21)
    q = -(xs[None, :] ** 2 + xs[:, None] ** 2)
    states = np.full((3, 11, 2), np.nan)
    states[:, :6] = np.linspace([3.0, 3.0], [0.1, 0.1], 6)
    modes = np.full((3, 10), -1, dtype=np.int8)
    modes[:, :5] = [Mode.CERTIFIED, Mode.CERTIFIED, Mode.FALLBACK, Mode.CERTIFIED, Mode.FALLBACK]
    return ReportData(
        title="synthetic",
        episodes=records,
        evals=evals,
        critic=CriticGrid(xs, xs, q),
        trajectories=states,
        trajectory_modes=modes,
        q_cert_traces=[(11, np.linspace(-9, -1, 50)), (12, np.r_[np.nan, np.linspace(-8, -2, 40)])],
        replay_states=rng.uniform(-4, 4, (500, 2)),
    )


def test_report_is_written_to_every_path(tmp_path: Path) -> None:
    paths = save_report(synthetic(), tmp_path / "figures" / "report-000012.png", tmp_path / "r.png")
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_empty_run_still_draws() -> None:
    fig = draw_report(ReportData(title="empty", episodes=[], evals=[]))
    assert len(fig.axes) >= 10


def test_the_figure_has_every_panel() -> None:
    titles = {ax.get_title() for ax in draw_report(synthetic()).axes}
    for expected in (
        "episodic return",
        "episode length (steps)",
        "success (%)",
        "final distance |s|",
        "training modes (share of episode steps)",
        "evaluation: success rate (%)",
        "evaluation: mean steps to goal (dashed: CALF certified %)",
        "certificate value Q-dagger, last training episodes",
    ):
        assert expected in titles
    assert any(t.startswith("critic Q(s, actor(s))") for t in titles)
    assert any(t.startswith("replay coverage: 500 transitions") for t in titles)


def test_coverage_is_the_share_of_visited_cells() -> None:
    assert coverage(np.zeros((0, 2)), 4.0) == 0.0
    assert coverage(np.array([[0.1, 0.1]]), 4.0, bins=4) == pytest.approx(1 / 16)
    corners = np.array([[-3.9, -3.9], [3.9, 3.9], [-3.9, 3.9], [3.9, -3.9], [3.8, 3.8]])
    assert coverage(corners, 4.0, bins=2) == 1.0
    assert coverage(np.array([[9.0, 9.0]]), 4.0) == 0.0  # outside the reset box


def test_a_flat_critic_and_a_replay_sample_still_draw() -> None:
    data = synthetic()
    assert data.critic is not None
    data.critic.q[:] = -1.0  # e.g. zero weights
    data.replay_size = 100_000  # the states drawn are a sample of a larger replay
    titles = {ax.get_title() for ax in draw_report(data).axes}
    assert any(t.startswith("replay coverage: 100000 transitions (500 sampled)") for t in titles)
