"""The ``[data]`` section of an experiment TOML: what to simulate, how many samples, where.

Every dataset is a pure function of its :class:`DataConfig`: sample ``i`` is built from
``(config, config.seed, i)`` only, so any sample can be regenerated and compared bit for bit.

Example::

    [data]
    scenario = "acoustic_stepper"
    num_samples = 64
    shape = [32, 32]
    spacing = 1e-4

    [data.phantom]
    kind = "breast"

    [data.acoustic]
    save_every = 4
    n_frames = 8
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import field
from typing import Any

from pdesurrogate.config import parse, spec, to_dict
from solvers.acoustic.stepper import check_scheme

ACOUSTIC_PHANTOMS = ("breast", "brain", "grf", "ellipses")
OPTICAL_PHANTOMS = ("cell", "optical_ellipses", "optical_grf")
SCENARIOS = ("phantom", "acoustic_stepper", "photoacoustic", "usct", "optics", "maxwell_stepper")
EXPERIMENT_SECTIONS = ("data", "model", "train")  # the tables of an experiment TOML
FREQUENCY_SCENARIOS = ("usct", "optics")  # scenarios whose source has a frequency (ood_frequency)
SPLITS = ("train", "rare_lesion", "ood_skull", "ood_frequency", "ood_contrast")


# Trajectory settings shared by the acoustic ([data.acoustic]) and Maxwell ([data.optics]) steppers.
def _save_every() -> Any:
    return field(default=4, metadata=spec(min=1, doc="solver steps per saved frame (macro step)"))


def _n_frames() -> Any:
    return field(default=8, metadata=spec(min=1, doc="saved frames after the initial one"))


def _source_radius() -> Any:
    return field(default=(1.0, 3.0), metadata=spec(
        min=0.5, max=64.0, doc="initial-field (p0 / Ez) Gaussian blob radius range in cells"))


def _n_sources() -> Any:
    return field(default=(1, 3), metadata=spec(min=1, max=64, doc="initial-field blobs per sample"))


@dataclasses.dataclass(frozen=True)
class PhantomConfig:
    """Which media to draw and their parameters (see :mod:`training.data.phantoms`)."""

    kind: str = field(default="breast", metadata=spec(
        choices=ACOUSTIC_PHANTOMS + OPTICAL_PHANTOMS, doc="phantom family"))
    contrast: float = field(default=1.0, metadata=spec(
        min=0.0, max=10.0, doc="scale of every deviation from the background medium"))
    correlation_length: float = field(default=2e-3, metadata=spec(
        min=0.0, unit="m", doc="Gaussian random field correlation length (0: one cell)"))
    n_inclusions: tuple[int, int] = field(default=(1, 4), metadata=spec(
        min=0, max=64, doc="inclusive range of ellipses / cysts+tumours / organelles per sample"))
    skull_thickness: float = field(default=0.08, metadata=spec(
        min=0.0, max=0.5, doc="brain phantom: skull thickness as a fraction of the head radius"))
    n_cells: tuple[int, int] = field(default=(1, 1), metadata=spec(
        min=1, max=32, doc="cell phantom: inclusive range of cells (>1: organoid)"))
    lesion_rate: float = field(default=0.0, metadata=spec(
        min=0.0, max=1.0, doc="fraction of samples with one rare small high-contrast lesion"))
    lesion_cells: tuple[int, int] = field(default=(2, 4), metadata=spec(
        min=1, max=32, doc="rare-lesion diameter range in cells"))
    lesion_contrast: float = field(default=0.08, metadata=spec(
        min=-0.5, max=1.0, doc="rare-lesion relative contrast (fraction of the local value)"))
    # Wider families (issue 18): None (the default) leaves every existing dataset and fingerprint as it was.
    cell_diameter: tuple[float, float] | None = field(default=None, metadata=spec(
        min=0.02, max=0.5, doc="cell phantom: cell diameter range as a fraction of the field width (up to half "
        "the field, as far as the object's room inside the absorbing layer / detector lines allows; default: "
        "from the body radius and n_cells)"))
    texture: float | None = field(default=None, metadata=spec(
        min=0.0, max=0.008, doc="cell phantom: std of a Gaussian-random-field texture of the cytoplasm index "
        "(clipped at 2 std)"))
    texture_cells: float | None = field(default=None, metadata=spec(
        min=0.5, max=64.0, unit="cells", doc="correlation length of the cytoplasm texture (default 2 cells)"))
    smoothing: tuple[float, float] | None = field(default=None, metadata=spec(
        min=0.0, max=32.0, unit="cells", doc="Gaussian smoothing (std range, drawn per sample) of every "
        "deviation from the background: inversion-iterate-like media (with contrast < 1: lower contrast too)"))
    contrast_scale: tuple[float, float] | None = field(default=None, metadata=spec(
        min=0.0, max=1.0, doc="range of a factor, drawn per sample, on every deviation from the background "
        "(after smoothing): low-contrast media like the early iterates of an inversion from water"))


@dataclasses.dataclass(frozen=True)
class AcousticConfig:
    """Acoustic simulation settings for the ``acoustic_stepper``, ``photoacoustic`` and ``usct`` scenarios."""

    scheme: str = field(default="fd", metadata=spec(choices=("fd", "pstd")))
    fd_order: int = field(default=4, metadata=spec(choices=(2, 4, 6, 8), doc="fd: spatial order"))
    fd_coefficients: str = field(default="taylor", metadata=spec(
        choices=("taylor", "dispersion"), doc="fd: Taylor stencil, or one fitted to cancel the leapfrog's "
        "temporal dispersion at the run's Courant number (solvers.acoustic.operators.fd_coefficients)"))
    pml_size: int = field(default=8, metadata=spec(min=0, max=64, doc="absorbing layer in cells"))
    cfl: float = field(default=0.3, metadata=spec(min=0.01, max=1.0, doc="CFL number at the fastest speed"))
    dt: float = field(default=0.0, metadata=spec(
        min=0.0, max=1.0, unit="s", doc="explicit time step (0: from cfl at the fastest possible medium); "
        "pin it to the training set's value for shifted test sets"))
    save_every: int = _save_every()
    n_frames: int = _n_frames()
    save_velocity: bool = field(default=True, metadata=spec(doc="store the particle velocity frames too"))
    frequency: float = field(default=1.0e6, metadata=spec(min=1.0, unit="Hz", doc="source centre frequency"))
    signal: str = field(default="tone_burst", metadata=spec(choices=("tone_burst", "gaussian_pulse")))
    cycles: float = field(default=3.0, metadata=spec(min=0.5, max=100.0, doc="tone-burst cycles"))
    duration: float = field(default=20e-6, metadata=spec(min=0.0, unit="s", doc="usct/photoacoustic trace length"))
    n_elements: int = field(default=32, metadata=spec(min=2, max=4096, doc="ring-array elements"))
    n_shots: int = field(default=4, metadata=spec(min=1, max=4096, doc="emitting elements per sample (evenly spaced)"))
    ring_margin: int = field(default=2, metadata=spec(min=0, max=256, doc="ring distance from the PML in cells"))
    source_radius: tuple[float, float] = _source_radius()
    n_sources: tuple[int, int] = _n_sources()


@dataclasses.dataclass(frozen=True)
class OpticsConfig:
    """Optical (Maxwell) settings for the ``optics`` and ``maxwell_stepper`` scenarios.

    ``maxwell_stepper`` reads ``pml_size``, ``courant`` and the trajectory settings (``save_every``,
    ``n_frames``, ``source_radius``, ``n_sources``); ``optics`` reads the rest and ``pml_size``.
    """

    wavelength: float = field(default=5.0e-7, metadata=spec(min=1e-9, unit="m", doc="vacuum wavelength"))
    n_angles: int = field(default=4, metadata=spec(min=1, max=360, doc="plane-wave angles evenly over 360 deg"))
    pml_size: int = field(default=8, metadata=spec(min=0, max=64))
    detector_margin: int = field(default=1, metadata=spec(
        min=0, max=256, doc="cells between the total-field box edge and the detector lines"))
    settle_periods: float = field(default=10.0, metadata=spec(
        min=1.0, max=10000.0, doc="periods simulated after the source ramp and two grid-diagonal crossings"))
    courant: float = field(default=0.99, metadata=spec(
        min=0.01, max=1.0, doc="maxwell_stepper: time step as a fraction of the Yee stability limit"))
    save_every: int = _save_every()
    n_frames: int = _n_frames()
    source_radius: tuple[float, float] = _source_radius()
    n_sources: tuple[int, int] = _n_sources()


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``[data]`` section: scenario, size, grid and generation settings."""

    scenario: str = field(default="phantom", metadata=spec(choices=SCENARIOS))
    num_samples: int = field(default=64, metadata=spec(min=1, max=10_000_000))
    seed: int = field(default=0, metadata=spec(min=0, max=2**31 - 1))
    shape: tuple[int, ...] = field(default=(32, 32), metadata=spec(
        min=8, max=4096, doc="grid cells per axis (2D or 3D)"))
    spacing: float = field(default=1e-4, metadata=spec(min=1e-12, max=1.0, unit="m"))
    batch_size: int = field(default=8, metadata=spec(min=1, max=65536, doc="samples simulated together (vmap)"))
    split: str = field(default="train", metadata=spec(choices=SPLITS, doc="train, rare-lesion or shifted test set"))
    ood_factor: float = field(default=2.0, metadata=spec(min=0.1, max=10.0, doc="shift factor of the ood_* splits"))
    # zstd 1 stores the float fields as small as 3 (1.075 vs 1.074 MB per acoustic_stepper_128 sample)
    # and writes them twice as fast
    compression_level: int = field(default=1, metadata=spec(min=0, max=22, doc="zstd level (0: none)"))
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    acoustic: AcousticConfig = field(default_factory=AcousticConfig)
    optics: OpticsConfig = field(default_factory=OpticsConfig)

    def __post_init__(self) -> None:
        if len(self.shape) not in (2, 3):
            raise ValueError(f"data.shape: must have 2 or 3 entries, got {list(self.shape)}")
        optical = self.phantom.kind in OPTICAL_PHANTOMS
        if self.scenario in ("optics", "maxwell_stepper") and not optical:
            raise ValueError(f"data.phantom.kind: the {self.scenario} scenario needs one of "
                             f"{list(OPTICAL_PHANTOMS)}, got {self.phantom.kind!r}")
        if self.scenario in ("acoustic_stepper", "photoacoustic", "usct") and optical:
            raise ValueError(f"data.phantom.kind: the {self.scenario} scenario needs one of "
                             f"{list(ACOUSTIC_PHANTOMS)}, got {self.phantom.kind!r}")
        for name in ("n_inclusions", "n_cells", "lesion_cells", "cell_diameter", "smoothing", "contrast_scale"):
            if getattr(self.phantom, name) is None:
                continue
            lo, hi = getattr(self.phantom, name)
            if lo > hi:
                raise ValueError(f"data.phantom.{name}: must be [low, high] with low <= high, got {[lo, hi]}")
        for section in ("acoustic", "optics"):
            for name in ("source_radius", "n_sources"):
                lo, hi = getattr(getattr(self, section), name)
                if lo > hi:
                    raise ValueError(f"data.{section}.{name}: low > high, got {[lo, hi]}")
        if self.scenario == "usct" and self.acoustic.n_shots > self.acoustic.n_elements:
            raise ValueError(f"data.acoustic.n_shots: must be <= n_elements ({self.acoustic.n_elements}), "
                             f"got {self.acoustic.n_shots}")
        if self.scenario in ("usct", "photoacoustic", "optics", "maxwell_stepper") and len(self.shape) != 2:
            raise ValueError(f"data.shape: the {self.scenario} scenario is 2D only, got {list(self.shape)}")
        check_scheme(self.acoustic.scheme, self.acoustic.fd_order, self.acoustic.fd_coefficients, "data.acoustic.")
        if self.scenario in ("photoacoustic", "usct") and self.acoustic.duration <= 0:
            raise ValueError(f"data.acoustic.duration: must be > 0 s for {self.scenario}, got {self.acoustic.duration}")
        cell_options = [n for n in ("cell_diameter", "texture", "texture_cells")
                        if getattr(self.phantom, n) is not None]
        if cell_options and self.phantom.kind != "cell":
            raise ValueError(f"data.phantom.{cell_options[0]}: only for the 'cell' phantom, "
                             f"data.phantom.kind is {self.phantom.kind!r}")
        if self.split == "rare_lesion" and self.phantom.lesion_rate <= 0:
            raise ValueError("data.phantom.lesion_rate: the rare_lesion split needs a rate > 0, got 0")
        if self.split == "ood_skull" and self.phantom.kind != "brain":
            raise ValueError(f"data.split: ood_skull shifts the skull of the 'brain' phantom; "
                             f"data.phantom.kind is {self.phantom.kind!r}")
        if self.split == "ood_frequency" and self.scenario not in FREQUENCY_SCENARIOS:
            raise ValueError(f"data.split: ood_frequency needs a scenario with a source frequency "
                             f"{list(FREQUENCY_SCENARIOS)}; data.scenario is {self.scenario!r}")


