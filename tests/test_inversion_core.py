"""The shared inversion loop on a toy linear problem: optimisers, subsets, bounds, TV, hybrids, resume."""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdesurrogate.inversion import Bounds, Corrected, ForwardModel, Stage, TotalVariation, run
from pdesurrogate.inversion.report import plot_curves, plot_images, write_history_csv

SHAPE = (6, 6)
N_ITEMS = 8
RNG = np.random.default_rng(0)
A = RNG.normal(size=(N_ITEMS, 20, 36)).astype(np.float32)  # item i measures A[i] @ m (20 values)
BIAS = 0.2 * RNG.normal(size=(N_ITEMS, 20, 36)).astype(np.float32)  # the "surrogate" is off by this
TRUTH = np.zeros(SHAPE, np.float32)
TRUTH[1:4, 2:5] = 1.0
OBSERVED = np.einsum("ikn,n->ik", A, TRUTH.ravel())


def _forward(matrices: np.ndarray, kind: str) -> ForwardModel:
    mats = jnp.asarray(matrices)
    return ForwardModel(lambda m, items: jnp.einsum("ikn,n->ik", mats[items], m.ravel()), kind)


SOLVER = _forward(A, "solver")
SURROGATE = _forward(A + BIAS, "surrogate")


def misfit(pred: jax.Array, item: jax.Array, data: None) -> jax.Array:
    return 0.5 * jnp.sum((pred - jnp.asarray(OBSERVED)[item]) ** 2)


def error(m: np.ndarray) -> float:
    return float(np.linalg.norm(m - TRUTH) / np.linalg.norm(TRUTH))


def test_lbfgs_converges_and_records_history(tmp_path):
    res = run([Stage("s", 60, SOLVER, misfit)], np.zeros(SHAPE, np.float32), n_items=N_ITEMS, error=error,
              progress=False)
    h = res.history
    assert len(h) == 60 and res.initial_error == pytest.approx(1.0)
    assert {"iteration", "misfit", "seconds", "solver_calls", "surrogate_calls", "rel_error", "stage",
            "forward"} <= set(h[0])
    assert h[-1]["rel_error"] < 1e-3 and h[-1]["misfit"] < 1e-4 * h[0]["misfit"]
    # every line-search step is an evaluation of all 8 items
    assert sum(r["evaluations"] for r in h) * N_ITEMS == h[-1]["solver_calls"] > 60 * N_ITEMS - 1
    assert h[-1]["surrogate_calls"] == 0
    write_history_csv(h, tmp_path / "history.csv")
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == 60 and float(rows[-1]["rel_error"]) == pytest.approx(h[-1]["rel_error"])
    plot_curves({"solver": h}, tmp_path / "curves.png")
    plot_images({"m": res.params, "truth": TRUTH, "error": res.params - TRUTH}, tmp_path / "img.png",
                shared=("m", "truth"))
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "img.png").stat().st_size > 0


def test_adam_subsets_are_seeded_bounds_hold_and_tv_smooths():
    stage = Stage("adam", 60, SOLVER, misfit, optimizer="adam", learning_rate=0.05, items_per_iteration=3)
    kw = {"n_items": N_ITEMS, "progress": False, "error": error, "bounds": Bounds(0.0, 0.8)}
    a = run([stage], np.zeros(SHAPE, np.float32), **kw)
    b = run([stage], np.zeros(SHAPE, np.float32), **kw)
    c = run([stage], np.zeros(SHAPE, np.float32), seed=1, **kw)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert a.history[-1]["solver_calls"] == 60 * 3
    assert a.params.min() >= 0.0 and a.params.max() <= 0.8 and a.params.max() == pytest.approx(0.8)
    assert a.history[-1]["rel_error"] < 0.5 * a.history[0]["rel_error"]
    tv = TotalVariation(weight=500.0, epsilon=1e-3)
    smooth = run([Stage("s", 30, SOLVER, misfit)], np.zeros(SHAPE, np.float32), n_items=N_ITEMS,
                 regularizer=tv, progress=False)
    free = run([Stage("s", 30, SOLVER, misfit)], np.zeros(SHAPE, np.float32), n_items=N_ITEMS, progress=False)
    assert float(tv(jnp.asarray(smooth.params))) < 0.5 * float(tv(jnp.asarray(free.params)))


