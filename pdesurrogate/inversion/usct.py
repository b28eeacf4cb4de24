"""Ultrasound computed tomography: full-waveform inversion of sound speed from ring-array traces.

Public contract::

    acq = usct.Acquisition(grid, elements, signal, dt, nt, emitters=None)
    observed = usct.simulate(acq, medium)                       # (n_shots, nt, n_el), reference solver
    result = usct.invert(acq, observed, forward="solver" | "surrogate" | "hybrid", surrogate=None,
                         water=None, initial=1500.0, density=1000.0, bounds=(1400.0, 1700.0), truth=None,
                         **options)
    result.sound_speed, result.history

**Forward models** (``predict(c, shots) -> (n, nt, n_el)``, items are shot indices):

- ``"solver"``: :func:`solvers.acoustic.simulate` (``fd``, order 4, by default), one point source per
  shot driving the ring with a one-hot weighting of the signal (positions fixed, so shots ``vmap``),
  sinc sensors at every element, ``checkpoint="segmented"`` gradients; with several local devices
  the shots are sharded over them (:func:`shot_sharding`).
- ``"surrogate"``: a trained :class:`pdesurrogate.surrogate.TraceOperator`; it holds only for the
  acquisition it was trained on, so :func:`check_surrogate` compares grid, elements, emitters, time
  axis and signal (through its water traces) and names what differs.
- ``"hybrid"``: ``hybrid="corrected"`` (the surrogate corrected to first order by the solver at a
  centre refreshed every ``refresh_every`` iterations, :class:`pdesurrogate.inversion.Corrected`) or
  ``hybrid="surrogate_first"`` (surrogate through every band, then ``solver_iterations`` solver
  iterations in the last band) or ``hybrid="guarded"`` (per iteration the surrogate where the trust
  guard of the calibrated run accepts the iterate, the solver elsewhere,
  :class:`pdesurrogate.inversion.guarded.GuardedForward`).

**Recipe.** Frequency continuation over low-pass bands (default ``(0.5, 0.75, 1, 1.5)`` times the
signal's peak frequency), one :class:`~pdesurrogate.inversion.Stage` per band. Each shot's misfit is
``0.5 ||B(W p) - B d||^2 / ||B d||^2`` over the receivers at least ``min_offset`` from the emitter
(per-shot scaling): ``B`` the band's zero-phase low-pass ``1 / (1 + (f / f_max)^8)``, ``W`` the
source-wavelet filter. With ``water`` traces, ``W`` is estimated by least squares in the frequency
domain (:func:`estimate_wavelet`), shared by all emitters or one per emitter, so the data may come
from another code with its own source convention; with ``water=None`` ``W = 1`` (``signal`` is
trusted). Box bounds, smoothed TV of weight ``tv``, illumination preconditioning (inverse source-side
wavefield energy at the stage's starting model, zero outside the ring), random shot subsets, L-BFGS
or Adam: all from :mod:`pdesurrogate.inversion.loop`.

**Density.** With ``invert_density=True`` density is inverted with the sound speed (parameters
stacked ``(2, *grid.shape)``, per-channel bounds, joint TV): tissue density varies as much as sound
speed, and with density held fixed its reflections are fitted as sound speed (the CPU benchmark's
``solver_density_known`` row measures the difference).

``rel_error = ||c - c_true|| / ||c_true - 1500||`` over the region inside the ring (:func:`rel_error`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pdesurrogate.inversion import read_observed_npz
from pdesurrogate.inversion.forward import Corrected, ForwardModel, load_once, memo
from pdesurrogate.inversion.guarded import guarded_forward
from pdesurrogate.inversion.loop import Stage, run
from pdesurrogate.inversion.regularization import Bounds, TotalVariation
from solvers import Grid, acoustic
from solvers.scan import CHECKPOINTING
from solvers.validate import check_choice

WATER_SOUND_SPEED = 1500.0
FORWARDS = ("solver", "surrogate", "hybrid")
HYBRIDS = ("corrected", "surrogate_first", "guarded")
PRECONDITIONERS = ("illumination", "none")
DEFAULT_BANDS = (0.5, 0.75, 1.0, 1.5)  # times the signal's peak frequency


class Acquisition(eqx.Module):
    """A ring-array USCT acquisition on a reconstruction grid.

    Args:
        grid: the reconstruction grid (2D).
        elements: ``(n_el, 2)`` element positions in m, inside the grid.
        signal: ``(nt,)`` emitted pressure waveform in Pa at ``t_k = k dt``, or ``(n_shots, nt)`` one per shot.
        dt: sample interval in s (also the solver's time step).
        nt: number of samples.
        emitters: element index of each shot (default: every element fires once, in order).

    Attributes (besides the arguments): ``signals`` ``(n_shots, nt)``, ``n_shots``, ``n_elements``,
    ``centre`` (m), ``radius`` (m, mean distance of the elements from their centroid).
    """

    grid: Grid
    elements: np.ndarray
    signals: np.ndarray
    dt: float = eqx.field(static=True)
    nt: int = eqx.field(static=True)
    emitters: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, grid: Grid, elements: np.ndarray, signal: np.ndarray, dt: float, nt: int,
                 emitters: np.ndarray | None = None):
        if not isinstance(grid, Grid) or grid.ndim != 2:
            raise ValueError(f"grid must be a 2D solvers.Grid, got {grid!r}")
        el = np.asarray(elements, dtype=np.float64)
        if el.ndim != 2 or el.shape[1] != 2 or el.shape[0] < 2:
            raise ValueError(f"elements must have shape (n_el, 2) with n_el >= 2, got {np.shape(elements)}")
        grid.check_points("elements", el)
        if isinstance(nt, bool) or not isinstance(nt, int | np.integer) or nt < 2:
            raise ValueError(f"nt must be an integer >= 2, got {nt!r}")
        if not (isinstance(dt, int | float | np.floating) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive finite time step in s, got {dt!r}")
        em = np.arange(len(el)) if emitters is None else np.asarray(emitters)
        if em.ndim != 1 or em.size == 0 or not np.issubdtype(em.dtype, np.integer) or \
                np.any((em < 0) | (em >= len(el))):
            raise ValueError(f"emitters must be a non-empty list of element indices in [0, {len(el) - 1}], "
                             f"got {emitters!r}")
        sig = np.asarray(signal, dtype=np.float32)
        if sig.shape not in ((int(nt),), (len(em), int(nt))):
            raise ValueError(f"signal must have shape ({nt},) or ({len(em)}, {nt}) (n_shots, nt), got {sig.shape}")
        if not np.all(np.isfinite(sig)) or not np.any(sig):
            raise ValueError("signal must be finite and not all zero")
        self.grid = grid
        self.elements = el
        self.signals = np.broadcast_to(sig, (len(em), int(nt))).copy()
        self.dt = float(dt)
        self.nt = int(nt)
        self.emitters = tuple(int(e) for e in em)

    @property
    def n_shots(self) -> int:
        return len(self.emitters)

    @property
    def n_elements(self) -> int:
        return int(self.elements.shape[0])

    @property
    def centre(self) -> np.ndarray:
        return self.elements.mean(axis=0)

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(self.elements - self.centre, axis=1).mean())

    def region(self, margin_cells: float = 0.0) -> np.ndarray:
        """Boolean mask ``grid.shape`` of the points inside the ring, ``margin_cells`` cells from it."""
        idx = np.indices(self.grid.shape).astype(np.float64) * self.grid.spacing
        r = np.hypot(idx[0] - self.centre[0], idx[1] - self.centre[1])
        return r < self.radius - margin_cells * self.grid.spacing

    def peak_frequency(self) -> float:
        """Frequency (Hz) of the largest spectral amplitude of the first shot's signal."""
        spec = np.abs(np.fft.rfft(self.signals[0], n=4 * self.nt))
        return float(np.fft.rfftfreq(4 * self.nt, self.dt)[int(np.argmax(spec))])


# ----- the reference solver ------------------------------------------------------------------------

@dataclass(frozen=True)
class SolverSettings:
    """The solver's discretisation (see :func:`solvers.acoustic.simulate`); ``pml_size=None`` picks
    the thickest absorbing layer (<= 20 cells) that leaves a cell between it and every element.
    ``c_ref`` (m/s) fixes the reference speed of the absorbing layer (and of ``pstd``'s k-space
    correction); ``None`` takes the medium's maximum, which is not differentiable where it is attained,
    so inversions fix it (at the upper bound). ``checkpoint``: the gradient checkpointing of the time
    loop (``"segmented"``: memory ~ sqrt(nt) states, one forward recomputed; ``"none"``: every step
    stored, no recomputation, for problems whose wavefields fit in memory; see :mod:`solvers.scan`)."""

    scheme: str = "fd"
    fd_order: int = 4
    pml_size: int | None = None
    c_ref: float | None = None
    checkpoint: str = "segmented"

    def resolve(self, acq: Acquisition) -> SolverSettings:
        """Settings with the absorbing layer fixed; ``ValueError`` when it cannot fit."""
        edge = float(np.min(np.concatenate([acq.elements / acq.grid.spacing,
                                            np.array(acq.grid.shape) - 1 - acq.elements / acq.grid.spacing])))
        room = int(math.floor(edge)) - 1
        pml = min(20, room) if self.pml_size is None else self.pml_size
        if isinstance(pml, bool) or not isinstance(pml, int) or not 0 <= pml <= max(room, 0):
            raise ValueError(f"pml_size must be an integer in [0, {max(room, 0)}] (the elements lie "
                             f"{edge:.1f} cells from the grid edge), got {pml!r}")
        return SolverSettings(self.scheme, self.fd_order, pml, self.c_ref, self.checkpoint)


def _duration(acq: Acquisition) -> float:
    return (acq.nt - 0.5) * acq.dt  # nt = floor(duration / dt) + 1 samples


def _check_stable(acq: Acquisition, settings: SolverSettings, max_speed: float) -> None:
    try:
        acoustic.time_axis(acq.grid, acoustic.Medium(sound_speed=max_speed, density=1000.0), _duration(acq),
                           dt=acq.dt, scheme=settings.scheme, fd_order=settings.fd_order)
    except ValueError as err:
        raise ValueError(f"dt={acq.dt:.4g} s is unstable for sound speeds up to {max_speed:g} m/s: {err}") from None


def shot_sharding(n: int) -> NamedSharding | None:
    """How ``n`` shots spread over the local devices: a 1-D ``("shots",)`` mesh of the largest
    number of devices that divides ``n`` (``None`` when that is one device)."""
    d = math.gcd(int(n), jax.local_device_count())
    if d <= 1:
        return None
    return NamedSharding(Mesh(np.array(jax.local_devices()[:d]), ("shots",)), PartitionSpec("shots"))


def _shots(acq: Acquisition, settings: SolverSettings, c: jax.Array, rho: jax.Array, shots: jax.Array,
           sensors: np.ndarray | None = None) -> jax.Array:
    """Traces ``(n, nt, n_el)`` of ``shots`` (indices into ``acq.emitters``) at the elements, or
    ``(n, nt, n_points)`` at grid points ``sensors`` (m, read exactly with the linear kernel).
    The shots are ``vmap``-ped and, with several local devices, sharded over them
    (:func:`shot_sharding`): each device runs its share of the shots, the medium is replicated."""
    medium = acoustic.Medium(sound_speed=c, density=rho)
    onehot = jnp.asarray(np.eye(acq.n_elements, dtype=np.float32)[list(acq.emitters)], c.dtype)[shots]
    signals = jnp.asarray(acq.signals, c.dtype)[shots]
    sharding = shot_sharding(onehot.shape[0])
    if sharding is not None:
        onehot, signals = (jax.lax.with_sharding_constraint(a, sharding) for a in (onehot, signals))
    pts = acq.elements

    def shot(w, sig):
        source = acoustic.PointSource(positions=pts, signals=w[:, None] * sig[None, :])
        res = acoustic.simulate(acq.grid, medium, duration=_duration(acq), sources=source,
                                sensors=pts if sensors is None else sensors, scheme=settings.scheme,
                                fd_order=settings.fd_order, pml_size=settings.pml_size, dt=acq.dt,
                                checkpoint=settings.checkpoint, sensor_kernel="sinc" if sensors is None else "linear",
                                c_ref=settings.c_ref)
        return res.traces

    return jax.vmap(shot)(onehot, signals)


def _medium_arrays(acq: Acquisition, medium: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(medium, acoustic.Medium):
        c, rho = medium.sound_speed, medium.density
    else:
        c, rho = medium, 1000.0
    shape = acq.grid.shape
    c = np.broadcast_to(np.asarray(c, np.float32), shape) if np.ndim(c) == 0 else np.asarray(c, np.float32)
    rho = np.broadcast_to(np.asarray(rho, np.float32), shape) if np.ndim(rho) == 0 else np.asarray(rho, np.float32)
    for name, a in (("sound_speed", c), ("density", rho)):
        if a.shape != shape:
            raise ValueError(f"{name} must be a scalar or an array of shape {shape} (the grid), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{name} must be positive and finite everywhere")
    return c, rho


def simulate(acq: Acquisition, medium: Any, *, scheme: str = "fd", fd_order: int = 4,
             pml_size: int | None = None) -> np.ndarray:
    """Traces of every shot from the reference solver: ``(n_shots, nt, n_el)`` in Pa.

    Args:
        acq: the acquisition.
        medium: an :class:`solvers.acoustic.Medium` or a sound-speed array (m/s; density 1000 kg/m^3).
        scheme, fd_order, pml_size: the solver's discretisation (:class:`SolverSettings`).
    """
    settings = SolverSettings(scheme, fd_order, pml_size).resolve(acq)
    c, rho = _medium_arrays(acq, medium)
    _check_stable(acq, settings, float(c.max()))
    run_all = jax.jit(lambda c, rho: _shots(acq, settings, c, rho, jnp.arange(acq.n_shots)))
    return np.asarray(run_all(jnp.asarray(c), jnp.asarray(rho)))


# ----- misfit, wavelet, preconditioner --------------------------------------------------------------

def _nfft(nt: int) -> int:
    return 2 * nt  # zero padding: products of spectra are linear convolutions within the window


def lowpass(acq: Acquisition, f_max: float) -> np.ndarray:
    """Zero-phase low-pass response ``1 / (1 + (f / f_max)^8)`` on the ``rfft`` frequencies of
    ``2 nt`` samples, ``(2 nt // 2 + 1,)``."""
    f = np.fft.rfftfreq(_nfft(acq.nt), acq.dt)
    return 1.0 / (1.0 + (f / f_max) ** 8)


def apply_filter(traces: jax.Array, response: jax.Array, nt: int) -> jax.Array:
    """Filter ``traces`` ``(..., nt, n_el)`` along time by the ``rfft`` response ``(nf,)`` or ``(..., nf)``
    (per leading index), zero-padded to ``2 nt`` samples; returns ``(..., nt, n_el)``."""
    spec = jnp.fft.rfft(traces, n=_nfft(nt), axis=-2)
    return jnp.fft.irfft(spec * response[..., :, None], n=_nfft(nt), axis=-2)[..., :nt, :].astype(traces.dtype)


def receiver_mask(acq: Acquisition, min_offset: float) -> np.ndarray:
    """``(n_shots, n_el)``: the receivers at least ``min_offset`` m from each shot's emitter (the
    emitter's own trace, dominated by the grid-dependent near field, is always left out)."""
    d = np.linalg.norm(acq.elements[None, :, :] - acq.elements[list(acq.emitters)][:, None, :], axis=-1)
    return (d >= min_offset) & (d > 0)


def estimate_wavelet(modelled: np.ndarray, recorded: np.ndarray, mask: np.ndarray, *, per_emitter: bool = False,
                     damping: float = 1e-6) -> np.ndarray:
    """Least-squares source filter ``W(f)`` with ``W * modelled ~ recorded`` (water shots).

    ``W(f) = sum conj(M) R / (sum |M|^2 + damping * max_f sum |M|^2)``, the sums over the kept
    receivers (``mask``) and over the shots (shared filter) or per shot (``per_emitter``); ``M``, ``R``
    are the spectra zero-padded to ``2 nt``.

    Args:
        modelled: ``(n_shots, nt, n_el)`` water traces of the forward model with the assumed signal.
        recorded: ``(n_shots, nt, n_el)`` water traces recorded (the observed scanner's).
        mask: ``(n_shots, n_el)`` receivers to use.
    Returns:
        ``(n_shots, nf)`` complex128 responses (rows equal when shared).
    """
    nt = modelled.shape[1]
    m = np.fft.rfft(np.asarray(modelled, np.float64), n=_nfft(nt), axis=1) * mask[:, None, :]
    r = np.fft.rfft(np.asarray(recorded, np.float64), n=_nfft(nt), axis=1)
    num = np.sum(np.conj(m) * r, axis=2)  # (n_shots, nf)
    den = np.sum(np.abs(m) ** 2, axis=2)
    if not per_emitter:
        num, den = np.broadcast_to(num.sum(0), num.shape), np.broadcast_to(den.sum(0), den.shape)
    return num / (den + damping * den.max(axis=1, keepdims=True))


def effective_signals(acq: Acquisition, wavelet: np.ndarray) -> np.ndarray:
    """The emitted waveforms ``(n_shots, nt)`` implied by a wavelet filter ``(n_shots, nf)``."""
    spec = np.fft.rfft(acq.signals.astype(np.float64), n=_nfft(acq.nt), axis=1) * wavelet
    return np.fft.irfft(spec, n=_nfft(acq.nt), axis=1)[:, : acq.nt]


def band_data(acq: Acquisition, observed: np.ndarray, response: np.ndarray, band: np.ndarray,
              mask: np.ndarray, dtype: Any = np.float32) -> dict[str, jax.Array]:
    """The arrays of one band's misfit (:func:`shot_misfit`): ``obs`` the low-passed observed traces,
    ``response`` wavelet filter times low-pass ``(n_shots, nf)``, ``keep`` ``(n_shots, 1, n_el)``
    receivers kept, ``norms`` ``(n_shots,)`` each shot's kept observed energy in the band.

    Args:
        observed: ``(n_shots, nt, n_el)``; response: the wavelet filter ``(n_shots, nf)`` (ones for none);
        band: the low-pass ``(nf,)``; mask: ``(n_shots, n_el)`` receivers kept.
    """
    obs_f = np.asarray(apply_filter(jnp.asarray(observed, dtype), jnp.asarray(band, dtype), acq.nt))
    keep = mask[:, None, :].astype(dtype)
    norms = np.sum((obs_f * keep) ** 2, axis=(1, 2))
    complex_dtype = np.complex128 if np.dtype(dtype) == np.float64 else np.complex64
    return {"obs": jnp.asarray(obs_f, dtype), "response": jnp.asarray(response * band[None, :], complex_dtype),
            "keep": jnp.asarray(keep), "norms": jnp.asarray(np.where(norms > 0, norms, 1.0), dtype)}


def shot_misfit(pred: jax.Array, shot: jax.Array, data: dict[str, jax.Array]) -> jax.Array:
    """One shot's band-limited, scaled misfit ``0.5 ||B(W p) - B d||^2 / ||B d||^2`` over the kept
    receivers; ``pred`` ``(nt, n_el)``, ``shot`` its index, ``data`` from :func:`band_data`."""
    p = apply_filter(pred, data["response"][shot], pred.shape[-2])
    return 0.5 * jnp.sum(((p - data["obs"][shot]) * data["keep"][shot]) ** 2) / data["norms"][shot]


def illumination_program(acq: Acquisition, settings: SolverSettings, margin_cells: float = 2.0):
    """The illumination preconditioner ``(c, rho) -> grid.shape``, jitted: ``1 / (E + 0.01 max E)``
    inside the ring (``margin_cells`` from it), 0 outside, with ``E(x) = sum_shots sum_t p(x, t)^2`` the
    source-side wavefield energy at every grid point and time step (one forward run of every shot)."""
    region = acq.region(margin_cells)
    if not region.any():
        raise ValueError(f"the ring (radius {acq.radius:g} m) holds no grid points {margin_cells:g} cells inside it")
    index = np.nonzero(region)
    points = np.stack(index, axis=1) * acq.grid.spacing

    def diagonal(c: jax.Array, rho: jax.Array) -> jax.Array:
        e = jnp.sum(jnp.square(_shots(acq, settings, c, rho, jnp.arange(acq.n_shots), sensors=points)), axis=(0, 1))
        return jnp.zeros(acq.grid.shape, e.dtype).at[index].set(1.0 / (e + 0.01 * jnp.max(e)))

    return jax.jit(diagonal)


def rel_error(acq: Acquisition, c: np.ndarray, truth: np.ndarray) -> float:
    """``||c - c_true|| / ||c_true - 1500||`` over the region inside the ring."""
    r = acq.region()
    den = np.linalg.norm((np.asarray(truth) - WATER_SOUND_SPEED)[r])
    return float(np.linalg.norm((np.asarray(c) - np.asarray(truth))[r]) / (den if den > 0 else 1.0))


# ----- the surrogate --------------------------------------------------------------------------------

def check_surrogate(acq: Acquisition, operator: Any, solver_water: np.ndarray, mask: np.ndarray,
                    tolerance: float = 0.05) -> None:
    """Raise ``ValueError`` naming what differs between ``acq`` and the operator's training acquisition:
    grid, elements, emitters, time axis (dt, nt) or signal. The signal is compared through the water
    traces: the operator's own (its ``offset``, the solver's water response to its training signal)
    against ``solver_water`` (the reference solver's with ``acq.signal``), relative L2 over the
    ``mask`` receivers above ``tolerance``."""
    info = operator.info
    g = operator.grid
    if tuple(g.shape) != tuple(acq.grid.shape) or not math.isclose(g.spacing, acq.grid.spacing, rel_tol=1e-6):
        raise ValueError(f"surrogate: grid differs: trained on shape {tuple(g.shape)} spacing {g.spacing:g} m, "
                         f"the acquisition has {tuple(acq.grid.shape)} spacing {acq.grid.spacing:g} m")
    el = np.asarray(info["elements_m"])
    if el.shape != acq.elements.shape or not np.allclose(el, acq.elements, rtol=0, atol=1e-3 * acq.grid.spacing):
        raise ValueError(f"surrogate: elements differ: trained on {el.shape[0]} elements, the acquisition "
                         f"has {acq.n_elements} at other positions" if el.shape == acq.elements.shape else
                         f"surrogate: elements differ: trained on {el.shape[0]} elements, the acquisition has "
                         f"{acq.n_elements}")
    extra = sorted(set(acq.emitters) - set(int(e) for e in info["emitters"]))
    if extra:
        raise ValueError(f"surrogate: emitters differ: trained on shots from elements {info['emitters']}, "
                         f"the acquisition fires {extra} too")
    nt = int(operator.offset.shape[1])
    if nt != acq.nt or not math.isclose(float(info["dt"]), acq.dt, rel_tol=1e-6):
        raise ValueError(f"surrogate: time axis differs: trained on nt={nt}, dt={float(info['dt']):.6g} s, "
                         f"the acquisition has nt={acq.nt}, dt={acq.dt:.6g} s")
    own = np.asarray(operator.offset)[list(acq.emitters)] * mask[:, None, :]
    ours = solver_water * mask[:, None, :]
    diff = float(np.linalg.norm(own - ours) / (np.linalg.norm(ours) or 1.0))
    if diff > tolerance:
        raise ValueError(f"surrogate: signal differs: the surrogate's water traces are {100 * diff:.1f}% off the "
                         f"solver's with the acquisition's signal (tolerance {100 * tolerance:g}%); it was "
                         f"trained with signal {info.get('signal')!r} at {info.get('frequency_hz', float('nan')):g} Hz")


def _load_operator(surrogate: Any) -> Any:
    """The TraceOperator itself, or the one of a run directory (loaded once per directory and
    modification time, so repeated inversions reuse its compiled programs)."""
    from pdesurrogate.surrogate import TraceOperator

    if isinstance(surrogate, str | Path):
        return load_once(surrogate, TraceOperator.load)
    if not isinstance(surrogate, TraceOperator):
        raise ValueError(f"surrogate must be a TraceOperator or its training run directory, got "
                         f"{type(surrogate).__name__}")
    return surrogate


def _medium_of(rho: np.ndarray | None) -> tuple[Any, tuple]:
    """``(m -> (c, rho), memo key part)``: with a density ``rho`` (``grid.shape``, kg/m^3) the parameters
    are the sound speed ``grid.shape``; with ``None`` they are sound speed and density stacked ``(2, *grid.shape)``."""
    if rho is None:
        return (lambda m: (m[0], m[1])), ("joint",)
    rho = np.asarray(rho, np.float32)
    return (lambda c: (c, jnp.asarray(rho, c.dtype))), (rho.shape, rho.tobytes())


def surrogate_forward(acq: Acquisition, operator: Any, rho: np.ndarray | None) -> ForwardModel:
    """The operator as a :class:`ForwardModel` (shot indices -> ``(n, nt, n_el)`` traces) of the sound
    speed at density ``rho``, or of sound speed and density stacked (``rho=None``). The same operator
    object, acquisition and density give the same model (the memo holds the operator, so its ``id``
    stays its own), so repeated inversions reuse the loop's compiled programs."""
    medium_of, key = _medium_of(rho)
    emitters = jnp.asarray(acq.emitters, jnp.int32)

    def predict(m: jax.Array, shots: jax.Array) -> jax.Array:
        medium = jnp.stack(medium_of(m))
        return jax.vmap(lambda e: operator(medium, e))(emitters[shots]).astype(m.dtype)

    return memo(("surrogate", id(operator), acq.grid.shape, acq.grid.spacing, acq.elements.tobytes(), acq.emitters,
                 *key), lambda: ForwardModel(predict, "surrogate"))


def solver_forward(acq: Acquisition, settings: SolverSettings, rho: np.ndarray | None) -> ForwardModel:
    """The reference solver as a :class:`ForwardModel` of the sound speed at density ``rho``, or of sound
    speed and density stacked (``rho=None``). Equal acquisitions, settings and densities give the same
    object, so repeated inversions reuse the loop's compiled programs."""
    medium_of, key = _medium_of(rho)
    return memo(("solver", acq.grid.shape, acq.grid.spacing, acq.elements.tobytes(), acq.signals.tobytes(), acq.dt,
                 acq.nt, acq.emitters, settings, *key),
                lambda: ForwardModel(lambda m, shots: _shots(acq, settings, *medium_of(m), shots), "solver"))


# ----- inversion ------------------------------------------------------------------------------------

@dataclass
class USCTResult:
    """Output of :func:`invert`.

    Attributes:
        sound_speed: ``grid.shape`` in m/s.
        density: ``grid.shape`` in kg/m^3 when it was inverted (``invert_density``), else ``None``.
        history: one dict per iteration (:mod:`pdesurrogate.inversion.loop`).
        initial_error: ``rel_error`` of the starting model (``None`` without ``truth``).
        wavelet: ``(n_shots, nf)`` source filter applied to the predictions (ones without ``water``).
        signals: ``(n_shots, nt)`` effective emitted waveforms (``acq.signals`` filtered by ``wavelet``).
        bands: the bands' upper frequencies in Hz.
        preconditioner_compile_seconds: compilation time of the illumination (not in the history's
            ``compile_seconds``, which covers the iterations).
        stage_starts: stage name -> the parameters the stage started from (the previous band's final
            model: the sound speed ``grid.shape`` in m/s, or sound speed and density stacked
            ``(2, *grid.shape)`` with ``invert_density``), for the stages this call started (a resumed
            stage is not in it): with the final model, the inversion's path band by band.
    """

    sound_speed: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    initial_error: float | None = None
    wavelet: np.ndarray | None = None
    signals: np.ndarray | None = None
    bands: tuple[float, ...] = ()
    preconditioner_compile_seconds: float = 0.0
    stage_starts: dict[str, np.ndarray] = field(default_factory=dict)
    density: np.ndarray | None = None


def _check_traces(name: str, traces: Any, acq: Acquisition) -> np.ndarray:
    a = np.asarray(traces)
    want = (acq.n_shots, acq.nt, acq.n_elements)
    if a.shape != want:
        raise ValueError(f"{name} must have shape {want} (n_shots, nt, n_el), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (found NaN or inf traces)")
    if not np.any(a):
        raise ValueError(f"{name} must not be all zero")
    return a.astype(np.float32)


def _field(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(value, np.float32)
    a = np.broadcast_to(a, shape).copy() if a.ndim == 0 else a
    if a.shape != shape:
        raise ValueError(f"{name} must be a scalar or an array of shape {shape} (the grid), got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be positive and finite everywhere")
    return a


def _positive_box(name: str, pair: Any, what: str) -> Bounds:
    """The :class:`Bounds` of a ``(lower, upper)`` pair of finite numbers with ``0 < lower <= upper``;
    ``ValueError`` naming ``name`` otherwise."""
    values = tuple(pair) if isinstance(pair, tuple | list) else ()
    if len(values) != 2 or not all(isinstance(v, int | float | np.number) and not isinstance(v, bool)
                                   and math.isfinite(v) for v in values) or not 0 < values[0] <= values[1]:
        raise ValueError(f"{name} must be (lower, upper) {what} with 0 < lower <= upper, got {pair!r}")
    return Bounds(*values)


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def invert(acq: Acquisition, observed: np.ndarray, forward: str | ForwardModel = "solver", surrogate: Any = None,
           water: np.ndarray | None = None, initial: float | np.ndarray = 1500.0,
           density: float | np.ndarray = 1000.0, bounds: tuple[float, float] = (1400.0, 1700.0),
           truth: np.ndarray | None = None, *, invert_density: bool = False,
           density_bounds: tuple[float, float] = (900.0, 1100.0), bands: tuple[float, ...] | None = None,
           iterations: int | tuple[int, ...] = 10, optimizer: str = "lbfgs", learning_rate: float = 0.05,
           shots_per_iteration: int | None = None, tv: float = 0.0, tv_epsilon: float = 1.0,
           precondition: str = "illumination", per_emitter_wavelet: bool = False, min_offset: float | None = None,
           hybrid: str = "corrected", refresh_every: int = 1, solver_iterations: int = 5,
           trust_radius: float | None = 20.0, guard_tolerance: float | None = None, check_every: int = 10,
           guard_hold: int = 0, scale: float = 20.0,
           scheme: str = "fd", fd_order: int = 4, pml_size: int | None = None,
           gradient_checkpoint: str = "segmented", seed: int = 0, checkpoint_dir: str | Path | None = None,
           progress: bool = True) -> USCTResult:
    """Full-waveform inversion of sound speed (see the module docstring for the recipe).

    Args:
        acq: the acquisition; observed: ``(n_shots, nt, n_el)`` traces in Pa.
        forward: ``"solver"``, ``"surrogate"`` or ``"hybrid"``, or an external solver-kind
            :class:`~pdesurrogate.inversion.ForwardModel` (e.g. jwave, as a baseline) that replaces the
            reference solver; with ``water`` the wavelet is estimated from its own water traces.
        surrogate: a :class:`~pdesurrogate.surrogate.TraceOperator` or its run directory (surrogate, hybrid).
        water: ``(n_shots, nt, n_el)`` traces recorded in water only (wavelet estimation), or ``None``.
        initial: starting sound speed (m/s), scalar or ``grid.shape``, inside ``bounds``.
        density: kg/m^3, scalar or ``grid.shape``: known, or the starting density with ``invert_density``.
        bounds: ``(lower, upper)`` sound speed in m/s.
        truth: true sound speed ``grid.shape`` for ``rel_error`` in the history.
        invert_density, density_bounds: invert density (kg/m^3, within ``density_bounds``) together with
            the sound speed. The parameters are then both stacked ``(2, *grid.shape)``, sharing the
            preconditioner, the step unit ``scale`` (1 kg/m^3 counted like 1 m/s) and a joint TV (one
            isotropic gradient magnitude of both maps); an external ``forward`` then receives the stack.
            Tissue density varies as much as sound speed (breast fat ~930, gland ~1030 kg/m^3): with
            density held at 1000 kg/m^3 its reflections are fitted as sound speed.
        bands: upper frequencies (Hz) of the low-pass bands, increasing (default: ``DEFAULT_BANDS``
            times the signal's peak frequency).
        iterations: per band (an int for all, or one per band).
        optimizer, learning_rate: ``"lbfgs"`` or ``"adam"`` (step in units of ``scale``).
        shots_per_iteration: random shot subset size (``None``: all shots).
        tv, tv_epsilon: TV weight (misfit units per m/s) and smoothing (m/s).
        precondition: ``"illumination"`` or ``"none"``.
        per_emitter_wavelet: one wavelet filter per emitter instead of one shared.
        min_offset: receivers closer than this (m) to the emitter are left out (default: 0.25 ring radius).
        hybrid, refresh_every, solver_iterations: the hybrid strategy (``"corrected"`` or
            ``"surrogate_first"``), its refresh interval (default every iteration: with a few
            iterations per band, refreshing every 5 left the correction stale and the hybrid stalled at
            0.58-0.81 rel_error on the CPU benchmark, against 0.40 refreshed every iteration), and the
            solver iterations that finish ``"surrogate_first"``.
        trust_radius: initial trust radius (m/s per pixel) of ``"corrected"`` (``None``: none).
        guard_tolerance, check_every, guard_hold: ``"guarded"``: the acceptable relative L2 of the
            operator's traces (default the calibration's), the iterations between the guard's solver
            checks and those a fallback keeps the solver (:class:`~pdesurrogate.inversion.GuardedForward`).
        scale: typical sound-speed update in m/s (the optimiser's unit step).
        scheme, fd_order, pml_size: the solver's discretisation (:class:`SolverSettings`).
        gradient_checkpoint: the solver's time-loop checkpointing (:class:`SolverSettings`
            ``checkpoint``: ``"segmented"``, ``"recursive"`` or ``"none"``).
        seed: seed of the shot subsets; checkpoint_dir: resumable state; progress: progress bar.
    """
    if not isinstance(invert_density, bool):
        raise ValueError(f"invert_density must be True or False, got {invert_density!r}")
    external = forward if isinstance(forward, ForwardModel) else None
    if external is not None:
        if external.kind != "solver":
            raise ValueError(f"an external forward model must be of kind 'solver', got {external.kind!r}")
        forward = "solver"
    if forward not in FORWARDS:
        raise ValueError(f"forward must be one of {list(FORWARDS)} or a ForwardModel, got {forward!r}")
    if hybrid not in HYBRIDS:
        raise ValueError(f"hybrid must be one of {list(HYBRIDS)}, got {hybrid!r}")
    if precondition not in PRECONDITIONERS:
        raise ValueError(f"precondition must be one of {list(PRECONDITIONERS)}, got {precondition!r}")
    if forward != "solver" and surrogate is None:
        raise ValueError(f"forward={forward!r} needs surrogate= (a TraceOperator or its run directory)")
    observed = _check_traces("observed", observed, acq)
    water = None if water is None else _check_traces("water", water, acq)
    shape = acq.grid.shape
    box = _positive_box("bounds", bounds, "sound speeds (m/s)")
    c0 = _field("initial", initial, shape)
    box.check("initial", c0)
    rho = _field("density", density, shape)
    if invert_density:
        dbox = _positive_box("density_bounds", density_bounds, "densities (kg/m^3)")
        dbox.check("density", rho)
    truth = None if truth is None else _field("truth", truth, shape)
    f_peak = acq.peak_frequency()
    bands = tuple(b * f_peak for b in DEFAULT_BANDS) if bands is None else tuple(bands)
    if not bands or any(not (math.isfinite(b) and 0 < b) for b in bands) or list(bands) != sorted(set(bands)):
        raise ValueError(f"bands must be increasing positive frequencies in Hz, got {bands!r}")
    iters = (iterations,) * len(bands) if isinstance(iterations, int) else tuple(iterations)
    if len(iters) != len(bands):
        raise ValueError(f"iterations must be an int or one per band ({len(bands)}), got {iterations!r}")
    min_offset = 0.25 * acq.radius if min_offset is None else _positive("min_offset", min_offset)
    mask = receiver_mask(acq, min_offset)
    if not mask.any(axis=1).all():
        raise ValueError(f"min_offset={min_offset:g} m leaves a shot without receivers; it must be below "
                         f"{np.linalg.norm(acq.elements - acq.centre, axis=1).max() * 2:g} m")
    check_choice("gradient_checkpoint", gradient_checkpoint, CHECKPOINTING)
    settings = SolverSettings(scheme, fd_order, pml_size, box.upper, gradient_checkpoint).resolve(acq)
    _check_stable(acq, settings, box.upper)
    joint = None if invert_density else rho  # the fixed density, or None: density is a parameter
    m0, params_box = c0, box
    if invert_density:
        m0 = np.stack([c0, rho])
        params_box = Bounds((box.lower, dbox.lower), (box.upper, dbox.upper))
    regularizer = TotalVariation(tv, _positive("tv_epsilon", tv_epsilon),
                                 axes=(1, 2) if invert_density else None) if tv else None

    solver = external or solver_forward(acq, settings, joint)
    operator = None
    if forward != "solver":
        operator = _load_operator(surrogate)
    water_c = np.full(shape, WATER_SOUND_SPEED, np.float32)
    modelled_water = None
    if operator is not None:
        modelled_water = simulate(acq, acoustic.Medium(sound_speed=WATER_SOUND_SPEED, density=rho),
                                  scheme=scheme, fd_order=fd_order, pml_size=settings.pml_size)
        check_surrogate(acq, operator, modelled_water, mask)
    nf = _nfft(acq.nt) // 2 + 1
    wavelet = np.ones((acq.n_shots, nf), np.complex128)
    if water is not None:
        if forward == "surrogate" or external is not None:  # the forward model's own water response
            own = external or surrogate_forward(acq, operator, joint)
            water_m = np.stack([water_c, rho]) if invert_density else water_c
            modelled_water = np.asarray(jax.jit(own.predict)(jnp.asarray(water_m), jnp.arange(acq.n_shots)))
        elif modelled_water is None:
            modelled_water = simulate(acq, acoustic.Medium(sound_speed=WATER_SOUND_SPEED, density=rho),
                                      scheme=scheme, fd_order=fd_order, pml_size=settings.pml_size)
        wavelet = estimate_wavelet(modelled_water, water, mask, per_emitter=per_emitter_wavelet)

    def stage(name: str, n: int, fwd: ForwardModel | Corrected, f_max: float) -> Stage:
        return Stage(name, n, fwd, shot_misfit, band_data(acq, observed, wavelet, lowpass(acq, f_max), mask, c0.dtype),
                     optimizer=optimizer, learning_rate=learning_rate, items_per_iteration=shots_per_iteration)

    names = [f"band{i}_{b / 1e6:.3g}MHz" for i, b in enumerate(bands)]
    if forward == "solver":
        stages = [stage(n, k, solver, b) for n, k, b in zip(names, iters, bands)]
    else:
        sur = surrogate_forward(acq, operator, joint)
        if forward == "surrogate":
            stages = [stage(n, k, sur, b) for n, k, b in zip(names, iters, bands)]
        elif hybrid == "corrected":
            fwd = Corrected(sur, solver, refresh_every=refresh_every, radius=trust_radius)
            stages = [stage(n, k, fwd, b) for n, k, b in zip(names, iters, bands)]
        elif hybrid == "guarded":
            fwd = guarded_forward(sur, solver, surrogate, lambda m: jnp.stack(_medium_of(joint)[0](m)),
                                  tolerance=guard_tolerance, check_every=check_every, hold=guard_hold)
            stages = [stage(n, k, fwd, b) for n, k, b in zip(names, iters, bands)]
        else:
            stages = [stage(n, k, sur, b) for n, k, b in zip(names, iters, bands)] + \
                [stage(f"{names[-1]}_solver", solver_iterations, solver, bands[-1])]

    setup_compile = 0.0
    if precondition == "illumination":
        t0 = time.perf_counter()
        diagonal = memo(("illumination", acq.grid.shape, acq.grid.spacing, acq.elements.tobytes(),
                          acq.signals.tobytes(), acq.dt, acq.nt, acq.emitters, settings, c0.dtype.str),
                         lambda: illumination_program(acq, settings).lower(jnp.asarray(c0), jnp.asarray(rho)).compile())
        setup_compile = time.perf_counter() - t0

    starts: dict[str, np.ndarray] = {}

    def speed(m: np.ndarray) -> np.ndarray:
        return m[0] if invert_density else m

    def hook(m: np.ndarray, current: Stage) -> tuple[np.ndarray, int]:
        starts[current.name] = np.array(m)
        if precondition == "illumination":
            medium = (m[0], m[1]) if invert_density else (m, rho)
            diag, calls = np.asarray(diagonal(*(jnp.asarray(a) for a in medium))), acq.n_shots
        else:
            diag, calls = acq.region(2.0).astype(np.float32), 0
        return np.broadcast_to(diag, np.shape(m)).copy(), calls

    res = run(stages, m0, n_items=acq.n_shots, bounds=params_box, regularizer=regularizer,
              scale=_positive("scale", scale), precondition=hook,
              error=None if truth is None else (lambda m: rel_error(acq, speed(m), truth)), seed=seed,
              checkpoint_dir=checkpoint_dir, progress=progress, desc=f"usct {forward}")
    return USCTResult(speed(res.params), res.history, res.initial_error, wavelet, effective_signals(acq, wavelet),
                      bands, setup_compile, starts, res.params[1] if invert_density else None)


# ----- outputs: figures, report, the CLI entry -------------------------------------------------------

def plot_traces(acq: Acquisition, observed: np.ndarray, modelled: np.ndarray, path: str | Path, shot: int = 0) -> None:
    """Observed against modelled traces of one shot at three receivers (opposite and +-90 degrees)."""
    from pdesurrogate.io import save_figure, subplots

    e = acq.emitters[shot]
    receivers = [(e + k * acq.n_elements // 4) % acq.n_elements for k in (1, 2, 3)]
    t = np.arange(acq.nt) * acq.dt * 1e6
    fig, axes = subplots(1, 3, figsize=(13, 3.4), squeeze=False)
    for ax, r in zip(axes[0], receivers):
        ax.plot(t, observed[shot, :, r], "k", lw=1.2, label="observed")
        ax.plot(t, modelled[shot, :, r], "r--", lw=1.0, label="modelled")
        ax.set(xlabel="time (us)", ylabel="pressure (Pa)", title=f"shot {shot} (element {e}), receiver {r}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def save_outputs(acq: Acquisition, result: USCTResult, observed: np.ndarray, out_dir: str | Path, *,
                 truth: np.ndarray | None = None, density: float | np.ndarray = 1000.0,
                 settings: SolverSettings | None = None) -> dict[str, Any]:
    """Write ``reconstruction.npz`` (``sound_speed``, and ``density`` when it was inverted),
    ``history.csv``, ``reconstruction.png``, ``curves.png``, ``traces.png`` (observed against the
    solver's traces of the final model, wavelet applied) and ``report.md`` into ``out_dir``; returns the
    summary written into the report. ``density`` is the known density (used when ``result.density`` is
    ``None``)."""
    from pdesurrogate.inversion.report import plot_curves, plot_images, write_history_csv
    from pdesurrogate.io import atomic_path, write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or SolverSettings()
    with atomic_path(out / "reconstruction.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, sound_speed=result.sound_speed, signals=result.signals, bands_hz=np.asarray(result.bands),
                 spacing=acq.grid.spacing, **({} if result.density is None else {"density": result.density}))
    write_history_csv(result.history, out / "history.csv")
    extent = [0, acq.grid.shape[1] * acq.grid.spacing * 1e3, 0, acq.grid.shape[0] * acq.grid.spacing * 1e3]
    panels = {"reconstruction (m/s)": result.sound_speed}
    if truth is not None:
        panels |= {"truth (m/s)": truth, "error (m/s)": result.sound_speed - truth}
    if result.density is not None:  # a deviation, drawn like the error map (symmetric about 0)
        panels["density - 1000 (kg/m^3)"] = result.density - 1000.0
    plot_images(panels, out / "reconstruction.png", extent=extent,
                shared=[k for k in panels if "error" not in k and "density" not in k])
    plot_curves({result.history[-1]["forward"] if result.history else "inversion": result.history}, out / "curves.png")
    rho = density if result.density is None else result.density
    modelled = simulate(acq, acoustic.Medium(sound_speed=result.sound_speed, density=rho), scheme=settings.scheme,
                        fd_order=settings.fd_order, pml_size=settings.pml_size)
    modelled = np.asarray(apply_filter(jnp.asarray(modelled), jnp.asarray(result.wavelet, jnp.complex64), acq.nt))
    plot_traces(acq, observed, modelled, out / "traces.png")
    last = result.history[-1] if result.history else {}
    summary = {"iterations": len(result.history), "final_misfit": last.get("misfit"),
               "rel_error": last.get("rel_error"), "initial_rel_error": result.initial_error,
               "seconds": last.get("seconds"), "compile_seconds": last.get("compile_seconds"),
               "solver_calls": last.get("solver_calls"), "surrogate_calls": last.get("surrogate_calls"),
               "bands_hz": list(result.bands),
               "trace_rel_residual": float(np.linalg.norm(modelled - observed) / np.linalg.norm(observed))}
    lines = ["# USCT full-waveform inversion", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in summary.items()]
    lines += ["", "![reconstruction](reconstruction.png)", "", "![curves](curves.png)", "", "![traces](traces.png)",
              "", "Per-iteration history: [history.csv](history.csv); reconstruction: `reconstruction.npz`.", ""]
    write_text(out / "report.md", "\n".join(lines))
    return summary


CONFIG_KEYS = ("forward", "surrogate", "initial", "density", "bounds", "invert_density", "density_bounds", "bands", "iterations", "optimizer",
               "learning_rate", "shots_per_iteration", "tv", "tv_epsilon", "precondition",
               "per_emitter_wavelet", "min_offset", "hybrid", "refresh_every", "solver_iterations",
               "trust_radius", "guard_tolerance", "check_every", "guard_hold", "scale", "scheme", "fd_order",
               "pml_size", "gradient_checkpoint", "seed", "checkpoint", "progress")
OBSERVED_KEYS = ("traces", "shape", "spacing", "elements", "signal", "dt")


def read_observed(path: str | Path) -> tuple[Acquisition, np.ndarray, dict[str, np.ndarray]]:
    """``(acquisition, traces, extras)`` from an ``.npz`` holding ``traces`` ``(n_shots, nt, n_el)``,
    the acquisition (``shape``, ``spacing`` m, ``elements`` m, ``signal``, ``dt`` s, optional
    ``emitters``) and optionally ``water``, ``truth`` and ``density``."""
    data = read_observed_npz(path, OBSERVED_KEYS, ("emitters", "water", "truth", "density"))
    traces = data["traces"]
    grid = Grid(tuple(int(n) for n in data["shape"]), float(data["spacing"]))
    acq = Acquisition(grid, data["elements"], data["signal"], float(data["dt"]), int(np.shape(traces)[1]),
                      emitters=data.get("emitters"))
    return acq, traces, {k: data[k] for k in ("water", "truth", "density") if k in data}


def run_config(config: dict[str, Any], observed_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """``pdesurrogate invert usct``: invert with the options of ``config`` (keys :data:`CONFIG_KEYS`,
    at top level or in an ``[invert]`` table; ``checkpoint = true`` resumes from ``out_dir/checkpoint``)
    and write :func:`save_outputs`."""
    options = dict(config.get("invert", config))
    unknown = sorted(set(options) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed: {list(CONFIG_KEYS)}")
    acq, traces, extras = read_observed(observed_path)
    for key in ("bounds", "density_bounds", "bands", "iterations"):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    density = options.pop("density", extras.get("density", 1000.0))
    checkpoint = Path(out_dir) / "checkpoint" if options.pop("checkpoint", False) else None
    result = invert(acq, traces, water=extras.get("water"), truth=extras.get("truth"), density=density,
                    checkpoint_dir=checkpoint, **options)
    settings = SolverSettings(options.get("scheme", "fd"), options.get("fd_order", 4), options.get("pml_size"))
    return save_outputs(acq, result, traces, out_dir, truth=extras.get("truth"), density=density,
                        settings=settings.resolve(acq))
