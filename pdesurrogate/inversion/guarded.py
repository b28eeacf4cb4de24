"""The guarded hybrid: per iterate, the surrogate where the trust guard accepts it, the solver elsewhere.

A :class:`GuardedForward` stage of :func:`pdesurrogate.inversion.run` asks a
:class:`pdesurrogate.trust.Guarded` at the start of every iteration, from the current iterate ``m``
(its operator input ``medium(m)``), which forward model the iteration's step uses:

- ``"surrogate"`` when the calibrated bound ``q_t * predicted error`` is at most the tolerance and
  the shift monitor flags neither the iterate nor the window of the latest iterates;
- ``"solver"`` otherwise (the fallback).

The step (objective, gradient and L-BFGS line search) then runs on that one model, so the optimiser
never sees an objective that changes inside an iteration; when the model differs from the previous
iteration's, the optimiser state restarts (its curvature pairs belong to the other model). With
``hold > 0``, a fallback keeps the solver for at least ``hold`` iterations even where the guard would
accept the surrogate again (hysteresis: a bound that hovers at the tolerance would otherwise switch
models, and restart L-BFGS, every iteration); the guard still decides, and logs, every iteration. Every
``check_every``-th iterate the guard also runs its reference solver (``Guarded.solver`` on
``medium(m)``, whatever the decision): the surrogate's error there updates the adaptive-conformal
multiplier ``q_t``, so the bound keeps its coverage along the inversion path.

A decision costs one surrogate pass with its signals (counted as ``n_items`` surrogate calls), a check
one solver pass over every item (``n_items`` solver calls). The history gets ``decision``, ``held``, ``reason``
(``"trusted"`` or the flags: ``bound``, ``input``, ``window``), ``bound``, ``check``, ``guard_error`` and
``guard_seconds``; the guard's ``log`` holds one record per iteration, in order.

    guard = trust.guard(run_dir, trust.reference_solver(run_dir), tolerance=0.05, check_every=10)
    fwd = GuardedForward(surrogate, solver, guard, medium=lambda c: jnp.stack([c, rho]))
    Stage("band0", 20, fwd, misfit, data)

The guard's state (multiplier, monitor window, log) is not part of the loop's checkpoint, so a
guarded stage runs without ``checkpoint_dir``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from pdesurrogate.inversion.forward import ForwardModel
from pdesurrogate.trust.guarded import Guarded


@dataclass(frozen=True, eq=False)
class GuardedForward:
    """The surrogate and the solver behind a trust guard (see the module docstring).

    Attributes:
        surrogate: the surrogate-kind :class:`ForwardModel` (the steps where the guard trusts it).
        solver: the solver-kind :class:`ForwardModel` (the fallback steps).
        guard: the :class:`~pdesurrogate.trust.Guarded` of the surrogate's operator, taking one input,
            the operator's medium; its ``solver`` is the reference for the checks.
        medium: ``m -> medium``: the operator input of the inversion parameters ``m`` (e.g. sound speed
            ``(H, W)`` -> ``(2, H, W)`` with the density).
        hold: iterations a fallback keeps the solver before the surrogate may step again (0: none).
        name: a label for the history.

    Compared by identity: the guard's state belongs to one inversion.
    """

    surrogate: ForwardModel
    solver: ForwardModel
    guard: Guarded
    medium: Callable[[jax.Array], jax.Array]
    hold: int = 0
    name: str = "guarded"

    def __post_init__(self) -> None:
        if self.surrogate.kind != "surrogate" or self.solver.kind != "solver":
            raise ValueError("GuardedForward needs a surrogate-kind and a solver-kind ForwardModel, got "
                             f"{self.surrogate.kind!r} and {self.solver.kind!r}")
        if not isinstance(self.guard, Guarded):
            raise ValueError(f"guard must be a pdesurrogate.trust.Guarded, got {type(self.guard).__name__}")
        if isinstance(self.hold, bool) or not isinstance(self.hold, int) or self.hold < 0:
            raise ValueError(f"hold must be an integer >= 0 (iterations), got {self.hold!r}")

    def model(self, decision: str) -> ForwardModel:
        """The forward model of a decision (``"surrogate"`` or ``"solver"``)."""
        return {"surrogate": self.surrogate, "solver": self.solver}[decision]

    def decide(self, m: jax.Array, iteration: int) -> dict[str, Any]:
        """Ask the guard about the iterate ``m`` (the parameters); returns its log record (``decision``,
        ``reason``, ``bound``, ``check`` ...), whose ``id`` is ``iteration``."""
        self.guard.select(self.medium(jnp.asarray(m)), id=iteration, check=True)
        return self.guard.log[-1]


def guarded_forward(surrogate: ForwardModel, solver: ForwardModel, run_dir: Any,
                    medium: Callable[[jax.Array], jax.Array], *, tolerance: float | None = None,
                    check_every: int = 10, gamma: float = 0.01, hold: int = 0) -> GuardedForward:
    """The :class:`GuardedForward` of a calibrated run (``trust.calibrate``; ``run_dir/trust.json``):
    :func:`pdesurrogate.trust.guard` with the run's own data solver (:func:`pdesurrogate.trust.reference_solver`)
    as the checks' reference.

    Args:
        surrogate, solver: the inversion's forward models (``surrogate`` built on the run's operator).
        run_dir: the calibrated run directory.
        medium: ``m -> medium`` (see :class:`GuardedForward`).
        tolerance: acceptable relative L2 of the operator's output (default the calibration's).
        check_every: iterations between the guard's solver checks (0: none).
        gamma: the adaptive-conformal step size.
        hold: iterations a fallback keeps the solver (see :class:`GuardedForward`).
    """
    from pdesurrogate import trust

    if not isinstance(run_dir, str | Path) or not (Path(run_dir) / trust.TRUST_FILE).is_file():
        raise ValueError("the guarded hybrid needs surrogate= a run directory calibrated with "
                         f"`pdesurrogate calibrate` (holding {trust.TRUST_FILE}), got {run_dir!r}")
    guard = trust.guard(run_dir, trust.reference_solver(run_dir), tolerance, check_every=check_every, gamma=gamma)
    return GuardedForward(surrogate, solver, guard, medium, hold)
