"""Differentiable JAX reference solvers: acoustic waves (ultrasound) and Maxwell FDTD (optics).

Physics only: nothing here imports ``pdesurrogate`` or ``training``.
"""

from solvers import acoustic, maxwell, signals
from solvers.grid import Grid
from solvers.points import PointSampler
from solvers.protocol import Stepper

__all__ = ["Grid", "PointSampler", "Stepper", "acoustic", "maxwell", "signals"]
