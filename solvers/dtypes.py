"""Dtype policy: float32 by default; float64 only when JAX x64 is enabled and inputs are float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def compute_dtype(*values: object) -> jnp.dtype:
    """The real floating dtype a computation on ``values`` runs in.

    float64 when ``jax_enable_x64`` is on and any input is a float64 array; float32 otherwise
    (Python scalars do not promote).
    """
    if jax.config.read("jax_enable_x64"):
        for v in values:
            if isinstance(v, (np.ndarray, jax.Array)) and v.dtype == np.float64:
                return jnp.dtype(jnp.float64)
    return jnp.dtype(jnp.float32)


def complex_dtype(real: jnp.dtype) -> jnp.dtype:
    """The complex dtype matching a real one (float32 -> complex64, float64 -> complex128)."""
    return jnp.dtype(jnp.complex128) if jnp.dtype(real) == jnp.float64 else jnp.dtype(jnp.complex64)
