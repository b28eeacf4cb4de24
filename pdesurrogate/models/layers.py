"""Building blocks shared by the surrogate models (flax nnx), each usable on its own.

Convention for every layer and model in :mod:`pdesurrogate.models`: **one sample, channels
first**, i.e. arrays of shape ``(C, *spatial)`` with ``len(spatial)`` in {2, 3}. Batches are
formed with ``jax.vmap`` (see :func:`pdesurrogate.models.apply_batched`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class Stat(nnx.Variable):
    """A non-trainable model variable (normalisation statistics); never touched by the optimizer."""


Seed = int | np.random.Generator


def generator(seed: Seed) -> np.random.Generator:
    """A numpy generator from an int seed (or the generator itself).

    Parameters are initialised on the host with numpy: on CPU, JAX's threefry random bits cost
    about a second of XLA compilation per parameter shape, numpy nothing.
    """
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))


def uniform_param(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> nnx.Param:
    """A float32 parameter drawn uniformly from ``[-bound, bound]``."""
    return nnx.Param(jnp.asarray(rng.uniform(-bound, bound, shape).astype(np.float32)))


def lecun_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> nnx.Param:
    """LeCun-uniform kernel (variance ``1 / fan_in``, ``fan_in = prod(shape[:-1])``)."""
    return uniform_param(rng, shape, math.sqrt(3.0 / math.prod(shape[:-1])))


def _check_modes(modes: Sequence[int], name: str = "modes") -> tuple[int, ...]:
    modes = tuple(int(m) for m in modes)
    if len(modes) not in (1, 2, 3) or any(m < 1 for m in modes):
        raise ValueError(f"{name} must be 1 to 3 positive integers (one per spatial axis), got {modes}")
    return modes


def _compute_dtype(x: jax.Array) -> jnp.dtype:
    """float32 for low-precision inputs (FFTs need it), otherwise the input's dtype."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _init_complex_weight(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> nnx.Param:
    """Complex weights stored as real arrays with a trailing (real, imag) axis of size 2."""
    return uniform_param(rng, shape + (2,), scale)


def _as_complex(w: jax.Array, dtype: jnp.dtype) -> jax.Array:
    w = w.astype(dtype)
    return jax.lax.complex(w[..., 0], w[..., 1])


