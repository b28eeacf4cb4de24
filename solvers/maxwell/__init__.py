"""Maxwell FDTD reference solver (Yee scheme): 2D TM / TE and 3D, CPML, TFSF sources, DFT monitors.

Public API::

    from solvers import Grid, maxwell
    medium = maxwell.Medium(permittivity=eps_r, conductivity=sigma)
    src = maxwell.PlaneWave(wavelength=lam0, angle=0.0)
    res = maxwell.simulate(grid, medium, source=src, frequencies=[f0])
    res.field                    # (n_freq, *grid.shape) in 2D TM (Ez); (n_freq, 3, *shape) in 3D
    maxwell.Stepper(grid, medium, pml_size=0)
"""

from solvers.maxwell import analytic, subpixel
from solvers.maxwell.medium import C0, EPS0, ETA0, MU0, Medium
from solvers.maxwell.simulate import Result, simulate, time_step
from solvers.maxwell.sources import GaussianBeam, PlaneWave, PointDipole
from solvers.maxwell.stepper import Stepper

__all__ = ["C0", "EPS0", "ETA0", "MU0", "GaussianBeam", "Medium", "PlaneWave", "PointDipole", "Result",
           "Stepper", "analytic", "simulate", "subpixel", "time_step"]
