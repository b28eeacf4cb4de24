"""One Maxwell FDTD run from a TOML config (``pdesurrogate simulate maxwell CONFIG.toml --out DIR``).

The config has four sections: ``[grid]`` (shape, spacing), ``[medium]`` (a homogeneous
background plus an optional cylinder or list of circles, or a permittivity array from a ``.npy``
file), ``[source]`` (plane wave, Gaussian beam or point dipole) and ``[simulation]``. The output
directory receives ``fields.npz`` (complex phasors, frequencies, permittivity), ``field.png``
(|field| and the permittivity side by side) and ``config.toml`` (the config actually used, with
defaults filled in).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogate import io
from pdesurrogate.config import dump_toml, parse, spec, to_dict
from solvers import Grid, maxwell

field = dataclasses.field


@dataclasses.dataclass(frozen=True)
class GridConfig:
    shape: tuple[int, ...] = field(default=(160, 160), metadata=spec(min=4, max=8192))
    spacing: float = field(default=2.5e-8, metadata=spec(min=1e-12, max=1.0, unit="m"))


@dataclasses.dataclass(frozen=True)
class MediumConfig:
    kind: str = field(default="cylinder", metadata=spec(choices=("homogeneous", "cylinder", "circles", "file")))
    background: float = field(default=1.0, metadata=spec(min=1e-6, doc="background relative permittivity"))
    conductivity: float = field(default=0.0, metadata=spec(min=0.0, unit="S/m"))
    index: float = field(default=1.5, metadata=spec(min=1e-3, doc="cylinder refractive index"))
    radius: float = field(default=5e-7, metadata=spec(min=0.0, unit="m"))
    center: tuple[float, ...] | None = None
    circle_centers: tuple[tuple[float, ...], ...] = ()
    circle_radii: tuple[float, ...] = ()
    circle_indices: tuple[float, ...] = ()
    path: str | None = None


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    kind: str = field(default="plane_wave", metadata=spec(choices=("plane_wave", "gaussian_beam", "dipole")))
    wavelength: float = field(default=1e-6, metadata=spec(min=1e-12, unit="m"))
    angle: float = field(default=0.0, metadata=spec(unit="rad"))
    amplitude: float = 1.0
    waveform: str = field(default="cw", metadata=spec(choices=("cw", "pulse")))
    ramp_cycles: float = field(default=5.0, metadata=spec(min=0.1))
    bandwidth: float = field(default=0.8, metadata=spec(min=1e-3))
    waist: float = field(default=1e-6, metadata=spec(min=0.0, unit="m"))
    position: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    polarization: str = field(default="TM", metadata=spec(choices=("TM", "TE")))
    pml_size: int = field(default=20, metadata=spec(min=0, max=256))
    duration: float | None = field(default=None, metadata=spec(min=0.0, unit="s"))
    frequencies: tuple[float, ...] | None = None
    tolerance: float = field(default=1e-3, metadata=spec(min=1e-12, max=1.0))
    courant: float = field(default=0.99, metadata=spec(min=1e-3, max=1.0))
    subpixel: bool = False
    tfsf_margin: int = field(default=4, metadata=spec(min=1))


@dataclasses.dataclass(frozen=True)
class MaxwellSimulation:
    grid: GridConfig = GridConfig()
    medium: MediumConfig = MediumConfig()
    source: SourceConfig = SourceConfig()
    simulation: SimulationConfig = SimulationConfig()


def parse_maxwell(config: dict[str, Any]) -> MaxwellSimulation:
    """Validate a Maxwell simulation config (a TOML dict); errors name ``config.<section>.<key>``."""
    return parse(MaxwellSimulation, config, "config")


def _permittivity_fn(cfg: MaxwellSimulation, grid: Grid) -> Callable[[np.ndarray], np.ndarray]:
    """``coords (ndim, ...) -> relative permittivity`` for the analytic media (cylinder / circles)."""
    m = cfg.medium
    if m.kind == "cylinder":
        centers = [m.center if m.center is not None else tuple(np.array(grid.extent[:2]) / 2)]
        radii, eps = [m.radius], [m.index**2]
    else:
        if not (len(m.circle_centers) == len(m.circle_radii) == len(m.circle_indices)):
            raise ValueError("config.medium.circle_centers, circle_radii and circle_indices must have the same length, got "
                             f"{len(m.circle_centers)}, {len(m.circle_radii)}, {len(m.circle_indices)}")
        centers, radii, eps = m.circle_centers, m.circle_radii, [n**2 for n in m.circle_indices]
    for c in centers:
        if len(c) != 2:
            raise ValueError(f"config.medium: centres must be (x, y) in m (cylinders along z), got {c}")

    def fn(x):
        out = np.full(x.shape[1:], m.background)
        for c, r, e in zip(centers, radii, eps):
            out = np.where((x[0] - c[0]) ** 2 + (x[1] - c[1]) ** 2 < r**2, e, out)
        return out

    return fn


def build_medium(cfg: MaxwellSimulation, grid: Grid) -> maxwell.Medium:
    """The :class:`solvers.maxwell.Medium` of the config (sub-pixel averaged when asked and possible)."""
    m = cfg.medium
    if m.kind == "file":
        if m.path is None:
            raise ValueError("config.medium.path: required for kind = 'file' (a .npy relative permittivity array)")
        path = Path(m.path)
        if not path.is_file():
            raise ValueError(f"config.medium.path: file not found: {path}")
        eps = np.load(path)
        if eps.shape != grid.shape:
            raise ValueError(f"config.medium.path: array shape {eps.shape} does not match grid.shape {grid.shape}")
        if cfg.simulation.subpixel:
            raise ValueError("config.simulation.subpixel: needs an analytic medium (cylinder or circles), not a file")
        return maxwell.Medium(eps.astype(np.float32), m.conductivity)
    if m.kind == "homogeneous":
        return maxwell.Medium(np.full(grid.shape, m.background, np.float32), m.conductivity)
    fn = _permittivity_fn(cfg, grid)
    if cfg.simulation.subpixel:
        med = maxwell.subpixel.smoothed_medium(grid, fn, m.conductivity)
        return maxwell.Medium(med.permittivity.astype(np.float32), m.conductivity,
                              med.component_permittivity.astype(np.float32))
    return maxwell.Medium(fn(grid.coordinates()).astype(np.float32), m.conductivity)


def build_source(cfg: MaxwellSimulation, grid: Grid) -> Any:
    """The source object of the config."""
    s = cfg.source
    common = dict(amplitude=s.amplitude, waveform=s.waveform, ramp_cycles=s.ramp_cycles, bandwidth=s.bandwidth)
    centre = tuple(np.array(grid.extent) / 2)
    if s.kind == "plane_wave":
        return maxwell.PlaneWave(s.wavelength, s.angle, background_permittivity=cfg.medium.background, **common)
    if s.kind == "gaussian_beam":
        return maxwell.GaussianBeam(s.wavelength, s.waist, s.position if s.position is not None else centre,
                                    s.angle, background_permittivity=cfg.medium.background, **common)
    return maxwell.PointDipole(s.wavelength, s.position if s.position is not None else centre, **common)


def run_maxwell(cfg: MaxwellSimulation) -> dict[str, np.ndarray]:
    """Run the simulation; returns the arrays written to ``fields.npz``."""
    grid = Grid(cfg.grid.shape, cfg.grid.spacing)
    sim = cfg.simulation
    res = maxwell.simulate(
        grid, build_medium(cfg, grid), build_source(cfg, grid),
        frequencies=list(sim.frequencies) if sim.frequencies is not None else None, duration=sim.duration,
        pml_size=sim.pml_size, polarization=sim.polarization, subpixel=sim.subpixel, courant=sim.courant,
        tolerance=sim.tolerance, tfsf_margin=sim.tfsf_margin)
    return {"field": np.asarray(res.field), "frequencies": np.asarray(res.frequencies),
            "permittivity": np.asarray(res.permittivity), "spacing": np.asarray(grid.spacing),
            "dt": np.asarray(res.dt), "steps": np.asarray(res.steps), "converged": np.asarray(res.converged)}


def plot_maxwell(result: dict[str, np.ndarray], title: str) -> Any:
    """|field| at the first frequency and the permittivity, side by side (3D: the middle z slice)."""
    f = result["field"][0]
    eps = result["permittivity"]
    if f.ndim == 4:  # 3D: (3, nx, ny, nz) -> |E| on the middle z plane
        f = np.linalg.norm(np.abs(f), axis=0)
    if f.ndim == 3:
        f, eps = f[..., f.shape[-1] // 2], eps[..., eps.shape[-1] // 2]
    extent_um = [0, eps.shape[0] * float(result["spacing"]) * 1e6, 0, eps.shape[1] * float(result["spacing"]) * 1e6]
    fig, ax = io.subplots(1, 2, figsize=(10, 4.2))
    for a, img, label, cmap in ((ax[0], np.abs(f), "|field| (unit incident amplitude)", "magma"),
                                (ax[1], eps, "relative permittivity", "viridis")):
        im = a.imshow(img.T, origin="lower", extent=extent_um, cmap=cmap)
        a.set_xlabel("x (µm)")
        a.set_ylabel("y (µm)")
        fig.colorbar(im, ax=a, label=label)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def simulate_maxwell(config: dict[str, Any], out: Path) -> None:
    """Run the simulation of a parsed TOML dict and write ``fields.npz``, ``field.png``, ``config.toml`` to ``out``."""
    cfg = parse_maxwell(config)
    start = time.perf_counter()
    result = run_maxwell(cfg)
    elapsed = time.perf_counter() - start
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    io.save_npz(out / "fields.npz", **result)
    io.write_text(out / "config.toml", dump_toml(to_dict(cfg)))
    name = {"TM": "Ez", "TE": "eta0 Hz"}[cfg.simulation.polarization] if len(cfg.grid.shape) == 2 else "|E|"
    io.save_figure(plot_maxwell(result, f"{cfg.source.kind}, {name}, {int(result['steps'])} steps in {elapsed:.1f} s"),
                   out / "field.png")
    print(f"maxwell {cfg.grid.shape}: {int(result['steps'])} steps, converged={bool(result['converged'])}, "
          f"{elapsed:.1f} s -> {out}/fields.npz, field.png, config.toml")
