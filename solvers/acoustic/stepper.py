"""Time stepping of linear acoustics: a time-synchronised kick-drift-kick leapfrog.

Equations (first order, heterogeneous ``c`` and ``rho``, optional absorption):

    dv_d/dt = -(1 / rho) dp/dx_d + f_d
    dp/dt   = -rho c^2 div v - A p + s
    A p     = 2 alpha_0 c^(1+y) (-lap)^(y/2) p      (power-law absorption, no dispersion term)

``A`` damps a plane wave of angular frequency ``omega`` by ``alpha_0 * omega**y`` Np/m
(``y = 0``: frequency independent). One step of size ``dt`` is

    v <- v + dt/2 * dv/dt(p);   p <- p + dt * dp/dt(v);   v <- v + dt/2 * dv/dt(p)

so ``(p, v)`` are both at time ``t`` between steps, and the lossless scheme without PML is exactly
time reversible: ``R step R step = identity`` with ``R (p, v) = (p, -v)``. Consecutive half kicks
are fused, so a run of ``n`` steps costs ``n + 1`` pressure gradients. With ``v = 0`` initially the
first half kick reproduces k-Wave's and jwave's ``u(-dt/2) = -u(dt/2)`` initial condition.

With a PML the pressure is split into one component per axis (``p = sum_d p_d``) as in k-Wave.
"""

from __future__ import annotations

import functools
import math
import operator as op

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from solvers import scan as scan_mod
from solvers.acoustic.medium import Medium
from solvers.acoustic.operators import (
    FD_KINDS,
    FD_ORDERS,
    fd_backward,
    fd_forward,
    fd_stability_sum,
    spectral_multipliers,
    wavenumber_magnitude,
)
from solvers.acoustic.operators import fd_coefficients as fd_stencil  # the name is also an argument here
from solvers.acoustic.pml import pml_depth
from solvers.acoustic.sources import SourceTerm
from solvers.dtypes import compute_dtype
from solvers.grid import Grid
from solvers.points import PointSampler
from solvers.protocol import StepperModule
from solvers.validate import check_choice, check_int_range, check_positive_finite_scalar, is_concrete

SCHEMES = ("pstd", "fd")
DEFAULT_CFL = 0.3


class State(eqx.Module):
    """The acoustic state at one time.

    Attributes:
        p_split: pressure components in Pa, one array of ``grid.shape`` without a PML, one per axis
            with a PML (split field); the pressure is their sum.
        v: particle velocity in m/s, one array of ``grid.shape`` per axis; component ``d`` at index
            ``i`` sits half a cell forward along ``d``.
    """

    p_split: tuple[jnp.ndarray, ...]
    v: tuple[jnp.ndarray, ...]

    @property
    def p(self) -> jnp.ndarray:
        """Pressure in Pa, shape ``grid.shape``."""
        return functools.reduce(op.add, self.p_split)


FD_DEFAULTS = (4, "taylor")  # fd_order, fd_coefficients: the defaults, and the only values pstd accepts


def check_scheme(scheme: str, fd_order: int, fd_coefficients: str, prefix: str = "") -> None:
    """Raise unless ``scheme`` is one of :data:`SCHEMES`, ``fd_order`` and ``fd_coefficients`` are
    valid, and ``pstd`` is not given stencil settings it would ignore: with ``scheme="pstd"``,
    ``fd_order`` and ``fd_coefficients`` must keep their defaults :data:`FD_DEFAULTS`.

    ``prefix`` is put before every setting's name in the message (e.g. ``"data.acoustic."``).
    """
    check_choice(prefix + "scheme", scheme, SCHEMES)
    check_choice(prefix + "fd_order", fd_order, FD_ORDERS)
    check_choice(prefix + "fd_coefficients", fd_coefficients, FD_KINDS)
    if scheme == "pstd" and (fd_order, fd_coefficients) != FD_DEFAULTS:
        raise ValueError(f"{prefix}fd_order / fd_coefficients: they set the fd stencil, and {prefix}scheme is "
                         f"'pstd' (leave them at {FD_DEFAULTS[0]}, {FD_DEFAULTS[1]!r}), got {fd_order}, "
                         f"{fd_coefficients!r}")


