"""Gradients of maxwell.simulate (permittivity, source amplitude): checkpointed autodiff against
central differences, and the time-reversal adjoint against autodiff (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers import Grid, maxwell

LAM0 = 1e-6


def _loss_fn(grid, pml, gradient, polarization="TM", periodic=False):
    dx = grid.spacing
    pts = np.array([[12 * dx, 20 * dx, 3 * dx], [18 * dx, 9 * dx, 4 * dx]])[:, : grid.ndim]
    centre = tuple(slice(12, 18) for _ in range(2)) + (slice(None),) * (grid.ndim - 2)

    def loss(eps, amplitude):
        src = maxwell.PlaneWave(LAM0, angle=0.3 if not periodic else 0.0, amplitude=amplitude, ramp_cycles=2)
        res = maxwell.simulate(grid, maxwell.Medium(eps), src, duration=8 * LAM0 / maxwell.C0, pml_size=pml,
                               tfsf_margin=2, points=pts, gradient=gradient, polarization=polarization,
                               periodic=periodic)
        field = res.field[0] if grid.ndim == 2 else res.field[0, 2]
        return jnp.sum(jnp.abs(field[centre]) ** 2) + jnp.sum(jnp.abs(res.point_field) ** 2)

    return jax.jit(loss)


def _eps(grid):
    eps = np.ones(grid.shape)
    eps[tuple(slice(13, 17) for _ in range(2))] = 2.0
    return eps


@pytest.mark.parametrize("polarization", ["TM", pytest.param("TE", marks=pytest.mark.slow)])
def test_simulate_gradient_vs_central_differences(x64, record_figure, polarization):
    """Plane wave (TFSF) + DFT monitors on a region and at points: <= 1e-4 relative."""
    grid = Grid((30, 30), LAM0 / 10)
    eps0 = _eps(grid)
    loss = _loss_fn(grid, 6, "checkpoint", polarization)
    g_eps, g_amp = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(eps0), 1.0)
    h = 1e-6
    pairs = {}
    for idx in [(14, 14), (13, 16), (10, 15), (19, 11)]:
        up, dn = eps0.copy(), eps0.copy()
        up[idx] += h
        dn[idx] -= h
        pairs[idx] = (float(g_eps[idx]), (float(loss(jnp.asarray(up), 1.0)) - float(loss(jnp.asarray(dn), 1.0))) / (2 * h))
    fd_amp = (float(loss(jnp.asarray(eps0), 1 + h)) - float(loss(jnp.asarray(eps0), 1 - h))) / (2 * h)
    pairs["amplitude"] = (float(g_amp), fd_amp)
    record_figure(f"Maxwell gradients through `simulate` + DFT monitors vs central differences, {polarization}",
                  max(abs(ad - fd) / abs(fd) for ad, fd in pairs.values()), tolerance="<= 1e-4", dtype=np.float64,
                  region="30², 6-cell CPML, TFSF plane wave, checkpointed; d/d eps at 4 cells and d/d amplitude, worst")
    for key, (ad, fd) in pairs.items():
        assert abs(ad - fd) <= 1e-4 * abs(fd), (key, ad, fd)


@pytest.mark.parametrize("shape", [(30, 30), pytest.param((30, 30, 6), marks=pytest.mark.slow)])
def test_time_reversal_adjoint_matches_autodiff(x64, record_figure, shape):
    """The time-reversal adjoint (boundary replay) equals autodiff to 1e-9 outside the CPML."""
    grid = Grid(shape, LAM0 / 10)
    eps0 = jnp.asarray(_eps(grid))
    periodic = (False, False, True)[: grid.ndim]
    ref = jax.jit(jax.grad(_loss_fn(grid, 6, "checkpoint", periodic=periodic), argnums=(0, 1)))(eps0, 1.0)
    adj = jax.jit(jax.grad(_loss_fn(grid, 6, "adjoint", periodic=periodic), argnums=(0, 1)))(eps0, 1.0)
    inner = (slice(6, -6), slice(6, -6)) + (slice(None),) * (grid.ndim - 2)
    scale = float(jnp.max(jnp.abs(ref[0][inner])))
    assert scale > 0
    deviation = float(jnp.max(jnp.abs(adj[0][inner] - ref[0][inner]))) / scale
    record_figure(f"time-reversal adjoint vs checkpointed autodiff, d/d eps, {grid.ndim}D", deviation,
                  tolerance="<= 1e-9", dtype=np.float64, region=f"{' x '.join(map(str, shape))}, 6-cell CPML; "
                  "outside the CPML only, max |difference| over max |gradient|",
                  detail=f"d/d amplitude: {abs(float(adj[1]) - float(ref[1])) / abs(float(ref[1])):.2g}")
    assert deviation <= 1e-9
    assert abs(float(adj[1]) - float(ref[1])) <= 1e-9 * abs(float(ref[1]))


def test_adjoint_requires_lossless_medium():
    grid = Grid((30, 30), LAM0 / 10)
    with pytest.raises(ValueError, match="conductivity must be 0 S/m"):
        maxwell.simulate(grid, maxwell.Medium(1.0, 0.1), maxwell.PlaneWave(LAM0), duration=1e-14, pml_size=6,
                         gradient="adjoint")
    with pytest.raises(ValueError, match="needs a fixed duration"):
        maxwell.simulate(grid, maxwell.Medium(1.0), maxwell.PlaneWave(LAM0), pml_size=6, gradient="adjoint")


def test_stepper_gradient_vs_central_differences(x64, record_figure):
    """jax.grad through Stepper.run (PEC box, heterogeneous permittivity) vs central differences."""
    grid = Grid((16, 14), 1e-7)
    x = grid.coordinates() / grid.spacing
    e0 = jnp.asarray(np.exp(-((x[0] - 7) ** 2 + (x[1] - 6) ** 2) / 6.0))
    eps0 = np.ones(grid.shape)
    eps0[4:9, 5:10] = 2.0

    @jax.jit
    def loss(eps):
        st = maxwell.Stepper(grid, maxwell.Medium(eps), pml_size=0)
        return jnp.sum(st.run(st.init(e0), 40).e[0, 3:7, 8:12] ** 2)

    g = jax.grad(loss)(jnp.asarray(eps0))
    h = 1e-6
    pairs = {}
    for idx in [(5, 6), (8, 9), (2, 2)]:
        up, dn = eps0.copy(), eps0.copy()
        up[idx] += h
        dn[idx] -= h
        pairs[idx] = (float(g[idx]), (float(loss(jnp.asarray(up))) - float(loss(jnp.asarray(dn)))) / (2 * h))
    record_figure("Maxwell gradient through `Stepper.run` vs central differences",
                  max(abs(ad - fd) / abs(fd) for ad, fd in pairs.values()), tolerance="<= 1e-4", dtype=np.float64,
                  region="2D TM 16 x 14 PEC box, 40 steps; d/d eps at 3 cells, worst")
    for idx, (ad, fd) in pairs.items():
        assert abs(ad - fd) <= 1e-4 * abs(fd), (idx, ad, fd)
