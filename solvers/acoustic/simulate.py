"""One call that runs an acoustic simulation: ``simulate(grid, medium, duration, ...)``."""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from solvers.acoustic.medium import Medium
from solvers.acoustic.sources import PointSource, SourceTerm
from solvers.acoustic.stepper import DEFAULT_CFL, Stepper, check_scheme, time_axis
from solvers.dtypes import compute_dtype
from solvers.grid import Grid
from solvers.points import KERNELS, PointSampler
from solvers.scan import CHECKPOINTING
from solvers.validate import check_choice, check_int_range, check_positive_finite_scalar, is_concrete


class SimulationResult(eqx.Module):
    """Output of :func:`simulate`.

    Attributes:
        time: ``(nt,)`` sample times ``k * dt`` in s (``time[0] = 0`` is the initial state).
        traces: ``(nt, n_sensors)`` pressure in Pa at the sensors, ``traces[k]`` at ``time[k]``;
            ``None`` without sensors.
        pressure: pressure field at ``time[-1]``, ``grid.shape``.
        snapshots: ``(n_snap, *grid.shape)`` pressure at ``snapshot_times`` (rounded to the nearest
            step), or ``None``.
        snapshot_steps: the time indices of the snapshots (static), ``()`` when none.
        dt: the time step in s.
    """

    time: jnp.ndarray
    traces: jnp.ndarray | None
    pressure: jnp.ndarray
    snapshots: jnp.ndarray | None
    dt: jnp.ndarray
    snapshot_steps: tuple[int, ...] = eqx.field(static=True, default=())


class _Config(NamedTuple):
    grid: Grid
    scheme: str
    fd_order: int
    fd_kind: str
    pml_size: int
    pml_alpha: float
    alpha_power: float
    nt: int
    snapshot_steps: tuple[int, ...]
    checkpoint: str
    segment: int | None
    checkpoints: int | None


@functools.partial(jax.jit, static_argnums=0)
def _simulate_core(cfg: _Config, c, rho, alpha, dt, c_ref, p0, terms, sensors) -> SimulationResult:
    medium = Medium(c, rho, 0.0 if alpha is None else alpha, cfg.alpha_power)
    st = Stepper(cfg.grid, medium, cfg.scheme, cfg.pml_size, dt=dt, fd_order=cfg.fd_order, c_ref=c_ref,
                 pml_alpha=cfg.pml_alpha, fd_coefficients=cfg.fd_kind)
    state = st.init(p0)
    traces = [] if sensors is None else [sensors.gather(state.p)[None]]
    snaps = []
    t = 0
    for stop in sorted(set(cfg.snapshot_steps) | {cfg.nt - 1}):
        state, rec = st.advance(state, stop - t, sources=terms, t0=t, sensors=sensors, checkpoint=cfg.checkpoint,
                                segment=cfg.segment, checkpoints=cfg.checkpoints)
        if sensors is not None:
            traces.append(rec)
        t = stop
        snaps.append((stop, state.p))
    by_step = dict(snaps)
    snapshots = jnp.stack([by_step[k] for k in cfg.snapshot_steps]) if cfg.snapshot_steps else None
    return SimulationResult(time=st.dt * jnp.arange(cfg.nt, dtype=st.dtype),
                            traces=None if sensors is None else jnp.concatenate(traces),
                            pressure=state.p, snapshots=snapshots, dt=st.dt, snapshot_steps=cfg.snapshot_steps)


def _warn_if_in_pml(grid: Grid, name: str, points: np.ndarray, pml_size: int) -> None:
    """Warn when any of ``points`` (m, ``(n, ndim)``) lies inside the absorbing layer."""
    if pml_size == 0:
        return
    cells = points / grid.spacing
    inside = np.any((cells < pml_size) | (cells > np.array(grid.shape) - 1 - pml_size), axis=1)
    if np.any(inside):
        warnings.warn(f"{int(inside.sum())} of the {name} lie inside the {pml_size}-cell PML, where the field "
                      f"is attenuated", UserWarning, stacklevel=3)