def test_tv_value_and_positivity():
    tv = TotalVariation(weight=2.0, epsilon=1e-6)
    step = np.zeros((4, 4), np.float32)
    step[:, 2:] = 1.0  # one unit jump per row, 4 of 16 cells
    assert float(tv(jnp.asarray(step))) == pytest.approx(2.0 * 4 / 16, rel=1e-4)
    stacked = np.stack([step, step])  # two channels sharing one magnitude: sqrt(2) per jump
    assert float(TotalVariation(2.0, 1e-6, axes=(1, 2))(jnp.asarray(stacked))) == pytest.approx(
        2.0 * np.sqrt(2) * 4 / 16, rel=1e-4)
    np.testing.assert_array_equal(Bounds(lower=0.0).project(jnp.asarray([-1.0, 2.0])), [0.0, 2.0])


def test_per_channel_bounds_clip_each_channel():
    box = Bounds((1400.0, 900.0), (1700.0, 1100.0))  # e.g. sound speed (m/s) and density (kg/m^3) stacked
    m = jnp.asarray([[1300.0, 1800.0, 1500.0], [800.0, 1200.0, 1000.0]])
    np.testing.assert_array_equal(box.project(m), [[1400.0, 1700.0, 1500.0], [900.0, 1100.0, 1000.0]])
    box.check("initial", np.asarray([[1500.0], [1000.0]]))
    with pytest.raises(ValueError, match=r"bounds \[900, 1100\] \(channel 1\)"):
        box.check("initial", np.asarray([[1500.0], [1500.0]]))
    with pytest.raises(ValueError, match="shape \\(2, ...\\)"):
        box.project(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="one value per channel"):
        Bounds((0.0, 1.0), (1.0,))
    with pytest.raises(ValueError, match="lower <= upper"):
        Bounds((0.0, 2.0), (1.0, 1.0))
    half = Bounds((0.0, 1.0), None)  # lower bounds only
    np.testing.assert_array_equal(half.project(jnp.asarray([[-1.0, 5.0], [0.0, 5.0]])), [[0.0, 5.0], [1.0, 5.0]])


def test_preconditioner_freezes_masked_pixels():
    diag = np.ones(SHAPE, np.float32)
    diag[0] = 0.0
    res = run([Stage("s", 10, SOLVER, misfit)], np.full(SHAPE, 0.5, np.float32), n_items=N_ITEMS,
              precondition=diag, progress=False)
    np.testing.assert_array_equal(res.params[0], 0.5)
    assert not np.allclose(res.params[1:], 0.5)


def test_corrected_surrogate_reaches_the_solver_minimum_and_surrogate_first_hands_over():
    x0 = np.zeros(SHAPE, np.float32)
    kw = {"n_items": N_ITEMS, "progress": False, "error": error}
    alone = run([Stage("s", 40, SURROGATE, misfit)], x0, **kw)
    assert alone.history[-1]["rel_error"] > 0.05  # the biased surrogate converges elsewhere
    hybrid = run([Stage("c", 40, Corrected(SURROGATE, SOLVER, refresh_every=5), misfit)], x0, **kw)
    h = hybrid.history
    assert h[-1]["rel_error"] < 1e-2 < alone.history[-1]["rel_error"]
    assert h[-1]["solver_calls"] == 8 * N_ITEMS and "centre_misfit" in h[0] and "centre_misfit" not in h[1]
    assert h[-1]["surrogate_calls"] >= 40 * N_ITEMS
    # at the centre the corrected misfit equals the solver's
    assert h[0]["misfit"] == pytest.approx(h[0]["centre_misfit"], rel=1e-5)
    first = run([Stage("sur", 20, SURROGATE, misfit), Stage("sol", 20, SOLVER, misfit)], x0, **kw)
    assert [r["forward"] for r in first.history] == ["surrogate"] * 20 + ["solver"] * 20
    assert first.history[19]["solver_calls"] == 0 and first.history[-1]["rel_error"] < 1e-2


