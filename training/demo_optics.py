"""The last stage of ``pdesurrogate demo``: optical diffraction tomography of one cell with FDTD, a
field operator trained on the spot, and Rytov, each against the truth.

1. Generate a small optics dataset (``DEMO_OPTICS["data"]``: cell phantoms in water, some blurred
   and textured like the iterates of an inversion, 8 plane-wave illuminations, 48 x 48 at 25 nm).
2. Train a small :class:`~pdesurrogate.surrogate.FieldOperator` on it (``[model]`` / ``[train]``).
3. Draw a cell the dataset does not hold, simulate its measurement with FDTD on a grid twice as
   fine (index linearly interpolated) plus 40 dB noise, and reconstruct it with Rytov, the FDTD
   inversion and the surrogate inversion, writing ``OUT/reconstruction.{md,json,png}``. (The
   hybrids are measured by ``experiments/bench_inversion_optics.py``: their programs would add
   about a minute of compilation here.)
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from pdesurrogate.inversion import optics
from pdesurrogate.io import save_figure, subplots, write_json, write_text
from pdesurrogate.surrogate import FieldOperator
from solvers import Grid
from training import refinement
from training.data import generate, phantoms
from training.data.config import DataConfig, as_config
from training.run import train_run

DEMO_OPTICS = {
    "data": {"scenario": "optics", "num_samples": 192, "seed": 0, "shape": [48, 48], "spacing": 2.5e-8,
             "batch_size": 16,
             "phantom": {"kind": "cell", "n_cells": [1, 2], "n_inclusions": [1, 4], "texture": 0.003,
                         "smoothing": [0.0, 2.0]},
             "optics": {"wavelength": 5e-7, "n_angles": 8, "pml_size": 6}},
    "model": {"kind": "fno", "modes": [12, 12], "width": 24, "depth": 3},
    "train": {"steps": 300, "batch_size": 8, "lr": 2e-3, "warmup_steps": 20, "validate_every": 100,
              "checkpoint_every": 100},
}
INVERSION = {"iterations": 10, "tv": 3.0, "positive": True}  # shared by the FDTD and surrogate runs
SNR_DB = 40.0
DETECTOR_BEYOND = 2e-7  # m: detector line beyond the recording line


def acquisition(config: DataConfig) -> optics.Acquisition:
    """The ODT acquisition of an ``optics`` dataset's geometry (its grid, wavelength, angles, absorbing
    layer and TF-SF margin), recording one point per cell, detector ``DETECTOR_BEYOND`` further out."""
    grid = Grid(tuple(config.shape), config.spacing)
    o = config.optics
    angles = np.arange(o.n_angles) * (2 * np.pi / o.n_angles)
    kw = {"pml_size": o.pml_size, "tfsf_margin": phantoms.TFSF_MARGIN}
    probe = optics.Acquisition(grid, o.wavelength, phantoms.WATER_INDEX, [0.0], [0.0], 0.0, **kw)
    return optics.Acquisition(grid, o.wavelength, phantoms.WATER_INDEX, angles, optics.recording_offsets(probe),
                              probe.aperture + DETECTOR_BEYOND, **kw)


def held_out_cell(config: DataConfig) -> np.ndarray:
    """A sharp cell phantom (no blur) the dataset does not hold (index ``num_samples``): ``shape``, float64."""
    sharp = dataclasses.replace(config, phantom=dataclasses.replace(config.phantom, smoothing=None))
    n = phantoms.phantom(sharp, config.seed, config.num_samples).medium["refractive_index"].astype(np.float64)
    return np.where(np.abs(n - phantoms.WATER_INDEX) > 1e-6, n, phantoms.WATER_INDEX)  # float32 water is 1.333


def measure(acq: optics.Acquisition, truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Observed ``u / u_inc`` ``(n_angles, n_det)``: FDTD on the 2x finer grid (``truth`` linearly
    interpolated) plus complex noise ``SNR_DB`` below the scattered power."""
    fine = refinement.resample(jnp.asarray(truth, jnp.float32), 2, 2)
    return optics.add_noise(optics.simulate(optics.refined(acq, 2), fine), SNR_DB, np.random.default_rng(seed))


