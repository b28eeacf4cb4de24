"""Staggered finite-difference stencils: Taylor and time-space dispersion-optimised coefficients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers import Grid, acoustic
from solvers.acoustic import operators

BETA = np.linspace(0.05, 2 * np.pi / 5, 40)  # |k| h down to 5 cells per wavelength


@pytest.mark.parametrize("ndim", [2, 3])
def test_dispersion_stencils_are_consistent_and_cut_the_phase_error(record_figure, ndim):
    dirs = operators._directions(ndim)
    courant, table = operators.dispersion_table(8, ndim)
    assert table.shape == (41, 4) and courant[0] == 0.0
    odd = 2 * np.arange(1, 5) - 1
    np.testing.assert_allclose(table @ odd, 1.0, atol=1e-12)  # exact for long waves
    for r in (0.2, 0.3):
        taylor = np.abs(operators.phase_velocity_error(operators.FD_COEFFS[8], r, BETA, dirs)).max()
        fitted = operators.fd_coefficients(8, "dispersion", r, ndim)
        tuned = np.abs(operators.phase_velocity_error(np.asarray(fitted), r, BETA, dirs)).max()
        record_figure(f"`fd8` dispersion stencil's worst phase-velocity error over Taylor's, {ndim}D, CFL {r:g}",
                      tuned / taylor, tolerance="< 0.5", dtype=np.float64, unit="ratio",
                      region=f"dispersion relation, {len(dirs)} directions, down to 5 points per wavelength",
                      detail=f"{tuned:.2g} vs {taylor:.2g}")
        assert tuned < 0.5 * taylor, (r, tuned, taylor)


def test_taylor_stencils_have_their_formal_order():
    """Without time stepping (Courant number 0) the phase error of order p falls as h^p."""
    for order in operators.FD_ORDERS:
        e = [abs(float(operators.phase_velocity_error(operators.FD_COEFFS[order], 0.0, np.array([b]),
                                                      np.ones((1, 1)))[0, 0])) for b in (0.2, 0.1)]
        assert e[0] / e[1] == pytest.approx(2.0**order, rel=0.05)


def test_dispersion_stability_bound_and_bad_input():
    grid = Grid((32, 32), 1e-4)
    water = acoustic.Medium(1500.0, 1000.0)
    taylor = acoustic.stable_dt(grid, water, "fd", 8)
    tuned = acoustic.stable_dt(grid, water, "fd", 8, fd_coefficients="dispersion")
    assert 0.8 * taylor < tuned < taylor  # the fitted stencils have a larger sum |c_m|
    with pytest.raises(ValueError, match="cfl must be <="):
        acoustic.time_axis(grid, water, 1e-6, cfl=0.52, scheme="fd", fd_order=8, fd_coefficients="dispersion")
    with pytest.raises(ValueError, match="fd_coefficients must be one of"):
        acoustic.simulate(grid, water, 1e-6, p0=np.zeros((32, 32)), scheme="fd", fd_coefficients="optimal")
    with pytest.raises(ValueError, match="courant"):
        operators.fd_coefficients(4, "dispersion")


@pytest.mark.parametrize("fd", [{"fd_order": 8}, {"fd_coefficients": "dispersion"}])
def test_pstd_rejects_stencil_settings_it_would_ignore(fd):
    """One rule for every entry point: ``pstd`` has no stencil, so a non-default ``fd_order`` or
    ``fd_coefficients`` raises (the data config and the simulate config say the same)."""
    from pdesurrogate.config import parse
    from training.simulation.acoustic import AcousticSimulation

    grid = Grid((32, 32), 1e-4)
    water = acoustic.Medium(1500.0, 1000.0)
    message = "fd_order / fd_coefficients: they set the fd stencil"
    with pytest.raises(ValueError, match=message):
        acoustic.time_axis(grid, water, 1e-6, scheme="pstd", **fd)
    with pytest.raises(ValueError, match=message):
        acoustic.Stepper(grid, water, scheme="pstd", **fd)
    with pytest.raises(ValueError, match=message):
        acoustic.simulate(grid, water, 1e-6, p0=np.zeros((32, 32)), scheme="pstd", **fd)
    with pytest.raises(ValueError, match=r"^config\.simulation\.fd_order / fd_coefficients"):
        parse(AcousticSimulation, {"simulation": {"scheme": "pstd", **fd}}, "config")
    acoustic.Stepper(grid, water, scheme="pstd", fd_order=4, fd_coefficients="taylor")  # the defaults pass


def test_dispersion_stencil_follows_a_traced_time_step():
    """The coefficients are interpolated in the Courant number, so a traced dt (vmap over time
    steps) gives each run its own stencil, as separate runs do."""
    grid = Grid((24, 24), 1e-4)
    medium = acoustic.Medium(np.full((24, 24), 1500.0, np.float32), np.full((24, 24), 1000.0, np.float32))
    p0 = jnp.zeros((24, 24)).at[12, 12].set(1.0)

    def final(dt):
        st = acoustic.Stepper(grid, medium, "fd", fd_order=8, dt=dt, fd_coefficients="dispersion")
        return st.run(st.init(p0), 5, checkpoint="none").p

    dts = jnp.asarray([1.5e-8, 2.5e-8], jnp.float32)
    batched = jax.vmap(final)(dts)
    for i, dt in enumerate((1.5e-8, 2.5e-8)):
        np.testing.assert_allclose(batched[i], final(dt), atol=1e-6)
    assert not np.allclose(acoustic.Stepper(grid, medium, "fd", fd_order=8, dt=2.5e-8,
                                            fd_coefficients="dispersion").stencil,
                           operators.FD_COEFFS[8])
