"""The acoustic medium: sound speed, density and optional power-law absorption."""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from solvers.grid import Grid
from solvers.validate import check_field, is_concrete

# 1 dB = 1 / (20 log10 e) Np.
DB_PER_NEPER = 20 * math.log10(math.e)
ALPHA_POWER_RANGE = (0.0, 3.0)


class Medium(eqx.Module):
    """Material properties, scalars or arrays of the grid shape.

    Attributes:
        sound_speed: ``c`` in m/s, > 0.
        density: ``rho`` in kg/m^3, > 0.
        alpha_coeff: absorption ``alpha_0`` in dB / (MHz^y cm), >= 0; 0 is lossless. The
            amplitude attenuation is ``alpha(f) = alpha_0 * (f / 1 MHz)**y`` per cm.
        alpha_power: the power-law exponent ``y`` in [0, 3] (0: frequency-independent).

    Values are checked against a grid by :meth:`validate` (called by ``Stepper`` and
    ``simulate``), before anything is compiled.
    """

    sound_speed: object
    density: object
    alpha_coeff: object = 0.0
    alpha_power: float = eqx.field(static=True, default=1.5)

    def __init__(self, sound_speed: object, density: object = 1000.0, alpha_coeff: object = 0.0,
                 alpha_power: float = 1.5):
        self.sound_speed = sound_speed
        self.density = density
        self.alpha_coeff = alpha_coeff
        y = float(alpha_power)
        if not ALPHA_POWER_RANGE[0] <= y <= ALPHA_POWER_RANGE[1]:
            raise ValueError(f"alpha_power must be in [0, 3], got {alpha_power!r}")
        self.alpha_power = y

    def validate(self, grid: Grid) -> None:
        """Raise ``ValueError`` unless every property is a finite scalar or an array of ``grid.shape``
        with ``c > 0``, ``rho > 0`` and ``alpha_coeff >= 0`` (values of tracers are not checked)."""
        check_field("sound_speed", self.sound_speed, grid.shape, minimum=0.0, unit="m/s")
        check_field("density", self.density, grid.shape, minimum=0.0, unit="kg/m^3")
        check_field("alpha_coeff", self.alpha_coeff, grid.shape, minimum=0.0, strict=False,
                    unit="dB/(MHz^y cm)")

    @property
    def is_concrete(self) -> bool:
        """True when sound speed and density have values now (not traced)."""
        return is_concrete(self.sound_speed) and is_concrete(self.density)

    @property
    def absorbing(self) -> bool:
        """False only when ``alpha_coeff`` is known to be zero everywhere."""
        if not is_concrete(self.alpha_coeff):
            return True
        return bool(np.any(np.asarray(self.alpha_coeff) != 0))

    def max_sound_speed(self) -> float:
        """``max c`` in m/s (concrete media only)."""
        return float(np.max(np.asarray(self.sound_speed)))

    def alpha_neper(self, dtype: jnp.dtype) -> jnp.ndarray:
        """``alpha_0`` converted to Np / m / (rad/s)^y, so that ``alpha(omega) = alpha_neper * omega**y``."""
        scale = 100.0 / DB_PER_NEPER / (2 * math.pi * 1e6) ** self.alpha_power
        return jnp.asarray(self.alpha_coeff, dtype) * scale
