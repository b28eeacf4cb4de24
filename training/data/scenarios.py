"""What one sample holds, per scenario: host-side inputs (phantoms, sources) and a device-side
simulation that is a pure, vmappable JAX function of those inputs.

Scenarios (``data.scenario``):

- ``phantom``: the medium and its lesion mask only (no simulation).
- ``acoustic_stepper``: a time-stepping trajectory for learned steppers: medium, ``p0`` made of
  Gaussian blobs, the time step ``dt``, and the pressure (and velocity) every ``save_every``
  solver steps: ``pressure (n_frames + 1, *shape)``, frame ``k`` at time ``k * save_every * dt``.
- ``photoacoustic``: the same trajectory from a vessel/blob absorber ``p0``, plus the ring-array
  traces ``traces (nt, n_elements)`` of the whole ``duration``.
- ``usct``: ring-array transmission shots: for each of ``n_shots`` evenly spaced emitting elements
  (tone burst or Gaussian pulse at ``acoustic.frequency``), the traces at every element,
  ``traces (n_shots, nt, n_elements)``.
- ``optics``: ``n_angles`` plane-wave illuminations (angles evenly over 360 degrees): the phasor
  ``field (n_angles, *shape)`` (complex, Ez in 2D TM) and the detector-line measurements
  ``detector (n_angles, n_detectors)`` on a line across the beam behind the object.
- ``maxwell_stepper``: the 2D TM counterpart of ``acoustic_stepper``: an optical medium
  (``refractive_index`` and ``permittivity = refractive_index**2``, lossless), an initial ``e0``
  (Ez, V/m) made of Gaussian blobs with H = 0, the time step ``dt``, and every ``optics.save_every``
  Yee steps the state of :class:`solvers.maxwell.Stepper`: ``ez (n_frames + 1, *shape)`` and
  ``h (n_frames + 1, 2, *shape)`` = ``eta0 * (Hx, Hy)`` (V/m, on their Yee positions, at the same
  integer times as Ez), frame ``k`` at time ``k * save_every * dt``.

All media of one dataset share one time step (acoustic: from :func:`phantoms.max_sound_speed`;
Maxwell: the Yee limit times ``optics.courant``, which does not depend on the medium), so that
batches vmap over media with an explicit ``dt``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from solvers.maxwell.medium import C0 as SPEED_OF_LIGHT
from training.data import phantoms
from training.data.config import DataConfig, effective
from training.data.storage import FieldSpec


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A scenario bound to one config.

    Attributes:
        config: the data config as given (phantoms and the simulation apply its ``split``).
        fields: every stored field, ``name -> FieldSpec`` (per-sample shape, dtype, unit).
        device_inputs: the input fields the simulation reads.
        simulate: ``fn(inputs: dict[str, jax.Array]) -> dict[str, jax.Array]`` for ONE sample
            (batches come from ``jax.vmap``); ``None`` for scenarios without simulation.
        constants: per-dataset values (time step, geometry) recorded in the manifest.
    """

    config: DataConfig
    fields: dict[str, FieldSpec]
    device_inputs: tuple[str, ...]
    simulate: Callable[[dict[str, Any]], dict[str, Any]] | None
    constants: dict[str, Any]

    def inputs(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Host-side inputs of sample ``index`` (numpy) and its JSON metadata (``rare_lesion``)."""
        cfg = self.config
        ph = phantoms.phantom(cfg, cfg.seed, index)
        out = dict(ph.medium)
        out["lesion_mask"] = ph.lesion_mask
        if "p0" in self.fields:
            out["p0"] = phantoms.initial_pressure(cfg, cfg.seed, index, vessels=cfg.scenario == "photoacoustic")
        if "e0" in self.fields:
            out["e0"] = phantoms.initial_pressure(_optics_blobs(cfg), cfg.seed, index)
        if "permittivity" in self.fields:
            out["permittivity"] = np.square(ph.medium["refractive_index"])
        if "dt" in self.fields:
            out["dt"] = np.asarray(self.constants["dt"], np.float64)
        return out, {"rare_lesion": int(ph.rare_lesion)}


DT_FIELD = FieldSpec((), "float64", "s", "solver time step")


def _optics_blobs(config: DataConfig) -> DataConfig:
    """``config`` with the ``[data.optics]`` blob settings in place of the acoustic ones, so that
    :func:`phantoms.initial_pressure` draws the Maxwell stepper's initial Ez (one blob generator)."""
    o = config.optics
    return dataclasses.replace(config, acoustic=dataclasses.replace(
        config.acoustic, source_radius=o.source_radius, n_sources=o.n_sources))


def _medium_fields(config: DataConfig) -> dict[str, FieldSpec]:
    shape = tuple(config.shape)
    labels = ", ".join(f"{k}={v}" for k, v in phantoms.LESION_LABELS.items())
    lesion = FieldSpec(shape, "uint8", "", f"lesion labels: {labels}")
    if phantoms.is_optical(config):
        return {"refractive_index": FieldSpec(shape, "float32", "1", "refractive index"), "lesion_mask": lesion}
    return {"sound_speed": FieldSpec(shape, "float32", "m/s", "sound speed"),
            "density": FieldSpec(shape, "float32", "kg/m^3", "mass density"), "lesion_mask": lesion}


def ring_radius(config: DataConfig) -> float:
    """Ring-array radius (m): as large as the absorbing layer and ``ring_margin`` allow."""
    half = (min(config.shape) - 1) / 2
    return (half - config.acoustic.pml_size - config.acoustic.ring_margin) * config.spacing


def ring_elements(config: DataConfig) -> np.ndarray:
    """Ring-array element positions (m), ``(n_elements, 2)``: radius :func:`ring_radius` about the grid centre."""
    from solvers import acoustic

    return np.asarray(acoustic.ring_array(grid_center(config), ring_radius(config), config.acoustic.n_elements))


def usct_emitters(config: DataConfig) -> np.ndarray:
    """Indices of the ``n_shots`` emitting elements of a USCT sample, evenly spaced on the ring."""
    a = config.acoustic
    return np.round(np.linspace(0, a.n_elements, a.n_shots, endpoint=False)).astype(int)


def receiver_mask(emitters: np.ndarray, n_elements: int) -> np.ndarray:
    """``(n_shots, n_elements)`` booleans, ``False`` at each shot's emitting element.

    Trace metrics leave the emitter's own trace out: in 2D the field of a point source diverges
    (logarithmically) at the source, so that trace is dominated by a near field that depends on the
    grid and does not converge as it is refined; arrays do not record on a transmitting element either.
    """
    emitters = np.asarray(emitters)
    if emitters.ndim != 1 or np.any((emitters < 0) | (emitters >= n_elements)):
        raise ValueError(f"emitters must be element indices in [0, {n_elements - 1}], got {emitters.tolist()}")
    return np.arange(n_elements)[None, :] != emitters[:, None]


def grid_center(config: DataConfig) -> np.ndarray:
    """The grid centre in metres, ``(ndim,)``."""
    return np.array([(n - 1) / 2 * config.spacing for n in config.shape])


def solver_settings(config: DataConfig) -> dict[str, Any]:
    """The acoustic solver's discretisation of ``config``: ``scheme``, ``fd_order``, ``fd_coefficients``
    (keyword arguments of :func:`solvers.acoustic.simulate`, ``Stepper`` and ``time_axis``)."""
    a = config.acoustic
    return {"scheme": a.scheme, "fd_order": a.fd_order, "fd_coefficients": a.fd_coefficients}


def time_step(config: DataConfig) -> float:
    """The common time step (s): ``acoustic.dt`` if set, else the solver's rule at ``acoustic.cfl`` for
    the fastest possible medium; either way checked for stability at that medium."""
    from solvers import Grid, acoustic

    grid = Grid(config.shape, config.spacing)
    fastest = acoustic.Medium(sound_speed=phantoms.max_sound_speed(config), density=phantoms.WATER_DENSITY)
    try:
        dt, _ = acoustic.time_axis(grid, fastest, max(config.acoustic.duration, config.spacing / 1500.0),
                                   cfl=config.acoustic.cfl, dt=config.acoustic.dt or None,
                                   **solver_settings(config))
    except ValueError as err:
        key = "dt" if config.acoustic.dt else "cfl"
        raise ValueError(f"data.acoustic.{key}: unstable for the fastest medium this config can draw "
                         f"({phantoms.max_sound_speed(config):g} m/s): {err}") from None
    return float(dt)


def trajectory_frames(stepper: Any, state: Any, save_every: int, n_frames: int,
                      frame: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``frame(state)`` now and after every ``save_every`` steps of ``stepper`` (any design.md Stepper).

    Returns ``{name: (n_frames + 1, *frame_shape)}``: entry ``k`` is the state at ``k * save_every`` steps.
    """
    import jax
    import jax.numpy as jnp

    def body(s, _):
        s = stepper.run(s, save_every)
        return s, frame(s)

    _, later = jax.lax.scan(body, state, None, length=n_frames)
    first = frame(state)
    return {k: jnp.concatenate([first[k][None], later[k]]) for k in first}


def _trajectory(config: DataConfig, dt: float) -> Callable:
    """Single-sample function: ``(sound_speed, density, p0) -> pressure/velocity frames``."""
    import jax.numpy as jnp
    from solvers import Grid, acoustic

    a = config.acoustic
    grid = Grid(config.shape, config.spacing)

    def frame(s) -> dict[str, Any]:
        if not a.save_velocity:
            return {"pressure": s.p}
        return {"pressure": s.p, "velocity": jnp.stack(list(s.v)) if isinstance(s.v, (tuple, list)) else s.v}

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        medium = acoustic.Medium(sound_speed=inputs["sound_speed"], density=inputs["density"])
        stepper = acoustic.Stepper(grid, medium, pml_size=a.pml_size, dt=dt, **solver_settings(config))
        return trajectory_frames(stepper, stepper.init(inputs["p0"]), a.save_every, a.n_frames, frame)

    return run


def maxwell_time_step(config: DataConfig) -> float:
    """The Maxwell stepper's time step (s): ``optics.courant`` times the 2D Yee limit (medium-independent)."""
    from solvers import Grid, maxwell

    return float(maxwell.time_step(Grid(config.shape, config.spacing), config.optics.courant))


def _maxwell_trajectory(config: DataConfig) -> Callable:
    """Single-sample function: ``(permittivity, e0) -> ez (T, *shape), h (T, 2, *shape)`` (2D TM)."""
    from solvers import Grid, maxwell

    o = config.optics
    grid = Grid(config.shape, config.spacing)

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        stepper = maxwell.Stepper(grid, maxwell.Medium(permittivity=inputs["permittivity"]), pml_size=o.pml_size,
                                  courant=o.courant)
        return trajectory_frames(stepper, stepper.init(inputs["e0"]), o.save_every, o.n_frames,
                                 lambda s: {"ez": s.e[0], "h": s.h})

    return run


def _ring_traces(config: DataConfig, dt: float) -> tuple[Callable, int]:
    """Single-sample photoacoustic traces at the ring: ``(c, rho, p0) -> traces (nt, n_elements)``."""
    from solvers import Grid, acoustic

    a = config.acoustic
    grid = Grid(config.shape, config.spacing)
    ring = ring_elements(config)
    _, nt = acoustic.time_axis(grid, acoustic.Medium(sound_speed=1500.0, density=1000.0), a.duration, dt=dt,
                               **solver_settings(config))

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        medium = acoustic.Medium(sound_speed=inputs["sound_speed"], density=inputs["density"])
        res = acoustic.simulate(grid, medium, duration=a.duration, p0=inputs["p0"], sensors=ring,
                                pml_size=a.pml_size, dt=dt, **solver_settings(config))
        return {"traces": res.traces}

    return run, int(nt)


def source_signal(config: DataConfig, time: np.ndarray) -> Any:
    """The USCT emitter's signal (``acoustic.signal`` at ``acoustic.frequency``) at ``time`` (s), float32."""
    import jax.numpy as jnp
    from solvers import signals

    a = config.acoustic
    t = jnp.asarray(time, jnp.float32)
    if a.signal == "tone_burst":
        return signals.tone_burst(t, a.frequency, cycles=a.cycles)
    return signals.gaussian_pulse(t, a.frequency)


def usct_runs(config: DataConfig, dt: float, *, scheme: str | None = None, fd_order: int | None = None,
              refine: int = 1, coarsen: int = 1, fd_coefficients: str | None = None) -> tuple[Callable, int]:
    """The USCT scenario's shots for one sample: ``medium (2, *shape) = [c, rho] -> traces
    (n_shots, nt, n_elements)``, and ``nt`` (samples ``k * dt``).

    Every shot drives all ring elements with a one-hot weighting of the source signal, so the shot
    axis vmaps over the signal matrix while the element positions stay fixed.

    Args:
        config: the (effective) data config.
        dt: time step in s.
        scheme, fd_order, fd_coefficients: the solver's scheme, ``fd`` order and stencil kind
            (:func:`solvers.acoustic.simulate`); each defaults to the config's (``acoustic.*``).
        refine, coarsen: run on a grid refined or coarsened by this factor (:mod:`training.refinement`:
            medium interpolated or sampled, absorbing layer of the same thickness, source signal
            scaled by :func:`~training.refinement.point_source_gain`). 1 and 1 is the dataset's own run.
    """
    import jax
    import jax.numpy as jnp
    from solvers import Grid, acoustic
    from training import refinement

    a = config.acoustic
    settings = solver_settings(config)
    scheme = settings["scheme"] if scheme is None else scheme
    fd_order = settings["fd_order"] if fd_order is None else fd_order
    fd_coefficients = settings["fd_coefficients"] if fd_coefficients is None else fd_coefficients
    data_grid = Grid(config.shape, config.spacing)
    grid = refinement.regrid(data_grid, refine, coarsen)
    ring = ring_elements(config)
    _, nt = acoustic.time_axis(grid, acoustic.Medium(sound_speed=1500.0, density=1000.0), a.duration, dt=dt,
                               scheme=scheme, fd_order=fd_order, fd_coefficients=fd_coefficients)
    pulse = source_signal(config, np.arange(int(nt)) * dt) * refinement.point_source_gain(data_grid.ndim, refine,
                                                                                          coarsen)
    weights = jnp.asarray(np.eye(a.n_elements, dtype=np.float32)[usct_emitters(config)])  # (n_shots, n_elements)
    pml = refinement.cells(a.pml_size, refine, coarsen)

    def run(m: Any) -> Any:
        m = refinement.resample(m, data_grid.ndim, refine, coarsen)
        medium = acoustic.Medium(sound_speed=m[0], density=m[1])

        def shot(w):
            source = acoustic.PointSource(positions=ring, signals=w[:, None] * pulse[None, :])
            res = acoustic.simulate(grid, medium, duration=a.duration, sources=source, sensors=ring,
                                    scheme=scheme, fd_order=fd_order, pml_size=pml, dt=dt,
                                    fd_coefficients=fd_coefficients)
            return res.traces

        return jax.vmap(shot)(weights)

    return run, int(nt)


def _usct(config: DataConfig, dt: float) -> tuple[Callable, int]:
    """Single-sample USCT shots: ``(c, rho) -> traces (n_shots, nt, n_elements)`` (:func:`usct_runs`)."""
    import jax.numpy as jnp

    runs, nt = usct_runs(config, dt)

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"traces": runs(jnp.stack([inputs["sound_speed"], inputs["density"]]))}

    return run, nt


def optics_geometry(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Illumination angles (rad, ``(n_angles,)``) and detector positions (m, ``(n_angles, n_det, 2)``).

    The detector line for angle ``theta`` crosses the beam behind the object, inside the total-field
    box: it lies at distance ``R`` from the centre along the propagation direction
    ``(cos theta, sin theta)`` and spans ``[-R, R]`` across it, one point per cell, where
    ``R = (box half-width - detector_margin) / sqrt(2)`` keeps every line inside the box.
    """
    o = config.optics
    angles = np.arange(o.n_angles) * (2 * np.pi / o.n_angles)
    half = (min(config.shape) - 1) / 2
    reach = (half - o.pml_size - phantoms.TFSF_MARGIN - o.detector_margin) / np.sqrt(2)  # cells
    offsets = np.arange(-np.floor(reach), np.floor(reach) + 1) * config.spacing
    r = reach * config.spacing
    d = np.stack([np.cos(angles), np.sin(angles)], -1)  # (n_angles, 2)
    t = np.stack([-np.sin(angles), np.cos(angles)], -1)
    det = grid_center(config) + r * d[:, None, :] + offsets[None, :, None] * t[:, None, :]
    return angles, det


def optics_duration(config: DataConfig) -> float:
    """Fixed simulated time (s): the source ramp, two grid-diagonal crossings at the largest index,
    and ``settle_periods`` more periods, so every phasor reaches steady state."""
    o = config.optics
    frequency = SPEED_OF_LIGHT / o.wavelength
    n_max = phantoms.WATER_INDEX + 0.1 * max(config.phantom.contrast, 1.0)
    crossing = n_max * float(np.linalg.norm(np.array(config.shape) * config.spacing)) / SPEED_OF_LIGHT
    return (RAMP_CYCLES + o.settle_periods) / frequency + 2 * crossing


RAMP_CYCLES = 5.0


def optics_runs(config: DataConfig, refine: int = 1, duration: float | None = None, *, coarsen: int = 1) -> Callable:
    """The optics scenario's per-angle FDTD runs for one sample:
    ``refractive_index (*shape) -> (field (n_angles, *out), detector (n_angles, n_det))``, complex64.

    Args:
        config: the (effective) data config.
        refine: run on a grid refined by this factor (:mod:`training.refinement`: index linearly
            interpolated, absorbing layer and TFSF margin of the same thickness); the fields come
            back at the data grid's nodes (``out`` is the data shape). 1 is the dataset's own run.
        duration: simulated time in s (default :func:`optics_duration`).
        coarsen: run on a grid coarsened by this factor instead (index sampled at its nodes,
            absorbing layer and TFSF margin at least as thick); the fields come back on its own
            nodes (``out`` is the coarse shape). The TFSF box may then sit up to a coarse cell
            from the data's: compare fields only where :func:`optics_regions` agree.
    """
    import jax
    import jax.numpy as jnp
    from solvers import Grid, maxwell
    from training import refinement

    o = config.optics
    data_grid = Grid(config.shape, config.spacing)
    grid = refinement.regrid(data_grid, refine, coarsen)
    angles, det = optics_geometry(config)
    frequency = SPEED_OF_LIGHT / o.wavelength
    duration = optics_duration(config) if duration is None else duration
    pml_size, margin = _optics_layers(config, refine, coarsen)

    def run(n: Any) -> tuple[Any, Any]:
        n = refinement.resample(n, data_grid.ndim, refine, coarsen)
        medium = maxwell.Medium(permittivity=n**2, conductivity=jnp.zeros_like(n))
        fields, lines = [], []
        for angle, points in zip(angles, det):
            source = maxwell.PlaneWave(wavelength=o.wavelength, angle=float(angle), ramp_cycles=RAMP_CYCLES,
                                       background_permittivity=phantoms.WATER_INDEX**2)
            with jax.ensure_compile_time_eval():  # source normalisation is host numpy inside simulate
                res = maxwell.simulate(grid, medium, source=source, frequencies=[frequency], duration=duration,
                                       pml_size=pml_size, tfsf_margin=margin, points=points)
            fields.append(refinement.data_nodes(res.field[0], data_grid.ndim, refine))
            lines.append(res.point_field[0, 0])
        return jnp.stack(fields).astype(jnp.complex64), jnp.stack(lines).astype(jnp.complex64)

    return run


def _optics_layers(config: DataConfig, refine: int, coarsen: int) -> tuple[int, int]:
    """``(pml_size, tfsf_margin)`` in cells of the grid refined or coarsened by the factor."""
    from training import refinement

    return (refinement.cells(config.optics.pml_size, refine, coarsen),
            refinement.cells(phantoms.TFSF_MARGIN, refine, coarsen))


def optics_regions(config: DataConfig, refine: int = 1, coarsen: int = 1) -> np.ndarray:
    """Where each node that :func:`optics_runs` (same factors) returns a field for lies, on that
    run's grid: 0 in the absorbing layer, 1 in the scattered-field region, 2 in the total-field box.

    Returns:
        int8 array of the data shape (``refine``) or the coarse shape (``coarsen``).
    """
    from solvers import Grid
    from solvers.maxwell.simulate import tfsf_box
    from training import refinement

    data_grid = Grid(config.shape, config.spacing)
    grid = refinement.regrid(data_grid, refine, coarsen)
    pml_size, margin = _optics_layers(config, refine, coarsen)
    lo, hi = tfsf_box(grid, pml_size, margin, (False,) * grid.ndim)
    out_shape = refinement.regrid(data_grid, 1, coarsen).shape
    idx = [np.arange(n) * refine for n in out_shape]  # the output nodes' indices on the run's grid
    axes = np.meshgrid(*idx, indexing="ij")
    in_box = np.all([(a >= lo[d]) & (a <= hi[d]) for d, a in enumerate(axes)], axis=0)
    in_layer = np.any([(a < pml_size) | (a > n - 1 - pml_size) for a, n in zip(axes, grid.shape)], axis=0)
    return np.where(in_layer, 0, np.where(in_box, 2, 1)).astype(np.int8)


def _optics(config: DataConfig) -> Callable:
    """Single-sample optics: ``refractive_index -> field (n_angles, *shape), detector (n_angles, n_det)``."""
    runs = optics_runs(config)

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        field, detector = runs(inputs["refractive_index"])
        return {"field": field, "detector": detector}

    return run


def build(config: DataConfig) -> Scenario:
    """The :class:`Scenario` of ``config``; the simulation uses the config with its split applied."""
    original, config = config, effective(config)
    shape = tuple(config.shape)
    fields = _medium_fields(config)
    a = config.acoustic
    if config.scenario == "phantom":
        return Scenario(original, fields, (), None, {})
    if config.scenario == "optics":
        angles, det = optics_geometry(config)
        fields |= {"field": FieldSpec((len(angles), *shape), "complex64", "V/m (unit incident amplitude)",
                                      "Ez phasor per illumination angle"),
                   "detector": FieldSpec(det.shape[:2], "complex64", "V/m", "Ez phasor on the detector line")}
        constants = {"angles_rad": angles.tolist(), "detector_positions_m": det.tolist(),
                     "wavelength_m": config.optics.wavelength,
                     "frequency_hz": SPEED_OF_LIGHT / config.optics.wavelength,
                     "duration_s": optics_duration(config), "background_index": phantoms.WATER_INDEX}
        return Scenario(original, fields, ("refractive_index",), _optics(config), constants)
    if config.scenario == "maxwell_stepper":
        o = config.optics
        dt = maxwell_time_step(config)
        n = o.n_frames + 1
        fields |= {"permittivity": FieldSpec(shape, "float32", "1", "relative permittivity = refractive_index**2"),
                   "e0": FieldSpec(shape, "float32", "V/m", "initial Ez (the source; H starts at 0)"),
                   "dt": DT_FIELD,
                   "ez": FieldSpec((n, *shape), "float32", "V/m",
                                   f"Ez every {o.save_every} steps, frame k at k*{o.save_every}*dt"),
                   "h": FieldSpec((n, 2, *shape), "float32", "V/m",
                                  "eta0*(Hx, Hy) frames at the times of ez (Yee-staggered positions)")}
        constants = {"dt": dt, "frame_interval_s": dt * o.save_every, "save_every": o.save_every,
                     "pml_size": o.pml_size, "courant": o.courant, "conductivity_s_per_m": 0.0,
                     "background_index": phantoms.WATER_INDEX}
        return Scenario(original, fields, ("permittivity", "e0"), _maxwell_trajectory(config), constants)
    dt = time_step(original)  # phantoms.* take the config as given and apply its split once
    constants: dict[str, Any] = {"dt": dt, "max_sound_speed": phantoms.max_sound_speed(original)}
    if config.scenario in ("acoustic_stepper", "photoacoustic"):
        frames = a.n_frames + 1
        fields |= {"p0": FieldSpec(shape, "float32", "Pa", "initial pressure (the source)"),
                   "dt": DT_FIELD,
                   "pressure": FieldSpec((frames, *shape), "float32", "Pa",
                                         f"pressure every {a.save_every} steps, frame k at k*{a.save_every}*dt")}
        if a.save_velocity:
            fields["velocity"] = FieldSpec((frames, len(shape), *shape), "float32", "m/s", "particle velocity frames")
        trajectory = _trajectory(config, dt)
        constants["frame_interval_s"] = dt * a.save_every
        if config.scenario == "acoustic_stepper":
            return Scenario(original, fields, ("sound_speed", "density", "p0"), trajectory, constants)
        traces, nt = _ring_traces(config, dt)
        fields["traces"] = FieldSpec((nt, a.n_elements), "float32", "Pa", "ring-array pressure traces")
        constants |= {"nt": nt, "ring_radius_m": ring_radius(config)}

        def both(inputs: dict[str, Any]) -> dict[str, Any]:
            return trajectory(inputs) | traces(inputs)

        return Scenario(original, fields, ("sound_speed", "density", "p0"), both, constants)
    run, nt = _usct(config, dt)
    fields |= {"dt": DT_FIELD,
               "traces": FieldSpec((a.n_shots, nt, a.n_elements), "float32", "Pa",
                                   "pressure at every ring element, per emitting element (shot)")}
    constants |= {"nt": nt, "ring_radius_m": ring_radius(config), "signal": a.signal, "frequency_hz": a.frequency,
                  "emitters": usct_emitters(config).tolist()}
    return Scenario(original, fields, ("sound_speed", "density"), run, constants)
