"""Optical diffraction tomography (ODT): refractive index from complex fields at many illuminations.

Geometry (2D TM, ``Ez``), all positions relative to the grid centre ``c = (n - 1) / 2 * spacing``:

- illumination ``j`` is a unit plane wave of direction ``khat_j = (cos a_j, sin a_j)`` (``a_j`` in
  rad, 0 = +axis 0) in the background medium of index ``n_b``, incident phase 0 at ``c``:
  ``u_inc(x) = exp(i k_b khat . (x - c))``, ``k_b = 2 pi n_b / wavelength``;
- ``rotating=True`` (sample rotation): the detector line of illumination ``j`` is perpendicular to
  ``khat_j`` at signed distance ``detector_distance`` from ``c`` along ``khat_j``; its lateral
  coordinate ``s`` runs along ``t_j = (-sin a_j, cos a_j)``. ``rotating=False``: one fixed line, the
  one for angle 0 (normal +axis 0, lateral along +axis 1), with tilted illuminations ``|a_j| < pi/2``;
- the measurement is the background-corrected field ``u / u_inc`` on the detector line.

Forward model (:func:`simulate`): per illumination one FDTD run (``solvers.maxwell.simulate``, a TFSF
plane wave, a fixed settled duration so it is differentiable, the memory-bounded time-reversal
adjoint for gradients) records the total field on a *recording line* parallel to the detector line
at distance ``R`` (the largest that keeps every line inside the total-field box), beyond the object.
The object must lie inside the field of view, the disc of radius ``R - 2 spacing`` around ``c``.
The recorded ratio ``u / u_inc`` (the incident field from a cached FDTD run of the empty background,
so the solver's own dispersion and the linear point interpolation cancel) is turned into the
scattered field and carried to the detector line by the angular spectrum method in the background
medium (:func:`angular_spectrum_matrix`; evanescent components decay going forward and are dropped
going backward, so refocusing into the object is stable), then divided by the incident field there.
The detector may therefore lie anywhere along the illumination, inside the object (holographic
refocusing) or beyond the grid; its lateral positions must lie inside the recorded aperture ``|s| <= R``.

Classical baselines: :func:`born` and :func:`rytov` backpropagate with the Fourier diffraction
theorem (ODTbrain's ``backpropagate_2d``) after refocusing the data to the rotation centre;
:func:`rytov_matrix` is the linear Rytov forward operator (first Born integral with the 2D
Green's function ``i/4 H0(k_b r)``, then the same angular-spectrum step) that Rytov + TV inverts.

3D needs: a 3D ``Acquisition`` (illumination directions on a sphere or a cone, a detector plane
with two lateral coordinates), the 3D Yee run per illumination (``solvers.maxwell.simulate`` already
runs 3D with a TFSF plane wave; the adjoint is dimension-generic), a 2D angular-spectrum transform
(the same matrix per lateral axis, or an FFT), the vector field (``Ez`` is no longer a scalar; ODT
uses one polarisation component), ``odtbrain.backpropagate_3d`` for the baselines and the 3D
Green's function ``exp(i k r) / (4 pi r)`` in the Rytov operator, and memory: at 128^3 a run holds
~100 MB of fields and the adjoint's shell record grows with steps x surface, so angles run in
sequence on one device or are sharded over several.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from pdesurrogate.inversion import read_observed_npz
from pdesurrogate.inversion.forward import Corrected, ForwardModel, load_once, memo
from pdesurrogate.inversion.guarded import guarded_forward
from pdesurrogate.inversion.loop import Stage, run
from pdesurrogate.inversion.regularization import Bounds, TotalVariation
from pdesurrogate.inversion.report import plot_curves, plot_images, write_history_csv
from pdesurrogate.io import save_npz, write_text
from pdesurrogate.surrogate import FieldOperator
from solvers import Grid, maxwell
from solvers.dtypes import compute_dtype
from solvers.maxwell.simulate import tfsf_box
from solvers.points import PointSampler
from solvers.validate import check_int_range, check_positive_finite_scalar, is_concrete

RAMP_CYCLES = 5.0
RECORD_MARGIN = 1  # cells between the total-field box edge and the farthest recording point
FOV_MARGIN = 2  # cells between the field of view and the recording lines


class Acquisition(eqx.Module):
    """An ODT acquisition on a 2D grid (see the module docstring for the geometry).

    Args:
        grid: 2D grid (m); the object is reconstructed on it.
        wavelength: vacuum wavelength in m.
        background_index: refractive index of the immersion medium (>= 1).
        angles: ``(n_angles,)`` illumination directions in rad (0 = +axis 0); with
            ``rotating=False`` each within ``(-pi/2, pi/2)``.
        detector_positions: ``(n_det,)`` lateral coordinates in m along the detector line, 0 on the
            line through the grid centre, each within the recorded aperture ``|s| <= aperture``.
        detector_distance: signed distance in m of the detector line from the grid centre along the
            illumination (``rotating=False``: along +axis 0).
        rotating: the detector turns with the illumination (True) or stays fixed (False).
        pml_size: CPML cells per edge; tfsf_margin: cells between the CPML and the TFSF box.
        max_index: largest refractive index the runs must settle for (sets the fixed duration;
            default ``background_index + 0.1``).
        settle_periods: periods simulated after the source ramp and two grid-diagonal crossings.

    Raises:
        ValueError: an argument outside its range (the message names it and the range).
    """

    grid: Grid = eqx.field(static=True)
    wavelength: float = eqx.field(static=True)
    background_index: float = eqx.field(static=True)
    angles: tuple[float, ...] = eqx.field(static=True)
    detector_positions: tuple[float, ...] = eqx.field(static=True)
    detector_distance: float = eqx.field(static=True)
    rotating: bool = eqx.field(static=True)
    pml_size: int = eqx.field(static=True)
    tfsf_margin: int = eqx.field(static=True)
    max_index: float = eqx.field(static=True)
    settle_periods: float = eqx.field(static=True)

    def __init__(self, grid: Grid, wavelength: float, background_index: float, angles, detector_positions,
                 detector_distance: float, rotating: bool = True, *, pml_size: int = 10, tfsf_margin: int = 4,
                 max_index: float | None = None, settle_periods: float = 10.0):
        if not isinstance(grid, Grid) or grid.ndim != 2:
            raise ValueError(f"grid must be a 2D solvers.Grid (3D ODT is not implemented), got {grid!r}")
        self.grid = grid
        self.wavelength = check_positive_finite_scalar("wavelength", wavelength)
        self.background_index = check_positive_finite_scalar("background_index", background_index)
        if self.background_index < 1.0:
            raise ValueError(f"background_index must be >= 1, got {background_index}")
        self.max_index = (self.background_index + 0.1 if max_index is None
                          else check_positive_finite_scalar("max_index", max_index))
        if self.max_index < self.background_index:
            raise ValueError(f"max_index must be >= background_index ({self.background_index}), got {max_index}")
        cells = self.wavelength / (self.max_index * grid.spacing)
        if cells < 4:
            raise ValueError(f"wavelength must span >= 4 cells at max_index={self.max_index:g}: "
                             f"{wavelength:g} m is {cells:.3g} cells of {grid.spacing:g} m")
        self.settle_periods = check_positive_finite_scalar("settle_periods", settle_periods)
        if not isinstance(rotating, (bool, np.bool_)):
            raise ValueError(f"rotating must be True or False, got {rotating!r}")
        self.rotating = bool(rotating)
        a = np.asarray(angles, np.float64)
        if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
            raise ValueError(f"angles must be a non-empty 1D array of finite values in rad, got shape {a.shape}")
        if not self.rotating and np.any(np.abs(np.angle(np.exp(1j * a))) >= np.pi / 2):
            raise ValueError("angles must lie in (-pi/2, pi/2) rad (mod 2 pi) with rotating=False (the wave must "
                             f"travel towards the fixed detector line), got {a.tolist()}")
        self.angles = tuple(float(v) for v in a)
        self.pml_size = check_int_range("pml_size", pml_size, 0)
        self.tfsf_margin = check_int_range("tfsf_margin", tfsf_margin, 1)
        half = _box_half_width(grid, self.pml_size, self.tfsf_margin)
        aperture = _aperture(grid, half)
        if aperture / grid.spacing - FOV_MARGIN < 2:
            raise ValueError(f"grid shape {grid.shape} is too small for pml_size={pml_size} and "
                             f"tfsf_margin={tfsf_margin}: the field of view needs a radius of >= 2 cells")
        d = np.asarray(detector_positions, np.float64)
        if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
            raise ValueError(f"detector_positions must be a non-empty 1D array of finite values in m, "
                             f"got shape {d.shape}")
        if np.any(np.abs(d) > aperture * (1 + 1e-9)):
            raise ValueError(f"detector_positions must lie within the recorded aperture [-{aperture:g}, {aperture:g}] "
                             f"m, "
                             f"got [{d.min():g}, {d.max():g}]")
        self.detector_positions = tuple(float(v) for v in d)
        if not np.isfinite(detector_distance) or np.ndim(detector_distance) != 0:
            raise ValueError(f"detector_distance must be a finite number in m, got {detector_distance!r}")
        self.detector_distance = float(detector_distance)

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    @property
    def wavenumber(self) -> float:
        """Background wavenumber ``k_b = 2 pi n_b / wavelength`` in rad/m."""
        return 2 * math.pi * self.background_index / self.wavelength

    @property
    def aperture(self) -> float:
        """Distance ``R`` (m) of the recording lines from the centre, and their half length."""
        return _aperture(self.grid, _box_half_width(self.grid, self.pml_size, self.tfsf_margin))

    @property
    def duration(self) -> float:
        """Fixed simulated time (s): the ramp, two grid-diagonal crossings at ``max_index`` and
        ``settle_periods`` periods, so every phasor reaches steady state."""
        g = self.grid
        crossing = self.max_index * math.hypot(*(n * g.spacing for n in g.shape)) / maxwell.C0
        return (RAMP_CYCLES + self.settle_periods) * self.wavelength / maxwell.C0 + 2 * crossing

    def field_of_view(self) -> np.ndarray:
        """Where the object may differ from the background: bool ``grid.shape``, the disc of
        radius ``aperture - 2 spacing`` around the centre."""
        r = np.linalg.norm(self.grid.coordinates() - _centre(self.grid).reshape(2, 1, 1), axis=0)
        return r <= self.aperture - FOV_MARGIN * self.grid.spacing

    def subset(self, indices) -> Acquisition:
        """The same acquisition with the illuminations ``indices`` only."""
        idx = np.asarray(indices, int).reshape(-1)
        return dataclasses.replace(self, angles=[self.angles[i] for i in idx])


def _centre(grid: Grid) -> np.ndarray:
    return np.array([(n - 1) / 2 * grid.spacing for n in grid.shape])


def _box_half_width(grid: Grid, pml_size: int, margin: int) -> float:
    """Distance (m) from the grid centre to the nearest face of the total-field box."""
    lo, hi = tfsf_box(grid, pml_size, margin, (False,) * grid.ndim)
    c = _centre(grid) / grid.spacing
    return float(min(min(c[a] - lo[a], hi[a] - c[a]) for a in range(grid.ndim))) * grid.spacing


def _aperture(grid: Grid, half: float) -> float:
    """Recording distance and half length ``R``: ``sqrt(2) R`` is the box half width minus the margin."""
    return (half - RECORD_MARGIN * grid.spacing) / math.sqrt(2)


def frames(acq: Acquisition) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per illumination: its direction ``khat``, the detector-line normal and lateral axis, each ``(n_angles, 2)``."""
    a = np.asarray(acq.angles)
    khat = np.stack([np.cos(a), np.sin(a)], -1)
    normal = khat if acq.rotating else np.broadcast_to([1.0, 0.0], khat.shape)
    lateral = np.stack([-normal[:, 1], normal[:, 0]], -1)
    return khat, normal, lateral


