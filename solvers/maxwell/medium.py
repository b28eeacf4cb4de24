"""Electromagnetic constants and the non-magnetic medium (relative permittivity, conductivity).

Fields inside the solver are stored in normalised units: ``E`` in V/m and ``H~ = eta0 * H``
(also V/m), so a vacuum plane wave has ``|E| = |H~|``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np

from solvers.grid import Grid
from solvers.validate import check_field, is_concrete

C0 = 299_792_458.0  # speed of light in vacuum, m/s
MU0 = 1.25663706212e-6  # vacuum permeability, H/m
EPS0 = 1.0 / (MU0 * C0**2)  # vacuum permittivity, F/m
ETA0 = MU0 * C0  # vacuum impedance, ohm


class Medium(eqx.Module):
    """A non-magnetic (mu = 1) medium on a grid.

    Attributes:
        permittivity: relative permittivity at the grid nodes, scalar or array of ``grid.shape``, > 0.
        conductivity: electric conductivity in S/m, scalar or array of ``grid.shape``, >= 0.
        component_permittivity: optional sub-pixel averaged permittivity at the three Yee
            E-component positions ``(x, y, z)``, shape ``(3, *grid.shape)``; built by
            :func:`solvers.maxwell.subpixel.smoothed_medium` and used when ``subpixel=True``.
    """

    permittivity: jax.Array | np.ndarray | float
    conductivity: jax.Array | np.ndarray | float = 0.0
    component_permittivity: jax.Array | np.ndarray | None = None

    def __init__(self, permittivity, conductivity=0.0, component_permittivity=None):
        check_field("permittivity", permittivity, np.shape(permittivity), minimum=0.0, strict=True)
        check_field("conductivity", conductivity, np.shape(conductivity), minimum=0.0, strict=False, unit="S/m")
        if component_permittivity is not None:
            check_field("component_permittivity", component_permittivity, np.shape(component_permittivity),
                        minimum=0.0, strict=True)
        self.permittivity = permittivity
        self.conductivity = conductivity
        self.component_permittivity = component_permittivity

    def check_grid(self, grid: Grid) -> None:
        """Raise ``ValueError`` unless every array matches ``grid.shape``."""
        check_field("permittivity", self.permittivity, grid.shape, minimum=0.0)
        check_field("conductivity", self.conductivity, grid.shape, minimum=0.0, strict=False, unit="S/m")
        if self.component_permittivity is not None and np.shape(self.component_permittivity) != (3, *grid.shape):
            raise ValueError(f"component_permittivity must have shape {(3, *grid.shape)}, "
                             f"got {np.shape(self.component_permittivity)}")

    def max_permittivity(self) -> float | None:
        """Largest relative permittivity (``None`` when traced)."""
        if not is_concrete(self.permittivity):
            return None
        return float(np.max(np.asarray(self.permittivity)))
