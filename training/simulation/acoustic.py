"""One acoustic simulation from a TOML config (``pdesurrogate simulate acoustic CONFIG.toml --out DIR``).

Acoustic configs describe a grid, a medium (a phantom, a homogeneous medium or arrays from an
``.npz`` file), a ring transducer array whose elements record the pressure, a source (one emitting
element of the ring, or a Gaussian initial pressure) and the simulation settings. The output
directory receives ``result.npz`` (time, traces, final pressure, sensor positions, medium),
``config.toml`` (the complete config actually used, defaults filled in) and ``simulation.png``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from pdesurrogate import io
from pdesurrogate.config import dump_toml, parse, spec, to_dict
from solvers import Grid, acoustic, signals
from solvers.acoustic.stepper import check_scheme
from training.data.config import AcousticConfig, DataConfig, PhantomConfig
from training.data.phantoms import phantom


@dataclasses.dataclass(frozen=True)
class GridConfig:
    shape: tuple[int, ...] = dataclasses.field(default=(160, 160), metadata=spec(min=8, max=8192))
    spacing: float = dataclasses.field(default=2e-4, metadata=spec(min=1e-9, max=1.0, unit="m"))


@dataclasses.dataclass(frozen=True)
class MediumConfig:
    phantom: str = dataclasses.field(default="breast", metadata=spec(
        choices=("breast", "brain", "grf", "ellipses", "homogeneous", "file")))
    seed: int = dataclasses.field(default=0, metadata=spec(min=0))
    sound_speed: float = dataclasses.field(default=1500.0, metadata=spec(min=1.0, max=1e4, unit="m/s"))
    density: float = dataclasses.field(default=1000.0, metadata=spec(min=1e-3, max=1e5, unit="kg/m^3"))
    alpha_coeff: float = dataclasses.field(default=0.0, metadata=spec(min=0.0, unit="dB/(MHz^y cm)"))
    alpha_power: float = dataclasses.field(default=1.5, metadata=spec(min=0.0, max=3.0))
    path: str | None = None


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    n_elements: int = dataclasses.field(default=64, metadata=spec(min=1, max=4096))
    radius: float | None = dataclasses.field(default=None, metadata=spec(min=0.0, unit="m"))
    center: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    kind: str = dataclasses.field(default="element", metadata=spec(choices=("element", "p0")))
    element: int = dataclasses.field(default=0, metadata=spec(min=0))
    signal: str = dataclasses.field(default="tone_burst", metadata=spec(choices=("tone_burst", "gaussian_pulse")))
    frequency: float = dataclasses.field(default=1e6, metadata=spec(min=1.0, unit="Hz"))
    cycles: float = dataclasses.field(default=3.0, metadata=spec(min=0.5, max=100.0))
    amplitude: float = dataclasses.field(default=1.0, metadata=spec(unit="Pa"))
    position: tuple[float, ...] | None = None
    width: float = dataclasses.field(default=5e-4, metadata=spec(min=0.0, unit="m"))


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    scheme: str = dataclasses.field(default="pstd", metadata=spec(choices=("pstd", "fd")))
    duration: float | None = dataclasses.field(default=None, metadata=spec(min=0.0, unit="s"))
    pml_size: int = dataclasses.field(default=20, metadata=spec(min=0, max=256))
    cfl: float = dataclasses.field(default=0.3, metadata=spec(min=0.01, max=1.0))
    fd_order: int = dataclasses.field(default=4, metadata=spec(choices=(2, 4, 6, 8)))
    fd_coefficients: str = dataclasses.field(default="taylor", metadata=spec(choices=("taylor", "dispersion")))

    def __post_init__(self) -> None:
        check_scheme(self.scheme, self.fd_order, self.fd_coefficients, "config.simulation.")


@dataclasses.dataclass(frozen=True)
class AcousticSimulation:
    grid: GridConfig = GridConfig()
    medium: MediumConfig = MediumConfig()
    array: ArrayConfig = ArrayConfig()
    source: SourceConfig = SourceConfig()
    simulation: SimulationConfig = SimulationConfig()


def parse_acoustic(config: dict[str, Any]) -> AcousticSimulation:
    """Validate an acoustic simulation config (a TOML dict)."""
    return parse(AcousticSimulation, config, "config")


def _medium_arrays(cfg: AcousticSimulation, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Sound speed (m/s) and density (kg/m^3) arrays of ``shape`` for the configured medium."""
    m = cfg.medium
    if m.phantom == "homogeneous":
        return np.full(shape, m.sound_speed, np.float32), np.full(shape, m.density, np.float32)
    if m.phantom == "file":
        if not m.path:
            raise ValueError("config.medium.path: required when phantom = 'file' (an .npz with sound_speed, density)")
        with np.load(m.path) as f:
            return np.asarray(f["sound_speed"], np.float32), np.asarray(f["density"], np.float32)
    data = DataConfig(scenario="usct", shape=shape, spacing=cfg.grid.spacing, seed=m.seed,
                      phantom=PhantomConfig(kind=m.phantom),
                      acoustic=AcousticConfig(pml_size=cfg.simulation.pml_size))
    medium = phantom(data, m.seed, 0).medium
    return medium["sound_speed"], medium["density"]


