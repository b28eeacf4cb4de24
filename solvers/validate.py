"""Early input validation shared by the solvers.

Every check raises ``ValueError`` naming the argument and the allowed range, before anything is
compiled or run. Checks run on concrete (host) values; traced values (inside ``jit``/``grad``)
are passed through unchecked, since their values are unknown at trace time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np


def is_concrete(x: object) -> bool:
    """True when ``x`` has a value now (not a JAX tracer)."""
    return not isinstance(x, jax.core.Tracer)


def check_positive_finite_scalar(name: str, value: float) -> float:
    """Return ``float(value)``; raise unless it is a finite real number > 0 (not a bool)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_field(
    name: str,
    value: object,
    shape: tuple[int, ...],
    *,
    minimum: float | None = None,
    strict: bool = True,
    unit: str = "",
) -> None:
    """Check a material or field array: scalar or array of ``shape``, finite, and above ``minimum``.

    Args:
        name: argument name used in the message.
        value: scalar or array; tracers are only shape-checked.
        shape: the required array shape (scalars broadcast).
        minimum: lower bound, ``None`` for none.
        strict: ``True`` for ``> minimum``, ``False`` for ``>= minimum``.
        unit: unit shown in the message.
    """
    vshape = tuple(np.shape(value))
    if vshape not in ((), tuple(shape)):
        raise ValueError(f"{name} must be a scalar or an array of shape {tuple(shape)}, got shape {vshape}")
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be real-valued (integer or floating point), got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite everywhere, got non-finite values")
    if minimum is not None:
        bad = arr <= minimum if strict else arr < minimum
        if np.any(bad):
            op = ">" if strict else ">="
            raise ValueError(
                f"{name} must be {op} {minimum:g}{(' ' + unit) if unit else ''} everywhere, "
                f"got min {float(arr.min()):g}"
            )


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_int_range(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """Return ``int(value)``; raise unless it is an integer in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi if hi is not None else 'inf'}], got {v}")
    return v
