"""A guarded forward model: the surrogate where its calibrated bound and the shift monitor allow
it, the reference solver elsewhere, every decision logged.

For each input, :class:`Guarded`:

1. runs the surrogate and its label-free signals (one call of ``signals``);
2. bounds the error: ``q_t * combiner(signals)``, with ``q_t`` the adaptive-conformal multiplier
   (:class:`~pdesurrogate.trust.conformal.AdaptiveConformal`, starting from the calibration's);
3. asks the monitor: the input's own conformal p-value, and the MMD p-value of the window of the
   last ``monitor.window`` inputs once it is full;
4. answers with the surrogate if the bound is at most ``tolerance`` and no p-value is at most the
   monitor's level, else with ``solver`` (the fallback);
5. every ``check_every``-th input, also has the solver's answer (run now if the surrogate answered):
   the error of the surrogate there updates ``q_t``, so the bound keeps its coverage along a
   drifting stream such as an inversion path (Gibbs & Candes 2021).

Use (here forward models ``medium -> answer``)::

    guarded = trust.guard(run_dir, solver=solve, tolerance=0.05)
    answer = guarded(medium)                    # the surrogate's or the solver's answer, logged
    fwd = guarded.select(medium, check=True)    # or only the callable to use (guarded.operator or
    value, grad = jax.value_and_grad(            # guarded.solver), to differentiate through it; the
        lambda p: misfit(fwd(p)))(medium)        # due checks run the solver (check=True)
    guarded.log[-1]["decision"]                 # "surrogate" or "solver": the tag
    guarded.summary()                           # fallback share, checks, miss rate, seconds

The inversions use it per iterate through :class:`pdesurrogate.inversion.guarded.GuardedForward`.

Every callable takes the same inputs ``*inputs`` (e.g. ``(medium, item)``); the routing itself is
host-side Python (not traced), so call :class:`Guarded` outside ``jit`` and differentiate through
what :meth:`Guarded.select` returns.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from pdesurrogate.evaluation.metrics import relative_l2
from pdesurrogate.trust.calibration import Calibration

_TINY = 1e-30


def relative_error(prediction: Any, truth: Any) -> float:
    """``||prediction - truth|| / ||truth||`` over all entries (real or complex): one sample of
    :func:`pdesurrogate.evaluation.metrics.relative_l2`."""
    return float(relative_l2(np.asarray(prediction)[None], np.asarray(truth)[None])[0])


def log_signal_features(signals: np.ndarray, *inputs: Any) -> np.ndarray:
    """Default monitor features: the log of the signals ``(J,)``."""
    del inputs
    return np.log(np.maximum(np.asarray(signals, np.float64), _TINY))


class Guarded:
    """A forward model that falls back to the reference solver when the surrogate cannot be trusted.

    Args:
        operator: the surrogate forward model ``operator(*inputs) -> prediction`` (what
            :meth:`select` returns when the surrogate may answer).
        calibration: the run's :class:`~pdesurrogate.trust.Calibration` (``trust.calibrate``).
        tolerance: the largest acceptable error (relative L2); default the calibration's.
        solver: the reference forward model ``solver(*inputs) -> answer`` (same shape).
        signals: ``signals(*inputs) -> (prediction, signals (J,))``: the surrogate's prediction and
            its label-free signals in ``calibration.names`` order (one jitted call; see
            :func:`pdesurrogate.trust.run.signal_function`).
        features: ``features(signals, *inputs) -> (d,)`` monitor features as calibrated (default the
            log signals).
        check_every: also run the solver on every ``check_every``-th input for an adaptive
            conformal update (0: never).
        gamma: the adaptive-conformal step size.
        error: ``error(prediction, truth) -> float`` (default :func:`relative_error`).

    Attributes:
        log: one dict per input: ``id``, ``signals``, ``predicted_error``, ``bound``, ``quantile``,
            ``pvalue`` (the input's own), ``window_pvalue`` (NaN until a window is full),
            ``decision`` (``"surrogate"`` / ``"solver"``), ``reason``, ``error`` (NaN unless the
            solver's answer was there), ``check`` (whether it updated ``q_t``), ``surrogate_s``,
            ``solver_s``, ``time`` (Unix seconds).
    """

    def __init__(self, operator: Callable[..., Any], calibration: Calibration, tolerance: float | None = None, *,
                 solver: Callable[..., Any], signals: Callable[..., tuple[Any, Any]],
                 features: Callable[..., np.ndarray] = log_signal_features, check_every: int = 10,
                 gamma: float = 0.01, error: Callable[[Any, Any], float] = relative_error):
        tolerance = calibration.tolerance if tolerance is None else tolerance
        if not (isinstance(tolerance, (int, float)) and np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be a positive relative error, got {tolerance!r}")
        if not isinstance(check_every, int) or check_every < 0:
            raise ValueError(f"check_every must be an integer >= 0, got {check_every!r}")
        self.operator, self.solver, self.signals, self.features = operator, solver, signals, features
        self.calibration, self.tolerance = calibration, float(tolerance)
        self.check_every, self.error = check_every, error
        self.adaptive = calibration.adaptive(gamma)
        self.window: collections.deque = collections.deque(maxlen=calibration.monitor.window)
        self.log: list[dict[str, Any]] = []
        self._bandwidth = calibration.monitor.bandwidth

    def _decide(self, inputs: tuple, input_id: Any) -> tuple[dict[str, Any], Any]:
        t0 = time.perf_counter()
        prediction, signals = jax.block_until_ready(self.signals(*inputs))
        surrogate_s = time.perf_counter() - t0
        signals = np.asarray(signals, np.float64)
        cal, monitor = self.calibration, self.calibration.monitor
        predicted = float(cal.predicted_error(signals))
        quantile = self.adaptive.quantile
        bound = quantile * predicted
        feats = np.asarray(self.features(signals, *inputs), np.float64)
        pvalue = float(monitor.sample_pvalues(feats[None])[0])
        self.window.append(feats)
        window_p = (monitor.window_pvalue(np.stack(self.window), self._bandwidth)
                    if len(self.window) == monitor.window else float("nan"))
        reasons = [r for r, bad in (("bound", not bound <= self.tolerance), ("input", pvalue <= monitor.level),
                                    ("window", window_p <= monitor.level)) if bad]
        record = {"id": len(self.log) if input_id is None else input_id, "signals": signals.tolist(),
                  "predicted_error": predicted, "bound": bound, "quantile": quantile, "pvalue": pvalue,
                  "window_pvalue": window_p, "decision": "solver" if reasons else "surrogate",
                  "reason": "+".join(reasons) or "trusted", "error": float("nan"), "check": False,
                  "surrogate_s": surrogate_s,
                  "solver_s": 0.0, "time": time.time()}
        return record, prediction

    def _check_due(self) -> bool:
        """Whether the next input is an adaptive-conformal check (every ``check_every``-th, from the first)."""
        return self.check_every > 0 and len(self.log) % self.check_every == 0

    def _solve(self, record: dict[str, Any], prediction: Any, inputs: tuple, update: bool) -> Any:
        """The solver's answer for ``inputs``; records its seconds and the surrogate's ``error`` in
        ``record`` and, with ``update``, moves ``q_t`` by that check's score."""
        t0 = time.perf_counter()
        truth = jax.block_until_ready(self.solver(*inputs))
        record["solver_s"] = time.perf_counter() - t0
        record["error"] = self.error(prediction, truth)
        record["check"] = update
        if update:
            self.adaptive = self.adaptive.update(record["error"] / max(record["predicted_error"], _TINY))
        return truth

    def __call__(self, *inputs: Any, id: Any = None) -> Any:  # noqa: A002 (the log's field name)
        """The answer for ``inputs``: the surrogate's prediction or the solver's answer (see the class)."""
        record, prediction = self._decide(inputs, id)
        check = self._check_due()
        answer = prediction
        if record["decision"] == "solver" or check:
            truth = self._solve(record, prediction, inputs, check)
            if record["decision"] == "solver":
                answer = truth
        self.log.append(record)
        return answer

    def select(self, *inputs: Any, id: Any = None, check: bool = False) -> Callable[..., Any]:  # noqa: A002
        """Decide (and log) for ``inputs``; returns ``operator`` or ``solver``, the callable to
        differentiate through. The solver runs only with ``check`` on an input where a check is due
        (every ``check_every``-th), to update ``q_t`` (the record's ``check`` is then true)."""
        record, prediction = self._decide(inputs, id)
        if check and self._check_due():
            self._solve(record, prediction, inputs, True)
        self.log.append(record)
        return self.operator if record["decision"] == "surrogate" else self.solver

    def summary(self) -> dict[str, Any]:
        """``n``, ``fallback`` share, reasons, ``checks`` with their ``miss_rate``, accepted answers above
        tolerance among the checked ones, and seconds spent in the surrogate and the solver."""
        n = len(self.log)
        if n == 0:
            return {"n": 0}
        decisions = np.array([r["decision"] for r in self.log])
        errors = np.array([r["error"] for r in self.log])
        accepted_checked = (decisions == "surrogate") & np.isfinite(errors)
        reasons = collections.Counter(r["reason"] for r in self.log)
        return {"n": n, "fallback": float(np.mean(decisions == "solver")), "reasons": dict(reasons),
                "checks": self.adaptive.checks, "miss_rate": self.adaptive.miss_rate,
                "quantile": self.adaptive.quantile, "accepted_checked": int(accepted_checked.sum()),
                "accepted_above_tolerance": float(np.mean(errors[accepted_checked] > self.tolerance))
                if accepted_checked.any() else float("nan"),
                "surrogate_s": float(sum(r["surrogate_s"] for r in self.log)),
                "solver_s": float(sum(r["solver_s"] for r in self.log))}
