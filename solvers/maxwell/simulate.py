"""Frequency-domain fields by time stepping: ``simulate(grid, medium, source, frequencies)``.

Time step: ``dt = courant * dx / (c0 sqrt(ndim))`` (``courant`` in (0, 1] is the fraction of the
Yee stability limit); for a continuous-wave source ``dt`` is lowered slightly so that one period
is an integer number of steps, which makes a one-period DFT window exact for a steady sinusoid.

Convergence (``duration=None``):
- ``waveform="cw"``: the run proceeds in chunks of ``check_periods`` periods; the phasor is the
  DFT over the last period of each chunk. It stops when the relative L2 change of the phasor
  (over the monitored region) between consecutive chunks is <= ``tolerance``, and not before the
  ramp has ended and light has crossed the grid diagonal twice.
- ``waveform="pulse"``: the DFT runs over the whole record; the run stops when the relative
  change of the phasor over one chunk (a quarter of a grid-diagonal crossing) is <= ``tolerance``,
  after the pulse has ended.
With ``duration`` set the step count is fixed (``ceil(duration / dt)``; needed for gradients) and
the DFT covers the last period (cw) or the whole record (pulse).
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from solvers.dtypes import compute_dtype
from solvers.grid import Grid
from solvers.maxwell.adjoint import adjoint_run
from solvers.maxwell.medium import C0, Medium
from solvers.maxwell.monitors import Monitor, normalisation
from solvers.maxwell.sources import GaussianBeam, Injection, PlaneWave, PointDipole, driven_step
from solvers.maxwell.subpixel import use_subpixel
from solvers.maxwell.yee import Fields, Mode, YeeOperator, make_mode
from solvers.scan import CHECKPOINTING, scan
from solvers.validate import check_choice, check_int_range, check_positive_finite_scalar, is_concrete

SOURCES = (PlaneWave, GaussianBeam, PointDipole)


class Result(eqx.Module):
    """Output of :func:`simulate`.

    Attributes:
        field: complex phasors of the primary components on the region: TM ``Ez`` and TE ``eta0 Hz``
            of shape ``(n_freq, *region_shape)``; 3D ``(Ex, Ey, Ez)`` of shape ``(n_freq, 3, *region_shape)``.
            Normalised to the source (a unit incident plane wave has phasor ``exp(i k . x)``).
            Each component is sampled at its Yee position (see :mod:`solvers.maxwell.yee`).
        components: every monitored component by name, each ``(n_freq, *region_shape)``.
        point_field: phasors at the points, ``(n_freq, n_comp, n_points)``, or ``None``.
        traces: time traces at the points, ``(n_steps, n_comp, n_points)`` (E at ``time``, H half
            a step earlier), or ``None`` (no points, or ``gradient="adjoint"``).
        time: E sample times of ``traces`` in s, ``(n_steps,)``, or ``None``.
        permittivity: relative permittivity at the grid nodes, ``grid.shape``.
        frequencies: Hz, ``(n_freq,)``; dt: time step in s; steps: steps run.
        converged: whether the convergence criterion was met (always ``True`` with a fixed duration);
        change: the last relative phasor change measured (``nan`` with a fixed duration).
    """

    field: jax.Array
    components: dict
    point_field: jax.Array | None
    traces: jax.Array | None
    time: np.ndarray | None
    permittivity: jax.Array
    frequencies: np.ndarray
    dt: float = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    converged: bool = eqx.field(static=True)
    change: float = eqx.field(static=True)


def time_step(grid: Grid, courant: float) -> float:
    """Largest stable step times ``courant``: ``courant * dx / (c0 sqrt(ndim))`` in s."""
    return courant * grid.spacing / (C0 * math.sqrt(grid.ndim))


def component_permittivity(medium: Medium, mode: Mode, subpixel: bool, dtype,
                           shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Permittivity and conductivity at the E components, each ``(n_e, *shape)``.

    Staircased: the mean of the two nodes a component sits between (nodes for components normal
    to the plane in 2D). ``subpixel=True`` takes ``medium.component_permittivity``.
    """
    eps = jnp.broadcast_to(jnp.asarray(medium.permittivity, dtype), shape)
    sig = jnp.broadcast_to(jnp.asarray(medium.conductivity, dtype), shape)

    def at(v, c):
        return v if c >= v.ndim else 0.5 * (v + jnp.roll(v, -1, axis=c))

    if subpixel:
        eps_c = jnp.asarray(medium.component_permittivity, dtype)[jnp.array(mode.e)]
    else:
        eps_c = jnp.stack([at(eps, c) for c in mode.e])
    return eps_c, jnp.stack([at(sig, c) for c in mode.e])