def test_trust_region_rejects_bad_centres_where_the_uncontrolled_correction_diverges():
    x0 = np.zeros(SHAPE, np.float32)
    flat = _forward(0.3 * A, "surrogate")  # 11x too little curvature: its corrected steps overshoot
    kw = {"n_items": N_ITEMS, "progress": False, "error": error}
    free = run([Stage("c", 16, Corrected(flat, SOLVER, refresh_every=4), misfit)], x0, **kw).history
    assert free[-1]["rel_error"] > 10
    guarded = run([Stage("c", 40, Corrected(flat, SOLVER, refresh_every=4, radius=0.2), misfit)], x0, **kw).history
    steps = [(r["accepted"], r["radius"]) for r in guarded if "accepted" in r]
    assert steps[0] == (True, pytest.approx(0.2)) and (False, pytest.approx(0.2)) in steps
    accepted = [r["centre_misfit"] for r in guarded if r.get("accepted")]
    assert accepted == sorted(accepted, reverse=True)  # the solver's misfit decreases from centre to centre
    assert guarded[-1]["rel_error"] < 0.5


class Killed(Exception):
    pass


@pytest.mark.parametrize("strategy", ["lbfgs", "hybrid"])
def test_resume_after_a_kill_is_bit_identical(tmp_path, strategy):
    x0 = np.zeros(SHAPE, np.float32)
    if strategy == "lbfgs":
        stages = [Stage("a", 5, SOLVER, misfit, items_per_iteration=4), Stage("b", 6, SOLVER, misfit)]
    else:
        stages = [Stage("a", 4, SURROGATE, misfit, optimizer="adam", items_per_iteration=3),
                  Stage("c", 7, Corrected(SURROGATE, SOLVER, refresh_every=3, radius=0.3), misfit,
                        items_per_iteration=5)]
    full = run(stages, x0, n_items=N_ITEMS, progress=False, error=error)
    for kill_at in (3,) if strategy == "lbfgs" else (7,):  # inside the first stage; inside the second
        calls = {"n": 0}

        def dying(m, kill_at=kill_at):
            calls["n"] += 1
            if calls["n"] == kill_at + 1:  # the first call is the initial model
                raise Killed
            return error(m)

        ck = tmp_path / f"{strategy}{kill_at}"
        with pytest.raises(Killed):
            run(stages, x0, n_items=N_ITEMS, progress=False, error=dying, checkpoint_dir=ck)
        resumed = run(stages, x0, n_items=N_ITEMS, progress=False, error=error, checkpoint_dir=ck)
        np.testing.assert_array_equal(resumed.params, full.params)
        assert [r["misfit"] for r in resumed.history] == [r["misfit"] for r in full.history]
        assert [r["solver_calls"] for r in resumed.history] == [r["solver_calls"] for r in full.history]
    with pytest.raises(ValueError, match="different inversion"):
        run(stages, x0, n_items=N_ITEMS, progress=False, checkpoint_dir=ck, seed=3)


def test_bad_input_is_rejected_before_running():
    x0 = np.zeros(SHAPE, np.float32)
    ok = Stage("s", 2, SOLVER, misfit)
    with pytest.raises(ValueError, match="initial must lie within the bounds"):
        run([ok], x0, n_items=N_ITEMS, bounds=Bounds(0.5, 1.0), progress=False)
    with pytest.raises(ValueError, match="items_per_iteration"):
        run([Stage("s", 2, SOLVER, misfit, items_per_iteration=9)], x0, n_items=N_ITEMS, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        run([Stage("s", 2, SOLVER, misfit, optimizer="sgd")], x0, n_items=N_ITEMS, progress=False)
    with pytest.raises(ValueError, match="lower <= upper"):
        Bounds(2.0, 1.0)
    with pytest.raises(ValueError, match="tv weight"):
        TotalVariation(-1.0, 1.0)
    with pytest.raises(ValueError, match="refresh_every"):
        Corrected(SURROGATE, SOLVER, refresh_every=0)
    with pytest.raises(ValueError, match="kind"):
        ForwardModel(lambda m, i: m, "oracle")
    with pytest.raises(ValueError, match="distinct"):
        run([ok, ok], x0, n_items=N_ITEMS, progress=False)
