"""Label-free error signals: computed from a surrogate's input and output, never the solver's answer.

- :func:`rms`: the size of a physics residual map (Helmholtz for field operators, the wave or Yee
  residual for steppers: :mod:`training.physics` builds them from the solvers' own operators);
- :func:`relative_spread`: the disagreement of an ensemble's members (:class:`~pdesurrogate.trust.Ensemble`);
- :func:`time_reversal`: a stepper's time-reversal inconsistency ``||R Phi(R Phi(u)) - u|| / ||u||``;
- reciprocity for trace operators is ``sqrt`` of :func:`training.losses.reciprocity_gap` of the
  predicted shots (:meth:`training.tasks.TraceTask.trust_signals` computes it).

Each returns a positive scalar per sample; jit and vmap compose with them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from solvers.protocol import Stepper

_TINY = 1e-30


def rms(residual: jax.Array) -> jax.Array:
    """Root mean square of a residual map (real or complex, any shape) -> scalar."""
    return jnp.sqrt(jnp.mean(jnp.abs(residual) ** 2) + _TINY)


def relative_spread(members: jax.Array) -> jax.Array:
    """Ensemble disagreement of member outputs ``(K, ...)`` (K >= 2): the RMS distance of the members
    from their mean over the mean's norm, ``sqrt(mean_k ||y_k - y_bar||^2) / ||y_bar||`` -> scalar."""
    if members.ndim < 1 or members.shape[0] < 2:
        raise ValueError(f"members must be (K >= 2, ...) outputs of an ensemble, got {members.shape}")
    mean = jnp.mean(members, axis=0)
    dev = jnp.sum(jnp.abs(members - mean) ** 2) / members.shape[0]
    return jnp.sqrt(dev / (jnp.sum(jnp.abs(mean) ** 2) + _TINY))


def time_reversal(stepper: Stepper, state: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Time-reversal inconsistency ``||R Phi(R Phi(u)) - u|| / ||u||`` of one state ``(C, *shape)``.

    Args:
        stepper: any :class:`solvers.protocol.Stepper` (a :class:`pdesurrogate.Surrogate`).
        state: the state ``u``.
        weights: weights broadcastable to ``state``: per-channel scales (so that pressure and
            velocity count alike) times a mask that is 0 where absorption breaks reversibility
            (:func:`training.physics.reversal_mask`); ``None``: all ones.
    """
    back = stepper.reverse(stepper.step(stepper.reverse(stepper.step(state))))
    w = 1.0 if weights is None else weights
    return jnp.sqrt(jnp.sum(jnp.abs((back - state) * w) ** 2) / (jnp.sum(jnp.abs(state * w) ** 2) + _TINY))
