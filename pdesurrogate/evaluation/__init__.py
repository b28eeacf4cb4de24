"""Evaluation of surrogates beyond averages: per-sample error distributions (median, p95, p99,
max), rollout error against macro steps, trivial baselines, frequency bands, regions of interest
around lesions, separate rare-lesion / out-of-distribution sets, and speed against the reference
solver on the same device.

These are pure functions of arrays. Evaluating a training run on datasets, which reads
``training.data``, is :func:`training.evaluation.evaluate_run` (``pdesurrogate evaluate``).
"""

from pdesurrogate.evaluation.metrics import (BANDS, auroc, band_errors, dilate, distribution, normalised_relative_l2,
                                             radial_band_index, relative_l2, roi_errors, rollout_curve,
                                             spearman, spectral_tail)
from pdesurrogate.evaluation.speed import compare, stepper_speed, time_call

__all__ = ["BANDS", "auroc", "band_errors", "compare", "dilate", "distribution", "normalised_relative_l2",
           "radial_band_index", "relative_l2", "roi_errors", "rollout_curve", "spearman", "spectral_tail",
           "stepper_speed", "time_call"]
