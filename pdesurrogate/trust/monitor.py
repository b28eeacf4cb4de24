"""Shift monitor: is a surrogate's input still like its calibration inputs?

Two tests on feature vectors (the log error signals and a few descriptors of the medium, see
:func:`medium_features`), both against the calibration set's features:

- per sample, a split-conformal p-value of a k-nearest-neighbour distance
  (:meth:`ShiftMonitor.sample_pvalues`): the reference is split into a half the distances are
  measured to and a half that calibrates them, so that an exchangeable input has
  ``P(p <= level) <= level`` exactly;
- per window of consecutive inputs (e.g. an inversion's iterates), a kernel two-sample test
  (:meth:`ShiftMonitor.window_pvalue`): the unbiased MMD^2 (Gretton et al. 2012) with a Gaussian
  kernel of median-heuristic width, with a permutation p-value.

Sliding windows along a stream (:meth:`ShiftMonitor.stream_pvalues`) test overlapping windows at
each step, so the alarm rate per stream is above the per-window level; the per-window level is
what :func:`pdesurrogate.trust.assess` reports as false alarms.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pdesurrogate.evaluation.metrics import radial_band_index

_TINY = 1e-30


def medium_features(media: np.ndarray) -> np.ndarray:
    """Descriptors of media ``(B, M, *shape)`` relative to their background (the median edge value):
    per channel, ``log`` RMS deviation, ``log`` max deviation, the share of cells deviating by more
    than a tenth of the maximum (the object's extent) and the share of deviation energy above a
    third of the Nyquist wavenumber (texture). Returns ``(B, 4 M)``."""
    m = np.asarray(media, np.float64)
    if m.ndim < 3:
        raise ValueError(f"media must be (B, M, *shape), got {m.shape}")
    spatial = m.shape[2:]
    edge = np.concatenate([np.moveaxis(m, a, 2)[:, :, [0, -1]].reshape(*m.shape[:2], -1)
                           for a in range(2, m.ndim)], axis=2)
    dev = m - np.median(edge, axis=2).reshape(*m.shape[:2], *(1,) * len(spatial))
    flat = np.abs(dev).reshape(*m.shape[:2], -1)
    peak = flat.max(axis=2)
    rms = np.sqrt(np.mean(flat**2, axis=2))
    extent = np.mean(flat > 0.1 * peak[..., None], axis=2)
    power = np.abs(np.fft.fftn(dev, axes=tuple(range(2, m.ndim)))) ** 2
    high = (radial_band_index(spatial) > 0).reshape(-1)
    texture = power.reshape(*m.shape[:2], -1)[..., high].sum(2) / (power.reshape(*m.shape[:2], -1).sum(2) + _TINY)
    feats = np.stack([np.log(rms + _TINY), np.log(peak + _TINY), extent, texture], axis=2)
    return feats.reshape(m.shape[0], -1)


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None] - 2 * a @ b.T, 0.0)


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 between samples ``x`` ``(m, d)`` and ``y`` ``(n, d)``, Gaussian kernel of width ``bandwidth``."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"the MMD needs >= 2 samples on each side, got {m} and {n}")
    k = lambda a, b: np.exp(-_sq_distances(a, b) / (2 * bandwidth**2))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


@dataclasses.dataclass(frozen=True)
class ShiftMonitor:
    """Two-sample tests of new feature vectors against reference (calibration) features.

    Attributes:
        reference: ``(n, d)`` reference features (n >= 4).
        level: the significance level of a flag.
        window: inputs per window of the MMD test.
        permutations: permutations of the MMD test's p-value.
        neighbours: ``k`` of the k-nearest-neighbour distance.
        seed: seed of the permutations and of the reference subsample.
    """

    reference: np.ndarray
    level: float = 0.05
    window: int = 16
    permutations: int = 199
    neighbours: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        ref = np.asarray(self.reference, np.float64)
        if ref.ndim != 2 or ref.shape[0] < 4 or not np.all(np.isfinite(ref)):
            raise ValueError(f"reference must be (n >= 4, d) finite features, got {ref.shape}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 inputs, got {self.window!r}")
        if self.permutations < 1 or self.neighbours < 1:
            raise ValueError(f"permutations and neighbours must be >= 1, got {self.permutations}, {self.neighbours}")
        object.__setattr__(self, "reference", ref)

    # ----- standardisation and the kNN conformal test ------------------------------------------------
    @property
    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        return self.reference.mean(0), self.reference.std(0) + 1e-12

    def _standard(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.reference.shape[1]:
            raise ValueError(f"features must be (m, {self.reference.shape[1]}), got {x.shape}")
        mean, std = self._scale
        return (x - mean) / std

    def _knn(self, x: np.ndarray, fit: np.ndarray) -> np.ndarray:
        k = min(self.neighbours, len(fit))
        return np.sqrt(np.sort(_sq_distances(x, fit), axis=1)[:, k - 1])

    def sample_pvalues(self, features: np.ndarray) -> np.ndarray:
        """Conformal p-values ``(m,)`` of single inputs (small: unlike the reference)."""
        ref = self._standard(self.reference)
        half = len(ref) // 2
        fit, cal = ref[:half], ref[half:]
        cal_scores = self._knn(cal, fit)
        scores = self._knn(self._standard(features), fit)
        return (1.0 + np.sum(cal_scores[None] >= scores[:, None], axis=1)) / (len(cal_scores) + 1.0)

    # ----- the windowed MMD test ---------------------------------------------------------------------
    @property
    def bandwidth(self) -> float:
        """The median pairwise distance of the standardised reference."""
        ref = self._standard(self.reference)
        d = np.sqrt(_sq_distances(ref, ref))[np.triu_indices(len(ref), 1)]
        return float(np.median(d)) or 1.0

    def window_pvalue(self, features: np.ndarray, bandwidth: float | None = None) -> float:
        """Permutation p-value of the MMD test between ``features`` ``(w, d)`` and the reference."""
        x = self._standard(features)
        if len(x) < 2:
            raise ValueError(f"a window needs >= 2 inputs, got {len(x)}")
        rng = np.random.default_rng(self.seed)
        ref = self._standard(self.reference)
        y = ref[rng.permutation(len(ref))[:max(4 * len(x), 32)]]
        h = self.bandwidth if bandwidth is None else bandwidth
        observed = mmd2(x, y, h)
        pooled = np.concatenate([x, y])
        count = 0
        for _ in range(self.permutations):
            p = rng.permutation(len(pooled))
            count += mmd2(pooled[p[:len(x)]], pooled[p[len(x):]], h) >= observed
        return (1.0 + count) / (self.permutations + 1.0)

    def stream_pvalues(self, features: np.ndarray) -> np.ndarray:
        """``(T,)`` p-values of the window of ``window`` inputs ending at each step (NaN before the first full one)."""
        x = np.asarray(features, np.float64)
        h = self.bandwidth
        out = np.full(len(x), np.nan)
        for t in range(self.window - 1, len(x)):
            out[t] = self.window_pvalue(x[t - self.window + 1:t + 1], h)
        return out

    def window_flags(self, features: np.ndarray) -> np.ndarray:
        """``(m,)`` flags: the inputs cut into consecutive windows of about ``window`` inputs (at
        least 2 each), every input flagged when its window's p-value is at most ``level``."""
        x = np.asarray(features, np.float64)
        if len(x) < 2:
            raise ValueError(f"window flags need >= 2 inputs, got {len(x)}")
        h = self.bandwidth
        flags = np.zeros(len(x), bool)
        for chunk in np.array_split(np.arange(len(x)), max(len(x) // self.window, 1)):
            flags[chunk] = self.window_pvalue(x[chunk], h) <= self.level
        return flags

    def to_dict(self) -> dict:
        return {"reference": self.reference.tolist(), "level": self.level, "window": self.window,
                "permutations": self.permutations, "neighbours": self.neighbours, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> ShiftMonitor:
        return cls(np.asarray(d["reference"]), float(d["level"]), int(d["window"]), int(d["permutations"]),
                   int(d["neighbours"]), int(d["seed"]))
