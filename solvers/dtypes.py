"""Dtype policy: float32 by default; float64 when JAX x64 is enabled and the inputs are float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def compute_dtype(*values: object) -> jnp.dtype:
    """The real floating dtype a computation on ``values`` runs in.

    - x64 disabled: float32.
    - x64 enabled: float64 if any input is a float64 array; float32 if the floating-point arrays
      among the inputs are all float32 (or narrower); float64 when no input is a floating-point
      array (Python floats are double precision, as JAX's weak types under x64).
    """
    if not jax.config.read("jax_enable_x64"):
        return jnp.dtype(jnp.float32)
    floats = [v.dtype for v in values
              if isinstance(v, (np.ndarray, jax.Array)) and jnp.issubdtype(v.dtype, jnp.floating)]
    if floats and all(d != jnp.float64 for d in floats):
        return jnp.dtype(jnp.float32)
    return jnp.dtype(jnp.float64)
