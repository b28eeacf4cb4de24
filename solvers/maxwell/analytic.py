"""Closed-form references: Mie series for a dielectric cylinder (2D TM and TE), Fresnel, Fabry-Perot.

Convention: time dependence ``exp(-i omega t)``; a unit incident plane wave travelling along +x
is ``exp(i k x)``; outgoing waves are Hankel functions of the first kind.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def _mie_coefficients(n: int, k0: float, k1: float, radius: float, p0: float, p1: float):
    """Scattered (``a_n``) and internal (``c_n``) coefficients of order ``n``."""
    a0, a1 = k0 * radius, k1 * radius
    j0, j0p = special.jv(n, a0), special.jvp(n, a0)
    j1, j1p = special.jv(n, a1), special.jvp(n, a1)
    h0, h0p = special.hankel1(n, a0), special.h1vp(n, a0)
    den = p0 * h0p * j1 - p1 * j1p * h0
    return (p1 * j1p * j0 - p0 * j0p * j1) / den, p0 * (j0 * h0p - j0p * h0) / den


def mie_cylinder(x: np.ndarray, y: np.ndarray, wavelength: float, radius: float, index: float,
                 centre: tuple[float, float] = (0.0, 0.0), polarization: str = "TM",
                 background_index: float = 1.0, terms: int | None = None, component: str = "axial"):
    """Total field of a unit plane wave (along +x) scattered by an infinite dielectric cylinder.

    TM: the axial field is ``Ez`` (E along the cylinder axis); TE: ``eta0 Hz``, and
    ``component="E"`` gives the in-plane electric field ``(Ex, Ey) = i / (k0 eps) (dHz/dy, -dHz/dx)``.
    Boundary conditions at ``r = radius``: the axial field and ``(1 / eps) d field / dr`` (TE) or
    ``d field / dr`` (TM) are continuous.

    Args:
        x, y: evaluation coordinates in m (any matching shapes).
        wavelength: vacuum wavelength in m; radius in m; index: cylinder refractive index.
        centre: cylinder axis position in m; background_index: surrounding refractive index.
        terms: highest Bessel order (default from Wiscombe's criterion).
        component: "axial" (Ez or eta0 Hz) or, for TE only, "E".

    Returns:
        complex array of the shape of ``x`` ("axial"), or a tuple ``(Ex, Ey)`` ("E"); the incident
        wave has phase 0 at ``centre``.
    """
    if component not in ("axial", "E") or (component == "E" and polarization != "TE"):
        raise ValueError(f"component must be 'axial', or 'E' with polarization 'TE', got {component!r}")
    k0 = 2 * np.pi / wavelength * background_index
    k1 = 2 * np.pi / wavelength * index
    dx, dy = np.asarray(x, np.float64) - centre[0], np.asarray(y, np.float64) - centre[1]
    r, phi = np.hypot(dx, dy), np.arctan2(dy, dx)
    size = k1 * radius
    n_max = terms if terms is not None else int(np.ceil(size + 4 * size ** (1 / 3) + 2)) + 10
    p0, p1 = (k0, k1) if polarization == "TM" else (k0 / background_index**2, k1 / index**2)
    inside = r < radius
    z_in, z_out = k1 * r[inside], k0 * r[~inside]
    # Bessel values of orders 0 .. n_max + 1 (derivatives from the recurrence); a_{-n} = a_n and
    # c_{-n} = c_n, so orders +-n combine into 2 i^n cos(n phi) (and -2 n i^n sin(n phi) for d/dphi).
    orders = np.arange(n_max + 2)[:, None]
    j_in = special.jv(orders, z_in[None])
    j_out, y_out = special.jv(orders, z_out[None]), special.yv(orders, z_out[None])
    field = np.zeros(r.shape, complex)
    d_r = np.zeros(r.shape, complex)
    d_phi = np.zeros(r.shape, complex)
    for n in range(n_max + 1):
        a_n, c_n = _mie_coefficients(n, k0, k1, radius, p0, p1)
        weight = 1.0 if n == 0 else 2.0
        ang = weight * (1j**n) * np.cos(n * phi)
        ang_phi = -weight * n * (1j**n) * np.sin(n * phi)
        jm_in = j_in[n - 1] if n > 0 else -j_in[1]  # J_{-1} = -J_1
        jm_out = j_out[n - 1] if n > 0 else -j_out[1]
        ym_out = y_out[n - 1] if n > 0 else -y_out[1]
        val = np.empty(r.shape, complex)
        val[inside] = c_n * j_in[n]
        h_out = j_out[n] + 1j * y_out[n]
        val[~inside] = j_out[n] + a_n * h_out
        field += val * ang
        if component == "E":
            der = np.empty(r.shape, complex)
            der[inside] = c_n * k1 * 0.5 * (jm_in - j_in[n + 1])
            jp = 0.5 * (jm_out - j_out[n + 1])
            hp = jp + 1j * 0.5 * (ym_out - y_out[n + 1])
            der[~inside] = k0 * (jp + a_n * hp)
            d_r += der * ang
            d_phi += val * ang_phi
    if component == "axial":
        return field
    r_safe = np.where(r > 0, r, 1e-300)
    d_x = np.cos(phi) * d_r - np.sin(phi) / r_safe * d_phi
    d_y = np.sin(phi) * d_r + np.cos(phi) / r_safe * d_phi
    eps = np.where(inside, index**2, background_index**2)
    k_vac = 2 * np.pi / wavelength
    return 1j / (k_vac * eps) * d_y, -1j / (k_vac * eps) * d_x


def fresnel_normal(n1: float, n2: float) -> float:
    """Amplitude reflection coefficient ``(n1 - n2) / (n1 + n2)`` at normal incidence from medium 1."""
    return (n1 - n2) / (n1 + n2)


def slab_transmission(wavelength: float, thickness: float, index: float) -> complex:
    """Amplitude transmission of a lossless slab in vacuum at normal incidence (Fabry-Perot).

    ``t = (1 - r^2) exp(i delta) / (1 - r^2 exp(2 i delta))`` with ``r = (1 - n) / (1 + n)`` and
    ``delta = n k0 d``; the vacuum phase ``exp(i k0 d)`` over the slab thickness is not removed.
    """
    r = (1 - index) / (1 + index)
    delta = index * 2 * np.pi / wavelength * thickness
    return (1 - r**2) * np.exp(1j * delta) / (1 - r**2 * np.exp(2j * delta))


def mie_cylinder_setup(cells_per_wavelength: float, *, wavelength: float = 1e-6, index: float = 1.5,
                       radius: float | None = None, pml_size: int = 20, subpixel: bool = False):
    """The Mie validation problem: a dielectric cylinder centred in a square 2D grid.

    The grid spans ``2.4 wavelength`` plus the CPML on each side, with ``cells_per_wavelength``
    cells per wavelength inside the cylinder (``wavelength / index``).

    Args:
        cells_per_wavelength: resolution inside the dielectric.
        wavelength: vacuum wavelength in m; index: cylinder refractive index (background 1).
        radius: cylinder radius in m (default ``wavelength / 2``).
        pml_size: CPML cells.
        subpixel: build the medium with sub-pixel averaging (:func:`subpixel.smoothed_medium`).

    Returns:
        ``(grid, medium, centre)`` with ``centre`` the cylinder axis in m, shape ``(2,)``.
    """
    from solvers.grid import Grid
    from solvers.maxwell.medium import Medium
    from solvers.maxwell.subpixel import smoothed_medium

    radius = wavelength / 2 if radius is None else radius
    dx = wavelength / index / cells_per_wavelength
    n = int(round(2.4 * wavelength / dx)) + 2 * pml_size
    grid = Grid((n, n), dx)
    centre = np.array(grid.extent) / 2

    def permittivity(x: np.ndarray) -> np.ndarray:
        return np.where((x[0] - centre[0]) ** 2 + (x[1] - centre[1]) ** 2 < radius**2, index**2, 1.0)

    medium = smoothed_medium(grid, permittivity) if subpixel else Medium(permittivity(grid.coordinates()))
    return grid, medium, centre
