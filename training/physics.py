"""Physics residuals for the training losses, built from the reference solvers' own operators.

- :class:`WaveResidual`: the discrete acoustic wave equation across consecutive macro states
  ``(T, C, *shape)`` of a learned stepper whose macro step is ``dt = k * solver_dt``:

  * states with velocity (``C = 1 + ndim``, ``[p, v_0, ...]`` as the solver stores them, pressure
    at grid points, velocity half a cell forward): the residual of one lossless kick-drift-kick
    leapfrog step of size ``dt / substeps`` applied ``substeps`` times, ``u_{n+1} - L(u_n)``,
    with the solver's spatial operators (``fd`` stencils or ``pstd`` k-space derivatives, the
    latter with the k-space correction at the sub-step, which makes the leapfrog exact in a
    homogeneous medium). ``substeps = k`` reproduces the solver's own scheme, so solver
    trajectories give 0 to rounding; ``substeps = 1`` is a second-order (in ``dt``) check;
  * pressure-only states (``C = 1``): the leapfrog with the velocity eliminated,
    ``p_{n+1} - 2 p_n + p_{n-1} - dt^2 rho c^2 div((1/rho) grad p_n)`` (``pstd``: exact for a
    homogeneous medium; ``fd``: second order in ``dt``); needs ``T >= 3``.

  Velocity residuals are multiplied by the impedance ``rho c`` (to Pa), everything is divided by
  the RMS pressure of the first state, and cells within ``pml_size + margin`` of the grid edge
  (where the absorbing layer changes the equations) are masked out.

- :class:`YeeResidual`: the Maxwell counterpart for 2D TM states ``[Ez, eta0 Hx, eta0 Hy]``:
  ``u_{n+1} - Y^k(u_n)`` with ``Y`` the solver's own lossless Yee step (0 to rounding on solver
  trajectories), masked next to the CPML and divided by the RMS ``Ez`` of the first state.

- :class:`HelmholtzResidual`: the discrete Helmholtz equation of the Yee scheme for 2D TM phasors
  ``Ez`` (``exp(-i omega t)``): ``lap_h E + (2 sin(omega dt / 2) / S)^2 n^2 E = 0`` with the
  undivided 5-point Laplacian ``lap_h`` and ``S = c0 dt / h``, exactly what a steady-state Yee
  run satisfies away from sources and the PML. Scaled by ``1 / ((k_b h)^2 rms(E))``; masked to
  the inside of the total-field/scattered-field box (its boundary carries the source).

Both are callables with the signatures the losses expect (``training.losses.stepper_loss`` and
``field_loss`` ``residual_fn``) and return unitless residual maps whose mean square is the loss.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from solvers import maxwell
from solvers.acoustic.operators import FD_KINDS, FD_ORDERS, fd_backward, fd_coefficients, fd_forward, spectral_multipliers
from solvers.grid import Grid
from solvers.maxwell.yee import Fields
from solvers.validate import check_choice, check_int_range

_TINY = 1e-30


def edge_mask(shape: tuple[int, ...], width: int) -> np.ndarray:
    """``(shape)`` float mask: 1 inside, 0 within ``width`` cells of any edge."""
    mask = np.ones(shape, np.float32)
    if width <= 0:
        return mask
    for axis, n in enumerate(shape):
        if 2 * width >= n:
            raise ValueError(f"mask width {width} leaves no interior on an axis of {n} cells")
        idx = [slice(None)] * len(shape)
        idx[axis] = slice(0, width)
        mask[tuple(idx)] = 0
        idx[axis] = slice(n - width, n)
        mask[tuple(idx)] = 0
    return mask


def reversal_mask(shape: tuple[int, ...], pml_size: int) -> np.ndarray | None:
    """Where time reversal holds: 0 in the absorbing layer and the 2 cells next to it, else 1.

    ``None`` without a layer (the whole domain is reversible). Used by the time-reversal loss and
    by its evaluation, so both measure the same region.
    """
    return edge_mask(tuple(shape), pml_size + 2) if pml_size else None


def _physical_states(states: jax.Array, state_scales: tuple[float, ...] | None) -> jax.Array:
    """``(T, C, *shape)`` states in at least float32, with the trainer's per-channel factors divided out."""
    states = states.astype(jnp.promote_types(states.dtype, jnp.float32))
    if state_scales is None:
        return states
    if len(state_scales) != states.shape[1]:
        raise ValueError(f"state_scales has {len(state_scales)} entries for {states.shape[1]} channels")
    return states / jnp.asarray(state_scales, states.dtype).reshape((1, -1) + (1,) * (states.ndim - 2))


