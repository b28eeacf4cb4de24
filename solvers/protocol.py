"""The one protocol shared by solvers and surrogates."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import equinox as eqx


@runtime_checkable
class Stepper(Protocol):
    """Anything that advances a wave field in time.

    Solvers (one step = ``dt``) and learned surrogates (one step = a macro step of ``k * dt``)
    implement it, so inversion, evaluation and benchmarks accept either.
    """

    def init(self, initial_field: Any) -> Any:
        """State (a pytree) from an initial field; velocities / H fields start at zero."""
        ...

    def step(self, state: Any) -> Any:
        """Advance one step."""
        ...

    def run(self, state: Any, n: int) -> Any:
        """Advance ``n`` steps."""
        ...

    def reverse(self, state: Any) -> Any:
        """Time-reversal map R: acoustic (p, v) -> (p, -v); Maxwell (E, H) -> (E, -H)."""
        ...


class StepperModule(eqx.Module):
    """Base of the equinox modules that advance or map fields (solver and surrogate steppers).

    Identity equality and hashing make bound methods usable as ``jax.jit`` targets
    (``jax.jit(stepper.step)``): field-wise equality would compare arrays, which are unhashable.
    Structural comparison stays available through ``equinox.tree_equal``.
    """

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other
