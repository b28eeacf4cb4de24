"""Maxwell FDTD against closed-form solutions: Mie (TM, TE), Fresnel, Fabry-Perot (3D), CPML reflection."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from solvers import Grid, maxwell

LAM0 = 1.0e-6
N_CYL = 1.5
RADIUS = LAM0 / 2


@functools.lru_cache(maxsize=None)
def _mie_error(polarization: str, cells_per_wavelength: float, subpixel: bool, quantity: str = "axial") -> float:
    """Rel L2 error of |field| inside the n=1.5, radius lam0/2 cylinder.

    ``quantity="axial"``: TM |Ez| or TE |eta0 Hz| at their Yee positions. ``quantity="E"`` (TE): the
    in-plane |Ex|, |Ey| at their Yee positions against the analytic field averaged over the Yee cell
    (6 x 6 samples), which is what a component straddling the interface represents (E normal to the
    interface jumps there, so point values are not a meaningful reference within a cell of it).
    ``cells_per_wavelength`` counts cells per wavelength inside the dielectric (lam0 / 1.5).
    """
    pml = 20
    grid, medium, centre = maxwell.analytic.mie_cylinder_setup(cells_per_wavelength, wavelength=LAM0, index=N_CYL,
                                                               radius=RADIUS, pml_size=pml, subpixel=subpixel)
    dx = grid.spacing
    names = ("Ex", "Ey") if quantity == "E" else None
    res = maxwell.simulate(grid, medium, maxwell.PlaneWave(LAM0), polarization=polarization, pml_size=pml,
                           subpixel=subpixel, components=names)
    assert res.converged
    x, y = grid.coordinates()
    if quantity == "axial":
        shift = (0.5 if polarization == "TE" else 0.0) * dx  # TE: Hz sits at cell centres
        x, y = x + shift, y + shift
        inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 < RADIUS**2
        ref = maxwell.analytic.mie_cylinder(x[inside], y[inside], LAM0, RADIUS, N_CYL, centre=tuple(centre),
                                            polarization=polarization)
        sim = np.asarray(res.field[0])[inside]
        return float(np.linalg.norm(np.abs(sim) - np.abs(ref)) / np.linalg.norm(np.abs(ref)))
    sub = ((np.arange(6) + 0.5) / 6 - 0.5) * dx
    num = den = 0.0
    for k, name in enumerate(names):
        xs, ys = x + (dx / 2 if k == 0 else 0.0), y + (dx / 2 if k == 1 else 0.0)
        inside = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 < RADIUS**2
        ox, oy = (o.reshape(1, -1) for o in np.meshgrid(sub, sub, indexing="ij"))
        ref = maxwell.analytic.mie_cylinder(xs[inside][:, None] + ox, ys[inside][:, None] + oy, LAM0, RADIUS,
                                            N_CYL, centre=tuple(centre), polarization="TE", component="E")[k]
        ref = ref.mean(axis=1)
        sim = np.asarray(res.components[name][0])[inside]
        num += np.sum((np.abs(sim) - np.abs(ref)) ** 2)
        den += np.sum(np.abs(ref) ** 2)
    return float(np.sqrt(num / den))


MIE_CASES = [("TM", "axial"), ("TE", "axial"), ("TE", "E")]


def _mie_check(polarization: str, quantity: str, subpixel: bool) -> str:
    field = {("TM", "axial"): "|Ez|", ("TE", "axial"): "|eta0 Hz|", ("TE", "E"): "in-plane |E|"}[polarization, quantity]
    return f"Mie cylinder n = 1.5, r = lambda0/2, {polarization} {field}, {'subpixel' if subpixel else 'staircased'}"


MIE_REGION = "inside the cylinder; rel L2 of the magnitude against the Mie series, 20-cell CPML"


@pytest.mark.parametrize("polarization,quantity", MIE_CASES)
def test_mie_cylinder_staircased(record_figure, polarization, quantity):
    """20 cells per wavelength in the dielectric: |Ez| (TM), |eta0 Hz| and |E| (TE) rel L2 inside <= 3%."""
    err = _mie_error(polarization, 20, subpixel=False, quantity=quantity)
    record_figure(_mie_check(polarization, quantity, False), err, tolerance="<= 0.03", dtype=np.float32,
                  region=f"20 cells per wavelength in the dielectric, {MIE_REGION}")
    assert err <= 0.03, err


@pytest.mark.parametrize("polarization,quantity", MIE_CASES)
def test_mie_cylinder_subpixel(record_figure, polarization, quantity):
    """Sub-pixel averaging at 20 cells per wavelength: <= 1.5%, and below 0.6x the staircased error."""
    err = _mie_error(polarization, 20, subpixel=True, quantity=quantity)
    record_figure(_mie_check(polarization, quantity, True), err, tolerance="<= 0.015 and <= 0.6 x staircased",
                  dtype=np.float32, region=f"20 cells per wavelength in the dielectric, {MIE_REGION}")
    assert err <= 0.015, err
    assert err <= 0.6 * _mie_error(polarization, 20, subpixel=False, quantity=quantity)


def test_mie_convergence():
    """The sub-pixel TM error falls with resolution (10 -> 20 cells per wavelength: at least 2x)."""
    coarse = _mie_error("TM", 10, subpixel=True)
    fine = _mie_error("TM", 20, subpixel=True)
    assert fine < coarse / 2, (coarse, fine)


@pytest.mark.slow
@pytest.mark.parametrize("polarization,quantity", MIE_CASES)
@pytest.mark.parametrize("subpixel", [False, True])
def test_mie_convergence_full(record_figure, polarization, quantity, subpixel):
    """Errors at 10, 20, 40 cells per wavelength decrease monotonically."""
    errs = [_mie_error(polarization, c, subpixel=subpixel, quantity=quantity) for c in (10, 20, 40)]
    record_figure(_mie_check(polarization, quantity, subpixel) + ", 40 cells per wavelength", errs[2],
                  tolerance="below the error at 20 (below that at 10)", dtype=np.float32,
                  region=f"10, 20, 40 cells per wavelength in the dielectric, {MIE_REGION}",
                  detail=f"{errs[0]:.2g} at 10, {errs[1]:.2g} at 20")
    assert errs[0] > errs[1] > errs[2], errs


@pytest.mark.parametrize("n2", [1.5, 3.0])
def test_fresnel_normal_incidence(record_figure, n2):
    """|r| within 1% of |(n1 - n2)/(n1 + n2)| (40 cells per wavelength in the dense medium).

    1D-like grid (periodic along y); the far TFSF face is opened so the wave enters the half-space;
    the scattered-field region in front of the TFSF face holds only the reflected wave.
    """
    dx = LAM0 / n2 / 40
    pml, margin = 20, 12
    n = 400
    grid = Grid((n, 4), dx)
    eps = np.ones(grid.shape)
    eps[240:] = n2**2
    res = maxwell.simulate(grid, maxwell.Medium(eps), maxwell.PlaneWave(LAM0), periodic=(False, True),
                           pml_size=pml, tfsf_margin=margin, tfsf_open=[(0, "high")])
    r = np.abs(np.asarray(res.field[0]))[pml + 2: pml + margin - 2, 1]
    expected = abs(maxwell.analytic.fresnel_normal(1.0, n2))
    record_figure(f"Fresnel |r| at normal incidence, n2 = {n2:g}", np.max(np.abs(r - expected)) / expected,
                  tolerance="<= 0.01", dtype=np.float32, region="400 x 4, 40 cells per wavelength in the dense "
                  "medium, 20-cell CPML; worst relative deviation over the reflected-wave region")
    assert np.max(np.abs(r - expected)) <= 0.01 * expected, (r.min(), r.max(), expected)


def test_fabry_perot_slab_3d(record_figure):
    """3D Yee: transmission through an n=2 slab (periodic x-section) within 2% of Fabry-Perot."""
    n_slab = 2.0
    dx = LAM0 / n_slab / 30
    grid = Grid((160, 4, 4), dx)
    eps = np.ones(grid.shape)
    m = 37  # slab nodes: thickness m * dx
    eps[70:70 + m] = n_slab**2
    res = maxwell.simulate(grid, maxwell.Medium(eps), maxwell.PlaneWave(LAM0), periodic=(False, True, True),
                           tfsf_open=[(0, "high")])
    assert res.field.shape == (1, 3, *grid.shape)
    t_sim = np.abs(np.asarray(res.field[0, 2, 115:130, 1, 1]))
    t_ref = abs(maxwell.analytic.slab_transmission(LAM0, m * dx, n_slab))
    record_figure("3D Yee slab transmission (n = 2) vs Fabry-Perot", np.max(np.abs(t_sim - t_ref)) / t_ref,
                  tolerance="<= 0.02", dtype=np.float32, region="160 x 4 x 4, periodic cross-section, 30 cells per "
                  "wavelength in the slab; worst relative deviation of |Ez| over 15 cells behind it")
    assert np.max(np.abs(t_sim - t_ref)) <= 0.02 * t_ref, (t_sim.min(), t_sim.max(), t_ref)
    # the other components stay zero for a z-polarised wave at normal incidence
    assert float(np.max(np.abs(np.asarray(res.field[0, :2])))) < 1e-6


def test_cpml_reflection_below_minus_40_db(record_figure):
    """A broadband pulse from a point source: traces near a 20-cell CPML vs a domain 100 cells larger.

    Reflection = max |trace - reference| / max |reference| over three probes 2-3 cells from the
    layer (normal and corner incidence); must be <= -40 dB.
    """
    dx, pml, n_int = LAM0 / 20, 20, 40
    duration = 200 * dx / maxwell.C0

    def traces(extra):
        n = n_int + 2 * pml + 2 * extra
        o = (pml + extra) * dx
        src = maxwell.PointDipole(LAM0, position=(o + n_int // 2 * dx,) * 2, waveform="pulse", bandwidth=1.0)
        probes = o + dx * np.array([[2, n_int // 2], [2, 2], [n_int // 2, n_int - 3]])
        res = maxwell.simulate(Grid((n, n), dx), maxwell.Medium(1.0), src, duration=duration, pml_size=pml,
                               points=probes)
        return np.asarray(res.traces[:, 0, :])

    a, ref = traces(0), traces(100)
    assert np.max(np.abs(ref)) > 1e-3  # the pulse has reached the probes
    reflection_db = 20 * np.log10(np.max(np.abs(a - ref), axis=0) / np.max(np.abs(ref), axis=0))
    record_figure("Maxwell CPML reflection at 20 cells, broadband pulse", np.max(reflection_db),
                  tolerance="<= -40 dB", dtype=np.float32, unit="dB", region="2D TM, 20 cells per wavelength, "
                  "3 probes 2-3 cells from the layer (normal and corner incidence) against a 100-cell larger domain; worst probe")
    assert np.all(reflection_db <= -40), reflection_db


def test_point_dipole_matches_2d_green_function(record_figure):
    """A CW line current in vacuum: Ez(r) / Ez(r0) against H0(k r) / H0(k r0) (k: Yee numerical wavenumber),
    along +x, +y and -x, r = 0.5 .. 2 wavelengths: within 3% (complex)."""
    from scipy import special

    from solvers.maxwell.sources import numerical_wavenumber

    dx, pml = LAM0 / 20, 15
    n = 2 * pml + 100
    grid = Grid((n, n), dx)
    i0 = n // 2  # source on a grid node
    res = maxwell.simulate(grid, maxwell.Medium(1.0), maxwell.PointDipole(LAM0, position=(i0 * dx, i0 * dx)),
                           pml_size=pml)
    f = np.asarray(res.field[0])
    k = numerical_wavenumber(np.array([1.0, 0.0]), 2 * np.pi * maxwell.C0 / LAM0, res.dt, dx, 1.0)
    r = np.array([10, 20, 30, 40])
    ref = special.hankel1(0, k * r * dx) / special.hankel1(0, k * r[0] * dx)
    devs = [np.max(np.abs(sim / f[i0 + r[0], i0] / ref - 1)) for sim in (f[i0 + r, i0], f[i0, i0 + r], f[i0 - r, i0])]
    record_figure("CW line current vs the 2D Green's function H0(k r)", max(devs), tolerance="<= 0.03",
                  dtype=np.float32, region="130², 20 cells per wavelength, r = 0.5-2 wavelengths along +x, +y, -x; "
                  "worst complex relative deviation")
    for dev in devs:
        assert dev <= 0.03


def test_gaussian_beam_waist_profile(record_figure):
    """TFSF Gaussian beam (waist 1.5 lam0, 15 cells per wavelength): at the focus |Ez| = exp(-(y/w0)^2)
    within 2% rel L2 over |y| < 2 w0, peak within 2% of 1."""
    dx, pml = LAM0 / 15, 15
    grid = Grid((2 * pml + 90, 2 * pml + 120), dx)
    centre = np.array(grid.extent) / 2
    w0 = 1.5 * LAM0
    res = maxwell.simulate(grid, maxwell.Medium(1.0), maxwell.GaussianBeam(LAM0, waist=w0, focus=tuple(centre)),
                           pml_size=pml)
    f = np.abs(np.asarray(res.field[0]))[int(round(centre[0] / dx))]
    y = np.arange(grid.shape[1]) * dx - centre[1]
    near = np.abs(y) < 2 * w0
    ref = np.exp(-((y[near] / w0) ** 2))
    err = np.linalg.norm(f[near] - ref) / np.linalg.norm(ref)
    record_figure("TFSF Gaussian beam |Ez| at the focus vs exp(-(y/w0)^2)", err, tolerance="<= 0.02",
                  dtype=np.float32, region="waist 1.5 lambda0, 15 cells per wavelength, |y| < 2 w0; rel L2",
                  detail=f"peak {f[near].max():.4f}")
    assert abs(f[near].max() - 1) <= 0.02
    assert err <= 0.02


def test_mie_series_satisfies_interface_conditions():
    """The analytic reference itself: at r = a -/+ 1e-9 a, Ez (TM) and eta0 Hz (TE) are continuous,
    and for TE the tangential E and the normal D = eps E are continuous, the normal E jumps by n^2."""
    phi = np.linspace(0, 2 * np.pi, 13)
    r_in, r_out = RADIUS * (1 - 1e-9), RADIUS * (1 + 1e-9)
    for pol in ("TM", "TE"):
        f_in = maxwell.analytic.mie_cylinder(r_in * np.cos(phi), r_in * np.sin(phi), LAM0, RADIUS, N_CYL,
                                             polarization=pol)
        f_out = maxwell.analytic.mie_cylinder(r_out * np.cos(phi), r_out * np.sin(phi), LAM0, RADIUS, N_CYL,
                                              polarization=pol)
        np.testing.assert_allclose(f_in, f_out, atol=1e-6)
    e_in = maxwell.analytic.mie_cylinder(r_in * np.cos(phi), r_in * np.sin(phi), LAM0, RADIUS, N_CYL,
                                         polarization="TE", component="E")
    e_out = maxwell.analytic.mie_cylinder(r_out * np.cos(phi), r_out * np.sin(phi), LAM0, RADIUS, N_CYL,
                                          polarization="TE", component="E")
    radial = [np.cos(phi) * e[0] + np.sin(phi) * e[1] for e in (e_in, e_out)]
    tangential = [-np.sin(phi) * e[0] + np.cos(phi) * e[1] for e in (e_in, e_out)]
    np.testing.assert_allclose(tangential[0], tangential[1], atol=1e-6)
    np.testing.assert_allclose(N_CYL**2 * radial[0], radial[1], atol=1e-6)
    assert np.max(np.abs(radial[1] - radial[0])) > 0.1  # the normal E does jump
