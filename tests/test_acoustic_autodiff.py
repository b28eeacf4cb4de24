"""Gradients, checkpointed gradient memory, vmap/jit composition and time reversal."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers import Grid, acoustic, signals
from solvers.acoustic.simulate import _simulate_core

H = 1e-4


def _medium_fields(n: int, dtype):
    x = np.arange(n) * H
    xx, yy = np.meshgrid(x, x, indexing="ij")
    bump = np.exp(-((xx - 0.55 * n * H) ** 2 + (yy - 0.45 * n * H) ** 2) / (2 * (0.15 * n * H) ** 2))
    return (1500 + 120 * bump).astype(dtype), (1000 + 150 * bump[::-1]).astype(dtype)


def _gaussian(n: int, dtype, sigma_cells: float = 2.5):
    x = np.arange(n) - n / 2
    return np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma_cells**2)).astype(dtype)


@pytest.mark.parametrize("scheme, fd_kind", [("pstd", "taylor"), ("fd", "taylor"), ("fd", "dispersion")])
def test_gradients_match_central_differences(x64, record_figure, scheme, fd_kind):
    n, pml = 32, 6
    grid = Grid((n, n), H)
    c, rho = _medium_fields(n, np.float64)
    dt = 2e-8
    nt = 41
    t = np.arange(nt) * dt
    sig = np.asarray(signals.gaussian_pulse(jnp.asarray(t), 2e6, 0.8), np.float64)
    src_pos = np.array([[10.3 * H, 12.6 * H]])
    sensors = np.array([[20.5 * H, 18.2 * H], [12.0 * H, 21.7 * H]])
    p0 = 0.3 * _gaussian(n, np.float64)

    def loss(c, rho, sig):
        res = acoustic.simulate(grid, acoustic.Medium(c, rho), (nt - 1) * dt, p0=p0,
                                sources=acoustic.PointSource(src_pos, sig), sensors=sensors, scheme=scheme,
                                pml_size=pml, dt=dt, fd_coefficients=fd_kind)
        return jnp.sum(res.traces**2)

    args = (jnp.asarray(c), jnp.asarray(rho), jnp.asarray(sig))
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    rng = np.random.default_rng(0)
    pairs = []
    for i, scale in enumerate((1.0, 1.0, 1.0)):
        direction = rng.standard_normal(args[i].shape) * scale
        eps = 1e-4 * float(jnp.max(jnp.abs(args[i])))
        plus = [a if j != i else a + eps * direction for j, a in enumerate(args)]
        minus = [a if j != i else a - eps * direction for j, a in enumerate(args)]
        fd = (loss(*plus) - loss(*minus)) / (2 * eps)
        pairs.append((float(jnp.sum(grads[i] * direction)), float(fd)))
    name = scheme if scheme == "pstd" else f"fd4 {fd_kind}"
    record_figure(f"acoustic gradients (c, rho, source signal) vs central differences, `{name}`",
                  max(abs(ad - fd) / abs(fd) for ad, fd in pairs), tolerance="<= 1e-4", dtype=np.float64,
                  region="32², 6-cell PML, 41 time samples, p0 and an off-grid source, 2 off-grid sensors; "
                  "directional derivative along a random direction, worst of the three")
    for i, (ad, fd) in enumerate(pairs):
        assert abs(ad - fd) <= 1e-4 * abs(fd), (i, ad, fd)


def test_checkpointed_gradient_memory_is_bounded(record_figure):
    """XLA's temp memory of the compiled gradient: segmented checkpointing <= 10% of storing every step."""
    n, nt = 64, 401
    grid = Grid((n, n), H)
    c, rho = _medium_fields(n, np.float32)
    p0 = _gaussian(n, np.float32)
    sensors = np.array([[40 * H, 40 * H]])

    def make(checkpoint):
        def loss(c):
            res = acoustic.simulate(grid, acoustic.Medium(c, rho), (nt - 1) * 2e-8, p0=p0, sensors=sensors,
                                    pml_size=10, dt=2e-8, checkpoint=checkpoint)
            return jnp.sum(res.traces**2)
        return jax.jit(jax.grad(loss)).lower(jnp.asarray(c)).compile().memory_analysis().temp_size_in_bytes

    full, seg = make("none"), make("segmented")
    state_bytes = 4 * n * n * 4  # p split (2) + v (2), float32
    assert full >= 0.5 * nt * state_bytes  # storing every step really scales with nt
    record_figure("checkpointed gradient memory over storing every step", seg / full, tolerance="<= 0.1",
                  dtype=np.float32, unit="ratio", region="`pstd`, 64², 401 time samples, 10-cell PML, segmented; "
                  "XLA temp bytes of the compiled gradient (compile-time, not a measured peak)")
    assert seg <= 0.1 * full, (seg, full)


