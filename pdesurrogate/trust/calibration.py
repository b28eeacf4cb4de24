"""A calibration: signals -> predicted error (monotone), a conformal multiplier, a tolerance, a monitor.

:func:`fit_calibration` splits the calibration samples at random into a part that fits the
:class:`~pdesurrogate.trust.combine.MonotoneCombiner` (``fit_fraction``) and a part whose scores
``error / predicted error`` give the split-conformal quantile ``q``; the bound of a new sample is
``q * predicted error``, with coverage ``>= 1 - alpha`` for exchangeable inputs (the combiner does
not see the conformal part, so the guarantee holds exactly). The monitor's reference is the
features of all calibration samples.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogate.trust.combine import MonotoneCombiner
from pdesurrogate.trust.conformal import AdaptiveConformal, conformal_quantile, normalised_scores
from pdesurrogate.trust.monitor import ShiftMonitor

TRUST_FILE = "trust.json"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Everything a run needs at run time to bound its error without labels.

    Attributes:
        alpha: the miscoverage level of the bound.
        combiner: signals ``(n, J)`` -> predicted error ``(n,)``.
        quantile: the conformal multiplier ``q``: bound = ``q * predicted error``.
        scores: the conformal part's scores ``error / predicted error`` (the start of adaptive updates).
        tolerance: the error above which an answer is not acceptable (relative L2).
        monitor: the shift monitor on the calibration features.
        band: the ``(alpha, delta)`` pointwise band multiplier, or ``None``
            (:func:`pdesurrogate.trust.conformal.pointwise_band`).
        info: provenance (data, sample counts, ...).
    """

    alpha: float
    combiner: MonotoneCombiner
    quantile: float
    scores: tuple[float, ...]
    tolerance: float
    monitor: ShiftMonitor
    band: float | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The signal names, in the column order of :meth:`bound`'s input."""
        return self.combiner.names

    def predicted_error(self, signals: np.ndarray) -> np.ndarray:
        return self.combiner(signals)

    def bound(self, signals: np.ndarray) -> np.ndarray:
        """The error bounds ``(n,)`` of signals ``(n, J)`` (a scalar array for ``(J,)``)."""
        return self.quantile * self.combiner(signals)

    def adaptive(self, gamma: float = 0.01) -> AdaptiveConformal:
        """An adaptive-conformal state starting from this calibration's scores."""
        return AdaptiveConformal.start(np.asarray(self.scores), self.alpha, gamma)

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "alpha": self.alpha, "combiner": self.combiner.to_dict(),
                "quantile": self.quantile, "scores": list(self.scores), "tolerance": self.tolerance,
                "monitor": self.monitor.to_dict(), "band": self.band, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if d.get("version") != VERSION:
            raise ValueError(f"calibration version {d.get('version')!r} is not {VERSION}; recalibrate the run")
        return cls(float(d["alpha"]), MonotoneCombiner.from_dict(d["combiner"]), float(d["quantile"]),
                   tuple(d["scores"]), float(d["tolerance"]), ShiftMonitor.from_dict(d["monitor"]),
                   None if d.get("band") is None else float(d["band"]), dict(d.get("info", {})))

    def save(self, run_dir: str | Path) -> Path:
        """Write ``run_dir/trust.json``."""
        from pdesurrogate.io import write_json

        path = Path(run_dir) / TRUST_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> Calibration:
        """Read ``run_dir/trust.json`` (written by :func:`pdesurrogate.trust.calibrate`)."""
        path = Path(run_dir) / TRUST_FILE
        if not path.is_file():
            raise ValueError(f"{run_dir} has no {TRUST_FILE}; run `pdesurrogate calibrate {run_dir} --data DIR`")
        return cls.from_dict(json.loads(path.read_text()))


def fit_calibration(signals: np.ndarray, errors: np.ndarray, features: np.ndarray, names: Sequence[str],
                    alpha: float = 0.1, *, tolerance: float | None = None, fit_fraction: float = 0.3,
                    band: float | None = None, seed: int = 0, monitor_level: float = 0.05, window: int = 16,
                    info: dict[str, Any] | None = None) -> Calibration:
    """Fit a :class:`Calibration` on labelled calibration samples.

    Args:
        signals: ``(n, J)`` positive label-free signals.
        errors: ``(n,)`` true errors (relative L2 against the solver).
        features: ``(n, d)`` monitor features.
        names: ``J`` signal names.
        alpha: miscoverage of the bound, in (0, 1).
        tolerance: the acceptable error; default the calibration errors' ``1 - alpha`` quantile.
        fit_fraction: share of samples that fit the combiner, in (0, 1); the rest calibrate ``q``.
        band: a pointwise band multiplier to store (see :func:`pdesurrogate.trust.conformal.pointwise_band`).
        seed: seed of the random split.
        monitor_level, window: the monitor's level and window (see :class:`ShiftMonitor`).
        info: provenance stored with the calibration.
    """
    s, e, f = np.asarray(signals, np.float64), np.asarray(errors, np.float64), np.asarray(features, np.float64)
    n = len(e)
    if s.shape != (n, len(names)) or f.ndim != 2 or len(f) != n:
        raise ValueError(f"signals must be ({n}, {len(names)}) and features ({n}, d), got {s.shape} and {f.shape}")
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction!r}")
    n_fit = int(round(fit_fraction * n))
    if n_fit < 2 or n - n_fit < 2:
        raise ValueError(f"{n} calibration samples leave {n_fit} to fit and {n - n_fit} to calibrate; need >= 2 each")
    order = np.random.default_rng(seed).permutation(n)
    fit, cal = order[:n_fit], order[n_fit:]
    combiner = MonotoneCombiner.fit(s[fit], e[fit], names)
    scores = normalised_scores(e[cal], combiner(s[cal]))
    tol = float(np.quantile(e, 1.0 - alpha)) if tolerance is None else float(tolerance)
    if not tol > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    return Calibration(float(alpha), combiner, conformal_quantile(scores, alpha), tuple(scores.tolist()), tol,
                       ShiftMonitor(f, level=monitor_level, window=window, seed=seed), band,
                       dict(info or {}) | {"n": n, "n_fit": n_fit, "n_conformal": n - n_fit})
