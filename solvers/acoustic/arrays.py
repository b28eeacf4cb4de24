"""Transducer array geometry helpers (positions in metres)."""

from __future__ import annotations

import numpy as np

from solvers.validate import check_int_range, check_positive_finite_scalar


def ring_array(center: tuple[float, float] | np.ndarray, radius: float, n_elements: int,
               start_angle: float = 0.0) -> np.ndarray:
    """Element positions equally spaced on a circle in 2D.

    Args:
        center: ``(x0, x1)`` in metres.
        radius: ring radius in metres (> 0).
        n_elements: number of elements (>= 1).
        start_angle: angle of element 0 in radians (measured from axis 0 towards axis 1).
    Returns:
        positions of shape ``(n_elements, 2)`` in metres.
    """
    radius = check_positive_finite_scalar("radius", radius)
    n = check_int_range("n_elements", n_elements, 1)
    c = np.asarray(center, dtype=np.float64)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"center must be 2 finite coordinates in metres, got {center!r}")
    theta = start_angle + 2 * np.pi * np.arange(n) / n
    return c + radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def linear_array(start: tuple[float, ...] | np.ndarray, pitch: float, n_elements: int, axis: int = 0) -> np.ndarray:
    """Element positions on a line parallel to a grid axis.

    Args:
        start: position of element 0 in metres, shape ``(ndim,)`` (2 or 3 entries).
        pitch: element spacing in metres (> 0).
        n_elements: number of elements (>= 1).
        axis: the grid axis the array runs along.
    Returns:
        positions of shape ``(n_elements, ndim)`` in metres.
    """
    pitch = check_positive_finite_scalar("pitch", pitch)
    n = check_int_range("n_elements", n_elements, 1)
    s = np.asarray(start, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] not in (2, 3) or not np.all(np.isfinite(s)):
        raise ValueError(f"start must be 2 or 3 finite coordinates in metres, got {start!r}")
    axis = check_int_range("axis", axis, 0, s.shape[0] - 1)
    pos = np.repeat(s[None, :], n, axis=0)
    pos[:, axis] += pitch * np.arange(n)
    return pos