def recording_offsets(acq: Acquisition) -> np.ndarray:
    """Lateral coordinates (m) of the recording points, one per cell: ``(n_rec,)``."""
    m = math.floor(acq.aperture / acq.grid.spacing + 1e-9)
    return np.arange(-m, m + 1) * acq.grid.spacing


def recording_points(acq: Acquisition) -> np.ndarray:
    """Recording-line positions in m, ``(n_angles, n_rec, 2)``: distance ``aperture`` along each normal."""
    _, normal, lateral = frames(acq)
    s = recording_offsets(acq)
    return (_centre(acq.grid) + acq.aperture * normal[:, None, :] + s[None, :, None] * lateral[:, None, :])


def detector_points(acq: Acquisition) -> np.ndarray:
    """Detector positions in m, ``(n_angles, n_det, 2)``."""
    _, normal, lateral = frames(acq)
    s = np.asarray(acq.detector_positions)
    return _centre(acq.grid) + acq.detector_distance * normal[:, None, :] + s[None, :, None] * lateral[:, None, :]


def incident(acq: Acquisition, points: np.ndarray) -> np.ndarray:
    """Incident plane waves ``exp(i k_b khat . (x - c))`` at ``points`` ``(n_angles, m, 2)`` m: ``(n_angles, m)``."""
    khat, _, _ = frames(acq)
    return np.exp(1j * acq.wavenumber * np.einsum("amd,ad->am", points - _centre(acq.grid), khat))


