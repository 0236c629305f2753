"""``calf-perf selftest``: the harness proves its own detection power.

A catalogue of behaviour-preserving regressions, each a text patch of one file, the kind of slip
a reviewer would let through: a per-agent Python loop in each batched stage, a stage of the
optimised app quietly taking its loop reference, a vertex buffer rewritten whole every frame, a
redundant critic query, text laid out every frame, an extra forward, a leak, a slower frame.
Each is applied to a temporary copy of the tree (never to the working tree) and the check that
must catch it runs there: the work budgets (``calf-perf budgets``), Python work per stage call
(``perf/suites/test_stage_calls.py``), the leak slope, the work of a step and an episode end
early and late in a run (``perf/suites/test_growth.py``), or, where timing is the only signal,
``calf-perf ab``, the ratio gates, the frame pacing (``calf-perf pacing``) and the soak's
frame-time slope. The unchanged tree must pass every check.

``make test`` runs the quick deterministic part: the unchanged tree through every counted check
and the first regression of the catalogue for each counted check (each check shown to fail, in
about a third of the time of the whole catalogue); the scheduled workflow runs everything, the
timed checks alone at the end.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf.runner import RUN_ENV


@dataclass(frozen=True)
class Regression:
    name: str
    kind: str
    path: str  # the file patched, relative to the tree
    old: str  # text that must occur exactly once
    new: str
    checks: tuple[str, ...]  # the checks that must catch it


def _loop(kind: str) -> str:
    return f"per-agent Python loop ({kind})"


CATALOGUE: tuple[Regression, ...] = (
    Regression(
        "policy: certificate check row by row", _loop("policy"), "calf/certificate.py",
        "    certified = q - agents.q_cert >= rule.nu_bar\n",
        "    certified = np.array([q[i] - agents.q_cert[i] >= rule.nu_bar"
        " for i in range(len(q))], bool)\n",
        ("stage-calls",),
    ),
    Regression(
        "physics: goal test row by row", _loop("physics"), "calf/envs.py",
        "    reached = np.linalg.norm(nxt, axis=1) < params.goal_radius\n",
        "    reached = np.array([np.linalg.norm(r) < params.goal_radius for r in nxt], bool)\n",
        ("stage-calls",),
    ),
    Regression(
        "heights: interpolation row by row", _loop("heights"), "visuals/heatmap.py",
        "        return self._heights_unchecked("
        "self._interpolate_checked(self._states_array(states)))\n",
        "        s = self._states_array(states)\n"
        "        rows = [self._interpolate_checked(s[i : i + 1]) for i in range(len(s))]\n"
        "        return self._heights_unchecked(np.concatenate([np.zeros(0), *rows]))\n",
        ("stage-calls",),
    ),
    Regression(
        "trail push: colours agent by agent", _loop("trails"), "visuals/trails.py",
        "        vert[:, 3] = self._lut_words[m[ids]]\n",
        "        for k, agent in enumerate(ids):\n"
        "            vert[k, 3] = self._lut_words[m[agent]]\n",
        ("stage-calls",),
    ),
    Regression(
        "markers: positions marker by marker", _loop("markers"), "visuals/markers.py",
        '        v["position"] = pos\n',
        "        for i in range(self.count):\n"
        '            v["position"][i] = pos[i]\n',
        ("stage-calls",),
    ),
    Regression(
        "the optimised app takes the per-agent CALF loop", "stage on its loop reference",
        "visuals/stages.py",
        '    elif "calf" in reference:\n',
        "    elif True:\n",
        ("budgets",),
    ),
    Regression(
        "the optimised app takes the per-state heights loop", "stage on its loop reference",
        "visuals/stages.py",
        '        heights=LoopHeights(heatmap) if "interp" in reference else heatmap,\n',
        "        heights=LoopHeights(heatmap),\n",
        ("budgets",),
    ),
    Regression(
        "the optimised app takes one LineTrail per agent", "stage on its loop reference",
        "visuals/stages.py",
        '    if "trails" in reference:\n',
        "    if True:\n",
        ("budgets",),
    ),
    Regression(
        "trail push rewrites the whole vertex buffer", "whole-buffer rewrite", "visuals/trails.py",
        "        vert[:, 3] = self._lut_words[m[ids]]\n",
        "        vert[:, 3] = self._lut_words[m[ids]]\n"
        "        whole = vertex_view(self._vdata, self)\n"
        "        whole[:] = whole.copy()\n",
        ("budgets",),
    ),
    Regression(
        "the panel asks the critic for Q again", "redundant network query",
        "visuals/stats_cache.py",
        "    total = controller.total_steps\n",
        "    total = controller.total_steps\n"
        "    if state is not None and controller.last_q is not None:\n"
        "        td3 = controller.td3\n"
        "        s_t = td3.to_tensor(np.asarray(state, dtype=np.float64).reshape(1, -1))\n"
        "        td3.critic(s_t, td3.to_tensor(np.zeros((1, 1))), q1_only=True)\n",
        ("budgets",),
    ),
    Regression(
        "the panel text is assigned every frame", "per-frame rebuild", "visuals/panel.py",
        "        if self.cache.text_version != self._version:\n",
        "        if True:\n",
        ("budgets",),
    ),
    Regression(
        "the FPS counter is laid out every frame", "per-frame rebuild", "visuals/panel.py",
        "        if frame_index % self.period == 0:\n",
        "        if True:\n",
        ("budgets",),
    ),
    Regression(
        "acting asks the critic twice", "extra forward per frame", "calf/td3.py",
        "            (q1,) = self.critic(states, actions, q1_only=True)\n",
        "            self.critic(states, actions, q1_only=True)\n"
        "            (q1,) = self.critic(states, actions, q1_only=True)\n",
        ("budgets",),
    ),
    Regression(
        "the surface is recomputed every frame", "per-frame rebuild", "visuals/heatmap.py",
        "            if step - self.last_refresh_step < self.update_frequency:\n",
        "            if False:\n",
        ("budgets",),
    ),
    Regression(
        "1 KiB kept every frame", "leak", "visuals/app.py",
        "                self.last_step = step = self.session.train_step()\n",
        "                self.last_step = step = self.session.train_step()\n"
        '                self.__dict__.setdefault("_kept", []).append(bytearray(1024))\n',
        ("leak",),
    ),
    Regression(
        "physics 1 ms slower (about +10 % of an N = 20 frame)", "slowdown (timing only)",
        "visuals/agents.py",
        '        with stage("physics"):\n',
        '        with stage("physics"):\n'
        '            _end = __import__("time").perf_counter() + 1e-3\n'
        '            while __import__("time").perf_counter() < _end:\n'
        "                pass\n",
        ("ab",),
    ),
    Regression(
        "the evaluation and report run inside the frame again", "episode end blocks the frame",
        "visuals/app.py",
        "            return TrainingSession.start(cfg, out=opts.out, controller=controller, "
        "background=True)\n",
        "            return TrainingSession.start(cfg, out=opts.out, controller=controller, "
        "background=False)\n",
        ("pacing",),
    ),
    Regression(
        "each replay sample counts the terminal transitions", "grows with the replay's fill",
        "calf/replay.py",
        "        return rng.integers(0, self._size, size=batch_size)\n",
        "        terminal = int((self.not_done[: self._size] == 0).sum())  # for the panel\n"
        "        return rng.integers(0, self._size, size=batch_size) if terminal >= 0 else None\n",
        ("growth",),
    ),
    Regression(
        "each episode end finds the best return so far", "grows with the episode count",
        "calf/session.py",
        '            "sps": length / elapsed,\n',
        '            "sps": length / elapsed,\n'
        '            **({} if max(r for r in tr.episode_rewards) else {}),\n',
        ("growth",),
    ),
    Regression(
        "the training agent's whole path stacked every frame", "grows with the frame count",
        "visuals/app.py",
        "                self.last_step = step = self.session.train_step()\n",
        "                self.last_step = step = self.session.train_step()\n"
        '                self.__dict__.setdefault("_path", []).append(step.state)\n'
        "                np.vstack(self._path)\n",
        ("soak",),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Check:
    name: str
    deterministic: bool
    command: Callable[[Path], list[str]]


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


CHECKS = {
    c.name: c
    for c in (
        Check(
            "stage-calls",
            True,
            lambda _t: _py("-m", "pytest", "perf/suites/test_stage_calls.py", "-q", "-k", "same_at",
                           "-p", "no:cacheprovider"),
        ),
        # Counts of a frame do not depend on the run's age (the growth gate holds that), and
        # the loop references build a late run's full trails slowly: these run early.
        Check("budgets", True, lambda t: _py("-m", "perf", "budgets", "--early", "--frames", "250",
                                             "--json", str(t / "selftest-budgets.json"))),
        Check("leak", True, lambda t: _py("-m", "perf", "budgets", "--early", "--agents", "--leak",
                                          "--json", str(t / "selftest-leak.json"))),
        Check("growth", True, lambda _t: _py("-m", "pytest", "perf/suites/test_growth.py", "-q",
                                             "-k", "same_work", "-p", "no:cacheprovider")),
        Check("pacing", False, lambda t: _py("-m", "perf", "pacing", "--agents", "20",
                                             "--frames", "1800", "--max-steps", "400", "--early",
                                             "--check", "--json", str(t / "selftest-pacing.json"))),
        Check("soak", False, lambda t: _py("-m", "perf", "soak", "--agents", "20", "--frames",
                                           "4000", "--warmup", "300", "--check", "--json",
                                           str(t / "selftest-soak.json"))),
        Check("ab", False, lambda t: _py("-m", "perf", "ab", "--base", "HEAD~1", "--head", "HEAD",
                                         "--quick", "--no-micro", "--json",
                                         str(t / "selftest-ab.json"))),
        Check("ratio-gates", False, lambda _t: _py("-m", "pytest", "perf", "--quick", "-q", "-k",
                                                   "gate", "-p", "no:cacheprovider")),
    )
}  # fmt: skip


@dataclass
class Outcome:
    regression: str
    kind: str
    checks: dict[str, bool] = field(default_factory=dict)  # check -> flagged
    figures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def caught(self) -> bool:
        return any(self.checks.values())


def _figure(check: str, tree: Path, proc: subprocess.CompletedProcess[str]) -> str:
    """What the check saw, in a few words."""
    try:
        if check in ("budgets", "leak"):
            data = json.loads((tree / f"selftest-{check}.json").read_text())
            bad = [f for f in data["findings"] if not f["ok"]]
            shown = bad or data["findings"][-1:]
            return "; ".join(
                f"{f['budget']} N={f['agents']}: {f['measured']:.4g}" for f in shown[:3]
            )
        if check == "ab":
            data = json.loads((tree / "selftest-ab.json").read_text())
            return str(data["verdict"])
        if check == "pacing":
            (pacing,) = json.loads((tree / "selftest-pacing.json").read_text())["pacing"]
            return f"worst frame {pacing['all']['max_ms']:.0f} ms, FPS during/outside " + (
                f"{pacing['fps_ratio']:.2f}"
            )
        if check == "soak":
            found = json.loads((tree / "selftest-soak.json").read_text())["findings"]
            return f"frame-time slope {found['frame_slope_pct_per_10k']:+.1f} % per 10 000 frames"
    except (OSError, ValueError, KeyError):
        pass
    lines = [
        ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln or "FAILED" in ln
    ]
    return (lines or ["exit " + str(proc.returncode)])[-1][:160]


def run_check(check: Check, tree: Path) -> tuple[bool, str]:
    """(flagged, figure) of one check run in ``tree``."""
    env = {**os.environ, **RUN_ENV, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        check.command(tree), cwd=tree, env=env, capture_output=True, text=True, timeout=1800
    )
    return proc.returncode != 0, _figure(check.name, tree, proc)


def _git(tree: Path, *args: str) -> None:
    who = {"NAME": "selftest", "EMAIL": "selftest@localhost"}
    env = {
        **os.environ,
        **{f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()},
    }
    subprocess.run(["git", *args], cwd=tree, env=env, capture_output=True, check=True)


@contextmanager
def copies(root: Path, n: int) -> Iterator[list[Path]]:
    """``n`` temporary repositories holding the working tree as it is, each at commit "base"."""
    parent = Path(tempfile.mkdtemp(prefix="calf-selftest-"))
    try:
        first = parent / "tree0"
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.split("\0")  # fmt: skip
        for name in filter(None, listed):
            if (root / name).is_file():
                (first / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, first / name)
        _git(first, "init", "-q")
        _git(first, "add", "-A")
        _git(first, "commit", "-q", "-m", "base")
        _git(first, "tag", "base")
        trees = [first]
        for i in range(1, n):
            _git(parent, "clone", "-q", "--local", str(first), f"tree{i}")  # tag "base" too
            trees.append(parent / f"tree{i}")
        yield trees
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def apply(tree: Path, reg: Regression) -> None:
    """Patch ``tree`` with ``reg`` and commit it; ValueError when the patch no longer applies."""
    target = tree / reg.path
    text = target.read_text()
    if text.count(reg.old) != 1:
        raise ValueError(
            f"selftest patch {reg.name!r} no longer applies to {reg.path}: update the catalogue"
        )
    target.write_text(text.replace(reg.old, reg.new))
    _git(tree, "commit", "-q", "-am", reg.name)


def _run_one(trees: queue.Queue[Path], reg: Regression | None, checks: list[str]) -> Outcome:
    tree = trees.get()
    try:
        start = time.perf_counter()
        out = Outcome(reg.name if reg else "(unchanged tree)", reg.kind if reg else "-")
        if reg is None:
            _git(tree, "commit", "-q", "--allow-empty", "-m", "nothing")
        else:
            apply(tree, reg)
        for name in checks:
            out.checks[name], out.figures[name] = run_check(CHECKS[name], tree)
        out.seconds = time.perf_counter() - start
        return out
    finally:
        subprocess.run(["git", "reset", "-q", "--hard", "base"], cwd=tree)
        trees.put(tree)


def first_per_check(catalogue: tuple[Regression, ...]) -> tuple[Regression, ...]:
    """The first regression of the catalogue for each check, in catalogue order."""
    seen: set[str] = set()
    chosen = []
    for r in catalogue:
        if not seen.issuperset(r.checks):
            chosen.append(r)
            seen.update(r.checks)
    return tuple(chosen)


def run_selftest(
    root: Path,
    deterministic_only: bool,
    jobs: int = 2,
    on_outcome: Callable[[Outcome], None] = lambda _o: None,
    quick: bool = False,
) -> list[Outcome]:
    """The unchanged tree, then every regression of the catalogue (``quick``: one per check;
    module docstring). Timed checks run one at a time after the counted ones, alone on the
    machine."""
    for entry in CATALOGUE:  # fail before any work when a patch no longer applies
        if (root / entry.path).read_text().count(entry.old) != 1:
            raise ValueError(f"selftest patch {entry.name!r} no longer applies to {entry.path}")
    catalogue = first_per_check(CATALOGUE) if quick else CATALOGUE
    counted = [n for n, c in CHECKS.items() if c.deterministic]
    timed = [] if deterministic_only else [n for n, c in CHECKS.items() if not c.deterministic]
    plan: list[tuple[Regression | None, list[str]]] = [(None, counted)]
    plan += [(r, [c for c in r.checks if c in counted]) for r in catalogue]
    plan = [(r, cs) for r, cs in plan if cs]
    outcomes: list[Outcome] = []
    with copies(root, max(1, jobs)) as trees:
        free: queue.Queue[Path] = queue.Queue()
        for t in trees:
            free.put(t)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for out in pool.map(lambda item: _run_one(free, *item), plan):
                on_outcome(out)
                outcomes.append(out)
        serial: list[tuple[Regression | None, list[str]]] = [(None, timed)] if timed else []
        serial += [(r, [c for c in r.checks if c in timed]) for r in catalogue]
        for maybe, checks in serial:
            if checks:
                out = _run_one(free, maybe, checks)
                on_outcome(out)
                outcomes.append(out)
    return outcomes


def verdicts(outcomes: list[Outcome]) -> tuple[list[Outcome], list[Outcome]]:
    """(regressions missed, unchanged-tree runs that flagged something)."""
    missed = [o for o in outcomes if o.kind != "-" and not o.caught]
    false_alarms = [o for o in outcomes if o.kind == "-" and o.caught]
    return missed, false_alarms


def format_table(outcomes: list[Outcome]) -> str:
    rows = [("regression", "kind", "caught by", "figure", "s")]
    for o in outcomes:
        if o.kind == "-":
            caught = (
                "flagged: " + ", ".join(c for c, f in o.checks.items() if f)
                if o.caught
                else ("nothing flagged (" + ", ".join(o.checks) + ")")
            )
        else:
            caught = ", ".join(c for c, f in o.checks.items() if f) or "MISSED by " + ", ".join(
                o.checks
            )
        figure = " | ".join(o.figures[c] for c, f in o.checks.items() if f == (o.kind != "-"))
        rows.append((o.regression, o.kind, caught, figure or "-", f"{o.seconds:.0f}"))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[i][: widths[i]].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + f"  {r[4]:>4}")
    return "\n".join(lines)


def to_json(outcomes: list[Outcome]) -> dict[str, Any]:
    missed, false_alarms = verdicts(outcomes)
    return {
        "missed": [o.regression for o in missed],
        "false_alarms": [o.regression for o in false_alarms],
        "outcomes": [o.__dict__ | {"caught": o.caught} for o in outcomes],
    }
