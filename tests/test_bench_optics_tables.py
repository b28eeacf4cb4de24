"""The optical inversion benchmark's bookkeeping (``experiments/bench_inversion_optics.py``): time to
a target error, the FDTD target of a set, the speed-up medians (a case that never reaches the target
counts as infinitely slow) and the break-even number of reconstructions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_inversion_optics", Path(__file__).resolve().parents[1] / "experiments" / "bench_inversion_optics.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


def _row(err: float, seconds: float, curve: list[list[float]]) -> dict:
    return {"rel_error": err, "rmse_dn_inside": 0.01, "seconds": seconds, "solver_calls": 8, "surrogate_calls": 0,
            "curve": curve}


def test_time_to_is_the_first_time_at_or_below_the_target():
    curve = [[1.0, 0.9], [2.0, 0.6], [3.0, 0.5], [4.0, 0.55]]
    assert bench.time_to(curve, 0.6) == 2.0
    assert bench.time_to(curve, 0.4) is None


def test_fdtd_target_speed_up_and_break_even():
    cases = [{"set": "cells", "rows": {
        "rytov": {"rel_error": 0.8, "rmse_dn_inside": 0.02, "seconds": 0.1},
        "solver": _row(0.50, 20.0, [[10.0, 0.6], [20.0, 0.50]]),
        "surrogate": _row(0.60, 1.0, [[1.0, 0.6]]),
        "hybrid correct": _row(0.52, 5.0, [[2.0, 0.52]]),
        "hybrid switch": _row(0.51, 10.0, [[4.0, 0.6], [10.0, 0.51]])}}]
    cases.append({"set": "cells", "rows": {k: dict(v) for k, v in cases[0]["rows"].items()}})
    cases[1]["rows"]["hybrid switch"] = _row(0.60, 10.0, [[10.0, 0.60]])  # never reaches the target
    table = bench.summarise(cases)["cells"]
    assert table["solver"]["fdtd_target"] == pytest.approx(0.525)
    assert table["hybrid correct"]["seconds_to_fdtd_error_all"] == pytest.approx(2.0)
    assert table["hybrid switch"]["seconds_to_fdtd_error_reached"] == "1/2"
    assert table["hybrid switch"]["seconds_to_fdtd_error_all"] is None  # median of [10, inf]
    text = "\n".join(bench.speed_lines("cells", table, {"data_seconds": 60.0, "train_seconds": 90.0}))
    # hybrid correct: 20 s / 2 s to the target, 20 / 5 over the run, 150 s / (20 - 5) s saved = 10
    assert "| hybrid correct | 1.040 | 2.0 (2/2) | 10.0x | 4.0x | 10 |" in text
    assert "| hybrid switch | 1.110 | - (1/2) | - (half or more never reach it) | 2.0x | 15 |" in text
