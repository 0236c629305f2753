"""Trail benchmarks and gates: one LineTrail per agent (reference) vs BatchedTrailRenderer at
full resolution (batched) and with its level of detail (lod: ``TrailLOD.doubling()``, the newest
32 points at stride 1, then 16 each at strides 2, 4, 8 and the rest at 16: 102 of 600 points).

Benchmarks (pytest-benchmark groups ``trails push N=<n>`` and ``trails frame N=<n>``, the three
side by side): the per-frame trail update (one push of N points into full 600-point trails) and
the headless frame with trails only (push + ``ursina_app.step()``). ``test_lod_vs_full`` times
batched and lod interleaved in one process (``perf.suites.gates.interleaved``) and reports their
medians, ratios and the trails-only FPS. Gates (ordinary tests, ratios only): batched push >=
20x the reference at N = 20, the lod frame >= 2x faster than full resolution at N = 1000,
exactly one draw call for all trails at any N, at most one vertex-buffer update per frame. The
1000 agents x 600 points frame rates are printed against the target (>= 45 FPS for the whole app
at 640x360) but not gated: absolute times on a shared machine. ``pytest
perf/suites/bench_trails.py -s`` prints a summary table at the end of the module; with
``CALF_KEEP_SCREENSHOTS=<dir>`` the N = 1000 frames of both are saved there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf.suites.gates import Speedup, interleaved, measure_speedup

P = 600  # points per trail
FULL_SIZES = [5, 20, 30, 100, 1000]
QUICK_SIZES = [20, 1000]
REFERENCE_QUICK_MAX_N = 100  # the reference at N = 1000 takes seconds per frame: full run only
FPS_TARGET = 45.0  # the whole app at N = 1000 (issue 15); trails alone should clear it easily
IMPLS = ("reference", "batched", "lod")

_TABLE: dict[tuple[str, int, str], str] = {}
_FRAME_SPEEDUP: dict[int, Speedup] = {}  # N -> full vs lod trails-only frame (interleaved)


def agent_paths(n: int, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, n, 3) float32 positions (agents circling around spread-out centres on the floor)
    and (steps, n) mode codes in runs of 40 steps (mostly certified), phase-shifted per agent."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-4.0, 4.0, size=(n, 2))
    radius = rng.uniform(0.3, 1.2, size=n)
    omega = rng.uniform(0.01, 0.03, size=n) * rng.choice([-1.0, 1.0], size=n)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    t = np.arange(steps)[:, None]
    ang = omega * t + phase
    r = radius * (1.0 - 0.4 * np.sin(0.004 * t + phase))
    pos = np.empty((steps, n, 3), dtype=np.float32)
    pos[..., 0] = centres[:, 0] + r * np.cos(ang)
    pos[..., 1] = 0.05 + 0.3 * np.sin(ang) ** 2
    pos[..., 2] = centres[:, 1] + r * np.sin(ang)
    cycle = np.array([0, 0, 1, 0, 2])
    shift = rng.integers(0, 200, size=n)
    modes = cycle[((t + shift) // 40) % len(cycle)]
    return pos, modes.astype(np.int64)


def make_trails(impl: str, n: int) -> Any:
    """The trail set under test for one column of the table."""
    from visuals.line_trails import LineTrailGroup
    from visuals.trail_lod import TrailLOD
    from visuals.trails import BatchedTrailRenderer

    makers: dict[str, Callable[[], Any]] = {
        "reference": lambda: LineTrailGroup(P),
        "batched": lambda: BatchedTrailRenderer(n, P),
        "lod": lambda: BatchedTrailRenderer(n, P, lod=TrailLOD.doubling()),
    }
    return makers[impl]()


class Driver:
    """A trail set filled with P points per agent, fed one new frame per call."""

    def __init__(self, impl: str, n: int) -> None:
        self.impl, self.n = impl, n
        self.trails: Any = make_trails(impl, n)
        self.trails.add_agents(n)
        self.pos, self.modes = agent_paths(n, 2 * P, seed=n)
        self.trails.extend(self.pos[:P], self.modes[:P])  # fill (one rebuild per LineTrail)
        self.t = P

    def push(self) -> None:
        i = self.t % len(self.pos)
        self.trails.push(self.pos[i], self.modes[i])
        self.t += 1


@pytest.fixture(scope="module")
def drivers(ursina_app) -> Iterator[Callable[..., Driver]]:
    """``drivers(impl, n, keep=())``: a filled trail set. Every other set is destroyed first
    (unless listed in ``keep``): hidden sets would still cost their Entities' per-frame Python
    overhead, so a frame measures only the set under test. Prints the summary table at the end
    of the module."""
    from ursina import Vec3, camera

    saved = (camera.position, camera.rotation, camera.fov)
    camera.position = (0, 11, -9)
    camera.look_at(Vec3(0, 0, 0))
    camera.fov = 70
    cache: dict[tuple[str, int], Driver] = {}

    def get(impl: str, n: int, keep: tuple[tuple[str, int], ...] = ()) -> Driver:
        for key in [k for k in cache if k != (impl, n) and k not in keep]:
            cache.pop(key).trails.destroy()
        if (impl, n) not in cache:
            cache[(impl, n)] = Driver(impl, n)
        return cache[(impl, n)]

    yield get
    for d in cache.values():
        d.trails.destroy()
    camera.position, camera.rotation, camera.fov = saved
    print_table()


def record(metric: str, n: int, impl: str, value: str) -> None:
    _TABLE[(metric, n, impl)] = value


def print_table() -> None:
    if not _TABLE:
        return
    metrics = list(dict.fromkeys(m for m, _, _ in _TABLE))
    sizes = sorted({n for _, n, _ in _TABLE})
    lines = [
        "",
        "trails: reference (LineTrail per agent) vs batched (one Geom) vs lod (one Geom, "
        "TrailLOD.doubling()), 600-point trails, 640x360",
        f"{'metric':<34}{'N':>6}" + "".join(f"{impl:>16}" for impl in IMPLS),
    ]
    for m in metrics:
        for n in sizes:
            cells = [_TABLE.get((m, n, impl)) for impl in IMPLS]
            if all(c is None for c in cells):
                continue
            lines.append(f"{m:<34}{n:>6}" + "".join(f"{c or '-':>16}" for c in cells))
    print("\n".join(lines))


def skip_slow_reference(impl: str, n: int, quick: bool) -> None:
    if impl == "reference" and quick and n > REFERENCE_QUICK_MAX_N:
        pytest.skip(f"the reference at N={n} runs in the full sweep only")


# --------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------


@pytest.mark.sizes("n", full=FULL_SIZES, quick=QUICK_SIZES)
@pytest.mark.parametrize("impl", IMPLS)
def test_trail_push(benchmark, drivers, quick, impl, n):
    """One frame's trail update: N new points into full trails."""
    skip_slow_reference(impl, n, quick)
    d = drivers(impl, n)
    benchmark.group = f"trails push N={n}"
    fast = impl != "reference"
    rounds = (200 if fast else 15) if quick else (1000 if fast else (5 if n >= 1000 else 40))
    benchmark.pedantic(d.push, rounds=rounds, iterations=1, warmup_rounds=2)
    if benchmark.stats is None:  # --benchmark-disable: the code ran once, nothing was timed
        return
    record("push ms (median)", n, impl, f"{benchmark.stats.stats.median * 1e3:.4f}")