def angular_spectrum_matrix(source_offsets: np.ndarray, target_offsets: np.ndarray, distance: float,
                            wavenumber: float, *, oversample: int = 4) -> np.ndarray:
    """Angular-spectrum propagation between two parallel lines in a homogeneous medium, as a matrix.

    A field ``u(s)`` sampled at the uniformly spaced ``source_offsets`` (zero beyond them) is
    decomposed into plane waves ``exp(i kx s)`` (a DFT zero-padded to ``oversample`` times its
    length), each multiplied by ``exp(i kz distance)``, ``kz = sqrt(k^2 - kx^2)`` (evanescent ones
    decay, ``exp(-|kz| distance)``, going forward and are dropped going backward, where they would
    grow), and summed at ``target_offsets`` (band-limited interpolation; the identity at
    ``distance=0`` on the source points).

    Args:
        source_offsets: ``(m,)`` uniformly spaced lateral coordinates in m.
        target_offsets: ``(n,)`` lateral coordinates in m on the other line.
        distance: signed distance in m from the source line to the target line along the normal.
        wavenumber: ``k`` in rad/m of the medium.
        oversample: padding factor of the DFT (>= 1).

    Returns:
        complex ``(n, m)`` matrix ``P`` with ``u_target = P @ u_source``.
    """
    s = np.asarray(source_offsets, np.float64)
    h = s[1] - s[0] if s.size > 1 else 1.0
    if s.size > 1 and not np.allclose(np.diff(s), h, rtol=1e-6, atol=0):
        raise ValueError("source_offsets must be uniformly spaced")
    n_pad = oversample * s.size
    kx = 2 * np.pi * np.fft.fftfreq(n_pad, h)
    kz2 = wavenumber**2 - kx**2
    kz = np.sqrt(np.abs(kz2))
    decay = np.exp(-kz * distance) if distance >= 0 else 0.0  # evanescent: decays forward, dropped back
    transfer = np.where(kz2 > 0, np.exp(1j * kz * distance), decay)
    forward = np.exp(-1j * kx[:, None] * s[None, :])  # (n_pad, m)
    back = np.exp(1j * np.asarray(target_offsets, np.float64)[:, None] * kx[None, :]) / n_pad  # (n, n_pad)
    return back @ (transfer[:, None] * forward)


def detector_map(acq: Acquisition) -> np.ndarray:
    """``(n_angles, n_det, n_rec)`` complex: scattered ratio ``u / u_inc - 1`` on the recording line
    to the same on the detector line (angular spectrum in the background, incident phases folded in)."""
    rec, det = recording_points(acq), detector_points(acq)
    p = angular_spectrum_matrix(recording_offsets(acq), np.asarray(acq.detector_positions),
                                acq.detector_distance - acq.aperture, acq.wavenumber)
    return incident(acq, rec)[:, None, :] * p[None] / incident(acq, det)[:, :, None]


@functools.partial(jax.jit, static_argnums=(0, 2))
def _record(acq: Acquisition, refractive_index: jax.Array, index: int) -> jax.Array:
    """Total ``Ez`` phasor ``(n_rec,)`` on the recording line of illumination ``index`` (one FDTD run;
    compiled once per acquisition, illumination and dtype)."""
    n = refractive_index
    medium = maxwell.Medium(permittivity=n**2, conductivity=0.0)
    source = maxwell.PlaneWave(acq.wavelength, acq.angles[index], ramp_cycles=RAMP_CYCLES,
                               background_permittivity=acq.background_index**2)
    with jax.ensure_compile_time_eval():  # the source normalisation is host numpy inside simulate
        res = maxwell.simulate(acq.grid, medium, source, duration=acq.duration, pml_size=acq.pml_size,
                               tfsf_margin=acq.tfsf_margin, points=recording_points(acq)[index],
                               region=((0, 1), (0, 1)), gradient="adjoint")
    return res.point_field[0, 0]


@functools.lru_cache(maxsize=16)
def _empty_record(acq: Acquisition, dtype: str) -> np.ndarray:
    """The background's recording-line fields ``(n_angles, n_rec)`` (FDTD, cached per acquisition)."""
    n = jnp.full(acq.grid.shape, acq.background_index, dtype)
    return np.stack([np.asarray(_record(acq, n, i)) for i in range(acq.n_angles)])


