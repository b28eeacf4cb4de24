"""Perfectly matched layer (split-field, k-Wave style) inside the grid.

The layer occupies the outer ``size`` cells on every side. Its absorption profile is
``sigma(x) = alpha * c_ref / h * depth(x)**4`` (1/s), with ``depth`` going from 0 at the inner edge
to 1 at the grid boundary, and is applied as ``u <- a * (a * u + dt * rhs)`` with
``a = exp(-sigma * dt / 2)`` (exact for the pure decay part).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def pml_depth(n: int, size: int, staggered: bool) -> np.ndarray:
    """Normalised depth into the layer along one axis, shape ``(n,)``.

    Args:
        n: cells along the axis.
        size: layer thickness in cells (> 0).
        staggered: evaluate at ``i + 1/2`` (velocity points) instead of ``i``.
    """
    pos = np.arange(n) + (0.5 if staggered else 0.0)
    depth = np.maximum(np.maximum(size - pos, pos - (n - 1 - size)), 0.0)
    return depth / size


def pml_factor(depth: np.ndarray, axis: int, ndim: int, sigma_max: jnp.ndarray, duration: jnp.ndarray,
               dtype: jnp.dtype) -> jnp.ndarray:
    """``exp(-sigma * duration / 2)`` along ``axis``, shaped to broadcast over the grid.

    Args:
        depth: output of :func:`pml_depth`, shape ``(n,)``.
        sigma_max: ``alpha * c_ref / h`` in 1/s.
        duration: the time span of the update in s (``dt`` or ``dt / 2``).
    """
    sigma = sigma_max * jnp.asarray(depth**4, dtype)
    return jnp.exp(-sigma * duration / 2).reshape([-1 if e == axis else 1 for e in range(ndim)])
