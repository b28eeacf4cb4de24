"""jwave 0.2.1 as an independent oracle for cross-checks and benchmarks (imports jwave lazily).

Not imported by ``solvers.acoustic``: only tests and ``experiments/`` use it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def jwave_simulator(shape: tuple[int, ...], spacing: float, pml_size: int, dt: float, nt: int,
                    record: Callable[[jnp.ndarray], jnp.ndarray]) -> Callable:
    """A jitted jwave pstd simulation ``f(c, rho, p0) -> (nt, ...)`` records.

    It runs jwave's FourierSeries time loop (``simulate_wave_propagation`` with
    ``TimeWavePropagationSettings(smooth_initial=False)``): jwave's own k-space operators, PML,
    reference sound speed and initial-velocity convention. Row ``k`` of the output is
    ``record(p)`` at time ``k * dt`` (row 0 the initial pressure; jwave's own output row ``i`` is
    time ``(i + 1) * dt``).

    The loop is written out because jwave 0.2.1 splits ``p0`` with ``p0.params[..., i]`` for
    ``i < ndim`` on a one-channel field, which relied on old JAX clamping out-of-bounds static
    indices (JAX >= 0.5 raises IndexError); the split here repeats the channel, as that clamping did.

    Args:
        shape: grid shape; spacing: cell size in m; pml_size: PML cells (inside the grid).
        dt: time step in s; nt: number of samples.
        record: maps a pressure field of ``shape`` to the recorded values (e.g. a sensor gather).
    """
    from jwave import FourierSeries
    from jwave.acoustics.time_varying import (
        TimeWavePropagationSettings,
        fourier_wave_prop_params,
        mass_conservation_rhs,
        momentum_conservation_rhs,
        pressure_from_density,
    )
    from jwave.geometry import Domain, Medium, TimeAxis

    nd = len(shape)
    domain = Domain(tuple(shape), (spacing,) * nd)
    settings = TimeWavePropagationSettings(smooth_initial=False)

    @jax.jit
    def run(c: jnp.ndarray, rho: jnp.ndarray, p0: jnp.ndarray) -> jnp.ndarray:
        medium = Medium(domain=domain, sound_speed=FourierSeries(c[..., None], domain),
                        density=FourierSeries(rho[..., None], domain), pml_size=pml_size)
        params = fourier_wave_prop_params(medium, TimeAxis(dt=dt, t_end=(nt - 1) * dt), settings=settings)
        c_ref, pml_rho, pml_u, fourier = params["c_ref"], params["pml_rho"], params["pml_u"], params["fourier"]
        p = FourierSeries(p0[..., None], domain)
        u = pml_u.replace_params(jnp.zeros(tuple(shape) + (nd,), p0.dtype))
        u = -dt * momentum_conservation_rhs(p, u, medium, c_ref=c_ref, dt=dt, params=fourier) / 2
        r = p.replace_params(jnp.repeat(p.params, nd, axis=-1)) / nd / medium.sound_speed**2

        def body(fields, _):
            p, u, r = fields
            du = momentum_conservation_rhs(p, u, medium, c_ref=c_ref, dt=dt, params=fourier)
            u = pml_u * (pml_u * u + dt * du)
            dr = mass_conservation_rhs(p, u, 0.0, medium, c_ref=c_ref, dt=dt, params=fourier)
            r = pml_rho * (pml_rho * r + dt * dr)
            p = pressure_from_density(r, medium)
            return [p, u, r], record(p.params[..., 0])

        _, ys = jax.lax.scan(body, [p, u, r], None, length=nt - 1)
        return jnp.concatenate([record(p0)[None], ys])

    return run


def jwave_traces(c: np.ndarray, rho: np.ndarray, p0: np.ndarray, spacing: float, pml_size: int, dt: float, nt: int,
                 sensor_index: tuple[np.ndarray, ...]) -> np.ndarray:
    """jwave pressure traces ``(nt, n)`` at grid indices ``sensor_index`` (one index array per axis)."""
    run = jwave_simulator(p0.shape, spacing, pml_size, dt, nt, lambda p: p[sensor_index])
    return np.asarray(run(jnp.asarray(c), jnp.asarray(rho), jnp.asarray(p0)))
