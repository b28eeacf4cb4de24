"""Trust: calibrated error bounds, label-free error signals, a shift monitor and solver fallback.

>>> from pdesurrogate import trust
>>> cal = trust.calibrate(run_dir, data_dir, alpha=0.1)   # doctest: +SKIP  (saves run_dir/trust.json)
>>> report = trust.assess(run_dir, test_dir)             # doctest: +SKIP  coverage, spearman, auroc, flagged
>>> guarded = trust.guard(run_dir, solver=solve)         # doctest: +SKIP  (a trust.Guarded)

Modules: :mod:`.conformal` (split, pointwise-band and adaptive conformal), :mod:`.combine`
(monotone signal combination), :mod:`.signals` (residual, spread, time reversal), :mod:`.ensemble`
(vmapped ensembles), :mod:`.monitor` (kNN conformal and MMD shift tests), :mod:`.calibration`,
:mod:`.guarded` (the fallback forward model) and :mod:`.run` (runs and datasets; imports ``training``).
See ``docs/trust.md``.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AdaptiveConformal": "conformal", "conformal_quantile": "conformal", "coverage": "conformal",
    "normalised_scores": "conformal", "pointwise_band": "conformal",
    "MonotoneCombiner": "combine", "isotonic": "combine",
    "relative_spread": "signals", "rms": "signals", "time_reversal": "signals",
    "Ensemble": "ensemble", "ShiftMonitor": "monitor", "medium_features": "monitor", "mmd2": "monitor",
    "Calibration": "calibration", "TRUST_FILE": "calibration", "fit_calibration": "calibration",
    "Guarded": "guarded",
    "assess": "run", "assess_sets": "run", "bound_figure": "run", "calibrate": "run", "guard": "run",
    "load_operator": "run", "markdown_table": "run", "measure_set": "run", "reference_solver": "run", "report": "run",
    "signal_function": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import pdesurrogate.trust` stays light (as `pdesurrogate`).
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"pdesurrogate.trust.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pdesurrogate.trust' has no attribute {name!r}")
