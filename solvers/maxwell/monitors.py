"""Running-DFT phasor monitors (full grid, a sub-region, points) and time traces at points.

A monitor records a set of Yee components. After step ``n`` the E stack holds ``E(t_{n+1})``
and the H stack ``H~(t_{n+1/2})``; each component is multiplied by ``exp(i omega t)`` at its
own sample time and summed over the DFT window. Dividing by the same sum of the source waveform
(``normalisation``) gives phasors normalised to the source: a unit incident plane wave has
phasor ``exp(i k . x)`` (``exp(-i omega t)`` convention).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from solvers.grid import Grid
from solvers.maxwell.yee import Fields, Mode, offset
from solvers.points import PointSampler
from solvers.validate import check_choice


class Monitor(eqx.Module):
    """Which components and where to record.

    Attributes:
        names: component names, e.g. ``("Ez",)``.
        slots: ``(field, index)`` per component, ``field`` in ``{"e", "h"}``.
        region: ``((start, stop), ...)`` index ranges per axis of the DFT region.
        omegas: angular frequencies (rad/s), shape ``(n_freq,)``.
        samplers: one :class:`PointSampler` per component (positions shifted to its Yee offset), or ``()``.
    """

    omegas: jax.Array
    samplers: tuple
    names: tuple[str, ...] = eqx.field(static=True)
    slots: tuple[tuple[str, int], ...] = eqx.field(static=True)
    region: tuple[tuple[int, int], ...] = eqx.field(static=True)

    def __init__(self, grid: Grid, mode: Mode, frequencies: np.ndarray, components=None, region=None,
                 points=None, dtype=jnp.float32):
        """Build a monitor; ``region`` as ``((start, stop), ...)`` cell ranges, ``points`` (n, ndim) m."""
        names_map = mode.component_names()
        comps = tuple(components) if components is not None else mode.primary()
        for c in comps:
            check_choice("components", c, tuple(names_map))
        self.names = comps
        self.slots = tuple(names_map[c] for c in comps)
        if region is None:
            region = tuple((0, n) for n in grid.shape)
        region = tuple(tuple(int(v) for v in r) for r in region)
        if len(region) != grid.ndim or any(not (0 <= a < b <= n) for (a, b), n in zip(region, grid.shape)):
            raise ValueError(f"region must be {grid.ndim} (start, stop) index pairs with 0 <= start < stop <= n "
                             f"per axis of grid shape {grid.shape}, got {region}")
        self.region = region
        self.omegas = jnp.asarray(2 * np.pi * np.asarray(frequencies), dtype)
        if points is None:
            self.samplers = ()
        else:
            pts = grid.check_points("points", points)
            comp_axis = {"e": mode.e, "h": mode.h}
            self.samplers = tuple(
                PointSampler(grid, np.clip(pts - offset(k, comp_axis[k][i], grid.ndim) * grid.spacing, 0, None),
                             name="points")
                for k, i in self.slots)

    def _component(self, fields: Fields, slot: tuple[str, int]) -> jax.Array:
        return (fields.e if slot[0] == "e" else fields.h)[slot[1]]

    def region_values(self, fields: Fields) -> jax.Array:
        """Monitored components on the region, shape ``(n_comp, *region_shape)``."""
        sl = tuple(slice(a, b) for a, b in self.region)
        return jnp.stack([self._component(fields, s)[sl] for s in self.slots])

    def point_values(self, fields: Fields) -> jax.Array:
        """Monitored components at the points, shape ``(n_comp, n_points)``."""
        return jnp.stack([sp.gather(self._component(fields, s)) for sp, s in zip(self.samplers, self.slots)])

    def zero_accumulator(self, dtype) -> dict:
        """Zero DFT sums: ``grid`` ``(n_freq, n_comp, *region)`` and ``points`` ``(n_freq, n_comp, n_points)``."""
        cdt = jnp.complex128 if jnp.dtype(dtype) == jnp.float64 else jnp.complex64
        nf, nc = self.omegas.shape[0], len(self.slots)
        shape = tuple(b - a for a, b in self.region)
        acc = {"grid": jnp.zeros((nf, nc, *shape), cdt)}
        if self.samplers:
            acc["points"] = jnp.zeros((nf, nc, self.samplers[0].num_points), cdt)
        return acc

    def accumulate(self, acc: dict, fields: Fields, t_e: jax.Array, dt: float) -> dict:
        """Add ``field * exp(i omega t)`` with ``t = t_e`` for E and ``t_e - dt/2`` for H components."""
        times = jnp.stack([t_e - (dt / 2 if k == "h" else 0.0) for k, _ in self.slots])  # (n_comp,)
        phase = jnp.exp(1j * self.omegas[:, None] * times[None, :]).astype(acc["grid"].dtype)  # (nf, nc)
        vals = self.region_values(fields)
        out = {"grid": acc["grid"] + phase.reshape(phase.shape + (1,) * (vals.ndim - 1)) * vals[None]}
        if "points" in acc:
            out["points"] = acc["points"] + phase[:, :, None] * self.point_values(fields)[None]
        return out


def normalisation(g, frequencies: np.ndarray, first: int, count: int, dt: float, time_shift: float) -> np.ndarray:
    """Waveform DFT ``sum_m g(t_m - time_shift) exp(i omega t_m)`` over E sample steps ``m = first .. first+count-1``.

    Args:
        g: the unit waveform; evaluated in float64 numpy-compatible form.
    Returns:
        complex array of shape ``(n_freq,)``.
    """
    t = (first + np.arange(count)) * dt
    with jax.ensure_compile_time_eval():  # concrete even inside an outer jit
        vals = np.asarray(g(jnp.asarray(t - time_shift)), np.float64)
    return np.exp(1j * 2 * np.pi * np.asarray(frequencies)[:, None] * t[None, :]) @ vals
