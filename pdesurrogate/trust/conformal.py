"""Conformal error bounds with finite-sample coverage.

- :func:`conformal_quantile`: the split-conformal quantile of calibration scores, the
  ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` scores (``inf`` when that exceeds ``n``).
  For a new sample exchangeable with the calibration samples, ``P(score <= q) >= 1 - alpha``, and
  ``<= 1 - alpha + 1 / (n + 1)`` when scores have no ties (Vovk et al. 2005; Lei et al. 2018).
- Normalised scores ``error / signal`` (:func:`normalised_scores`): the bound of a new sample is
  ``q * signal``, computed without its label (Papadopoulos et al. 2008, "normalised" conformal
  regression).
- :func:`pointwise_band`: a band on the field in the style of UQNO (Ma et al. 2024): ``lambda``
  such that, with probability ``>= 1 - delta`` over a new sample, at least ``1 - alpha`` of its
  points satisfy ``|error(x)| <= lambda * scale(x)`` (an ``(alpha, delta)`` risk-controlling bound).
- :class:`AdaptiveConformal`: adaptive conformal inference (Gibbs & Candes 2021) along a stream:
  ``alpha_{t+1} = alpha_t + gamma (alpha - miss_t)`` from occasional labelled checks (a solver run),
  so that the long-run miss rate tends to ``alpha`` even when the stream drifts.

All functions are host-side (numpy) and take per-sample arrays on the leading axis.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def _check_level(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a miscoverage level in (0, 1), got {value!r}")
    return float(value)


def conformal_rank(n: int, alpha: float) -> int:
    """``ceil((n + 1)(1 - alpha))``: the rank (1-based) of the conformal quantile among ``n`` scores."""
    alpha = _check_level("alpha", alpha)
    if n < 1:
        raise ValueError(f"the conformal quantile needs >= 1 calibration score, got {n}")
    return int(math.ceil((n + 1) * (1.0 - alpha) - 1e-12))


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """Split-conformal quantile of ``scores`` ``(n,)`` at miscoverage ``alpha`` (``inf`` if ``n`` is
    too small: ``ceil((n + 1)(1 - alpha)) > n``, i.e. ``n < 1 / alpha - 1``)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    if s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be a non-empty array of finite values, got {s.size} values")
    k = conformal_rank(s.size, alpha)
    return float("inf") if k > s.size else float(np.sort(s)[k - 1])


def normalised_scores(errors: np.ndarray, signals: np.ndarray) -> np.ndarray:
    """``errors / signals`` ``(n,)``: the scores whose quantile ``q`` gives the bound ``q * signal``.

    Args:
        errors: ``(n,)`` true errors (e.g. relative L2), >= 0.
        signals: ``(n,)`` label-free error predictions, > 0.
    """
    e, s = np.asarray(errors, np.float64), np.asarray(signals, np.float64)
    if e.shape != s.shape or e.ndim != 1:
        raise ValueError(f"errors and signals must be (n,) arrays of one shape, got {e.shape} and {s.shape}")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("signals must be positive and finite (a label-free error prediction)")
    return e / s


def coverage(errors: np.ndarray, bounds: np.ndarray) -> float:
    """Share of samples with ``error <= bound``."""
    e, b = np.asarray(errors, np.float64), np.asarray(bounds, np.float64)
    if e.shape != b.shape or e.size == 0:
        raise ValueError(f"errors and bounds must be non-empty arrays of one shape, got {e.shape} and {b.shape}")
    return float(np.mean(e <= b))


