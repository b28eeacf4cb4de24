"""The guarded hybrid inversion (``pdesurrogate.inversion.guarded``) on a tiny linear problem.

A 6x6 medium, 4 items, the solver ``A_i m`` and a surrogate with 20% perturbed ``A_i``; the trust
guard is a :class:`pdesurrogate.trust.Guarded` on a synthetic calibration whose label-free signal the
test sets from the iterate, so it decides as the test wants. Checked: an untrustworthy surrogate
makes every iteration fall back and the result equals the solver-only inversion's; a trustworthy one
runs every step on the surrogate (equal to the surrogate-only inversion); a guard that changes its
mind restarts the optimiser, and the history's decisions and call counts match the guard's log; a
``hold`` keeps the solver for that many iterations after a fallback.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from pdesurrogate.inversion import ForwardModel, GuardedForward, Stage, guarded_forward, run
from pdesurrogate.trust import Guarded, fit_calibration

SHAPE, N_ITEMS, N_DATA, ITERATIONS, CHECK_EVERY, TOLERANCE = (6, 6), 4, 12, 6, 3, 0.2
TRUSTED, UNTRUSTED = 0.06, 0.3  # signals: bounds about 0.08 and 0.4 against the tolerance 0.2

_rng = np.random.default_rng(0)
A = _rng.normal(size=(N_ITEMS, N_DATA, math.prod(SHAPE))).astype(np.float32)
A_SURROGATE = (A * (1 + 0.2 * _rng.normal(size=A.shape))).astype(np.float32)
TRUTH = _rng.normal(size=SHAPE).astype(np.float32)
OBSERVED = jnp.einsum("idp,p->id", A, TRUTH.ravel())


def _predict(matrices: np.ndarray):
    def predict(m, items):
        return jnp.einsum("idp,p->id", jnp.asarray(matrices)[items], m.ravel())
    return predict


SOLVER = ForwardModel(_predict(A), "solver")
SURROGATE = ForwardModel(_predict(A_SURROGATE), "surrogate")
ALL = jnp.arange(N_ITEMS, dtype=jnp.int32)


def misfit(pred, item, observed):
    return 0.5 * jnp.sum((pred - observed[item]) ** 2)


def _calibration():
    """400 synthetic samples: signals in [0.05, 0.37], errors 0.5-1.5 times the signal; a monitor window
    longer than the inversion, so only the bound and the iterate's own p-value decide."""
    rng = np.random.default_rng(1)
    s = np.exp(rng.uniform(-3.0, -1.0, 400))[:, None]
    e = s[:, 0] * rng.uniform(0.5, 1.5, 400)
    return fit_calibration(s, e, np.log(s), ("signal",), 0.1, tolerance=TOLERANCE, window=64)


def _guarded(signal, hold: int = 0) -> GuardedForward:
    """A guarded forward model whose signal is ``signal(medium)`` (a float)."""
    def signals(medium):
        return SURROGATE.predict(medium, ALL), jnp.asarray([signal(medium)])

    guard = Guarded(lambda medium: SURROGATE.predict(medium, ALL), _calibration(), TOLERANCE,
                    solver=lambda medium: SOLVER.predict(medium, ALL), signals=signals, check_every=CHECK_EVERY)
    return GuardedForward(SURROGATE, SOLVER, guard, medium=lambda m: m, hold=hold)


def _invert(forward, iterations: int = ITERATIONS, **kwargs):
    stage = Stage("only", iterations, forward, misfit, OBSERVED)
    return run([stage], np.zeros(SHAPE, np.float32), n_items=N_ITEMS, progress=False, **kwargs)


def _increments(history, key):
    values = [0] + [h[key] for h in history]
    return np.diff(values)


def test_untrusted_surrogate_falls_back_every_iteration_and_matches_solver_only():
    fwd = _guarded(lambda medium: UNTRUSTED)
    guarded, solver_only = _invert(fwd), _invert(SOLVER)
    np.testing.assert_array_equal(guarded.params, solver_only.params)
    assert [h["decision"] for h in guarded.history] == ["solver"] * ITERATIONS
    assert all("bound" in h["reason"] and h["bound"] > TOLERANCE for h in guarded.history)
    checks = sum(h["check"] for h in guarded.history)
    assert checks == math.ceil(ITERATIONS / CHECK_EVERY) == fwd.guard.adaptive.checks
    assert guarded.history[-1]["solver_calls"] == solver_only.history[-1]["solver_calls"] + checks * N_ITEMS
    assert guarded.history[-1]["surrogate_calls"] == ITERATIONS * N_ITEMS  # one decision per iteration


