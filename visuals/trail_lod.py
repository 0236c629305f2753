"""Level of detail for batched trails: which points of a trail are drawn, and where each lives.

A trail keeps the newest ``max_points`` (P) kept points. A ``TrailLOD`` thins the older ones:
level ``j`` covers the ages (0 = newest) ``[B_j, B_{j+1})`` with ``B_0 = 0`` and draws every
``2**j``-th point there; the last level runs to age P. The pattern is FIXED per point: a point's
sequence number ``k`` (kept pushes since the trail's last clear) decides its fate, it is drawn at
level ``j`` iff ``k % 2**j == 0``. So a point of class ``c`` (``c`` trailing zero bits of ``k``,
capped at the top level ``J``; ``k = 0`` is top class) is drawn from its push until it ages into
level ``c + 1`` (or, top class, until it is P old), then never again: drawn == alive.

``SlotLayout`` turns this into buffer rows for one trail (the renderer repeats it per agent):

- Vertex slots: every class has its own small ring, sized to how many of its points are alive at
  once (``ceil(life / 2**(c+1))`` for ``c < J``, ``ceil(P / 2**J)`` for the top class). A point's
  vertex is written once, at its push, into the slot its class ring gives it; the slot frees when
  it dies and only a later point of the same class reuses it. ``slots`` (S) is their sum, about
  the largest number of drawn points, and is both the vertex rows and the segment rows per trail.
- Segments: slot ``i`` owns segment row ``i``, from its point to the next newer drawn point, or
  degenerate ``(i, i)`` (the newest point, a dead slot). A push of point K writes: K's row
  degenerate, K-1's row -> K; for each level boundary ``B_{j+1}`` crossed by a point ``d`` of
  class ``j`` (at most one per boundary): d's row degenerate and, when the older neighbour
  ``d - 2**j`` is still alive, its row re-pointed past d to ``d + 2**j``; for the point reaching
  age P (if drawn): its row degenerate. About 4 rows a push on average, ``3 + 2J`` at most.

``TrailLOD`` asks level 0 to span at least 2 ages and each level ``j >= 1`` more than half its
stride (``2**(j-1) + 1``): then the neighbours of a point dying into level ``j + 1`` are exactly
``d -/+ 2**j`` and no two neighbours die together, which the re-pointing relies on (narrower
levels break it; the tests check both sides). ``lod=None`` is full resolution: one level, one
ring of P slots.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# doubling() arguments from fine to coarse: 166, 102, 59, 34, 19 slots for 600-point trails.
BUDGET_SCHEDULES: tuple[tuple[int, int, int], ...] = (
    (64, 32, 5),
    (32, 16, 5),
    (16, 8, 6),
    (8, 4, 7),
    (4, 2, 8),
)


@dataclass(frozen=True)
class TrailLOD:
    """The ages (in kept points, newest = 0) at which the drawn stride doubles: 1 before
    ``boundaries[0]``, 2 up to ``boundaries[1]``, ..., ``2**len(boundaries)`` to the trail's end.
    Boundaries at or past a trail's ``max_points`` are unused."""

    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        b = tuple(self.boundaries)
        if not b:
            raise ValueError("a TrailLOD needs at least one boundary (None means full resolution)")
        if any(int(x) != x for x in b):
            raise ValueError(f"boundaries must be integers, got {b!r}")
        starts = (0, *b)
        for j in range(len(b)):
            width, need = starts[j + 1] - starts[j], max(2, (1 << j >> 1) + 1)
            if width < need:
                raise ValueError(
                    f"level {j} (stride {1 << j}) spans ages {starts[j]}..{starts[j + 1]}: "
                    f"it must span at least {need} ages (boundaries {b!r})"
                )
        object.__setattr__(self, "boundaries", tuple(int(x) for x in b))

    @classmethod
    def for_budget(cls, max_points: int, agents: int, segments: int) -> TrailLOD | None:
        """The finest schedule of ``BUDGET_SCHEDULES`` whose ``agents`` trails of ``max_points``
        draw at most ``segments`` segments in all (the coarsest if none does); None when full
        resolution fits. A fixed segment budget keeps the trails' render cost flat in N."""
        if agents * max_points <= segments:
            return None
        for args in BUDGET_SCHEDULES:
            lod = cls.doubling(*args)
            if agents * SlotLayout(max_points, lod).slots <= segments:
                return lod
        return cls.doubling(*BUDGET_SCHEDULES[-1])

    @classmethod
    def doubling(cls, newest: int = 32, points_per_level: int = 16, levels: int = 5) -> TrailLOD:
        """The newest ``newest`` points at stride 1, then ``points_per_level`` points per level
        at twice the previous stride; ``levels`` levels, so the oldest part is drawn at stride
        ``2**(levels-1)``. The default draws 102 of 600 points (32 + 3 x 16 + 22 at stride 16)."""
        for name, value in (
            ("newest", newest),
            ("points_per_level", points_per_level),
            ("levels", levels),
        ):
            if int(value) != value or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        starts = [int(newest)]
        for j in range(1, int(levels) - 1):
            starts.append(starts[-1] + int(points_per_level) * (1 << j))
        return cls(tuple(starts))


