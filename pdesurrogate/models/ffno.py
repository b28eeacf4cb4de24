"""Factorised Fourier neural operator, F-FNO (Tran, Mathews, Xie & Ong, ICLR 2023).

Each layer sums 1D spectral convolutions along each axis and uses the improved residual
``h <- h + MLP(sum_d K_d h)``, so parameters scale with ``sum_d modes[d]`` rather than
``prod_d modes[d]``: the variant for large grids and 3D. One sample, channels first.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from .fno import _check_padding, _check_width_depth
from .layers import (FactorizedSpectralConv, FieldIO, PointwiseLinear, _check_modes, domain_crop, domain_pad, gelu,
                     generator)


class FFNO(nnx.Module):
    """F-FNO: lift -> ``depth`` factorised Fourier layers with residual MLPs -> projection.

    Args: as :class:`~.fno.FNO` (``modes`` per axis, ``width``, ``depth``, ``padding`` in cells
    per side, ``coord_features``, normalisation statistics, ``seed``); ``mlp_ratio`` sets the
    hidden width of each layer's feed-forward block (``mlp_ratio * width``).

    Call: ``x`` of shape ``(in_channels, *spatial)`` -> ``(out_channels, *spatial)`` in ``x.dtype``;
    hidden layers compute in the parameters' dtype (bfloat16 parameters give a bf16 forward;
    FFTs always run in float32 or wider).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], width: int = 32,
                 depth: int = 4, padding: int | Sequence[int] = 0, coord_features: bool = True,
                 mlp_ratio: int = 2, projection_channels: int | None = None,
                 in_mean: Sequence[float] | None = None, in_std: Sequence[float] | None = None,
                 out_mean: Sequence[float] | None = None, out_std: Sequence[float] | None = None,
                 seed: int = 0):
        modes = _check_modes(modes)
        _check_width_depth(width, depth)
        if mlp_ratio < 1:
            raise ValueError(f"mlp_ratio must be >= 1, got {mlp_ratio}")
        rng = generator(seed)
        self.io = FieldIO(in_channels, out_channels, len(modes), coord_features=coord_features,
                          in_mean=in_mean, in_std=in_std, out_mean=out_mean, out_std=out_std)
        self.padding = _check_padding(padding, len(modes))
        hidden = projection_channels or 4 * width
        self.lift = PointwiseLinear(self.io.encoded_channels, width, rng)
        self.spectral = nnx.List([FactorizedSpectralConv(width, modes, rng) for _ in range(depth)])
        self.mlp_in = nnx.List([PointwiseLinear(width, mlp_ratio * width, rng) for _ in range(depth)])
        self.mlp_out = nnx.List([PointwiseLinear(mlp_ratio * width, width, rng) for _ in range(depth)])
        self.proj_hidden = PointwiseLinear(width, hidden, rng)
        self.proj_out = PointwiseLinear(hidden, out_channels, rng)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = domain_pad(self.lift(self.io.encode(x).astype(self.lift.kernel.dtype)), self.padding)
        for k, a, b in zip(self.spectral, self.mlp_in, self.mlp_out):
            h = h + b(gelu(a(k(h))))
        h = domain_crop(h, self.padding)
        return self.io.decode(self.proj_out(gelu(self.proj_hidden(h))).astype(x.dtype))
