"""Source time signals, sampled on a time axis.

All functions take ``time`` in seconds (any shape) and return an array of the same shape and
dtype; frequencies are in Hz. Frequencies and cycle counts are static Python numbers (checked
up front); the result is differentiable with respect to ``time`` and ``delay``/``phase``.
"""

from __future__ import annotations

import jax.numpy as jnp

from solvers.validate import check_positive_finite_scalar


def tone_burst(time: jnp.ndarray, frequency: float, cycles: float = 3.0, delay: float = 0.0) -> jnp.ndarray:
    """A Hann-windowed sine burst of ``cycles`` periods that starts at ``delay``.

    ``s(t) = sin(2 pi f (t - delay)) * hann((t - delay) / (cycles / f))``, zero outside the window.
    """
    frequency = check_positive_finite_scalar("frequency", frequency)
    cycles = check_positive_finite_scalar("cycles", cycles)
    length = cycles / frequency
    tau = (time - delay) / length
    window = jnp.where((tau >= 0) & (tau <= 1), 0.5 - 0.5 * jnp.cos(2 * jnp.pi * tau), 0.0)
    return jnp.sin(2 * jnp.pi * frequency * (time - delay)) * window


def gaussian_pulse(time: jnp.ndarray, frequency: float, bandwidth: float = 0.8, delay: float | None = None
                   ) -> jnp.ndarray:
    """A Gaussian-modulated sine pulse with centre ``frequency`` and fractional -6 dB ``bandwidth``.

    ``s(t) = sin(2 pi f (t - t0)) * exp(-((t - t0) / tau)^2)`` with ``tau`` set so that the
    spectrum's full width at half maximum is ``bandwidth * frequency``. The default delay ``t0``
    (4 ``tau``) makes the pulse start from ~0 at ``t = 0``.
    """
    frequency = check_positive_finite_scalar("frequency", frequency)
    bandwidth = check_positive_finite_scalar("bandwidth", bandwidth)
    # Spectrum exp(-(pi tau df)^2) halves at df = sqrt(ln 2) / (pi tau); FWHM = 2 df.
    tau = 2 * jnp.sqrt(jnp.log(2.0)) / (jnp.pi * bandwidth * frequency)
    t0 = 4 * tau if delay is None else delay
    return jnp.sin(2 * jnp.pi * frequency * (time - t0)) * jnp.exp(-(((time - t0) / tau) ** 2))


def ramped_cw(time: jnp.ndarray, frequency: float, ramp_cycles: float = 5.0, phase: float = 0.0) -> jnp.ndarray:
    """A continuous wave ``sin(2 pi f t + phase)`` switched on by a smooth raised-cosine ramp.

    The ramp lasts ``ramp_cycles`` periods, which keeps the spectrum narrow so that running-DFT
    phasors converge.
    """
    frequency = check_positive_finite_scalar("frequency", frequency)
    ramp_cycles = check_positive_finite_scalar("ramp_cycles", ramp_cycles)
    ramp = jnp.clip(time * frequency / ramp_cycles, 0.0, 1.0)
    envelope = 0.5 - 0.5 * jnp.cos(jnp.pi * ramp)
    return envelope * jnp.sin(2 * jnp.pi * frequency * time + phase)
