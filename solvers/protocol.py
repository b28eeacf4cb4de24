"""The one protocol shared by solvers and surrogates."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


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
