"""Checkpoints: round trip, every bad-file case (a CheckpointError naming the file and the problem,
controller untouched), atomic saves and ``weights_only`` loading."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from calf import TD3, CALFController, PDPolicy, ReplayBuffer
from calf import checkpoint as ckpt
from calf.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from calf.config import RunConfig
from calf.trainer import make_controller

CALF_FIELDS = (
    "nu_bar",
    "kappa_low_coef",
    "kappa_up_coef",
    "lambda_relax",
    "relax_prob_init",
    "P_relax",
    "s_cert",
    "a_cert",
    "q_cert",
    "total_steps",
    "certified_steps",
    "relax_events",
    "nominal_interventions",
)


def trained_controller(seed: int = 0, **kw) -> CALFController:
    """A controller with non-default weights, optimiser moments and CALF state."""
    ctrl = make_controller(RunConfig(), seed=seed, **kw)
    replay = ReplayBuffer(2, 1, 200)
    rng = np.random.default_rng(seed)
    for _ in range(64):
        replay.add(rng.normal(size=2), rng.uniform(-5, 5, 1), -1.0, rng.normal(size=2), False)
    for _ in range(4):
        ctrl.train(replay, batch_size=32)
    for _ in range(10):
        ctrl.select_action(rng.uniform(-4, 4, 2), exploration_noise=0.1)
    return ctrl


def snapshot(ctrl: CALFController) -> dict:
    """Everything a load may change, deep-copied."""
    td3 = ctrl.td3
    return copy.deepcopy(
        {
            "td3": {k: v for k, v in td3.state_dict().items()},
            "calf": {f: getattr(ctrl, f) for f in CALF_FIELDS},
        }
    )


def assert_same(a, b, where: str = "") -> None:
    """Deep equality of nested dicts/lists of tensors, arrays and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


def test_calf_round_trip_restores_weights_optimisers_and_calf_state(tmp_path: Path) -> None:
    src = trained_controller(0, nu_bar=0.05, kappa_up_coef=50.0, lambda_relax=0.99)
    assert src.q_cert is not None and src.td3.actor_optimizer.state  # non-trivial state
    path = tmp_path / "agent.pt"
    src.save(path)
    dst = make_controller(RunConfig(), seed=99)
    dst.load(path)
    assert_same(snapshot(dst), snapshot(src))
    # The restored networks act exactly as the saved ones (the generators are not saved).
    s = np.array([1.0, -0.5])
    assert dst.td3.select_action(s).tolist() == src.td3.select_action(s).tolist()
    assert dst.td3.total_it == src.td3.total_it == 4


def test_td3_round_trip(tmp_path: Path) -> None:
    src = trained_controller(1).td3
    src.save(tmp_path / "td3.pt")
    dst = TD3(2, 1, 5.0, seed=7)
    dst.load(tmp_path / "td3.pt")
    assert_same(dst.state_dict(), src.state_dict())


def test_load_keeps_forward_counter_hooks(tmp_path: Path) -> None:
    src = trained_controller(2)
    src.save(tmp_path / "a.pt")
    dst = make_controller(RunConfig(), seed=3)
    dst.load(tmp_path / "a.pt")
    dst.td3.forward_counter.reset()
    dst.select_action([1.0, 1.0])
    assert dst.td3.forward_counter.count() == 2


def test_round_trip_without_certificate(tmp_path: Path) -> None:
    src = trained_controller(3)
    src.reset_certificate()
    src.save(tmp_path / "a.pt")
    dst = trained_controller(4)
    dst.load(tmp_path / "a.pt")
    assert dst.q_cert is None and dst.s_cert is None and dst.a_cert is None
    assert_same(snapshot(dst), snapshot(src))


# ---------------------------------------------------------------- bad checkpoints
def _good_payload(tmp_path: Path) -> dict:
    src = trained_controller(5)
    src.save(tmp_path / "good.pt")
    return torch.load(tmp_path / "good.pt", weights_only=True)


