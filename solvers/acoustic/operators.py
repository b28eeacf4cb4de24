"""Spatial derivative operators on the staggered grid.

Pressure lives at grid points ``x_i = i * h``; the particle velocity component along axis ``d``
lives half a cell forward, at ``x_i + h / 2`` along ``d``. Two operator families:

- ``fd``: staggered finite differences of order 2, 4, 6 or 8 (periodic wrap-around via
  ``jnp.roll``; with a PML the wrap is never reached by the wave).
- ``pstd``: k-space pseudospectral derivatives with real FFTs, staggered by the shift
  ``exp(+-i k h / 2)`` and corrected by ``kappa = sinc(c_ref |k| dt / 2)`` so that the leapfrog
  time stepping is exact for a homogeneous medium with ``c = c_ref`` (as k-Wave / jwave).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Staggered-grid coefficients c_m of (f(x + (m - 1/2) h) - f(x - (m - 1/2) h)) / h, m = 1..M.
FD_COEFFS: dict[int, tuple[float, ...]] = {
    2: (1.0,),
    4: (9 / 8, -1 / 24),
    6: (75 / 64, -25 / 384, 3 / 640),
    8: (1225 / 1024, -245 / 3072, 49 / 5120, -5 / 7168),
}
FD_ORDERS = tuple(FD_COEFFS)


def _taps(f: jnp.ndarray, axis: int, offsets: range) -> list[jnp.ndarray]:
    """Periodic shifts ``f[i + k]`` along ``axis`` for each ``k`` in ``offsets``: one wrap-pad, then
    static slices (cheaper for XLA to fuse than one ``jnp.roll`` per tap)."""
    lo, hi = -min(offsets[0], 0), max(offsets[-1], 0)
    n = f.shape[axis]
    parts = ([jax.lax.slice_in_dim(f, n - lo, n, axis=axis)] if lo else []) + [f] + (
        [jax.lax.slice_in_dim(f, 0, hi, axis=axis)] if hi else [])
    padded = jnp.concatenate(parts, axis=axis)
    return [jax.lax.slice_in_dim(padded, k + lo, k + lo + n, axis=axis) for k in offsets]


def fd_forward(f: jnp.ndarray, axis: int, spacing: float, order: int) -> jnp.ndarray:
    """Derivative along ``axis`` of a grid-point field, evaluated half a cell forward (``x + h/2``).

    Args:
        f: field at grid points, any shape.
        spacing: cell size ``h`` in metres.
        order: 2, 4, 6 or 8.
    Returns:
        array of ``f.shape``; entry ``i`` is the derivative at ``(i + 1/2) h`` (per metre).
    """
    coeffs = FD_COEFFS[order]
    m_max = len(coeffs)
    taps = _taps(f, axis, range(1 - m_max, m_max + 1))  # taps[j] = f[i + j + 1 - m_max]
    out = sum(c * (taps[m + m_max - 1] - taps[m_max - m]) for m, c in enumerate(coeffs, 1))
    return out / spacing


def fd_backward(g: jnp.ndarray, axis: int, spacing: float, order: int) -> jnp.ndarray:
    """Derivative along ``axis`` of a staggered field (entry ``i`` at ``(i + 1/2) h``), at grid points.

    The negative adjoint of :func:`fd_forward`.
    """
    coeffs = FD_COEFFS[order]
    m_max = len(coeffs)
    taps = _taps(g, axis, range(-m_max, m_max))  # taps[j] = g[i + j - m_max]
    out = sum(c * (taps[m + m_max - 1] - taps[m_max - m]) for m, c in enumerate(coeffs, 1))
    return out / spacing


def fd_stability_sum(order: int) -> float:
    """``sum |c_m|`` of the stencil; leapfrog is stable for ``c dt / h <= 1 / (sqrt(ndim) * sum)``."""
    return float(sum(abs(c) for c in FD_COEFFS[order]))


def wavenumbers(shape: tuple[int, ...], spacing: float) -> list[np.ndarray]:
    """Angular wavenumbers (rad/m) per axis for ``rfftn``, each reshaped to broadcast over the
    half-spectrum shape ``(*shape[:-1], shape[-1] // 2 + 1)``."""
    nd = len(shape)
    out = []
    for d, n in enumerate(shape):
        k = 2 * np.pi * (np.fft.rfftfreq(n, spacing) if d == nd - 1 else np.fft.fftfreq(n, spacing))
        out.append(k.reshape([-1 if e == d else 1 for e in range(nd)]))
    return out


def wavenumber_magnitude(shape: tuple[int, ...], spacing: float) -> np.ndarray:
    """``|k|`` (rad/m) on the ``rfftn`` half spectrum, shape ``(*shape[:-1], shape[-1] // 2 + 1)``."""
    return np.sqrt(sum(k**2 for k in wavenumbers(shape, spacing)))


def spectral_multipliers(shape: tuple[int, ...], spacing: float, c_ref: jnp.ndarray, dt: jnp.ndarray,
                         dtype: jnp.dtype) -> tuple[tuple[jnp.ndarray, ...], tuple[jnp.ndarray, ...]]:
    """k-space derivative multipliers per axis.

    Returns:
        ``(forward, backward)``: tuples of ``ndim`` complex arrays on the ``rfftn`` half spectrum;
        ``forward[d] = i k_d exp(+i k_d h / 2) kappa`` (grid points -> staggered) and
        ``backward[d] = i k_d exp(-i k_d h / 2) kappa`` (staggered -> grid points), with
        ``kappa = sinc(c_ref |k| dt / 2)``.
    """
    ks = wavenumbers(shape, spacing)
    kmag = jnp.asarray(wavenumber_magnitude(shape, spacing), dtype)
    kappa = jnp.sinc(c_ref * kmag * dt / (2 * np.pi)).astype(dtype)
    cdt = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    fwd = tuple(jnp.asarray(1j * k * np.exp(1j * k * spacing / 2), cdt) * kappa for k in ks)
    bwd = tuple(jnp.asarray(1j * k * np.exp(-1j * k * spacing / 2), cdt) * kappa for k in ks)
    return fwd, bwd
