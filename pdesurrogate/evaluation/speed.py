"""Speed of a surrogate against the reference solver, on the same device, for the same simulated
time, batched the way inversion uses them: forward, and forward plus the gradient with respect to
the medium.

A ratio ``solver_s / surrogate_s > 1`` means the surrogate is faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def time_call(fn: Callable[..., Any], *args: Any, repeats: int = 3) -> float:
    """Shortest wall time in s of ``repeats`` calls of ``fn(*args)`` (results blocked on), after one
    warm-up/compile call.

    The minimum, not the median: other load on the machine only ever adds time, and on shared CPU
    hosts it comes in bursts of seconds. In one process the same FDTD batch took 1.16 s for six
    calls in a row, then 2.1-3.0 s for the next six.
    """
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(min(times))


def _entry(surrogate_s: float, solver_s: float) -> dict[str, float]:
    return {"surrogate_s": surrogate_s, "solver_s": solver_s, "ratio": solver_s / max(surrogate_s, 1e-12)}


def compare(surrogate_fn: Callable[[jax.Array], jax.Array], solver_fn: Callable[[jax.Array], jax.Array],
            media: jax.Array, *, gradient: bool = True, repeats: int = 3) -> dict[str, Any]:
    """Time two ``media (B, M, *shape) -> outputs`` maps, forward and forward + gradient.

    The gradient is that of ``sum |outputs|^2`` with respect to ``media`` (one backward pass).
    Returns ``{"forward": {...}, "forward_gradient": {...}}`` with seconds per batch and ratios.
    """
    def grad_of(fn):
        return jax.jit(jax.grad(lambda m: jnp.sum(jnp.abs(fn(m)) ** 2).astype(jnp.float32)))

    out: dict[str, Any] = {"batch": int(media.shape[0]), "device": jax.devices()[0].device_kind,
                           "platform": jax.default_backend()}
    out["forward"] = _entry(time_call(jax.jit(surrogate_fn), media, repeats=repeats),
                            time_call(jax.jit(solver_fn), media, repeats=repeats))
    if gradient:
        out["forward_gradient"] = _entry(time_call(grad_of(surrogate_fn), media, repeats=repeats),
                                         time_call(grad_of(solver_fn), media, repeats=repeats))
    return out


def stepper_speed(surrogate: Any, solver: Callable[[jax.Array], Any], media: jax.Array, p0: jax.Array,
                  macro_steps: int, *, gradient: bool = True, repeats: int = 3,
                  read: Callable[[Any], jax.Array] = lambda state: state.p) -> dict[str, Any]:
    """A learned stepper against its solver over ``macro_steps`` macro steps (``macro_steps * k``
    solver steps: the same simulated time).

    Args:
        surrogate: a :class:`pdesurrogate.Surrogate`.
        solver: ``medium (M, *shape) -> solver Stepper`` (e.g. ``acoustic.Stepper`` with the data's
            scheme, PML and ``dt``).
        media: ``(B, M, *shape)``; p0: ``(B, *shape)`` initial fields (pressure or Ez).
        read: the solver state's channel-0 field (acoustic ``state.p``; Maxwell ``state.e[0]``).
    """
    k = surrogate.macro_steps

    def sur(m):
        return jax.vmap(lambda mi, pi: surrogate.with_medium(mi).run(surrogate.init(pi), macro_steps)[0])(m, p0)

    def sol(m):
        def one(mi, pi):
            st = solver(mi)
            return read(st.run(st.init(pi), macro_steps * k))
        return jax.vmap(one)(m, p0)

    out = compare(sur, sol, media, gradient=gradient, repeats=repeats)
    out |= {"macro_steps": macro_steps, "solver_steps": macro_steps * k, "simulated_time_s": macro_steps * surrogate.dt}
    return out
