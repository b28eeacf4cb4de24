"""USCT full-waveform inversion on tiny grids: gradient, wavelet estimation, convergence, resume, input checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdesurrogate.inversion import ForwardModel, usct
from solvers import Grid, acoustic, signals

F0 = 1.0e6


def make_case(n: int = 32, n_el: int = 16, shots: int = 8, radius_cells: float = 11.0, duration: float = 6e-6):
    """A ring acquisition on an ``n``-cell grid (h = 0.2 mm), a two-inclusion phantom and its traces."""
    h = 2e-4
    grid = Grid((n, n), h)
    centre = np.array([(n - 1) / 2 * h] * 2)
    elements = np.asarray(acoustic.ring_array(centre, radius_cells * h, n_el))
    dt = 0.3 * h / 1700
    nt = int(duration / dt)
    sig = np.asarray(signals.tone_burst(np.arange(nt) * dt, F0, cycles=3.0))
    acq = usct.Acquisition(grid, elements, sig, dt, nt, emitters=np.arange(0, n_el, n_el // shots))
    yy, xx = np.indices((n, n)) * h
    r = radius_cells * h
    truth = (1500 + 60 * (np.hypot(yy - centre[0] - 0.3 * r, xx - centre[1]) < 0.45 * r)
             - 40 * (np.hypot(yy - centre[0] + 0.35 * r, xx - centre[1] - 0.25 * r) < 0.28 * r)).astype(np.float32)
    return acq, truth


@pytest.fixture(scope="module")
def case():
    acq, truth = make_case()
    return acq, truth, usct.simulate(acq, truth)


RECIPE = {"bands": (0.5e6, 0.8e6), "iterations": 3, "progress": False}


@pytest.mark.parametrize("parameter", ["sound_speed", "density"])
def test_misfit_gradient_matches_central_differences(x64, parameter):
    """The misfit's gradient along a smooth bump, in sound speed (density known) or in density (sound
    speed and density stacked, as ``invert_density`` inverts them), equals central differences."""
    acq, truth = make_case(n=24, n_el=8, shots=4, radius_cells=7.0, duration=4e-6)
    rho_true = np.where(truth != 1500.0, 1060.0, 1000.0)
    observed = usct.simulate(acq, acoustic.Medium(sound_speed=truth, density=rho_true))
    joint = parameter == "density"
    water = np.full(acq.grid.shape, 1500.0)
    rho = np.full(acq.grid.shape, 1000.0)
    solver = usct.solver_forward(acq, usct.SolverSettings(c_ref=1700.0).resolve(acq), None if joint else rho)
    mask = usct.receiver_mask(acq, 0.25 * acq.radius)
    data = usct.band_data(acq, observed, np.ones((acq.n_shots, acq.nt + 1)), usct.lowpass(acq, 0.8e6), mask,
                          np.float64)
    shots = jnp.arange(acq.n_shots)

    def objective(m):
        return jnp.mean(jax.vmap(usct.shot_misfit, in_axes=(0, 0, None))(solver.predict(m, shots), shots, data))

    m0 = jnp.asarray(np.stack([water, rho]) if joint else water, jnp.float64)
    yy, xx = np.indices(acq.grid.shape)
    bump = np.exp(-((yy - 13.0) ** 2 + (xx - 10.0) ** 2) / 8.0) * acq.region(2.0)
    direction = jnp.asarray(np.stack([np.zeros_like(bump), bump]) if joint else bump)
    grad = jax.jit(jax.grad(objective))(m0)
    assert grad.dtype == jnp.float64 and grad.shape == m0.shape
    eps = 1.0  # m/s or kg/m^3
    fd = (objective(m0 + eps * direction) - objective(m0 - eps * direction)) / (2 * eps)
    analytic = jnp.vdot(grad, direction)
    assert abs(float(fd)) > 0
    np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-4)  # O(eps^2) central differences: 1e-5 here


def test_wavelet_estimation_recovers_a_known_filter(case):
    acq, _, _ = case
    water = usct.simulate(acq, 1500.0)
    mask = usct.receiver_mask(acq, 0.25 * acq.radius)
    nf = acq.nt + 1
    f = np.fft.rfftfreq(2 * acq.nt, acq.dt)
    true = 0.7 * np.exp(-2j * np.pi * f * 5 * acq.dt) * (1 + 0.3j * f / F0)  # delay, gain and a tilt
    recorded = np.fft.irfft(np.fft.rfft(water, n=2 * acq.nt, axis=1) * true[None, :, None], n=2 * acq.nt,
                            axis=1)[:, : acq.nt]
    shared = usct.estimate_wavelet(water, recorded, mask)
    assert shared.shape == (acq.n_shots, nf)
    expected = np.fft.irfft(np.fft.rfft(acq.signals, n=2 * acq.nt, axis=1) * true, n=2 * acq.nt, axis=1)[:, : acq.nt]
    got = usct.effective_signals(acq, shared)
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 0.02
    # one filter per emitter: each shot's own gain
    gains = np.linspace(0.5, 1.5, acq.n_shots)[:, None, None]
    per = usct.estimate_wavelet(water, recorded * gains, mask, per_emitter=True)
    got = usct.effective_signals(acq, per)
    assert np.linalg.norm(got - expected * gains[:, :, 0]) / np.linalg.norm(expected * gains[:, :, 0]) < 0.02
    assert np.linalg.norm(usct.effective_signals(acq, usct.estimate_wavelet(water, recorded * gains, mask))
                          - expected * gains[:, :, 0]) > 0.1 * np.linalg.norm(expected)


def test_inversion_reduces_rel_error_and_water_calibrates_the_source(case, tmp_path):
    acq, truth, observed = case
    res = usct.invert(acq, observed, truth=truth, **RECIPE)
    assert res.initial_error == pytest.approx(1.0, abs=1e-6)
    errors = [r["rel_error"] for r in res.history]
    assert len(errors) == 6 and errors[-1] < 0.5, errors
    assert res.sound_speed.shape == acq.grid.shape
    assert 1400 <= res.sound_speed.min() and res.sound_speed.max() <= 1700
    np.testing.assert_array_equal(res.sound_speed[~acq.region(2.0)], 1500.0)  # preconditioner zero outside
    h = res.history[-1]
    assert h["surrogate_calls"] == 0 and h["solver_calls"] >= 6 * acq.n_shots
    # a scanner whose pulse is 0.6x and 3 samples late: water calibrates it away
    shift = lambda x: 0.6 * np.roll(x, 3, axis=1)  # noqa: E731
    water = usct.simulate(acq, 1500.0)
    wrong = usct.invert(acq, shift(observed), truth=truth, **RECIPE)
    fixed = usct.invert(acq, shift(observed), water=shift(water), truth=truth, **RECIPE)
    assert fixed.history[-1]["rel_error"] == pytest.approx(res.history[-1]["rel_error"], abs=0.03)
    assert wrong.history[-1]["rel_error"] > fixed.history[-1]["rel_error"] + 0.1


def test_joint_density_inversion_stops_density_reflections_posing_as_sound_speed(case, tmp_path):
    acq, truth, _ = case
    rho_true = np.where(truth > 1500.0, 1080.0, np.where(truth < 1500.0, 930.0, 1000.0)).astype(np.float32)
    observed = usct.simulate(acq, acoustic.Medium(sound_speed=truth, density=rho_true))
    recipe = RECIPE | {"bands": (0.5e6, 0.8e6, 1.0e6)}
    held = usct.invert(acq, observed, truth=truth, **recipe)  # density held at 1000 kg/m^3
    joint = usct.invert(acq, observed, truth=truth, invert_density=True, **recipe)
    e_held, e_joint = held.history[-1]["rel_error"], joint.history[-1]["rel_error"]
    assert held.density is None and joint.density.shape == acq.grid.shape
    assert e_joint < 0.5 and e_joint < e_held - 0.1, (e_held, e_joint)
    assert 900.0 <= joint.density.min() and joint.density.max() <= 1100.0
    dense, light = (truth > 1500.0) & acq.region(2.0), (truth < 1500.0) & acq.region(2.0)
    assert joint.density[dense].mean() > joint.density[light].mean() + 20.0  # the density contrast, its sign right
    summary = usct.save_outputs(acq, joint, observed, tmp_path, truth=truth)
    with np.load(tmp_path / "reconstruction.npz") as z:
        np.testing.assert_array_equal(z["density"], joint.density)
    assert (tmp_path / "reconstruction.png").stat().st_size > 0 and summary["trace_rel_residual"] < 0.5
    with pytest.raises(ValueError, match="density must lie within the bounds"):
        usct.invert(acq, observed, invert_density=True, density=1200.0)
    with pytest.raises(ValueError, match="density_bounds"):
        usct.invert(acq, observed, invert_density=True, density_bounds=(1100.0, 900.0))


RESUME_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_inversion_usct import make_case, RECIPE
from pdesurrogate.inversion import ForwardModel, usct
acq, truth = make_case()
recipe = RECIPE | {{"optimizer": "adam", "shots_per_iteration": 3}}
usct.invert(acq, np.load({obs!r}), truth=truth, checkpoint_dir={ck!r}, **recipe)
"""


