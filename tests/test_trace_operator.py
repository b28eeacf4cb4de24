"""The USCT trace operator: DCT trace head, water-trace baseline, training, restore, evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from pdesurrogate.models import TraceNet, band_limit, build_model, dct_bandwidth_coefficients, distance_channels

def test_dct_coefficients_cover_the_bandwidth():
    n, dt = 400, 1e-8
    k = dct_bandwidth_coefficients(n, dt, 1.5e6)  # coefficient k oscillates at k / (2 n dt)
    assert k == int(np.ceil(2 * n * dt * 1.5e6)) + 1 == 13
    assert dct_bandwidth_coefficients(n, dt, 1e12) == n
    t = (np.arange(n) + 0.5) / n
    low = np.cos(np.pi * 3 * t) + 0.5 * np.cos(np.pi * 11 * t)  # DCT-II modes 3 and 11
    np.testing.assert_allclose(band_limit(low, 12), low, atol=1e-12)
    assert np.linalg.norm(band_limit(low, 11) - low) / np.linalg.norm(low) == pytest.approx(np.sqrt(0.25 / 1.25), rel=1e-9)
    with pytest.raises(ValueError, match="max_frequency"):
        dct_bandwidth_coefficients(n, dt, 0.0)


def test_trace_net_shapes_readout_and_validation():
    bb = {"kind": "fno", "in_channels": 3, "out_channels": 6, "modes": [4, 4], "width": 8, "depth": 2}
    net = TraceNet(bb, [[3.5, 4.25], [10.0, 20.0], [0.0, 31.0]], n_time=40, n_coefficients=7, hidden=16)
    x = jax.random.normal(jax.random.key(0), (3, 32, 32))
    y = net(x)
    assert y.shape == (40, 3) and y.dtype == jnp.float32
    # the outputs lie in the span of the first 7 DCT-II modes (band-limited traces)
    c = scipy.fft.dct(np.asarray(y, np.float64), type=2, axis=0, norm="ortho")
    assert np.abs(c[7:]).max() < 1e-5 * np.abs(c[:7]).max()
    assert build_model({"kind": "traces", "backbone": bb, "receivers": [[1.0, 2.0]], "n_time": 9,
                        "n_coefficients": 9})(x).shape == (9, 1)
    with pytest.raises(ValueError, match="n_coefficients"):
        TraceNet(bb, [[1.0, 1.0]], n_time=10, n_coefficients=11)
    with pytest.raises(ValueError, match="receivers"):
        TraceNet(bb, [1.0, 1.0], n_time=10, n_coefficients=5)
    with pytest.raises(ValueError, match="receivers"):  # outside the 32 x 32 grid
        TraceNet(bb, [[1.0, 40.0]], n_time=10, n_coefficients=5)(x)


def test_traces_task_rejects_a_physics_residual():
    from pdesurrogate.config import parse
    from training.config import TrainConfig
    from training.losses import LossWeights, shot_loss

    with pytest.raises(ValueError, match="train.loss.residual"):
        parse(TrainConfig, {"task": "traces", "loss": {"data": 1.0, "residual": 0.1}}, "train")
    batch = {"medium": jnp.ones((1, 2, 8, 8)), "condition": jnp.ones((1, 2, 1, 8, 8)), "traces": jnp.ones((1, 2, 5, 3))}
    with pytest.raises(ValueError, match="weights.residual"):
        shot_loss(lambda x: x[:1, :5, :3], batch, None, weights=LossWeights(residual=0.1))


def test_shot_loss_leaves_out_the_masked_receivers():
    """Each shot's error is taken over the receivers the mask keeps: a wrong trace at the masked
    (emitting) element changes nothing; the same error at a kept element does."""
    from training.data import scenarios
    from training.losses import shot_loss

    model = lambda x: x[0, :5, :3]  # noqa: E731  (medium channel 0 as the predicted (5, 3) traces)
    medium = jnp.ones((1, 2, 8, 8))
    batch = {"medium": medium, "condition": jnp.ones((1, 2, 1, 8, 8)), "traces": jnp.ones((1, 2, 5, 3)),
             "receivers": jnp.asarray(scenarios.receiver_mask(np.array([0, 2]), 3))[None]}
    exact, _ = shot_loss(model, batch, None)
    assert float(exact) == pytest.approx(0.0)
    at_emitter = batch | {"traces": batch["traces"].at[0, 0, :, 0].set(7.0)}  # shot 0 emits from element 0
    assert float(shot_loss(model, at_emitter, None)[0]) == pytest.approx(0.0)
    at_receiver = batch | {"traces": batch["traces"].at[0, 0, :, 1].set(7.0)}
    assert float(shot_loss(model, at_receiver, None)[0]) > 0.1
    with pytest.raises(ValueError, match="receivers"):
        shot_loss(model, batch | {"receivers": batch["receivers"][:, :1]}, None)


def test_distance_channels():
    maps = distance_channels((8, 6), 0.5, np.array([[1.0, 0.5], [0.0, 0.0]]), scale=2.0)
    assert maps.shape == (2, 1, 8, 6)
    assert float(maps[0, 0, 2, 1]) == pytest.approx(0.0)
    assert float(maps[1, 0, 4, 3]) == pytest.approx(np.hypot(2.0, 1.5) / 2.0, rel=1e-6)


def test_water_traces_match_an_independent_solver_call(usct_run):
    from solvers import Grid, acoustic, signals
    from training.data import open_dataset, scenarios
    from training.tasks.traces import water_traces

    root, _ = usct_run
    ds = open_dataset(root / "data")
    water = water_traces(ds)
    cfg = ds.config
    assert water.shape == (16, ds.fields["traces"].shape[1], 16)
    ring = scenarios.ring_elements(cfg)
    dt = float(ds.manifest["constants"]["dt"])
    pulse = signals.tone_burst(np.arange(water.shape[1]) * dt, 5e5, cycles=3.0)
    res = acoustic.simulate(Grid(cfg.shape, cfg.spacing), acoustic.Medium(sound_speed=1500.0, density=1000.0),
                            duration=8e-6, sources=acoustic.PointSource(ring[5], pulse), sensors=ring, scheme="fd",
                            pml_size=6, dt=dt)
    scale = np.abs(water[5]).max()
    np.testing.assert_allclose(water[5], np.asarray(res.traces), atol=1e-4 * scale)
    # the direct arrival at the opposite element comes after the straight-ray travel time
    far = (5 + 8) % 16
    first = np.argmax(np.abs(water[5][:, far]) > 0.05 * np.abs(water[5][:, far]).max()) * dt
    assert first >= 0.9 * np.linalg.norm(ring[5] - ring[far]) / 1500.0


def test_trace_operator_trains_restores_and_evaluates(usct_run, tmp_path):
    import csv

    from pdesurrogate import FieldOperator, TraceOperator, load
    from training.data import open_dataset
    from training.evaluation import evaluate_run

    root, result = usct_run
    rows = list(csv.DictReader((root / "run" / "metrics.csv").open()))
    first, last = float(rows[0]["data"]), float(rows[-1]["data"])
    assert last < 0.5 * first, (first, last)  # the scattered traces are being learned

    op = FieldOperator.load(root / "run")  # a USCT run restores as its trace operator
    assert isinstance(op, TraceOperator) and type(load(root / "run")) is TraceOperator
    ds = open_dataset(root / "data")
    sample = ds[len(ds) - 1]
    medium = jnp.stack([jnp.asarray(sample["sound_speed"]), jnp.asarray(sample["density"])])
    shots = op.measure(medium)
    assert shots.shape == sample["traces"].shape
    e = ds.manifest["constants"]["emitters"][1]
    np.testing.assert_allclose(np.asarray(jax.jit(op.__call__)(medium, e)), np.asarray(shots[1]), rtol=1e-5,
                               atol=1e-6 * float(jnp.abs(shots).max()))
    with pytest.raises(ValueError, match="element"):
        op(medium, 16)
    grad = jax.grad(lambda m: jnp.sum(op(m, 3) ** 2))(medium)
    assert grad.shape == medium.shape and bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0

    out = evaluate_run(root / "run", [root / "data"], tmp_path / "eval", speed_batch=1)
    assert out["task"] == "traces" and out["rel_l2"]["n"] == 2 * 4  # 2 test samples x 4 shots
    assert out["rel_l2"]["median"] < out["baseline_rel_l2"]["median"]
    # the statistics leave each shot's emitter trace out: recompute the median without it
    from pdesurrogate.evaluation.metrics import relative_l2
    from pdesurrogate.surrogate import read_spec
    from training.data import scenarios

    test = ds.read(np.arange(*read_spec(root / "run")["test_indices"]), ["sound_speed", "density", "traces"])
    pred = np.asarray(jax.vmap(op.measure)(jnp.stack([jnp.asarray(test["sound_speed"]),
                                                      jnp.asarray(test["density"])], 1)))
    keep = scenarios.receiver_mask(np.asarray(ds.manifest["constants"]["emitters"]), 16)[:, None, :]
    per_shot = lambda x: np.where(keep, x, 0.0).reshape(-1, *x.shape[2:])  # noqa: E731
    median = np.median(relative_l2(per_shot(pred), per_shot(test["traces"])))
    np.testing.assert_allclose(out["rel_l2"]["median"], median, rtol=1e-3)
    assert set(out["bands"]) == {"low", "mid", "high"} and out["roi"] is None
    # reciprocity: the solver's own shots (fd, breast phantom, ring in water) are reciprocal to
    # rounding; the operator's are not exactly, and the metric is reported for both
    assert out["data_reciprocity"]["max"] < 1e-5, out["data_reciprocity"]
    assert 0 < out["reciprocity"]["median"] < 1, out["reciprocity"]
    assert "reciprocity" in rows[-1]  # the training log has the term (weight 0.1 in this run)
    assert out["speed"]["forward"]["ratio"] > 0
    assert (tmp_path / "eval" / "worst_sample.png").stat().st_size > 0