@pytest.mark.sizes("n", full=FULL_SIZES, quick=QUICK_SIZES)
@pytest.mark.parametrize("impl", IMPLS)
def test_trail_frame(benchmark, drivers, ursina_app, quick, impl, n):
    """Headless frame with trails only: push + render (640x360 offscreen)."""
    skip_slow_reference(impl, n, quick)
    d = drivers(impl, n)

    def frame() -> None:
        d.push()
        ursina_app.step()

    benchmark.group = f"trails frame N={n}"
    rounds = (
        (12 if n >= 1000 else 25) if quick else (5 if n >= 1000 and impl == "reference" else 60)
    )
    benchmark.pedantic(frame, rounds=rounds, iterations=1, warmup_rounds=2)
    if benchmark.stats is None:  # --benchmark-disable
        return
    median = benchmark.stats.stats.median
    record("frame ms (median)", n, impl, f"{median * 1e3:.2f}")
    fps = 1.0 / median
    note = ""
    if n == 1000 and impl != "reference":
        note = " ok" if fps >= FPS_TARGET else " BELOW"
        print(
            f"\n1000 agents x {P} points, {impl}, trails only, 640x360: {fps:.1f} FPS "
            f"(app target >= {FPS_TARGET:.0f}; reported, not gated: absolute time)"
        )
    record("FPS (1 / median frame)", n, impl, f"{fps:.1f}{note}")


