"""Random media ("phantoms") for ultrasound and optics, as pure functions of (config, seed, index).

Every generator draws from ``numpy.random.default_rng([seed, split, index, stream])`` only, so
sample ``index`` is reproduced exactly from ``(config, seed, index)`` in any order, on any
process. All generators work in 2D and 3D (ellipses become ellipsoids, rings become shells).

Acoustic media are ``sound_speed`` (m/s) and ``density`` (kg/m^3) in water (1500 m/s,
1000 kg/m^3); optical media are a ``refractive_index`` in water (1.333). ``phantom.contrast``
scales every deviation from the background. Each sample carries an integer ``lesion_mask``
(see :data:`LESION_LABELS`) so that region-of-interest errors can be computed later.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from training.data.config import OPTICAL_PHANTOMS, SPLITS, DataConfig, effective

WATER_SOUND_SPEED = 1500.0  # m/s
WATER_DENSITY = 1000.0  # kg/m^3
WATER_INDEX = 1.333

TFSF_MARGIN = 4  # cells between the PML and the total-field/scattered-field box (Maxwell solver default)

LESION_LABELS = {0: "none", 1: "cyst", 2: "tumour", 3: "rare_lesion"}

# Random streams per sample, so that adding draws to one never changes another.
_STREAM_MEDIUM, _STREAM_LESION, _STREAM_SOURCE, _STREAM_SMOOTHING = 0, 1, 2, 3
BACKGROUND = {"sound_speed": WATER_SOUND_SPEED, "density": WATER_DENSITY, "refractive_index": WATER_INDEX}


@dataclasses.dataclass(frozen=True)
class Phantom:
    """One medium sample.

    Attributes:
        medium: ``{"sound_speed", "density"}`` (acoustic) or ``{"refractive_index"}`` (optics),
            float32 arrays of the grid shape.
        lesion_mask: uint8 array of the grid shape with :data:`LESION_LABELS` codes.
        rare_lesion: whether this sample holds a rare small lesion (label 3).
    """

    medium: dict[str, np.ndarray]
    lesion_mask: np.ndarray
    rare_lesion: bool


def rng_for(config: DataConfig, seed: int, index: int, stream: int) -> np.random.Generator:
    """The random generator of one sample's stream (medium, lesion or source)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return np.random.default_rng([int(seed), SPLITS.index(config.split), int(index), int(stream)])


def body_radius(config: DataConfig) -> float:
    """Radius (m) inside which the object lies: clear of the absorbing layer and the ring array."""
    return 0.9 * object_room(config)


def object_room(config: DataConfig) -> float:
    """Radius (m) of the disc any object must stay in: inside the absorbing layer, the ring array
    (ultrasound) or every rotation of the detector lines (optics), less 2 cells."""
    half = (min(config.shape) - 1) / 2
    if config.scenario == "optics":  # inside the detector lines, which lie inside the total-field box
        free = (half - config.optics.pml_size - TFSF_MARGIN - config.optics.detector_margin) / math.sqrt(2) - 2
    elif config.scenario == "phantom":
        free = 0.9 * half
    elif config.scenario == "maxwell_stepper":  # clear of the CPML
        free = half - config.optics.pml_size - 2
    else:
        free = half - config.acoustic.pml_size - config.acoustic.ring_margin - 2
    if free < 3:
        raise ValueError(f"data.shape: {list(config.shape)} leaves {free:.1f} cells for the object after the "
                         f"absorbing layer and margins; use a larger grid or smaller pml_size/margins")
    return free * config.spacing


