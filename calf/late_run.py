"""The state of a long run, built in seconds: what a run looks like after an hour of watching.

A perf run that starts empty and lasts a minute cannot see a cost that grows with the run's
length (the replay's fill, the episodes so far, the metrics history, the run folder). ``age``
takes a fresh session to a late state: the replay filled to its capacity with transitions of
the real dynamics from random states and actions, ``episodes`` episodes counted with their
metrics records (and an evaluation record every ``train.eval_every`` of them) in the history,
the metrics file and the writer, and a kept checkpoint every ``train.checkpoint_every``
episodes in the run folder. The networks are left as they are: ageing is about sizes, not about
what was learned.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from calf.envs import step_batch
from calf.session import TrainingSession

LATE_EPISODES = 1000  # about an hour of the visual trainer at ~150 frames a second
LATE_EPISODE_STEPS = 500  # a typical episode's length


def synthetic_records(
    episodes: int, eval_every: int, episode_steps: int = LATE_EPISODE_STEPS, seed: int = 0
) -> list[dict[str, Any]]:
    """Metrics records of ``episodes`` plausible episodes, with an evaluation record after
    every ``eval_every``-th, in the order a run writes them."""
    rng = np.random.default_rng(seed)
    policy = {"success_rate": 1.0, "mean_steps_to_goal": 420.0, "mean_final_distance": 0.15,
              "mean_return": -310.0, "certified_share": None, "fallback_share": None}  # fmt: skip
    records: list[dict[str, Any]] = []
    for i in range(1, episodes + 1):
        shares = rng.dirichlet((3.0, 2.0, 2.0))
        records.append(
            {
                "type": "episode",
                "episode": i,
                "global_step": i * episode_steps,
                "return": float(-300.0 + 40.0 * rng.standard_normal()),
                "length": episode_steps,
                "success": bool(rng.random() < 0.9),
                "final_distance": float(rng.uniform(0.05, 0.5)),
                "certified_share": float(shares[0]),
                "relax_share": float(shares[1]),
                "fallback_share": float(shares[2]),
                "unchecked_share": 0.0,
                "P_relax": float(0.5 * 0.999**i),
                "critic_loss": float(rng.uniform(0.5, 2.0)),
                "actor_loss": float(rng.uniform(-40.0, -20.0)),
                "sps": 150.0,
                "time": i * episode_steps / 150.0,
            }
        )
        if i % eval_every == 0:
            calf = {**policy, "certified_share": 0.6, "fallback_share": 0.4}
            record = {"episode": i, "calf": calf, "actor": policy, "nominal": policy}
            records.append({"type": "eval", "global_step": i * episode_steps, **record})
    return records


def fill_replay(session: TrainingSession, share: float = 1.0, seed: int = 0) -> None:
    """Fill ``share`` of the replay's capacity: random states over the reset box's
    surroundings and random actions, stepped by the real dynamics."""
    cfg, replay = session.cfg, session.trainer.replay
    rng = np.random.default_rng(seed)
    n = int(share * replay.capacity)
    span = 1.5 * cfg.env.init_range
    states = rng.uniform(-span, span, size=(n, 2))
    actions = rng.uniform(-cfg.env.max_action, cfg.env.max_action, size=(n, 1))
    nxt, rewards, hit, _ = step_batch(states, actions, cfg.env.params())
    replay.add_batch(states, actions, rewards, nxt, hit)


def age(session: TrainingSession, episodes: int = LATE_EPISODES, seed: int = 0) -> None:
    """Take ``session`` (just started) to the state of a run ``episodes`` episodes long
    (module docstring)."""
    cfg = session.cfg
    fill_replay(session, seed=seed)
    records = synthetic_records(episodes, cfg.train.eval_every, seed=seed)
    folder = session.folder
    if folder is not None:
        for record in records:
            folder.append_metrics(record)
        buffer = io.BytesIO()
        session.controller.save(buffer)
        data = buffer.getvalue()
        for episode in range(cfg.train.checkpoint_every, episodes + 1, cfg.train.checkpoint_every):
            progress = {"global_step": episode * LATE_EPISODE_STEPS}
            folder.save_checkpoint(lambda p, d=data: p.write_bytes(d), episode, progress)
    steps = episodes * LATE_EPISODE_STEPS
    session.restore(episodes, {"global_step": steps, "time": steps / 150.0}, records)
