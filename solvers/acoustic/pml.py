"""Perfectly matched layer (split-field, k-Wave style) inside the grid.

The layer occupies the outer ``size`` cells on every side. Its absorption profile is
``sigma(x) = alpha * c_ref / h * depth(x)**4`` (1/s), with ``depth`` going from 0 at the inner edge
to 1 at the grid boundary, and is applied as ``u <- a * (a * u + dt * rhs)`` with
``a = exp(-sigma * dt / 2)`` (exact for the pure decay part).
"""

from __future__ import annotations

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