def pointwise_band(errors: np.ndarray, scales: np.ndarray, alpha: float, delta: float) -> float:
    """``lambda`` of the ``(alpha, delta)`` risk-controlling pointwise band ``|error(x)| <= lambda scale(x)``.

    For calibration sample ``i`` the per-sample score is the ``1 - alpha`` quantile over its points
    of ``|error_i(x)| / scale_i(x)``, so at least ``1 - alpha`` of its points lie in the band
    ``score_i * scale_i``; ``lambda`` is the split-conformal quantile of those scores at level
    ``delta``: a new exchangeable sample has at least ``1 - alpha`` of its points covered with
    probability ``>= 1 - delta``.

    Args:
        errors: ``(n, ...)`` pointwise errors (real or complex; their modulus counts).
        scales: ``(n, ...)`` label-free pointwise scales (e.g. the ensemble spread), > 0.
        alpha: share of points per sample allowed outside the band, in (0, 1).
        delta: probability that a sample has more than ``alpha`` of its points outside, in (0, 1).
    """
    alpha = _check_level("alpha", alpha)
    e, s = np.abs(np.asarray(errors)), np.asarray(scales, np.float64)
    if e.shape != s.shape or e.ndim < 2:
        raise ValueError(f"errors and scales must be (n, ...) arrays of one shape, got {e.shape} and {s.shape}")
    if not np.all(s > 0):
        raise ValueError("scales must be positive everywhere")
    ratio = (e / s).reshape(e.shape[0], -1)
    per_sample = np.quantile(ratio, 1.0 - alpha, axis=1, method="higher")
    return conformal_quantile(per_sample, delta)


@dataclasses.dataclass(frozen=True)
class AdaptiveConformal:
    """Adaptive conformal inference (Gibbs & Candes 2021) over a stream of occasional checks.

    The bound of a sample is ``quantile * signal`` with ``quantile`` the conformal quantile of
    ``scores`` at the current level ``alpha_t``; every labelled check (a solver run) records
    whether its score was above that quantile and moves ``alpha_t`` by ``gamma (alpha - miss)``.
    The checked score joins ``scores``, so the quantile follows the stream.

    Attributes:
        scores: ``(n,)`` calibration scores ``error / signal`` (then those of the checks).
        alpha: the target miscoverage.
        alpha_t: the current level (may leave (0, 1): below 0 the bound is infinite, at or
            above 1 it is 0).
        gamma: step size (Gibbs & Candes use 0.005-0.05).
        misses, checks: counts along the stream.
    """

    scores: tuple[float, ...]
    alpha: float
    alpha_t: float
    gamma: float = 0.01
    misses: int = 0
    checks: int = 0

    @classmethod
    def start(cls, scores: np.ndarray, alpha: float, gamma: float = 0.01) -> AdaptiveConformal:
        """Start at ``alpha_t = alpha`` from calibration ``scores`` ``(n,)``."""
        alpha = _check_level("alpha", alpha)
        if not (0.0 < gamma < 1.0):
            raise ValueError(f"gamma must be a step size in (0, 1), got {gamma!r}")
        s = np.asarray(scores, np.float64).reshape(-1)
        if s.size == 0 or not np.all(np.isfinite(s)):
            raise ValueError("scores must be a non-empty array of finite values")
        return cls(tuple(float(v) for v in s), alpha, alpha, float(gamma))

    @property
    def quantile(self) -> float:
        """The current multiplier of the signal (``inf`` when ``alpha_t <= 0``)."""
        if self.alpha_t <= 0:
            return float("inf")
        if self.alpha_t >= 1:
            return 0.0
        return conformal_quantile(np.asarray(self.scores), self.alpha_t)

    @property
    def miss_rate(self) -> float:
        """Share of checks whose score was above the quantile of its time (NaN before any check)."""
        return self.misses / self.checks if self.checks else float("nan")

    def update(self, score: float) -> AdaptiveConformal:
        """The state after one labelled check with ``score = error / signal``."""
        if not math.isfinite(score) or score < 0:
            raise ValueError(f"score must be a finite error / signal ratio >= 0, got {score!r}")
        miss = float(score > self.quantile)
        return dataclasses.replace(self, scores=self.scores + (float(score),),
                                   alpha_t=self.alpha_t + self.gamma * (self.alpha - miss),
                                   misses=self.misses + int(miss), checks=self.checks + 1)
