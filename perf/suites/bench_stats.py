"""The statistics panel per frame: the upstream path (critic query + full rebuild) vs StatsCache.

Scenarios, each run on both paths with the same trainer and controller:

- ``nothing``: no figure changed since the last frame (training paused, or between changes);
- ``one_field``: one field without a period changed (the episode counter), so the cache rebuilds;
- ``training``: the figures a training step moves (step, reward, Q, P_relax, rates, losses)
  changed, bumped by hand so the TD3 update itself is not timed; periods throttle the rebuilds.

Gates (ratios measured in one run, exact counts): a cached ``nothing`` frame not shown under 10x
faster than the reference, and 0 forward passes per frame from the cached panel (the reference
makes 1). The issue's "cached frame <= 0.1 ms" is reported in the printed table, not asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from calf.config import RunConfig, apply_overrides
from calf.trainer import AgentTrainer
from perf.suites.gates import measure_speedup
from visuals.stats_cache import (
    ReferenceStatsPanel,
    StatsCache,
    build_panel_text,
    panel_values_from,
)

SCENARIOS = ("nothing", "one_field", "training")
N_AGENTS = 20
HEATMAP = SimpleNamespace(q2_range=(-41.25, 0.5))


@dataclass
class Panel:
    """One trainer and both panels, with per-frame callables for each scenario."""

    trainer: AgentTrainer
    cache: StatsCache
    reference: ReferenceStatsPanel
    state: Any
    action: Any

    def sync(self) -> None:
        """Show the current values now, so a timed run starts from a clean cache."""
        self.cache.update(**self.values())
        self.cache.render(force=True)

    def values(self) -> dict[str, Any]:
        return panel_values_from(
            self.trainer.controller,
            self.trainer,
            HEATMAP,
            "policy 0.12 ms | heights 0.03 ms",
            60.0,
            N_AGENTS,
            self.state,
        )

    def mutate(self, scenario: str) -> Callable[[], None]:
        tr, ctrl = self.trainer, self.trainer.controller
        if scenario == "nothing":
            return lambda: None
        if scenario == "one_field":

            def bump_episode() -> None:
                tr.episode += 1

            return bump_episode

        def training_step() -> None:
            # What one AgentTrainer.step() moves, without its forwards and TD3 update.
            tr.global_step += 1
            tr.episode_reward -= 0.37
            ctrl.total_steps += 1
            ctrl.certified_steps += 1
            ctrl.P_relax *= ctrl.lambda_relax
            ctrl.last_q = (ctrl.last_q or 0.0) - 1e-3
            tr.last_losses = {"critic_loss": (tr.last_losses["critic_loss"] or 1.0) * 0.999}

        return training_step

    def cached_frame(self, scenario: str) -> Callable[[], str]:
        mutate, cache, values = self.mutate(scenario), self.cache, self.values

        def frame() -> str:
            mutate()
            cache.update(**values())
            return cache.render()

        return frame

    def reference_frame(self, scenario: str) -> Callable[[], str]:
        mutate, ref, values = self.mutate(scenario), self.reference, self.values
        state, action = self.state, self.action

        def frame() -> str:
            mutate()
            return ref.render(values(), state, action)

        return frame


def make_panel() -> Panel:
    tr = AgentTrainer(apply_overrides(RunConfig(), {"td3.learning_starts": 8, "td3.batch_size": 8}))
    result = None
    for _ in range(16):  # past warm-up: Q, certificate and losses are real
        result = tr.step()
    assert result is not None and tr.last_losses["critic_loss"] is not None
    ctrl = tr.controller
    cache = StatsCache()
    panel = Panel(tr, cache, ReferenceStatsPanel(ctrl.td3), result.state, result.action)
    panel.sync()
    return panel


@pytest.fixture(scope="module")
def panel() -> Panel:
    return make_panel()


def _run(benchmark: Any, fn: Callable[[], object], quick: bool) -> None:
    if quick:
        benchmark.pedantic(fn, rounds=30, iterations=20, warmup_rounds=2)
    else:
        benchmark(fn)


# ------------------------------------------------------------------------ benchmarks
@pytest.mark.parametrize("path", ["reference", "cached"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_panel_frame(benchmark: Any, quick: bool, panel: Panel, scenario: str, path: str) -> None:
    """One frame of the panel, each scenario's reference and cached paths side by side."""
    panel.sync()
    fn = panel.cached_frame(scenario) if path == "cached" else panel.reference_frame(scenario)
    benchmark.group = f"stats panel frame: {scenario}"
    _run(benchmark, fn, quick)


