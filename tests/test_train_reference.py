"""experiments/train_reference.py's bookkeeping across device calls: which stages a results file
already holds (``--skip-done``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("train_reference", REPO / "experiments" / "train_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_done_needs_every_result_of_the_stage():
    """A reference stage is done with its evaluation and its speed study (taken in the same stage,
    on the device that trained it); the ablation and U-Net stages with every row."""
    tr = _script()
    results = {"reference": {"acoustic stepper": {}, "optical field operator": {}},
               "speed": {"stepper_break_even": {}, "field_equal_accuracy": {}},
               "ablation": {name: {} for name in tr.ABLATION}}
    # the stepper's stepper_equal_accuracy is missing
    assert [st for st in tr.STAGES if tr.stage_done(results, st)] == ["optics"]
    results["speed"]["stepper_equal_accuracy"] = {}
    assert [st for st in tr.STAGES if tr.stage_done(results, st)] == ["stepper", "optics"]
    results["reference"]["USCT trace operator"] = {}
    assert not tr.stage_done(results, "usct")  # its speed study missing
    results["speed"]["trace_equal_accuracy"] = {}
    results["ablation"] |= {name: {} for name in tr.TRACE_ABLATION}
    results["reference"]["Maxwell TM stepper"] = {}
    assert [st for st in tr.STAGES if tr.stage_done(results, st)] == ["stepper", "optics", "usct", "maxwell",
                                                                       "ablation"]
    names = [name for name, *_ in tr.REFERENCE.values()]
    results["reference"] |= {tr.unet_name(name): {} for name in names[:-1]}
    assert not tr.stage_done(results, "unet")  # one U-Net baseline missing
    results["reference"][tr.unet_name(names[-1])] = {}
    assert all(tr.stage_done(results, st) for st in tr.STAGES)
    assert not any(tr.stage_done({}, st) for st in tr.STAGES)


def test_stepper_ablation_uses_the_reference_recipe():
    """The ablation adds the reference recipe's loss terms one at a time with its own weights, so
    exactly one row trains as the reference stepper does (and reuses that run), at every size: "+
    unrolled" for a recipe that unrolls, "+ residual" for one that does not."""
    tr = _script()
    assert tr.small_experiments()["stepper"]["train"]["unroll"] == tr.ABLATION_UNROLL
    assert "unroll" not in tr.gpu_experiments()["stepper"]["train"]
    for experiments in (tr.small_experiments(), tr.gpu_experiments()):
        reference = experiments["stepper"]
        rows = tr.stepper_ablation(reference)
        assert tuple(rows) == tr.ABLATION
        weights = reference["train"]["loss"]
        assert rows["+ time reversal"]["loss"]["time_reversal"] == weights["time_reversal"] > 0
        base = {k: v for k, v in reference["train"].items() if k not in ("loss", "unroll")}
        same = [name for name, change in rows.items() if tr._same_training({**reference, "train": base | change},
                                                                            reference)]
        unrolled = reference["train"].get("unroll", 1) == tr.ABLATION_UNROLL
        assert same == ["+ unrolled" if unrolled else "+ residual"]


def _fake_evaluation() -> dict:
    stats = {"mean": 0.1, "median": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4}
    return {"rel_l2": stats, "baseline_rel_l2": stats}


def test_ablation_stage_trains_no_reference_run_it_does_not_reuse(tmp_path, monkeypatch):
    """At the budget size no ablation row trains as the reference surrogate does, so a later device
    session runs the stage without training the reference surrogates again; each stage records the
    device it ran on. Data, training and evaluation are faked: this checks the bookkeeping only."""
    tr = _script()
    ensured = []
    monkeypatch.setattr(tr, "ensure_dataset", lambda data, path: path)
    monkeypatch.setattr(tr, "ensure_run", lambda exp, data, run: ensured.append(run.name) or run)
    monkeypatch.setattr(tr, "evaluated", lambda run, data: _fake_evaluation())
    assert tr.main(["--budget", "--stages", "ablation", "--work", str(tmp_path / "work"),
                    "--results", str(tmp_path)]) == 0
    rows = len(tr.ABLATION) + len(tr.TRACE_ABLATION)
    assert sorted(ensured) == sorted([f"ablation_{i}" for i in range(len(tr.ABLATION))]
                                     + [f"ablation_usct_{i}" for i in range(len(tr.TRACE_ABLATION))])
    results = json.loads((tmp_path / f"surrogates_{jax.default_backend()}_budget.json").read_text())
    assert len(results["ablation"]) == rows and list(results["stage_device"]) == ["ablation"]
    assert results["stage_device"]["ablation"].startswith(results["device"])
    table = (tmp_path / f"surrogates_{jax.default_backend()}_budget.md").read_text()
    assert f"| ablation | {results['stage_seconds']['ablation']:.0f} | {results['stage_device']['ablation']} |" in table


@pytest.mark.parametrize("trains", [False, True])
def test_a_rerun_that_trains_nothing_keeps_the_stage_time(tmp_path, monkeypatch, trains):
    """A stage's recorded wall time is that of the call that trained it: a later call that trains
    and generates nothing (e.g. a speed-only rerun) leaves it; one that trains replaces it."""
    tr = _script()

    def fake_run(exp, data, run):
        if trains:
            (run / "checkpoints" / "300").mkdir(parents=True, exist_ok=True)
        return run

    monkeypatch.setattr(tr, "ensure_dataset", lambda data, path: path)
    monkeypatch.setattr(tr, "ensure_run", fake_run)
    monkeypatch.setattr(tr, "evaluated", lambda run, data: _fake_evaluation())
    previous = tmp_path / f"surrogates_{jax.default_backend()}_budget.json"
    previous.write_text(json.dumps({"stage_seconds": {"ablation": 1645.0},
                                    "stage_device": {"ablation": "cpu cpu, 2026-11-26"}}))
    assert tr.main(["--budget", "--stages", "ablation", "--work", str(tmp_path / "work"),
                    "--results", str(tmp_path)]) == 0
    results = json.loads(previous.read_text())
    assert (results["stage_seconds"]["ablation"] == 1645.0) != trains
    assert (results["stage_device"]["ablation"] == "cpu cpu, 2026-11-26") != trains
