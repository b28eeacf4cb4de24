"""Convolutional PML (CFS-CPML, Roden & Gedney 2000) coefficients on the Yee grid.

Inside a layer of ``size`` cells at each end of a non-periodic axis, every spatial derivative
``d`` along that axis is replaced by ``d + psi`` with the recursive convolution
``psi <- b * psi + c * d``. Grading (kappa = 1):

    sigma(u) dt / eps0 = 0.8 (m + 1) S u^m,     alpha(u) dt / eps0 = alpha_max (1 - u),

where ``u`` in [0, 1] is the depth into the layer, ``m = 3`` and ``S = c0 dt / dx`` the Courant
number (``0.8 (m + 1) / (eta0 dx)`` is the usual optimal conductivity). ``psi`` is stored only on
the two slabs, an axis of length ``2 * size``, and is applied as ``d + embed(psi)``: the slabs
concatenated around zeros to the full length, which XLA can fuse with ``d`` into the field update
(no full-size intermediate per derivative term).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

GRADING_ORDER = 3
ALPHA_MAX = 0.05  # CFS shift in units of S (per-step normalised)


def slab_positions(n: int, size: int, offset: float) -> np.ndarray:
    """Positions in cells of the ``2 * size`` slab nodes (first ``size`` and last ``size`` indices)."""
    idx = np.concatenate([np.arange(size), np.arange(n - size, n)])
    return idx + offset


def coefficients(n: int, size: int, offset: float, courant: float) -> tuple[np.ndarray, np.ndarray]:
    """Recursive-convolution coefficients ``(b, c)``, each of shape ``(2 * size,)``.

    Args:
        n: cells along the axis.
        size: layer thickness in cells (> 0).
        offset: 0 for nodes at integer positions, 0.5 for half-cell positions.
        courant: ``c0 dt / dx``.
    """
    x = slab_positions(n, size, offset)
    inner_lo, inner_hi = float(size), float(n - 1 - size)
    depth = np.clip(np.maximum(inner_lo - x, x - inner_hi) / size, 0.0, 1.0)
    sigma = 0.8 * (GRADING_ORDER + 1) * courant * depth**GRADING_ORDER
    alpha = ALPHA_MAX * courant * (1.0 - depth)
    b = np.exp(-(sigma + alpha))
    total = sigma + alpha
    c = np.where(total > 0, sigma / np.where(total > 0, total, 1.0) * (b - 1.0), 0.0)
    return b, c


def embed(psi: jax.Array, axis: int, n: int) -> jax.Array:
    """Slab memory at both ends of zeros: shape of ``psi`` with ``axis`` grown from ``2 * size`` to ``n``.

    A concatenate (not an in-place update of a materialised array), so that XLA can fuse it
    into its consumer.
    """
    size = psi.shape[axis] // 2
    zeros = jnp.zeros((*psi.shape[:axis], n - 2 * size, *psi.shape[axis + 1:]), psi.dtype)
    return jnp.concatenate([lax.slice_in_dim(psi, 0, size, axis=axis), zeros,
                            lax.slice_in_dim(psi, size, 2 * size, axis=axis)], axis)