@pytest.mark.parametrize("how", ["build_panel_text", "join_cached_lines"])
def test_panel_rebuild(benchmark: Any, quick: bool, panel: Panel, how: str) -> None:
    """Rebuilding after one field changed: a fresh build vs replacing one line and joining."""
    values = panel.values()
    cache = StatsCache(periods={})
    cache.update(**values)
    cache.render()
    counter = iter(range(1 << 62))
    if how == "build_panel_text":

        def rebuild() -> str:
            values["episode"] = next(counter)
            return build_panel_text(values)
    else:

        def rebuild() -> str:
            cache.set("episode", next(counter))
            return cache.render()

    benchmark.group = "stats panel rebuild, one field changed"
    _run(benchmark, rebuild, quick)


# ----------------------------------------------------------------------------- gates
def forwards_per_frame(panel: Panel, scenario: str, frames: int = 50) -> tuple[float, float]:
    """Network forward calls per frame of (reference, cached), counted over ``frames`` frames."""
    counter = panel.trainer.controller.td3.forward_counter
    counts = []
    for frame in (panel.reference_frame(scenario), panel.cached_frame(scenario)):
        counter.reset()
        for _ in range(frames):
            frame()
        counts.append(counter.count() / frames)
    return counts[0], counts[1]


def test_cached_panel_makes_no_forward_passes_per_frame(panel: Panel) -> None:
    for scenario in SCENARIOS:
        reference, cached = forwards_per_frame(panel, scenario)
        assert cached == 0, f"{scenario}: the cached panel ran a network"
        assert reference == 1, f"{scenario}: the reference makes one critic query per frame"


def test_cached_panel_speedup_table_and_gate(quick: bool, panel: Panel) -> None:
    """Reference vs cached per frame for every scenario, interleaved; the table goes to stdout
    (pytest -s). Gate: the rounds do not show the cached ``nothing`` frame under 10x faster."""
    rounds = 15 if quick else 31
    rows = []
    for scenario in SCENARIOS:
        forwards = forwards_per_frame(panel, scenario)
        panel.sync()
        cache = panel.cache
        hits, misses = cache.hits, cache.misses
        sp = measure_speedup(
            panel.reference_frame(scenario),
            panel.cached_frame(scenario),
            rounds=rounds,
            inner_reference=20,
            inner_optimised=200,
        )
        frames = cache.hits + cache.misses - hits - misses
        rows.append((scenario, sp, (cache.misses - misses) / frames, forwards))
    lines = [
        "",
        "stats panel per frame (median of interleaved rounds)",
        f"{'scenario':<10} {'reference ms':>12} {'cached ms':>10} {'ratio':>7} "
        f"{'rebuilt frames':>14} {'forwards ref/cached':>20}",
    ]
    for scenario, sp, rebuilt, (f_ref, f_cached) in rows:
        lines.append(
            f"{scenario:<10} {sp.reference.median_ms:>12.4f} {sp.optimised.median_ms:>10.4f} "
            f"{sp.ratio:>6.1f}x {rebuilt:>14.0%} {f'{f_ref:g} / {f_cached:g}':>20}"
        )
    assert all(r[3][1] == 0 for r in rows), "the cached panel ran a network"
    nothing = rows[0][1]
    verdict = "meets" if nothing.optimised.median_ms <= 0.1 else "MISSES"
    lines.append(
        f"issue target 'cached frame <= 0.1 ms' (reported, not asserted): "
        f"{nothing.optimised.median_ms:.4f} ms, {verdict} it"
    )
    print("\n".join(lines))
    nothing.check_at_least(10.0, "cached nothing-changed frame")
