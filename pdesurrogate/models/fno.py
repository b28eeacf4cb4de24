"""Fourier neural operator (Li et al., ICLR 2021) for 2D and 3D fields.

One sample, channels first: ``(in_channels, *spatial) -> (out_channels, *spatial)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from .layers import FieldIO, PointwiseLinear, SpectralConv, _check_modes, domain_crop, domain_pad, gelu, generator


def _check_padding(padding: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    pads = (int(padding),) * ndim if isinstance(padding, int) else tuple(int(p) for p in padding)
    if len(pads) != ndim or any(p < 0 for p in pads):
        raise ValueError(f"padding must be a non-negative int or {ndim} of them, got {padding}")
    return pads


def _check_width_depth(width: int, depth: int) -> None:
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")


class FNO(nnx.Module):
    """Fourier neural operator: lift -> ``depth`` Fourier layers -> two-layer projection.

    Each Fourier layer is ``h <- gelu(K h + W h)`` with ``K`` a :class:`SpectralConv` and ``W``
    a 1x1 convolution (no activation after the last layer).

    Args:
        in_channels, out_channels: physical channels (e.g. wave state + medium in, state out).
        modes: retained Fourier modes per spatial axis; its length (2 or 3) sets the dimension.
        width: hidden channels.
        depth: number of Fourier layers.
        padding: zero padding in cells per side on each spatial axis, applied after lifting and
            removed before projection, so that non-periodic domains do not wrap around.
        coord_features: append normalised grid coordinates to the input.
        projection_channels: hidden channels of the projection (default ``4 * width``).
        in_mean, in_std, out_mean, out_std: per-channel normalisation of inputs and outputs
            (physical units; ``None`` for identity). See :class:`~.layers.FieldIO`.
        seed: parameter initialisation seed.

    Call: ``x`` of shape ``(in_channels, *spatial)`` -> ``(out_channels, *spatial)`` in ``x.dtype``;
    hidden layers compute in the parameters' dtype (bfloat16 parameters give a bf16 forward;
    FFTs always run in float32 or wider).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], width: int = 32,
                 depth: int = 4, padding: int | Sequence[int] = 0, coord_features: bool = True,
                 projection_channels: int | None = None, in_mean: Sequence[float] | None = None,
                 in_std: Sequence[float] | None = None, out_mean: Sequence[float] | None = None,
                 out_std: Sequence[float] | None = None, seed: int = 0):
        modes = _check_modes(modes)
        _check_width_depth(width, depth)
        rng = generator(seed)
        self.io = FieldIO(in_channels, out_channels, len(modes), coord_features=coord_features,
                          in_mean=in_mean, in_std=in_std, out_mean=out_mean, out_std=out_std)
        self.padding = _check_padding(padding, len(modes))
        hidden = projection_channels or 4 * width
        self.lift = PointwiseLinear(self.io.encoded_channels, width, rng)
        self.spectral = nnx.List([SpectralConv(width, width, modes, rng) for _ in range(depth)])
        self.pointwise = nnx.List([PointwiseLinear(width, width, rng) for _ in range(depth)])
        self.proj_hidden = PointwiseLinear(width, hidden, rng)
        self.proj_out = PointwiseLinear(hidden, out_channels, rng)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = domain_pad(self.lift(self.io.encode(x).astype(self.lift.kernel.dtype)), self.padding)
        for i, (k, w) in enumerate(zip(self.spectral, self.pointwise)):
            h = k(h) + w(h)
            if i < len(self.spectral) - 1:
                h = gelu(h)
        h = domain_crop(h, self.padding)
        return self.io.decode(self.proj_out(gelu(self.proj_hidden(h))).astype(x.dtype))