def test_trusted_surrogate_runs_every_step_and_matches_surrogate_only():
    fwd = _guarded(lambda medium: TRUSTED)
    guarded, surrogate_only = _invert(fwd), _invert(SURROGATE)
    np.testing.assert_array_equal(guarded.params, surrogate_only.params)
    assert [h["decision"] for h in guarded.history] == ["surrogate"] * ITERATIONS
    assert {h["reason"] for h in guarded.history} == {"trusted"}
    checks = [h["iteration"] for h in guarded.history if h["check"]]
    assert checks == list(range(1, ITERATIONS + 1, CHECK_EVERY))
    assert guarded.history[-1]["solver_calls"] == len(checks) * N_ITEMS  # the checks only
    assert all(np.isfinite(r["error"]) == r["check"] for r in fwd.guard.log)


def test_switching_guard_matches_its_log_and_restarts_the_optimiser():
    # trusted near the start, untrusted once the iterate has moved: a switch to the solver
    scale = float(np.linalg.norm(TRUTH))
    fwd = _guarded(lambda medium: TRUSTED if float(jnp.linalg.norm(medium)) < 0.3 * scale else UNTRUSTED)
    res = _invert(fwd, iterations=8)
    decisions = [h["decision"] for h in res.history]
    assert decisions == [r["decision"] for r in fwd.guard.log]
    assert [r["id"] for r in fwd.guard.log] == [h["iteration"] for h in res.history]
    assert decisions[0] == "surrogate" and "solver" in decisions
    steps = np.array([h["evaluations"] for h in res.history]) * N_ITEMS
    solver_step = np.array([d == "solver" for d in decisions])
    check = np.array([h["check"] for h in res.history])
    np.testing.assert_array_equal(_increments(res.history, "solver_calls"), steps * solver_step + N_ITEMS * check)
    np.testing.assert_array_equal(_increments(res.history, "surrogate_calls"), steps * ~solver_step + N_ITEMS)
    # the iteration after the switch starts a fresh L-BFGS state: its first trial step has unit norm in x,
    # so the solver steps decrease the true misfit from there on
    first = decisions.index("solver")
    misfits = [h["misfit"] for h in res.history[first:]]
    assert misfits[-1] < misfits[0]
    assert fwd.guard.summary()["fallback"] == pytest.approx(np.mean(solver_step))


def _alternating():
    """A signal that the guard trusts on its 1st, 3rd, 5th ... decision and not on the others."""
    calls = []

    def signal(medium):
        calls.append(None)
        return TRUSTED if len(calls) % 2 else UNTRUSTED
    return signal


def test_hold_keeps_the_solver_after_a_fallback():
    free, held = _invert(_guarded(_alternating()), iterations=8), _guarded(_alternating(), hold=2)
    res = _invert(held, iterations=8)
    assert [h["decision"] for h in free.history] == ["surrogate", "solver"] * 4
    assert [r["decision"] for r in held.guard.log] == ["surrogate", "solver"] * 4  # the guard still decides
    assert [h["decision"] for h in res.history] == (["surrogate"] + ["solver"] * 3) * 2
    assert [h["iteration"] for h in res.history if h["held"]] == [3, 7]
    steps = np.array([h["evaluations"] for h in res.history]) * N_ITEMS
    on_solver = np.array([h["decision"] == "solver" for h in res.history])
    check = np.array([h["check"] for h in res.history])
    np.testing.assert_array_equal(_increments(res.history, "solver_calls"), steps * on_solver + N_ITEMS * check)
    with pytest.raises(ValueError, match="hold"):
        _guarded(lambda medium: TRUSTED, hold=-1)


def test_guarded_stage_rejects_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_dir"):
        _invert(_guarded(lambda medium: TRUSTED), checkpoint_dir=tmp_path)


def test_guarded_forward_validates_its_parts(tmp_path):
    guard = _guarded(lambda medium: TRUSTED).guard
    with pytest.raises(ValueError, match="surrogate-kind and a solver-kind"):
        GuardedForward(SOLVER, SURROGATE, guard, medium=lambda m: m)
    with pytest.raises(ValueError, match="guard must be"):
        GuardedForward(SURROGATE, SOLVER, object(), medium=lambda m: m)
    with pytest.raises(ValueError, match="calibrated"):
        guarded_forward(SURROGATE, SOLVER, tmp_path, lambda m: m)


def test_modalities_offer_the_guarded_hybrid():
    from pdesurrogate.inversion import optics, usct

    for module in (usct, optics):
        assert "guarded" in module.HYBRIDS
        assert {"guard_tolerance", "check_every", "guard_hold"} <= set(module.CONFIG_KEYS)


def test_trace_guard_leaves_each_emitters_own_trace_out_as_calibrated():
    from training.tasks import get_task

    keep = get_task("traces").trust_keep({"info": {"emitters": [0, 2], "elements_m": [[0.0, 0.0]] * 4}})
    assert keep.shape == (2, 1, 4)
    np.testing.assert_array_equal(keep[:, 0], [[0, 1, 1, 1], [1, 1, 0, 1]])
    assert get_task("field").trust_keep({}) == 1.0
