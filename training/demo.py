"""The end-to-end default behind ``pdesurrogate demo``, small enough for a laptop CPU.

0. Simulate an ultrasound computed-tomography shot: a breast-like phantom (fat, glandular tissue,
   a cyst and a tumour) inside a 64-element ring array, one element firing a 1 MHz tone burst,
   every element recording (traces, final field, config and a PNG in ``OUT/simulation``).
1. Generate a small acoustic time-stepping dataset (``DEMO_EXPERIMENT["data"]``: 64 breast-like
   media at 32 x 32, ``fd`` with a PML, 8 macro steps of 4 solver steps, pressure and velocity).
2. Train a small FNO stepper on it (``[model]`` / ``[train]`` of ``DEMO_EXPERIMENT``).
3. Evaluate it against the solver on the held-out test samples (per-sample error distribution,
   rollout, persistence baseline, frequency bands, lesion regions, speed), print the table and
   write ``OUT/evaluation/evaluation.{json,md}`` and figures.
4. Reconstruct a cell's refractive index by optical diffraction tomography with FDTD, with a field
   operator trained on the spot, and with Rytov (:mod:`training.demo_optics`, into
   ``OUT/reconstruction``), and print their errors against the truth and their times.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from training.data import generate
from training.demo_optics import run_optics_demo, table
from training.evaluation import evaluate_run, summary
from training.run import train_run
from training.simulation import simulate_acoustic

DEMO_CONFIG = {
    "grid": {"shape": [128, 128], "spacing": 2.5e-4},
    "medium": {"phantom": "breast", "seed": 0},
    "array": {"n_elements": 64},
    "source": {"kind": "element", "element": 0, "signal": "tone_burst", "frequency": 1.0e6, "cycles": 3.0},
    "simulation": {"scheme": "pstd", "pml_size": 20, "cfl": 0.3},
}

# The data and model of experiments/configs/acoustic_smoke.toml, trained longer (300 steps at a learning
# rate of 2e-3 instead of 200 at 1e-3, validated and checkpointed every 100 steps).
DEMO_EXPERIMENT = {
    "data": {"scenario": "acoustic_stepper", "num_samples": 64, "seed": 0, "shape": [32, 32], "spacing": 1e-4,
             "batch_size": 16, "phantom": {"kind": "breast", "lesion_rate": 0.05},
             "acoustic": {"scheme": "fd", "pml_size": 6, "save_every": 4, "n_frames": 8, "save_velocity": True}},
    "model": {"kind": "fno", "modes": [8, 8], "width": 16, "depth": 2},
    "train": {"steps": 300, "batch_size": 8, "lr": 2e-3, "warmup_steps": 20, "validate_every": 100,
              "checkpoint_every": 100},
}


def run_demo(out: Path, *, steps: int | None = None, simulate: bool = True, reconstruct: bool = True,
             progress: bool = True) -> dict[str, Any]:
    """Run steps 0-4 into ``out`` (``steps`` overrides both trainings' steps; ``simulate=False``
    skips step 0, ``reconstruct=False`` step 4); returns the evaluation result dict."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if simulate:
        print("[0/4] USCT shot with the reference solver")
        simulate_acoustic(DEMO_CONFIG, out / "simulation")
    print("[1/4] generating a small acoustic stepper dataset")
    generate(copy.deepcopy(DEMO_EXPERIMENT["data"]), out / "data", progress=progress)
    print("[2/4] training a small FNO stepper")
    result = train_run(copy.deepcopy(DEMO_EXPERIMENT), out / "data", out / "run", steps=steps, progress=progress)
    print(f"      {result.step} steps, best validation loss {result.best_val:.4g}")
    print("[3/4] evaluating against the solver")
    report = evaluate_run(out / "run", [out / "data"], out / "evaluation")
    print(summary(report))
    written = (f"{out}/evaluation/evaluation.md, rollout.png, worst_sample.png, error_histogram.png; "
               f"{out}/run/loss_curve.png, sample.png")
    if reconstruct:
        print("[4/4] optical diffraction tomography of a cell: FDTD, a field operator trained now, Rytov")
        optical = run_optics_demo(out / "reconstruction", steps=steps, progress=progress)
        cost = optical["cost"]
        print(f"      field operator: {cost['data_seconds']:.0f} s of data, {cost['train_seconds']:.0f} s of "
              "training; rel_error against the truth, seconds without compilation:")
        print(table(optical["rows"]))
        written += f"; {out}/reconstruction/reconstruction.md, reconstruction.png"
    print(f"done in {time.perf_counter() - t0:.0f} s: {written}")
    return report

