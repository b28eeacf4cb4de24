"""Time-varying point sources (pressure or velocity), off-grid positions allowed."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from solvers.grid import Grid
from solvers.points import KERNELS, PointSampler
from solvers.validate import check_choice, check_int_range

SOURCE_KINDS = ("pressure", "velocity")


class PointSource(eqx.Module):
    """Point sources driven by sampled signals.

    A pressure source of signal ``s(t)`` (Pa) injects mass at rate ``2 c s / h`` (k-Wave's and
    jwave's additive convention: in 1D it launches waves of amplitude ``s``); a velocity source of
    signal ``s(t)`` (m/s) adds a force ``2 c s / h * direction`` to the velocity equation. Positions are
    spread onto the grid with :class:`solvers.PointSampler` (off-grid allowed).

    Attributes:
        positions: ``(n, ndim)`` positions in metres (static, hashable).
        signals: ``(n, nt)`` or ``(nt,)`` (shared by all points), sampled at the solver's time axis
            ``t_k = k * dt``, ``k = 0..nt-1``; Pa for pressure, m/s for velocity sources.
        kind: ``"pressure"`` or ``"velocity"``.
        direction: ``(n, ndim)`` unit vectors of velocity sources (static), ``None`` for pressure.
        kernel: spreading kernel ``"linear"`` or ``"sinc"``, ``None`` for the scheme's default.
    """

    positions: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    signals: jnp.ndarray
    kind: str = eqx.field(static=True)
    direction: tuple[tuple[float, ...], ...] | None = eqx.field(static=True)
    kernel: str | None = eqx.field(static=True)

    def __init__(self, positions: np.ndarray, signals: jnp.ndarray, kind: str = "pressure", *,
                 direction: np.ndarray | None = None, axis: int | None = None, kernel: str | None = None):
        check_choice("kind", kind, SOURCE_KINDS)
        if kernel is not None:
            check_choice("kernel", kernel, KERNELS)
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 1:
            pos = pos[None, :]
        if pos.ndim != 2 or pos.shape[1] not in (2, 3):
            raise ValueError(f"positions must have shape (n, ndim) with ndim 2 or 3, got {np.shape(positions)}")
        n, ndim = pos.shape
        sshape = tuple(np.shape(signals))
        if len(sshape) not in (1, 2) or (len(sshape) == 2 and sshape[0] != n):
            raise ValueError(f"signals must have shape (nt,) or ({n}, nt), got {sshape}")
        dirs = None
        if kind == "velocity":
            if (direction is None) == (axis is None):
                raise ValueError("velocity sources need exactly one of direction (unit vectors) or axis (int)")
            if axis is not None:
                axis = check_int_range("axis", axis, 0, ndim - 1)
                d = np.zeros((n, ndim))
                d[:, axis] = 1.0
            else:
                d = np.broadcast_to(np.asarray(direction, dtype=np.float64), (n, ndim))
                norms = np.linalg.norm(d, axis=1, keepdims=True)
                if not np.all(np.isfinite(d)) or np.any(norms == 0):
                    raise ValueError("direction must be finite non-zero vectors of shape (ndim,) or (n, ndim)")
                d = d / norms
            dirs = tuple(tuple(float(x) for x in row) for row in d)
        elif direction is not None or axis is not None:
            raise ValueError("direction/axis apply to velocity sources only (kind='velocity')")
        self.positions = tuple(tuple(float(x) for x in row) for row in pos)
        self.signals = signals
        self.kind = kind
        self.direction = dirs
        self.kernel = kernel

    @property
    def num_points(self) -> int:
        """Number of source points ``n``."""
        return len(self.positions)

    @property
    def num_samples(self) -> int:
        """Number of time samples ``nt`` of the signals."""
        return int(np.shape(self.signals)[-1])


class SourceTerm(eqx.Module):
    """A :class:`PointSource` bound to a grid: its spreading stencils and signals.

    Attributes:
        kind: ``"pressure"`` or ``"velocity"``.
        samplers: one sampler (pressure, at grid points) or one per axis (velocity, at the
            staggered points of that component; ``None`` where no direction has a component).
        signals: ``(n, nt)``.
        direction: ``(n, ndim)`` unit vectors (velocity) or ``None``.
    """

    kind: str = eqx.field(static=True)
    samplers: tuple[PointSampler | None, ...]
    signals: jnp.ndarray
    direction: np.ndarray | None

    def __init__(self, grid: Grid, source: PointSource, kernel: str, name: str, dtype: jnp.dtype):
        pos = np.asarray(source.positions)
        kern = source.kernel or kernel
        self.kind = source.kind
        if source.kind == "pressure":
            self.samplers = (PointSampler(grid, pos, kernel=kern, name=f"{name}.positions"),)
            self.direction = None
        else:
            # Component d lives at x + h/2 along d; axes no source points along get no stencil.
            dirs = np.asarray(source.direction)
            self.samplers = tuple(
                PointSampler(grid, pos - 0.5 * grid.spacing * np.eye(grid.ndim)[d], kernel=kern,
                             name=f"{name}.positions (staggered along axis {d})")
                if np.any(dirs[:, d] != 0) else None
                for d in range(grid.ndim))
            self.direction = dirs
        sig = jnp.asarray(source.signals, dtype)
        self.signals = jnp.broadcast_to(sig, (source.num_points, sig.shape[-1]))

    def pressure_rate(self, values: jnp.ndarray, sound_speed: jnp.ndarray, spacing: float) -> jnp.ndarray:
        """Pressure rate field (Pa/s, grid shape) for signal values ``(n,)`` in Pa."""
        return self.samplers[0].scatter(values) * (2 * sound_speed / spacing)

    def velocity_force(self, values: jnp.ndarray, sound_speed: jnp.ndarray, spacing: float
                       ) -> tuple[jnp.ndarray | None, ...]:
        """Acceleration per axis (m/s^2, grid shape, or ``None`` for no force) for signal values
        ``(n,)`` in m/s."""
        dirs = jnp.asarray(self.direction, values.dtype)
        return tuple(None if s is None else s.scatter(values * dirs[:, d]) * (2 * sound_speed / spacing)
                     for d, s in enumerate(self.samplers))
