"""Physics residuals: ~0 on reference-solver outputs, large on perturbed ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers import Grid, acoustic, maxwell
from training.losses import residual_loss
from training.physics import HelmholtzResidual, WaveResidual, YeeResidual, edge_mask

N, H, K = 32, 1e-4, 4


def _rms(r):
    return float(jnp.sqrt(jnp.mean(jnp.abs(r) ** 2)))


def _trajectory(scheme: str, **fd: object):
    """Frames every K solver steps of a heterogeneous medium with a PML (as training.data stores them);
    ``fd``: the stepper's ``fd_order`` / ``fd_coefficients``."""
    grid = Grid((N, N), H)
    x = np.arange(N) * H
    X, Y = np.meshgrid(x, x, indexing="ij")
    c = 1500 + 80 * np.exp(-((X - 1.7e-3) ** 2 + (Y - 1.4e-3) ** 2) / (5e-4) ** 2)
    rho = 1000 + 60 * np.exp(-((X - 1.5e-3) ** 2 + (Y - 1.9e-3) ** 2) / (4e-4) ** 2)
    p0 = np.exp(-((X - 1.5e-3) ** 2 + (Y - 1.6e-3) ** 2) / (2.5e-4) ** 2)
    stepper = acoustic.Stepper(grid, acoustic.Medium(sound_speed=c.astype(np.float32), density=rho.astype(np.float32)),
                               scheme=scheme, pml_size=5, cfl=0.3, **fd)
    advance = jax.jit(lambda s: stepper.run(s, K))
    s, frames = stepper.init(p0), []
    for _ in range(4):
        frames.append(np.concatenate([np.asarray(s.p)[None], np.stack([np.asarray(v) for v in s.v])]))
        s = advance(s)
    return grid, float(stepper.dt) * K, jnp.asarray(np.stack(frames)), jnp.asarray(np.stack([c, rho]), jnp.float32)


@pytest.mark.parametrize("scheme", ["fd", "pstd"])
def test_wave_residual_vanishes_on_solver_trajectories(scheme):
    grid, dt, states, medium = _trajectory(scheme)
    residual = WaveResidual(grid, dt, scheme, pml_size=5, substeps=K)
    res = jax.jit(lambda s, m: residual(s, m))
    exact = _rms(res(states, medium))
    rng = np.random.default_rng(0)
    noise = 0.01 * jnp.asarray(rng.normal(size=states.shape), jnp.float32) * jnp.std(states, axis=(0, 2, 3), keepdims=True)
    perturbed = _rms(res(states + noise, medium))
    print(f"{scheme}: residual {exact:.2e} (solver) vs {perturbed:.2e} (1% noise)")
    assert exact < 1e-6 and perturbed > 1e3 * exact
    # a wrong medium is caught as well
    assert _rms(res(states, medium.at[0].multiply(1.05))) > 1e2 * exact
    # the loss hook: mean square of the residual
    loss = jax.jit(lambda s: residual_loss(s, lambda x: residual(x, medium)))
    assert float(loss(states)) == pytest.approx(exact**2, rel=1e-2)


def test_wave_residual_follows_the_dispersion_stencil():
    """On data from fd8 with the dispersion-fitted stencil, the residual with the same stencil (fitted
    at the solver's own Courant number) vanishes; with Taylor coefficients it does not."""
    grid, dt, states, medium = _trajectory("fd", fd_order=8, fd_coefficients="dispersion")
    same = _rms(WaveResidual(grid, dt, "fd", fd_order=8, fd_coefficients="dispersion", pml_size=5, substeps=K)(
        states, medium))
    taylor = _rms(WaveResidual(grid, dt, "fd", fd_order=8, pml_size=5, substeps=K)(states, medium))
    print(f"fd8 dispersion data: residual {same:.2e} (same stencil) vs {taylor:.2e} (Taylor)")
    assert same < 1e-6 and taylor > 1e2 * same
    with pytest.raises(ValueError, match="fd_coefficients must be one of"):
        WaveResidual(grid, dt, "fd", fd_coefficients="optimal")


@pytest.mark.parametrize("channels", [3, 1])
def test_solver_target_stops_the_gradient_through_the_solver_step(channels):
    """``solver_target`` keeps the residual's value and its gradient with respect to the last state
    (which enters only as a prediction), and removes the part that flows through the solver step
    into the earlier states."""
    from training.config import TrainConfig

    grid, dt, states, medium = _trajectory("pstd")
    wobble = 1 + 0.01 * jnp.cos(jnp.arange(states.size, dtype=jnp.float32)).reshape(states.shape)
    states = (states * wobble)[:, :channels]
    coupled = WaveResidual(grid, dt, "pstd", pml_size=5, substeps=K)
    target = WaveResidual(grid, dt, "pstd", pml_size=5, substeps=K, solver_target=True)
    np.testing.assert_allclose(coupled(states, medium), target(states, medium), rtol=1e-6, atol=1e-9)

    def grad(res: WaveResidual) -> np.ndarray:
        return np.asarray(jax.grad(lambda s: residual_loss(s, lambda x: res(x, medium)))(states))

    g_coupled, g_target = grad(coupled), grad(target)
    scale = np.abs(g_coupled[-1]).max()
    np.testing.assert_allclose(g_target[-1], g_coupled[-1], atol=1e-5 * scale)
    assert np.abs(g_target[1:-1] - g_coupled[1:-1]).max() > 0.1 * scale
    with pytest.raises(ValueError, match="train.solver_target"):
        TrainConfig(steps=10, warmup_steps=0, solver_target=True)


