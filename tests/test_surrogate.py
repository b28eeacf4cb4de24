"""Surrogate (learned Stepper) and FieldOperator: protocol, rollouts with sensors, gradients with
respect to the medium, and restore from a run directory in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdesurrogate import FieldOperator, Surrogate, load
from pdesurrogate.models import build_model, save_model
from solvers import Grid, acoustic
from solvers.points import PointSampler
from solvers.protocol import Stepper

REPO = Path(__file__).resolve().parents[1]
N, H, DT, K = 16, 1e-4, 2e-8, 4
GRID = Grid((N, N), H)
STEPPER_CFG = {"kind": "fno", "in_channels": 5, "out_channels": 3, "modes": [4, 4], "width": 8, "depth": 1, "seed": 3,
               "in_mean": [0, 0, 0, 1500, 1000], "in_std": [1, 1e-6, 1e-6, 30, 50],
               "out_mean": [0, 0, 0], "out_std": [0.1, 1e-7, 1e-7]}
FIELD_CFG = {"kind": "fno", "in_channels": 1, "out_channels": 4, "modes": [4, 4], "width": 8, "depth": 1, "seed": 4,
             "in_mean": [1.35], "in_std": [0.02]}
SENSORS = np.array([[3.3e-4, 4.1e-4], [1.0e-3, 7.5e-4], [1.2e-3, 1.3e-3]])


def _medium(seed: int = 0) -> acoustic.Medium:
    rng = np.random.default_rng(seed)
    return acoustic.Medium(sound_speed=(1500 + 30 * rng.normal(size=(N, N))).astype(np.float32),
                           density=(1000 + 50 * rng.normal(size=(N, N))).astype(np.float32))


def _p0() -> np.ndarray:
    x = np.arange(N) * H
    X, Y = np.meshgrid(x, x, indexing="ij")
    return np.exp(-((X - 8e-4) ** 2 + (Y - 7e-4) ** 2) / (2e-4) ** 2).astype(np.float32)


@pytest.fixture(scope="module")
def surrogate() -> Surrogate:
    return Surrogate(build_model(STEPPER_CFG), GRID, _medium(), DT, K, [1, -1, -1])


def test_stepper_protocol(surrogate):
    assert isinstance(surrogate, Stepper)
    assert surrogate.macro_steps == K and surrogate.dt == pytest.approx(K * DT)
    s = surrogate.init(_p0())
    assert s.shape == (3, N, N) and np.all(np.asarray(s[1:]) == 0) and np.array_equal(np.asarray(s[0]), _p0())
    one = surrogate.step(s)
    assert one.shape == s.shape and np.all(np.isfinite(np.asarray(one)))
    three = surrogate.step(surrogate.step(one))
    np.testing.assert_allclose(np.asarray(surrogate.run(s, 3)), np.asarray(three), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(surrogate.run(s, 0)), np.asarray(s))
    r = surrogate.reverse(one)
    np.testing.assert_array_equal(np.asarray(r), np.asarray(one) * np.array([1, -1, -1])[:, None, None])
    # jit works on the bound methods, as for the solvers' steppers
    np.testing.assert_allclose(np.asarray(jax.jit(surrogate.step)(s)), np.asarray(one), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(surrogate.run, static_argnums=1)(s, 3)), np.asarray(three),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="initial_field"):
        surrogate.init(np.zeros((N + 1, N)))
    with pytest.raises(ValueError, match="state must have shape"):
        surrogate.step(jnp.zeros((2, N, N)))
    with pytest.raises(ValueError, match="medium"):
        surrogate.with_medium(np.ones((3, N, N)))
    with pytest.raises(ValueError, match="reversal_signs"):
        Surrogate(build_model(STEPPER_CFG), GRID, _medium(), DT, K, [1, 2, -1])


def test_state_scales_keep_the_state_physical():
    plain = Surrogate(build_model(STEPPER_CFG), GRID, _medium(), DT, K, [1, -1, -1])
    cfg = dict(STEPPER_CFG, in_std=[1, 1, 1, 30, 50], out_std=[0.1, 0.1, 0.1])
    scaled = Surrogate(build_model(cfg), GRID, _medium(), DT, K, [1, -1, -1], state_scales=(1.0, 1e6, 1e6))
    s = plain.init(_p0())
    np.testing.assert_allclose(np.asarray(scaled.step(s)), np.asarray(plain.step(s)), rtol=2e-4, atol=1e-9)


def test_rollout_reads_sensor_traces_like_the_solver(surrogate):
    res = jax.jit(lambda p: surrogate.rollout(p, 5, SENSORS, keep_states=True))(_p0())
    assert res.time.shape == (6,) and res.traces.shape == (6, 3) and res.states.shape == (6, 3, N, N)
    np.testing.assert_allclose(np.asarray(res.time), K * DT * np.arange(6), rtol=1e-6)
    sampler = PointSampler(GRID, SENSORS, kernel="sinc")  # the default, as acoustic.simulate's sensors
    np.testing.assert_allclose(np.asarray(res.traces[0]), np.asarray(sampler.gather(jnp.asarray(_p0()))), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.traces), np.asarray(jax.vmap(sampler.gather)(res.states[:, 0])),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(res.pressure), np.asarray(surrogate.run(surrogate.init(_p0()), 5)[0]),
                               rtol=1e-4, atol=1e-6)
    assert surrogate.rollout(_p0(), 2).traces is None


def test_gradient_wrt_sound_speed_is_finite_and_matches_finite_differences(surrogate):
    rho = jnp.asarray(_medium().density)

    def loss(c):
        s = surrogate.with_medium(jnp.stack([c, rho]))
        return jnp.sum(s.rollout(_p0(), 3, SENSORS).traces ** 2)

    c0 = jnp.asarray(_medium().sound_speed)
    g = jax.jit(jax.grad(loss))(c0)
    assert g.shape == (N, N) and np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0
    v = jnp.asarray(np.random.default_rng(7).normal(size=(N, N)), jnp.float32)
    eps = 2.0  # m/s (the model normalises c by 30 m/s)
    f = jax.jit(loss)
    fd = (float(f(c0 + eps * v)) - float(f(c0 - eps * v))) / (2 * eps)
    ad = float(jnp.sum(g * v))
    print(f"directional derivative: AD {ad:.6g}, FD {fd:.6g}")
    assert ad == pytest.approx(fd, rel=0.05)


def test_field_operator_fields_measurements_and_gradient():
    op = FieldOperator(build_model(FIELD_CFG), GRID, info={"detector_positions_m": [SENSORS.tolist()] * 2})
    n = jnp.asarray(1.35 + 0.02 * np.random.default_rng(1).normal(size=(N, N)), jnp.float32)
    f = jax.jit(lambda x: op(x))(n)
    assert f.shape == (2, N, N) and jnp.iscomplexobj(f)
    m = jax.jit(lambda x: op.measure(x))(n)
    assert m.shape == (2, 3) and jnp.iscomplexobj(m)
    np.testing.assert_allclose(np.asarray(m[0].real), np.asarray(PointSampler(GRID, SENSORS).gather(f[0].real)),
                               rtol=1e-6)
    g = jax.jit(jax.grad(lambda x: jnp.sum(jnp.abs(op.measure(x)) ** 2)))(n)
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0
    with pytest.raises(ValueError, match="medium"):
        op(jnp.ones((2, N, N)))
    incident = jnp.exp(1j * jnp.arange(N * N, dtype=jnp.float32).reshape(1, N, N) / 40.0) * jnp.ones((2, 1, 1))
    shifted = FieldOperator(build_model(FIELD_CFG), GRID, offset=incident)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda x: shifted(x))(n)), np.asarray(f + incident), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="offset"):
        FieldOperator(build_model(FIELD_CFG), GRID, offset=jnp.zeros((2, N, N + 1)))


def _write_runs(root: Path) -> tuple[Path, Path]:
    stepper_run, field_run = root / "stepper", root / "field"
    save_model(stepper_run / "checkpoints", build_model(STEPPER_CFG), STEPPER_CFG)
    (stepper_run / "surrogate.json").write_text(json.dumps({
        "task": "stepper", "shape": [N, N], "spacing": H, "solver_dt": DT, "macro_steps": K,
        "reversal_signs": [1, -1, -1], "residual_step": True, "medium_names": ["sound_speed", "density"],
        "channel_names": ["p", "v0", "v1"], "state_scales": [1.0, 1.0, 1.0]}))
    save_model(field_run / "checkpoints", build_model(FIELD_CFG), FIELD_CFG)
    (field_run / "surrogate.json").write_text(json.dumps({
        "task": "field", "shape": [N, N], "spacing": H, "complex_output": True, "medium_names": ["refractive_index"],
        "info": {"wavelength_m": 5e-7}}))
    return stepper_run, field_run


_CHILD = """
import sys, numpy as np
from pdesurrogate import FieldOperator, Surrogate
from solvers import acoustic
stepper_run, field_run, inputs, out = sys.argv[1:5]
d = np.load(inputs)
sur = Surrogate.load(stepper_run, acoustic.Medium(sound_speed=d["c"], density=d["rho"]))
op = FieldOperator.load(field_run)
np.savez(out, traces=np.asarray(sur.rollout(d["p0"], 3, d["sensors"]).traces), field=np.asarray(op(d["n"])),
         dt=sur.dt, wavelength=op.info["wavelength_m"])
