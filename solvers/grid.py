"""The computational grid shared by every solver.

Grid index ``i`` along an axis sits at ``x = i * spacing`` (metres), so a grid of shape
``(n0, n1)`` covers ``[0, (n0 - 1) * spacing] x [0, (n1 - 1) * spacing]``.
"""

from __future__ import annotations

import math

import equinox as eqx
import numpy as np

from solvers.validate import check_positive_finite_scalar


class Grid(eqx.Module):
    """A uniform Cartesian grid in 2D or 3D.

    Attributes:
        shape: number of cells per axis, ``(n0, n1)`` or ``(n0, n1, n2)``; each at least 4.
        spacing: cell size in metres (the same along every axis), finite and > 0.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    spacing: float = eqx.field(static=True)

    def __init__(self, shape: tuple[int, ...] | list[int], spacing: float):
        raw = np.atleast_1d(np.asarray(shape))
        if raw.dtype == bool or not np.issubdtype(raw.dtype, np.number) or np.any(raw != np.round(raw)):
            raise ValueError(f"shape must be whole numbers of cells, got {shape}")
        shape = tuple(int(n) for n in raw)
        if len(shape) not in (2, 3):
            raise ValueError(f"shape must have 2 or 3 entries (2D or 3D), got {shape}")
        if any(n < 4 for n in shape):
            raise ValueError(f"shape entries must be >= 4 cells, got {shape}")
        self.shape = shape
        self.spacing = check_positive_finite_scalar("spacing", spacing)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of cells."""
        return math.prod(self.shape)

    @property
    def extent(self) -> tuple[float, ...]:
        """Physical length covered by the grid points per axis, ``(n - 1) * spacing`` in metres."""
        return tuple((n - 1) * self.spacing for n in self.shape)

    def axes(self) -> tuple[np.ndarray, ...]:
        """Coordinates of the grid points per axis in metres: arrays of shape ``(n_d,)``."""
        return tuple(np.arange(n) * self.spacing for n in self.shape)

    def coordinates(self) -> np.ndarray:
        """Coordinates of every grid point in metres, shape ``(ndim, *shape)``."""
        return np.stack(np.meshgrid(*self.axes(), indexing="ij"))

    def check_points(self, name: str, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Validate physical positions and return them as a float64 array of shape ``(n, ndim)``.

        Args:
            name: argument name used in the error message.
            points: positions in metres, shape ``(n, ndim)`` (a single ``(ndim,)`` point is accepted).
            margin: required distance from the grid edge in cells (e.g. a PML thickness).

        Raises:
            ValueError: if the shape is wrong, a value is not finite, or a point lies outside
                ``[margin * spacing, (n - 1 - margin) * spacing]`` along any axis.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 1:
            pts = pts[None, :]
        if pts.ndim != 2 or pts.shape[1] != self.ndim:
            raise ValueError(f"{name} must have shape (n, {self.ndim}) in metres, got {np.shape(points)}")
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"{name} must be finite, got non-finite positions")
        lo = margin * self.spacing
        hi = np.array([(n - 1 - margin) * self.spacing for n in self.shape])
        bad = np.any((pts < lo - 1e-9 * self.spacing) | (pts > hi + 1e-9 * self.spacing), axis=1)
        if np.any(bad):
            first = pts[np.argmax(bad)]
            raise ValueError(
                f"{name} must lie inside the grid, in [{lo:.6g}, {tuple(float(h) for h in hi)}] m per axis "
                f"(margin {margin} cells); {int(bad.sum())} position(s) outside, e.g. {first.tolist()}"
            )
        return pts


FFT_PRIMES = (2, 3, 5, 7)


def fft_size(n: int) -> int:
    """The smallest size ``>= n`` with no prime factor above 7.

    FFT libraries (cuFFT, pocketfft, DUCC) are fastest on such sizes and fall back to slower
    algorithms (Bluestein) for large prime factors, so pseudospectral (``pstd``) grids should use
    them, as k-Wave's ``checkFactors`` advises. Example: ``fft_size(574) == 576``.

    Raises:
        ValueError: if ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    m = int(n)
    while True:
        rest = m
        for p in FFT_PRIMES:
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1