def test_vmap_over_shots_and_media_matches_loop_without_recompiling():
    n = 48
    grid = Grid((n, n), H)
    c, rho = _medium_fields(n, np.float32)
    dt, nt = acoustic.time_axis(grid, acoustic.Medium(c, rho), 30 * H / 1500)
    ring = acoustic.ring_array((n / 2 * H, n / 2 * H), 12 * H, 4)
    pulse = signals.gaussian_pulse(jnp.arange(nt) * dt, 1.5e6, 0.8)
    shots = jnp.eye(4)[:, :, None] * pulse[None, None, :]  # (shot, element, nt): one element fires

    def shot_traces(sig, c):
        return acoustic.simulate(grid, acoustic.Medium(c, rho), 30 * H / 1500, sources=acoustic.PointSource(ring, sig),
                                 sensors=ring, pml_size=8, dt=dt).traces

    batched = jax.jit(jax.vmap(shot_traces, in_axes=(0, None)))
    out = batched(shots, jnp.asarray(c))
    loop = jnp.stack([shot_traces(s, jnp.asarray(c)) for s in shots])
    np.testing.assert_allclose(out, loop, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(loop))))
    # Reciprocity: the trace of element j firing i equals that of i firing j.
    np.testing.assert_allclose(out[0, :, 2], out[2, :, 0], atol=1e-3 * float(jnp.max(jnp.abs(out))))

    media = jnp.stack([jnp.asarray(c), jnp.asarray(c) * 1.05])
    over_media = jax.jit(jax.vmap(shot_traces, in_axes=(None, 0)))
    out_m = over_media(shots[1], media)
    np.testing.assert_allclose(out_m[1], shot_traces(shots[1], media[1]), rtol=1e-5,
                               atol=1e-6 * float(jnp.max(jnp.abs(out_m))))
    over_media(shots[2], media * 0.98)
    batched(shots * 2.0, jnp.asarray(c) * 1.01)
    assert batched._cache_size() == 1 and over_media._cache_size() == 1

    # Eager calls with new media and p0 of the same shapes (same dt, so the same nt) reuse the compiled core.
    acoustic.simulate(grid, acoustic.Medium(c, rho), 30 * H / 1500, p0=_gaussian(n, np.float32), sensors=ring,
                      pml_size=8, dt=dt)
    size = _simulate_core._cache_size()
    acoustic.simulate(grid, acoustic.Medium(c * 1.1, rho * 0.9), 30 * H / 1500, p0=2 * _gaussian(n, np.float32),
                      sensors=ring, pml_size=8, dt=dt)
    assert _simulate_core._cache_size() == size


def test_traced_medium_requires_explicit_dt():
    grid = Grid((16, 16), H)

    def f(c):
        return acoustic.simulate(grid, acoustic.Medium(c, 1000.0), 1e-6, p0=jnp.zeros((16, 16)), pml_size=0).pressure

    with pytest.raises(ValueError, match="dt must be given explicitly"):
        jax.jit(f)(jnp.full((16, 16), 1500.0))


@pytest.mark.parametrize("scheme", ["pstd", "fd"])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_time_reversal_returns_to_start(request, record_figure, scheme, dtype, tol):
    if dtype == np.float64:
        request.getfixturevalue("x64")
    n, steps = 48, 150
    grid = Grid((n, n), H)
    c, rho = _medium_fields(n, dtype)
    st = acoustic.Stepper(grid, acoustic.Medium(c, rho), scheme=scheme, pml_size=0)
    s0 = st.init(_gaussian(n, dtype))
    forward = st.run(s0, steps)
    back = st.reverse(st.run(st.reverse(forward), steps))
    assert back.p.dtype == dtype
    err_p = float(jnp.linalg.norm(back.p - s0.p) / jnp.linalg.norm(s0.p))
    vnorm = float(jnp.sqrt(sum(jnp.sum(v**2) for v in forward.v)))
    err_v = float(jnp.sqrt(sum(jnp.sum(v**2) for v in back.v))) / vnorm
    assert float(jnp.linalg.norm(forward.p - s0.p) / jnp.linalg.norm(s0.p)) > 0.5  # the field really moved
    record_figure(f"acoustic time reversal R run R run = identity, `{scheme}`", max(err_p, err_v),
                  tolerance=f"<= {tol:g}", dtype=dtype, region="48², heterogeneous c and rho, 150 steps each way, "
                  "pml_size=0; rel L2 of p and of v (against the moved v), the larger")
    assert err_p <= tol and err_v <= tol, (err_p, err_v)


def test_step_equals_run_and_simulate():
    """n single steps == run(n) == simulate's final field (the same KDK scheme)."""
    n = 32
    grid = Grid((n, n), H)
    c, rho = _medium_fields(n, np.float32)
    st = acoustic.Stepper(grid, acoustic.Medium(c, rho), scheme="fd", pml_size=6, dt=2e-8)
    s = st.init(_gaussian(n, np.float32))
    step = eqx.filter_jit(acoustic.Stepper.step)
    one = s
    for _ in range(10):
        one = step(st, one)
    many = eqx.filter_jit(acoustic.Stepper.run)(st, s, 10)
    res = acoustic.simulate(grid, acoustic.Medium(c, rho), 10 * 2e-8, p0=_gaussian(n, np.float32), scheme="fd",
                            pml_size=6, dt=2e-8, snapshot_times=[4e-8, 2e-7])
    np.testing.assert_allclose(one.p, many.p, atol=1e-5)
    np.testing.assert_allclose(res.pressure, many.p, atol=1e-5)
    np.testing.assert_allclose(res.snapshots[1], many.p, atol=1e-5)
    np.testing.assert_allclose(res.snapshots[0], st.run(s, 2).p, atol=1e-5)


def test_checkpointing_modes_give_the_same_gradient():
    n = 24
    grid = Grid((n, n), H)
    c, rho = _medium_fields(n, np.float32)
    p0 = _gaussian(n, np.float32)

    def grad(checkpoint):
        def loss(c):
            res = acoustic.simulate(grid, acoustic.Medium(c, rho), 30 * 2e-8, p0=p0, sensors=np.array([[15 * H, 9 * H]]),
                                    pml_size=4, dt=2e-8, checkpoint=checkpoint)
            return jnp.sum(res.traces**2)
        return np.asarray(jax.grad(loss)(jnp.asarray(c)))

    # "segmented" is checked against central differences above; "recursive" must agree with it.
    ref = grad("segmented")
    np.testing.assert_allclose(grad("recursive"), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