"""


def test_restore_in_a_fresh_process_gives_identical_outputs(tmp_path):
    stepper_run, field_run = _write_runs(tmp_path)
    med = _medium(2)
    n = (1.35 + 0.02 * np.random.default_rng(3).normal(size=(N, N))).astype(np.float32)
    np.savez(tmp_path / "in.npz", c=med.sound_speed, rho=med.density, p0=_p0(), sensors=SENSORS, n=n)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", _CHILD, str(stepper_run), str(field_run), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, env=env, cwd=REPO, timeout=120)
    child = np.load(tmp_path / "out.npz")
    here = Surrogate(build_model(STEPPER_CFG), GRID, med, DT, K, [1, -1, -1])
    op = FieldOperator(build_model(FIELD_CFG), GRID)
    np.testing.assert_array_equal(child["traces"], np.asarray(here.rollout(_p0(), 3, SENSORS).traces))
    np.testing.assert_array_equal(child["field"], np.asarray(op(n)))
    assert float(child["dt"]) == pytest.approx(K * DT) and float(child["wavelength"]) == 5e-7
    with pytest.raises(ValueError, match="FieldOperator.load"):
        Surrogate.load(field_run)
    with pytest.raises(ValueError, match="not a surrogate training run"):
        FieldOperator.load(tmp_path)
    # one loader for any run: the class its surrogate.json names
    assert type(load(stepper_run)) is Surrogate and type(load(field_run)) is FieldOperator
    with pytest.raises(ValueError, match="not a surrogate training run"):
        load(tmp_path)