class SlotLayout:
    """Vertex slots and segment writes of one trail of ``max_points`` under ``lod`` (vectorised
    over trails: every method takes arrays of sequence numbers, one per trail)."""

    def __init__(self, max_points: int, lod: TrailLOD | None = None) -> None:
        if int(max_points) != max_points or max_points < 1:
            raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
        P = self.max_points = int(max_points)
        self.lod = lod
        bounds = [b for b in (lod.boundaries if lod is not None else ()) if b < P]
        J = self.top = len(bounds)  # index of the last level in use
        self.bounds = np.array(bounds, dtype=np.int64)  # B_1 .. B_J
        self.strides = np.left_shift(1, np.arange(J + 1, dtype=np.int64))  # 2**j per level
        life = np.array([*bounds, P], dtype=np.int64)  # age at which a class dies
        shift = np.append(np.arange(1, J + 1), J).astype(np.int64)
        self.ring = -(-life // np.left_shift(1, shift))  # ceil: alive at once per class
        self.offset = np.concatenate([[0], np.cumsum(self.ring)[:-1]]).astype(np.int64)
        self.slots = int(self.ring.sum())
        # A point's class depends only on its low J bits: tables indexed by k & (2**J - 1).
        self._low = (1 << J) - 1
        low = np.arange(1 << J, dtype=np.int64)
        cls = np.full(low.size, J, dtype=np.int64)
        for j in range(J - 1, -1, -1):  # the lowest set bit wins
            cls[(low >> j) & 1 == 1] = j
        self._cls_offset, self._cls_shift, self._cls_ring = (
            self.offset[cls],
            shift[cls],
            self.ring[cls],
        )
        # At boundary B_{j+1} the point K - B_{j+1} dies iff it has class j: K's low j+1 bits.
        self._die_mask = 2 * self.strides[:-1] - 1
        self._die_bits = (self.bounds + self.strides[:-1]) & self._die_mask
        # Its older neighbour d - 2**j is B_{j+1} + 2**j old: re-pointed only if still alive.
        self._repoint = self.bounds + self.strides[:-1] < P
        self._top_mask = int(self.strides[J]) - 1  # a point reaching age P is drawn iff top class

    def slot(self, seq: NDArray[np.int64]) -> NDArray[np.int64]:
        """The vertex slot (0..S-1) of the points with these sequence numbers (>= 0)."""
        k = np.asarray(seq, dtype=np.int64)
        r = k & self._low
        return self._cls_offset[r] + (k >> self._cls_shift[r]) % self._cls_ring[r]

    def push_writes(
        self, seq: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """The segment rows to write when trails push the points ``seq`` (one per trail):
        ``(trail, row, target)`` with ``trail`` indexing ``seq``; row ``row`` becomes the segment
        ``row -> target`` (degenerate when equal). The first ``len(seq)`` entries are the new
        points' own rows, in order, so ``row[:len(seq)]`` are their vertex slots. Rows repeat
        only with equal targets (a new point reusing the slot of a point dying now)."""
        K = np.asarray(seq, dtype=np.int64)
        n = K.size
        kmin = int(K.min()) if n else 0
        trails = np.arange(n)
        # The previous newest (alive: level 0 spans >= 2 ages) now leads to the new point.
        if self.max_points < 2:
            had = trails[:0]
        elif kmin >= 1:
            had = trails
        else:
            had = np.flatnonzero(K >= 1)
        dying = moved = d = dm = s = trails[:0]
        if self.top:
            # At every boundary at once: the point crossing it dies iff it has that class.
            hit = (K[:, None] & self._die_mask) == self._die_bits
            if kmin < self.bounds[-1]:  # young trails have not reached every boundary
                hit &= K[:, None] >= self.bounds
            dying, level = np.nonzero(hit)
            d = K[dying] - self.bounds[level]
            ok = self._repoint[level]  # then d - s, still alive, now leads past d to d + s
            moved, dm, s = dying[ok], d[ok], self.strides[level[ok]]
        old = K - self.max_points  # the point reaching age P: gone, nothing older to re-point
        gone = np.flatnonzero((old >= 0) & ((old & self._top_mask) == 0))
        seqs = (K, K[had] - 1, d, dm - s, dm + s, old[gone])
        slots = self.slot(np.concatenate(seqs))
        cuts = list(itertools.accumulate(len(x) for x in seqs))
        new, prev, dead, before, after, oldest = (
            slots[a:b] for a, b in zip([0, *cuts], cuts, strict=False)
        )
        rows = np.concatenate([new, prev, dead, before, oldest])
        targets = np.concatenate([new, new[had], dead, after, oldest])
        return np.concatenate([trails, had, dying, moved, gone]), rows, targets
