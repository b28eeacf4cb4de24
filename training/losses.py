"""Training losses: relative L2 data losses, unrolled training with the pushforward trick,
time-reversal consistency, a generic physics-residual hook, and the task losses (stepper, field
operator, per-shot trace operator).

Per-sample functions take one sample (no batch axis); the task losses take a batch dict and
average over its leading axis with ``jax.vmap``. Every task loss has the signature the trainer
expects, ``loss_fn(model, batch, key) -> (loss, aux)``, with ``key`` a PRNG key (``None``: no
randomness, used for validation) and ``aux`` a dict of scalar metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.config import spec
from pdesurrogate.models.layers import complex_to_channels
from pdesurrogate.models.tasks import predict_field, predict_step

PyTree = Any
_TINY = 1e-30


def _sumsq(x: PyTree, mask: jax.Array | None = None) -> jax.Array:
    """Sum of squares over all leaves (float32 or wider); ``mask`` broadcasts against each leaf."""
    total = jnp.zeros((), jnp.float32)
    for leaf in jax.tree_util.tree_leaves(x):
        leaf = leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))
        sq = jnp.abs(leaf) ** 2 if jnp.iscomplexobj(leaf) else leaf**2
        if mask is not None:
            sq = sq * mask
        total = total + jnp.sum(sq)
    return total


def relative_l2(prediction: PyTree, target: PyTree) -> jax.Array:
    """``||prediction - target|| / ||target||`` over all entries of one sample (pytrees allowed)."""
    diff = jax.tree_util.tree_map(lambda p, t: p.astype(t.dtype) - t, prediction, target)
    return jnp.sqrt(_sumsq(diff) + _TINY) / jnp.sqrt(_sumsq(target) + _TINY)


def rollout(step: Callable[[jax.Array], jax.Array], u0: jax.Array, n: int, *, pushforward: bool = False) -> jax.Array:
    """``n`` applications of ``step`` from ``u0``; returns ``(n, *u0.shape)`` predictions.

    With ``pushforward=True`` each step's input is ``stop_gradient`` of the previous prediction
    (Brandstetter et al. 2022): every step is trained as a one-step map on the distribution of
    its own rollout inputs, without back-propagation through time.
    """
    if n < 1:
        raise ValueError(f"rollout length n must be >= 1, got {n}")
    preds, u = [], u0
    for k in range(n):
        u = step(jax.lax.stop_gradient(u) if (pushforward and k > 0) else u)
        preds.append(u)
    return jnp.stack(preds)


def add_input_noise(u: jax.Array, key: jax.Array | None, noise_std: float) -> jax.Array:
    """``u`` ``(C, *spatial)`` plus Gaussian noise of ``noise_std`` times each channel's RMS."""
    if key is None or noise_std == 0.0:
        return u
    rms = jnp.sqrt(jnp.mean(u.astype(jnp.float32) ** 2, axis=tuple(range(1, u.ndim)), keepdims=True))
    return u + (noise_std * rms * jax.random.normal(key, u.shape, jnp.float32)).astype(u.dtype)


