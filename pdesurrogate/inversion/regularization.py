"""Constraints and regularisers shared by every inversion: box bounds and smoothed total variation.

- :class:`Bounds`: a box ``lower <= m <= upper`` applied by projection (``None``: unbounded on that
  side). ``Bounds(lower=0.0)`` keeps a contrast non-negative (positivity).
- :class:`TotalVariation`: smoothed isotropic TV, ``weight * mean_x sqrt(|D m(x)|^2 + eps^2)``,
  with forward differences ``D`` (replicated boundary) over the chosen axes.

Both act on the physical parameters (the medium, in its own units), not on the optimiser's
variables, so a weight means the same thing whatever preconditioner or step size is in use.
"""

from __future__ import annotations

import math

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


class Bounds(eqx.Module):
    """Box constraints ``lower <= m <= upper`` (same units as the parameters; ``None``: no bound).

    Raises ``ValueError`` when ``lower > upper``.
    """

    lower: float | None = eqx.field(static=True, default=None)
    upper: float | None = eqx.field(static=True, default=None)

    def __init__(self, lower: float | None = None, upper: float | None = None):
        self.lower = _optional_finite("bounds lower", lower)
        self.upper = _optional_finite("bounds upper", upper)
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"bounds must satisfy lower <= upper, got ({lower}, {upper})")

    def project(self, m: jnp.ndarray) -> jnp.ndarray:
        """``m`` clipped into the box (differentiable: zero gradient where a bound is active)."""
        if self.lower is None and self.upper is None:
            return m
        return jnp.clip(m, self.lower, self.upper)

    def check(self, name: str, m: np.ndarray) -> None:
        """Raise ``ValueError`` naming ``name`` when any value of ``m`` lies outside the box."""
        a = np.asarray(m)
        lo = -np.inf if self.lower is None else self.lower
        hi = np.inf if self.upper is None else self.upper
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite everywhere")
        if np.any(a < lo) or np.any(a > hi):
            raise ValueError(f"{name} must lie within the bounds [{lo:g}, {hi:g}], got values in "
                             f"[{a.min():g}, {a.max():g}]")


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
