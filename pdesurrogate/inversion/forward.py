"""Forward models for the inversion loop: the solver, a surrogate, and the corrected surrogate.

A forward model maps the medium parameters ``m`` (an array, the modality's units) and a vector of
item indices (shots for ultrasound, illumination angles for optics) to predicted data,
``predict(m, items) -> (len(items), ...)``. It is tagged ``kind="solver"`` or ``"surrogate"`` so the
loop can count the calls of each (``solver_calls`` / ``surrogate_calls`` in the history: one call
is one item's forward run; a gradient counts as one call of the same kind, its adjoint included).

Hybrid strategies:

- *Surrogate first, solver to finish*: two :class:`~pdesurrogate.inversion.loop.Stage` s, the first
  with the surrogate's :class:`ForwardModel`, the second with the solver's.
- *Data-domain correction* (:class:`Corrected`): at a centre ``m_c`` the surrogate ``S`` is
  corrected by the solver ``F`` item by item,

      d_i(m) = S_i(m) + [F_i(m_c) - S_i(m_c)]
      J_i(m) = phi_i(d_i(m)) + <g_i, m - m_c>,   g_i = grad phi_i(F_i)(m_c) - grad phi_i(d_i)(m_c)

  so that each item's misfit ``J_i`` *and* its gradient equal the solver's at ``m_c``
  (first-order consistency). This is trust-region model management (Alexandrov et al. 1998):
  a first-order consistent model, minimised within a trust region ``|m - m_c| <= radius`` (per
  parameter) and re-centred only where the solver confirms a decrease, drives the iterates to a
  stationary point of the true misfit. At each refresh the candidate centre is accepted when the
  solver's misfit (mean over all items) does not exceed the current centre's, and the radius
  doubles; otherwise the iterate returns to the current centre and the radius shrinks fourfold
  (``radius=None``: no trust region, every candidate accepted). The loop refreshes every ``refresh_every``
  iterations (and at the start of the stage) and restarts the optimiser there (each centre poses a
  new subproblem); a refresh costs one solver forward and gradient and
  one surrogate forward and gradient per item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

FORWARD_KINDS = ("solver", "surrogate")

Predict = Callable[[jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class ForwardModel:
    """A differentiable forward model.

    Attributes:
        predict: ``(m, items) -> data`` with ``items`` an int32 vector; the first axis of the output
            runs over the items. Must compose with ``jax.jit`` and ``jax.grad`` in ``m``.
        kind: ``"solver"`` or ``"surrogate"`` (what the call counters count).
        name: a label for the history and figures (default: ``kind``).
    """

    predict: Predict
    kind: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FORWARD_KINDS:
            raise ValueError(f"kind must be one of {list(FORWARD_KINDS)}, got {self.kind!r}")
        if not self.name:
            object.__setattr__(self, "name", self.kind)


@dataclass(frozen=True)
class Corrected:
    """The surrogate corrected to first order by the solver at a centre refreshed every
    ``refresh_every`` iterations, within a trust region of initial ``radius`` (parameter units;
    ``None``: none); see the module docstring."""

    surrogate: ForwardModel
    solver: ForwardModel
    refresh_every: int
    radius: float | None = None
    name: str = "corrected"

    def __post_init__(self) -> None:
        if self.surrogate.kind != "surrogate" or self.solver.kind != "solver":
            raise ValueError("Corrected needs a surrogate-kind and a solver-kind ForwardModel, got "
                             f"{self.surrogate.kind!r} and {self.solver.kind!r}")
        if isinstance(self.refresh_every, bool) or not isinstance(self.refresh_every, int) or self.refresh_every < 1:
            raise ValueError(f"refresh_every must be an integer >= 1 (iterations), got {self.refresh_every!r}")
        if self.radius is not None and not (isinstance(self.radius, int | float) and 0 < self.radius < float("inf")):
            raise ValueError(f"radius must be None or a finite number > 0 (parameter units), got {self.radius!r}")


_MEMO: dict[tuple, Any] = {}


def memo(key: tuple, build: Callable[[], Any]) -> Any:
    """``build()`` cached under ``key`` (the 16 latest), so equal inputs give the same forward model
    and repeated inversions reuse the loop's compiled programs (keyed by the model object)."""
    if key not in _MEMO:
        if len(_MEMO) >= 16:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = build()
    return _MEMO[key]


def load_once(run_dir: str | Path, load: Callable[[Path], Any]) -> Any:
    """``load(run_dir)`` once per run directory and state of its files (the newest modification
    time), through :func:`memo`: a surrogate named by its directory keeps its identity across
    inversions, so their programs compile once."""
    path = Path(run_dir).resolve()
    stamp = max((f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()), default=0)
    return memo(("load", str(path), stamp), lambda: load(path))