class SpectralConv(nnx.Module):
    """Fourier-space convolution of an FNO layer: ``y = irfftn(W * rfftn(x))`` on retained modes.

    The real FFT runs over the last ``len(modes)`` axes. Along every axis but the last, the
    ``modes[d]`` lowest non-negative and ``modes[d]`` lowest negative frequencies are kept; along
    the last (halved) axis the ``modes[-1]`` lowest non-negative ones. All other modes are zeroed.

    Args:
        in_channels, out_channels: channel counts.
        modes: retained modes per spatial axis (1 to 3 axes); the grid must have at least
            ``2 * modes[d]`` points on each axis but the last and ``2 * modes[-1] - 1`` on the last.
        seed: an int seed or a numpy generator for the initial weights.

    Call: ``x`` of shape ``(in_channels, *spatial)`` -> ``(out_channels, *spatial)``, computed in
    float32 (or float64 for float64 input) and returned in the input's dtype.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], seed: Seed = 0):
        self.modes = _check_modes(modes)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        kept = tuple(2 * m for m in self.modes[:-1]) + (self.modes[-1],)
        self.weight = _init_complex_weight(generator(seed), (in_channels, out_channels) + kept,
                                           1.0 / (in_channels * out_channels))

    def __call__(self, x: jax.Array) -> jax.Array:
        nd = len(self.modes)
        if x.ndim != nd + 1 or x.shape[0] != self.in_channels:
            raise ValueError(f"SpectralConv expects x of shape ({self.in_channels}, <{nd} spatial>), got {x.shape}")
        spatial = x.shape[1:]
        if 2 * self.modes[-1] - 1 > spatial[-1]:
            raise ValueError(f"modes[{nd - 1}]={self.modes[-1]} needs at least {2 * self.modes[-1] - 1} "
                             f"grid points on the last axis, got {spatial[-1]}")
        dtype = _compute_dtype(x)
        axes = tuple(range(1, nd + 1))
        xf = jnp.fft.rfftn(x.astype(dtype), axes=axes)
        # keep low |k| with slices (no gathers): last axis [0, m); others [0, m) and [n - m, n)
        block = jax.lax.slice_in_dim(xf, 0, self.modes[-1], axis=nd)
        for d, (n, m) in enumerate(zip(spatial[:-1], self.modes[:-1])):
            if 2 * m > n:
                raise ValueError(f"modes[{d}]={m} needs at least {2 * m} grid points on axis {d}, got {n}")
            block = jnp.concatenate([jax.lax.slice_in_dim(block, 0, m, axis=d + 1),
                                     jax.lax.slice_in_dim(block, n - m, n, axis=d + 1)], axis=d + 1)
        out = jnp.einsum("i...,io...->o...", block, _as_complex(self.weight[...], dtype))
        # zero-fill the dropped modes
        for d, (n, m) in enumerate(zip(spatial[:-1], self.modes[:-1])):
            gap = list(out.shape)
            gap[d + 1] = n - 2 * m
            out = jnp.concatenate([jax.lax.slice_in_dim(out, 0, m, axis=d + 1), jnp.zeros(gap, out.dtype),
                                   jax.lax.slice_in_dim(out, m, 2 * m, axis=d + 1)], axis=d + 1)
        out = jnp.pad(out, [(0, 0)] * nd + [(0, xf.shape[-1] - self.modes[-1])])
        return jnp.fft.irfftn(out, s=spatial, axes=axes).astype(x.dtype)


class FactorizedSpectralConv(nnx.Module):
    """F-FNO spectral convolution (Tran et al., ICLR 2023): a sum of 1D spectral convolutions,
    one per spatial axis, ``y = sum_d irfft_d(W_d * rfft_d(x))``, keeping ``modes[d]`` modes on
    axis ``d``. Parameters grow as ``sum_d modes[d]`` instead of ``prod_d modes[d]``.

    Args:
        channels: input and output channels (F-FNO keeps the width).
        modes: retained modes per spatial axis; axis ``d`` needs ``2 * modes[d] - 1`` points.
        seed: an int seed or a numpy generator for the initial weights.

    Call: ``(channels, *spatial)`` -> ``(channels, *spatial)``.
    """

    def __init__(self, channels: int, modes: Sequence[int], seed: Seed = 0):
        self.modes = _check_modes(modes)
        self.channels = int(channels)
        rng = generator(seed)
        self.weights = nnx.List([_init_complex_weight(rng, (channels, channels, m), 1.0 / (channels * channels))
                                 for m in self.modes])

    def __call__(self, x: jax.Array) -> jax.Array:
        nd = len(self.modes)
        if x.ndim != nd + 1 or x.shape[0] != self.channels:
            raise ValueError(f"FactorizedSpectralConv expects ({self.channels}, <{nd} spatial>), got {x.shape}")
        dtype = _compute_dtype(x)
        xc = x.astype(dtype)
        out = jnp.zeros_like(xc)
        for d, (m, w) in enumerate(zip(self.modes, self.weights)):
            axis = d + 1
            n = x.shape[axis]
            if 2 * m - 1 > n:
                raise ValueError(f"modes[{d}]={m} needs at least {2 * m - 1} grid points on axis {d}, got {n}")
            xf = jnp.moveaxis(jnp.fft.rfft(xc, axis=axis), axis, -1)[..., :m]
            yf = jnp.einsum("i...k,iok->o...k", xf, _as_complex(w[...], dtype))
            pad = [(0, 0)] * (yf.ndim - 1) + [(0, n // 2 + 1 - m)]
            y = jnp.fft.irfft(jnp.pad(yf, pad), n=n, axis=-1)
            out = out + jnp.moveaxis(y, -1, axis)
        return out.astype(x.dtype)


class PointwiseLinear(nnx.Module):
    """A 1x1 convolution: a dense map over the channel axis, ``(C_in, *spatial) -> (C_out, *spatial)``."""

    def __init__(self, in_channels: int, out_channels: int, seed: Seed = 0, use_bias: bool = True):
        self.kernel = lecun_uniform(generator(seed), (in_channels, out_channels))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.kernel[...]
        y = jnp.einsum("i...,io->o...", x, w.astype(jnp.result_type(x.dtype, w.dtype)))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return y


class Conv(nnx.Module):
    """A 'same'-padded convolution on one channels-first sample ``(C_in, *spatial)``, 2D or 3D.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel extent per spatial axis.
        seed: an int seed or a numpy generator (LeCun-uniform kernel, zero bias).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int], seed: Seed = 0):
        self.kernel_size = tuple(int(k) for k in kernel_size)
        if len(self.kernel_size) not in (2, 3) or any(k < 1 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size must be 2 or 3 odd positive ints, got {kernel_size}")
        self.kernel = lecun_uniform(generator(seed), self.kernel_size + (in_channels, out_channels))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        nd = len(self.kernel_size)
        sp = "DHW"[-nd:]
        w = self.kernel[...].astype(x.dtype)
        y = jax.lax.conv_general_dilated(x[None], w, (1,) * nd, "SAME",
                                         dimension_numbers=("NC" + sp, sp + "IO", "NC" + sp))[0]
        return y + self.bias[...].astype(y.dtype).reshape((-1,) + (1,) * nd)


class GroupNorm(nnx.Module):
    """Group normalisation of one channels-first sample ``(C, *spatial)`` (Wu & He 2018)."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-5):
        if channels % groups:
            raise ValueError(f"groups={groups} must divide channels={channels}")
        self.groups, self.eps = int(groups), float(eps)
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        g = x.reshape((self.groups, -1)).astype(jnp.promote_types(x.dtype, jnp.float32))
        g = (g - g.mean(axis=1, keepdims=True)) * jax.lax.rsqrt(g.var(axis=1, keepdims=True) + self.eps)
        bc = (-1,) + (1,) * (x.ndim - 1)
        return g.reshape(x.shape).astype(x.dtype) * self.scale[...].astype(x.dtype).reshape(bc) \
            + self.bias[...].astype(x.dtype).reshape(bc)


class ChannelNorm(nnx.Module):
    """Fixed per-channel affine normalisation ``(x - mean) / std`` and its inverse.

    Args:
        channels: number of channels.
        mean, std: per-channel statistics (sequences of length ``channels``) or ``None`` for the
            identity (mean 0, std 1). Stored as non-trainable :class:`Stat` variables.
    """

    def __init__(self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        mean_a = np.zeros(channels) if mean is None else np.asarray(mean, np.float64)
        std_a = np.ones(channels) if std is None else np.asarray(std, np.float64)
        if mean_a.shape != (channels,) or std_a.shape != (channels,):
            raise ValueError(f"normalisation mean/std need {channels} entries, got {mean_a.shape} and {std_a.shape}")
        if not np.all(np.isfinite(mean_a)) or not np.all(std_a > 0) or not np.all(np.isfinite(std_a)):
            raise ValueError(f"normalisation mean must be finite and std positive and finite, "
                             f"got mean={mean_a}, std={std_a}")
        self.mean = Stat(jnp.asarray(mean_a, jnp.float32))
        self.std = Stat(jnp.asarray(std_a, jnp.float32))

    def _bc(self, v: jax.Array, x: jax.Array) -> jax.Array:
        return v[...].astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))

    def encode(self, x: jax.Array) -> jax.Array:
        """``(C, *spatial)`` physical -> normalised."""
        return (x - self._bc(self.mean, x)) / self._bc(self.std, x)

    def decode(self, y: jax.Array) -> jax.Array:
        """``(C, *spatial)`` normalised -> physical."""
        return y * self._bc(self.std, y) + self._bc(self.mean, y)


class FieldIO(nnx.Module):
    """Input/output adapter shared by every model: normalises physical inputs (e.g. the medium
    channels), appends coordinate features, and maps normalised outputs back to physical units.

    Args:
        in_channels, out_channels: physical channel counts.
        ndim: number of spatial axes (2 or 3).
        coord_features: append :func:`coordinate_channels` to the normalised input.
        in_mean, in_std, out_mean, out_std: per-channel statistics (``None``: identity).
    """

    def __init__(self, in_channels: int, out_channels: int, ndim: int, *, coord_features: bool = True,
                 in_mean: Sequence[float] | None = None, in_std: Sequence[float] | None = None,
                 out_mean: Sequence[float] | None = None, out_std: Sequence[float] | None = None):
        if ndim not in (2, 3):
            raise ValueError(f"models support 2 or 3 spatial axes, got ndim={ndim}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels, self.ndim = int(in_channels), int(out_channels), int(ndim)
        self.coord_features = bool(coord_features)
        self.in_norm = ChannelNorm(in_channels, in_mean, in_std)
        self.out_norm = ChannelNorm(out_channels, out_mean, out_std)

    @property
    def encoded_channels(self) -> int:
        """Channels after :meth:`encode`."""
        return self.in_channels + (self.ndim if self.coord_features else 0)

    def encode(self, x: jax.Array) -> jax.Array:
        """Physical ``(in_channels, *spatial)`` -> normalised ``(encoded_channels, *spatial)``."""
        if x.ndim != self.ndim + 1 or x.shape[0] != self.in_channels:
            raise ValueError(f"model input must have shape ({self.in_channels}, <{self.ndim} spatial axes>) "
                             f"(one sample, channels first; vmap for batches), got {x.shape}")
        if jnp.iscomplexobj(x):
            raise ValueError("model input must be real; convert complex fields with complex_to_channels")
        h = self.in_norm.encode(x)
        if self.coord_features:
            h = jnp.concatenate([h, coordinate_channels(x.shape[1:], h.dtype)])
        return h

    def decode(self, y: jax.Array) -> jax.Array:
        """Normalised ``(out_channels, *spatial)`` -> physical units."""
        return self.out_norm.decode(y)


def coordinate_channels(spatial: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Normalised grid coordinates ``(ndim, *spatial)``: channel ``d`` is ``i_d / n_d`` in [0, 1)."""
    axes = [jnp.arange(n, dtype=dtype) / n for n in spatial]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"))


def complex_to_channels(z: jax.Array) -> jax.Array:
    """Complex ``(C, *spatial)`` -> real ``(2C, *spatial)`` as pairs ``[re_0, im_0, re_1, im_1, ...]``."""
    return jnp.stack([z.real, z.imag], axis=1).reshape((2 * z.shape[0],) + z.shape[1:])


def channels_to_complex(x: jax.Array) -> jax.Array:
    """Inverse of :func:`complex_to_channels`: real ``(2C, *spatial)`` -> complex ``(C, *spatial)``."""
    if x.shape[0] % 2:
        raise ValueError(f"channels_to_complex needs an even channel count, got {x.shape[0]}")
    pairs = x.reshape((x.shape[0] // 2, 2) + x.shape[1:])
    return jax.lax.complex(pairs[:, 0], pairs[:, 1])


def domain_pad(x: jax.Array, padding: Sequence[int]) -> jax.Array:
    """Zero-pad the spatial axes of ``(C, *spatial)`` by ``padding[d]`` cells on both sides."""
    return jnp.pad(x, [(0, 0)] + [(p, p) for p in padding])


def domain_crop(x: jax.Array, padding: Sequence[int]) -> jax.Array:
    """Undo :func:`domain_pad`."""
    return x[(slice(None),) + tuple(slice(p, x.shape[d + 1] - p) for d, p in enumerate(padding))]


def gelu(x: jax.Array) -> jax.Array:
    """The activation used by all models (tanh-approximate GELU)."""
    return jax.nn.gelu(x, approximate=True)


def num_params(model: nnx.Module) -> int:
    """Number of trainable scalars (complex weights count twice)."""
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))