def check_index(acq: Acquisition, refractive_index) -> jax.Array:
    """``refractive_index`` as an array of ``grid.shape``; concrete values must be finite, in
    ``[1, max_index]`` and equal to the background outside the field of view."""
    n = jnp.asarray(refractive_index)
    if n.shape != acq.grid.shape:
        raise ValueError(f"refractive_index must have shape {acq.grid.shape}, got {n.shape}")
    if is_concrete(n):
        v = np.asarray(n, np.float64)
        if not np.all(np.isfinite(v)) or v.min() < 1.0 or v.max() > acq.max_index * (1 + 1e-6):
            raise ValueError(f"refractive_index must be finite and within [1, max_index={acq.max_index:g}], "
                             f"got [{np.nanmin(v):g}, {np.nanmax(v):g}]")
        outside = ~acq.field_of_view()
        if np.any(np.abs(v[outside] - acq.background_index) > 1e-6):
            raise ValueError(f"refractive_index must equal background_index={acq.background_index:g} outside the field "
                             f"of view (radius {acq.aperture - FOV_MARGIN * acq.grid.spacing:g} m around the centre)")
    return n


def measure(acq: Acquisition, refractive_index: jax.Array, index: int, empty: np.ndarray | None = None) -> jax.Array:
    """``u / u_inc`` ``(n_det,)`` of illumination ``index`` (differentiable in the index map).

    ``empty``: the background's recording-line field of that illumination (default: cached FDTD run).
    """
    n = check_index(acq, refractive_index)
    dtype = compute_dtype(n)
    if empty is None:
        empty = _empty_record(acq, jnp.dtype(dtype).name)[index]
    ctype = jnp.result_type(dtype, jnp.complex64)
    ratio = _record(acq, n.astype(dtype), index) / jnp.asarray(empty, ctype)
    return 1.0 + jnp.asarray(detector_map(acq)[index], ctype) @ (ratio - 1.0)


def simulate(acq: Acquisition, refractive_index) -> jax.Array:
    """Background-corrected detector fields ``u / u_inc``: complex ``(n_angles, n_det)``.

    One FDTD run per illumination (differentiable w.r.t. ``refractive_index``, ``grid.shape``,
    through the time-reversal adjoint); see the module docstring.

    Raises:
        ValueError: a map of the wrong shape, non-finite, outside ``[1, max_index]`` or differing
            from the background outside :meth:`Acquisition.field_of_view`.
    """
    n = check_index(acq, refractive_index)
    return jnp.stack([measure(acq, n, i) for i in range(acq.n_angles)])


def refined(acq: Acquisition, factor: int = 2) -> Acquisition:
    """The same acquisition (box, angles, detector) on a grid ``factor`` times finer that shares
    ``acq.grid``'s nodes: ``factor * (n - 1) + 1`` cells per axis, absorbing layer and TF-SF margin
    ``factor`` times as many cells. Observed data from it avoid the inverse crime of simulating on
    the reconstruction grid; an index ``x`` on ``acq.grid`` maps to it with
    ``training.refinement.resample(x, 2, factor)`` and back with ``x_fine[::factor, ::factor]``."""
    f = check_int_range("factor", factor, 1)
    grid = Grid(tuple(f * (n - 1) + 1 for n in acq.grid.shape), acq.grid.spacing / f)
    return dataclasses.replace(acq, grid=grid, pml_size=f * acq.pml_size, tfsf_margin=f * acq.tfsf_margin)