def run_acoustic(cfg: AcousticSimulation) -> dict[str, np.ndarray]:
    """Run the configured acoustic simulation; returns the arrays written to ``result.npz``."""
    grid = Grid(cfg.grid.shape, cfg.grid.spacing)
    if grid.ndim != 2:
        raise ValueError(f"config.grid.shape: the ring-array simulation is 2D, got {cfg.grid.shape}")
    c, rho = _medium_arrays(cfg, grid.shape)
    if c.shape != grid.shape:
        raise ValueError(f"config.medium.path: arrays of shape {c.shape} do not match grid shape {grid.shape}")
    medium = acoustic.Medium(sound_speed=c, density=rho, alpha_coeff=cfg.medium.alpha_coeff,
                             alpha_power=cfg.medium.alpha_power)
    sim = cfg.simulation
    half = min(grid.extent) / 2
    center = np.asarray(cfg.array.center if cfg.array.center is not None else [e / 2 for e in grid.extent])
    radius = cfg.array.radius if cfg.array.radius is not None else half - (sim.pml_size + 4) * grid.spacing
    if radius <= 0:
        raise ValueError(f"config.array.radius: must be > 0 m and leave room for the PML, got {radius:g}")
    ring = acoustic.ring_array(center, radius, cfg.array.n_elements)
    duration = sim.duration if sim.duration is not None else 2.2 * radius / float(c.min())
    dt, nt = acoustic.time_axis(grid, medium, duration, cfl=sim.cfl, scheme=sim.scheme, fd_order=sim.fd_order,
                                fd_coefficients=sim.fd_coefficients)
    src = cfg.source
    kwargs: dict[str, Any] = {}
    if src.kind == "element":
        if src.element >= cfg.array.n_elements:
            raise ValueError(f"config.source.element: must be in [0, {cfg.array.n_elements - 1}], got {src.element}")
        t = jnp.arange(nt) * dt
        wave = signals.tone_burst(t, src.frequency, src.cycles) if src.signal == "tone_burst" \
            else signals.gaussian_pulse(t, src.frequency)
        kwargs["sources"] = acoustic.PointSource(ring[src.element : src.element + 1], src.amplitude * wave[None, :])
    else:
        pos = np.asarray(src.position if src.position is not None else center)
        r2 = np.sum((grid.coordinates() - pos.reshape(-1, 1, 1)) ** 2, axis=0)
        kwargs["p0"] = jnp.asarray(src.amplitude * np.exp(-r2 / src.width**2), jnp.float32)
    res = acoustic.simulate(grid, medium, duration=duration, sensors=ring, scheme=sim.scheme,
                            pml_size=sim.pml_size, cfl=sim.cfl, fd_order=sim.fd_order,
                            fd_coefficients=sim.fd_coefficients, **kwargs)
    return {"time": np.asarray(res.time), "traces": np.asarray(res.traces), "pressure": np.asarray(res.pressure),
            "sensor_positions": ring, "sound_speed": c, "density": rho, "spacing": np.asarray(grid.spacing)}


def plot_acoustic(result: dict[str, np.ndarray], title: str = "") -> Any:
    """Figure: sound speed with the array, final pressure, and the traces of every element."""
    h = float(result["spacing"]) * 1e3
    shape = result["sound_speed"].shape
    ext = [0, (shape[1] - 1) * h, (shape[0] - 1) * h, 0]
    fig, ax = io.subplots(1, 3, figsize=(15, 4.6))
    im = ax[0].imshow(result["sound_speed"], extent=ext, cmap="viridis")
    ring = result["sensor_positions"] * 1e3
    ax[0].plot(ring[:, 1], ring[:, 0], "w.", ms=3)
    ax[0].set(title="sound speed [m/s] and ring array", xlabel="y [mm]", ylabel="x [mm]")
    fig.colorbar(im, ax=ax[0], shrink=0.85)
    p = result["pressure"]
    lim = float(np.max(np.abs(p))) or 1.0
    im = ax[1].imshow(p, extent=ext, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax[1].set(title=f"pressure at t = {result['time'][-1] * 1e6:.2f} µs [Pa]", xlabel="y [mm]")
    fig.colorbar(im, ax=ax[1], shrink=0.85)
    tr = result["traces"]
    lim = float(np.max(np.abs(tr))) or 1.0
    im = ax[2].imshow(tr, aspect="auto", cmap="RdBu_r", vmin=-lim / 10, vmax=lim / 10,
                      extent=[-0.5, tr.shape[1] - 0.5, result["time"][-1] * 1e6, 0])
    ax[2].set(title="traces (clipped at 10% of max)", xlabel="element", ylabel="time [µs]")
    fig.colorbar(im, ax=ax[2], shrink=0.85)
    if title:
        fig.suptitle(title)
    return fig


def simulate_acoustic(config: dict[str, Any], out: Path) -> dict[str, np.ndarray]:
    """Validate ``config``, run it and write ``result.npz``, ``config.toml`` and ``simulation.png``."""
    cfg = parse_acoustic(config)
    start = time.perf_counter()
    result = run_acoustic(cfg)
    elapsed = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    io.save_npz(out / "result.npz", **result)
    io.write_text(out / "config.toml", dump_toml(to_dict(cfg)))
    nt, n_sensors = result["traces"].shape
    io.save_figure(plot_acoustic(result, f"{cfg.medium.phantom} medium, {cfg.simulation.scheme}, "
                                         f"{nt} steps in {elapsed:.1f} s"), out / "simulation.png")
    print(f"acoustic {cfg.simulation.scheme} {cfg.grid.shape}: {nt} time steps, {n_sensors} sensors, "
          f"{elapsed:.1f} s -> {out}/result.npz, simulation.png, config.toml")
    return result