def test_resume_after_a_kill_continues_exactly(case, tmp_path):
    acq, truth, observed = case
    recipe = RECIPE | {"optimizer": "adam", "shots_per_iteration": 3}
    np.save(tmp_path / "obs.npy", observed)
    ck = tmp_path / "ck"
    script = RESUME_SCRIPT.format(tests=str(Path(__file__).parent), obs=str(tmp_path / "obs.npy"), ck=str(ck))
    env = os.environ | {"JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    state = ck / "state.npz"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file():
            with np.load(state) as z:
                if json.loads(str(z["meta"]))["iteration"] >= 2:
                    proc.send_signal(signal.SIGKILL)
                    break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    with np.load(state) as z:
        done = json.loads(str(z["meta"]))["iteration"]
    assert 2 <= done < 6
    resumed = usct.invert(acq, observed, truth=truth, checkpoint_dir=ck, **recipe)
    full = usct.invert(acq, observed, truth=truth, **recipe)
    np.testing.assert_array_equal(resumed.sound_speed, full.sound_speed)
    assert [r["misfit"] for r in resumed.history] == [r["misfit"] for r in full.history]
    assert [r["rel_error"] for r in resumed.history] == [r["rel_error"] for r in full.history]


def test_bad_input_is_rejected_before_compilation(case):
    acq, truth, observed = case
    grid, el, sig = acq.grid, acq.elements, acq.signals[0]
    with pytest.raises(ValueError, match="elements"):
        usct.Acquisition(grid, el + 0.01, sig, acq.dt, acq.nt)  # outside the grid
    with pytest.raises(ValueError, match="signal must have shape"):
        usct.Acquisition(grid, el, sig[:-1], acq.dt, acq.nt)
    with pytest.raises(ValueError, match="emitters"):
        usct.Acquisition(grid, el, sig, acq.dt, acq.nt, emitters=[0, 16])
    with pytest.raises(ValueError, match="dt"):
        usct.Acquisition(grid, el, sig, -1.0, acq.nt)
    with pytest.raises(ValueError, match=r"observed must have shape \(8, "):
        usct.invert(acq, observed[:, :-1])
    nan = observed.copy()
    nan[2, 5, 3] = np.nan
    with pytest.raises(ValueError, match="observed must be finite"):
        usct.invert(acq, nan)
    with pytest.raises(ValueError, match="water must have shape"):
        usct.invert(acq, observed, water=observed[:4])
    with pytest.raises(ValueError, match="initial must lie within the bounds"):
        usct.invert(acq, observed, initial=1500.0, bounds=(1510.0, 1700.0))
    with pytest.raises(ValueError, match="truth must be"):
        usct.invert(acq, observed, truth=truth[:-1])
    with pytest.raises(ValueError, match="forward must be one of"):
        usct.invert(acq, observed, forward="oracle")
    with pytest.raises(ValueError, match="needs surrogate"):
        usct.invert(acq, observed, forward="hybrid")
    with pytest.raises(ValueError, match="external forward model must be of kind 'solver'"):
        usct.invert(acq, observed, forward=ForwardModel(lambda c, shots: c, "surrogate"))
    with pytest.raises(ValueError, match="bands"):
        usct.invert(acq, observed, bands=(0.8e6, 0.5e6))
    with pytest.raises(ValueError, match="unstable"):
        usct.invert(acq, observed, bounds=(1400.0, 8000.0))
    with pytest.raises(ValueError, match="sound_speed"):
        usct.simulate(acq, np.full((8, 8), 1500.0))


def test_cli_invert_writes_the_reconstruction_history_figures_and_report(case, tmp_path):
    from pdesurrogate.cli import main

    acq, truth, observed = case
    obs = tmp_path / "obs.npz"
    np.savez(obs, traces=observed, shape=np.array(acq.grid.shape), spacing=acq.grid.spacing, elements=acq.elements,
             signal=acq.signals[0], dt=acq.dt, emitters=np.array(acq.emitters), truth=truth)
    cfg = tmp_path / "invert.toml"
    cfg.write_text('[invert]\nbands = [0.5e6, 0.8e6]\niterations = 2\nprogress = false\n')
    out = tmp_path / "out"
    assert main(["invert", "usct", str(cfg), "--observed", str(obs), "--out", str(out)]) == 0
    for name in ("reconstruction.npz", "history.csv", "reconstruction.png", "curves.png", "traces.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    with np.load(out / "reconstruction.npz") as z:
        assert z["sound_speed"].shape == acq.grid.shape
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 4
    assert "rel_error" in (out / "report.md").read_text()
    cfg.write_text("iteration = 3\n")
    assert main(["invert", "usct", str(cfg), "--observed", str(obs), "--out", str(out)]) == 2  # unknown key


# ----- the surrogate and the hybrids (the session's tiny trace operator, conftest.usct_run) -------------


@pytest.fixture(scope="module")
def trained(usct_run):
    from pdesurrogate import TraceOperator
    from training.data import open_dataset, scenarios

    root, _ = usct_run
    ds = open_dataset(root / "data")
    cfg, const = ds.config, ds.manifest["constants"]
    dt, nt = float(const["dt"]), int(const["nt"])
    acq = usct.Acquisition(Grid(cfg.shape, cfg.spacing), scenarios.ring_elements(cfg),
                           np.asarray(scenarios.source_signal(cfg, np.arange(nt) * dt)), dt, nt,
                           emitters=np.asarray(const["emitters"]))
    sample = ds[len(ds) - 1]
    truth, rho = np.asarray(sample["sound_speed"]), np.asarray(sample["density"])
    observed = usct.simulate(acq, acoustic.Medium(sound_speed=truth, density=rho))
    return acq, TraceOperator.load(root / "run"), truth, rho, observed


def test_surrogate_mismatch_names_what_differs(trained):
    acq, op, truth, rho, observed = trained
    kw = {"forward": "surrogate", "surrogate": op, "density": rho, "progress": False}
    el, sig = acq.elements, acq.signals[0]

    def variant(**changes):
        args = {"grid": acq.grid, "elements": el, "signal": sig, "dt": acq.dt, "nt": acq.nt,
                "emitters": np.array(acq.emitters)} | changes
        a = usct.Acquisition(**args)
        return a, observed if a.nt == acq.nt and a.n_shots == acq.n_shots else np.ones((a.n_shots, a.nt, a.n_elements))

    cases = {"grid differs": variant(grid=Grid(acq.grid.shape, 1.01 * acq.grid.spacing)),
             "elements differ": variant(elements=el[::-1].copy()),
             "emitters differ": variant(emitters=np.array(acq.emitters) + 1),
             "time axis differs": variant(nt=acq.nt - 1, signal=sig[:-1]),
             "signal differs": variant(signal=np.asarray(signals.tone_burst(np.arange(acq.nt) * acq.dt, 8e5, 3.0)))}
    for message, (a, obs) in cases.items():
        with pytest.raises(ValueError, match=message):
            usct.invert(a, obs, **kw)


def test_surrogate_and_both_hybrids_invert(trained):
    acq, op, truth, rho, observed = trained
    f0 = acq.peak_frequency()
    kw = {"surrogate": op, "density": rho, "truth": truth, "progress": False, "bands": (0.6 * f0, f0),
          "iterations": 3}
    sur = usct.invert(acq, observed, forward="surrogate", precondition="none", **kw)
    assert sur.history[-1]["solver_calls"] == 0 and sur.history[-1]["surrogate_calls"] >= 6 * acq.n_shots
    assert np.isfinite(sur.history[-1]["rel_error"]) and not np.array_equal(sur.sound_speed, np.full_like(truth, 1500))
    corrected = usct.invert(acq, observed, forward="hybrid", hybrid="corrected", refresh_every=2, **kw)
    h = corrected.history
    assert [("centre_misfit" in r) for r in h] == [True, False, True, True, False, True]
    # first-order consistency: at an accepted centre the corrected misfit is the solver's
    for r in h:
        if r.get("accepted"):
            assert r["misfit"] == pytest.approx(r["centre_misfit"], rel=1e-3)
    assert h[-1]["rel_error"] < corrected.initial_error
    first = usct.invert(acq, observed, forward="hybrid", hybrid="surrogate_first", solver_iterations=2, **kw)
    assert [r["forward"] for r in first.history] == ["surrogate"] * 6 + ["solver"] * 2
    assert first.history[-1]["rel_error"] < first.initial_error