def stable_dt(grid: Grid, medium: Medium, scheme: str = "pstd", fd_order: int = 4,
              c_ref: float | None = None, fd_coefficients: str = "taylor") -> float:
    """The largest stable time step in s (``inf`` when unconditionally stable), concrete media only.

    - ``fd``: ``c_max dt / h <= 1 / (sqrt(ndim) * sum |c_m|)`` (see
      :func:`~solvers.acoustic.operators.fd_stability_sum`);
    - ``pstd``: unconditionally stable when ``c_ref >= c_max`` (k-Wave), else
      ``2 / (c_ref k_max) * asin(c_ref / c_max)`` with ``k_max = sqrt(ndim) pi / h``;
    - absorption (explicit): additionally ``dt * max(A) <= 1``.
    """
    h, nd = grid.spacing, grid.ndim
    c_max = medium.max_sound_speed()
    kmax = math.sqrt(nd) * math.pi / h
    if scheme == "fd":
        limit = h / (c_max * math.sqrt(nd) * fd_stability_sum(fd_order, fd_coefficients, nd))
    else:
        cr = c_max if c_ref is None else float(c_ref)
        limit = math.inf if cr >= c_max else 2.0 / (cr * kmax) * math.asin(cr / c_max)
    if medium.absorbing:
        alpha = np.asarray(medium.alpha_neper(jnp.float32), np.float64)
        rate = 2 * np.max(alpha * np.asarray(medium.sound_speed, np.float64) ** (1 + medium.alpha_power))
        rate *= kmax**medium.alpha_power
        if rate > 0:
            limit = min(limit, 1.0 / rate)
    return limit


def time_axis(grid: Grid, medium: Medium, duration: float, cfl: float = DEFAULT_CFL, dt: float | None = None, *,
              scheme: str = "pstd", fd_order: int = 4, c_ref: float | None = None,
              fd_coefficients: str = "taylor") -> tuple[float, int]:
    """The time step and number of time samples covering ``[0, duration]``.

    Args:
        duration: simulated time in s (>= 0).
        cfl: ``c_max dt / h`` used when ``dt`` is ``None``.
        dt: explicit time step in s; required when the medium is traced (under jit/vmap/grad).
    Returns:
        ``(dt, nt)`` with ``nt = floor(duration / dt) + 1`` samples ``t_k = k dt``.
    Raises:
        ValueError: negative/non-finite duration, unknown scheme, a traced medium without ``dt``,
            or a ``dt`` above the stability limit of :func:`stable_dt`.
    """
    check_scheme(scheme, fd_order, fd_coefficients)
    try:
        duration = float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"duration must be a finite number >= 0 (s), got {duration!r}") from None
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number >= 0 (s), got {duration!r}")
    medium.validate(grid)
    if not medium.is_concrete:
        if dt is None:
            raise ValueError("dt must be given explicitly when the medium is traced (inside jit/vmap/grad): "
                             "the number of steps must be static")
        dt = check_positive_finite_scalar("dt", dt)
    else:
        limit = stable_dt(grid, medium, scheme, fd_order, c_ref, fd_coefficients)
        if dt is None:
            cfl = check_positive_finite_scalar("cfl", cfl)
            dt = cfl * grid.spacing / medium.max_sound_speed()
            if dt > limit:
                raise ValueError(f"cfl={cfl:g} gives dt={dt:.4g} s, above the stability limit {limit:.4g} s "
                                 f"of scheme={scheme!r}; cfl must be <= {limit * medium.max_sound_speed() / grid.spacing:.4g}")
        else:
            dt = check_positive_finite_scalar("dt", dt)
            if dt > limit:
                raise ValueError(f"dt must be in (0, {limit:.4g}] s for stability (scheme={scheme!r}, "
                                 f"fd_order={fd_order}, c_max={medium.max_sound_speed():g} m/s), got {dt:.4g} s")
    return dt, int(math.floor(duration / dt + 1e-6)) + 1


def _axis_shape(axis: int, ndim: int) -> list[int]:
    return [-1 if e == axis else 1 for e in range(ndim)]


