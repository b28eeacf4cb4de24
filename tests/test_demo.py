"""``pdesurrogate demo``, the README's first command, end to end on its own code path (the embedded
recipe, the USCT shot included) with a short training (``--steps``); the optical reconstruction
(step 4) is tested by ``test_demo_optics.py``."""

from __future__ import annotations

import json

from pdesurrogate.cli import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    from training.data import open_dataset
    from training.demo import DEMO_EXPERIMENT

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "20", "--skip-reconstruction", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "[3/4] evaluating against the solver" in printed and "surrogate rel L2" in printed
    assert "[4/4]" not in printed and not (out / "reconstruction").exists()
    assert (out / "simulation" / "result.npz").stat().st_size > 0 and (out / "simulation" / "simulation.png").is_file()
    ds = open_dataset(out / "data")
    assert ds.complete and len(ds) == DEMO_EXPERIMENT["data"]["num_samples"]
    spec = json.loads((out / "run" / "surrogate.json").read_text())
    assert spec["task"] == "stepper" and spec["train"]["steps"] == 20
    assert spec["model"]["width"] == DEMO_EXPERIMENT["model"]["width"]
    result = json.loads((out / "evaluation" / "evaluation.json").read_text())
    n_test, frames = 8, DEMO_EXPERIMENT["data"]["acoustic"]["n_frames"]
    assert result["rel_l2"]["n"] == n_test * frames and 0 < result["rel_l2"]["median"] < float("inf")
    assert result["speed"]["forward"]["surrogate_s"] > 0
    for name in ("evaluation.md", "rollout.png", "worst_sample.png", "error_histogram.png", "per_sample.npz"):
        assert (out / "evaluation" / name).stat().st_size > 0
