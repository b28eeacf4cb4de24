"""Sub-pixel permittivity averaging at material interfaces (Farjadpour et al., Opt. Lett. 2006).

Each E component sees an effective permittivity from the cell of size ``dx`` centred on its Yee
position, sampled on ``supersample**ndim`` points: with ``n`` the interface normal (the
direction from the cell centre towards the high-permittivity samples) and ``n_c`` its component
along E,

    1 / eps_eff = n_c^2 <1 / eps> + (1 - n_c^2) / <eps>,

i.e. the harmonic mean for E across the interface and the arithmetic mean for E along it (2D TM:
always the arithmetic mean). Needs the geometry as a function, so it is built from a callable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from solvers.grid import Grid
from solvers.maxwell.medium import Medium
from solvers.maxwell.yee import offset
from solvers.validate import check_int_range


def smoothed_medium(grid: Grid, permittivity_fn: Callable[[np.ndarray], np.ndarray], conductivity=0.0,
                    supersample: int = 8) -> Medium:
    """A :class:`Medium` whose ``component_permittivity`` holds sub-pixel averaged values.

    Args:
        grid: the grid.
        permittivity_fn: relative permittivity at points, ``coords (ndim, *s) -> (*s)`` (m).
        conductivity: S/m, scalar or ``grid.shape``.
        supersample: samples per axis and cell (>= 2).

    Returns:
        ``Medium(permittivity=fn(nodes), conductivity, component_permittivity=(3, *grid.shape))``
        with components at the Yee positions of ``(Ex, Ey, Ez)``.
    """
    supersample = check_int_range("supersample", supersample, 2)
    nodes = grid.coordinates()
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5  # offsets in cells, centred
    comps = []
    for c in range(3):
        centre = nodes + (offset("e", c, grid.ndim) * grid.spacing).reshape((-1,) + (1,) * grid.ndim)
        mean = np.zeros(grid.shape)
        inv = np.zeros(grid.shape)
        normal = np.zeros((grid.ndim, *grid.shape))
        for o in itertools.product(sub, repeat=grid.ndim):
            o = np.array(o).reshape((-1,) + (1,) * grid.ndim)
            eps = np.asarray(permittivity_fn(centre + o * grid.spacing), np.float64)
            mean += eps
            inv += 1.0 / eps
            normal += o * eps
        count = supersample**grid.ndim
        mean, inv, normal = mean / count, inv / count, normal / count
        norm = np.linalg.norm(normal, axis=0)
        nc2 = np.where(norm > 1e-12 * mean, (normal[c] / np.where(norm > 0, norm, 1.0)) ** 2, 0.0) \
            if c < grid.ndim else np.zeros(grid.shape)
        comps.append(1.0 / (nc2 * inv + (1.0 - nc2) / mean))
    return Medium(permittivity=np.asarray(permittivity_fn(nodes), np.float64), conductivity=conductivity,
                  component_permittivity=np.stack(comps))


def use_subpixel(medium: Medium, subpixel: bool | None) -> bool:
    """Whether a run uses ``medium.component_permittivity``.

    ``None`` (the default of ``simulate`` and ``Stepper``) means: whenever the medium carries it,
    i.e. when it was built by :func:`smoothed_medium`. ``False`` forces the staircased
    permittivity; ``True`` without component values raises ``ValueError``.
    """
    if subpixel is None:
        return medium.component_permittivity is not None
    if subpixel and medium.component_permittivity is None:
        raise ValueError("subpixel=True needs medium.component_permittivity; build the medium with "
                         "solvers.maxwell.subpixel.smoothed_medium")
    return bool(subpixel)