def parse_data_config(section: dict[str, Any]) -> DataConfig:
    """Validate a ``[data]`` table; errors name the field as ``data.<key>``."""
    return parse(DataConfig, section, "data")


def load_data_config(path: str) -> DataConfig:
    """The ``[data]`` section of an experiment TOML file (which also holds ``[model]`` and ``[train]``)."""
    from pdesurrogate.config import load_toml

    doc = load_toml(path)
    unknown = sorted(set(doc) - set(EXPERIMENT_SECTIONS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown section in {path}; allowed sections are {list(EXPERIMENT_SECTIONS)}")
    if "data" not in doc:
        raise ValueError(f"{path}: missing [data] section")
    return parse_data_config(doc["data"])


def as_config(config: DataConfig | dict[str, Any]) -> DataConfig:
    """Accept a parsed config or a raw ``[data]`` table."""
    return config if isinstance(config, DataConfig) else parse_data_config(config)


def config_dict(config: DataConfig) -> dict[str, Any]:
    """The complete config (defaults filled in) as JSON/TOML-compatible data."""
    return to_dict(config)


def fingerprint(config: DataConfig) -> str:
    """A SHA-256 of the complete config: two configs describe the same dataset iff equal."""
    text = json.dumps(config_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def effective(config: DataConfig) -> DataConfig:
    """The config with its ``split`` applied: the ``ood_*`` splits shift one parameter by ``ood_factor``.

    - ``ood_skull``: ``phantom.skull_thickness * ood_factor`` (thicker skull);
    - ``ood_frequency``: ``acoustic.frequency * ood_factor`` and ``optics.wavelength / ood_factor``;
    - ``ood_contrast``: ``phantom.contrast * ood_factor``;
    - ``rare_lesion`` uses ``phantom.lesion_rate`` as given (it must be > 0); ``train`` is unchanged.
    """
    f = config.ood_factor
    if config.split == "ood_skull":
        return dataclasses.replace(config, phantom=dataclasses.replace(
            config.phantom, skull_thickness=min(config.phantom.skull_thickness * f, 0.9)))
    if config.split == "ood_contrast":
        return dataclasses.replace(config, phantom=dataclasses.replace(
            config.phantom, contrast=config.phantom.contrast * f))
    if config.split == "ood_frequency":
        return dataclasses.replace(
            config, acoustic=dataclasses.replace(config.acoustic, frequency=config.acoustic.frequency * f),
            optics=dataclasses.replace(config.optics, wavelength=config.optics.wavelength / f))
    return config
