"""Exact time-reversal adjoint for lossless media: gradients without storing the interior fields.

The reverse pass rebuilds the forward fields backward in time by inverting the leapfrog update,
``E(t) = E(t + dt) - cb curl H~(t + dt/2) - source`` and ``H~(t - dt/2) = H~(t + dt/2) + S curl E(t) + source``,
which is exact (up to rounding, which does not grow: the scheme is symplectic) wherever there is no
loss. The CPML is lossy, so the forward pass records, at every step, only the fields on a
one-cell shell around the lossless interior (the cells the interior updates read); the reverse
pass replays them as boundary values. Each reverse step then applies the VJP of one forward step
(``jax.vjp``) at the rebuilt state. Memory: the final state plus ``steps x shell`` values, against
``~sqrt(steps)`` full states for segmented checkpointing.

Requirements: zero conductivity; gradients with respect to the permittivity inside the CPML are
not computed (returned as zero: the layer medium is treated as fixed).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from solvers.maxwell.monitors import Monitor
from solvers.maxwell.sources import Injection, driven_step
from solvers.maxwell.yee import Fields, YeeOperator, offset


def interior_and_shell(op: YeeOperator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean interior mask ``(n_comp, *shape)`` (outside the CPML) and flat indices of its one-cell shell."""
    comps = op.mode.e if kind == "e" else op.mode.h
    p = op.pml_size
    interior = np.ones((len(comps), *op.shape), bool)
    for k, c in enumerate(comps):
        off = offset(kind, c, op.mode.ndim)
        for a, n in enumerate(op.shape):
            if op.periodic[a] or p == 0:
                continue
            pos = np.arange(n) + off[a]
            ok = (pos >= p) & (pos <= n - 1 - p)
            bshape = [1] * op.mode.ndim
            bshape[a] = n
            interior[k] &= ok.reshape(bshape)
    grown = interior.copy()
    for a in range(op.mode.ndim):
        for s in (-1, 1):
            rolled = np.roll(interior, s, axis=a + 1)
            if not op.periodic[a]:
                edge = [slice(None)] * interior.ndim
                edge[a + 1] = 0 if s == 1 else -1
                rolled[tuple(edge)] = False
            grown |= rolled
    return interior, np.flatnonzero(grown & ~interior).astype(np.int32)


def _step_acc(op, inj, mon, f, n, window_start, dt):
    """One driven step and this step's DFT contribution (zero before ``window_start``)."""
    t = n.astype(f.e.dtype) * dt
    f = driven_step(op, inj, f, t, dt)
    zero = mon.zero_accumulator(f.e.dtype)
    contrib = mon.accumulate(zero, f, t + dt, dt)
    on = n >= window_start
    return f, jax.tree_util.tree_map(lambda c: jnp.where(on, c, jnp.zeros_like(c)), contrib)


def _masks(op: YeeOperator):
    int_e, shell_e = interior_and_shell(op, "e")
    int_h, shell_h = interior_and_shell(op, "h")
    return int_e, shell_e, int_h, shell_h


def _build(op: YeeOperator, inj: Injection, cb: jax.Array, amplitude: jax.Array):
    return eqx.tree_at(lambda o: o.cb, op, cb), eqx.tree_at(lambda i: i.amplitude, inj, amplitude)


def _forward(params, op, inj, mon, steps, window_start, dt):
    """Forward run; returns the DFT sums, the final fields and the shell records."""
    op_c, inj_c = _build(op, inj, *params)
    dtype = op_c.cb.dtype
    _, shell_e, _, shell_h = _masks(op)

    def body(carry, n):
        f, acc = carry
        rec = (f.e.reshape(-1)[shell_e], f.h.reshape(-1)[shell_h])
        f, contrib = _step_acc(op_c, inj_c, mon, f, n, window_start, dt)
        return (f, jax.tree_util.tree_map(jnp.add, acc, contrib)), rec

    (f, acc), recs = lax.scan(body, (op_c.zero_fields(dtype), mon.zero_accumulator(dtype)), jnp.arange(steps))
    return acc, f, recs


@eqx.filter_custom_vjp
def _run(params, op, inj, mon, steps, window_start, dt):
    return _forward(params, op, inj, mon, steps, window_start, dt)[0]