def _solver_step(fixed: bool, x: jax.Array) -> jax.Array:
    """The solver's step from the states: a fixed (stop-gradient, solver-in-the-loop) target if ``fixed``."""
    return jax.lax.stop_gradient(x) if fixed else x


def _masked_rms(field: jax.Array, mask: jax.Array) -> jax.Array:
    """RMS of ``field`` over ``mask``'s cells (the residuals' unit: the first state's scalar field)."""
    return jnp.sqrt(jnp.sum(mask * field**2) / jnp.sum(mask) + _TINY)


class WaveResidual(eqx.Module):
    """Residual of the discrete acoustic wave equation across consecutive macro states.

    Args:
        grid: the grid of the states.
        dt: the macro time step in s (``k * solver_dt``).
        scheme: ``"fd"`` or ``"pstd"`` (the data's scheme).
        fd_order: 2, 4, 6 or 8 (``fd``).
        fd_coefficients: ``"taylor"`` or ``"dispersion"`` (``fd``; the data's stencil kind: fitted at
            the solver's Courant number ``max(c) * dt / (substeps * h)``, as the solver fits it).
        pml_size: the data's PML thickness in cells (masked out).
        substeps: leapfrog sub-steps per macro step (velocity states; ``k`` = the solver's scheme).
        state_scales: per-channel factors the states were multiplied by (the trainer's scaled
            units, see ``pdesurrogate train``); divided out before the residual.
        solver_target: treat the solver's step from each state as a fixed target
            (``jax.lax.stop_gradient``): the solver-in-the-loop target (Um et al., 2020), which only
            pulls each predicted state toward the solver's step from the state before it. Without it
            the residual is a two-sided consistency term whose gradient also moves that earlier state.
            The residual's value is the same either way.
        margin: extra masked cells next to the PML (default: one step's stencil reach, ``fd_order``
            for ``fd`` and 4 for ``pstd``; the PML absorbs weakly at its inner edge, so this keeps
            the solver's residual at rounding level in practice, see ``tests/test_physics_residuals.py``;
            the strict domain of dependence is ``substeps`` times that).

    Call: ``residual(states, medium)`` with ``states`` ``(T, C, *shape)`` and ``medium``
    ``(2, *shape)`` = ``[sound_speed, density]``; returns ``(T - 1, C, *shape)`` (velocity states)
    or ``(T - 2, 1, *shape)`` (pressure only), unitless and masked.
    """

    grid: Grid
    dt: float = eqx.field(static=True)
    scheme: str = eqx.field(static=True)
    fd_order: int = eqx.field(static=True)
    fd_kind: str = eqx.field(static=True)
    substeps: int = eqx.field(static=True)
    solver_target: bool = eqx.field(static=True)
    state_scales: tuple[float, ...] | None = eqx.field(static=True)
    mask: jax.Array

    def __init__(self, grid: Grid, dt: float, scheme: str = "fd", fd_order: int = 4, pml_size: int = 0,
                 substeps: int = 1, margin: int | None = None, state_scales: tuple[float, ...] | None = None,
                 solver_target: bool = False, fd_coefficients: str = "taylor"):
        check_choice("scheme", scheme, ("fd", "pstd"))
        check_choice("fd_order", fd_order, FD_ORDERS)
        check_choice("fd_coefficients", fd_coefficients, FD_KINDS)
        self.fd_kind = fd_coefficients
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite macro time step in s, got {dt}")
        self.substeps = check_int_range("substeps", substeps, 1)
        self.solver_target = bool(solver_target)
        pml_size = check_int_range("pml_size", pml_size, 0)
        reach = fd_order if scheme == "fd" else 4
        margin = reach if margin is None else check_int_range("margin", margin, 0)
        self.grid, self.dt, self.scheme, self.fd_order = grid, float(dt), scheme, int(fd_order)
        self.state_scales = None if state_scales is None else tuple(float(v) for v in state_scales)
        self.mask = jnp.asarray(edge_mask(grid.shape, pml_size + margin if pml_size else 0))

    def _ops(self, c: jax.Array, tau: float, dtype: jnp.dtype):
        """``(gradient, divergence)`` of the solver's scheme for a (sub-)step ``tau``."""
        nd, h = self.grid.ndim, self.grid.spacing
        if self.scheme == "fd":
            # "dispersion": fitted at the solver's own Courant number (c_ref = max c, its own step)
            coeffs = fd_coefficients(self.fd_order, self.fd_kind, jnp.max(c) * (self.dt / self.substeps) / h, nd)
            grad = lambda p: tuple(fd_forward(p, d, h, coeffs) for d in range(nd))  # noqa: E731
            div = lambda v: sum(fd_backward(vd, d, h, coeffs) for d, vd in enumerate(v))  # noqa: E731
            return grad, div
        fwd, bwd = spectral_multipliers(self.grid.shape, h, jnp.max(c), jnp.asarray(tau, dtype), dtype)

        def grad(p):
            spec = jnp.fft.rfftn(p)
            return tuple(jnp.fft.irfftn(spec * m, s=self.grid.shape).astype(dtype) for m in fwd)

        def div(v):
            spec = sum(jnp.fft.rfftn(vd) * m for vd, m in zip(v, bwd))
            return jnp.fft.irfftn(spec, s=self.grid.shape).astype(dtype)

        return grad, div

    def _coefficients(self, medium: jax.Array, dtype: jnp.dtype):
        c, rho = medium[0].astype(dtype), medium[1].astype(dtype)
        nd = self.grid.ndim
        inv_rho = tuple(2.0 / (rho + jnp.roll(rho, -1, d)) for d in range(nd))  # as the solver
        return c, rho, rho * c**2, inv_rho

    def leapfrog(self, state: jax.Array, medium: jax.Array) -> jax.Array:
        """``substeps`` lossless kick-drift-kick steps of ``dt / substeps`` of ``[p, v...]`` ``(1 + d, *shape)``."""
        dtype = state.dtype
        c, _, bulk, inv_rho = self._coefficients(medium, dtype)
        tau = self.dt / self.substeps
        grad, div = self._ops(c, tau, dtype)
        p, v = state[0], tuple(state[1:])
        for _ in range(self.substeps):
            g = grad(p)
            v = tuple(vd - 0.5 * tau * ir * gd for vd, ir, gd in zip(v, inv_rho, g))
            p = p - tau * bulk * div(v)
            g = grad(p)
            v = tuple(vd - 0.5 * tau * ir * gd for vd, ir, gd in zip(v, inv_rho, g))
        return jnp.concatenate([p[None], jnp.stack(v)])

    def __call__(self, states: jax.Array, medium: jax.Array) -> jax.Array:
        nd = self.grid.ndim
        T, C = states.shape[:2]
        if states.shape[2:] != self.grid.shape or C not in (1, 1 + nd):
            raise ValueError(f"states must have shape (T, 1 or {1 + nd}, *{self.grid.shape}), got {states.shape}")
        if medium is None or medium.shape != (2, *self.grid.shape):
            raise ValueError(f"medium must be [sound_speed, density] of shape {(2, *self.grid.shape)}, "
                             f"got {None if medium is None else medium.shape}")
        states = _physical_states(states, self.state_scales)
        dtype = states.dtype
        mask = jnp.asarray(self.mask, dtype)
        scale = _masked_rms(states[0, 0], mask)
        c, rho, bulk, inv_rho = self._coefficients(medium, dtype)
        if C == 1:
            if T < 3:
                raise ValueError(f"pressure-only states need >= 3 consecutive states for the wave residual, got {T} "
                                 f"(train with unroll >= 2 or store velocity)")
            grad, div = self._ops(c, self.dt, dtype)
            p = states[:, 0]

            def second(p0, p1, p2):
                lap = bulk * div(tuple(ir * g for ir, g in zip(inv_rho, grad(p1))))
                return p2 - _solver_step(self.solver_target, 2 * p1 - p0 + self.dt**2 * lap)

            r = jax.vmap(second)(p[:-2], p[1:-1], p[2:])[:, None]
        else:
            if T < 2:
                raise ValueError(f"the wave residual needs >= 2 consecutive states, got {T}")
            pred = _solver_step(self.solver_target, jax.vmap(lambda u: self.leapfrog(u, medium))(states[:-1]))
            diff = states[1:] - pred
            impedance = (rho * c)[None]
            r = jnp.concatenate([diff[:, :1], diff[:, 1:] * impedance], axis=1)
        return r * mask / scale


