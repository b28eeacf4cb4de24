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

    It calls jwave's own ``simulate_wave_propagation`` with
    ``TimeWavePropagationSettings(smooth_initial=False)`` and a sensor callable that applies
    ``record`` to the pressure. Row ``k`` of the output is ``record(p)`` at time ``k * dt``: row 0
    is the initial pressure, and jwave's own output row ``i`` (time ``(i + 1) * dt``) becomes
    row ``i + 1``.

    Args:
        shape: grid shape; spacing: cell size in m; pml_size: PML cells (inside the grid).
        dt: time step in s; nt: number of samples.
        record: maps a pressure field of ``shape`` to the recorded values (e.g. a sensor gather).
    """
    from jwave import FourierSeries
    from jwave.acoustics.time_varying import TimeWavePropagationSettings, simulate_wave_propagation
    from jwave.geometry import Domain, Medium, TimeAxis

    domain = Domain(tuple(shape), (spacing,) * len(shape))
    settings = TimeWavePropagationSettings(smooth_initial=False)
    time_axis = TimeAxis(dt=dt, t_end=(nt - 1) * dt)

    def sensors(p: FourierSeries, u: FourierSeries, rho: FourierSeries) -> jnp.ndarray:
        return record(p.on_grid[..., 0])

    @jax.jit
    def run(c: jnp.ndarray, rho: jnp.ndarray, p0: jnp.ndarray) -> jnp.ndarray:
        medium = Medium(domain=domain, sound_speed=FourierSeries(c[..., None], domain),
                        density=FourierSeries(rho[..., None], domain), pml_size=pml_size)
        ys = simulate_wave_propagation(medium, time_axis, p0=FourierSeries(p0[..., None], domain),
                                       sensors=sensors, settings=settings)
        return jnp.concatenate([record(p0)[None], ys[: nt - 1]])

    return run


def jwave_traces(c: np.ndarray, rho: np.ndarray, p0: np.ndarray, spacing: float, pml_size: int, dt: float, nt: int,
                 sensor_index: tuple[np.ndarray, ...]) -> np.ndarray:
    """jwave pressure traces ``(nt, n)`` at grid indices ``sensor_index`` (one index array per axis)."""
    run = jwave_simulator(p0.shape, spacing, pml_size, dt, nt, lambda p: p[sensor_index])
    return np.asarray(run(jnp.asarray(c), jnp.asarray(rho), jnp.asarray(p0)))