def add_noise(observed, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``observed`` ``u / u_inc`` plus complex white noise ``snr_db`` dB below the mean power of the
    scattered ratio ``observed - 1`` (same shape, complex128)."""
    clean = np.asarray(observed, np.complex128)
    snr = check_positive_finite_scalar("snr_db", snr_db)
    sigma = np.sqrt(np.mean(np.abs(clean - 1) ** 2) / 10 ** (snr / 10) / 2)
    return clean + sigma * (rng.normal(size=clean.shape) + 1j * rng.normal(size=clean.shape))


# ----- classical baselines -----------------------------------------------------------------------


def _check_observed(acq: Acquisition, observed) -> np.ndarray:
    obs = np.asarray(observed)
    if obs.shape != (acq.n_angles, len(acq.detector_positions)) or not np.all(np.isfinite(obs)):
        raise ValueError(f"observed must be finite complex u/u_inc of shape (n_angles, n_det) = "
                         f"{(acq.n_angles, len(acq.detector_positions))}, got {obs.shape}")
    return obs.astype(np.complex128)


def refocus(acq: Acquisition, observed, distance: float, offsets: np.ndarray) -> np.ndarray:
    """``u / u_inc`` carried from the detector line to the parallel line at ``distance`` (m, from the
    grid centre along the normal), at lateral ``offsets`` (m): ``(n_angles, len(offsets))``.

    Angular spectrum in the background; the detector positions must be uniformly spaced and the
    geometry rotating (the incident field is then the same on every line up to a phase).
    """
    if not acq.rotating:
        raise ValueError("refocus needs rotating=True (a tilted incident wave varies along the fixed line)")
    if not _is_uniform(acq):
        raise ValueError("detector_positions must be >= 2 increasing, uniformly spaced values for refocusing and "
                         "the backpropagation baselines")
    obs = _check_observed(acq, observed)
    p = angular_spectrum_matrix(np.asarray(acq.detector_positions), offsets, distance - acq.detector_distance,
                                acq.wavenumber)
    shift = np.exp(-1j * acq.wavenumber * (distance - acq.detector_distance))
    return 1.0 + (obs - 1.0) @ p.T * shift


def _backpropagate(acq: Acquisition, observed, rytov_data: bool) -> np.ndarray:
    """Fourier-diffraction backpropagation with ODTbrain: refocus to the centre, then
    ``backpropagate_2d``. ODTbrain shares the ``exp(i k z)`` phase convention and the detector
    orientation (pixel ``i`` at lateral ``(i - (n - 1) / 2)`` pixels) but turns the other way: it gets
    the angles ``-a`` (``tests/test_inversion_optics.py`` pins this on an off-centre object)."""
    import odtbrain

    if not acq.rotating:
        raise ValueError("rotating=False (tilted illumination, fixed detector) is not supported by the "
                         "backpropagation baselines; use rytov_tv, which handles both geometries")
    g = acq.grid
    if g.shape[0] != g.shape[1]:
        raise ValueError(f"the backpropagation baselines need a square grid, got shape {g.shape}")
    n = g.shape[0]
    offsets = (np.arange(n) - (n - 1) / 2) * g.spacing
    line = refocus(acq, observed, 0.0, offsets)
    line = np.where(np.abs(offsets) <= acq.aperture, line, 1.0)  # nothing was recorded beyond the aperture
    res = acq.wavelength / g.spacing
    sino = odtbrain.sinogram_as_rytov(line, align=False) if rytov_data else line - 1.0
    # ODTbrain's angular weights divide by the spread of neighbouring angles: undefined below 3 angles
    f = odtbrain.backpropagate_2d(sino, -np.asarray(acq.angles), res, acq.background_index, lD=0,
                                  weight_angles=acq.n_angles >= 3)
    ri = odtbrain.odt_to_ri(f, res, acq.background_index).real
    return np.where(acq.field_of_view(), ri, acq.background_index)


def rytov(acq: Acquisition, observed) -> np.ndarray:
    """Rytov backpropagation (ODTbrain): refractive index ``grid.shape`` (background outside the field
    of view). Needs ``rotating=True``, a square grid and uniformly spaced detector positions."""
    return _backpropagate(acq, observed, True)


def born(acq: Acquisition, observed) -> np.ndarray:
    """Born backpropagation (ODTbrain); as :func:`rytov` with the scattered ratio ``u / u_inc - 1``."""
    return _backpropagate(acq, observed, False)


def rytov_phase(observed: np.ndarray) -> np.ndarray:
    """The complex Rytov phase ``ln(u / u_inc)`` with the phase unwrapped over (angle, detector)."""
    import odtbrain

    obs = np.asarray(observed)
    return odtbrain.sinogram_as_rytov(obs, align=False) if obs.shape[0] > 1 else \
        np.log(np.abs(obs)) + 1j * np.unwrap(np.angle(obs), axis=-1)


def rytov_matrix(acq: Acquisition) -> np.ndarray:
    """Linear Rytov forward operator on the field of view: ``(n_angles, n_det, n_fov)`` complex.

    ``psi_j = L_j @ V[fov]`` with ``V = k0^2 (n^2 - n_b^2)`` (rad^2/m^2): the first Born scattered
    field ``u_s(p) = sum_r G(p - r) V(r) u_inc(r) spacing^2``, ``G = i/4 H0(k_b |p - r|)``, on the
    recording line, divided by ``u_inc`` there, carried to the detector by :func:`detector_map`.
    """
    fov = acq.field_of_view()
    pix = acq.grid.coordinates()[:, fov].T  # (n_fov, 2)
    rec = recording_points(acq)  # (A, n_rec, 2)
    dist = np.linalg.norm(rec[:, :, None, :] - pix[None, None], axis=-1)
    green = 0.25j * special.hankel1(0, acq.wavenumber * dist) * acq.grid.spacing**2
    u_pix = incident(acq, np.broadcast_to(pix, (acq.n_angles, *pix.shape)))
    born_rec = green * u_pix[:, None, :] / incident(acq, rec)[:, :, None]
    return np.einsum("adr,arp->adp", detector_map(acq), born_rec)


# ----- forward models and the inversion ----------------------------------------------------------


@functools.lru_cache(maxsize=8)
def solver_forward(acq: Acquisition, dtype=jnp.float32) -> ForwardModel:
    """The FDTD forward model ``(n, items) -> (len(items), n_det)`` complex ``u / u_inc``.

    Cached per acquisition and dtype, so inversions of one acquisition share compiled programs.

    ``items`` (int32, possibly traced) pick illuminations: each runs its own compiled FDTD program
    (``lax.switch``; the illumination's source geometry is static), one after another (``lax.map``).
    """
    with jax.ensure_compile_time_eval():
        empty = _empty_record(acq, jnp.dtype(dtype).name)
    ctype = jnp.result_type(dtype, jnp.complex64)
    dmap = detector_map(acq)

    def branch(i: int):
        def one(n):
            ratio = _record(acq, n, i) / jnp.asarray(empty[i], ctype)
            return 1.0 + jnp.asarray(dmap[i], ctype) @ (ratio - 1.0)
        return one

    branches = [branch(i) for i in range(acq.n_angles)]

    def predict(n: jax.Array, items: jax.Array) -> jax.Array:
        return jax.lax.map(lambda i: jax.lax.switch(i, branches, n), items)

    return ForwardModel(predict, "solver", "fdtd")


def _operator_angles(acq: Acquisition, operator: FieldOperator) -> np.ndarray:
    """Index of each acquisition angle among the operator's trained angles; ValueError naming what
    differs (grid, wavelength, background, angles, recording reach)."""
    info = operator.info
    g, og = acq.grid, operator.grid
    if tuple(og.shape) != tuple(g.shape) or not np.isclose(og.spacing, g.spacing, rtol=1e-6):
        raise ValueError(f"surrogate was trained on grid shape {og.shape} spacing {og.spacing:g} m; the acquisition "
                         f"has shape {g.shape} spacing {g.spacing:g} m")
    for key, value in (("wavelength_m", acq.wavelength), ("background_index", acq.background_index)):
        if key not in info or not np.isclose(info[key], value, rtol=1e-6):
            raise ValueError(f"surrogate was trained with {key}={info.get(key)}; the acquisition has {value:g}")
    trained = np.asarray(info.get("angles_rad", []), np.float64)
    dist = np.abs(np.angle(np.exp(1j * (np.asarray(acq.angles)[:, None] - trained[None, :]))))
    missing = [a for a, d in zip(acq.angles, dist) if d.size == 0 or d.min() > 1e-6]
    if missing:
        raise ValueError(f"surrogate was trained for angles {trained.tolist()} rad only; the acquisition's angles "
                         f"{missing} differ (simulate them with forward='solver')")
    det = np.asarray(info.get("detector_positions_m", []), np.float64)
    reach = float(np.min(np.linalg.norm(det - _centre(g), axis=-1))) if det.size else 0.0
    if acq.aperture > reach * (1 + 1e-6):
        raise ValueError(f"the acquisition records at {acq.aperture:g} m from the centre, beyond the surrogate's "
                         f"detector reach {reach:g} m (its total-field box); raise pml_size or tfsf_margin")
    return np.argmin(dist, axis=1)


def surrogate_forward(acq: Acquisition, operator: FieldOperator) -> ForwardModel:
    """The field-operator forward model: one pass gives every trained illumination's field; each
    is read on the recording line (linear interpolation), divided by the operator's own field of the
    empty background and carried to the detector like the solver's (:func:`detector_map`). The same
    acquisition and operator object give the same model (memoised; the memo holds the operator, so
    its ``id`` stays its own), so repeated inversions reuse compiled programs."""
    idx = _operator_angles(acq, operator)
    return memo(("optics surrogate", acq, id(operator)), lambda: _surrogate_forward(acq, operator, idx))


def _surrogate_forward(acq: Acquisition, operator: FieldOperator, idx: np.ndarray) -> ForwardModel:
    points = recording_points(acq)
    samplers = [PointSampler(acq.grid, points[a], kernel="linear") for a in range(acq.n_angles)]
    dmap = detector_map(acq)

    def lines(n: jax.Array) -> jax.Array:
        fields = operator(n)
        return jnp.stack([jax.lax.complex(s.gather(fields[k].real), s.gather(fields[k].imag))
                          for s, k in zip(samplers, idx)])

    with jax.ensure_compile_time_eval():
        empty = np.asarray(lines(jnp.full(acq.grid.shape, acq.background_index, jnp.float32)))

    def predict(n: jax.Array, items: jax.Array) -> jax.Array:
        rec = lines(n)
        ratio = rec / jnp.asarray(empty, rec.dtype)
        data = 1.0 + jnp.einsum("adr,ar->ad", jnp.asarray(dmap, rec.dtype), ratio - 1.0)
        return data[items]

    return ForwardModel(predict, "surrogate", "field_operator")


def rel_error(acq: Acquisition, n: np.ndarray, truth: np.ndarray) -> float:
    """``||n - n_true|| / ||n_true - background_index||`` over the grid."""
    return float(np.linalg.norm(np.asarray(n, np.float64) - truth) /
                 np.linalg.norm(np.asarray(truth, np.float64) - acq.background_index))


def misfit(pred: jax.Array, item: jax.Array, data: dict[str, jax.Array]) -> jax.Array:
    """One illumination's misfit ``||pred - observed_j||^2 / norm`` (``data`` from :func:`misfit_data`)."""
    return jnp.sum(jnp.abs(pred - data["observed"][item].astype(pred.dtype)) ** 2) / data["norm"]


def misfit_data(observed: np.ndarray, background: complex = 1.0) -> dict[str, jax.Array]:
    """The data of :func:`misfit`: ``norm = mean_i ||observed_i - background||^2``, so the mean misfit
    starts near 1 at the background (``background`` 1 for ``u / u_inc``, 0 for Rytov phases)."""
    obs = np.asarray(observed)
    norm = float(np.mean(np.sum(np.abs(obs - background) ** 2, axis=-1))) or 1.0
    return {"observed": jnp.asarray(obs, jnp.complex64), "norm": jnp.asarray(norm, jnp.float32)}


@dataclass
class OpticsResult:
    """Output of :func:`invert` and :func:`rytov_tv`.

    Attributes:
        refractive_index: ``grid.shape``.
        history: one dict per iteration (``iteration, misfit, seconds, solver_calls,
            surrogate_calls``, ``rel_error`` when the truth was given, ...; see
            :mod:`pdesurrogate.inversion.loop`).
        initial_error: ``rel_error`` of the start (``None`` without the truth).
    """

    refractive_index: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    initial_error: float | None = None


FORWARDS = ("solver", "surrogate", "hybrid")
HYBRIDS = ("correct", "switch", "guarded")


def _bounds(acq: Acquisition, bounds, positive: bool) -> Bounds:
    lo, hi = (1.0, acq.max_index) if bounds is None else bounds
    b = Bounds(lo, hi)
    lo = b.lower if b.lower is not None else 1.0
    hi = b.upper if b.upper is not None else acq.max_index
    if lo < 1.0 or hi > acq.max_index * (1 + 1e-9):
        raise ValueError(f"bounds must lie within [1, max_index={acq.max_index:g}], got ({lo:g}, {hi:g})")
    return Bounds(max(lo, acq.background_index) if positive else lo, hi)


def _start(acq: Acquisition, initial, bounds: Bounds, dtype) -> np.ndarray:
    if initial is None:
        return np.full(acq.grid.shape, acq.background_index, dtype)
    n = np.asarray(check_index(acq, np.asarray(initial, np.float64)), dtype)
    bounds.check("initial", n)
    return n


def _error(acq: Acquisition, truth) -> Any:
    """``n -> rel_error(acq, n, truth)`` (``None`` without the truth); the truth is checked here."""
    if truth is None:
        return None
    true = np.asarray(check_index(acq, np.asarray(truth, np.float64)), np.float64)
    return functools.partial(rel_error, acq, truth=true)


def _operator(surrogate: Any) -> FieldOperator:
    if isinstance(surrogate, FieldOperator):
        return surrogate
    if surrogate is None:
        raise ValueError("surrogate must be a FieldOperator or a training run directory for forward='surrogate' "
                         "or 'hybrid', got None")
    return load_once(surrogate, FieldOperator.load)


def invert(acq: Acquisition, observed, forward: str = "solver", surrogate: Any = None, initial=None,
           bounds: tuple[float | None, float | None] | None = None, truth=None, *, iterations: int = 20,
           optimizer: str = "lbfgs", learning_rate: float = 0.05, tv: float = 0.0, tv_epsilon: float = 1e-3,
           positive: bool = False, angles_per_iteration: int | None = None, hybrid: str = "correct",
           surrogate_iterations: int | None = None, refresh_every: int = 5, trust_radius: float | None = None,
           guard_tolerance: float | None = None, check_every: int = 10, guard_hold: int = 0, scale: float = 0.01,
           seed: int = 0, checkpoint_dir: str | Path | None = None, progress: bool = True) -> OpticsResult:
    """Reconstruct the refractive index from ``observed`` ``u / u_inc`` ``(n_angles, n_det)``.

    Minimises the mean over illuminations of :func:`misfit` plus ``tv`` times the smoothed
    total variation of ``n`` with the shared loop (:func:`pdesurrogate.inversion.run`); only the
    field of view is updated (a preconditioner of 1 there, 0 elsewhere).

    Args:
        acq: the acquisition; observed: complex ``(n_angles, n_det)``.
        forward: ``"solver"`` (FDTD with its adjoint), ``"surrogate"`` (a trained
            :class:`~pdesurrogate.surrogate.FieldOperator`) or ``"hybrid"``.
        surrogate: the operator or its training run directory (surrogate and hybrid).
        initial: starting index ``grid.shape`` (default: the background).
        bounds: ``(lower, upper)`` on ``n`` within ``[1, max_index]`` (default those).
        truth: the true index, ``grid.shape``, for ``rel_error`` in the history.
        iterations: iterations of the (last) stage; optimizer: ``"lbfgs"`` or ``"adam"``
            (``learning_rate`` in units of ``scale``, Adam only).
        tv, tv_epsilon: TV weight (misfit units per index unit) and smoothing (index units).
        positive: keep ``n >= background_index`` (raises the lower bound).
        angles_per_iteration: random illumination subset per iteration (``None``: all).
        hybrid: ``"correct"`` (the surrogate corrected to first order by FDTD at a centre refreshed
            every ``refresh_every`` iterations) or ``"switch"`` (``surrogate_iterations`` surrogate
            iterations, default ``iterations``, then ``iterations`` FDTD iterations) or ``"guarded"``
            (per iteration the surrogate where the trust guard of the calibrated run ``surrogate``
            accepts the iterate, FDTD elsewhere; :class:`pdesurrogate.inversion.guarded.GuardedForward`).
        trust_radius: hybrid ``"correct"``: the initial trust-region half-width in index units
            per cell around each centre (:class:`~pdesurrogate.inversion.forward.Corrected`;
            ``None``: no trust region).
        guard_tolerance, check_every, guard_hold: ``"guarded"``: the acceptable relative L2 of the
            operator's fields (default the calibration's), the iterations between the guard's solver
            checks and those a fallback keeps the solver (:class:`~pdesurrogate.inversion.GuardedForward`).
        scale: a typical index update (the optimiser's unit step).
        seed: seed of the angle subsets; checkpoint_dir: resumable state; progress: a bar on stderr.

    Raises:
        ValueError: bad inputs, an operator trained for another geometry (before anything runs).
    """
    if forward not in FORWARDS:
        raise ValueError(f"forward must be one of {list(FORWARDS)}, got {forward!r}")
    if hybrid not in HYBRIDS:
        raise ValueError(f"hybrid must be one of {list(HYBRIDS)}, got {hybrid!r}")
    obs = _check_observed(acq, observed)
    box = _bounds(acq, bounds, positive)
    x64 = jax.config.jax_enable_x64 and initial is not None and np.asarray(initial).dtype == np.float64
    dtype = np.float64 if x64 else np.float32  # computation follows the input dtype
    n0 = _start(acq, initial, box, dtype)
    error = _error(acq, truth)  # validates the truth before anything compiles
    operator = None if forward == "solver" else _operator(surrogate)
    common = {"misfit": misfit, "data": misfit_data(obs), "optimizer": optimizer, "learning_rate": learning_rate,
              "items_per_iteration": angles_per_iteration}
    if forward == "surrogate":
        stages = [Stage("surrogate", iterations, surrogate_forward(acq, operator), **common)]
    elif forward == "solver":
        stages = [Stage("solver", iterations, solver_forward(acq, dtype), **common)]
    elif hybrid == "switch":
        k = iterations if surrogate_iterations is None else surrogate_iterations
        stages = [Stage("surrogate", k, surrogate_forward(acq, operator), **common),
                  Stage("solver", iterations, solver_forward(acq, dtype), **common)]
    elif hybrid == "guarded":
        model = guarded_forward(surrogate_forward(acq, operator), solver_forward(acq, dtype), surrogate,
                                lambda n: n[None], tolerance=guard_tolerance, check_every=check_every,
                                hold=guard_hold)
        stages = [Stage("guarded", iterations, model, **common)]
    else:
        model = Corrected(surrogate_forward(acq, operator), solver_forward(acq, dtype), refresh_every, trust_radius)
        stages = [Stage("corrected", iterations, model, **common)]
    res = run(stages, n0, n_items=acq.n_angles, bounds=box,
              regularizer=TotalVariation(tv, tv_epsilon) if tv > 0 else None, scale=scale,
              precondition=acq.field_of_view().astype(dtype),
              error=error, seed=seed, checkpoint_dir=checkpoint_dir, progress=progress, desc=f"optics {forward}")
    return OpticsResult(res.params, res.history, res.initial_error)


@functools.lru_cache(maxsize=8)
def rytov_forward(acq: Acquisition) -> ForwardModel:
    """The linear Rytov model ``(n, items) -> (len(items), n_det)`` complex phases (:func:`rytov_matrix`
    applied to ``V = k0^2 (n^2 - n_b^2)`` on the field of view); cached per acquisition."""
    fov = acq.field_of_view()
    mats = jnp.asarray(rytov_matrix(acq), jnp.complex64)
    k0 = 2 * math.pi / acq.wavelength
    nb2 = acq.background_index**2

    def predict(n: jax.Array, items: jax.Array) -> jax.Array:
        v = (k0**2 * (n[fov] ** 2 - nb2)).astype(jnp.complex64)
        return mats[items] @ v

    return ForwardModel(predict, "solver", "rytov")


def rytov_tv(acq: Acquisition, observed, *, tv: float = 0.0, tv_epsilon: float = 1e-3, iterations: int = 100,
             bounds: tuple[float | None, float | None] | None = None, positive: bool = False, truth=None,
             scale: float = 0.01, progress: bool = False) -> OpticsResult:
    """Rytov with TV: least squares on the linear Rytov model (:func:`rytov_matrix`) plus ``tv`` times
    the smoothed TV, with the shared loop (L-BFGS); any geometry (``rotating`` or not).

    The data are the unwrapped Rytov phases of ``observed``; the misfit is normalised as
    :func:`misfit_data`. The history counts the linear model's evaluations as ``solver_calls``.
    """
    obs = _check_observed(acq, observed)
    box = _bounds(acq, bounds, positive)
    stage = Stage("rytov_tv", iterations, rytov_forward(acq), misfit, misfit_data(rytov_phase(obs), 0.0))
    res = run([stage], np.full(acq.grid.shape, acq.background_index, np.float32), n_items=acq.n_angles,
              bounds=box, regularizer=TotalVariation(tv, tv_epsilon) if tv > 0 else None, scale=scale,
              precondition=acq.field_of_view().astype(np.float32),
              error=_error(acq, truth), progress=progress, desc="optics rytov+tv")
    return OpticsResult(res.params, res.history, res.initial_error)


# ----- command line ------------------------------------------------------------------------------

CONFIG_KEYS = ("forward", "surrogate", "bounds", "iterations", "optimizer", "learning_rate", "tv", "tv_epsilon",
               "positive", "angles_per_iteration", "hybrid", "surrogate_iterations", "refresh_every", "trust_radius",
               "guard_tolerance", "check_every", "guard_hold", "scale", "seed", "checkpoint", "progress")
OBSERVED_KEYS = ("observed", "shape", "spacing", "wavelength", "background_index", "angles", "detector_positions",
                 "detector_distance")
ACQUISITION_OPTIONS = ("rotating", "pml_size", "tfsf_margin", "max_index", "settle_periods")


def read_observed(path: str | Path) -> tuple[Acquisition, np.ndarray, np.ndarray | None]:
    """``(acquisition, observed, truth or None)`` from an ``.npz`` holding ``observed`` ``u / u_inc``
    ``(n_angles, n_det)`` complex, the acquisition (:data:`OBSERVED_KEYS`: ``shape``, ``spacing`` m,
    ``wavelength`` m, ``background_index``, ``angles`` rad, ``detector_positions`` m,
    ``detector_distance`` m; optional :data:`ACQUISITION_OPTIONS`) and optionally ``truth``."""
    data = read_observed_npz(path, OBSERVED_KEYS, ACQUISITION_OPTIONS + ("truth",))
    options = {k: data[k].item() for k in ACQUISITION_OPTIONS if k in data}
    grid = Grid(tuple(int(n) for n in data["shape"]), float(data["spacing"]))
    acq = Acquisition(grid, float(data["wavelength"]), float(data["background_index"]), data["angles"],
                      data["detector_positions"], float(data["detector_distance"]), **options)
    return acq, data["observed"], data.get("truth")


def save_outputs(acq: Acquisition, result: OpticsResult, out_dir: str | Path, truth: np.ndarray | None = None,
                 baseline: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``reconstruction.npz``, ``history.csv``, ``reconstruction.png`` (reconstruction, truth,
    error map, Rytov when given), ``curves.png`` and ``report.md`` into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_npz(out / "reconstruction.npz", refractive_index=result.refractive_index, spacing=acq.grid.spacing)
    write_history_csv(result.history, out / "history.csv")
    extent = [0, acq.grid.shape[1] * acq.grid.spacing * 1e6, 0, acq.grid.shape[0] * acq.grid.spacing * 1e6]
    panels = {"reconstruction": result.refractive_index}
    if truth is not None:
        panels |= {"truth": truth, "error": result.refractive_index - truth}
    if baseline is not None:
        panels["rytov"] = baseline
    plot_images(panels, out / "reconstruction.png", extent=extent, shared=[k for k in panels if k != "error"],
                units="refractive index (axes in um)")
    plot_curves({result.history[-1]["forward"] if result.history else "inversion": result.history},
                out / "curves.png")
    last = result.history[-1] if result.history else {}
    summary = {"iterations": len(result.history), "final_misfit": last.get("misfit"),
               "rel_error": last.get("rel_error"), "initial_rel_error": result.initial_error,
               "rytov_rel_error": None if truth is None or baseline is None else rel_error(acq, baseline, truth),
               "seconds": last.get("seconds"), "compile_seconds": last.get("compile_seconds"),
               "solver_calls": last.get("solver_calls"), "surrogate_calls": last.get("surrogate_calls")}
    lines = ["# Optical diffraction tomography", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in summary.items()]
    lines += ["", "![reconstruction](reconstruction.png)", "", "![curves](curves.png)", "",
              "Per-iteration history: [history.csv](history.csv); reconstruction: `reconstruction.npz`.", ""]
    write_text(out / "report.md", "\n".join(lines))
    return summary


def run_config(config: dict[str, Any], observed_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """``pdesurrogate invert optics``: invert with the options of ``config`` (keys :data:`CONFIG_KEYS`,
    at top level or in an ``[invert]`` table; ``checkpoint = true`` resumes from ``out_dir/checkpoint``)
    and write :func:`save_outputs` (with the Rytov baseline when the geometry allows it)."""
    options = dict(config.get("invert", config))
    unknown = sorted(set(options) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed: {list(CONFIG_KEYS)}")
    acq, observed, truth = read_observed(observed_path)
    if isinstance(options.get("bounds"), list):
        options["bounds"] = tuple(options["bounds"])
    checkpoint = Path(out_dir) / "checkpoint" if options.pop("checkpoint", False) else None
    result = invert(acq, observed, truth=truth, checkpoint_dir=checkpoint, **options)
    square = acq.grid.shape[0] == acq.grid.shape[1]
    baseline = rytov(acq, observed) if acq.rotating and square and _is_uniform(acq) else None  # else unsupported
    return save_outputs(acq, result, out_dir, truth=truth, baseline=baseline)


def _is_uniform(acq: Acquisition) -> bool:
    s = np.diff(np.asarray(acq.detector_positions))
    return s.size > 0 and s[0] > 0 and bool(np.allclose(s, s[0], rtol=1e-6, atol=0))
