"""The surrogate in the USCT loop: its training config matches the benchmark's acquisition, iterate-like
training media, the inversion's path band by band, and the benchmark's path error and break-even."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from pdesurrogate.inversion import ForwardModel, usct
from solvers import Grid, acoustic, signals
from training.data import scenarios
from training.data.config import load_data_config, parse_data_config
from training.data.phantoms import phantom

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_inversion_usct", ROOT / "experiments/bench_inversion_usct.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_usct_64_small_config_is_the_benchmark_acquisition():
    bench = _bench()
    acq, _, _ = bench.geometry(bench.SCALES["small"])
    config = load_data_config(str(ROOT / "experiments/configs/usct_64_small.toml"))
    assert tuple(config.shape) == acq.grid.shape and config.spacing == acq.grid.spacing
    np.testing.assert_allclose(scenarios.ring_elements(config), acq.elements, rtol=0, atol=1e-9)
    assert tuple(scenarios.usct_emitters(config)) == acq.emitters
    dt = scenarios.time_step(config)
    _, nt = scenarios.usct_runs(config, dt)
    assert nt == acq.nt and np.isclose(dt, acq.dt, rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.asarray(scenarios.source_signal(config, np.arange(nt) * dt)), acq.signals[0],
                               atol=1e-5)
    settings = usct.SolverSettings().resolve(acq)  # what invert's solver uses
    a = config.acoustic
    assert (a.scheme, a.fd_order, a.fd_coefficients, a.pml_size) == (settings.scheme, settings.fd_order, "taylor",
                                                                     settings.pml_size)


def test_contrast_scale_scales_every_deviation_from_water():
    base = {"scenario": "usct", "shape": [32, 32], "spacing": 2e-4, "acoustic": {"pml_size": 4}}
    full = parse_data_config(base | {"phantom": {"kind": "breast"}})
    half = parse_data_config(base | {"phantom": {"kind": "breast", "contrast_scale": [0.5, 0.5]}})
    for i in range(2):
        a, b = phantom(full, 3, i).medium, phantom(half, 3, i).medium
        np.testing.assert_allclose(b["sound_speed"] - 1500.0, 0.5 * (a["sound_speed"] - 1500.0), atol=1e-3)
        np.testing.assert_allclose(b["density"] - 1000.0, 0.5 * (a["density"] - 1000.0), atol=1e-3)
    smoothed = parse_data_config(base | {"phantom": {"kind": "breast", "smoothing": [1.0, 3.0]}})
    both = parse_data_config(base | {"phantom": {"kind": "breast", "smoothing": [1.0, 3.0], "contrast_scale": [1, 1]}})
    np.testing.assert_array_equal(phantom(smoothed, 3, 0).medium["sound_speed"],
                                  phantom(both, 3, 0).medium["sound_speed"])  # the smoothing draw is unchanged
    with pytest.raises(ValueError, match="contrast_scale"):
        parse_data_config(base | {"phantom": {"kind": "breast", "contrast_scale": [0.8, 0.4]}})


def _case(n: int = 24):
    h = 2e-4
    grid = Grid((n, n), h)
    centre = np.array([(n - 1) / 2 * h] * 2)
    elements = np.asarray(acoustic.ring_array(centre, 7 * h, 8))
    dt = 0.3 * h / 1700
    nt = int(4e-6 / dt)
    acq = usct.Acquisition(grid, elements, np.asarray(signals.tone_burst(np.arange(nt) * dt, 1e6, cycles=3.0)), dt,
                           nt, emitters=np.arange(0, 8, 2))
    yy, xx = np.indices((n, n)) * h
    truth = (1500 + 50 * (np.hypot(yy - centre[0], xx - centre[1] - 2 * h) < 3 * h)).astype(np.float32)
    return acq, truth


def test_stage_starts_are_the_path_band_by_band():
    acq, truth = _case()
    observed = usct.simulate(acq, truth)
    recipe = {"progress": False, "precondition": "none", "optimizer": "adam"}
    two = usct.invert(acq, observed, bands=(0.5e6, 0.8e6), iterations=(2, 1), **recipe)
    one = usct.invert(acq, observed, bands=(0.5e6,), iterations=2, **recipe)
    assert list(two.stage_starts) == ["band0_0.5MHz", "band1_0.8MHz"]
    np.testing.assert_array_equal(two.stage_starts["band0_0.5MHz"], np.full(acq.grid.shape, 1500.0, np.float32))
    np.testing.assert_array_equal(two.stage_starts["band1_0.8MHz"], one.sound_speed)  # band 0's end
    assert not np.array_equal(one.sound_speed, two.sound_speed)


def test_path_errors_break_even_and_equal_quality():
    bench = _bench()
    acq, truth = _case()
    rho = np.full(acq.grid.shape, 1000.0, np.float32)
    solver = usct.solver_forward(acq, usct.SolverSettings(c_ref=1700.0).resolve(acq), rho)
    points = [("water", np.full(acq.grid.shape, 1500.0, np.float32)), ("truth", truth)]
    exact = bench.path_errors(acq, ForwardModel(solver.predict, "surrogate"), solver, points)
    assert [r["point"] for r in exact] == ["water", "truth"]
    assert exact[1]["rel_l2"] == 0.0 and exact[1]["scattered_rel_l2"] == 0.0 and exact[1]["water_rel_l2"] > 0.01
    water = bench.path_errors(acq, ForwardModel(lambda c, s: solver.predict(jnp.full_like(c, 1500.0), s),
                                                "surrogate"), solver, points)
    assert water[1]["rel_l2"] == pytest.approx(water[1]["water_rel_l2"], rel=1e-5)  # water as the prediction
    assert water[1]["scattered_rel_l2"] == pytest.approx(1.0, rel=1e-5)

    solver_runs = [{"time_to_target": t} for t in (100.0, 80.0, None)]
    fast = [{"time_to_target": t} for t in (40.0, 30.0, 10.0)]
    even = bench.break_even(solver_runs, fast, 1100.0)
    assert even["phantoms"] == 2 and even["saved_seconds_median"] == 55.0 and even["reconstructions"] == 20.0
    assert bench.break_even(solver_runs, [{"time_to_target": t} for t in (120.0, 90.0, 5.0)], 1.0)[
        "reconstructions"] is None
    assert bench.break_even(solver_runs, [{"time_to_target": None}] * 3, 1.0)["reconstructions"] is None

    # the same image, how much faster: first time within 1.1x the solver's final rel_error, each
    solver_runs = [{"phantom": 0, "rel_error": 0.3, "trajectory": [[10.0, 0.5], [20.0, 0.32], [30.0, 0.3]]},
                   {"phantom": 1, "rel_error": 0.4, "trajectory": [[10.0, 0.4]]}]
    other = [{"phantom": 0, "rel_error": 0.33, "trajectory": [[2.0, 0.4], [5.0, 0.33]]},
             {"phantom": 1, "rel_error": 0.5, "trajectory": [[1.0, 0.5]]}]
    same = bench.equal_quality(solver_runs, other, 1.1)
    assert same["phantoms"] == 2 and same["reached"] == 1
    assert same["per_phantom"][0]["solver_seconds"] == 20.0 and same["per_phantom"][0]["speedup"] == 4.0
    assert same["per_phantom"][1]["seconds"] is None and same["per_phantom"][1]["speedup"] is None
