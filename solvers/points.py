"""Off-grid point sampling (sensors) and spreading (sources).

A :class:`PointSampler` holds, for ``n`` physical positions, the indices and weights of the grid
points around each one. ``gather`` interpolates a field at the positions; ``scatter`` is its exact
adjoint and spreads point values onto the grid (used for point sources, so that a source and a
sensor at the same place are reciprocal).

Kernels:
- ``"linear"``: multilinear, ``2**ndim`` neighbours; second-order accurate.
- ``"sinc"``: band-limited interpolation, a sinc truncated to ``2 * radius`` points per axis and
  tapered by a Blackman window (as k-Wave's off-grid sources); spectrally accurate for
  well-resolved fields, exact on grid points.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from solvers.grid import Grid
from solvers.validate import check_choice

KERNELS = ("linear", "sinc")


def _weights_1d(frac_pos: np.ndarray, kernel: str, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """1D stencils: (first index, weights) for fractional grid positions.

    Args:
        frac_pos: positions in grid units, shape ``(n,)``.
    Returns:
        ``base`` of shape ``(n,)`` (int) and ``w`` of shape ``(n, width)``.
    """
    if kernel == "linear":
        base = np.floor(frac_pos).astype(np.int64)
        t = frac_pos - base
        return base, np.stack([1.0 - t, t], axis=1)
    base = np.floor(frac_pos).astype(np.int64) - radius + 1
    offsets = np.arange(2 * radius)
    d = frac_pos[:, None] - (base[:, None] + offsets[None, :])  # distance in cells, |d| < radius
    window = 0.42 + 0.5 * np.cos(np.pi * d / radius) + 0.08 * np.cos(2 * np.pi * d / radius)
    return base, np.sinc(d) * window


class PointSampler(eqx.Module):
    """Interpolation stencils for ``n`` positions on a grid.

    Attributes:
        flat_index: flat grid indices of the stencil points, shape ``(n, m)``.
        weights: stencil weights, shape ``(n, m)`` (float64 numpy; cast at use).
        shape: the grid shape.
    """

    flat_index: np.ndarray = eqx.field(static=False)
    weights: np.ndarray = eqx.field(static=False)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, grid: Grid, positions: np.ndarray, *, kernel: str = "linear", radius: int = 4,
                 name: str = "positions"):
        """Build stencils.

        Args:
            grid: the grid.
            positions: positions in metres, shape ``(n, ndim)``; must lie inside the grid.
            kernel: ``"linear"`` or ``"sinc"``.
            radius: half-width of the sinc kernel in cells (ignored for ``"linear"``).
            name: argument name for error messages.
        """
        check_choice("kernel", kernel, KERNELS)
        pts = grid.check_points(name, positions) / grid.spacing  # (n, ndim) in grid units
        per_axis = [_weights_1d(pts[:, d], kernel, radius) for d in range(grid.ndim)]
        width = per_axis[0][1].shape[1]
        idx_list, w_list = [], []
        for combo in itertools.product(range(width), repeat=grid.ndim):
            w = np.ones(len(pts))
            idx = []
            for d, o in enumerate(combo):
                base, wd = per_axis[d]
                w = w * wd[:, o]
                idx.append(base + o)
            idx = np.stack(idx, axis=1)  # (n, ndim)
            inside = np.all((idx >= 0) & (idx < np.array(grid.shape)), axis=1)
            w = np.where(inside, w, 0.0)
            idx = np.clip(idx, 0, np.array(grid.shape) - 1)
            idx_list.append(np.ravel_multi_index(tuple(idx.T), grid.shape))
            w_list.append(w)
        self.flat_index = np.stack(idx_list, axis=1)
        self.weights = np.stack(w_list, axis=1)
        self.shape = grid.shape

    @property
    def num_points(self) -> int:
        """Number of positions ``n``."""
        return self.flat_index.shape[0]

    def gather(self, field: jnp.ndarray) -> jnp.ndarray:
        """Interpolate ``field`` (shape ``grid.shape``) at the positions; returns shape ``(n,)``."""
        flat = field.reshape(-1)
        return jnp.sum(flat[self.flat_index] * jnp.asarray(self.weights, field.dtype), axis=1)

    def scatter(self, values: jnp.ndarray) -> jnp.ndarray:
        """Spread point values (shape ``(n,)``) onto the grid; the adjoint of :meth:`gather`.

        Returns:
            array of ``grid.shape``.
        """
        contrib = values[:, None] * jnp.asarray(self.weights, values.dtype)
        flat = jnp.zeros(int(np.prod(self.shape)), values.dtype).at[self.flat_index.reshape(-1)].add(
            contrib.reshape(-1)
        )
        return flat.reshape(self.shape)