@functools.lru_cache(maxsize=8)
def coordinates(shape: tuple[int, ...], spacing: float) -> np.ndarray:
    """Positions relative to the grid centre in metres, shape ``(ndim, *shape)`` (cached, read-only)."""
    axes = [(np.arange(n) - (n - 1) / 2) * spacing for n in shape]
    out = np.stack(np.meshgrid(*axes, indexing="ij"))
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _wavenumber_squared(shape: tuple[int, ...]) -> np.ndarray:
    """``|k|^2`` in rad^2/cell^2 on the FFT grid of ``shape`` (cached, read-only)."""
    out = sum(np.meshgrid(*[(2 * np.pi * np.fft.fftfreq(n)) ** 2 for n in shape], indexing="ij"))
    out.flags.writeable = False
    return out


def random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """A uniformly random rotation matrix ``(ndim, ndim)``."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def ellipsoid(coords: np.ndarray, center: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Boolean mask of an ellipse (2D) / ellipsoid (3D); ``center``/``radii`` in metres, ``(ndim,)``."""
    d = coords - center.reshape((-1,) + (1,) * (coords.ndim - 1))
    local = np.tensordot(rotation.T, d, axes=1)
    return np.sum((local / radii.reshape((-1,) + (1,) * (coords.ndim - 1))) ** 2, axis=0) <= 1.0