class YeeResidual(eqx.Module):
    """Residual of the lossless 2D TM Yee scheme across consecutive macro states of a Maxwell stepper.

    ``u_{n+1} - Y^k(u_n)`` for states ``u = [Ez, eta0 Hx, eta0 Hy]`` (V/m, H at the times of E, as
    :class:`solvers.maxwell.Stepper` stores them), with ``Y`` one step of that solver's own
    Verlet-split leapfrog (half H, full E, half H) in the medium, without PML (a PEC box) and
    ``k = substeps`` the solver steps per macro step, so solver trajectories give 0 to rounding.
    Within ``pml_size + margin`` cells of the edge, where the data's CPML changes the equations,
    it is masked out; each Yee step reaches one cell, so the default margin ``k`` keeps the
    solver's own trajectories exact. Divided by the RMS ``Ez`` of the first state (unitless).

    Args:
        grid: the 2D grid of the states.
        substeps: Yee steps per macro step (``k``).
        courant: the data's Courant number (fraction of the Yee limit; sets the solver's ``dt``).
        pml_size: the data's CPML thickness in cells.
        margin: extra masked cells next to the CPML (default ``substeps``).
        state_scales: per-channel factors the states were multiplied by (divided out first).
        solver_target: the solver's step from each state is a fixed target (stop-gradient), as in
            :class:`WaveResidual`.

    Call: ``residual(states, medium)`` with ``states`` ``(T, 3, *shape)`` and ``medium``
    ``(1, *shape)`` = ``[relative permittivity]``; returns ``(T - 1, 3, *shape)``, masked.
    """

    grid: Grid
    substeps: int = eqx.field(static=True)
    courant: float = eqx.field(static=True)
    solver_target: bool = eqx.field(static=True)
    state_scales: tuple[float, ...] | None = eqx.field(static=True)
    mask: jax.Array

    def __init__(self, grid: Grid, substeps: int, courant: float = 0.99, pml_size: int = 0,
                 margin: int | None = None, state_scales: tuple[float, ...] | None = None,
                 solver_target: bool = False):
        if grid.ndim != 2:
            raise ValueError(f"the Yee residual is for 2D TM states, got a {grid.ndim}D grid")
        self.substeps = check_int_range("substeps", substeps, 1)
        if not (math.isfinite(courant) and 0 < courant <= 1):
            raise ValueError(f"courant must be in (0, 1] (fraction of the Yee stability limit), got {courant}")
        pml_size = check_int_range("pml_size", pml_size, 0)
        margin = self.substeps if margin is None else check_int_range("margin", margin, 0)
        self.grid, self.courant, self.solver_target = grid, float(courant), bool(solver_target)
        self.state_scales = None if state_scales is None else tuple(float(v) for v in state_scales)
        self.mask = jnp.asarray(edge_mask(grid.shape, pml_size + margin if pml_size else 0))

    def advance(self, state: jax.Array, permittivity: jax.Array) -> jax.Array:
        """``substeps`` lossless Yee steps of one state ``(3, *shape)`` in ``permittivity`` ``shape``."""
        stepper = maxwell.Stepper(self.grid, maxwell.Medium(permittivity=permittivity), courant=self.courant)
        fields = stepper.run(Fields(state[:1], state[1:]), self.substeps, checkpoint="none")
        return jnp.concatenate([fields.e, fields.h])

    def __call__(self, states: jax.Array, medium: jax.Array) -> jax.Array:
        T, C = states.shape[:2]
        if states.shape[2:] != self.grid.shape or C != 3:
            raise ValueError(f"states must have shape (T, 3, *{self.grid.shape}) = [Ez, eta0 Hx, eta0 Hy], "
                             f"got {states.shape}")
        if T < 2:
            raise ValueError(f"the Yee residual needs >= 2 consecutive states, got {T}")
        if medium is None or medium.shape != (1, *self.grid.shape):
            raise ValueError(f"medium must be [permittivity] of shape {(1, *self.grid.shape)}, "
                             f"got {None if medium is None else medium.shape}")
        states = _physical_states(states, self.state_scales)
        mask = jnp.asarray(self.mask, states.dtype)
        eps = medium[0].astype(states.dtype)
        pred = jax.vmap(lambda u: self.advance(u, eps))(states[:-1])
        pred = _solver_step(self.solver_target, pred)
        return (states[1:] - pred) * mask / _masked_rms(states[0, 0], mask)