def _periodic_tuple(periodic, ndim: int) -> tuple[bool, ...]:
    if isinstance(periodic, (bool, np.bool_)):
        return (bool(periodic),) * ndim
    p = tuple(bool(v) for v in periodic)
    if len(p) != ndim:
        raise ValueError(f"periodic must be a bool or {ndim} bools (one per axis), got {periodic!r}")
    return p


def tfsf_box(grid: Grid, pml_size: int, margin: int, periodic, open_sides=()) -> tuple[list, list]:
    """Bounds ``(lo, hi)`` in cells of the total-field box, ``margin`` cells inside the PML.

    ``open_sides``: ``(axis, "low" | "high")`` pairs whose face is removed (the box extends through
    the PML to the grid edge there), e.g. to let a wave enter a half-space. Periodic axes are open.
    """
    lo = [float(pml_size + margin)] * grid.ndim
    hi = [float(n - 1 - pml_size - margin) for n in grid.shape]
    for a in range(grid.ndim):
        if periodic[a]:
            lo[a], hi[a] = -np.inf, np.inf
        elif hi[a] - lo[a] < 2:
            raise ValueError(f"grid axis {a} ({grid.shape[a]} cells) is too small for pml_size={pml_size} "
                             f"plus tfsf_margin={margin}: the total-field box needs >= 3 cells")
    for side in open_sides:
        if not (isinstance(side, (tuple, list)) and len(side) == 2 and side[0] in range(grid.ndim)
                and side[1] in ("low", "high")):
            raise ValueError(f"tfsf_open must hold (axis, 'low'|'high') pairs with axis < {grid.ndim}, got {side!r}")
        if side[1] == "low":
            lo[side[0]] = -np.inf
        else:
            hi[side[0]] = np.inf
    return lo, hi


def _check_background(medium: Medium, grid: Grid, source, box) -> None:
    """The medium must equal the source's background (lossless) within a cell of each TFSF face."""
    if not isinstance(source, (PlaneWave, GaussianBeam)) or not is_concrete(medium.permittivity):
        return
    eps = np.broadcast_to(np.asarray(medium.permittivity, np.float64), grid.shape)
    sig = np.broadcast_to(np.asarray(medium.conductivity, np.float64), grid.shape)
    shell = np.zeros(grid.shape, bool)
    for a, n in enumerate(grid.shape):
        for face in box[0][a], box[1][a]:
            if np.isfinite(face):
                idx = [slice(None)] * grid.ndim
                idx[a] = slice(max(int(face) - 1, 0), min(int(face) + 2, n))
                shell[tuple(idx)] = True
    bg = source.background_permittivity
    if np.any(np.abs(eps[shell] - bg) > 1e-6 * bg) or np.any(sig[shell] != 0):
        raise ValueError(f"permittivity must equal the source's background_permittivity={bg:g} (and conductivity 0) "
                         f"within one cell of the total-field/scattered-field box faces (box {box}); move the "
                         f"object inward, change tfsf_margin, or open a side with tfsf_open")