def simulate(grid: Grid, medium: Medium, duration: float, p0: jnp.ndarray | None = None,
             sources: PointSource | list[PointSource] | tuple[PointSource, ...] | None = None,
             sensors: np.ndarray | None = None, scheme: str = "pstd", pml_size: int = 20, dt: float | None = None,
             cfl: float = DEFAULT_CFL, fd_order: int = 4, snapshot_times: np.ndarray | None = None,
             checkpoint: str = "segmented", *, segment: int | None = None, checkpoints: int | None = None,
             c_ref: float | None = None, pml_alpha: float = 2.0, sensor_kernel: str = "sinc",
             source_kernel: str = "sinc", fd_coefficients: str = "taylor") -> SimulationResult:
    """Simulate linear acoustic propagation over ``[0, duration]``.

    Args:
        grid: the grid (the PML, if any, lies inside it).
        medium: sound speed, density and absorption.
        duration: simulated time in s (>= 0).
        p0: initial pressure in Pa, ``grid.shape`` (velocity starts at zero), or ``None``.
        sources: time-varying point sources; signals have ``nt`` samples on the solver time axis
            (use :func:`time_axis` to get ``dt`` and ``nt``).
        sensors: ``(n_sensors, ndim)`` positions in metres inside the grid. As in k-Wave, points
            inside the PML are allowed (with a warning), but what they record is attenuated.
        scheme: ``"pstd"`` or ``"fd"``.
        pml_size: PML thickness in cells (0: periodic, lossless).
        dt: explicit time step in s (required when the medium is traced); default from ``cfl``.
        cfl: ``c_max dt / h`` when ``dt`` is ``None``.
        fd_order: 2, 4, 6 or 8 (``fd`` only).
        fd_coefficients: ``"taylor"`` or ``"dispersion"`` (``fd`` only): stencil coefficients
            fitted to cancel the leapfrog's temporal dispersion at this run's Courant number (see
            :func:`solvers.acoustic.operators.fd_coefficients`); better at large CFL numbers.
        snapshot_times: times in s at which to store the full pressure field.
        checkpoint: gradient checkpointing of the time loop: ``"segmented"``, ``"recursive"`` or
            ``"none"`` (see :mod:`solvers.scan`).
        segment, checkpoints: checkpointing parameters.
        c_ref: reference sound speed of the k-space correction and the PML (default ``max c``).
        pml_alpha: PML strength (Np per cell at the outer edge).
        sensor_kernel, source_kernel: ``"sinc"`` (band-limited, 8 points per axis) or ``"linear"``
            point interpolation, for both schemes. Linear interpolation costs accuracy: on the
            breast phantom of ``experiments/bench_acoustic.py`` (128-element ring, 10 points per
            shortest wavelength) ``fd4`` traces are 0.73% off a fine-grid reference with
            ``"linear"`` sensors and 0.12% with ``"sinc"``.

    Returns:
        a :class:`SimulationResult`.

    Composes with ``jax.jit``, ``jax.grad`` (sound speed, density, absorption, ``p0``, source
    signals) and ``jax.vmap``; a traced medium needs an explicit ``dt``. Every input is checked
    before anything is compiled; compiled code is cached per static configuration and shapes.
    """
    check_scheme(scheme, fd_order, fd_coefficients)
    check_choice("checkpoint", checkpoint, CHECKPOINTING)
    pml_size = check_int_range("pml_size", pml_size, 0, min(grid.shape) // 2 - 1)
    pml_alpha = check_positive_finite_scalar("pml_alpha", pml_alpha)
    check_choice("sensor_kernel", sensor_kernel, KERNELS)
    check_choice("source_kernel", source_kernel, KERNELS)
    if c_ref is not None:
        c_ref = check_positive_finite_scalar("c_ref", c_ref)
    dt, nt = time_axis(grid, medium, duration, cfl=cfl, dt=dt, scheme=scheme, fd_order=fd_order, c_ref=c_ref,
                       fd_coefficients=fd_coefficients)

    if p0 is not None:
        if tuple(np.shape(p0)) != grid.shape:
            raise ValueError(f"p0 must have shape {grid.shape} (the grid shape), got {tuple(np.shape(p0))}")
        if is_concrete(p0) and not np.all(np.isfinite(np.asarray(p0))):
            raise ValueError("p0 must be finite everywhere")
    if sources is None:
        sources = ()
    elif isinstance(sources, PointSource):
        sources = (sources,)
    sources = tuple(sources)
    for i, s in enumerate(sources):
        if not isinstance(s, PointSource):
            raise ValueError(f"sources[{i}] must be an acoustic.PointSource, got {type(s).__name__}")
        _warn_if_in_pml(grid, f"sources[{i}].positions", grid.check_points(f"sources[{i}].positions", s.positions),
                        pml_size)
        if s.num_samples != nt:
            raise ValueError(f"sources[{i}].signals must have nt={nt} samples (duration {duration:g} s, "
                             f"dt {dt:.6g} s; see acoustic.time_axis), got {s.num_samples}")
    sampler = None
    if sensors is not None:
        pts = grid.check_points("sensors", sensors)
        _warn_if_in_pml(grid, "sensors", pts, pml_size)
        sampler = PointSampler(grid, pts, kernel=sensor_kernel, name="sensors")
    steps: tuple[int, ...] = ()
    if snapshot_times is not None:
        ts = np.atleast_1d(np.asarray(snapshot_times, dtype=np.float64))
        if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(ts > (nt - 1) * dt * (1 + 1e-9)):
            raise ValueError(f"snapshot_times must be finite times in [0, {(nt - 1) * dt:.6g}] s, got {snapshot_times!r}")
        steps = tuple(int(k) for k in np.clip(np.rint(ts / dt), 0, nt - 1))

    dtype = compute_dtype(medium.sound_speed, medium.density, medium.alpha_coeff, p0, *[s.signals for s in sources])
    terms = tuple(SourceTerm(grid, s, source_kernel, f"sources[{i}]", dtype) for i, s in enumerate(sources))
    c = jnp.asarray(medium.sound_speed, dtype)
    rho = jnp.asarray(medium.density, dtype)
    alpha = jnp.asarray(medium.alpha_coeff, dtype) if medium.absorbing else None
    cfg = _Config(grid, scheme, int(fd_order), fd_coefficients, pml_size, pml_alpha, medium.alpha_power, nt, steps,
                  checkpoint, segment, checkpoints)
    return _simulate_core(cfg, c, rho, alpha, jnp.asarray(dt, dtype), None if c_ref is None else jnp.asarray(c_ref, dtype),
                          None if p0 is None else jnp.asarray(p0, dtype), terms, sampler)
