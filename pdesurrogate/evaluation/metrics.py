"""Error metrics beyond averages: per-sample distributions, frequency bands, regions of interest.

All functions are host-side (numpy), take batches with the sample on the leading axis, and
accept real or complex arrays. ``relative L2`` of a sample is ``||pred - truth|| / ||truth||``
over all its entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES = {"median": 50.0, "p95": 95.0, "p99": 99.0}
BANDS = ("low", "mid", "high")
_TINY = 1e-30


def distribution(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``{n, mean, median, p95, p99, max}`` of per-sample values (NaN ignored; empty -> NaN stats)."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"n": 0, "mean": float("nan"), "median": float("nan"), "p95": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    out = {"n": int(v.size), "mean": float(v.mean())}
    out |= {k: float(np.percentile(v, q)) for k, q in QUANTILES.items()}
    out["max"] = float(v.max())
    return out


def relative_l2(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-sample relative L2 error, ``(B,)``, of ``(B, ...)`` arrays."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    axes = tuple(range(1, truth.ndim))
    num = np.sqrt(np.sum(np.abs(pred - truth).astype(np.float64) ** 2, axis=axes))
    den = np.sqrt(np.sum(np.abs(truth).astype(np.float64) ** 2, axis=axes))
    return num / np.maximum(den, _TINY)


def normalised_relative_l2(pred: np.ndarray, truth: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """Per-sample relative L2 of ``(B, C, *spatial)`` states after dividing channel ``c`` by
    ``scales[c]`` (so channels in different units, e.g. pressure and velocity, count alike)."""
    s = np.asarray(scales, np.float64).reshape((1, -1) + (1,) * (np.ndim(truth) - 2))
    return relative_l2(np.asarray(pred) / s, np.asarray(truth) / s)


def radial_band_index(spatial: Sequence[int], n_bands: int = 3) -> np.ndarray:
    """Band of each FFT bin (``fftn`` layout, ``spatial`` shape): ``|k| / k_nyquist`` split evenly
    into ``n_bands`` over ``[0, 1)``; corner bins beyond the Nyquist circle join the last band."""
    ks = np.meshgrid(*[np.fft.fftfreq(n) * 2 for n in spatial], indexing="ij")  # in units of Nyquist
    kr = np.sqrt(sum(k**2 for k in ks))
    return np.minimum((kr * n_bands).astype(int), n_bands - 1)


def frequency_band_index(n_time: int, dt: float, frequency: float) -> np.ndarray:
    """Band of each ``fft`` bin of an ``n_time``-sample signal (step ``dt`` in s) around a source
    ``frequency`` (Hz): ``|f| < f/2`` low, ``f/2 <= |f| < 3f/2`` mid (the source band), above high."""
    f = np.abs(np.fft.fftfreq(n_time, dt)) / frequency
    return np.where(f < 0.5, 0, np.where(f < 1.5, 1, 2))


def band_errors(pred: np.ndarray, truth: np.ndarray, ndim: int, band: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
    """Per-sample error in the low / mid / high frequency bands of the last ``ndim`` axes.

    Each value is ``||FFT(pred - truth) restricted to the band|| / ||FFT(truth)||`` (relative to
    the whole truth, so the three bands add in quadrature to the relative L2 error). ``band``
    gives the band (0, 1, 2) of every FFT bin of those axes (``fftn`` layout); default: radial
    wavenumber thirds of the Nyquist range (:func:`radial_band_index`); for time series see
    :func:`frequency_band_index`. Returns ``{"low", "mid", "high"}`` -> ``(B,)``.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or truth.ndim < ndim + 1:
        raise ValueError(f"pred and truth must share a shape (B, ..., {ndim} spatial axes), got {pred.shape}, {truth.shape}")
    axes = tuple(range(truth.ndim - ndim, truth.ndim))
    err = np.abs(np.fft.fftn(pred - truth, axes=axes)) ** 2
    ref = np.abs(np.fft.fftn(truth, axes=axes)) ** 2
    band = radial_band_index(truth.shape[-ndim:], len(BANDS)) if band is None else np.asarray(band)
    if band.shape != truth.shape[-ndim:]:
        raise ValueError(f"band must have the shape {truth.shape[-ndim:]} of the transformed axes, got {band.shape}")
    total = ref.reshape(ref.shape[0], -1).sum(1)
    out = {}
    for b, name in enumerate(BANDS):
        sel = np.broadcast_to(band == b, err.shape[1:])
        out[name] = np.sqrt(err.reshape(err.shape[0], -1)[:, sel.reshape(-1)].sum(1) / np.maximum(total, _TINY))
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Boolean ``mask`` grown by ``radius`` cells (square neighbourhood) along every axis."""
    out = np.asarray(mask, bool)
    for axis in range(out.ndim):
        grown = out.copy()
        for s in range(1, radius + 1):
            grown |= np.roll(out, s, axis) | np.roll(out, -s, axis)
        out = grown
    return out


def roi_errors(pred: np.ndarray, truth: np.ndarray, masks: np.ndarray, radius: int = 3) -> np.ndarray:
    """Per-sample relative L2 inside the region of interest around lesions.

    Args:
        pred, truth: ``(B, ..., *spatial)``.
        masks: ``(B, *spatial)`` lesion labels (nonzero = lesion).
        radius: cells by which each lesion region is grown.

    Returns:
        ``(B,)``; NaN for samples without a lesion.
    """
    pred, truth, masks = np.asarray(pred), np.asarray(truth), np.asarray(masks)
    ndim = masks.ndim - 1
    out = np.full(truth.shape[0], np.nan)
    for i in range(truth.shape[0]):
        if not np.any(masks[i]):
            continue
        roi = np.broadcast_to(dilate(masks[i] != 0, radius), truth.shape[1:]) if truth.ndim - 1 > ndim \
            else dilate(masks[i] != 0, radius)
        out[i] = relative_l2(pred[i][roi][None], truth[i][roi][None])[0]
    return out


def rollout_curve(errors: np.ndarray) -> dict[str, list[float]]:
    """Per-step statistics of rollout errors ``(B, n_steps)``: ``{"steps", "mean", "median", "p95", "max"}``."""
    e = np.asarray(errors, np.float64)
    return {"steps": list(range(1, e.shape[1] + 1)), "mean": e.mean(0).tolist(),
            "median": np.median(e, 0).tolist(), "p95": np.percentile(e, 95, axis=0).tolist(),
            "max": e.max(0).tolist()}


def spectral_tail(increment: np.ndarray, reference: np.ndarray, modes: Sequence[int],
                  padding: int | Sequence[int] = 0) -> np.ndarray:
    """Per-sample share of ``increment`` outside the Fourier modes an FNO layer keeps, ``(B,)``:
    ``||x - crop(P_m(pad(x)))|| / ||reference||``.

    ``P_m`` is what :class:`pdesurrogate.models.layers.SpectralConv` keeps on the padded grid: of the
    real FFT, the lowest ``m_d`` non-negative and ``m_d`` negative frequencies on every axis but the
    last, and ``[0, m)`` on the last. A residual stepper's spectral path cannot carry this part of a
    macro step's increment ``u_{n+1} - u_n``. Its pointwise path rebuilds some of it in place (it
    can remove the old fine detail, not move it across cells), so this is no strict bound on the
    one-step error; but where it is large, more ``modes`` lowers the error more than more training
    does (``experiments/stepper_modes.py``).

    Args:
        increment, reference: real ``(B, C, *spatial)`` arrays (e.g. ``u_{n+1} - u_n`` and ``u_{n+1}``).
        modes: retained modes per spatial axis (the model's ``modes``).
        padding: the model's domain padding in cells per side (int or one per axis).
    """
    increment, reference = np.asarray(increment, np.float64), np.asarray(reference, np.float64)
    spatial = increment.shape[2:]
    modes = tuple(int(m) for m in modes)
    pads = (int(padding),) * len(spatial) if np.ndim(padding) == 0 else tuple(int(p) for p in padding)
    if increment.shape != reference.shape or increment.ndim < 3:
        raise ValueError(f"increment and reference must both be (B, C, *spatial), got {increment.shape} and "
                         f"{reference.shape}")
    if len(modes) != len(spatial) or len(pads) != len(spatial):
        raise ValueError(f"modes and padding need one entry per spatial axis ({len(spatial)}), got {modes}, {pads}")
    if any(m < 1 for m in modes) or any(p < 0 for p in pads):
        raise ValueError(f"modes must be >= 1 and padding >= 0, got {modes}, {pads}")
    axes = tuple(range(2, increment.ndim))
    x = np.pad(increment, [(0, 0), (0, 0)] + [(p, p) for p in pads])
    xf = np.fft.rfftn(x, axes=axes)
    keep = np.ix_(*[np.r_[0:m, n - m:n] for n, m in zip(x.shape[2:-1], modes[:-1])], np.arange(modes[-1]))
    mask = np.zeros(xf.shape[2:], bool)
    mask[keep] = True
    low = np.fft.irfftn(np.where(mask, xf, 0), s=x.shape[2:], axes=axes)
    crop = (slice(None), slice(None)) + tuple(slice(p, p + n) for p, n in zip(pads, spatial))
    tail = increment - low[crop]
    return np.sqrt(np.sum(tail**2, axis=(1,) + axes)) / np.maximum(np.sqrt(np.sum(reference**2, axis=(1,) + axes)), _TINY)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of two ``(n,)`` samples (ties get their mean rank; NaN if either is constant)."""
    from scipy.stats import rankdata

    a, b = np.asarray(x, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"x and y must be (n >= 2,) samples of one shape, got {a.shape} and {b.shape}")
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` ``(n,)`` for binary ``labels`` ``(n,)`` (the
    Mann-Whitney statistic, ties counted half; NaN when one class is absent)."""
    from scipy.stats import rankdata

    s, lab = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels, bool).reshape(-1)
    if s.shape != lab.shape:
        raise ValueError(f"scores and labels must have one shape, got {s.shape} and {lab.shape}")
    pos, neg = int(lab.sum()), int((~lab).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[lab].sum() - pos * (pos + 1) / 2) / (pos * neg))