@pytest.mark.parametrize("impl", ["batched", "lod"])
def test_frame_cost_split_at_n1000(drivers, ursina_app, quick, impl):
    """Where the N = 1000 frame goes: render alone vs push + render, interleaved (reported)."""
    d = drivers(impl, 1000)

    def frame() -> None:
        d.push()
        ursina_app.step()

    t = interleaved({"render": ursina_app.step, "frame": frame}, rounds=6 if quick else 20)
    record("render only ms (no push)", 1000, impl, f"{t['render'].median_ms:.2f}")
    record("push + render ms (interleaved)", 1000, impl, f"{t['frame'].median_ms:.2f}")


def lod_vs_full(drivers: Callable[..., Driver], ursina_app: Any, n: int, quick: bool) -> Speedup:
    """Push and trails-only frame, full resolution vs LOD, interleaved in this process; returns
    the frame speedup. Both sets stay alive; each frame shows only its own (a hidden Geom is
    neither uploaded nor drawn)."""
    full = drivers("batched", n)
    lod = drivers("lod", n, keep=(("batched", n),))

    def frame(shown: Driver, hidden: Driver) -> Callable[[], None]:
        def run() -> None:
            hidden.trails.set_visible(False)
            shown.trails.set_visible(True)
            shown.push()
            ursina_app.step()

        return run

    push = interleaved(
        {"batched": full.push, "lod": lod.push}, rounds=15 if quick else 40, inner=20
    )
    frames = interleaved(
        {"batched": frame(full, lod), "lod": frame(lod, full)},
        rounds=(8 if n >= 1000 else 15) if quick else 40,
    )
    for impl, d in (("batched", full), ("lod", lod)):
        record("push us (interleaved median)", n, impl, f"{push[impl].median_s * 1e6:.1f}")
        record("frame ms (interleaved median)", n, impl, f"{frames[impl].median_ms:.2f}")
        record("FPS (interleaved, trails only)", n, impl, f"{1 / frames[impl].median_s:.1f}")
        record("segments drawn (index rows)", n, impl, str(n * d.trails.slots_per_agent))
    keep = os.environ.get("CALF_KEEP_SCREENSHOTS")
    if keep and n >= 1000:
        from visuals.offscreen import save_screenshot

        for impl, d, other in (("batched", full, lod), ("lod", lod, full)):
            frame(d, other)()
            save_screenshot(Path(keep) / f"trails_{impl}_n{n}.png")
    full.trails.set_visible(True)
    lod.trails.set_visible(True)
    speedup = Speedup(reference=frames["batched"], optimised=frames["lod"])
    ratio = speedup.ratio
    record("frame speedup lod/full (interl.)", n, "lod", f"{ratio:.2f}x")
    push_ratio = push["lod"].median_s / push["batched"].median_s
    record("push cost lod/full (interleaved)", n, "lod", f"{push_ratio:.2f}x")
    print(
        f"\nN={n} trails only, 640x360, interleaved medians: push full "
        f"{push['batched'].median_s * 1e6:.0f} us, lod {push['lod'].median_s * 1e6:.0f} us; "
        f"frame full {frames['batched'].median_ms:.1f} ms ({1 / frames['batched'].median_s:.1f} "
        f"FPS), lod {frames['lod'].median_ms:.1f} ms ({1 / frames['lod'].median_s:.1f} FPS): "
        f"{ratio:.2f}x"
    )
    _FRAME_SPEEDUP[n] = speedup
    return speedup