def gaussian_random_field(rng: np.random.Generator, shape: tuple[int, ...], correlation_cells: float) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field with covariance ``exp(-r^2 / (2 l^2))``.

    ``correlation_cells`` is ``l`` in cells; 0 gives white noise.
    """
    noise = rng.standard_normal(shape)
    if correlation_cells <= 0:
        return noise
    k2 = _wavenumber_squared(tuple(shape))
    field = np.real(np.fft.ifftn(np.fft.fftn(noise) * np.exp(-k2 * correlation_cells**2 / 4)))
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def smooth(field: np.ndarray, sigma_cells: float) -> np.ndarray:
    """``field`` convolved with a Gaussian of std ``sigma_cells`` (periodic; 0 returns it unchanged)."""
    if sigma_cells <= 0:
        return field
    k2 = _wavenumber_squared(tuple(field.shape))
    return np.real(np.fft.ifftn(np.fft.fftn(field) * np.exp(-k2 * sigma_cells**2 / 2)))


def _random_point_in_ball(rng: np.random.Generator, ndim: int, radius: float) -> np.ndarray:
    direction = rng.standard_normal(ndim)
    direction /= np.linalg.norm(direction)
    return direction * radius * rng.uniform() ** (1 / ndim)


def _smooth_window(coords: np.ndarray, radius: float, width: float) -> np.ndarray:
    """1 inside ``radius``, 0 outside, with a smooth edge of ``width`` metres."""
    r = np.sqrt(np.sum(coords**2, axis=0))
    return 0.5 * (1 - np.tanh((r - radius) / width)) * (r < radius + 4 * width)  # exactly 0 further out


def _random_ellipsoid(rng: np.random.Generator, ndim: int, within: float, size: tuple[float, float]) -> tuple:
    """(center, radii, rotation) of a random ellipsoid: radii in ``size`` (m), centre inside radius ``within``."""
    radii = rng.uniform(size[0], size[1], ndim)
    center = _random_point_in_ball(rng, ndim, max(within - radii.max(), 0.0))
    return center, radii, random_rotation(rng, ndim)


def _breast(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    ndim = coords.shape[0]
    p = config.phantom
    dc = np.zeros(coords.shape[1:])
    drho = np.zeros(coords.shape[1:])
    labels = np.zeros(coords.shape[1:], np.uint8)
    outline = ellipsoid(coords, _random_point_in_ball(rng, ndim, 0.05 * body),
                        body * rng.uniform(0.75, 0.95, ndim), random_rotation(rng, ndim))
    dc[outline] = rng.uniform(-60.0, -30.0)  # fat: 1440-1470 m/s
    drho[outline] = rng.uniform(-80.0, -50.0)  # ~920-950 kg/m^3
    gland_field = gaussian_random_field(rng, coords.shape[1:], max(p.correlation_length / config.spacing, 1.0))
    gland = outline & (gland_field > rng.uniform(0.0, 0.8)) & (np.sqrt(np.sum(coords**2, 0)) < 0.8 * body)
    dc[gland] = rng.uniform(15.0, 45.0)  # glandular: 1515-1545 m/s
    drho[gland] = rng.uniform(20.0, 40.0)
    dc += 4.0 * gaussian_random_field(rng, coords.shape[1:], 1.0) * outline  # tissue texture
    for _ in range(rng.integers(p.n_inclusions[0], p.n_inclusions[1] + 1)):
        mask = outline & ellipsoid(coords, *_random_ellipsoid(rng, ndim, 0.7 * body, (0.05 * body, 0.15 * body)))
        if rng.uniform() < 0.5:  # cyst: fluid
            dc[mask], drho[mask], labels[mask] = rng.uniform(70.0, 85.0), rng.uniform(5.0, 15.0), 1
        else:  # tumour
            dc[mask], drho[mask], labels[mask] = rng.uniform(50.0, 100.0), rng.uniform(50.0, 70.0), 2
    c = WATER_SOUND_SPEED + p.contrast * dc
    rho = WATER_DENSITY + p.contrast * drho
    return {"sound_speed": c, "density": rho}, labels, outline


def _brain(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    ndim = coords.shape[0]
    p = config.phantom
    labels = np.zeros(coords.shape[1:], np.uint8)
    center = _random_point_in_ball(rng, ndim, 0.03 * body)
    radii = body * rng.uniform(0.85, 1.0, ndim)
    rotation = random_rotation(rng, ndim)
    head = ellipsoid(coords, center, radii, rotation)
    thickness = p.skull_thickness * float(np.mean(radii))
    brain = ellipsoid(coords, center, np.maximum(radii - thickness, 0.0), rotation)
    skull = head & ~brain
    texture = gaussian_random_field(rng, coords.shape[1:], max(p.correlation_length / config.spacing, 1.0))
    dc = np.where(brain, rng.uniform(40.0, 60.0) + 5.0 * texture, 0.0)  # brain ~1540-1560 m/s
    drho = np.where(brain, 40.0, 0.0)
    dc[skull] = rng.uniform(1300.0, 1500.0)  # bone: 2800-3000 m/s
    drho[skull] = rng.uniform(850.0, 950.0)  # ~1850-1950 kg/m^3
    inner = float(np.min(radii)) - thickness
    for _ in range(rng.integers(p.n_inclusions[0], p.n_inclusions[1] + 1)):
        mask = brain & ellipsoid(coords, *_random_ellipsoid(rng, ndim, 0.8 * inner, (0.05 * body, 0.15 * body)))
        dc[mask] += rng.uniform(20.0, 50.0)
        drho[mask] += rng.uniform(10.0, 30.0)
        labels[mask] = 2
    c = WATER_SOUND_SPEED + p.contrast * dc
    rho = WATER_DENSITY + p.contrast * drho
    return {"sound_speed": c, "density": rho}, labels, brain


def _grf_acoustic(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    p = config.phantom
    window = _smooth_window(coords, body, 2 * config.spacing)
    g = np.clip(gaussian_random_field(rng, coords.shape[1:], p.correlation_length / config.spacing), -4, 4)
    dc = 30.0 * g * window  # ~ +-90 m/s at 3 sigma, clipped at 4 sigma
    c = WATER_SOUND_SPEED + p.contrast * dc
    rho = WATER_DENSITY + p.contrast * 0.8 * dc
    return {"sound_speed": c, "density": rho}, np.zeros(coords.shape[1:], np.uint8), window > 0.5


def _ellipses_acoustic(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    ndim = coords.shape[0]
    p = config.phantom
    dc = np.zeros(coords.shape[1:])
    drho = np.zeros(coords.shape[1:])
    for _ in range(rng.integers(p.n_inclusions[0], p.n_inclusions[1] + 1)):
        mask = ellipsoid(coords, *_random_ellipsoid(rng, ndim, body, (0.1 * body, 0.5 * body)))
        dc[mask] = rng.uniform(-100.0, 100.0)  # 1400-1600 m/s
        drho[mask] = dc[mask] + rng.uniform(-20.0, 20.0)
    c = WATER_SOUND_SPEED + p.contrast * dc
    rho = WATER_DENSITY + p.contrast * drho
    body_mask = np.sqrt(np.sum(coords**2, 0)) <= body
    return {"sound_speed": c, "density": rho}, np.zeros(coords.shape[1:], np.uint8), body_mask


def _cell_radii(config: DataConfig, body: float, n_cells: int) -> tuple[float, tuple[float, float]]:
    """``(within, (low, high))``: the disc (m) cell centres and radii keep to, and the radius range (m)."""
    p = config.phantom
    if p.cell_diameter is None:
        cell_size = body * (0.8 if n_cells == 1 else 0.9 / n_cells ** (1 / len(config.shape)))
        return body, (0.7 * cell_size, cell_size)
    room = object_room(config)
    width = min(config.shape) * config.spacing
    low, high = (0.5 * d * width for d in p.cell_diameter)
    if high > room:
        raise ValueError(f"data.phantom.cell_diameter: {p.cell_diameter[1]} of the field is a radius of "
                         f"{high / config.spacing:.1f} cells; only {room / config.spacing:.1f} fit inside the "
                         f"absorbing layer and detector lines of this grid (at most {2 * room / width:.3f})")
    return room, (low, high)


def _cell(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    ndim = coords.shape[0]
    p = config.phantom
    dn = np.zeros(coords.shape[1:])
    tissue = np.zeros(coords.shape[1:], bool)
    cytoplasm = np.zeros(coords.shape[1:], bool)
    n_cells = int(rng.integers(p.n_cells[0], p.n_cells[1] + 1))
    within, size = _cell_radii(config, body, n_cells)
    membrane = 1.5 * config.spacing
    for _ in range(n_cells):
        center, radii, rotation = _random_ellipsoid(rng, ndim, within, size)
        cell = ellipsoid(coords, center, radii, rotation)
        inside = ellipsoid(coords, center, np.maximum(radii - membrane, config.spacing), rotation)
        dn[cell & ~inside] = rng.uniform(0.037, 0.047)  # membrane 1.37-1.38
        dn[inside] = rng.uniform(0.017, 0.027)  # cytoplasm 1.35-1.36
        nucleus = inside & ellipsoid(coords, center + _random_point_in_ball(rng, ndim, 0.2 * float(radii.min())),
                                     radii * rng.uniform(0.3, 0.5), random_rotation(rng, ndim))
        dn[nucleus] = rng.uniform(0.027, 0.047)  # nucleus 1.36-1.38
        own = inside & ~nucleus  # this cell's cytoplasm (a later cell covers an earlier one)
        for _ in range(rng.integers(p.n_inclusions[0], p.n_inclusions[1] + 1)):  # organelles 1.38-1.40
            organelle = inside & ~nucleus & ellipsoid(coords, *_random_ellipsoid(
                rng, ndim, float(radii.min()), (0.05 * float(radii.min()), 0.15 * float(radii.min()))))
            dn[organelle] = rng.uniform(0.047, 0.067)
            own &= ~organelle
        cytoplasm = (cytoplasm & ~cell) | own
        tissue |= cell
    if p.texture:  # drawn after everything else, so a textured sample has the untextured one's cells
        field = gaussian_random_field(rng, coords.shape[1:], 2.0 if p.texture_cells is None else p.texture_cells)
        dn[cytoplasm] += p.texture * np.clip(field, -2.0, 2.0)[cytoplasm]
    return {"refractive_index": WATER_INDEX + p.contrast * dn}, np.zeros(coords.shape[1:], np.uint8), tissue


def _ellipses_optical(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    ndim = coords.shape[0]
    p = config.phantom
    dn = np.zeros(coords.shape[1:])
    for _ in range(rng.integers(p.n_inclusions[0], p.n_inclusions[1] + 1)):
        mask = ellipsoid(coords, *_random_ellipsoid(rng, ndim, body, (0.1 * body, 0.5 * body)))
        dn[mask] = rng.uniform(0.007, 0.067)  # 1.34-1.40
    body_mask = np.sqrt(np.sum(coords**2, 0)) <= body
    return {"refractive_index": WATER_INDEX + p.contrast * dn}, np.zeros(coords.shape[1:], np.uint8), body_mask


def _grf_optical(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, body: float):
    p = config.phantom
    window = _smooth_window(coords, body, 2 * config.spacing)
    g = gaussian_random_field(rng, coords.shape[1:], p.correlation_length / config.spacing)
    dn = 0.0335 * (1 + np.tanh(g)) * window  # 1.333-1.40
    return {"refractive_index": WATER_INDEX + p.contrast * dn}, np.zeros(coords.shape[1:], np.uint8), window > 0.5


_GENERATORS = {"breast": _breast, "brain": _brain, "grf": _grf_acoustic, "ellipses": _ellipses_acoustic,
               "cell": _cell, "optical_ellipses": _ellipses_optical, "optical_grf": _grf_optical}


def has_rare_lesion(rate: float, seed: int, index: int) -> bool:
    """Whether sample ``index`` holds a rare lesion: a rotated low-discrepancy sequence.

    Any run of ``n`` consecutive indices holds ``floor(n * rate)`` or ``ceil(n * rate)`` lesions,
    so the rate is controlled exactly even for small test sets.
    """
    phase = (int(seed) * 0.6180339887498949) % 1.0
    return math.floor((index + 1) * rate + phase) > math.floor(index * rate + phase)


def _add_rare_lesion(config: DataConfig, rng: np.random.Generator, coords: np.ndarray, medium: dict,
                     labels: np.ndarray, tissue: np.ndarray) -> None:
    """Insert one small ball of ``lesion_cells`` diameter with relative contrast ``lesion_contrast`` in place."""
    p = config.phantom
    cells = int(rng.integers(p.lesion_cells[0], p.lesion_cells[1] + 1))
    diameter = cells * config.spacing
    candidates = np.argwhere(tissue & (labels == 0))
    if len(candidates) == 0:
        candidates = np.argwhere(np.ones_like(labels, bool))
    cell = candidates[rng.integers(len(candidates))]
    center = coords[(slice(None),) + tuple(cell)]
    offset = 0.5 * config.spacing if cells % 2 == 0 else 0.0  # even diameters centre between cells
    mask = np.sum((coords - (center + offset).reshape((-1,) + (1,) * labels.ndim)) ** 2, 0) <= (diameter / 2) ** 2
    if (mask & tissue).any():
        mask &= tissue  # stay inside the tissue (e.g. not in the skull)
    for name, value in medium.items():
        base = 1.0 if name == "refractive_index" else 0.0  # optics: scale the excess index n - 1
        value[mask] = base + (value[mask] - base) * (1.0 + p.lesion_contrast)
    labels[mask] = 3


def phantom(config: DataConfig, seed: int, index: int) -> Phantom:
    """Medium sample ``index`` of ``config`` with random ``seed``; pure and deterministic.

    Args:
        config: the data config; ``phantom.kind`` picks the family and ``split`` shifts it.
        seed: random seed (the dataset uses ``config.seed``).
        index: sample index >= 0.

    Returns:
        a :class:`Phantom` on the ``config.shape`` grid (2D or 3D).
    """
    config = effective(config)
    rng = rng_for(config, seed, index, _STREAM_MEDIUM)
    coords = coordinates(tuple(config.shape), float(config.spacing))
    medium, labels, tissue = _GENERATORS[config.phantom.kind](config, rng, coords, body_radius(config))
    rare = config.phantom.lesion_rate > 0 and has_rare_lesion(config.phantom.lesion_rate, seed, index)
    if rare:
        _add_rare_lesion(config, rng_for(config, seed, index, _STREAM_LESION), coords, medium, labels, tissue)
    p = config.phantom
    if p.smoothing is not None or p.contrast_scale is not None:  # one stream: smoothing drawn first, as before
        draw = rng_for(config, seed, index, _STREAM_SMOOTHING)
        sigma = 0.0 if p.smoothing is None else draw.uniform(*p.smoothing)
        factor = 1.0 if p.contrast_scale is None else draw.uniform(*p.contrast_scale)
        medium = {k: BACKGROUND[k] + factor * smooth(v - BACKGROUND[k], sigma) for k, v in medium.items()}
    medium = {k: v.astype(np.float32) for k, v in medium.items()}
    return Phantom(medium=medium, lesion_mask=labels, rare_lesion=bool(rare))


# Largest deviation from water (m/s) each acoustic family can draw at contrast 1.
_MAX_SPEED_DEVIATION = {"breast": 100.0, "brain": 1550.0, "grf": 120.0, "ellipses": 100.0}


def max_sound_speed(config: DataConfig) -> float:
    """An upper bound (m/s) on the sound speed any sample of ``config`` can hold; sets a common time step."""
    config = effective(config)
    p = config.phantom
    bound = WATER_SOUND_SPEED + max(p.contrast, 0.0) * _MAX_SPEED_DEVIATION[p.kind]
    # Rare lesions count whatever the rate, so a rare-lesion test set shares its training set's time step.
    return bound * (1.0 + max(p.lesion_contrast, 0.0))


def is_optical(config: DataConfig) -> bool:
    """Whether the config draws refractive-index (optical) media."""
    return config.phantom.kind in OPTICAL_PHANTOMS


def initial_pressure(config: DataConfig, seed: int, index: int, *, vessels: bool = False) -> np.ndarray:
    """A random initial pressure ``p0`` (Pa, float32, grid shape): smooth Gaussian blobs.

    ``acoustic.n_sources`` blobs of radius ``acoustic.source_radius`` cells and amplitude in
    [0.5, 1] Pa, inside the body radius. ``vessels=True`` adds a few smooth line segments
    (photoacoustic absorbers such as blood vessels).
    """
    config = effective(config)
    a = config.acoustic
    rng = rng_for(config, seed, index, _STREAM_SOURCE)
    coords = coordinates(tuple(config.shape), float(config.spacing))
    body = body_radius(config)
    ndim = coords.shape[0]
    p0 = np.zeros(config.shape)
    for _ in range(rng.integers(a.n_sources[0], a.n_sources[1] + 1)):
        width = rng.uniform(*a.source_radius) * config.spacing
        center = _random_point_in_ball(rng, ndim, max(body - 2 * width, 0.0))
        r2 = np.sum((coords - center.reshape((-1,) + (1,) * ndim)) ** 2, 0)
        p0 += rng.uniform(0.5, 1.0) * np.exp(-r2 / (2 * width**2))
    if vessels:
        for _ in range(rng.integers(1, 4)):
            start = _random_point_in_ball(rng, ndim, 0.8 * body)
            end = _random_point_in_ball(rng, ndim, 0.8 * body)
            width = rng.uniform(0.7, 1.5) * config.spacing
            seg = end - start
            d = coords - start.reshape((-1,) + (1,) * ndim)
            t = np.clip(np.tensordot(seg, d, axes=1) / max(float(seg @ seg), 1e-30), 0.0, 1.0)
            dist2 = np.sum((d - t[None] * seg.reshape((-1,) + (1,) * ndim)) ** 2, 0)
            p0 += rng.uniform(0.5, 1.0) * np.exp(-dist2 / (2 * width**2))
    return p0.astype(np.float32)
