"""Trust layer: conformal coverage within its finite-sample guarantee (and against crepes), the
pointwise band and adaptive conformal updates, the monotone combiner (against scikit-learn), the
shift monitor's false alarms and power, a tiny trained ensemble's disagreement, and the guarded
operator's fallback."""

from __future__ import annotations

import numpy as np
import pytest

from pdesurrogate.trust.calibration import Calibration, fit_calibration
from pdesurrogate.trust.combine import MonotoneCombiner, isotonic
from pdesurrogate.trust.conformal import (AdaptiveConformal, conformal_quantile, coverage, normalised_scores,
                                          pointwise_band)
from pdesurrogate.trust.monitor import ShiftMonitor, medium_features

ALPHA = 0.1


def _heteroscedastic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(errors, signals)``: error = |N(0, 1)| * signal, signal log-uniform over a decade."""
    signals = np.exp(rng.uniform(np.log(0.01), np.log(0.1), n))
    return np.abs(rng.standard_normal(n)) * signals, signals


def test_split_conformal_coverage_is_within_its_finite_sample_guarantee():
    # For exchangeable continuous scores, the coverage of a new sample averaged over calibration draws
    # lies in [1 - alpha, 1 - alpha + 1 / (n + 1)]. The mean over R repeats of the coverage of m test
    # samples estimates it with standard error <= sqrt(alpha (1 - alpha) (1 / m + 1 / (n + 2)) / R);
    # we allow 4 standard errors of Monte-Carlo error on either side.
    rng = np.random.default_rng(0)
    n, m, repeats = 99, 200, 400
    covs = []
    for _ in range(repeats):
        e_cal, s_cal = _heteroscedastic(rng, n)
        q = conformal_quantile(normalised_scores(e_cal, s_cal), ALPHA)
        e, s = _heteroscedastic(rng, m)
        covs.append(coverage(e, q * s))
    se = np.sqrt(ALPHA * (1 - ALPHA) * (1 / m + 1 / (n + 2)) / repeats)
    mean = float(np.mean(covs))
    assert 1 - ALPHA - 4 * se <= mean <= 1 - ALPHA + 1 / (n + 1) + 4 * se, (mean, se)
    # a quantile one rank lower would miss the guarantee: the bound is tight
    assert conformal_quantile(np.arange(1.0, 100.0), ALPHA) == 90.0


@pytest.mark.parametrize("n", [50, 97, 123, 403])
def test_normalised_split_conformal_matches_crepes(n):
    crepes = pytest.importorskip("crepes")
    rng = np.random.default_rng(n)
    errors, signals = _heteroscedastic(rng, n)
    ours = conformal_quantile(normalised_scores(errors, signals), ALPHA)
    cr = crepes.ConformalRegressor().fit(errors, sigmas=signals)
    sig_new = np.array([0.02, 0.05])
    interval = cr.predict_int(np.zeros(2), sigmas=sig_new, confidence=1 - ALPHA)
    np.testing.assert_allclose(interval[:, 1], ours * sig_new, rtol=1e-12)


def test_conformal_quantile_is_infinite_for_too_few_samples_and_checks_inputs():
    assert conformal_quantile(np.ones(8), ALPHA) == np.inf  # ceil(9 * 0.9) = 9 > 8
    assert np.isfinite(conformal_quantile(np.ones(9), ALPHA))
    with pytest.raises(ValueError, match="alpha"):
        conformal_quantile(np.ones(10), 1.5)
    with pytest.raises(ValueError, match="signals"):
        normalised_scores(np.ones(3), np.array([1.0, 0.0, 1.0]))


def test_pointwise_band_controls_the_share_of_points_outside():
    # (alpha, delta) risk control: a new sample has >= 1 - alpha of its points inside the band with
    # probability >= 1 - delta, on average over calibration draws (30 draws of n = 200, m = 200 test
    # samples each: 4 standard errors of Monte-Carlo slack, as for the split-conformal test).
    rng = np.random.default_rng(1)
    n, m, repeats, delta = 200, 200, 30, 0.1

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        scale = np.exp(rng.normal(size=(k, 8, 8)))
        return rng.standard_normal(scale.shape) * scale * rng.uniform(0.5, 1.5, (k, 1, 1)), scale

    good = []
    for _ in range(repeats):
        lam = pointwise_band(*draw(n), ALPHA, delta)
        err, scale = draw(m)
        good.append(np.mean(np.mean((np.abs(err) <= lam * scale).reshape(m, -1), axis=1) >= 1 - ALPHA))
    se = np.sqrt(delta * (1 - delta) * (1 / m + 1 / (n + 2)) / repeats)
    assert 1 - delta - 4 * se <= np.mean(good) <= 1 - delta + 1 / (n + 1) + 4 * se, (np.mean(good), se)


def test_adaptive_conformal_recovers_coverage_after_a_shift():
    rng = np.random.default_rng(2)
    cal = np.abs(rng.standard_normal(200))
    fixed = AdaptiveConformal.start(cal, ALPHA, gamma=0.05)
    aci = fixed
    stream = 2.0 * np.abs(rng.standard_normal(1500))  # errors twice the calibrated size per signal
    fixed_misses = np.mean(stream > fixed.quantile)
    for score in stream:
        aci = aci.update(float(score))
    assert fixed_misses > 0.3
    assert abs(aci.miss_rate - ALPHA) < 0.03, aci.miss_rate  # Gibbs & Candes: |miss - alpha| <= O(1 / (gamma T))
    assert aci.checks == 1500 and aci.quantile > fixed.quantile


def test_isotonic_matches_scikit_learn_and_the_combiner_is_monotone():
    sklearn = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(3)
    x = np.round(rng.uniform(0, 1, 300), 2)  # with ties
    y = x**2 + 0.2 * rng.standard_normal(300)
    knots, values = isotonic(x, y)
    ref = sklearn.IsotonicRegression().fit(x, y).predict(knots)
    np.testing.assert_allclose(values, ref, atol=1e-10)
    assert np.all(np.diff(values) >= -1e-12)

    s = np.exp(rng.uniform(-3, 0, (400, 2)))
    e = s[:, 0] * np.sqrt(s[:, 1]) * np.exp(0.1 * rng.standard_normal(400))
    comb = MonotoneCombiner.fit(s, e, ["a", "b"])
    grid = np.exp(np.linspace(-5, 2, 50))  # beyond the calibration range on both sides
    for j in range(2):
        cols = np.full((50, 2), 0.2)
        cols[:, j] = grid
        pred = comb(cols)
        assert np.all(np.diff(pred) >= -1e-12)
    # slope 1 beyond the range: ten times the largest signal, ten times the prediction
    top = np.array([[s[:, 0].max() * 10, 0.2], [s[:, 0].max() * 100, 0.2]])
    np.testing.assert_allclose(comb(top)[1] / comb(top)[0], 10.0, rtol=1e-9)
    assert MonotoneCombiner.from_dict(comb.to_dict()) == comb
    rho = np.corrcoef(np.log(comb(s)), np.log(e))[0, 1]
    assert rho > 0.95


def test_monitor_false_alarms_near_level_and_power_under_shift():
    # per-sample conformal p-values: the false-alarm rate averaged over reference draws is the level
    # (p takes the values k / 201, so P(p <= 0.05) = 10 / 201); 4 standard errors of slack
    rng = np.random.default_rng(4)
    rates = [np.mean(ShiftMonitor(rng.standard_normal((400, 3))).sample_pvalues(rng.standard_normal((1000, 3)))
                     <= 0.05) for _ in range(10)]
    se = np.sqrt(0.05 * 0.95 * (1 / 1000 + 1 / 200) / 10)
    assert abs(np.mean(rates) - 10 / 201) < 4 * se, (np.mean(rates), se)
    mon = ShiftMonitor(rng.standard_normal((400, 3)), level=0.05, window=16, permutations=99)
    windows = [mon.window_pvalue(rng.standard_normal((16, 3))) for _ in range(100)]
    assert np.mean(np.array(windows) <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 100)
    shifted = rng.standard_normal((64, 3)) + np.array([2.0, 0.0, 0.0])  # a 2-sigma shift of one feature
    assert mon.window_flags(shifted).mean() == 1.0
    assert np.mean(mon.sample_pvalues(3 * rng.standard_normal((500, 3))) <= 0.05) > 0.5
    p = mon.stream_pvalues(np.concatenate([rng.standard_normal((32, 3)), shifted[:32]]))
    assert np.isnan(p[:15]).all() and p[-1] <= 0.05
    assert ShiftMonitor.from_dict(mon.to_dict()).bandwidth == pytest.approx(mon.bandwidth)
    with pytest.raises(ValueError, match="reference"):
        ShiftMonitor(np.ones((2, 3)))


def test_medium_features_see_size_contrast_and_texture():
    x = (np.arange(32) - 15.5)[:, None] ** 2 + (np.arange(32) - 15.5)[None] ** 2
    small = 1.33 + 0.02 * (x < 16)
    large = 1.33 + 0.02 * (x < 100)
    textured = large + 0.005 * np.random.default_rng(0).standard_normal((32, 32)) * (x < 100)
    f = medium_features(np.stack([small, large, textured, 1.33 + 2 * (small - 1.33)])[:, None])
    assert f.shape == (4, 4)
    assert f[1, 2] > 3 * f[0, 2]  # extent
    assert f[2, 3] > f[1, 3]  # texture
    assert f[3, 1] == pytest.approx(f[0, 1] + np.log(2), rel=1e-6)  # log peak deviation


# ----- a tiny trained ensemble and the guarded operator -----------------------------------------------
N = 16
FIELD_CFG = {"kind": "fno", "in_channels": 1, "out_channels": 2, "modes": [4, 4], "width": 8, "depth": 1,
             "in_mean": [1.35], "in_std": [0.02]}


def _media(rng: np.random.Generator, k: int, contrast: float) -> np.ndarray:
    from training.data.phantoms import gaussian_random_field

    return np.stack([1.35 + contrast * 0.02 * np.tanh(gaussian_random_field(rng, (N, N), 2.0))
                     for _ in range(k)])[:, None].astype(np.float32)


def _target(media: np.ndarray) -> np.ndarray:
    """A nonlinear map the tiny FNOs learn: ``[d, d^2]`` of the normalised deviation ``d``, smoothed."""
    d = (media[:, 0] - 1.35) / 0.02
    smooth = lambda a: 0.25 * (2 * a + np.roll(a, 1, -1) + np.roll(a, -1, -1))  # noqa: E731
    return np.stack([smooth(d), smooth(d**2)], 1).astype(np.float32)


@pytest.fixture(scope="module")
def ensemble():
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from pdesurrogate import FieldOperator
    from pdesurrogate.models import build_model
    from pdesurrogate.trust.ensemble import Ensemble
    from solvers import Grid

    rng = np.random.default_rng(5)
    media = jnp.asarray(_media(rng, 64, 1.0))
    targets = jnp.asarray(_target(np.asarray(media)))
    graphdef, _ = nnx.split(build_model(dict(FIELD_CFG, seed=0)))
    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, s):  # one compilation serves every member (one architecture)
        loss = lambda q: jnp.mean((jax.vmap(nnx.merge(graphdef, q))(media) - targets) ** 2)  # noqa: E731
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    members = []
    for seed in range(3):
        params = nnx.split(build_model(dict(FIELD_CFG, seed=seed)))[1]
        state = opt.init(params)
        for _ in range(150):
            params, state = step(params, state)
        members.append(FieldOperator(nnx.merge(graphdef, params), Grid((N, N), 1e-7), complex_output=False))
    return Ensemble(members)


def _spread_and_error(ens, media: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import jax

    from pdesurrogate.evaluation import relative_l2
    from pdesurrogate.trust.signals import relative_spread

    members = jax.jit(jax.vmap(lambda m: ens.apply(lambda op, x: op(x), m)))(media)
    spread = np.asarray(jax.jit(jax.vmap(relative_spread))(members))
    return spread, relative_l2(np.asarray(members).mean(1), _target(media))


def test_ensemble_members_differ_and_disagree_more_out_of_distribution(ensemble):
    rng = np.random.default_rng(6)
    ind, ood = _media(rng, 32, 1.0), _media(rng, 32, 3.0)
    one = np.asarray(ensemble(ind[0]))
    members = np.asarray(ensemble.apply(lambda op, x: op(x), ind[0]))
    assert members.shape == (3, 2, N, N) and ensemble.size == 3
    np.testing.assert_allclose(one, members.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(members[1], np.asarray(ensemble.member(1)(ind[0])), rtol=1e-5, atol=1e-6)
    assert np.min(np.abs(members[0] - members[1]).max()) > 1e-3  # different seeds, different members
    s_in, e_in = _spread_and_error(ensemble, ind)
    s_out, e_out = _spread_and_error(ensemble, ood)
    assert np.median(e_in) < 0.3  # the members learned the map in distribution
    assert np.median(s_out) > 2 * np.median(s_in) and np.median(e_out) > 2 * np.median(e_in)


def test_guarded_operator_falls_back_out_of_distribution(ensemble):
    import jax

    from pdesurrogate.trust.guarded import Guarded
    from pdesurrogate.trust.signals import relative_spread

    rng = np.random.default_rng(7)
    cal_media = _media(rng, 200, 1.0)
    spread, errors = _spread_and_error(ensemble, cal_media)
    cal = fit_calibration(spread[:, None], errors, np.log(spread)[:, None], ["spread"], ALPHA, window=4)

    @jax.jit
    def signals(medium):
        members = ensemble.apply(lambda op, x: op(x), medium)
        return members.mean(0), relative_spread(members)[None]

    solver = lambda m: _target(np.asarray(m)[None])[0]  # noqa: E731
    guarded = Guarded(ensemble, cal, tolerance=2 * cal.tolerance, solver=solver, signals=signals, check_every=5)
    for m in _media(rng, 12, 1.0):
        guarded(m, id="in")
    ood = _media(rng, 1, 4.0)[0]
    answer = guarded(ood, id="ood")
    record = guarded.log[-1]
    assert record["id"] == "ood" and record["decision"] == "solver" and "bound" in record["reason"]
    np.testing.assert_array_equal(np.asarray(answer), solver(ood))  # the solver's answer, not the surrogate's
    assert np.isfinite(record["error"]) and record["error"] > guarded.tolerance
    assert guarded.select(ood) is solver and guarded.select(_media(rng, 1, 1.0)[0]) in (ensemble, solver)
    summary = guarded.summary()
    in_decisions = [r["decision"] for r in guarded.log if r["id"] == "in"]
    assert in_decisions.count("surrogate") >= 9 and summary["n"] == 15
    assert summary["checks"] == 3 and 0 < summary["fallback"] < 0.5
    for key in ("signals", "bound", "pvalue", "window_pvalue", "decision", "time", "surrogate_s", "quantile"):
        assert key in record
    loaded = Calibration.from_dict(cal.to_dict())
    assert loaded.quantile == cal.quantile and loaded.names == ("spread",)
    with pytest.raises(ValueError, match="tolerance"):
        Guarded(ensemble, cal, tolerance=-1.0, solver=solver, signals=signals)


def test_member_configs_and_the_calibrate_command():
    from pdesurrogate.cli import build_parser
    from training.ensemble import member_configs

    toml = {"model": {"kind": "fno"}, "train": {"seed": 5, "members": 3, "steps": 10}}
    members = member_configs(toml)
    assert [(m["train"]["seed"], m["model"]["seed"]) for m in members] == [(5, 5), (6, 6), (7, 7)]
    assert all("members" not in m["train"] for m in members) and toml["train"]["members"] == 3
    assert len(member_configs(toml, 2, seed=0)) == 2
    with pytest.raises(ValueError, match="train.members"):
        member_configs(toml, 0)
    args = build_parser().parse_args(["calibrate", "RUN", "--data", "CAL", "--alpha", "0.2", "--test", "T1"])
    assert (args.run, args.data, args.alpha, args.test) == ("RUN", "CAL", 0.2, ["T1"])


def test_spearman_and_auroc_match_scipy_and_scikit_learn():
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from pdesurrogate.evaluation import auroc, spearman

    rng = np.random.default_rng(8)
    x = np.round(rng.uniform(size=200), 1)  # ties
    y = x + rng.standard_normal(200)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    labels = y > 0.8
    assert auroc(x, labels) == pytest.approx(roc_auc_score(labels, x), abs=1e-12)
    assert np.isnan(auroc(x, np.zeros(200, bool))) and np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_stepper_signals_residual_and_time_reversal():
    import jax.numpy as jnp

    from pdesurrogate import Surrogate
    from pdesurrogate.models import build_model
    from pdesurrogate.trust.ensemble import Ensemble
    from pdesurrogate.trust.run import signal_function
    from pdesurrogate.trust.signals import time_reversal
    from solvers import Grid, acoustic

    n, h, dt, k = 16, 1e-4, 2e-8, 4
    cfg = {"kind": "fno", "in_channels": 5, "out_channels": 3, "modes": [4, 4], "width": 8, "depth": 1,
           "in_mean": [0, 0, 0, 1500, 1000], "in_std": [1, 1e-6, 1e-6, 30, 50], "out_mean": [0, 0, 0],
           "out_std": [0.01, 1e-8, 1e-8]}
    grid = Grid((n, n), h)
    medium = jnp.stack([jnp.full((n, n), 1500.0), jnp.full((n, n), 1000.0)])
    sur = [Surrogate(build_model(dict(cfg, seed=s)), grid, None, dt, k, [1, -1, -1]) for s in (0, 1)]
    spec = {"task": "stepper", "shape": [n, n], "spacing": h, "solver_dt": dt, "macro_steps": k, "scheme": "fd",
            "fd_order": 4, "pml_size": 0, "state_scales": [1.0, 1.5e6, 1.5e6], "reversal_signs": [1, -1, -1]}
    x = (jnp.arange(n) - 7.5) * h
    p0 = jnp.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (2e-4) ** 2))
    solver = acoustic.Stepper(grid, acoustic.Medium(sound_speed=1500.0, density=1000.0), pml_size=0, dt=dt)
    state = solver.run(solver.init(p0), 8)  # a state with velocity
    u = jnp.concatenate([state.p[None], jnp.stack(state.v)])
    names, fn = signal_function(sur[0], spec)
    pred, sig = fn(u, medium)
    assert names == ("residual", "time_reversal") and pred.shape == u.shape
    weights = jnp.asarray([1.0, 1.5e6, 1.5e6]).reshape(3, 1, 1)
    assert float(sig[1]) == pytest.approx(float(time_reversal(sur[0].with_medium(medium), u, weights)), rel=1e-5)
    assert np.all(np.isfinite(np.asarray(sig))) and float(sig[0]) > 0
    names, fn = signal_function(Ensemble(sur), spec)
    _, sig = fn(u, medium)
    assert names == ("residual", "time_reversal", "spread") and float(sig[2]) > 0
