"""Grids finer or coarser than a dataset's that share its nodes, for equal-accuracy comparisons.

A fine-grid reference runs the solver at ``refine`` times the data's resolution; a coarse
candidate runs it at ``1 / coarsen`` of it. Both keep the data grid's node positions (index
``i`` at ``x = i * spacing``, as everywhere in :mod:`solvers`):

- refined by ``f``: shape ``f (n - 1) + 1``, spacing ``h / f``; data node ``i`` is node ``f i``;
- coarsened by ``f``: shape ``(n - 1) // f + 1``, spacing ``f h``; node ``j`` is data node ``f j``.

Media are carried over as their piecewise-linear interpolant (refined) or sampled at the nodes
(coarsened); smooth initial fields as their band-limited (Fourier) interpolant, the field that a
pseudospectral solver on the data grid represents.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from solvers import Grid
from solvers.validate import check_choice, check_int_range

METHODS = ("linear", "spectral")


def _factors(refine: int, coarsen: int) -> tuple[int, int]:
    refine, coarsen = check_int_range("refine", refine, 1), check_int_range("coarsen", coarsen, 1)
    if refine > 1 and coarsen > 1:
        raise ValueError(f"refine and coarsen cannot both exceed 1, got refine={refine}, coarsen={coarsen}")
    return refine, coarsen


def regrid(grid: Grid, refine: int = 1, coarsen: int = 1) -> Grid:
    """The grid refined or coarsened by an integer factor, sharing ``grid``'s nodes (see module doc)."""
    refine, coarsen = _factors(refine, coarsen)
    shape = tuple(refine * (n - 1) // coarsen + 1 for n in grid.shape)
    return Grid(shape, grid.spacing * coarsen / refine)


def cells(n: int, refine: int = 1, coarsen: int = 1) -> int:
    """A thickness of ``n`` data cells (e.g. an absorbing layer) on the regridded grid, rounded up."""
    refine, coarsen = _factors(refine, coarsen)
    return -(-n * refine // coarsen)


def point_source_gain(ndim: int, refine: int = 1, coarsen: int = 1) -> float:
    """Factor on an acoustic pressure point source's signal that keeps its radiated field.

    :class:`solvers.acoustic.PointSource` injects mass at ``2 c s / h`` per unit volume into one
    spread-out cell, a total of ``2 c s h^(ndim - 1)``; the same physical source on a grid of
    spacing ``h'`` needs ``s' = s (h / h')^(ndim - 1)``.
    """
    refine, coarsen = _factors(refine, coarsen)
    return (refine / coarsen) ** (ndim - 1)


def _refine_axis(x: jnp.ndarray, axis: int, f: int, method: str) -> jnp.ndarray:
    n = x.shape[axis]
    m = f * (n - 1) + 1
    if method == "linear":
        pos = np.arange(m) / f
        i0 = np.minimum(np.floor(pos).astype(int), n - 2)
        w = jnp.asarray((pos - i0).reshape([-1 if a == axis % x.ndim else 1 for a in range(x.ndim)]), x.dtype)
        return jnp.take(x, i0, axis) * (1 - w) + jnp.take(x, i0 + 1, axis) * w
    spec = jnp.moveaxis(jnp.fft.fft(x, axis=axis), axis, -1)
    half = (n + 1) // 2  # bins 0 .. half-1 are the non-negative frequencies
    pad = jnp.zeros((*spec.shape[:-1], f * n - n), spec.dtype)
    if n % 2 == 0:  # split the Nyquist bin between +/- n/2 so the interpolant stays real
        nyq = spec[..., n // 2: n // 2 + 1] / 2
        full = jnp.concatenate([spec[..., :half], nyq, pad[..., 1:], nyq, spec[..., half + 1:]], -1)
    else:
        full = jnp.concatenate([spec[..., :half], pad, spec[..., half:]], -1)
    out = jnp.fft.ifft(full, axis=-1)[..., :m] * f
    out = out if jnp.iscomplexobj(x) else out.real
    return jnp.moveaxis(out, -1, axis).astype(x.dtype)


def resample(x: jnp.ndarray, ndim: int, refine: int = 1, coarsen: int = 1, method: str = "linear") -> jnp.ndarray:
    """A field on the data grid, ``(..., *shape)`` with ``ndim`` spatial axes last, on the grid
    :func:`regrid` makes: refined by ``method`` (``"linear"`` for media, ``"spectral"`` for smooth
    fields, periodic), or sampled at the coarse nodes. Exact at the shared nodes."""
    refine, coarsen = _factors(refine, coarsen)
    check_choice("method", method, METHODS)
    check_int_range("ndim", ndim, 1, x.ndim)
    if coarsen > 1:
        return _every(x, ndim, coarsen)
    for axis in range(-ndim, 0) if refine > 1 else ():
        x = _refine_axis(x, axis, refine, method)
    return x


def _every(x: jnp.ndarray, ndim: int, f: int) -> jnp.ndarray:
    """Every ``f``-th node along the last ``ndim`` axes."""
    return x[(Ellipsis, *[slice(None, None, f)] * ndim)]


def data_nodes(x: jnp.ndarray, ndim: int, refine: int) -> jnp.ndarray:
    """A field on a grid refined by ``refine`` at the data grid's nodes, ``(..., *shape)``."""
    return _every(x, ndim, check_int_range("refine", refine, 1))

