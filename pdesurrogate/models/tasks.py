"""How a model is applied in the two surrogate forms (one sample, channels first).

These functions fix the input layout shared by training and by the deployed surrogates:

- stepper: input ``concat([state, medium])`` with ``state`` ``(C, *spatial)`` and ``medium``
  ``(M, *spatial)``; output the next state ``(C, *spatial)``, predicted as an increment when
  ``residual=True`` (``u_next = u + model(...)``);
- field operator: input ``concat([medium, condition])``; scalar conditions (e.g. angle,
  wavelength) are broadcast to constant channels; output real channels (complex fields as
  real/imag pairs, see :func:`~.layers.complex_to_channels`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def condition_channels(condition: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
    """``(K,)`` scalars -> constant maps ``(K, *spatial)``; ``(K, *spatial)`` maps pass through."""
    condition = jnp.asarray(condition)
    if condition.ndim == 1:
        return jnp.broadcast_to(condition.reshape((-1,) + (1,) * len(spatial)), condition.shape + tuple(spatial))
    if condition.shape[1:] != tuple(spatial):
        raise ValueError(f"condition must have shape (K,) or (K, *{tuple(spatial)}), got {condition.shape}")
    return condition


def _stack(parts: list[jax.Array]) -> jax.Array:
    dtype = jnp.result_type(*parts)
    return jnp.concatenate([p.astype(dtype) for p in parts])


def predict_step(model: Callable[[jax.Array], jax.Array], state: jax.Array, medium: jax.Array | None = None,
                 *, residual: bool = True) -> jax.Array:
    """One macro step: ``state`` ``(C, *spatial)`` (+ ``medium`` ``(M, *spatial)``) -> next state."""
    x = state if medium is None else _stack([state, medium])
    out = model(x)
    if out.shape != state.shape:
        raise ValueError(f"stepper model output {out.shape} must match the state shape {state.shape}")
    return state + out if residual else out


def predict_field(model: Callable[[jax.Array], jax.Array], medium: jax.Array,
                  condition: jax.Array | None = None) -> jax.Array:
    """Field operator: ``medium`` ``(M, *spatial)`` (+ condition) -> real ``(F, *spatial)`` channels."""
    parts = [medium] if condition is None else [medium, condition_channels(condition, medium.shape[1:])]
    return model(_stack(parts))