class Stepper(StepperModule):
    """A differentiable acoustic time stepper (implements :class:`solvers.Stepper`).

    Args:
        grid: the grid.
        medium: the medium (validated here, before anything compiles).
        scheme: ``"pstd"`` (k-space pseudospectral, periodic without a PML) or ``"fd"`` (staggered
            finite differences of order ``fd_order``, periodic without a PML).
        pml_size: PML thickness in cells (0: lossless, non-absorbing, periodic domain).
        dt: time step in s; ``None`` derives it from ``cfl`` (concrete media only).
        cfl: ``c_max dt / h`` when ``dt`` is ``None``.
        fd_order: 2, 4, 6 or 8.
        c_ref: reference sound speed of the k-space correction and PML (m/s); default ``max c``.
        pml_alpha: PML absorption ``alpha`` in Np per cell at the outer edge (k-Wave's default 2).
        fd_coefficients: ``"taylor"`` or ``"dispersion"``: stencil coefficients fitted to cancel
            the leapfrog's temporal dispersion at the Courant number ``c_ref dt / h``
            (:func:`~solvers.acoustic.operators.fd_coefficients`); ``fd`` only.
    """

    grid: Grid
    scheme: str = eqx.field(static=True)
    fd_order: int = eqx.field(static=True)
    pml_size: int = eqx.field(static=True)
    alpha_power: float = eqx.field(static=True)
    dt: jnp.ndarray
    c_ref: jnp.ndarray
    sound_speed: jnp.ndarray
    bulk: jnp.ndarray
    inv_rho: tuple[jnp.ndarray, ...]
    absorption: jnp.ndarray | None
    fractional: jnp.ndarray | None
    forward: tuple[jnp.ndarray, ...] | None
    backward: tuple[jnp.ndarray, ...] | None
    stencil: jnp.ndarray | None
    sigma_p: tuple[jnp.ndarray, ...] | None
    sigma_v: tuple[jnp.ndarray, ...] | None

    def __init__(self, grid: Grid, medium: Medium, scheme: str = "pstd", pml_size: int = 0,
                 dt: float | None = None, cfl: float = DEFAULT_CFL, fd_order: int = 4, *,
                 c_ref: float | None = None, pml_alpha: float = 2.0, fd_coefficients: str = "taylor"):
        check_scheme(scheme, fd_order, fd_coefficients)
        self.pml_size = check_int_range("pml_size", pml_size, 0, min(grid.shape) // 2 - 1)
        pml_alpha = check_positive_finite_scalar("pml_alpha", pml_alpha)
        if dt is None or is_concrete(dt):
            dt, _ = time_axis(grid, medium, 0.0, cfl=cfl, dt=dt, scheme=scheme, fd_order=fd_order, c_ref=c_ref,
                              fd_coefficients=fd_coefficients)
        else:
            medium.validate(grid)
        self.grid, self.scheme, self.fd_order = grid, scheme, int(fd_order)
        self.alpha_power = medium.alpha_power
        dtype = compute_dtype(medium.sound_speed, medium.density, medium.alpha_coeff)
        nd, h = grid.ndim, grid.spacing
        c = jnp.broadcast_to(jnp.asarray(medium.sound_speed, dtype), grid.shape)
        rho = jnp.broadcast_to(jnp.asarray(medium.density, dtype), grid.shape)
        self.dt = jnp.asarray(dt, dtype)
        self.c_ref = jnp.max(c) if c_ref is None else jnp.asarray(c_ref, dtype)
        self.sound_speed = c
        self.bulk = rho * c**2
        # Density at the staggered velocity points: linear interpolation (as k-Wave and jwave).
        self.inv_rho = tuple(2.0 / (rho + jnp.roll(rho, -1, d)) for d in range(nd))
        if medium.absorbing:
            self.absorption = 2 * medium.alpha_neper(dtype) * c ** (1 + self.alpha_power)
            self.fractional = (jnp.asarray(wavenumber_magnitude(grid.shape, h) ** self.alpha_power, dtype)
                               if self.alpha_power != 0 else None)
        else:
            self.absorption, self.fractional = None, None
        if scheme == "pstd":
            self.forward, self.backward = spectral_multipliers(grid.shape, h, self.c_ref, self.dt, dtype)
        else:
            self.forward, self.backward = None, None
        self.stencil = (fd_stencil(self.fd_order, "dispersion", self.c_ref * self.dt / h, nd).astype(dtype)
                        if scheme == "fd" and fd_coefficients == "dispersion" else None)
        if self.pml_size:
            smax = pml_alpha * self.c_ref / h
            self.sigma_p = tuple(smax * jnp.asarray(pml_depth(n, self.pml_size, False) ** 4, dtype)
                                 .reshape(_axis_shape(d, nd)) for d, n in enumerate(grid.shape))
            self.sigma_v = tuple(smax * jnp.asarray(pml_depth(n, self.pml_size, True) ** 4, dtype)
                                 .reshape(_axis_shape(d, nd)) for d, n in enumerate(grid.shape))
        else:
            self.sigma_p, self.sigma_v = None, None

    @property
    def dtype(self) -> jnp.dtype:
        """The real compute dtype."""
        return self.bulk.dtype

    # ----- spatial operators -------------------------------------------------------------------
    @property
    def _coeffs(self) -> tuple[float, ...] | jnp.ndarray:
        """The ``fd`` stencil's coefficients (Taylor ones as constants)."""
        return fd_stencil(self.fd_order) if self.stencil is None else self.stencil

    def _gradient(self, p: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
        """``dp/dx_d`` at the staggered velocity points, per axis."""
        if self.scheme == "fd":
            return tuple(fd_forward(p, d, self.grid.spacing, self._coeffs) for d in range(self.grid.ndim))
        spec = jnp.fft.rfftn(p)
        return tuple(jnp.fft.irfftn(spec * m, s=self.grid.shape) for m in self.forward)

    def _divergence(self, v: tuple[jnp.ndarray, ...], split: bool) -> tuple[jnp.ndarray, ...]:
        """``dv_d/dx_d`` at grid points: one term per axis (``split``) or their sum (1-tuple)."""
        if self.scheme == "fd":
            parts = tuple(fd_backward(vd, d, self.grid.spacing, self._coeffs) for d, vd in enumerate(v))
            return parts if split else (functools.reduce(op.add, parts),)
        specs = [jnp.fft.rfftn(vd) * m for vd, m in zip(v, self.backward)]
        if split:
            return tuple(jnp.fft.irfftn(s, s=self.grid.shape) for s in specs)
        return (jnp.fft.irfftn(functools.reduce(op.add, specs), s=self.grid.shape),)

    def _absorb(self, p: jnp.ndarray) -> jnp.ndarray:
        """``A p`` in Pa/s."""
        if self.fractional is not None:
            p = jnp.fft.irfftn(jnp.fft.rfftn(p) * self.fractional, s=self.grid.shape)
        return self.absorption * p

    # ----- half steps --------------------------------------------------------------------------
    def _decay(self, sigma: tuple[jnp.ndarray, ...] | None, tau: jnp.ndarray) -> tuple[jnp.ndarray, ...] | None:
        """PML factors ``exp(-sigma * tau / 2)`` per axis (computed once per run, outside the loop)."""
        if sigma is None:
            return None
        # The barrier keeps XLA from fusing the exp into the field updates (one exp per cell).
        return jax.lax.optimization_barrier(tuple(jnp.exp(-s * tau / 2) for s in sigma))

    def _kick(self, v: tuple[jnp.ndarray, ...], p: jnp.ndarray, tau: jnp.ndarray,
              decay: tuple[jnp.ndarray, ...] | None, force: tuple[jnp.ndarray | None, ...] | None
              ) -> tuple[jnp.ndarray, ...]:
        """Advance the velocity by ``tau`` (s) with the pressure held fixed; ``decay`` from :meth:`_decay`."""
        grad = self._gradient(p)
        out = []
        for d in range(self.grid.ndim):
            rate = -self.inv_rho[d] * grad[d]
            if force is not None and force[d] is not None:
                rate = rate + force[d]
            if decay is None:
                out.append(v[d] + tau * rate)
            else:
                out.append(decay[d] * (decay[d] * v[d] + tau * rate))
        # Materialise: otherwise XLA may fuse the kick into every tap of the next divergence stencil
        # and recompute it per tap (measured 50x slower fd steps in 3D on CPU).
        return jax.lax.optimization_barrier(tuple(out))

    def _drift(self, p_split: tuple[jnp.ndarray, ...], v: tuple[jnp.ndarray, ...], rate: jnp.ndarray | None,
               decay: tuple[jnp.ndarray, ...] | None) -> tuple[jnp.ndarray, ...]:
        """Advance the pressure (components) by ``dt`` with the velocity held fixed."""
        split = len(p_split) > 1
        parts = self._divergence(v, split)
        out = []
        for j, (pj, dj) in enumerate(zip(p_split, parts)):
            rhs = -self.bulk * dj
            if rate is not None:
                rhs = rhs + rate / len(p_split)
            new = pj + self.dt * rhs if decay is None else decay[j] * (decay[j] * pj + self.dt * rhs)
            if self.absorption is not None:
                new = new - self.dt * self._absorb(0.5 * (pj + new))
            out.append(new)
        return tuple(out)

    # ----- protocol ----------------------------------------------------------------------------
    def init(self, p0: jnp.ndarray | None = None) -> State:
        """State at ``t = 0``: pressure ``p0`` (Pa, ``grid.shape``; ``None`` for zero), velocity zero."""
        shape = self.grid.shape
        if p0 is None:
            p0 = jnp.zeros(shape, self.dtype)
        if tuple(np.shape(p0)) != shape:
            raise ValueError(f"p0 must have shape {shape} (the grid shape), got {tuple(np.shape(p0))}")
        if is_concrete(p0) and not np.all(np.isfinite(np.asarray(p0))):
            raise ValueError("p0 must be finite everywhere")
        p0 = jnp.asarray(p0, self.dtype)
        nd = self.grid.ndim
        p_split = tuple(p0 / nd for _ in range(nd)) if self.pml_size else (p0,)
        return State(p_split, tuple(jnp.zeros(shape, self.dtype) for _ in range(nd)))

    def reverse(self, state: State) -> State:
        """Time reversal ``(p, v) -> (p, -v)``."""
        return State(state.p_split, tuple(-vd for vd in state.v))

    def step(self, state: State) -> State:
        """One time step ``dt``."""
        return self.advance(state, 1, checkpoint="none")[0]

    def run(self, state: State, n: int, *, checkpoint: str = "segmented") -> State:
        """``n`` time steps (``n`` a static int >= 0); gradients use ``checkpoint`` (see ``solvers.scan``)."""
        return self.advance(state, n, checkpoint=checkpoint)[0]

    def advance(self, state: State, n: int, *, sources: tuple[SourceTerm, ...] = (), t0: int = 0,
                sensors: PointSampler | None = None, checkpoint: str = "segmented", segment: int | None = None,
                checkpoints: int | None = None) -> tuple[State, jnp.ndarray | None]:
        """Advance ``n`` steps from time index ``t0``, driven by ``sources``, recording at ``sensors``.

        Args:
            state: the state at time ``t0 * dt``.
            n: number of steps (static int >= 0).
            sources: bound point sources; their signals must cover samples ``t0 .. t0 + n``.
                Pressure sources use the step's mid-point value ``(s_k + s_{k+1}) / 2``; velocity
                sources their value at the kick times.
            sensors: pressure recorded after every step.
        Returns:
            ``(state at (t0 + n) dt, traces (n, n_sensors) or None)``; ``traces[k]`` is the pressure
            at time ``(t0 + k + 1) dt``.
        """
        n = check_int_range("n", n, 0)
        if n == 0:
            return state, (None if sensors is None else jnp.zeros((0, sensors.num_points), self.dtype))
        p_src = [s for s in sources if s.kind == "pressure"]
        v_src = [s for s in sources if s.kind == "velocity"]
        for s in sources:
            if s.signals.shape[1] < t0 + n + 1:
                raise ValueError(f"source signals must have at least {t0 + n + 1} samples, got {s.signals.shape[1]}")
        p_vals = [(0.5 * (s.signals[:, t0:t0 + n] + s.signals[:, t0 + 1:t0 + n + 1])).T for s in p_src]
        v_vals = [s.signals[:, t0 + 1:t0 + n + 1].T for s in v_src]
        half, full = 0.5 * self.dt, self.dt
        decay_half, decay_full = self._decay(self.sigma_v, half), self._decay(self.sigma_v, full)
        decay_p = self._decay(self.sigma_p, full)

        def force(vals: list[jnp.ndarray]) -> tuple[jnp.ndarray | None, ...] | None:
            if not v_src:
                return None
            terms = [s.velocity_force(x, self.sound_speed, self.grid.spacing) for s, x in zip(v_src, vals)]
            per_axis = [[f for f in comps if f is not None] for comps in zip(*terms)]
            return tuple(functools.reduce(op.add, fs) if fs else None for fs in per_axis)

        def drift_record(p_split, v, pv):
            rate = (functools.reduce(op.add, [s.pressure_rate(x, self.sound_speed, self.grid.spacing)
                                              for s, x in zip(p_src, pv)]) if p_src else None)
            p_split = self._drift(p_split, v, rate, decay_p)
            # Materialise the new pressure, as the velocity in _kick.
            p_split, p = jax.lax.optimization_barrier((p_split, functools.reduce(op.add, p_split)))
            return p_split, p, (None if sensors is None else sensors.gather(p))

        def body(carry, xs):
            pv, vv = xs
            p_split, p, rec = drift_record(*carry, pv)
            return (p_split, self._kick(carry[1], p, full, decay_full, force(vv))), rec

        # Half kick, (drift, full kick) x (n - 1), drift, half kick: n kick-drift-kick steps.
        v = self._kick(state.v, state.p, half, decay_half, force([s.signals[:, t0] for s in v_src]))
        head = jax.tree_util.tree_map(lambda a: a[:n - 1], (p_vals, v_vals))
        (p_split, v), rec = scan_mod.scan(body, (state.p_split, v), head, length=n - 1, checkpoint=checkpoint,
                                          segment=segment, checkpoints=checkpoints)
        p_split, p, rec_last = drift_record(p_split, v, [a[n - 1] for a in p_vals])
        v = self._kick(v, p, half, decay_half, force([a[n - 1] for a in v_vals]))
        if sensors is not None:
            rec = jnp.concatenate([rec, rec_last[None]])
        return State(p_split, v), rec