def _write(path: Path, data: object) -> Path:
    torch.save(data, path)
    return path


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a regex the error message must match)."""
    good = _good_payload(tmp_path)
    good_bytes = (tmp_path / "good.pt").read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, data: object, match: str) -> None:
        cases[name] = (_write(tmp_path / f"{name}.pt", data), match)

    def edited(edit) -> dict:
        data = copy.deepcopy(good)
        edit(data)
        return data

    cases["missing"] = (tmp_path / "does_not_exist.pt", "no such file")
    (tmp_path / "truncated.pt").write_bytes(good_bytes[: len(good_bytes) // 2])
    cases["truncated"] = (tmp_path / "truncated.pt", "truncated or corrupt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    cases["random bytes"] = (tmp_path / "random.pt", "truncated or corrupt")
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.pt", "truncated or corrupt")
    case("other torch file", {"weights": torch.zeros(3)}, "not a calf-viz checkpoint")
    case("a bare tensor", torch.zeros(3), "not a calf-viz checkpoint")
    case("another module's state", torch.nn.Linear(2, 2).state_dict(), "not a calf-viz")
    case("td3 kind", edited(lambda d: d.update(kind="td3")), "holds a 'td3' agent")
    case("future version", edited(lambda d: d.update(version=99)), "unsupported .*version 99")
    case("no calf entry", edited(lambda d: d.pop("calf")), "missing entry 'calf'")
    case("no td3 entry", edited(lambda d: d.pop("td3")), "missing entry 'td3'")
    case("calf not a dict", edited(lambda d: d.update(calf=[1, 2])), "'calf' entry is not a dict")
    case("td3 not a dict", edited(lambda d: d.update(td3=3)), "TD3 state is a int")
    case("no P_relax", edited(lambda d: d["calf"].pop("P_relax")), "missing entry 'P_relax'")
    case("nan P_relax", edited(lambda d: d["calf"].update(P_relax=float("nan"))), "P_relax")
    case("str q_cert", edited(lambda d: d["calf"].update(q_cert="x")), "q_cert is not")
    case(
        "negative count",
        edited(lambda d: d["calf"].update(total_steps=-1)),
        "total_steps is not a count",
    )
    case(
        "certificate of another size",
        edited(lambda d: d["calf"].update(s_cert=[1.0, 2.0, 3.0])),
        "certificate does not fit",
    )
    case(
        "nan certificate",
        edited(lambda d: d["calf"].update(s_cert=[float("nan"), 0.0])),
        "certificate contains NaN",
    )
    case("no actor", edited(lambda d: d["td3"].pop("actor")), "missing entry 'actor'")
    case(
        "no critic optimiser",
        edited(lambda d: d["td3"].pop("critic_optimizer")),
        "missing entry 'critic_optimizer'",
    )
    case(
        "bad actor weights",
        edited(lambda d: d["td3"]["actor"].update({"net.0.weight": torch.zeros(3, 3)})),
        "bad actor weights",
    )
    case(
        "missing weight",
        edited(lambda d: d["td3"]["critic_target"].pop("q1_net.0.bias")),
        "bad critic_target weights",
    )
    case(
        "bad optimiser",
        edited(lambda d: d["td3"].update(actor_optimizer={"state": {}, "param_groups": []})),
        "bad actor_optimizer state",
    )
    case(
        "bad total_it",
        edited(lambda d: d["td3"].update(total_it="7")),
        "total_it is not an integer",
    )
    # A checkpoint of an agent with another state size (3-D states).
    other = CALFController(3, 1, 5.0, PDPolicy(), seed=0)
    other.select_action([1.0, 2.0, 3.0])  # a first step is certified: a 3-D certificate
    other.save(tmp_path / "state3.pt")
    cases["wrong state size"] = (tmp_path / "state3.pt", "does not fit|does not match")
    big = make_controller(RunConfig(), hidden_dim=32)
    big.save(tmp_path / "hidden32.pt")
    cases["wrong hidden size"] = (tmp_path / "hidden32.pt", "network shape .* does not match")
    f64 = make_controller(RunConfig(), dtype=torch.float64)
    f64.save(tmp_path / "f64.pt")
    cases["wrong dtype"] = (tmp_path / "f64.pt", "does not match")
    return cases


def test_every_bad_checkpoint_raises_naming_file_and_problem_and_changes_nothing(
    tmp_path: Path,
) -> None:
    cases = _bad_files(tmp_path)
    ctrl = trained_controller(6)
    before = snapshot(ctrl)
    for name, (path, match) in cases.items():
        with pytest.raises(CheckpointError, match=match) as info:
            ctrl.load(path)
        err = info.value
        assert os.fspath(path) in str(err), name
        assert err.path == os.fspath(path) and err.problem, name
        assert isinstance(err, ValueError)
        assert_same(snapshot(ctrl), before, name)
    # Still a working controller afterwards.
    ctrl.td3.forward_counter.reset()
    ctrl.select_action([0.5, 0.5])
    assert ctrl.td3.forward_counter.count() == 2


def test_td3_load_refuses_a_calf_checkpoint(tmp_path: Path) -> None:
    trained_controller(7).save(tmp_path / "calf.pt")
    td3 = TD3(2, 1, 5.0, seed=0)
    before = copy.deepcopy(td3.state_dict())
    with pytest.raises(CheckpointError, match="holds a 'calf' agent, expected 'td3'"):
        td3.load(tmp_path / "calf.pt")
    assert_same(td3.state_dict(), before)


class Payload:
    """An arbitrary object: unpickling it would run ``open(marker, "w")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (os.fspath(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_uses_weights_only_and_refuses_arbitrary_objects(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    payload = {"format": "calf-viz", "version": 1, "kind": "calf", "x": Payload(marker)}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path, "calf")
    with open(path, "wb") as fh:  # a plain pickle, not even a torch zip
        pickle.dump(Payload(marker), fh)
    ctrl = trained_controller(8)
    before = snapshot(ctrl)
    with pytest.raises(CheckpointError):
        ctrl.load(path)
    assert_same(snapshot(ctrl), before)
    assert not marker.exists()


def test_read_checkpoint_passes_weights_only(tmp_path: Path, monkeypatch) -> None:
    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "load", spy)
    trained_controller(9).save(tmp_path / "a.pt")
    read_checkpoint(tmp_path / "a.pt", "calf")
    assert seen.get("weights_only") is True


# ---------------------------------------------------------------- atomic saves
def test_failed_save_leaves_the_old_file_intact_and_no_temporary(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "agent.pt"
    old = trained_controller(10)
    old.save(path)
    old_bytes = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, fh, *args, **kwargs):
        fh.write(b"partial bytes, then the disk fills up")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        trained_controller(11).save(path)
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.pt"]
    fresh = make_controller(RunConfig())
    fresh.load(path)
    assert_same(snapshot(fresh), snapshot(old))


def test_interrupted_save_leaves_no_file_where_there_was_none(tmp_path: Path, monkeypatch) -> None:
    def interrupted(obj, fh, *args, **kwargs):
        fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(tmp_path / "new.pt", "calf", {})
    assert list(tmp_path.iterdir()) == []


def test_save_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "agent.pt"
    trained_controller(12).save(path)
    assert read_checkpoint(path, "calf")["kind"] == "calf"


def test_atomic_writes_follow_the_umask_like_any_written_file(tmp_path):
    import os

    from calf.atomic import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "f.txt", lambda fh: fh.write("x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
