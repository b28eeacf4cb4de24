"""Differentiable JAX reference solvers: acoustic waves (ultrasound) and Maxwell FDTD (optics).

Physics only: nothing here imports ``pdesurrogate`` or ``training``.
"""

from solvers import runtime

runtime.apply()  # before any JAX backend starts: see solvers.runtime

from solvers import acoustic, maxwell, signals  # noqa: E402
from solvers.grid import Grid  # noqa: E402
from solvers.points import PointSampler  # noqa: E402
from solvers.protocol import Stepper  # noqa: E402

__all__ = ["Grid", "PointSampler", "Stepper", "acoustic", "maxwell", "signals"]
