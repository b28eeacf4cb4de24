"""Closed-form reference solutions for the acoustic solver tests.

Homogeneous lossless medium, initial pressure ``p0(r) = amplitude * exp(-r^2 / (2 sigma^2))``
centred at the origin, zero initial velocity:

- 3D (radial d'Alembert): ``p(r, t) = [(r - ct) f(r - ct) + (r + ct) f(r + ct)] / (2 r)``
  with ``f = p0`` extended evenly;
- 2D (Hankel transform): ``p(r, t) = amplitude * sigma^2 * int_0^inf exp(-k^2 sigma^2 / 2)
  cos(c k t) J0(k r) k dk``, evaluated by Simpson quadrature on a fine grid in ``k``.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import simpson
from scipy.special import j0


def gaussian_p0_3d(r: np.ndarray, t: np.ndarray, sigma: float, c: float, amplitude: float = 1.0) -> np.ndarray:
    """Pressure (Pa) of a 3D Gaussian initial pressure at distance ``r`` (m) and time ``t`` (s).

    ``r`` and ``t`` broadcast; returns float64 of the broadcast shape.
    """
    r, t = np.broadcast_arrays(np.asarray(r, np.float64), np.asarray(t, np.float64))

    def f(s: np.ndarray) -> np.ndarray:
        return amplitude * np.exp(-(s**2) / (2 * sigma**2))

    ct = c * t
    safe_r = np.where(r > 0, r, 1.0)
    general = ((r - ct) * f(r - ct) + (r + ct) * f(r + ct)) / (2 * safe_r)
    centre = f(ct) * (1 - ct**2 / sigma**2)  # the r -> 0 limit, d/ds [s f(s)] at s = ct
    return np.where(r > 0, general, centre)


def gaussian_p0_2d(r: np.ndarray, t: np.ndarray, sigma: float, c: float, amplitude: float = 1.0,
                   n_k: int = 8001) -> np.ndarray:
    """Pressure (Pa) of a 2D Gaussian initial pressure at distance ``r`` (m) and time ``t`` (s).

    The Hankel integral is truncated at ``k = 12 / sigma`` (integrand < 1e-31 beyond) and uses
    ``n_k`` Simpson nodes; accurate to ~1e-10 relative for ``c t + r < 200 sigma``.
    ``r`` and ``t`` broadcast; returns float64 of the broadcast shape.
    """
    r, t = np.broadcast_arrays(np.asarray(r, np.float64), np.asarray(t, np.float64))
    k = np.linspace(0.0, 12.0 / sigma, n_k)
    weight = amplitude * sigma**2 * np.exp(-(k**2) * sigma**2 / 2) * k
    rf, tf = r.reshape(-1), t.reshape(-1)
    out = np.empty(rf.shape)
    chunk = max(1, 2_000_000 // n_k)
    for i in range(0, rf.size, chunk):
        rr, tt = rf[i:i + chunk, None], tf[i:i + chunk, None]
        out[i:i + chunk] = simpson(weight * np.cos(c * k * tt) * j0(k * rr), x=k, axis=1)
    return out.reshape(r.shape)
