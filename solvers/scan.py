"""Time loops with memory-bounded reverse-mode gradients.

``scan`` is ``jax.lax.scan`` with a choice of checkpointing for the backward pass:

- ``"none"``: plain ``lax.scan``; the gradient stores every step's residuals
  (memory grows as state x steps).
- ``"segmented"``: two-level checkpointing. The loop is cut into segments of ``segment`` steps
  (default ``ceil(sqrt(n))``); only segment-start states are stored, and each segment is recomputed
  during the backward pass. Memory ~ ``(n / segment + segment)`` states, one extra forward pass.
- ``"recursive"``: binomial (treeverse) checkpointing from ``equinox.internal.scan``, as diffrax's
  ``RecursiveCheckpointAdjoint`` uses, with ``checkpoints`` stored states.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jax import lax

from solvers.validate import check_choice

CHECKPOINTING = ("none", "segmented", "recursive")


def scan(
    step: Callable[[Any, Any], tuple[Any, Any]],
    carry: Any,
    xs: Any = None,
    length: int | None = None,
    *,
    checkpoint: str = "segmented",
    segment: int | None = None,
    checkpoints: int | None = None,
) -> tuple[Any, Any]:
    """Run ``step`` over ``length`` iterations like ``lax.scan``, with checkpointed gradients.

    Args:
        step: ``(carry, x) -> (carry, y)``.
        carry: initial carry (pytree).
        xs: per-step inputs with leading axis ``length``, or ``None``.
        length: number of steps (required when ``xs`` is ``None``).
        checkpoint: one of ``"none"``, ``"segmented"``, ``"recursive"``.
        segment: steps per segment for ``"segmented"`` (default ``ceil(sqrt(length))``).
        checkpoints: stored states for ``"recursive"`` (default ~ ``sqrt(length)``).

    Returns:
        ``(final carry, stacked ys)`` exactly as ``lax.scan``.
    """
    check_choice("checkpoint", checkpoint, CHECKPOINTING)
    if length is None:
        leaves = jax.tree_util.tree_leaves(xs)
        if not leaves:
            raise ValueError("length is required when xs is None")
        length = int(leaves[0].shape[0])
    length = int(length)
    if length == 0 or checkpoint == "none":
        return lax.scan(step, carry, xs, length=length)
    if checkpoint == "recursive":
        return eqxi.scan(step, carry, xs, length=length, kind="checkpointed", checkpoints=checkpoints)
    seg = max(1, min(length, segment if segment is not None else math.ceil(math.sqrt(length))))
    nseg, rem = divmod(length, seg)

    @jax.checkpoint
    def run_segment(c: Any, xs_seg: Any) -> tuple[Any, Any]:
        return lax.scan(step, c, xs_seg, length=seg)

    head = jax.tree_util.tree_map(lambda a: a[: nseg * seg].reshape((nseg, seg) + a.shape[1:]), xs)
    carry, ys = lax.scan(run_segment, carry, head, length=nseg)
    ys = jax.tree_util.tree_map(lambda a: a.reshape((nseg * seg,) + a.shape[2:]), ys)
    if rem:
        tail = jax.tree_util.tree_map(lambda a: a[nseg * seg :], xs)
        carry, ys_tail = jax.checkpoint(lambda c, x: lax.scan(step, c, x, length=rem))(carry, tail)
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)
    return carry, ys