def test_pressure_only_residual_is_second_order_and_exact_for_pstd_homogeneous():
    grid, dt, states, medium = _trajectory("pstd")
    res = WaveResidual(grid, dt, "pstd", pml_size=5)
    p = states[:, :1]
    hetero = _rms(res(p, medium))
    perturbed = _rms(res(p * (1 + 0.02 * jnp.asarray(np.random.default_rng(1).normal(size=p.shape))), medium))
    assert hetero < 0.1 * perturbed
    # homogeneous medium: the k-space corrected leapfrog at the macro step is exact
    st = acoustic.Stepper(grid, acoustic.Medium(sound_speed=1500.0, density=1000.0), scheme="pstd", pml_size=0,
                          dt=dt / K)
    advance = jax.jit(lambda s: st.run(s, K))
    s, frames = st.init(np.asarray(states[0, 0])), []
    for _ in range(3):
        frames.append(np.asarray(s.p)[None])
        s = advance(s)
    homog = jnp.asarray(np.stack([np.full((N, N), 1500.0), np.full((N, N), 1000.0)]), jnp.float32)
    assert _rms(WaveResidual(grid, dt, "pstd")(jnp.asarray(np.stack(frames)), homog)) < 1e-4
    with pytest.raises(ValueError, match=">= 3 consecutive"):
        res(p[:2], medium)


def test_wave_residual_validates_inputs():
    grid = Grid((16, 16), H)
    with pytest.raises(ValueError, match="scheme"):
        WaveResidual(grid, 1e-8, "leapfrog")
    with pytest.raises(ValueError, match="dt"):
        WaveResidual(grid, -1.0)
    with pytest.raises(ValueError, match="states must have shape"):
        WaveResidual(grid, 1e-8)(jnp.zeros((3, 2, 16, 16)), jnp.ones((2, 16, 16)))
    assert edge_mask((6, 6), 2).sum() == 4


def test_yee_residual_vanishes_on_maxwell_stepper_trajectories():
    """Frames of the Maxwell stepper with a CPML (as the maxwell_stepper datasets store them): the
    residual is at rounding level inside the mask; noise and a wrong permittivity are caught."""
    grid = Grid((N, N), 4e-8)
    x = np.arange(N)
    X, Y = np.meshgrid(x, x, indexing="ij")
    eps = (1.333 + 0.06 * np.exp(-((X - 17) ** 2 + (Y - 14) ** 2) / 25.0)) ** 2
    e0 = np.exp(-((X - 15) ** 2 + (Y - 16) ** 2) / 6.0)
    stepper = maxwell.Stepper(grid, maxwell.Medium(permittivity=eps.astype(np.float32)), pml_size=5)
    advance = jax.jit(lambda s: stepper.run(s, K))
    s, frames = stepper.init(e0), []
    for _ in range(4):
        frames.append(np.concatenate([np.asarray(s.e), np.asarray(s.h)]))
        s = advance(s)
    states, medium = jnp.asarray(np.stack(frames)), jnp.asarray(eps[None], jnp.float32)
    scales = (1.0, 2.0, 2.0)
    residual = YeeResidual(grid, K, pml_size=5, state_scales=scales)
    res = jax.jit(lambda u, m: residual(u, m))
    scaled = states * jnp.asarray(scales).reshape(1, 3, 1, 1)
    exact = _rms(res(scaled, medium))
    noise = 0.01 * jnp.asarray(np.random.default_rng(0).normal(size=states.shape), jnp.float32) * jnp.std(states)
    perturbed = _rms(res(scaled + noise, medium))
    print(f"Yee residual {exact:.2e} (solver) vs {perturbed:.2e} (1% noise)")
    assert exact < 1e-6 and perturbed > 1e3 * exact
    assert _rms(res(scaled, medium * 1.05)) > 1e2 * exact
    # without the mask's margin the CPML's effect reaches into the compared region
    assert _rms(YeeResidual(grid, K, pml_size=5, margin=0, state_scales=scales)(scaled, medium)) > 1e2 * exact
    with pytest.raises(ValueError, match="states must have shape"):
        residual(scaled[:, :2], medium)
    with pytest.raises(ValueError, match="courant"):
        YeeResidual(grid, K, courant=1.5)


def test_helmholtz_residual_vanishes_on_converged_yee_phasors():
    n, h, lam = 40, 4e-8, 5e-7
    grid = Grid((n, n), h)
    x = (np.arange(n) - (n - 1) / 2) * h
    X, Y = np.meshgrid(x, x, indexing="ij")
    index = np.where(X**2 + Y**2 < (0.25e-6) ** 2, 1.42, 1.333).astype(np.float32)
    res = maxwell.simulate(grid, maxwell.Medium(permittivity=index**2),
                           source=maxwell.PlaneWave(wavelength=lam, angle=0.5, background_permittivity=1.333**2),
                           frequencies=[maxwell.C0 / lam], pml_size=6)
    helm = HelmholtzResidual(grid, lam, 6, background_index=1.333)
    exact = _rms(helm(res.field, index[None]))
    noisy = _rms(helm(res.field * (1 + 0.02 * np.random.default_rng(0).normal(size=res.field.shape)), index))
    wrong = _rms(helm(res.field, np.full_like(index, 1.333)))
    print(f"Helmholtz residual {exact:.2e} (solver) vs {noisy:.2e} (2% noise), {wrong:.2e} (wrong medium)")
    assert exact < 1e-3 and noisy > 50 * exact and wrong > 50 * exact
    # scattered-field form: the incident (here: the whole) field as the offset
    shifted = HelmholtzResidual(grid, lam, 6, background_index=1.333, offset=res.field)
    np.testing.assert_allclose(np.asarray(shifted(jnp.zeros_like(res.field), index)),
                               np.asarray(helm(res.field, index)), atol=1e-6)