def check_pml_size(pml_size: int, grid: Grid, periodic: tuple[bool, ...]) -> int:
    """``pml_size`` must leave >= 4 interior cells on every non-periodic axis."""
    bounded = [n for n, p in zip(grid.shape, periodic) if not p]
    return check_int_range("pml_size", pml_size, 0, (min(bounded) - 4) // 2 if bounded else None)


def _validate(grid, medium, source, frequencies, duration, pml_size, courant, tolerance, periodic, tfsf_margin):
    if not isinstance(medium, Medium):
        raise ValueError(f"medium must be a maxwell.Medium, got {type(medium).__name__}")
    if not isinstance(source, SOURCES):
        raise ValueError(f"source must be one of {[s.__name__ for s in SOURCES]}, got {type(source).__name__}")
    medium.check_grid(grid)
    pml_size = check_pml_size(pml_size, grid, periodic)
    courant = check_positive_finite_scalar("courant", courant)
    if courant > 1.0:
        raise ValueError(f"courant must be in (0, 1] (fraction of the Yee stability limit), got {courant}")
    check_positive_finite_scalar("tolerance", tolerance)
    check_int_range("tfsf_margin", tfsf_margin, 1)
    if duration is not None:
        check_positive_finite_scalar("duration", duration)
    freqs = np.atleast_1d(np.asarray([source.frequency] if frequencies is None else frequencies, np.float64))
    if freqs.ndim != 1 or freqs.size == 0 or not np.all(np.isfinite(freqs)) or np.any(freqs <= 0):
        raise ValueError(f"frequencies must be a non-empty list of finite values > 0 Hz, got {frequencies!r}")
    eps_max = medium.max_permittivity()
    if medium.component_permittivity is not None and is_concrete(medium.component_permittivity):
        eps_max = max(eps_max or 0.0, float(np.max(np.asarray(medium.component_permittivity))))
    n_max = math.sqrt(eps_max) if eps_max else 1.0
    cells = source.wavelength / (n_max * grid.spacing)
    if cells < 2:
        raise ValueError(f"wavelength must span >= 2 cells in the densest medium (n = {n_max:.4g}): "
                         f"wavelength {source.wavelength:g} m is {cells:.3g} cells of {grid.spacing:g} m")
    cells_f = C0 / (freqs.max() * n_max * grid.spacing)
    if cells_f < 2:
        raise ValueError(f"frequencies must be resolved by >= 2 cells per wavelength in the densest medium; "
                         f"the highest, {freqs.max():g} Hz, gives {cells_f:.3g} cells")
    if source.waveform == "cw":
        if np.any(np.abs(freqs - source.frequency) > CW_FREQUENCY_TOLERANCE * source.frequency):
            raise ValueError(f"frequencies must be within {CW_FREQUENCY_TOLERANCE:.0%} of the cw source frequency "
                             f"{source.frequency:g} Hz (c0 / wavelength); use waveform='pulse' for other "
                             f"frequencies, got {freqs.tolist()}")
        # A steady cw field holds only the source frequency (a rounded c0, e.g. 3e8, lands here).
        freqs = np.full_like(freqs, source.frequency)
    return freqs, pml_size, courant


CW_FREQUENCY_TOLERANCE = 1e-2  # relative


@eqx.filter_jit
def _advance(op: YeeOperator, inj: Injection, mon: Monitor, fields: Fields, acc: dict, start: jax.Array,
             n: int, dft: bool, traces: bool, dt: float, checkpoint: str):
    """Run ``n`` leapfrog steps from step index ``start``; returns fields, DFT sums, traces or ``None``."""
    dtype = fields.e.dtype

    def body(carry, k):
        f, a = carry
        t = (start + k).astype(dtype) * dt
        f = driven_step(op, inj, f, t, dt)
        if dft:
            a = mon.accumulate(a, f, t + dt, dt)
        return (f, a), (mon.point_values(f) if traces else None)

    (fields, acc), ys = scan(body, (fields, acc), jnp.arange(n), checkpoint=checkpoint)
    return fields, acc, ys


def simulate(
    grid: Grid,
    medium: Medium,
    source: PlaneWave | GaussianBeam | PointDipole,
    frequencies=None,
    duration: float | None = None,
    *,
    pml_size: int = 20,
    polarization: str = "TM",
    subpixel: bool | None = None,
    courant: float = 0.99,
    tolerance: float = 1e-3,
    check_periods: int = 2,
    max_periods: int = 2000,
    components=None,
    region=None,
    points=None,
    periodic=False,
    tfsf_margin: int = 4,
    tfsf_open=(),
    checkpoint: str = "segmented",
    gradient: str = "checkpoint",
) -> Result:
    """Time-domain FDTD run returning phasors at ``frequencies``.

    Args:
        grid: 2D or 3D grid.
        medium: permittivity / conductivity on ``grid``.
        source: :class:`PlaneWave`, :class:`GaussianBeam` or :class:`PointDipole`.
        frequencies: Hz, positive; default ``[source.frequency]``. A cw source has only its own
            frequency: values within 1% of it (e.g. from a rounded c0) are taken as it, and
            ``Result.frequencies`` reports the frequency used.
        duration: simulated time in s; ``None`` runs until converged (see module docstring).
        pml_size: CPML thickness in cells on each non-periodic edge (0: PEC box).
        polarization: "TM" (Ez) or "TE" (Hz) in 2D; ignored in 3D.
        subpixel: use ``medium.component_permittivity`` (from :func:`subpixel.smoothed_medium`);
            ``None``: whenever the medium has it (see :func:`subpixel.use_subpixel`).
        courant: fraction of the stability limit, in (0, 1].
        tolerance: relative phasor change that counts as converged.
        check_periods: cw convergence chunk in periods (>= 2).
        max_periods: give up (with a warning, ``converged=False``) after this many periods.
        components: names to monitor (default TM ("Ez",), TE ("Hz",), 3D ("Ex", "Ey", "Ez")).
        region: ``((start, stop), ...)`` index ranges of the DFT region (default: whole grid).
        points: ``(n, ndim)`` positions in m for point phasors and time traces.
        periodic: bool or one bool per axis; periodic axes have no PML and wrap around.
        tfsf_margin: cells between the PML and the TFSF box.
        tfsf_open: ``(axis, "low" | "high")`` faces of the TFSF box to remove (see :func:`tfsf_box`).
        checkpoint: gradient checkpointing of the time loop ("none", "segmented", "recursive").
        gradient: "checkpoint" (``jax.grad`` through the checkpointed loop) or "adjoint" (the exact
            time-reversal adjoint of :mod:`solvers.maxwell.adjoint`: lossless media, fixed ``duration``,
            no time traces; no gradient for the permittivity inside the CPML).

    Raises:
        ValueError: invalid arguments (before anything is compiled or run).
    """
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a solvers.Grid, got {type(grid).__name__}")
    periodic = _periodic_tuple(periodic, grid.ndim)
    freqs, pml_size, courant = _validate(grid, medium, source, frequencies, duration, pml_size, courant,
                                         tolerance, periodic, tfsf_margin)
    check_choice("checkpoint", checkpoint, CHECKPOINTING)
    check_choice("gradient", gradient, ("checkpoint", "adjoint"))
    if gradient == "adjoint":
        if duration is None:
            raise ValueError("gradient='adjoint' needs a fixed duration (s) > 0, got duration=None")
        if not is_concrete(medium.conductivity) or np.any(np.asarray(medium.conductivity) != 0):
            raise ValueError("gradient='adjoint' needs a lossless medium: conductivity must be 0 S/m everywhere "
                             "(a concrete value)")
    check_int_range("check_periods", check_periods, 2)
    check_int_range("max_periods", max_periods, 1)
    mode = make_mode(grid.ndim, polarization)
    subpixel = use_subpixel(medium, subpixel)
    box = tfsf_box(grid, pml_size, tfsf_margin, periodic, tfsf_open)
    _check_background(medium, grid, source, box)
    dtype = compute_dtype(medium.permittivity, medium.conductivity)
    dt = time_step(grid, courant)
    f0 = source.frequency
    cw = source.waveform == "cw"
    spp = math.ceil(1.0 / (f0 * dt))  # steps per source period
    if cw:
        dt = 1.0 / (f0 * spp)
    inj = source.injection(grid, mode, periodic, pml_size, dt, box, dtype)
    mon = Monitor(grid, mode, freqs, components, region, points, dtype)
    eps_c, sig_c = component_permittivity(medium, mode, subpixel, dtype, grid.shape)
    op = YeeOperator(grid.shape, mode, eps_c, sig_c, dt, grid.spacing, pml_size, periodic, dtype)
    fields = op.zero_fields(dtype)
    want_traces = points is not None

    if duration is not None:
        total = math.ceil(duration / dt)
        window = spp if cw else total
        if total < window:
            raise ValueError(f"duration must cover at least one source period ({window * dt:g} s) for a cw source, "
                             f"got {duration:g} s")
        acc = mon.zero_accumulator(dtype)
        trace_parts = []
        if gradient == "adjoint":
            want_traces = False
            const_op = YeeOperator(grid.shape, mode, jnp.ones_like(eps_c), 0.0, dt, grid.spacing, pml_size, periodic,
                                   dtype)
            const_inj = eqx.tree_at(lambda i: i.amplitude, inj, jnp.ones((), dtype))
            acc = adjoint_run(const_op, const_inj, mon, total, total - window, dt, op.cb, inj.amplitude)
        elif total > window:
            fields, _, ys = _advance(op, inj, mon, fields, acc, jnp.asarray(0), total - window, False,
                                     want_traces, dt, checkpoint)
            trace_parts.append(ys)
        if gradient != "adjoint":
            fields, acc, ys = _advance(op, inj, mon, fields, acc, jnp.asarray(total - window), window, True,
                                       want_traces, dt, checkpoint)
            trace_parts.append(ys)
        norm = normalisation(inj.g, freqs, total - window + 1, window, dt, inj.time_shift)
        converged, change, steps = True, float("nan"), total
    else:
        if not all(is_concrete(x) for x in jax.tree_util.tree_leaves((medium, source))):
            raise ValueError("duration must be given when differentiating or tracing simulate "
                             "(the convergence loop decides its length at run time)")
        acc, norm, trace_parts, steps, change, converged = _converge(
            op, inj, mon, fields, grid, medium, source, freqs, dt, spp, cw, check_periods, max_periods,
            tolerance, want_traces, checkpoint, dtype)
    phasor = {k: v / jnp.asarray(norm, v.dtype).reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in acc.items()}
    comps = {name: phasor["grid"][:, i] for i, name in enumerate(mon.names)}
    field = phasor["grid"] if mode.name == "3D" and components is None else phasor["grid"][:, 0]
    traces = time = None
    if want_traces:
        traces = jnp.concatenate(trace_parts)
        time = np.arange(1, steps + 1) * dt
    return Result(field=field, components=comps, point_field=phasor.get("points"), traces=traces, time=time,
                  permittivity=jnp.broadcast_to(jnp.asarray(medium.permittivity, dtype), grid.shape),
                  frequencies=freqs, dt=dt, steps=steps, converged=converged, change=change)


def _converge(op, inj, mon, fields, grid, medium, source, freqs, dt, spp, cw, check_periods, max_periods,
              tolerance, want_traces, checkpoint, dtype):
    """Host loop of chunks until the phasor stops changing (see module docstring)."""
    eps_max = medium.max_permittivity()
    crossing = math.sqrt(eps_max) * math.dist(np.zeros(grid.ndim), np.array(grid.shape) * grid.spacing) / C0
    if cw:
        chunk = check_periods * spp
        min_steps = (source.ramp_cycles + 2 * crossing * source.frequency) * spp
    else:
        chunk = max(spp, math.ceil(crossing / 4 / dt))
        tau = 2 * math.sqrt(math.log(2.0)) / (math.pi * source.bandwidth * source.frequency)
        min_steps = (8 * tau + crossing) / dt
    max_steps = max_periods * spp
    steps, prev, change, trace_parts = 0, None, float("inf"), []
    acc = mon.zero_accumulator(dtype)
    norm = np.zeros(len(freqs), complex)
    while True:
        if cw:
            acc = mon.zero_accumulator(dtype)
            fields, _, ys0 = _advance(op, inj, mon, fields, acc, jnp.asarray(steps), chunk - spp, False,
                                      want_traces, dt, checkpoint)
            fields, acc, ys1 = _advance(op, inj, mon, fields, acc, jnp.asarray(steps + chunk - spp), spp, True,
                                        want_traces, dt, checkpoint)
            trace_parts += [ys0, ys1]
            norm = normalisation(inj.g, freqs, steps + chunk - spp + 1, spp, dt, inj.time_shift)
        else:
            fields, acc, ys = _advance(op, inj, mon, fields, acc, jnp.asarray(steps), chunk, True,
                                       want_traces, dt, checkpoint)
            trace_parts.append(ys)
            norm = norm + normalisation(inj.g, freqs, steps + 1, chunk, dt, inj.time_shift)
        steps += chunk
        if np.all(np.abs(norm) > 0):  # the waveform has reached the DFT window
            cur = np.asarray(acc["grid"]) / norm.reshape((-1,) + (1,) * (acc["grid"].ndim - 1))
            if prev is not None:
                change = float(np.linalg.norm(cur - prev) / max(np.linalg.norm(cur), 1e-300))
            prev = cur
        if steps >= min_steps and change <= tolerance:
            return acc, norm, trace_parts, steps, change, True
        if steps >= max_steps:
            warnings.warn(f"maxwell.simulate did not converge in {max_periods} periods "
                          f"(last relative change {change:.3g} > tolerance {tolerance:g})", stacklevel=3)
            return acc, norm, trace_parts, steps, change, False