def reconstruct(acq: optics.Acquisition, observed: np.ndarray, truth: np.ndarray, run_dir: Path,
                iterations: int) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Rytov, FDTD and surrogate reconstructions: ``(rows, images)``; a row holds
    ``rel_error``, ``seconds`` (compilation excluded), ``compile_seconds``, ``solver_calls``,
    ``surrogate_calls``; images are ``grid.shape`` indices."""
    t = time.perf_counter()
    n_rytov = optics.rytov(acq, observed)
    rows = {"rytov": {"rel_error": optics.rel_error(acq, n_rytov, truth), "seconds": time.perf_counter() - t,
                      "compile_seconds": 0.0, "solver_calls": 0, "surrogate_calls": 0}}
    images = {"rytov": n_rytov}
    operator = FieldOperator.load(run_dir)
    for label, forward in (("FDTD", "solver"), ("surrogate", "surrogate")):
        res = optics.invert(acq, observed, forward=forward, surrogate=operator, truth=truth, progress=False,
                            **(INVERSION | {"iterations": iterations}))
        last = res.history[-1]
        rows[label] = {"rel_error": last["rel_error"]} | {k: last[k] for k in (
            "seconds", "compile_seconds", "solver_calls", "surrogate_calls")}
        images[label] = res.refractive_index
    return rows, images


def figure(truth: np.ndarray, images: dict[str, np.ndarray], rows: dict[str, dict[str, float]], path: Path) -> None:
    """Top: the truth and each reconstruction (same colour scale); bottom: each one's error ``n - truth``."""
    names = list(images)
    fig, axes = subplots(2, len(names) + 1, figsize=(2.6 * (len(names) + 1), 5.0), squeeze=False)
    lo, hi = phantoms.WATER_INDEX, max(float(truth.max()), phantoms.WATER_INDEX + 1e-3)
    span = max(float(np.abs(images[m] - truth).max()) for m in names)
    axes[0][0].imshow(truth, vmin=lo, vmax=hi, origin="lower", cmap="viridis")
    axes[0][0].set_title("truth", fontsize=9)
    axes[1][0].axis("off")
    for c, m in enumerate(names, start=1):
        axes[0][c].imshow(images[m], vmin=lo, vmax=hi, origin="lower", cmap="viridis")
        axes[0][c].set_title(f"{m}: rel_error {rows[m]['rel_error']:.3f}", fontsize=9)
        axes[1][c].imshow(images[m] - truth, vmin=-span, vmax=span, origin="lower", cmap="RdBu_r")
        axes[1][c].set_title(f"{m} - truth ({rows[m]['seconds']:.1f} s)", fontsize=9)
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, path)


def table(rows: dict[str, dict[str, float]]) -> str:
    """The markdown table: rel_error, its ratio to Rytov's, seconds, compile seconds and calls."""
    base = rows["rytov"]["rel_error"]
    lines = ["| method | rel_error | / Rytov's | seconds | compile s | solver / surrogate calls |",
             "|---|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['rel_error']:.3f} | {r['rel_error'] / base:.2f} | {r['seconds']:.1f} | "
                     f"{r['compile_seconds']:.1f} | {r['solver_calls']} / {r['surrogate_calls']} |")
    return "\n".join(lines)


def markdown(rows: dict[str, dict[str, float]], cost: dict[str, float], config: DataConfig, steps: int,
             iterations: int) -> str:
    """The summary page of the stage."""
    g, o = config, config.optics
    return "\n".join([
        "# Demo: optical diffraction tomography of one cell", "",
        f"Field operator: {g.num_samples} FDTD samples ({g.shape[0]}^2 at {g.spacing * 1e9:.0f} nm, "
        f"{o.n_angles} illuminations, {o.wavelength * 1e9:.0f} nm in water) in {cost['data_seconds']:.0f} s, "
        f"{steps} training steps in {cost['train_seconds']:.0f} s. The cell is one the dataset does not "
        f"hold; its measurement is FDTD on a grid twice as fine plus {SNR_DB:.0f} dB noise. FDTD and "
        f"surrogate inversions: {iterations} L-BFGS iterations, TV {INVERSION['tv']:g}, n >= n_water. "
        "rel_error = ||n - n_true|| / ||n_true - n_water||; seconds exclude compilation.", "",
        table(rows), "", "![reconstruction](reconstruction.png)", ""])


def run_optics_demo(out: Path, *, steps: int | None = None, num_samples: int | None = None,
                    iterations: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Generate, train and reconstruct into ``out`` (``data/``, ``run/``, ``reconstruction.*``).

    Args:
        out: output directory.
        steps: training steps (default ``DEMO_OPTICS["train"]["steps"]``).
        num_samples: dataset size (default ``DEMO_OPTICS["data"]["num_samples"]``).
        iterations: inversion iterations (default ``INVERSION["iterations"]``).
        progress: progress bars.

    Returns:
        ``{"rows": {method: row}, "cost": {"data_seconds", "train_seconds"}}`` (see :func:`reconstruct`).
    """
    experiment = copy.deepcopy(DEMO_OPTICS)
    if num_samples is not None:
        experiment["data"]["num_samples"] = num_samples
    iterations = INVERSION["iterations"] if iterations is None else iterations
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    generate(copy.deepcopy(experiment["data"]), out / "data", progress=progress)
    cost = {"data_seconds": time.perf_counter() - t}
    t = time.perf_counter()
    result = train_run(experiment, out / "data", out / "run", steps=steps, progress=progress)
    cost["train_seconds"] = time.perf_counter() - t
    config = as_config(experiment["data"])
    acq = acquisition(config)
    truth = held_out_cell(config)
    rows, images = reconstruct(acq, measure(acq, truth), truth, out / "run", iterations)
    figure(truth, images, rows, out / "reconstruction.png")
    write_json(out / "reconstruction.json", {"rows": rows, "cost": cost, "steps": result.step,
                                             "iterations": iterations})
    write_text(out / "reconstruction.md", markdown(rows, cost, config, result.step, iterations))
    return {"rows": rows, "cost": cost}
