"""Monotone combination of label-free error signals, fitted on calibration data.

A raw residual is an unreliable error proxy (ill-conditioned problems such as high-wavenumber
Helmholtz can have small residuals and large errors), so the signals are not trusted as they
are: :class:`MonotoneCombiner` fits ``log error ~ b + sum_j f_j(log signal_j)`` with every
``f_j`` non-decreasing (an additive isotonic model, fitted by backfitting with the
pool-adjacent-violators algorithm), and the conformal step then calibrates the ratio
``error / exp(...)`` (see :mod:`pdesurrogate.trust.conformal`). Beyond the calibration range
each ``f_j`` continues with slope 1 (the error grows in proportion to the signal), so a signal
larger than any seen in calibration keeps raising the prediction instead of saturating.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

_FLOOR = 1e-30


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares non-decreasing fit of ``y`` on ``x`` (pool adjacent violators).

    Args:
        x, y: ``(n,)`` arrays.
    Returns:
        ``(knots, values)``: the distinct sorted ``x`` and the fitted value at each (non-decreasing).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"x and y must be non-empty (n,) arrays of one shape, got {x.shape} and {y.shape}")
    knots, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, y, minlength=knots.size)
    counts = np.bincount(inverse, minlength=knots.size).astype(np.float64)
    blocks: list[list[float]] = []  # [sum, count, number of knots]
    for s, c in zip(sums, counts):
        blocks.append([s, c, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s2, c2, k2 = blocks.pop()
            blocks[-1] = [blocks[-1][0] + s2, blocks[-1][1] + c2, blocks[-1][2] + k2]
    values = np.concatenate([np.full(int(k), s / c) for s, c, k in blocks])
    return knots, values


def _evaluate(knots: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A fitted ``f_j`` at ``x``: linear between knots, slope 1 beyond them."""
    inside = np.interp(x, knots, values)
    return np.where(x > knots[-1], values[-1] + (x - knots[-1]), np.where(x < knots[0], values[0] + (x - knots[0]),
                                                                          inside))


@dataclasses.dataclass(frozen=True)
class MonotoneCombiner:
    """``predicted error = exp(intercept + sum_j f_j(log signal_j))`` with non-decreasing ``f_j``.

    Attributes:
        names: the signals' names, in column order.
        intercept: ``b`` (log error units).
        knots, values: per signal, the knots ``log signal_j`` and ``f_j`` there.
    """

    names: tuple[str, ...]
    intercept: float
    knots: tuple[tuple[float, ...], ...]
    values: tuple[tuple[float, ...], ...]

    @classmethod
    def fit(cls, signals: np.ndarray, errors: np.ndarray, names: Sequence[str], sweeps: int = 20) -> MonotoneCombiner:
        """Fit on calibration ``signals`` ``(n, J)`` (> 0) and true ``errors`` ``(n,)`` (> 0).

        Args:
            names: ``J`` signal names.
            sweeps: backfitting sweeps over the ``J`` signals (one suffices for ``J = 1``).
        """
        x, y = _log_signals(signals, len(names)), np.log(np.maximum(np.asarray(errors, np.float64), _FLOOR))
        if y.shape != (x.shape[0],):
            raise ValueError(f"errors must be ({x.shape[0]},), got {y.shape}")
        if sweeps < 1:
            raise ValueError(f"sweeps must be >= 1, got {sweeps}")
        b = float(y.mean())
        fits = [(np.unique(col), np.zeros(np.unique(col).size)) for col in x.T]
        parts = np.zeros_like(x)
        for _ in range(sweeps if x.shape[1] > 1 else 1):
            for j in range(x.shape[1]):
                knots, values = isotonic(x[:, j], y - b - parts.sum(1) + parts[:, j])
                shift = float(np.mean(_evaluate(knots, values, x[:, j])))
                fits[j] = (knots, values - shift)
                parts[:, j] = _evaluate(*fits[j], x[:, j])
            b = float(np.mean(y - parts.sum(1)))
        return cls(tuple(names), b, tuple(tuple(k.tolist()) for k, _ in fits),
                   tuple(tuple(v.tolist()) for _, v in fits))

    def __call__(self, signals: np.ndarray) -> np.ndarray:
        """Predicted errors ``(n,)`` of ``signals`` ``(n, J)`` (or ``(J,)`` for one sample: a scalar array)."""
        s = np.asarray(signals, np.float64)
        x = _log_signals(s.reshape(1, -1) if s.ndim == 1 else s, len(self.names))
        total = self.intercept + sum(_evaluate(np.asarray(k), np.asarray(v), x[:, j])
                                     for j, (k, v) in enumerate(zip(self.knots, self.values)))
        out = np.exp(total)
        return out[0] if s.ndim == 1 else out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MonotoneCombiner:
        return cls(tuple(d["names"]), float(d["intercept"]), tuple(tuple(k) for k in d["knots"]),
                   tuple(tuple(v) for v in d["values"]))


def _log_signals(signals: np.ndarray, n_signals: int) -> np.ndarray:
    s = np.asarray(signals, np.float64)
    if s.ndim != 2 or s.shape[1] != n_signals or s.shape[0] == 0:
        raise ValueError(f"signals must be (n, {n_signals}) with n >= 1, got {s.shape}")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("signals must be positive and finite")
    return np.log(s)
