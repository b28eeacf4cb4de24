"""Maxwell Stepper: protocol, PEC-cavity energy conservation, exact time reversal."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from solvers import Grid, Stepper, maxwell
from solvers.maxwell import cpml
from solvers.maxwell.yee import diff, slab_diff


def _pulse(grid: Grid, n_comp: int, dtype) -> np.ndarray:
    """A smooth Gaussian E field (plus a random perturbation) in every component."""
    x = grid.coordinates() / grid.spacing
    centre = np.array(grid.shape).reshape((-1,) + (1,) * grid.ndim) / 2.3
    g = np.exp(-np.sum((x - centre) ** 2, axis=0) / 8.0)
    rng = np.random.default_rng(0)
    return np.stack([g * (1 + 0.1 * k) + 1e-3 * rng.standard_normal(grid.shape) for k in range(n_comp)]).astype(dtype)


def test_stepper_protocol():
    st = maxwell.Stepper(Grid((16, 16), 1e-7), maxwell.Medium(2.0), pml_size=0)
    assert isinstance(st, Stepper)


def test_pec_cavity_energy_float32(record_figure):
    """Lossless PEC box, heterogeneous permittivity, 1e4 float32 steps: the discrete energy drifts <= 1e-4."""
    grid = Grid((24, 20), 1e-7)
    eps = np.ones(grid.shape, np.float32)
    eps[8:14, 6:12] = 3.0
    st = maxwell.Stepper(grid, maxwell.Medium(eps), pml_size=0)
    state = st.init(jnp.asarray(_pulse(grid, 1, np.float32)[0]))
    w0 = float(st.energy(state))
    state = st.run(state, 10_000)
    assert float(jnp.max(jnp.abs(state.h))) > 1e-3  # the field is still moving
    drift = abs(float(st.energy(state)) - w0) / w0
    record_figure("PEC cavity: discrete energy drift over 10^4 steps", drift, tolerance="<= 1e-4",
                  dtype=np.float32, region="2D TM 24 x 20, heterogeneous permittivity, pml_size=0")
    assert drift <= 1e-4


@pytest.mark.parametrize("shape,polarization", [((20, 18), "TM"), ((20, 18), "TE"), ((10, 9, 8), "TM")])
def test_time_reversal_float64(x64, record_figure, shape, polarization):
    """reverse(run(reverse(run(s, n)), n)) == s to <= 1e-9 relative (pml_size=0, float64)."""
    grid = Grid(shape, 1e-7)
    eps = np.ones(grid.shape)
    eps[tuple(slice(2, 6) for _ in shape)] = 2.5
    st = maxwell.Stepper(grid, maxwell.Medium(eps), pml_size=0, polarization=polarization)
    n_e = {"TM": 1, "TE": 2}[polarization] if len(shape) == 2 else 3
    s0 = st.init(jnp.asarray(_pulse(grid, n_e, np.float64)).reshape((n_e, *shape)))
    assert s0.e.dtype == jnp.float64
    s1 = st.run(s0, 300)
    assert float(jnp.linalg.norm(s1.e - s0.e)) > 0.1 * float(jnp.linalg.norm(s0.e))
    back = st.reverse(st.run(st.reverse(s1), 300))
    err = max(float(jnp.linalg.norm(back.e - s0.e)) / float(jnp.linalg.norm(s0.e)),
              float(jnp.linalg.norm(back.h - s0.h)) / float(jnp.linalg.norm(s1.h)))
    mode = f"{len(shape)}D full Yee" if len(shape) == 3 else f"2D {polarization}"
    record_figure(f"Maxwell time reversal R run R run = identity, {mode}", err, tolerance="<= 1e-9",
                  dtype=np.float64, region=f"{' x '.join(map(str, shape))}, heterogeneous permittivity, 300 steps "
                  "each way, pml_size=0; rel L2 of E and of H (against the moved H), the larger")
    assert err <= 1e-9, err


def test_run_equals_repeated_step():
    grid = Grid((12, 12), 1e-7)
    st = maxwell.Stepper(grid, maxwell.Medium(1.5), pml_size=3)
    s = st.init(jnp.asarray(_pulse(grid, 1, np.float32)[0]))
    a = st.run(s, 5)
    b = s
    for _ in range(5):
        b = st.step(b)
    np.testing.assert_allclose(np.asarray(a.e), np.asarray(b.e), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(a.h), np.asarray(b.h), rtol=1e-5, atol=1e-6)


def test_cpml_absorbs_in_stepper():
    """With a CPML the field energy of a pulse decays by orders of magnitude."""
    grid = Grid((48, 48), 1e-7)
    st = maxwell.Stepper(grid, maxwell.Medium(1.0), pml_size=12)
    s = st.init(jnp.asarray(_pulse(grid, 1, np.float32)[0]))
    w0 = float(jnp.sum(s.e**2))
    s = st.run(s, 600)
    assert float(jnp.sum(s.e**2) + jnp.sum(s.h**2)) < 1e-4 * w0


@pytest.mark.parametrize("shape,polarization", [((12, 10), "TE"), ((10, 9, 8), "TM")])
def test_scalar_medium_equals_array(shape, polarization):
    """Scalar permittivity/conductivity broadcast exactly like full arrays (multi-component modes)."""
    grid = Grid(shape, 1e-7)
    n_e = 2 if len(shape) == 2 else 3
    e0 = jnp.asarray(_pulse(grid, n_e, np.float32))
    out = []
    for eps, sigma in ((2.0, 1e3), (np.full(shape, 2.0, np.float32), np.full(shape, 1e3, np.float32))):
        st = maxwell.Stepper(grid, maxwell.Medium(eps, sigma), pml_size=2, polarization=polarization)
        out.append(st.run(st.init(e0), 20))
    np.testing.assert_array_equal(np.asarray(out[0].e), np.asarray(out[1].e))
    np.testing.assert_array_equal(np.asarray(out[0].h), np.asarray(out[1].h))


@pytest.mark.parametrize("shape", [(11, 9), (8, 10, 9)])
@pytest.mark.parametrize("forward", [True, False])
def test_cpml_slab_helpers_match_full_difference(shape, forward):
    """slab_diff is diff on the 2 * size slab indices; embed puts the slabs back around zeros."""
    f = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
    size = 3
    for axis, n in enumerate(shape):
        idx = np.r_[0:size, n - size:n]
        full = np.asarray(diff(f, axis, forward, periodic=False))
        slabs = slab_diff(f, axis, forward, size)
        np.testing.assert_array_equal(np.asarray(slabs), np.take(full, idx, axis=axis))
        embedded = np.zeros(shape, np.float32)
        np.put_along_axis(embedded, idx.reshape([-1 if a == axis else 1 for a in range(len(shape))]),
                          np.asarray(slabs), axis=axis)
        np.testing.assert_array_equal(np.asarray(cpml.embed(slabs, axis, n)), embedded)
