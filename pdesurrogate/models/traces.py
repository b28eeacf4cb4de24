"""A trace head: a field model read out at receivers as band-limited time series.

:class:`TraceNet` turns any field model of the registry (the *backbone*, ``(C_in, *spatial) ->
(latent, *spatial)``) into a map ``(C_in, *spatial) -> (n_time, n_receivers)`` of sensor traces:

1. the backbone's latent channels are interpolated (multilinear) at the receiver positions;
2. a shared per-receiver MLP maps the ``latent`` features to ``n_coefficients`` coefficients of an
   orthonormal DCT-II basis in time;
3. the inverse DCT of the zero-padded coefficients gives ``n_time`` samples.

Keeping ``n_coefficients`` DCT terms keeps the frequencies up to ``n_coefficients / (2 T)`` (``T``
the trace duration): the head predicts band-limited traces with far fewer outputs than time
samples (USCT traces at 100 samples per period need ~6 coefficients per period of bandwidth), and
the DCT's even extension avoids the wrap-around ringing of a truncated Fourier series.
:func:`dct_bandwidth_coefficients` gives the count for a bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.fft as jfft
import numpy as np
from flax import nnx

from solvers.grid import Grid
from solvers.points import PointSampler

from .field_models import build_field_model
from .layers import PointwiseLinear, Stat, gelu, generator


def dct_bandwidth_coefficients(n_time: int, dt: float, max_frequency: float) -> int:
    """Orthonormal DCT-II coefficients of an ``n_time``-sample trace (step ``dt`` in s) that span
    the frequencies up to ``max_frequency`` (Hz): coefficient ``k`` oscillates at ``k / (2 n_time dt)``."""
    if n_time < 1 or not (dt > 0) or not (max_frequency > 0):
        raise ValueError(f"n_time >= 1, dt > 0 s and max_frequency > 0 Hz needed, got {n_time}, {dt}, {max_frequency}")
    return int(min(n_time, math.ceil(2 * n_time * dt * max_frequency) + 1))


def band_limit(traces: np.ndarray, n_coefficients: int, axis: int = -1) -> np.ndarray:
    """``traces`` projected on their first ``n_coefficients`` orthonormal DCT-II terms along ``axis``
    (what a :class:`TraceNet` with that many coefficients can represent at best)."""
    import scipy.fft

    c = scipy.fft.dct(np.asarray(traces, np.float64), type=2, axis=axis, norm="ortho")
    keep = np.arange(c.shape[axis]) < n_coefficients
    c = c * keep.reshape([-1 if a == (axis % c.ndim) else 1 for a in range(c.ndim)])
    return scipy.fft.idct(c, type=2, axis=axis, norm="ortho")


def distance_channels(shape: Sequence[int], spacing: float, points: np.ndarray, scale: float) -> jax.Array:
    """Distance maps ``|x - p| / scale`` ``(n_points, 1, *shape)`` from each point ``p`` (m, ``(n, ndim)``).

    The emitter encoding of a USCT trace operator: the map fixes the emitting element and gives
    the network the straight-ray geometry (``scale``: e.g. the ring radius, so values are ~0-2).
    """
    if not (scale > 0):
        raise ValueError(f"scale must be > 0 m, got {scale}")
    axes = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) * spacing for n in shape], indexing="ij")
    x = jnp.stack(axes)  # (ndim, *shape)
    p = jnp.asarray(points, jnp.float32).reshape((-1, len(shape)) + (1,) * len(shape))
    return (jnp.sqrt(jnp.sum((x[None] - p) ** 2, axis=1)) / scale)[:, None]


class TraceNet(nnx.Module):
    """Backbone field model + receiver readout + DCT time basis (see the module docstring).

    Args:
        backbone: registry config ``{"kind": "fno" | "ffno" | "unet", ...}`` of the field model;
            its ``out_channels`` is the latent width read at the receivers.
        receivers: ``(n_receivers, ndim)`` receiver positions in grid-index units (position in m
            divided by the spacing; off-grid allowed).
        n_time: samples per output trace.
        n_coefficients: DCT-II coefficients predicted per trace (``1..n_time``).
        hidden: hidden width of the per-receiver MLP.
        out_std: typical RMS of a target trace (physical units, e.g. Pa); outputs are scaled by it.
        seed: initialisation seed of the head (the backbone has its own).

    Call: ``x`` ``(C_in, *spatial)`` -> traces ``(n_time, n_receivers)`` in ``x.dtype``.
    """

    def __init__(self, backbone: dict[str, Any], receivers: Sequence[Sequence[float]], n_time: int,
                 n_coefficients: int, hidden: int = 128, out_std: float = 1.0, seed: int = 0):
        recv = np.asarray(receivers, np.float64)
        if recv.ndim != 2 or recv.shape[0] < 1 or recv.shape[1] not in (2, 3):
            raise ValueError(f"receivers must have shape (n_receivers, 2 or 3), got {recv.shape}")
        if not (1 <= n_coefficients <= n_time):
            raise ValueError(f"n_coefficients must lie in [1, n_time={n_time}], got {n_coefficients}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not (np.isfinite(out_std) and out_std > 0):
            raise ValueError(f"out_std must be positive and finite, got {out_std}")
        latent = backbone.get("out_channels") if isinstance(backbone, dict) else None
        if not isinstance(latent, int) or latent < 1:
            raise ValueError(f"backbone must be a model config with out_channels >= 1, got {backbone!r}")
        self.backbone = build_field_model(backbone)
        self.receivers = tuple(tuple(float(v) for v in r) for r in recv)  # static (hashable)
        self.n_time, self.n_coefficients = int(n_time), int(n_coefficients)
        rng = generator(seed)
        self.head_in = PointwiseLinear(latent, hidden, rng)
        self.head_hidden = PointwiseLinear(hidden, hidden, rng)
        self.head_out = PointwiseLinear(hidden, n_coefficients, rng)
        # unit-variance coefficients -> traces of RMS out_std (orthonormal DCT: energy is kept)
        self.scale = Stat(jnp.asarray(out_std * math.sqrt(n_time / n_coefficients), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        z = self.backbone(x)  # (latent, *spatial)
        sampler = PointSampler(Grid(tuple(z.shape[1:]), 1.0), np.asarray(self.receivers), name="receivers")
        feats = jax.vmap(sampler.gather)(z)  # (latent, n_receivers)
        w = self.head_in.kernel[...]
        h = gelu(self.head_in(feats.astype(w.dtype)))
        h = gelu(self.head_hidden(h))
        coefs = self.head_out(h).astype(jnp.promote_types(h.dtype, jnp.float32))  # (n_coefficients, n_receivers)
        traces = jfft.idct(coefs, type=2, n=self.n_time, axis=0, norm="ortho")
        return (traces * self.scale[...]).astype(x.dtype)
