"""U-Net baseline (Ronneberger et al. 2015, in the modern PDEArena form: GELU, group norm).

One sample, channels first: ``(in_channels, *spatial) -> (out_channels, *spatial)``, 2D or 3D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .layers import Conv, FieldIO, GroupNorm, gelu, generator


class _ConvBlock(nnx.Module):
    """Two (3x3 conv -> group norm -> GELU) layers on ``(C, *spatial)``."""

    def __init__(self, c_in: int, c_out: int, ndim: int, rng: np.random.Generator):
        k = (3,) * ndim
        groups = math.gcd(8, c_out)
        self.conv1 = Conv(c_in, c_out, k, rng)
        self.norm1 = GroupNorm(c_out, groups)
        self.conv2 = Conv(c_out, c_out, k, rng)
        self.norm2 = GroupNorm(c_out, groups)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = gelu(self.norm1(self.conv1(x)))
        return gelu(self.norm2(self.conv2(x)))


def _downsample(x: jax.Array) -> jax.Array:
    """2x average pooling of ``(C, *spatial)``."""
    shape = [x.shape[0]]
    for n in x.shape[1:]:
        shape += [n // 2, 2]
    return x.reshape(shape).mean(axis=tuple(range(2, len(shape), 2)))


def _upsample(x: jax.Array) -> jax.Array:
    """2x nearest-neighbour upsampling of ``(C, *spatial)``."""
    for axis in range(1, x.ndim):
        x = jnp.repeat(x, 2, axis=axis)
    return x


class UNet(nnx.Module):
    """U-Net with ``levels`` resolutions; channels double at each coarser level.

    Args:
        in_channels, out_channels: physical channels.
        ndim: spatial dimension (2 or 3).
        width: channels at the finest level.
        levels: number of resolutions (>= 1); each spatial size must be divisible by
            ``2 ** (levels - 1)``.
        coord_features, in_mean, in_std, out_mean, out_std: as :class:`~.fno.FNO`.
        seed: parameter initialisation seed.

    Call: ``x`` of shape ``(in_channels, *spatial)`` -> ``(out_channels, *spatial)`` in ``x.dtype``;
    hidden layers compute in the parameters' dtype.
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int = 2, width: int = 16, levels: int = 3,
                 coord_features: bool = True, in_mean: Sequence[float] | None = None,
                 in_std: Sequence[float] | None = None, out_mean: Sequence[float] | None = None,
                 out_std: Sequence[float] | None = None, seed: int = 0):
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        rng = generator(seed)
        self.io = FieldIO(in_channels, out_channels, ndim, coord_features=coord_features,
                          in_mean=in_mean, in_std=in_std, out_mean=out_mean, out_std=out_std)
        self.ndim, self.levels = int(ndim), int(levels)
        chans = [width * 2**i for i in range(levels)]
        self.down = nnx.List([_ConvBlock(self.io.encoded_channels if i == 0 else chans[i - 1], chans[i], ndim, rng)
                              for i in range(levels)])
        self.up_conv = nnx.List([Conv(chans[i + 1], chans[i], (3,) * ndim, rng) for i in range(levels - 1)])
        self.up = nnx.List([_ConvBlock(2 * chans[i], chans[i], ndim, rng) for i in range(levels - 1)])
        self.out = Conv(chans[0], out_channels, (1,) * ndim, rng)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.io.encode(x)
        factor = 2 ** (self.levels - 1)
        if any(n % factor for n in x.shape[1:]):
            raise ValueError(f"UNet with levels={self.levels} needs spatial sizes divisible by {factor}, "
                             f"got {x.shape[1:]}")
        h = h.astype(self.down[0].conv1.kernel.dtype)
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                h = _downsample(h)
            h = block(h)
            skips.append(h)
        for i in reversed(range(self.levels - 1)):
            h = self.up_conv[i](_upsample(h))
            h = self.up[i](jnp.concatenate([skips[i], h]))
        return self.io.decode(self.out(h).astype(x.dtype))