def unrolled_loss(step: Callable[[jax.Array], jax.Array], states: jax.Array, n: int, *, pushforward: bool = False,
                  noise_std: float = 0.0, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Relative L2 of ``n``-step rollouts from every start of a trajectory (one sample).

    Args:
        step: one macro step, ``(C, *spatial) -> (C, *spatial)``.
        states: the trajectory ``(T, C, *spatial)``, ``T > n``.
        n: unrolled steps (1: the one-step loss).
        pushforward: cut gradients between steps (see :func:`rollout`).
        noise_std: input noise relative to each channel's RMS, added to the start states.
        key: PRNG key for the noise (``None``: no noise).

    Returns:
        ``(loss, predictions)``: the mean over starts and steps of the relative L2 error, and the
        predictions ``(T - n, n, C, *spatial)``.
    """
    T = states.shape[0]
    if T <= n:
        raise ValueError(f"trajectory of {T} states is too short for {n} unrolled steps (needs > {n})")
    starts = states[: T - n]
    targets = jnp.stack([states[k : T - n + k] for k in range(1, n + 1)], axis=1)
    keys = None if key is None or noise_std == 0.0 else jax.random.split(key, T - n)
    preds = jax.vmap(lambda u, k: rollout(step, add_input_noise(u, k, noise_std), n, pushforward=pushforward)
                     )(starts, keys)
    errs = jax.vmap(jax.vmap(relative_l2))(preds, targets)
    return jnp.mean(errs), preds


def time_reversal_loss(step: Callable[[PyTree], PyTree], reverse: Callable[[PyTree], PyTree], u: PyTree,
                       mask: jax.Array | None = None) -> jax.Array:
    """Time-reversal consistency ``||R Phi(R Phi(u)) - u||^2 / ||u||^2`` (one sample).

    Args:
        step: the map ``Phi`` (a pytree of fields to the same structure).
        reverse: the reversal ``R`` (e.g. flip velocities or H fields).
        u: the state (pytree).
        mask: optional weights broadcastable against every leaf (e.g. ``(*spatial)`` zero inside
            absorbing layers), applied to numerator and denominator alike.

    Returns:
        A scalar; 0 up to rounding for an exactly reversible map.
    """
    back = reverse(step(reverse(step(u))))
    diff = jax.tree_util.tree_map(lambda a, b: a - b, back, u)
    return _sumsq(diff, mask) / (_sumsq(u, mask) + _TINY)


def channel_reversal(signs: Sequence[float]) -> Callable[[jax.Array], jax.Array]:
    """``R`` for channel-stacked states ``(C, *spatial)``: multiply channel ``c`` by ``signs[c]``
    (acoustic ``(p, v...)``: ``[1, -1, ...]``; Maxwell TM ``(Ez, Hx, Hy)``: ``[1, -1, -1]``)."""
    s = np.asarray(signs, np.float64)
    if s.ndim != 1 or not np.all(np.abs(s) == 1):
        raise ValueError(f"reversal signs must be a list of +1/-1, got {list(signs)}")

    def reverse(u: jax.Array) -> jax.Array:
        if u.shape[0] != s.shape[0]:
            raise ValueError(f"reversal has {s.shape[0]} signs, state has {u.shape[0]} channels")
        return u * jnp.asarray(s, u.dtype).reshape((-1,) + (1,) * (u.ndim - 1))

    return reverse


def residual_loss(states: PyTree, residual_fn: Callable[[PyTree], jax.Array]) -> jax.Array:
    """Mean square of a physics residual, ``mean(residual_fn(states) ** 2)``.

    ``residual_fn`` is supplied by the physics (e.g. the discrete wave equation across
    consecutive states built from the solver's own operators) and sets the residual's scaling;
    it returns 0 on exact solver trajectories.
    """
    r = residual_fn(states)
    r = r.astype(jnp.promote_types(r.dtype, jnp.float32))
    return jnp.mean(jnp.abs(r) ** 2)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms: data (relative L2), time reversal, physics residual, reciprocity."""

    data: float = dataclasses.field(default=1.0, metadata=spec(min=0.0, doc="relative L2 data loss"))
    time_reversal: float = dataclasses.field(default=0.0, metadata=spec(min=0.0, doc="time-reversal consistency"))
    residual: float = dataclasses.field(default=0.0, metadata=spec(min=0.0, doc="physics residual"))
    reciprocity: float = dataclasses.field(default=0.0, metadata=spec(
        min=0.0, doc="traces: source-receiver reciprocity between the shots' emitters"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (v >= 0.0 and v < float("inf")):
                raise ValueError(f"loss weight {f.name} must be finite and >= 0, got {v}")


def stepper_loss(model: Callable[[jax.Array], jax.Array], batch: dict[str, jax.Array], key: jax.Array | None, *,
                 unroll: int = 1, pushforward: bool = True, noise_std: float = 0.0, residual_step: bool = True,
                 windows: int = 0, weights: LossWeights = LossWeights(), reversal_signs: Sequence[float] | None = None,
                 reversal_mask: jax.Array | None = None,
                 residual_fn: Callable[[jax.Array, jax.Array | None], jax.Array] | None = None,
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Task loss of a learned stepper on trajectories.

    Batch: ``"state"`` ``(B, T, C, *spatial)`` macro-step trajectories; optional ``"medium"``
    ``(B, M, *spatial)``. With ``windows = W > 0`` and a ``key`` (training), each sample
    contributes ``W`` windows of ``unroll + 1`` consecutive states starting at distinct random
    frames, so a step costs ``W`` rollouts per sample instead of ``T - unroll``; without a key
    (validation) or with ``windows = 0`` the whole trajectory is used. Terms (each averaged over
    the windows and the batch):

    - ``data``: :func:`unrolled_loss` with ``unroll`` steps (1: one-step), ``pushforward``,
      ``noise_std``;
    - ``time_reversal`` (if its weight > 0; needs ``reversal_signs``): :func:`time_reversal_loss`
      of the learned step on every state of the trajectory (with windows: on each window's first
      state), masked by ``reversal_mask`` ``(*spatial)``;
    - ``residual`` (if its weight > 0; needs ``residual_fn(states (n+1, C, *spatial), medium)``):
      :func:`residual_loss` on each predicted rollout preceded by its start state.

    Returns ``(loss, {"data", "time_reversal", "residual"})`` (unused terms are 0).
    """
    states = batch["state"]
    medium = batch.get("medium")
    if weights.time_reversal > 0 and reversal_signs is None:
        raise ValueError("a time_reversal weight > 0 needs reversal_signs (one +1/-1 per state channel)")
    if weights.residual > 0 and residual_fn is None:
        raise ValueError("a residual weight > 0 needs a residual_fn")
    reverse = channel_reversal(reversal_signs) if reversal_signs is not None else None
    B, T = states.shape[:2]
    if windows < 0 or windows > T - unroll:
        raise ValueError(f"windows must be in [0, {T - unroll}] (starts of {unroll}-step rollouts in {T} states), "
                         f"got {windows}")
    keys = jax.random.split(key, B) if key is not None else None

    def per_window(traj: jax.Array, med: jax.Array | None, k: jax.Array | None, reversed_states: jax.Array
                   ) -> dict[str, jax.Array]:
        step = lambda u: predict_step(model, u, med, residual=residual_step)  # noqa: E731
        data, preds = unrolled_loss(step, traj, unroll, pushforward=pushforward, noise_std=noise_std, key=k)
        terms = {"data": data, "time_reversal": jnp.zeros(()), "residual": jnp.zeros(())}
        if weights.time_reversal > 0:
            terms["time_reversal"] = jnp.mean(jax.vmap(
                lambda u: time_reversal_loss(step, reverse, u, reversal_mask))(reversed_states))
        if weights.residual > 0:
            seqs = jnp.concatenate([traj[: preds.shape[0], None], preds], axis=1)
            terms["residual"] = jnp.mean(jax.vmap(lambda s: residual_loss(s, lambda x: residual_fn(x, med)))(seqs))
        return terms

    def per_sample(traj: jax.Array, med: jax.Array | None, k: jax.Array | None) -> dict[str, jax.Array]:
        if k is None or windows == 0:
            return per_window(traj, med, k, traj)
        k_pick, k_noise = jax.random.split(k)
        picks = jax.random.choice(k_pick, T - unroll, (windows,), replace=False)
        segs = jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(traj, s, unroll + 1))(picks)
        terms = jax.vmap(lambda seg, kw: per_window(seg, med, kw, seg[:1]))(segs, jax.random.split(k_noise, windows))
        return {name: jnp.mean(v) for name, v in terms.items()}

    terms = jax.vmap(per_sample)(states, medium, keys)
    terms = {k: jnp.mean(v) for k, v in terms.items()}
    loss = weights.data * terms["data"] + weights.time_reversal * terms["time_reversal"] \
        + weights.residual * terms["residual"]
    return loss, terms


def _field_target(field: jax.Array) -> jax.Array:
    return complex_to_channels(field) if jnp.iscomplexobj(field) else field


def field_loss(model: Callable[[jax.Array], jax.Array], batch: dict[str, jax.Array], key: jax.Array | None, *,
               weights: LossWeights = LossWeights(),
               residual_fn: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array] | None = None,
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Task loss of a field operator.

    Batch: ``"medium"`` ``(B, M, *spatial)``, optional ``"condition"`` ``(B, K)`` or
    ``(B, K, *spatial)``, target ``"field"`` ``(B, F, *spatial)`` real or complex (complex targets
    are compared as real/imag channel pairs, so the model outputs ``2F`` channels). Terms:

    - ``data``: relative L2 of the predicted channels;
    - ``residual`` (if its weight > 0): :func:`residual_loss` of
      ``residual_fn(field, medium, condition)``, with ``field`` the prediction in the target's
      form (complex for complex targets), e.g. a discrete Helmholtz residual.

    ``key`` is unused (the signature is the trainer's). Returns ``(loss, {"data", "residual"})``.
    """
    del key
    if weights.residual > 0 and residual_fn is None:
        raise ValueError("a residual weight > 0 needs a residual_fn")
    complex_target = jnp.iscomplexobj(batch["field"])
    condition = batch.get("condition")

    def per_sample(med: jax.Array, cond: jax.Array | None, field: jax.Array) -> dict[str, jax.Array]:
        pred = predict_field(model, med, cond)
        target = _field_target(field)
        if pred.shape != target.shape:
            raise ValueError(f"field operator output {pred.shape} must match the target channels {target.shape}")
        terms = {"data": relative_l2(pred, target), "residual": jnp.zeros(())}
        if weights.residual > 0:
            pf = pred.astype(jnp.float32)
            if complex_target:
                pf = jax.lax.complex(pf[0::2], pf[1::2])
            terms["residual"] = residual_loss(pf, lambda f: residual_fn(f, med, cond))
        return terms

    terms = jax.vmap(per_sample)(batch["medium"], condition, batch["field"])
    terms = {k: jnp.mean(v) for k, v in terms.items()}
    return weights.data * terms["data"] + weights.residual * terms["residual"], terms


def reciprocity_pairs(emitters: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Shot pairs ``(a, b)``, ``a < b``, of distinct emitting elements: ``(first (P,), second (P,))``."""
    emitters = np.asarray(emitters)
    a, b = np.triu_indices(len(emitters), 1)
    keep = emitters[a] != emitters[b]
    return a[keep], b[keep]


def reciprocity_gap(traces: jax.Array, emitters: Sequence[int]) -> jax.Array:
    """Source-receiver reciprocity inconsistency of one sample's shots.

    For two shots with emitting elements ``e_a`` and ``e_b``, the trace of shot ``a`` at ``e_b``
    equals the trace of shot ``b`` at ``e_a``: for pressure (mass) sources and pressure receivers
    in a medium at rest this holds for any heterogeneous sound speed and density, as long as the
    elements sit in the same medium (the ring in water). The discrete solver keeps it to rounding
    (its point sources spread exactly as its sensors gather).

    Args:
        traces: ``(S, nt, R)`` traces of ``S`` shots at ``R`` receivers (any offset common to
            reciprocal pairs, e.g. the water traces, may be subtracted).
        emitters: the emitting element of each shot, ``(S,)``.
    Returns:
        ``sum ||T[a, :, e_b] - T[b, :, e_a]||^2 / sum (||T[a, :, e_b]||^2 + ||T[b, :, e_a]||^2) / 2``
        over the pairs of :func:`reciprocity_pairs` (0 without pairs).
    """
    emitters = np.asarray(emitters)
    if traces.ndim != 3 or traces.shape[0] != len(emitters):
        raise ValueError(f"traces must be (shots={len(emitters)}, nt, receivers), got {traces.shape}")
    a, b = reciprocity_pairs(emitters)
    if len(a) == 0:
        return jnp.zeros((), traces.dtype)
    x, y = traces[a, :, emitters[b]], traces[b, :, emitters[a]]  # (P, nt) each
    return jnp.sum((x - y) ** 2) / (0.5 * (jnp.sum(x**2) + jnp.sum(y**2)) + 1e-30)


def shot_loss(model: Callable[[jax.Array], jax.Array], batch: dict[str, jax.Array], key: jax.Array | None, *,
              weights: LossWeights = LossWeights(), emitters: Sequence[int] | None = None,
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Task loss of a per-shot measurement operator (USCT: medium + emitter -> traces).

    Batch: ``"medium"`` ``(B, M, *spatial)``, ``"condition"`` ``(B, S, K, *spatial)`` (one
    encoding per shot, e.g. the emitter's distance map), targets ``"traces"`` ``(B, S, nt, R)``
    and optional ``"receivers"`` ``(B, S, R)`` (False leaves a receiver's trace out of that shot,
    e.g. the emitter's own, :func:`training.data.scenarios.receiver_mask`). Terms:

    - ``data``: the relative L2 error of every shot over its kept traces, averaged over shots and
      samples;
    - ``reciprocity`` (if its weight > 0; needs ``emitters``, the ``S`` emitting elements):
      :func:`reciprocity_gap` of each sample's predicted shots, a physics consistency that needs
      no target (0 for the solver to rounding).

    There is no physics residual for traces. ``key`` is unused. Returns
    ``(loss, {"data", "residual", "reciprocity"})``.
    """
    del key
    if weights.residual > 0:
        raise ValueError(f"weights.residual must be 0: shot_loss has no physics residual, got {weights.residual}")
    if weights.reciprocity > 0 and emitters is None:
        raise ValueError("a reciprocity weight > 0 needs the shots' emitters")
    traces, condition = batch["traces"], batch["condition"]
    B, S = traces.shape[:2]
    if condition.shape[:2] != (B, S):
        raise ValueError(f"condition {condition.shape} must have the (batch, shots) axes of traces {traces.shape}")
    receivers = batch.get("receivers")
    if receivers is not None and receivers.shape != (B, S, traces.shape[-1]):
        raise ValueError(f"receivers {receivers.shape} must be (batch, shots, receivers) of traces {traces.shape}")

    def per_sample(med: jax.Array, cond: jax.Array, target: jax.Array, keep: jax.Array | None) -> dict[str, jax.Array]:
        pred = jax.vmap(lambda c: predict_field(model, med, c))(cond)  # (S, nt, R)
        if pred.shape != target.shape:
            raise ValueError(f"trace operator output {pred.shape[1:]} must match the traces {target.shape[1:]}")
        mask = 1.0 if keep is None else keep[:, None, :].astype(pred.dtype)
        terms = {"data": jnp.mean(jax.vmap(relative_l2)(pred * mask, target * mask)), "residual": jnp.zeros(()),
                 "reciprocity": jnp.zeros(())}
        if weights.reciprocity > 0:
            terms["reciprocity"] = reciprocity_gap(pred.astype(jnp.float32), emitters)
        return terms

    terms = jax.vmap(per_sample)(batch["medium"], condition, traces, receivers)
    terms = {k: jnp.mean(v) for k, v in terms.items()}
    return weights.data * terms["data"] + weights.reciprocity * terms["reciprocity"], terms


def stepper_sample(model: Callable[[jax.Array], jax.Array], batch: dict[str, jax.Array], *,
                   residual_step: bool = True) -> tuple[jax.Array, jax.Array]:
    """``(prediction, truth)`` ``(C, *spatial)`` of one step from the first state of the first sample."""
    medium = batch.get("medium")
    pred = predict_step(model, jnp.asarray(batch["state"][0, 0]), None if medium is None else jnp.asarray(medium[0]),
                        residual=residual_step)
    return pred, jnp.asarray(batch["state"][0, 1])


def field_sample(model: Callable[[jax.Array], jax.Array], batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(prediction, truth)`` channels of the first sample of a field-operator batch."""
    condition = batch.get("condition")
    cond = None if condition is None else jnp.asarray(condition[0])
    pred = predict_field(model, jnp.asarray(batch["medium"][0]), cond)
    return pred, _field_target(jnp.asarray(batch["field"][0]))


def shot_sample(model: Callable[[jax.Array], jax.Array], batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(prediction, truth)`` ``(1, *trace_shape)`` of the first shot of the first sample of a
    :func:`shot_loss` batch (one image channel: time x receiver)."""
    pred = predict_field(model, jnp.asarray(batch["medium"][0]), jnp.asarray(batch["condition"][0, 0]))
    return pred[None], jnp.asarray(batch["traces"][0, 0])[None]
