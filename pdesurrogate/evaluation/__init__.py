"""Evaluation of surrogates beyond averages: per-sample error distributions (median, p95, p99,
max), rollout error against macro steps, trivial baselines, frequency bands, regions of interest
around lesions, separate rare-lesion / out-of-distribution sets, and speed against the reference
solver on the same device.

>>> from pdesurrogate.evaluation import evaluate_run
>>> report = evaluate_run("runs/acoustic_smoke", ["data/acoustic_smoke"])   # doctest: +SKIP
>>> report["rel_l2"]["p99"], report["speed"]["forward"]["ratio"]            # doctest: +SKIP
"""

from pdesurrogate.evaluation.metrics import (BANDS, band_errors, dilate, distribution, normalised_relative_l2,
                                             radial_band_index, relative_l2, roi_errors, rollout_curve)
from pdesurrogate.evaluation.run import evaluate_field, evaluate_run, evaluate_stepper, incident_fields, markdown
from pdesurrogate.evaluation.speed import compare, stepper_speed, time_call

__all__ = ["BANDS", "band_errors", "compare", "dilate", "distribution", "evaluate_field", "evaluate_run",
           "evaluate_stepper", "incident_fields", "markdown", "normalised_relative_l2", "radial_band_index",
           "relative_l2", "roi_errors", "rollout_curve", "stepper_speed", "time_call"]