@pytest.mark.sizes("n", full=FULL_SIZES, quick=QUICK_SIZES)
def test_lod_vs_full(drivers, ursina_app, quick, n):
    """Full resolution vs LOD, push and trails-only frame, interleaved (reported)."""
    lod_vs_full(drivers, ursina_app, n, quick)


# --------------------------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------------------------


def test_gate_batched_push_is_20x_faster_than_reference_at_n20(drivers, quick):
    ref = drivers("reference", 20)
    bat = drivers("batched", 20, keep=(("reference", 20),))
    s = measure_speedup(ref.push, bat.push, rounds=15 if quick else 30, inner_optimised=20)
    print(f"\ntrail push N=20: {s}")
    record("push speedup (interleaved)", 20, "batched", f"{s.ratio:.0f}x")
    s.check_at_least(20.0, "batched trail push N=20")


def test_gate_lod_frame_is_2x_faster_than_full_resolution_at_n1000(drivers, ursina_app, quick):
    """102 instead of 600 segments per agent: the trails-only frame at N = 1000 (interleaved
    medians; a ratio, so machine load cancels out)."""
    # Measured once per session: test_lod_vs_full[n=1000] has usually just done it.
    speedup = _FRAME_SPEEDUP.get(1000) or lod_vs_full(drivers, ursina_app, 1000, quick)
    speedup.check_at_least(2.0, "LOD trails-only frame N=1000 against full resolution")


@pytest.mark.sizes("n", full=FULL_SIZES, quick=QUICK_SIZES)
@pytest.mark.parametrize("impl", ["batched", "lod"])
def test_gate_trails_are_one_draw_call_at_any_n(drivers, ursina_app, quick, n, impl):
    from visuals.scene_stats import count_draw_calls

    bat = drivers(impl, n)
    bat.push()
    ursina_app.step()
    calls = count_draw_calls(bat.trails.entity)
    record("draw calls (trails)", n, impl, str(calls))
    if impl == "batched" and n <= (30 if quick else 100):
        ref = drivers("reference", n, keep=(("batched", n),))
        ref_calls = count_draw_calls(ref.trails.entity)
        record("draw calls (trails)", n, "reference", str(ref_calls))
        assert ref_calls > n, "the reference should draw one segment entity per mode run"
    assert calls == 1


@pytest.mark.sizes("n", full=FULL_SIZES, quick=QUICK_SIZES)
@pytest.mark.parametrize("impl", ["batched", "lod"])
def test_gate_at_most_one_vertex_buffer_update_per_frame(drivers, ursina_app, quick, n, impl):
    """Every push adds at most one vertex-array write (positions and colours are one array) and
    one index-array write, at any N, with or without decimation."""
    from visuals.trails import BatchedTrailRenderer

    d = drivers(impl, n)
    frames = 20
    v0, i0 = d.trails.mesh_updates, d.trails.index_updates
    for _ in range(frames):
        before = d.trails.mesh_updates
        d.push()
        assert d.trails.mesh_updates - before <= 1
    v_per, i_per = (d.trails.mesh_updates - v0) / frames, (d.trails.index_updates - i0) / frames
    record("vertex-buffer updates / frame", n, impl, f"{v_per:g}")
    record("index-buffer updates / frame", n, impl, f"{i_per:g}")
    assert v_per <= 1 and i_per <= 1
    if impl == "batched" and n <= (30 if quick else 100):
        ref = drivers("reference", n, keep=(("batched", n),))
        r0 = ref.trails.mesh_updates
        for _ in range(3):
            ref.push()
        record(
            "vertex-buffer updates / frame",
            n,
            "reference",
            f"{(ref.trails.mesh_updates - r0) / 3:g}",
        )
    dec = BatchedTrailRenderer(n, P, decimation=3, lod=d.trails.lod)
    try:
        dec.add_agents(n)
        pos, modes = agent_paths(n, 9, seed=1)
        before = dec.mesh_updates
        for t in range(9):
            dec.push(pos[t], modes[t])
        assert dec.mesh_updates - before == 3  # every agent keeps every 3rd point: 3 frames write
    finally:
        dec.destroy()
