"""The Maxwell :class:`Stepper` (design.md protocol): ``init``, ``step``, ``run``, ``reverse``.

The state holds E and H~ = eta0 H at the same (integer) time. One step is the Verlet split of
the Yee leapfrog -- half an H update, a full E update, half an H update -- so that, without
losses, ``reverse`` ``(E, H~) -> (E, -H~)`` is an exact time reversal:
``reverse(run(reverse(run(s, n)), n)) == s`` up to rounding. ``run`` fuses consecutive half
steps, so ``n`` steps cost ``n`` E updates and ``n + 1`` H updates. With a CPML the opening half
step reuses the stored memory and the closing one advances it, which keeps ``run(s, n)`` equal to
``n`` calls of ``step``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from solvers.dtypes import compute_dtype
from solvers.grid import Grid
from solvers.maxwell.medium import Medium
from solvers.maxwell.simulate import _periodic_tuple, check_pml_size, component_permittivity, time_step
from solvers.maxwell.subpixel import use_subpixel
from solvers.maxwell.yee import Fields, YeeOperator, make_mode
from solvers.protocol import StepperModule
from solvers.scan import scan
from solvers.validate import check_int_range, check_positive_finite_scalar


class Stepper(StepperModule):
    """Source-free Yee time stepper.

    Attributes:
        op: the update coefficients; grid: the grid; dt: time step in s.
    """

    op: YeeOperator
    grid: Grid = eqx.field(static=True)
    dt: float = eqx.field(static=True)

    def __init__(self, grid: Grid, medium: Medium, pml_size: int = 0, *, polarization: str = "TM",
                 courant: float = 0.99, subpixel: bool | None = None, periodic=False):
        """Args:
            grid: 2D or 3D grid.
            medium: permittivity / conductivity on ``grid``.
            pml_size: CPML cells per non-periodic edge; 0 is a lossless PEC box (reversible).
            polarization: "TM" or "TE" in 2D.
            courant: fraction of the stability limit, in (0, 1].
            subpixel: use ``medium.component_permittivity``; ``None``: whenever the medium has it.
            periodic: bool or one bool per axis.
        """
        medium.check_grid(grid)
        periodic = _periodic_tuple(periodic, grid.ndim)
        pml_size = check_pml_size(pml_size, grid, periodic)
        courant = check_positive_finite_scalar("courant", courant)
        if courant > 1.0:
            raise ValueError(f"courant must be in (0, 1] (fraction of the Yee stability limit), got {courant}")
        subpixel = use_subpixel(medium, subpixel)
        mode = make_mode(grid.ndim, polarization)
        dtype = compute_dtype(medium.permittivity, medium.conductivity)
        self.grid = grid
        self.dt = time_step(grid, courant)
        eps_c, sig_c = component_permittivity(medium, mode, subpixel, dtype, grid.shape)
        self.op = YeeOperator(grid.shape, mode, eps_c, sig_c, self.dt, grid.spacing, pml_size,
                              periodic, dtype)

    def init(self, e0: jax.Array) -> Fields:
        """State from an initial E field; H~ and CPML memory start at zero.

        Args:
            e0: TM: ``Ez`` of ``grid.shape``; TE: ``(Ex, Ey)`` of shape ``(2, *shape)``; 3D: ``(3, *shape)``.
                Tangential E on PEC walls is set to zero.
        """
        n_e = len(self.op.mode.e)
        shape = (n_e, *self.grid.shape)
        e0 = jnp.asarray(e0)
        if e0.shape == self.grid.shape and n_e == 1:
            e0 = e0[None]
        if e0.shape != shape:
            raise ValueError(f"e0 must have shape {shape if n_e > 1 else self.grid.shape}, got {e0.shape}")
        zero = self.op.zero_fields(self.op.ca.dtype)
        mask = (self.op.cb != 0).astype(self.op.ca.dtype)
        return Fields(e0.astype(self.op.ca.dtype) * mask, zero.h, zero.psi_e, zero.psi_h)

    def step(self, state: Fields) -> Fields:
        """One step of ``dt``."""
        return self.run(state, 1, checkpoint="none")

    def run(self, state: Fields, n: int, *, checkpoint: str = "segmented") -> Fields:
        """``n`` steps (a scan of fused leapfrog updates; ``n`` a static int >= 0).

        Gradients through the loop use ``checkpoint`` (``"segmented"``, ``"recursive"`` or
        ``"none"``; see :mod:`solvers.scan`), so their memory does not grow as state x steps.
        """
        n = check_int_range("n", n, 0)
        if n == 0:
            return state
        op = self.op
        f = op.update_h(state, 0.5, update_psi=False)

        def body(f, _):
            return op.update_e(op.update_h(f)), None

        f = op.update_e(f)
        f, _ = scan(body, f, None, length=n - 1, checkpoint=checkpoint)
        # f.h lags E by half a step: close with half an H update. The closing half step advances
        # the CPML memory and the opening one reuses it, so run(s, n) == step applied n times.
        return op.update_h(f, 0.5, update_psi=True)

    def reverse(self, state: Fields) -> Fields:
        """Time reversal ``(E, H~) -> (E, -H~)`` (CPML memory is left as is; exact only for pml_size=0)."""
        return Fields(state.e, -state.h, state.psi_e, state.psi_h)

    def energy(self, state: Fields) -> jax.Array:
        """The discrete invariant of the lossless scheme, ``sum(eps E^2) + sum(H~^2) - (S/2)^2 sum((curl E)^2)``.

        Conserved exactly (up to rounding) without conductivity and PML; proportional to the
        electromagnetic energy ``(eps0 / 2) dx^ndim`` times this sum.
        """
        op = self.op
        eps = jnp.where(op.cb != 0, op.courant / jnp.where(op.cb != 0, op.cb, 1.0), 0.0)
        c, _ = op.curl(state.e, "h", state.psi_h, update_psi=False)
        return jnp.sum(eps * state.e**2) + jnp.sum(state.h**2) - (0.5 * op.courant) ** 2 * jnp.sum(c**2)
