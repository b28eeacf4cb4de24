"""Linear acoustics in 2D and 3D: a differentiable reference solver for ultrasound.

- :class:`Medium`: sound speed, density, power-law absorption.
- :class:`Stepper`: kick-drift-kick leapfrog with ``"pstd"`` (k-space pseudospectral) or ``"fd"``
  (staggered finite differences, order 2-8) derivatives and a split-field PML.
- :func:`simulate`: one call from medium, initial pressure, sources and sensors to traces.
- :class:`PointSource`, :func:`ring_array`, :func:`linear_array`, :func:`time_axis`.
"""

from solvers.acoustic.arrays import linear_array, ring_array
from solvers.acoustic.medium import Medium
from solvers.acoustic.simulate import SimulationResult, simulate
from solvers.acoustic.sources import PointSource
from solvers.acoustic.stepper import SCHEMES, State, Stepper, stable_dt, time_axis

__all__ = ["Medium", "PointSource", "SCHEMES", "SimulationResult", "State", "Stepper", "linear_array",
           "ring_array", "simulate", "stable_dt", "time_axis"]
