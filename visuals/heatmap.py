"""The critic surface: Q on a G x G grid of the phase plane in one critic forward, agent heights by
vectorised bilinear interpolation of that grid, and one Panda3D Geom rewritten in place on refresh.

The heights stage of a frame stands behind ``HeightSource``: ``CriticHeatmap.heights`` (one
vectorised interpolation for all states, 0 forwards) and its loop reference ``LoopHeights``
(``--reference interp``: a Python loop of scalar interpolations).

Heights
-------
For a critic value q, with (lo, hi) = ``q2_range`` (the EMA-smoothed min and max of q² over the
grid, see ``compute_q_grid``)::

    norm(q)   = clamp((q² - lo) / (hi - lo), 0, 1)      (0 when hi - lo <= 1e-12: a flat critic)
    height(q) = norm(q) * height_scale + surface_epsilon

An agent's height is height(q~), where q~ is the bilinear interpolation of ``q_grid`` at the
agent's state: interpolate q, then apply the non-linear height formula.
The surface vertex at grid node (x_i, v_j) is drawn at height(q_grid[j, i]) - surface_epsilon,
with colour colormap(norm): ``surface_epsilon`` lifts the agents (markers, trails) just above
the drawn surface. Without it a trail lies exactly in the surface's triangles and the depth test
cuts it into dashes. Between nodes the triangles interpolate heights linearly while the agents
square an interpolated q; for a G = 21 grid that gap is far below the default epsilon.

States outside the grid are clamped to its bounds before interpolating (an agent past the edge
takes the height of the nearest edge point); NaN or inf states raise ValueError naming the rows.

World positions come from the shared ``PlaneMapping.to_world`` for the surface vertices too, so an
agent drawn at ``mapping.to_world(states, heights(states))`` lands on them.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from calf.validation import as_state, as_state_batch
from visuals.colormap import colormap, colormap_reference
from visuals.coords import PlaneMapping
from visuals.vertex_buffer import make_indexed_geom_node

try:  # numpy >= 2: the compiled interp without np.interp's Python wrapper (half its ~1 us cost)
    from numpy._core.multiarray import interp as _interp
except ImportError:  # pragma: no cover - other numpy layouts
    _interp = np.interp
_all = np.logical_and.reduce

# q² ranges narrower than this draw a flat surface (no division by a vanishing span).
MIN_Q2_SPAN = 1e-12
# Overlay: grid lines along the surface plus a small diagonal cross at each node, in one Geom.
OVERLAY_LINE_COLOR = (0.92, 0.92, 0.92, 1.0)
OVERLAY_NODE_COLOR = (1.0, 1.0, 1.0, 1.0)
OVERLAY_ALPHA = 0.35
NODE_CROSS_FRACTION = 0.18  # cross half-width, as a fraction of the smaller world cell side
# The overlay floats this far (a fraction of the plane size, in world y) above the surface: lines
# exactly on the triangles' edges z-fight with them, and a depth offset alone does not fix that
# on every GL driver.
OVERLAY_LIFT_FRACTION = 0.002


class HeightSource(Protocol):
    """The heights stage: surface heights under N states, (N, 2) -> (N,)."""

    def heights(self, states: ArrayLike) -> NDArray[np.float64]: ...


def _check_range(name: str, r: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(r[0]), float(r[1]))
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"{name} must be finite with low < high, got {r}")
    return lo, hi


class CriticHeatmap:
    """The critic over the phase plane as a cached grid, agent heights, and a drawn surface.

    Everything except ``draw`` works without an Ursina app. Attributes the trainer reads:
    ``q_grid`` (G, G), rows follow v and columns follow x like ``np.meshgrid(xs, vs)``, None
    before the first computation; ``xs``, ``vs`` the grid axes; ``q2_range``; ``refreshes``
    (grid computations so far); ``mesh_updates`` (vertex-buffer writes so far: 2 when drawn,
    then 2 per refresh while drawn: the surface's and the overlay's array) and ``bytes_written``
    (their bytes). ``grid_size`` and
    the axis ranges are fixed at construction (derived tables depend on them);
    ``height_scale`` and ``surface_epsilon`` may change and apply from the next call (the drawn
    surface from the next refresh or ``update_mesh()``).
    """

    def __init__(
        self,
        td3_agent: Any,
        grid_size: int = 21,
        x_range: tuple[float, float] = (-5.0, 5.0),
        v_range: tuple[float, float] = (-5.0, 5.0),
        height_scale: float = 1.0,
        update_frequency: int = 500,
        surface_epsilon: float = 0.05,
        mapping: PlaneMapping | None = None,
        ema_alpha: float = 0.3,
    ) -> None:
        if int(grid_size) != grid_size or grid_size < 2:
            raise ValueError(f"grid_size must be an integer >= 2, got {grid_size}")
        if getattr(td3_agent, "state_dim", 2) != 2:
            raise ValueError(f"the critic surface needs state_dim 2, got {td3_agent.state_dim}")
        if int(update_frequency) != update_frequency or update_frequency < 0:
            raise ValueError(f"update_frequency must be an integer >= 0, got {update_frequency}")
        if not (0.0 < float(ema_alpha) <= 1.0):
            raise ValueError(f"ema_alpha must lie in (0, 1], got {ema_alpha}")
        for name, value in (("height_scale", height_scale), ("surface_epsilon", surface_epsilon)):
            if not math.isfinite(float(value)):
                raise ValueError(f"{name} must be finite, got {value}")
        self.td3 = td3_agent
        self.grid_size = g = int(grid_size)
        self.x_range = _check_range("x_range", x_range)
        self.v_range = _check_range("v_range", v_range)
        self.height_scale = float(height_scale)
        self.update_frequency = int(update_frequency)
        self.surface_epsilon = float(surface_epsilon)
        self.ema_alpha = float(ema_alpha)
        self.mapping = mapping if mapping is not None else PlaneMapping(self.x_range, self.v_range)

        self.xs = np.linspace(self.x_range[0], self.x_range[1], g)
        self.vs = np.linspace(self.v_range[0], self.v_range[1], g)
        gx, gv = np.meshgrid(self.xs, self.vs)  # rows follow v, columns follow x
        # Grid nodes in q_grid.ravel() order: node k = j * G + i is (xs[i], vs[j]).
        self.grid_states = np.stack([gx.ravel(), gv.ravel()], axis=1)
        self._grid_states_t: torch.Tensor | None = None
        self._grid_actions_t: torch.Tensor | None = None
        # state -> fractional grid index: f = s * scale - offset, per column (x, v).
        scale = np.array(
            [
                (g - 1) / (self.x_range[1] - self.x_range[0]),
                (g - 1) / (self.v_range[1] - self.v_range[0]),
            ]
        )
        self._index_scale = scale
        self._index_offset = np.array([self.x_range[0], self.v_range[0]]) * scale
        self._same_axes = self.x_range == self.v_range
        self._index_xp = np.array(self.x_range)
        self._index_fp = np.array([0.0, g - 1.0])
        # Flat cell index = i + j * G over the padded (G x G) cell table (see _set_grid).
        self._cell_stride = np.array([1, g], dtype=np.intp)

        self._q_grid: NDArray[np.float64] | None = None
        self._cells: NDArray[np.float64] | None = None
        self._q2_range: tuple[float, float] = (0.0, 0.0)
        self._range_set = False
        self._height_key: tuple[float, float, float, float] | None = None
        self._height_xp = np.zeros(2)
        self._height_fp = np.zeros(2)
        self.refreshes = 0
        self.mesh_updates = 0
        self.bytes_written = 0
        self.last_refresh_step: int | None = None

        self.root: Any = None
        self.surface: Any = None
        self.overlay: Any = None
        self._surface_gnode: Any = None
        self._overlay_gnode: Any = None
        self._surface_vdata: Any = None
        self._overlay_vdata: Any = None
        self._surface_buf: NDArray[np.float32] | None = None
        self._overlay_buf: NDArray[np.float32] | None = None

    # ------------------------------------------------------------------ the grid
    @property
    def q_grid(self) -> NDArray[np.float64] | None:
        """(G, G) cached critic values, q_grid[j, i] = Q((xs[i], vs[j]), 0); read-only."""
        return self._q_grid

    @q_grid.setter
    def q_grid(self, values: ArrayLike) -> None:
        self._set_grid(values)

    @property
    def q2_range(self) -> tuple[float, float]:
        """(lo, hi) of q² used to normalise heights, EMA-smoothed across refreshes."""
        return self._q2_range

    @q2_range.setter
    def q2_range(self, value: tuple[float, float]) -> None:
        lo, hi = float(value[0]), float(value[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"q2_range must be finite with lo <= hi, got {value}")
        self._q2_range = (lo, hi)
        self._range_set = True

    def _set_grid(self, values: ArrayLike) -> None:
        g = self.grid_size
        q = np.array(values, dtype=np.float64)
        if q.shape != (g, g):
            raise ValueError(f"q_grid must have shape ({g}, {g}), got {q.shape}")
        bad = ~np.isfinite(q)
        if bad.any():
            raise ValueError(f"q_grid has {int(bad.sum())} NaN or inf values")
        q.flags.writeable = False  # the cell table below is derived from it
        self._q_grid = q
        # Bilinear coefficients per cell: q(tx, tv) = a + b tx + (c + d tx) tv. The grid is padded
        # by repeating its last row and column, so a state on the upper bound (index G - 1, t = 0)
        # reads a valid cell and the vectorised path needs no extra clamp of the cell index.
        p = np.pad(q, ((0, 1), (0, 1)), mode="edge")
        a = p[:-1, :-1]
        b = p[:-1, 1:] - a
        c = p[1:, :-1] - a
        d = p[1:, 1:] - p[:-1, 1:] - p[1:, :-1] + a
        # Row k = i + j * G holds [a, b, c, d]; viewed as (2, 2): [[a, b], [c, d]].
        self._cells = np.stack([a, b, c, d], axis=-1).reshape(g * g, 4)

    def _grid_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._grid_states_t is None or self._grid_actions_t is None:
            dev, dt = self.td3.device, self.td3.dtype
            self._grid_states_t = torch.as_tensor(self.grid_states, dtype=dt, device=dev)
            self._grid_actions_t = torch.zeros(
                (len(self.grid_states), self.td3.action_dim), dtype=dt, device=dev
            )
        return self._grid_states_t, self._grid_actions_t

    def _critic_q(self, states_t: torch.Tensor, actions_t: torch.Tensor) -> NDArray[np.float64]:
        """min(q1, q2) of one critic forward, as float64 (N,)."""
        with torch.no_grad():
            q1, q2 = self.td3.critic(states_t, actions_t)
            q = torch.minimum(q1, q2).reshape(-1)
        return q.detach().cpu().numpy().astype(np.float64)

    def compute_q_grid(self) -> NDArray[np.float64]:
        """One critic forward over the G*G nodes (zero action, min of the twin heads).

        Caches ``q_grid``, updates ``q2_range`` by EMA (the first computation takes the grid's
        own range; later ones move it by ``ema_alpha`` toward the new min and max of q², so the
        surface does not jump between refreshes) and, if drawn, rewrites the mesh buffers in
        place. A critic returning NaN or inf raises ValueError.
        """
        states_t, actions_t = self._grid_tensors()
        q = self._critic_q(states_t, actions_t).reshape(self.grid_size, self.grid_size)
        bad = int(np.count_nonzero(~np.isfinite(q)))
        if bad:
            raise ValueError(f"the critic returned NaN or inf at {bad} of {q.size} grid nodes")
        self._set_grid(q)
        q2 = q * q
        lo_new, hi_new = float(q2.min()), float(q2.max())
        if self._range_set:
            a = self.ema_alpha
            lo, hi = self._q2_range
            self._q2_range = ((1.0 - a) * lo + a * lo_new, (1.0 - a) * hi + a * hi_new)
        else:
            self._q2_range = (lo_new, hi_new)
            self._range_set = True
        self.refreshes += 1
        if self._surface_gnode is not None:
            self.update_mesh()
        assert self._q_grid is not None
        return self._q_grid

    def maybe_refresh(self, step: int) -> bool:
        """Recompute the grid (and rewrite the drawn mesh) when it was never computed or
        ``step - last refresh step >= update_frequency``; True if it did."""
        if self._q_grid is not None and self.last_refresh_step is not None:
            if step - self.last_refresh_step < self.update_frequency:
                return False
        self.compute_q_grid()
        self.last_refresh_step = int(step)
        return True

    def _require_grid(self) -> NDArray[np.float64]:
        # The first use computes the grid (one forward); every later height costs none.
        if self._q_grid is None:
            self.compute_q_grid()
        assert self._q_grid is not None
        return self._q_grid

    # ------------------------------------------------------------ interpolation
    def _interpolate_q_from_grid(self, state: ArrayLike) -> float:
        """Loop reference: bilinear interpolation of ``q_grid`` at one state, clamped to the
        grid bounds, written with scalar arithmetic on the node coordinates."""
        q = self._require_grid()
        s = as_state(state, 2)
        x0, x1 = self.x_range
        v0, v1 = self.v_range
        g = self.grid_size
        x = min(max(float(s[0]), x0), x1)
        v = min(max(float(s[1]), v0), v1)
        i = min(int(math.floor((x - x0) / (x1 - x0) * (g - 1))), g - 2)
        j = min(int(math.floor((v - v0) / (v1 - v0) * (g - 1))), g - 2)
        tx = (x - self.xs[i]) / (self.xs[i + 1] - self.xs[i])
        tv = (v - self.vs[j]) / (self.vs[j + 1] - self.vs[j])
        return float(
            (1.0 - tx) * (1.0 - tv) * q[j, i]
            + tx * (1.0 - tv) * q[j, i + 1]
            + (1.0 - tx) * tv * q[j + 1, i]
            + tx * tv * q[j + 1, i + 1]
        )

    def _states_array(self, states: ArrayLike) -> NDArray[np.float64]:
        s = np.asarray(states, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != 2:
            return as_state_batch(s, 2)  # accepts an empty 1-D array, raises on other shapes
        # The ufunc reduce directly (ndarray.all() adds a Python layer); no BLAS dot here:
        # OpenBLAS threads large dots, and on a busy 2-core machine its threads stall.
        if not _all(np.isfinite(s.ravel())):
            as_state_batch(s, 2)  # raises, naming the rows
        return s

    def _interpolate_checked(self, s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Bilinear q at (N, 2) checked float64 states, all as array operations.

        Few, whole-array numpy calls on purpose: at the N of a frame (tens of agents) each call's
        fixed cost outweighs its work, so the clamp is one ``np.interp`` (affine map to grid index
        space and clamp to [0, G-1] at once) rather than a multiply, subtract, max and min.
        """
        cells = self._cells
        assert cells is not None
        n = len(s)
        if self._same_axes:
            f = _interp(s.ravel(), self._index_xp, self._index_fp).reshape(n, 2)
        else:
            f = s * self._index_scale
            f -= self._index_offset
            f = _interp(f.ravel(), self._index_fp, self._index_fp).reshape(n, 2)
        # Integer cell indices: truncation is floor here (f >= 0), and an integer matmul runs
        # numpy's own loop, where a float one would go to OpenBLAS, whose threads stall on a busy
        # 2-core machine (a 0.3 ms call at N = 10000 took 10-20 ms).
        i = f.astype(np.intp)
        f -= i  # now the fractions (tx, tv) within the cell
        k = i @ self._cell_stride
        c = cells.take(k, axis=0).reshape(n, 2, 2)  # [[a, b], [c, d]] per state
        u = c[:, :, 1] * f[:, :1]  # [b tx, d tx]
        u += c[:, :, 0]  # [a + b tx, c + d tx]
        q = u[:, 1] * f[:, 1]
        q += u[:, 0]
        return q

    def _interpolate_q_from_grid_vectorized(self, states: ArrayLike) -> NDArray[np.float64]:
        """(N, 2) states -> (N,) bilinear q from ``q_grid``, clamped to the bounds; no loop."""
        if self._cells is None:
            self.compute_q_grid()
        return self._interpolate_checked(self._states_array(states))

    # ------------------------------------------------------------------ heights
    def _height_scalar(self, q: float) -> float:
        """The height formula for one q, in plain Python floats (the reference)."""
        lo, hi = self._q2_range
        span = hi - lo
        norm = (q * q - lo) / span if span > MIN_Q2_SPAN else 0.0
        norm = min(max(norm, 0.0), 1.0)
        return norm * self.height_scale + self.surface_epsilon

    def _norm_from_q(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        """clamp((q² - lo) / (hi - lo), 0, 1) for an array of q (0 for a flat range)."""
        lo, hi = self._q2_range
        span = hi - lo
        if not span > MIN_Q2_SPAN:
            return np.zeros_like(q)
        n = q * q
        n -= lo
        n /= span
        np.maximum(n, 0.0, out=n)
        np.minimum(n, 1.0, out=n)
        return n

    def _heights_unchecked(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        """The height formula on an array of finite q: q², then one ``np.interp`` from
        [lo, hi] onto [surface_epsilon, surface_epsilon + height_scale], which is the affine
        normalisation and the clamp of the formula in a single call."""
        lo, hi = self._q2_range
        eps, hs = self.surface_epsilon, self.height_scale
        if not hi - lo > MIN_Q2_SPAN:
            return np.full(q.shape, eps)
        key = (lo, hi, eps, hs)
        if key != self._height_key:
            self._height_key = key
            self._height_xp = np.array([lo, hi])
            self._height_fp = np.array([eps, eps + hs])
        return _interp(q * q, self._height_xp, self._height_fp)

    def heights(self, states: ArrayLike) -> NDArray[np.float64]:
        """(N, 2) states -> (N,) surface heights under them: bilinear from the cached grid,
        0 critic forwards (the first call ever computes the grid)."""
        if self._cells is None:
            self.compute_q_grid()
        return self._heights_unchecked(self._interpolate_checked(self._states_array(states)))

    # The upstream name for ``heights``; it returns heights, not Q values.
    get_q_value_for_states_batch = heights

    # ------------------------------------------------------------- mesh buffers
    def vertex_buffers(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(G*G, 3) float32 world positions and (G*G, 4) float32 colours of the surface vertices
        (vertex k = j * G + i is node (xs[i], vs[j])), as array operations."""
        q = self._require_grid().reshape(-1)
        # Heights through the agents' own path, so an agent at a node sits surface_epsilon
        # above the vertex.
        heights = self._heights_unchecked(q) - self.surface_epsilon
        return self.mapping.to_world(self.grid_states, heights), colormap(self._norm_from_q(q))

    def vertex_buffers_reference(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The same buffers built one vertex at a time from Python floats (the oracle)."""
        q = self._require_grid()
        lo, hi = self._q2_range
        span = hi - lo
        m = self.mapping
        cx = 0.5 * (m.x_range[0] + m.x_range[1])
        cv = 0.5 * (m.v_range[0] + m.v_range[1])
        sx, sz = m.scale
        positions: list[tuple[float, float, float]] = []
        colours: list[tuple[float, float, float, float]] = []
        for j in range(self.grid_size):
            for i in range(self.grid_size):
                x, v, qv = float(self.xs[i]), float(self.vs[j]), float(q[j, i])
                norm = (qv * qv - lo) / span if span > MIN_Q2_SPAN else 0.0
                norm = min(max(norm, 0.0), 1.0)
                height = norm * self.height_scale
                positions.append(((x - cx) * sx, height, (v - cv) * sz))
                colours.append(colormap_reference(norm))
        return np.array(positions, dtype=np.float32), np.array(colours, dtype=np.float32)

    def surface_indices(self) -> NDArray[np.uint32]:
        """Triangle indices of the surface: two triangles per grid cell, (G-1)² * 6 entries."""
        g = self.grid_size
        j, i = np.meshgrid(np.arange(g - 1), np.arange(g - 1), indexing="ij")
        v00 = (j * g + i).ravel()
        v01, v10 = v00 + 1, v00 + g
        v11 = v10 + 1
        return np.stack([v00, v01, v11, v00, v11, v10], axis=1).ravel().astype(np.uint32)

    def overlay_indices(self) -> NDArray[np.uint32]:
        """Line indices of the overlay: grid lines through the G*G surface vertices (rows 0 ..
        G*G-1 of the overlay buffer), then two diagonal segments per node (4 rows per node)."""
        g = self.grid_size
        k = np.arange(g * g).reshape(g, g)
        along_x = np.stack([k[:, :-1].ravel(), k[:, 1:].ravel()], axis=1)
        along_v = np.stack([k[:-1, :].ravel(), k[1:, :].ravel()], axis=1)
        base = g * g + 4 * k.ravel()
        crosses = np.stack([base, base + 1, base + 2, base + 3], axis=1).reshape(-1, 2)
        return np.concatenate([along_x, along_v, crosses]).ravel().astype(np.uint32)

    def _cross_offsets(self) -> NDArray[np.float32]:
        sx, sz = self.mapping.scale
        cell = min(
            (self.xs[1] - self.xs[0]) * sx,
            (self.vs[1] - self.vs[0]) * sz,
        )
        r = NODE_CROSS_FRACTION * cell
        return np.array([[-r, 0, -r], [r, 0, r], [-r, 0, r], [r, 0, -r]], dtype=np.float32)

    def _fill_buffers(self) -> None:
        """Surface and overlay interleaved (position, colour) rows, into preallocated arrays."""
        n = self.grid_size**2
        if self._surface_buf is None or self._overlay_buf is None:
            self._surface_buf = np.empty((n, 7), dtype=np.float32)
            self._overlay_buf = np.empty((5 * n, 7), dtype=np.float32)
            self._overlay_buf[:n, 3:] = OVERLAY_LINE_COLOR
            self._overlay_buf[n:, 3:] = OVERLAY_NODE_COLOR
        pos, col = self.vertex_buffers()
        self._surface_buf[:, :3] = pos
        self._surface_buf[:, 3:] = col
        lines = self._overlay_buf[:n, :3]
        lines[:] = pos
        lines[:, 1] += OVERLAY_LIFT_FRACTION * self.mapping.plane_size
        crosses = self._overlay_buf[n:, :3].reshape(n, 4, 3)
        np.add(lines[:, None, :], self._cross_offsets()[None, :, :], out=crosses)

    # ------------------------------------------------------------------ drawing
    def update_mesh(self) -> None:
        """Rewrite the drawn surface and overlay vertex buffers in place (2 buffer writes)."""
        if self._surface_gnode is None:
            return
        self._fill_buffers()
        for gnode, vdata, buf in (
            (self._surface_gnode, self._surface_vdata, self._surface_buf),
            (self._overlay_gnode, self._overlay_vdata, self._overlay_buf),
        ):
            # Written through the GeomVertexData we created and keep: once rendered, the Geom
            # is also referenced by the render pipeline, so going through
            # GeomNode.modify_geom() would copy the Geom and its vertex data on every refresh.
            vdata.modify_array_handle(0).copy_data_from(buf)
            # Writing the array behind the Geom's back leaves its cached bounds stale, and a
            # stale volume would cull a surface that grew.
            gnode.get_geom(0).mark_bounds_stale()
            gnode.mark_internal_bounds_stale()
            self.mesh_updates += 1
            self.bytes_written += 0 if buf is None else buf.nbytes

    def draw(self, parent: Any = None) -> None:
        """Create the surface (one Geom of triangles, per-vertex colour, drawn from both sides)
        and the overlay (grid lines and node crosses, one Geom of lines) under ``parent``
        (default ``ursina.scene``). Needs a running Ursina app; idempotent."""
        if self.root is not None:
            return
        from panda3d.core import TransparencyAttrib
        from ursina import Entity, scene

        self._require_grid()
        g = self.grid_size
        self.root = Entity(parent=parent if parent is not None else scene, name="critic_heatmap")
        self.surface = Entity(parent=self.root, name="critic_surface")
        self.overlay = Entity(parent=self.root, name="critic_overlay")
        self._surface_gnode, self._surface_vdata = make_indexed_geom_node(
            "critic_surface", g * g, self.surface_indices(), lines=False
        )
        self._overlay_gnode, self._overlay_vdata = make_indexed_geom_node(
            "critic_overlay", 5 * g * g, self.overlay_indices(), lines=True
        )
        surface_np = self.surface.attach_new_node(self._surface_gnode)
        surface_np.set_two_sided(True)
        overlay_np = self.overlay.attach_new_node(self._overlay_gnode)
        overlay_np.set_two_sided(True)
        # The lines follow the surface's edges, lifted a little; the offset helps them win the
        # depth test where the lift is below the depth buffer's resolution.
        overlay_np.set_depth_offset(1)
        # A faint overlay: the grid reads as structure, the surface colours stay in front.
        overlay_np.set_transparency(TransparencyAttrib.M_alpha)
        overlay_np.set_color_scale(1.0, 1.0, 1.0, OVERLAY_ALPHA)
        self.update_mesh()

    def set_surface_visible(self, visible: bool) -> None:
        """Show or hide the surface (no-op before ``draw``)."""
        if self.surface is not None:
            self.surface.visible = bool(visible)

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the grid overlay (no-op before ``draw``)."""
        if self.overlay is not None:
            self.overlay.visible = bool(visible)

    def destroy(self) -> None:
        """Remove the drawn nodes; the cached grid stays, and ``draw`` can create them again."""
        if self.root is not None:
            from ursina import destroy

            destroy(self.root)
        self.root = self.surface = self.overlay = None
        self._surface_gnode = self._overlay_gnode = None
        self._surface_vdata = self._overlay_vdata = None


class LoopHeights:
    """The ``interp`` reference of the heights stage: a Python loop, one state at a time, of the
    scalar bilinear interpolation and the scalar height formula over ``heatmap``'s grid."""

    def __init__(self, heatmap: CriticHeatmap) -> None:
        self.heatmap = heatmap

    def heights(self, states: ArrayLike) -> NDArray[np.float64]:
        s = as_state_batch(states, 2)
        hm = self.heatmap
        out = np.empty(len(s), dtype=np.float64)
        for n in range(len(s)):
            out[n] = hm._height_scalar(hm._interpolate_q_from_grid(s[n]))
        return out
