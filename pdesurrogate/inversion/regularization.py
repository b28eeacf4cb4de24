"""Constraints and regularisers shared by every inversion: box bounds and smoothed total variation.

- :class:`Bounds`: a box ``lower <= m <= upper`` applied by projection (``None``: unbounded on that
  side), one pair for all parameters or one per channel of a leading channel axis (e.g. sound speed
  and density). ``Bounds(lower=0.0)`` keeps a contrast non-negative (positivity).
- :class:`TotalVariation`: smoothed isotropic TV, ``weight * mean_x sqrt(|D m(x)|^2 + eps^2)``,
  with forward differences ``D`` (replicated boundary) over the chosen axes.

Both act on the physical parameters (the medium, in its own units), not on the optimiser's
variables, so a weight means the same thing whatever preconditioner or step size is in use.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np


def _optional_finite(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number or None, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number or None, got {value!r}")
    return v


Limit = float | tuple[float, ...] | None


def _limit(name: str, value: Any) -> Limit:
    """A bound: ``None``, a finite number, or a tuple of finite numbers (one per channel)."""
    if isinstance(value, tuple | list | np.ndarray):
        if len(value) == 0:
            raise ValueError(f"{name} must be a number, None or a non-empty tuple (one per channel), got {value!r}")
        return tuple(_finite(name, v) for v in value)
    return _optional_finite(name, value)


def _finite(name: str, value: Any) -> float:
    v = _optional_finite(name, value)
    if v is None:
        raise ValueError(f"{name} must hold finite numbers, got None")
    return v


def _broadcast(limit: Limit, ndim: int, fill: float) -> np.ndarray | float:
    """``limit`` shaped to broadcast against parameters of ``ndim`` dims (channels on axis 0)."""
    if limit is None:
        return fill
    if isinstance(limit, tuple):
        return np.asarray(limit).reshape((-1,) + (1,) * (ndim - 1))
    return limit


class Bounds(eqx.Module):
    """Box constraints ``lower <= m <= upper`` (same units as the parameters; ``None``: no bound).

    ``lower`` and ``upper`` are numbers, or tuples of one number per channel of the parameters'
    leading axis (``m`` of shape ``(n_channels, ...)``), e.g. ``Bounds((1400, 900), (1700, 1100))``
    for stacked sound speed (m/s) and density (kg/m^3).

    Raises ``ValueError`` when ``lower > upper`` or the tuples' lengths differ.
    """

    lower: Limit = eqx.field(static=True, default=None)
    upper: Limit = eqx.field(static=True, default=None)

    def __init__(self, lower: Limit = None, upper: Limit = None):
        self.lower = _limit("bounds lower", lower)
        self.upper = _limit("bounds upper", upper)
        lengths = {len(v) for v in (self.lower, self.upper) if isinstance(v, tuple)}
        if len(lengths) > 1:
            raise ValueError(f"bounds lower and upper must have one value per channel each, got {lower!r}, {upper!r}")
        if self.lower is not None and self.upper is not None and \
                np.any(np.asarray(self.lower) > np.asarray(self.upper)):
            raise ValueError(f"bounds must satisfy lower <= upper, got ({lower}, {upper})")

    @property
    def channels(self) -> int | None:
        """The number of channels of per-channel bounds, ``None`` for one pair for all parameters."""
        return next((len(v) for v in (self.lower, self.upper) if isinstance(v, tuple)), None)

    def _shaped(self, m: Any) -> tuple[Any, Any]:
        n = self.channels
        if n is not None and (np.ndim(m) < 1 or np.shape(m)[0] != n):
            raise ValueError(f"per-channel bounds for {n} channels need parameters of shape ({n}, ...), "
                             f"got {np.shape(m)}")
        return _broadcast(self.lower, np.ndim(m), -np.inf), _broadcast(self.upper, np.ndim(m), np.inf)

    def project(self, m: jnp.ndarray) -> jnp.ndarray:
        """``m`` clipped into the box (differentiable: zero gradient where a bound is active)."""
        if self.lower is None and self.upper is None:
            return m
        lo, hi = self._shaped(m)
        return jnp.clip(m, jnp.asarray(lo, m.dtype), jnp.asarray(hi, m.dtype))

    def check(self, name: str, m: np.ndarray) -> None:
        """Raise ``ValueError`` naming ``name`` when any value of ``m`` lies outside the box."""
        a = np.asarray(m)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite everywhere")
        lo, hi = self._shaped(a)
        outside = (a < lo) | (a > hi)
        if not np.any(outside):
            return
        n = self.channels
        k = 0 if n is None else int(np.argmax(outside.reshape(n, -1).any(axis=1)))
        lo_k, hi_k = (float(np.broadcast_to(np.ravel(x), (n or 1,))[k]) for x in (lo, hi))
        part, where = (a, "") if n is None else (a[k], f" (channel {k})")
        raise ValueError(f"{name} must lie within the bounds [{lo_k:g}, {hi_k:g}]{where}, got values in "
                         f"[{part.min():g}, {part.max():g}]")


class TotalVariation(eqx.Module):
    """Smoothed isotropic total variation ``weight * mean_x sqrt(sum_a (m[x + e_a] - m[x])^2 + eps^2)``.

    Attributes:
        weight: multiplier (>= 0; 0 switches the term off) in misfit units per parameter unit.
        epsilon: smoothing (> 0) in parameter units: below it TV behaves like a quadratic
            (Tikhonov) penalty on the gradient, above it like the L1 norm of the gradient.
        axes: the axes differenced (``None``: every axis). Parameters stacked along a leading
            channel axis (e.g. real and imaginary parts) pass the image axes only; the channels
            then share one isotropic magnitude.
    """

    weight: float = eqx.field(static=True)
    epsilon: float = eqx.field(static=True)
    axes: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, weight: float, epsilon: float, axes: tuple[int, ...] | None = None):
        w = _optional_finite("tv weight", weight)
        if w is None or w < 0:
            raise ValueError(f"tv weight must be a finite number >= 0, got {weight!r}")
        e = _optional_finite("tv epsilon", epsilon)
        if e is None or e <= 0:
            raise ValueError(f"tv epsilon must be a finite number > 0 (parameter units), got {epsilon!r}")
        self.weight, self.epsilon = w, e
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def __call__(self, m: jnp.ndarray) -> jnp.ndarray:
        """The penalty (a scalar) of parameters ``m`` (any shape)."""
        if self.weight == 0.0:
            return jnp.zeros((), m.dtype)
        axes = range(m.ndim) if self.axes is None else self.axes
        sq = sum(jnp.square(jnp.diff(m, axis=a, append=jnp.take(m, jnp.array([-1]), axis=a))) for a in axes)
        if self.axes is not None and m.ndim > len(axes):  # channels share one magnitude
            sq = jnp.sum(sq, axis=tuple(a for a in range(m.ndim) if a not in {x % m.ndim for x in axes}))
        return self.weight * jnp.mean(jnp.sqrt(sq + self.epsilon**2))
