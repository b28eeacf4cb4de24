"""Sources: total-field/scattered-field plane wave and Gaussian beam, and a point dipole current.

Every source has a time waveform, ``waveform="cw"`` (a sine switched on by a raised-cosine ramp
of ``ramp_cycles`` periods, :func:`solvers.signals.ramped_cw`) or ``"pulse"`` (a
Gaussian-modulated sine of fractional bandwidth ``bandwidth``,
:func:`solvers.signals.gaussian_pulse`), and an ``amplitude`` (a pytree leaf, differentiable).

A source is turned into an :class:`Injection`: sparse additive terms in the H and E updates at
fixed grid indices, each with a weight and a time delay, so every step costs one waveform
evaluation per injection point.

TFSF (plane wave, Gaussian beam): the grid splits into a total-field box (inside
``pml_size + tfsf_margin`` cells from each non-periodic edge) and the scattered-field region
outside. For each curl stencil that straddles the box boundary the incident field is added or
subtracted, so the incident wave exists only inside the box. The plane wave's incident field is
the exact discrete plane wave of the Yee scheme at the source frequency (numerical wavenumber
from the Yee dispersion relation, discrete E/H ratio), so in the continuous-wave steady state the
box leaks nothing; a pulse's other frequencies leak at the level of the numerical dispersion.
The incident phase is zero at ``origin`` (default: the grid centre): the incident phasor is
``amplitude * exp(i k_num khat . (x - origin))`` with the ``exp(-i omega t)`` convention.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from solvers import signals
from solvers.grid import Grid
from solvers.maxwell.medium import C0
from solvers.maxwell.yee import AXIS_NAMES, Fields, Mode, YeeOperator, curl_terms, offset
from solvers.points import PointSampler
from solvers.validate import check_choice, check_positive_finite_scalar

WAVEFORMS = ("cw", "pulse")


def waveform_fn(kind: str, frequency: float, ramp_cycles: float, bandwidth: float):
    """The source time function ``g(t)`` (t in s, any shape)."""
    if kind == "cw":
        return lambda t: signals.ramped_cw(t, frequency, ramp_cycles)
    return lambda t: signals.gaussian_pulse(t, frequency, bandwidth)


class Injection(eqx.Module):
    """Sparse source terms of one source on one grid.

    Per step ``n`` (time ``t_n = n dt``):
    ``h.flat[h_index] -= S * amplitude * h_weight * g(t_n - h_delay)`` after the H update and
    ``e.flat[e_index] += cb.flat[e_index] * amplitude * e_weight * g(t_n + dt/2 - e_delay)``
    after the E update.

    Attributes:
        amplitude: scalar source amplitude (differentiable).
        h_index, h_weight, h_delay: flat indices into the H stack, weights, delays in s; shape ``(m_h,)``.
        e_index, e_weight, e_delay: the same for the E stack, shape ``(m_e,)``.
        kind, frequency, ramp_cycles, bandwidth: the waveform (static).
        time_shift: the waveform ``g(t - time_shift)`` whose phasor normalises the result (s).
    """

    amplitude: jax.Array
    h_index: jax.Array
    h_weight: jax.Array
    h_delay: jax.Array
    e_index: jax.Array
    e_weight: jax.Array
    e_delay: jax.Array
    kind: str = eqx.field(static=True)
    frequency: float = eqx.field(static=True)
    ramp_cycles: float = eqx.field(static=True)
    bandwidth: float = eqx.field(static=True)
    time_shift: float = eqx.field(static=True)

    def g(self, t: jax.Array) -> jax.Array:
        """Unit-amplitude waveform at times ``t``."""
        return waveform_fn(self.kind, self.frequency, self.ramp_cycles, self.bandwidth)(t)

    def apply_h(self, h: jax.Array, t: jax.Array, courant: float) -> jax.Array:
        """Add the H-update terms at E time ``t`` to the H stack."""
        if self.h_index.shape[0] == 0:
            return h
        vals = (courant * self.amplitude) * self.h_weight * self.g(t - self.h_delay)
        return h.reshape(-1).at[self.h_index].add(-vals.astype(h.dtype)).reshape(h.shape)

    def apply_e(self, e: jax.Array, cb: jax.Array, t_half: jax.Array) -> jax.Array:
        """Add the E-update terms at H time ``t_half`` to the E stack."""
        if self.e_index.shape[0] == 0:
            return e
        vals = self.amplitude * self.e_weight * self.g(t_half - self.e_delay) * cb.reshape(-1)[self.e_index]
        return e.reshape(-1).at[self.e_index].add(vals.astype(e.dtype)).reshape(e.shape)


def _check_waveform(kind: str, ramp_cycles: float, bandwidth: float) -> None:
    check_choice("waveform", kind, WAVEFORMS)
    check_positive_finite_scalar("ramp_cycles", ramp_cycles)
    check_positive_finite_scalar("bandwidth", bandwidth)


def numerical_wavenumber(direction: np.ndarray, omega: float, dt: float, spacing: float,
                         permittivity: float) -> float:
    """Wavenumber (rad/m) of a Yee-grid plane wave travelling along unit ``direction`` at ``omega``.

    Solves ``sum_a sin^2(k d_a dx / 2) = eps (dx / (c0 dt))^2 sin^2(omega dt / 2)`` by bisection.
    """
    rhs = permittivity * (spacing / (C0 * dt)) ** 2 * np.sin(omega * dt / 2) ** 2
    hi = np.pi / (spacing * np.max(np.abs(direction)))
    if np.sum(np.sin(hi * direction * spacing / 2) ** 2) < rhs:
        raise ValueError("wavelength is not resolved by the grid (numerical dispersion has no real solution); "
                         "it must span at least 2 cells")
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.sum(np.sin(mid * direction * spacing / 2) ** 2) < rhs:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _box_masks(shape, mode: Mode, periodic, lo: int, hi: int):
    def mask(kind, comp):
        inside = np.ones(shape, bool)
        off = offset(kind, comp, mode.ndim)
        for a, n in enumerate(shape):
            if periodic[a]:
                continue
            pos = np.arange(n) + off[a]
            ok = (pos >= lo[a]) & (pos <= hi[a])
            bshape = [1] * len(shape)
            bshape[a] = n
            inside = inside & ok.reshape(bshape)
        return inside.astype(float)

    return [mask("e", c) for c in mode.e], [mask("h", c) for c in mode.h]


def _shifted(m: np.ndarray, axis: int, shift: int, periodic: bool) -> np.ndarray:
    """``out[i] = m[i + shift]`` along ``axis`` (zero beyond a non-periodic edge)."""
    if shift == 0:
        return m
    if periodic:
        return np.roll(m, -shift, axis)
    out = np.zeros_like(m)
    n = m.shape[axis]
    src = [slice(None)] * m.ndim
    dst = [slice(None)] * m.ndim
    if shift > 0:
        src[axis], dst[axis] = slice(shift, n), slice(0, n - shift)
    else:
        src[axis], dst[axis] = slice(0, n + shift), slice(-shift, n)
    out[tuple(dst)] = m[tuple(src)]
    return out


def tfsf_stencil(shape, mode: Mode, periodic, lo, hi):
    """The TFSF correction pattern of a box ``lo <= position <= hi`` (cells, per axis).

    Returns two lists (H corrections, E corrections) of ``(flat target index, source component,
    source node index (m, ndim), weight)`` numpy arrays: the incident field of the source
    component at the source node, times the weight, is added to the curl at the target.
    """
    me, mh = _box_masks(shape, mode, periodic, lo, hi)
    size = int(np.prod(shape))
    out = {"h": [], "e": []}
    for kind, (tgt_masks, src_masks, src_comps, shifts) in {
        "h": (mh, me, mode.e, ((1, 1.0), (0, -1.0))),
        "e": (me, mh, mode.h, ((0, 1.0), (-1, -1.0))),
    }.items():
        for o, a, i, s in curl_terms(mode, kind):
            for shift, sgn in shifts:
                w = sgn * s * (tgt_masks[o] - _shifted(src_masks[i], a, shift, periodic[a]))
                nz = np.nonzero(w)
                if len(nz[0]) == 0:
                    continue
                tgt = o * size + np.ravel_multi_index(nz, shape)
                node = np.stack(nz, axis=1)
                node[:, a] += shift
                if periodic[a]:
                    node[:, a] %= shape[a]
                out[kind].append((tgt, src_comps[i], node, w[nz]))
    return out["h"], out["e"]


def _tfsf_injection(grid: Grid, mode: Mode, periodic, box, dt: float, amp_phase, p_e: np.ndarray,
                    p_h: np.ndarray, omega: float, amplitude,
                    kind, frequency, ramp_cycles, bandwidth, dtype) -> Injection:
    """Assemble a TFSF injection from an incident field ``amp_phase(pos_m) -> (|u|, arg u)``.

    ``box``: ``(lo, hi)`` per-axis bounds of the total-field box in cells (``-inf``/``inf`` for open sides).
    ``p_e``/``p_h``: Cartesian E and H~ polarisation factors (3-vectors) of the incident field.
    """
    lo, hi = box
    h_parts, e_parts = tfsf_stencil(grid.shape, mode, periodic, lo, hi)
    packs = {}
    for name, parts, kind_src, pol in (("h", h_parts, "e", p_e), ("e", e_parts, "h", p_h)):
        tgts, ws, phases = [], [], []
        for tgt, comp, node, w in parts:
            pos = (node + offset(kind_src, comp, grid.ndim)) * grid.spacing
            amp, ph = amp_phase(pos)
            tgts.append(tgt)
            ws.append(w * pol[comp] * amp)
            phases.append(ph)
        packs[name] = [np.concatenate(x) if x else np.zeros(0) for x in (tgts, ws, phases)]
    all_ph = np.concatenate([packs["h"][2], packs["e"][2]])
    ph_min = float(all_ph.min()) if all_ph.size else 0.0
    return Injection(
        amplitude=jnp.asarray(amplitude, dtype),
        h_index=jnp.asarray(packs["h"][0], jnp.int32), h_weight=jnp.asarray(packs["h"][1], dtype),
        h_delay=jnp.asarray((packs["h"][2] - ph_min) / omega, dtype),
        e_index=jnp.asarray(packs["e"][0], jnp.int32), e_weight=jnp.asarray(packs["e"][1], dtype),
        e_delay=jnp.asarray((packs["e"][2] - ph_min) / omega, dtype),
        kind=kind, frequency=frequency, ramp_cycles=ramp_cycles, bandwidth=bandwidth,
        time_shift=-ph_min / omega,
    )


def _direction(angle: float, ndim: int) -> np.ndarray:
    d = np.zeros(ndim)
    d[0], d[1] = np.cos(angle), np.sin(angle)
    d[np.abs(d) < 1e-15] = 0.0
    return d


def _polarisations(mode: Mode, ktilde: np.ndarray, eps_b: float) -> tuple[np.ndarray, np.ndarray]:
    """E and H~ factors of a discrete plane wave: TM/3D E = z; TE H~ = z."""
    k3 = np.zeros(3)
    k3[: len(ktilde)] = ktilde
    z = np.array([0.0, 0.0, 1.0])
    if mode.name == "TE":
        return -np.cross(k3, z) / eps_b, z
    return z, np.cross(k3, z)


class _IncidentWave(eqx.Module):
    """Shared fields of the TFSF sources."""

    wavelength: float = eqx.field(static=True)
    angle: float = eqx.field(static=True)
    amplitude: jax.Array | float = 1.0
    waveform: str = eqx.field(static=True, default="cw")
    ramp_cycles: float = eqx.field(static=True, default=5.0)
    bandwidth: float = eqx.field(static=True, default=0.8)
    background_permittivity: float = eqx.field(static=True, default=1.0)

    @property
    def frequency(self) -> float:
        """Source frequency ``c0 / wavelength`` in Hz."""
        return C0 / self.wavelength

    def _setup(self, grid: Grid, mode: Mode, periodic, dt: float):
        d = _direction(self.angle, grid.ndim)
        for a in range(grid.ndim):
            if periodic[a] and d[a] != 0.0:
                raise ValueError(f"angle must make the wave travel across periodic axis {a} at normal incidence "
                                 f"(direction component 0), got angle={self.angle}")
        omega = 2 * np.pi * self.frequency
        k = numerical_wavenumber(d, omega, dt, grid.spacing, self.background_permittivity)
        ktilde = (C0 * dt / grid.spacing) * np.sin(k * d * grid.spacing / 2) / np.sin(omega * dt / 2)
        p_e, p_h = _polarisations(mode, ktilde, self.background_permittivity)
        return d, omega, k, p_e, p_h


class PlaneWave(_IncidentWave):
    """A total-field/scattered-field plane wave of unit (``amplitude``) incident amplitude.

    Attributes:
        wavelength: vacuum wavelength in m (> 0).
        angle: in-plane propagation angle in rad, direction ``(cos, sin)`` in the (x, y) plane
            (3D: ``(cos, sin, 0)``); 0 travels along +x.
        amplitude: incident amplitude (TM/3D: Ez; TE: ``eta0 Hz``).
        waveform, ramp_cycles, bandwidth: see the module docstring.
        background_permittivity: relative permittivity around the TFSF boundary (the medium
            there must be this value, lossless).
        origin: point (m) where the incident phase is zero; ``None`` is the grid centre.
    """

    origin: tuple[float, ...] | None = eqx.field(static=True, default=None)

    def __init__(self, wavelength: float, angle: float = 0.0, amplitude=1.0, waveform: str = "cw",
                 ramp_cycles: float = 5.0, bandwidth: float = 0.8, background_permittivity: float = 1.0,
                 origin=None):
        self.wavelength = check_positive_finite_scalar("wavelength", wavelength)
        if not np.isfinite(angle):
            raise ValueError(f"angle must be a finite number in rad, got {angle!r}")
        self.angle = float(angle)
        self.amplitude = amplitude
        _check_waveform(waveform, ramp_cycles, bandwidth)
        self.waveform, self.ramp_cycles, self.bandwidth = waveform, float(ramp_cycles), float(bandwidth)
        self.background_permittivity = check_positive_finite_scalar("background_permittivity",
                                                                    background_permittivity)
        self.origin = None if origin is None else tuple(float(v) for v in origin)

    def injection(self, grid: Grid, mode: Mode, periodic, pml_size: int, dt: float, box, dtype) -> Injection:
        """Sparse TFSF terms on ``grid``."""
        d, omega, k, p_e, p_h = self._setup(grid, mode, periodic, dt)
        origin = (np.array(grid.extent) / 2 if self.origin is None
                  else grid.check_points("origin", np.array(self.origin))[0])

        def amp_phase(pos):
            return np.ones(len(pos)), k * ((pos - origin) @ d)

        return _tfsf_injection(grid, mode, periodic, box, dt, amp_phase, p_e, p_h, omega,
                               self.amplitude, self.waveform, self.frequency, self.ramp_cycles, self.bandwidth,
                               dtype)


class GaussianBeam(_IncidentWave):
    """A TFSF paraxial Gaussian beam with waist ``waist`` at ``focus``, travelling at ``angle``.

    Incident field (2D) ``sqrt(q0 / q) exp(i k xi + i k eta^2 / (2 q))``, ``q = xi - i zR``,
    ``zR = k waist^2 / 2`` (3D: ``q0 / q``), with ``xi``/``eta`` the distances along/across the
    beam axis from the focus; E/H~ ratio as for the plane wave. Unit amplitude and zero phase at
    the focus. Paraxial, so waists of a few wavelengths or more leak little through the box.

    Attributes:
        waist: 1/e field radius at the focus in m (> 0); focus: focus position in m, ``(ndim,)``.
        Others as :class:`PlaneWave`.
    """

    waist: float = eqx.field(static=True, default=1.0)
    focus: tuple[float, ...] = eqx.field(static=True, default=(0.0, 0.0))

    def __init__(self, wavelength: float, waist: float, focus, angle: float = 0.0, amplitude=1.0,
                 waveform: str = "cw", ramp_cycles: float = 5.0, bandwidth: float = 0.8,
                 background_permittivity: float = 1.0):
        self.wavelength = check_positive_finite_scalar("wavelength", wavelength)
        self.waist = check_positive_finite_scalar("waist", waist)
        if not np.isfinite(angle):
            raise ValueError(f"angle must be a finite number in rad, got {angle!r}")
        self.angle = float(angle)
        self.focus = tuple(float(v) for v in np.ravel(focus))
        self.amplitude = amplitude
        _check_waveform(waveform, ramp_cycles, bandwidth)
        self.waveform, self.ramp_cycles, self.bandwidth = waveform, float(ramp_cycles), float(bandwidth)
        self.background_permittivity = check_positive_finite_scalar("background_permittivity",
                                                                    background_permittivity)

    def injection(self, grid: Grid, mode: Mode, periodic, pml_size: int, dt: float, box, dtype) -> Injection:
        """Sparse TFSF terms on ``grid``."""
        focus = grid.check_points("focus", np.array(self.focus))[0]
        d, omega, k, p_e, p_h = self._setup(grid, mode, periodic, dt)
        z_r = k * self.waist**2 / 2

        def amp_phase(pos):
            rel = pos - focus
            xi = rel @ d
            eta2 = np.sum(rel**2, axis=1) - xi**2
            q = xi - 1j * z_r
            pre = (-1j * z_r / q) ** (0.5 if grid.ndim == 2 else 1.0)
            u = pre * np.exp(1j * k * eta2 / (2 * q))
            return np.abs(u), k * xi + np.angle(u)

        return _tfsf_injection(grid, mode, periodic, box, dt, amp_phase, p_e, p_h, omega,
                               self.amplitude, self.waveform, self.frequency, self.ramp_cycles, self.bandwidth,
                               dtype)


class PointDipole(eqx.Module):
    """A point electric current along one E component at an off-grid ``position``.

    It adds ``amplitude * g(t)`` (linear interpolation weights) to the undivided curl-H term of
    the chosen E component, i.e. an impressed current density ``J = -amplitude g / (eta0 dx)``.
    Phasors of a dipole run are normalised by the waveform's phasor (unit-amplitude harmonic drive).

    Attributes:
        wavelength: vacuum wavelength in m; position: (ndim,) in m, outside the PML.
        component: "x", "y" or "z" among the mode's E components (default: TM/3D "z", TE "y").
    """

    wavelength: float = eqx.field(static=True)
    position: tuple[float, ...] = eqx.field(static=True)
    amplitude: jax.Array | float = 1.0
    component: str | None = eqx.field(static=True, default=None)
    waveform: str = eqx.field(static=True, default="cw")
    ramp_cycles: float = eqx.field(static=True, default=5.0)
    bandwidth: float = eqx.field(static=True, default=0.8)

    def __init__(self, wavelength: float, position, amplitude=1.0, component: str | None = None,
                 waveform: str = "cw", ramp_cycles: float = 5.0, bandwidth: float = 0.8):
        self.wavelength = check_positive_finite_scalar("wavelength", wavelength)
        self.position = tuple(float(v) for v in np.ravel(position))
        self.amplitude = amplitude
        if component is not None:
            check_choice("component", component, tuple(AXIS_NAMES))
        self.component = component
        _check_waveform(waveform, ramp_cycles, bandwidth)
        self.waveform, self.ramp_cycles, self.bandwidth = waveform, float(ramp_cycles), float(bandwidth)

    @property
    def frequency(self) -> float:
        """Source frequency ``c0 / wavelength`` in Hz."""
        return C0 / self.wavelength

    def injection(self, grid: Grid, mode: Mode, periodic, pml_size: int, dt: float, box, dtype) -> Injection:
        """Sparse current terms on ``grid``."""
        comp_name = self.component or ("y" if mode.name == "TE" else "z")
        comp = AXIS_NAMES.index(comp_name)
        if comp not in mode.e:
            raise ValueError(f"component must be one of {[AXIS_NAMES[c] for c in mode.e]} in mode {mode.name}, "
                             f"got {comp_name!r}")
        pos = np.array(self.position)
        grid.check_points("position", pos, margin=pml_size)
        shifted = np.clip(pos - offset("e", comp, grid.ndim) * grid.spacing, 0.0, None)
        sampler = PointSampler(grid, shifted[None, :], name="position")
        k = mode.e.index(comp)
        idx = k * grid.size + sampler.flat_index[0]
        return Injection(
            amplitude=jnp.asarray(self.amplitude, dtype),
            h_index=jnp.zeros(0, jnp.int32), h_weight=jnp.zeros(0, dtype), h_delay=jnp.zeros(0, dtype),
            e_index=jnp.asarray(idx, jnp.int32), e_weight=jnp.asarray(sampler.weights[0], dtype),
            e_delay=jnp.zeros(len(idx), dtype),
            kind=self.waveform, frequency=self.frequency, ramp_cycles=self.ramp_cycles, bandwidth=self.bandwidth,
            time_shift=dt / 2,
        )


def driven_step(op: YeeOperator, inj: Injection, f: Fields, t: jax.Array, dt: float) -> Fields:
    """One leapfrog step from ``(E(t), H~(t - dt/2))`` with the source terms of ``inj``.

    Args:
        op: the update coefficients; f: the fields.
        t: time of the incoming E field in s.
    Returns:
        the fields ``(E(t + dt), H~(t + dt/2))``.
    """
    f = op.update_h(f)
    f = Fields(f.e, inj.apply_h(f.h, t, op.courant), f.psi_e, f.psi_h)
    f = op.update_e(f)
    return Fields(inj.apply_e(f.e, op.cb, t + dt / 2), f.h, f.psi_e, f.psi_h)
