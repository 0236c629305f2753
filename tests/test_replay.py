"""ReplayBuffer: a preallocated float32 ring; samples come back as tensors on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from calf import ReplayBuffer


def transition(i: int) -> tuple:
    return [i, -i], [0.5 * i], float(-i), [i + 1, -i - 1], i % 2 == 0


def test_storage_is_preallocated_float32() -> None:
    replay = ReplayBuffer(3, 2, capacity=7)
    for arr, shape in (
        (replay.state, (7, 3)),
        (replay.action, (7, 2)),
        (replay.reward, (7, 1)),
        (replay.next_state, (7, 3)),
        (replay.not_done, (7, 1)),
    ):
        assert arr.shape == shape and arr.dtype == np.float32
    assert len(replay) == 0


def test_add_stores_the_transition_and_not_done() -> None:
    replay = ReplayBuffer(2, 1, capacity=4)
    replay.add(*transition(2))
    replay.add(*transition(3))
    assert len(replay) == 2
    assert replay.state[:2].tolist() == [[2, -2], [3, -3]]
    assert replay.action[:2, 0].tolist() == [1.0, 1.5]
    assert replay.reward[:2, 0].tolist() == [-2.0, -3.0]
    assert replay.next_state[1].tolist() == [4, -4]
    assert replay.not_done[:2, 0].tolist() == [0.0, 1.0]  # done (even i) -> 0


def test_ring_wraps_around_overwriting_the_oldest() -> None:
    replay = ReplayBuffer(2, 1, capacity=5)
    ids = []
    for i in range(13):
        replay.add(*transition(i))
        ids.append(i)
        assert len(replay) == min(i + 1, 5)
    # Slots hold the last 5 transitions (8..12), slot k holding the one with i % 5 == k.
    held = sorted(replay.state[:, 0].astype(int).tolist())
    assert held == ids[-5:]
    for k in range(5):
        assert int(replay.state[k, 0]) % 5 == k
    replay.add(*transition(13))  # the next one overwrites the oldest (8, in slot 13 % 5)
    assert int(replay.state[13 % 5, 0]) == 13 and len(replay) == 5


def test_sample_shapes_dtypes_and_device() -> None:
    replay = ReplayBuffer(2, 1, capacity=50)
    for i in range(30):
        replay.add(*transition(i))
    s, a, r, s2, nd = replay.sample(16, "cpu", np.random.default_rng(0))
    assert s.shape == (16, 2) and a.shape == (16, 1) and r.shape == (16, 1)
    assert s2.shape == (16, 2) and nd.shape == (16, 1)
    for t in (s, a, r, s2, nd):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        assert t.device.type == "cpu"
    # Rows stay aligned: every sampled row is one stored transition.
    i = s[:, 0].numpy().astype(int)
    assert (s[:, 1].numpy() == -i).all() and (r[:, 0].numpy() == -i).all()
    assert (s2[:, 0].numpy() == i + 1).all()
    assert (nd[:, 0].numpy() == (i % 2 == 1)).all()
    assert (i < 30).all()


def test_sample_only_from_filled_slots_and_reproducibly() -> None:
    replay = ReplayBuffer(2, 1, capacity=100)
    for i in range(1, 4):
        replay.add(*transition(i))
    s, *_ = replay.sample(200, rng=np.random.default_rng(1))
    assert set(s[:, 0].numpy().astype(int).tolist()) == {1, 2, 3}
    again, *_ = replay.sample(200, rng=np.random.default_rng(1))
    assert torch.equal(s, again)


def test_sample_returned_tensors_do_not_alias_storage() -> None:
    replay = ReplayBuffer(2, 1, capacity=10)
    replay.add(*transition(1))
    s, *_ = replay.sample(1, rng=np.random.default_rng(0))
    s += 100
    assert replay.state[0].tolist() == [1, -1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_on_cuda() -> None:
    replay = ReplayBuffer(2, 1, capacity=10)
    replay.add(*transition(1))
    assert all(t.device.type == "cuda" for t in replay.sample(4, "cuda"))


def test_bad_capacity_and_empty_sample() -> None:
    with pytest.raises(ValueError, match="capacity must be positive"):
        ReplayBuffer(2, 1, capacity=0)
    with pytest.raises(ValueError, match="empty replay buffer"):
        ReplayBuffer(2, 1, capacity=3).sample(1)
    with pytest.raises(ValueError, match="state_dim and action_dim must be positive"):
        ReplayBuffer(0, 1, capacity=3)


def test_storage_is_one_interleaved_row_per_transition() -> None:
    replay = ReplayBuffer(3, 2, capacity=6)
    assert replay.width == 3 + 2 + 1 + 3 + 1
    assert list(replay.columns) == ["state", "action", "reward", "next_state", "not_done"]
    starts = [c.start for c in replay.columns.values()]
    assert starts == sorted(starts) and replay.columns["not_done"].stop == replay.width
    replay = ReplayBuffer(2, 1, capacity=6)
    replay.add(*transition(4))
    row = np.empty((1, replay.width), dtype=np.float32)
    replay.sample_into(row, np.random.default_rng(0))
    for name, cols in replay.columns.items():
        np.testing.assert_array_equal(row[0, cols], getattr(replay, name)[0])


def test_sample_into_gathers_the_rows_sample_draws() -> None:
    replay = ReplayBuffer(2, 1, capacity=50)
    for i in range(37):
        replay.add(*transition(i))
    tensors = replay.sample(64, rng=np.random.default_rng(7))
    rows = np.full((64, replay.width), np.nan, dtype=np.float32)
    replay.sample_into(rows, np.random.default_rng(7))
    for name, t in zip(
        ("state", "action", "reward", "next_state", "not_done"), tensors, strict=True
    ):
        np.testing.assert_array_equal(rows[:, replay.columns[name]], t.numpy())
    # The same draw from the generator: both leave it in the same state.
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    replay.sample(5, rng=a)
    replay.sample_into(rows[:5], b)
    assert a.integers(1 << 30) == b.integers(1 << 30)


@pytest.mark.parametrize(
    "out",
    [
        np.zeros((4, 7), dtype=np.float64),
        np.zeros((4, 6), dtype=np.float32),
        np.zeros((7, 4), dtype=np.float32).T,
        np.zeros(7, dtype=np.float32),
        [[0.0] * 7],
    ],
    ids=["float64", "narrow", "transposed", "1-d", "list"],
)
def test_sample_into_rejects_a_bad_out(out) -> None:
    replay = ReplayBuffer(2, 1, capacity=3)
    replay.add(*transition(1))
    with pytest.raises(ValueError, match=r"C-contiguous float32 array of shape \(B, 7\)"):
        replay.sample_into(out)


def test_sample_into_an_empty_replay() -> None:
    with pytest.raises(ValueError, match="empty replay buffer"):
        ReplayBuffer(2, 1, capacity=3).sample_into(np.zeros((1, 7), dtype=np.float32))


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=9),
    before=st.integers(min_value=0, max_value=12),
    n=st.integers(min_value=0, max_value=25),
)
def test_add_batch_leaves_the_buffer_that_n_adds_leave(capacity: int, before: int, n: int) -> None:
    rng = np.random.default_rng(capacity * 100 + before * 10 + n)
    batched, looped = ReplayBuffer(2, 1, capacity), ReplayBuffer(2, 1, capacity)

    def transitions(k: int) -> tuple[np.ndarray, ...]:
        return (rng.normal(size=(k, 2)), rng.normal(size=(k, 1)), rng.normal(size=k),
                rng.normal(size=(k, 2)), rng.random(k) < 0.3)  # fmt: skip

    for s, a, r, s2, d in zip(*transitions(before), strict=True):
        batched.add(s, a, float(r), s2, bool(d))
        looped.add(s, a, float(r), s2, bool(d))
    batch = transitions(n)
    batched.add_batch(*batch)
    for s, a, r, s2, d in zip(*batch, strict=True):
        looped.add(s, a, float(r), s2, bool(d))
    assert len(batched) == len(looped)
    out_a, out_b = np.empty((8, batched.width), np.float32), np.empty((8, looped.width), np.float32)
    if len(looped):
        batched.sample_into(out_a, np.random.default_rng(0))
        looped.sample_into(out_b, np.random.default_rng(0))
        np.testing.assert_array_equal(out_a, out_b)
    for buffer in (batched, looped):  # the next add lands in the same slot
        buffer.add([9.0, 9.0], [9.0], 9.0, [9.0, 9.0], False)
    for name in ("state", "action", "reward", "next_state", "not_done"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(looped, name))