@_run.def_fwd
def _run_fwd(perturbed, params, op, inj, mon, steps, window_start, dt):
    acc, f, recs = _forward(params, op, inj, mon, steps, window_start, dt)
    return acc, (f, recs)


@_run.def_bwd
def _run_bwd(residuals, ct_acc, perturbed, params, op, inj, mon, steps, window_start, dt):
    f_end, (rec_e, rec_h) = residuals
    cb_, amp_ = params
    op_c, inj_c = _build(op, inj, cb_, amp_)
    int_e, shell_e, int_h, shell_h = _masks(op)
    zero_f = op_c.zero_fields(cb_.dtype)
    zero_acc = mon.zero_accumulator(cb_.dtype)
    ct_acc = {k: (jnp.zeros_like(zero_acc[k]) if ct_acc.get(k) is None else ct_acc[k]) for k in zero_acc}

    def unstep(f1, n, re, rh):
        """Rebuild ``(E(t), H~(t - dt/2))`` in the interior from the next state and the shell records."""
        t = n.astype(cb_.dtype) * dt
        ch, _ = op_c.curl(f1.h, "e", (), pml=False)
        inj_e = inj_c.apply_e(jnp.zeros_like(f1.e), op_c.cb, t + dt / 2)
        e0 = jnp.where(int_e, op_c.ca * (f1.e - op_c.cb * ch - inj_e), 0.0)
        e0 = e0.reshape(-1).at[shell_e].set(re).reshape(e0.shape)
        ce, _ = op_c.curl(e0, "h", (), pml=False)
        inj_h = inj_c.apply_h(jnp.zeros_like(f1.h), t, op_c.courant)
        h0 = jnp.where(int_h, f1.h + op_c.courant * ce - inj_h, 0.0)
        h0 = h0.reshape(-1).at[shell_h].set(rh).reshape(h0.shape)
        return Fields(e0, h0, zero_f.psi_e, zero_f.psi_h), ch

    def body(carry, xs):
        f1, lam, g_cb, g_amp = carry
        n, re, rh = xs
        f0, ch = unstep(f1, n, re, rh)
        t = n.astype(cb_.dtype) * dt
        on = n >= window_start

        def step(f, a):
            return _step_acc(op_c, eqx.tree_at(lambda i: i.amplitude, inj_c, a), mon, f, n, window_start, dt)

        # State and amplitude cotangents: the step is linear in the fields, so its transpose does
        # not need the (unknown) CPML memory of the rebuilt state.
        _, vjp = jax.vjp(step, f0, amp_)
        lam0, damp = vjp((lam, ct_acc))

        # Permittivity (cb) cotangent from the E update with the true H~(t + dt/2) (exact in the interior).
        def e_update(c):
            e1 = inj_c.apply_e(op_c.ca * f0.e + c * ch, c, t + dt / 2)
            contrib = mon.accumulate(zero_acc, Fields(e1, f1.h, zero_f.psi_e, zero_f.psi_h), t + dt, dt)
            return e1, jax.tree_util.tree_map(lambda v: jnp.where(on, v, jnp.zeros_like(v)), contrib)

        _, vjp_c = jax.vjp(e_update, cb_)
        (dcb,) = vjp_c((lam.e, ct_acc))
        return (f0, lam0, g_cb + dcb, g_amp + damp), None

    lam_end = jax.tree_util.tree_map(jnp.zeros_like, f_end)
    init = (f_end, lam_end, jnp.zeros_like(cb_), jnp.zeros_like(amp_))
    (_, _, g_cb, g_amp), _ = lax.scan(body, init, (jnp.arange(steps), rec_e, rec_h), reverse=True)
    return jnp.where(int_e, g_cb, 0.0), g_amp


def adjoint_run(op: YeeOperator, inj: Injection, mon: Monitor, steps: int, window_start: int, dt: float,
                cb: jax.Array, amplitude: jax.Array) -> dict:
    """DFT sums of a run of ``steps`` steps from rest, differentiable in ``cb`` and ``amplitude``.

    ``op`` and ``inj`` supply everything else (their ``cb`` and ``amplitude`` are replaced by the
    arguments) and are not differentiated; ``op.ca`` must be the PEC mask (no loss).

    Returns:
        the monitor's accumulator dict (``grid`` and, with points, ``points``), summed over steps
        ``>= window_start``.
    """
    return _run((cb, amplitude), op, inj, mon, int(steps), int(window_start), float(dt))
