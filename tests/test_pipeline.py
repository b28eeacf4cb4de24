"""End to end through the CLI: generate the smoke dataset -> train -> evaluate (<= 3 minutes on 2 CPU cores)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from pdesurrogate.cli import main

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "configs" / "acoustic_smoke.toml"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    t0 = time.perf_counter()
    assert main(["generate", str(SMOKE), "--out", str(root / "data"), "--quiet"]) == 0
    assert main(["train", str(SMOKE), "--data", str(root / "data"), "--out", str(root / "run"), "--steps", "80",
                 "--quiet"]) == 0
    assert main(["evaluate", str(root / "run"), "--data", str(root / "data"), "--json", str(root / "eval.json")]) == 0
    elapsed = time.perf_counter() - t0
    print(f"generate -> train -> evaluate: {elapsed:.0f} s")
    return root, json.loads((root / "eval.json").read_text()), elapsed


def test_smoke_config_trains_and_evaluates_end_to_end(pipeline):
    root, result, elapsed = pipeline
    assert elapsed <= 180
    for key in ("rel_l2", "rel_l2_state", "rollout", "baseline_rel_l2", "baseline_rollout", "bands", "roi",
                "time_reversal", "spectral_tail", "splits", "speed"):
        assert key in result, key
    # the smoke FNO keeps 8 of 32 modes (padded to 48): a share of each increment lies outside them
    assert 0.01 < result["spectral_tail"]["median"] < result["baseline_rel_l2"]["median"]
    stats = result["rel_l2"]
    assert set(stats) == {"n", "mean", "median", "p95", "p99", "max"} and stats["n"] == 8 * 8  # 8 held-out x 8 steps
    assert stats["median"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert set(result["bands"]) == {"low", "mid", "high"}
    assert len(result["rollout"]["median"]) == 8
    # a short training already beats persistence by a wide margin, one step and over the rollout
    assert stats["median"] < 0.5 * result["baseline_rel_l2"]["median"]
    assert result["rollout"]["median"][-1] < result["baseline_rollout"]["median"][-1]
    sp = result["speed"]
    assert sp["solver_steps"] == 8 * 4 and sp["forward"]["surrogate_s"] > 0 and sp["forward_gradient"]["solver_s"] > 0
    for name in ("evaluation.md", "evaluation.json", "rollout.png", "worst_sample.png", "error_histogram.png"):
        assert (root / "run" / "evaluation" / name).stat().st_size > 0
    assert "| rel L2" in (root / "run" / "evaluation" / "evaluation.md").read_text()


def test_trained_run_restores_as_a_surrogate(pipeline):
    from pdesurrogate import Surrogate
    from training.data import open_dataset

    root, result, _ = pipeline
    ds = open_dataset(root / "data")
    sample = ds[len(ds) - 1]
    sur = Surrogate.load(root / "run")
    assert sur.macro_steps == 4 and sur.dt == pytest.approx(4 * ds.manifest["constants"]["dt"])
    sur = sur.with_medium(np.stack([sample["sound_speed"], sample["density"]]))
    state = np.concatenate([sample["pressure"][0][None], sample["velocity"][0]])
    pred = np.asarray(sur.step(state))[0]
    rel = np.linalg.norm(pred - sample["pressure"][1]) / np.linalg.norm(sample["pressure"][1])
    # the evaluation logged this sample's own error: its first macro step, sample-major per_sample.npz
    with np.load(root / "run" / "evaluation" / "per_sample.npz") as logged:
        samples, errors = logged["samples"], logged["rel_l2"]
    steps = len(errors) // len(samples)
    assert steps == 8 and samples[-1] == len(ds) - 1
    assert rel == pytest.approx(errors[(len(samples) - 1) * steps], rel=1e-4)


def test_train_errors_are_one_line(pipeline, tmp_path, capsys):
    root, _, _ = pipeline
    assert main(["train", str(SMOKE), "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not a dataset directory" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--data", str(root / "data"), "--json", str(tmp_path / "x.json")]) == 2
    assert "not a surrogate training run" in capsys.readouterr().err


def test_full_smoke_config_in_fresh_processes_within_three_minutes(tmp_path):
    """The smoke config exactly as committed (200 steps), three CLI processes, <= 180 s on 2 cores."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "pdesurrogate"]
    t0 = time.perf_counter()
    for args in (["generate", str(SMOKE), "--out", str(tmp_path / "data"), "--quiet"],
                 ["train", str(SMOKE), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet"],
                 ["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--json",
                  str(tmp_path / "eval.json")]):
        subprocess.run(cli + args, check=True, env=env, cwd=tmp_path, timeout=300)
    elapsed = time.perf_counter() - t0
    result = json.loads((tmp_path / "eval.json").read_text())
    print(f"smoke config end to end: {elapsed:.0f} s; one-step median rel L2 {result['rel_l2']['median']:.3g}")
    assert elapsed <= 180
    assert result["rel_l2"]["median"] < 0.25 * result["baseline_rel_l2"]["median"]


@pytest.mark.slow
def test_optics_field_operator_trains_and_evaluates(tmp_path):
    """maxwell_smoke: generate -> train (scattered-field form, Helmholtz residual) -> evaluate -> restore."""
    from pdesurrogate import FieldOperator
    from pdesurrogate.config import dump_toml, load_toml

    cfg = load_toml(REPO / "experiments" / "configs" / "maxwell_smoke.toml")
    cfg["data"]["num_samples"] = 16
    cfg["train"] |= {"steps": 60, "warmup_steps": 5, "loss": {"data": 1.0, "residual": 0.01}}
    (tmp_path / "optics.toml").write_text(dump_toml(cfg))
    assert main(["generate", str(tmp_path / "optics.toml"), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    assert main(["train", str(tmp_path / "optics.toml"), "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "data"), "--json",
                 str(tmp_path / "eval.json"), "--no-speed"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["task"] == "field" and result["rel_l2"]["n"] == 2
    # learning the scattered field on top of the incident field beats the incident field alone
    assert result["rel_l2"]["median"] < result["baseline_rel_l2"]["median"]
    op = FieldOperator.load(tmp_path / "run")
    assert op.offset is not None and op.offset.shape == (4, 40, 40)


def test_train_validation_and_test_splits_are_disjoint():
    from training.run import split_indices

    train, val, test = split_indices(64)
    assert (len(train), len(val), len(test)) == (48, 8, 8)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(64))
    with pytest.raises(ValueError, match="at least 3 samples"):
        split_indices(2)


def test_calibrate_bounds_the_stepper_error(pipeline, capsys):
    # pdesurrogate calibrate on the run's own dataset: its validation split calibrates (8 trajectories x
    # 8 one-step predictions), its test split is assessed
    from pdesurrogate.trust import Calibration

    root, _, _ = pipeline
    assert main(["calibrate", str(root / "run"), "--data", str(root / "data"), "--test", str(root / "data")]) == 0
    cal = Calibration.load(root / "run")
    assert cal.names == ("residual", "time_reversal") and cal.info["n"] == 64
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| data |")][0]
    n, coverage, nominal, spearman = (float(v) for v in row.split("|")[2:6])
    assert n == 64 and nominal == 0.9 and coverage >= 0.75 and spearman > 0.5


def test_evaluate_reports_trust_once_calibrated(pipeline):
    # after `pdesurrogate calibrate` (the test above), `pdesurrogate evaluate` adds the trust figures per test set
    root, _, _ = pipeline
    if not (root / "run" / "trust.json").is_file():
        assert main(["calibrate", str(root / "run"), "--data", str(root / "data")]) == 0
    out = root / "eval_trust.json"
    assert main(["evaluate", str(root / "run"), "--data", str(root / "data"), "--json", str(out), "--no-speed"]) == 0
    result = json.loads(out.read_text())
    test = result["trust"]["sets"]["test"]
    assert test["n"] == result["rel_l2"]["n"] == 64 and test["nominal"] == 0.9
    from pdesurrogate import trust

    direct = trust.assess(root / "run", root / "data")  # evaluate reports exactly what assess measures
    for key in ("coverage", "nominal", "spearman", "flagged", "n"):
        assert test[key] == pytest.approx(direct[key], nan_ok=True), key
    assert test["coverage"] >= 0.75
    assert (root / "run" / "evaluation" / "trust_bounds.png").stat().st_size > 0
    assert "Trust (" in (root / "run" / "evaluation" / "evaluation.md").read_text()


def test_train_members_option_trains_an_ensemble(pipeline, tmp_path):
    # [train] members = 2: `pdesurrogate train` writes two seeded runs that load as one vmapped ensemble
    from pdesurrogate.config import dump_toml, load_toml
    from pdesurrogate.trust import Ensemble

    root, _, _ = pipeline
    cfg = load_toml(SMOKE)
    cfg["train"] |= {"members": 2, "warmup_steps": 1}
    (tmp_path / "ens.toml").write_text(dump_toml(cfg))
    assert main(["train", str(tmp_path / "ens.toml"), "--data", str(root / "data"), "--out", str(tmp_path / "ens"),
                 "--steps", "3", "--quiet"]) == 0
    specs = [json.loads((tmp_path / "ens" / "members" / str(k) / "surrogate.json").read_text()) for k in (0, 1)]
    assert [s["train"]["seed"] for s in specs] == [0, 1] and specs[0]["model"]["seed"] != specs[1]["model"]["seed"]
    assert Ensemble.load(tmp_path / "ens").size == 2