class HelmholtzResidual(eqx.Module):
    """Discrete Helmholtz residual of 2D TM (``Ez``) Yee phasors.

    Args:
        grid: the 2D grid.
        wavelength: vacuum wavelength in m.
        pml_size: the data's PML thickness in cells.
        tfsf_margin: cells between the PML and the total-field box (the solver's default 4).
        courant: the solver's Courant number (``maxwell.simulate`` default 0.99).
        background_index: refractive index of the background (sets the scale ``k_b h``).
        offset: complex fields ``(F, *shape)`` added to the input fields first (e.g. the incident
            field when the fields are scattered fields).

    Call: ``residual(field, medium, condition=None)`` with ``field`` complex ``(F, *shape)`` (one
    phasor per illumination) and ``medium`` ``(1, *shape)`` refractive index (or ``shape``);
    returns the complex residual ``(F, *shape)``, masked to the inside of the total-field box.
    """

    grid: Grid
    omega_term: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    mask: jax.Array
    offset: jax.Array | None

    def __init__(self, grid: Grid, wavelength: float, pml_size: int, *, tfsf_margin: int = 4,
                 courant: float = 0.99, background_index: float = 1.0, offset: jax.Array | None = None):
        if grid.ndim != 2:
            raise ValueError(f"the Helmholtz residual is for 2D TM fields, got a {grid.ndim}D grid")
        if not (math.isfinite(wavelength) and wavelength > 0):
            raise ValueError(f"wavelength must be positive and finite (m), got {wavelength}")
        h = grid.spacing
        dt = maxwell.time_step(grid, courant)
        omega = 2 * math.pi * maxwell.C0 / wavelength
        s = maxwell.C0 * dt / h
        self.grid = grid
        self.omega_term = (2 * math.sin(omega * dt / 2) / s) ** 2
        self.scale = (2 * math.pi * background_index * h / wavelength) ** 2
        # strictly inside the total-field box: the box faces and one cell beyond carry the TFSF source
        self.mask = jnp.asarray(edge_mask(grid.shape, pml_size + tfsf_margin + 2))
        self.offset = None if offset is None else jnp.asarray(offset)

    def __call__(self, field: jax.Array, medium: jax.Array, condition: Any = None) -> jax.Array:
        del condition
        if self.offset is not None:
            field = field + self.offset.astype(field.dtype)
        n = jnp.asarray(medium)
        n = n[0] if n.ndim == 3 else n
        if field.shape[1:] != self.grid.shape or n.shape != self.grid.shape:
            raise ValueError(f"field must be (F, *{self.grid.shape}) and medium {self.grid.shape}, "
                             f"got {field.shape} and {n.shape}")
        lap = sum(jnp.roll(field, 1, a) + jnp.roll(field, -1, a) - 2 * field for a in (1, 2))
        r = lap + self.omega_term * (n**2).astype(field.real.dtype) * field
        mask = jnp.asarray(self.mask, field.real.dtype)
        rms = jnp.sqrt(jnp.sum(mask * jnp.abs(field) ** 2, axis=(1, 2), keepdims=True) / jnp.sum(mask) + _TINY)
        return r * mask / (self.scale * rms)
