"""Reference surrogates, the loss ablation and the speed study (GPU script; ``--small`` for a CPU smoke run).

    uv run python experiments/train_reference.py            # GPU sizes (configs in experiments/configs)
    uv run python experiments/train_reference.py --budget   # GPU grids, fewer samples and steps
    uv run python experiments/train_reference.py --small    # CPU smoke run, minutes

Stages (``--stages``, default all), each skipped when its output exists, so a killed run continues
where it stopped: stepper, optics (optical field operator), usct (USCT trace operator), maxwell
(Maxwell stepper), ablation, unet (a U-Net in place of the FNO of each reference surrogate, same
data, losses and steps: the baseline network of every table). Results of stages not run are kept
from an existing results file, so the stages can run in separate calls or on separate machines; no
stage needs another's trained runs, so a bare machine goes on with the stages still missing:

1. Datasets: ``acoustic_stepper_128`` with velocity stored (time reversal needs it), 20 macro
   steps and 5000 samples, ``maxwell_stepper_128``, ``maxwell_field_128`` and ``usct_128``, each
   with rare-lesion and OOD test sets (acoustic ones with the training ``dt``) (``--small``:
   32^2 / 40^2 versions with few samples).
2. Reference surrogates: the acoustic FNO stepper (all losses), the Maxwell TM stepper (data,
   time reversal, Yee residual), the optical field operator (data + Helmholtz residual) and the
   USCT trace operator, each evaluated with :func:`training.evaluation.evaluate_run` on the
   held-out, rare-lesion and OOD sets.
3. Ablation of the stepper losses, with the reference recipe's weights: data only, + time
   reversal, + wave residual (the GPU reference recipe), + unrolled over 3 macro steps (the
   ``--small`` recipe), and the wave residual's solver step as a fixed (solver-in-the-loop)
   target; and of the USCT trace operator's: data only, + source-receiver reciprocity.
4. Speed, measured in the stepper, optics and usct stages right after training, on the same
   device: same-grid ratios (from the evaluations), the stepper's break-even macro step against
   ``fd`` and ``pstd`` (batched), and equal-accuracy ratios: the cheapest solver setting (scheme and
   stencil, grid, time step; for the field operator, grid and FDTD run length) whose error against a fine-grid
   reference (2x finer grid, :mod:`training.refinement`) is at most the surrogate's against the
   same reference, on the same validation samples.

Writes ``experiments/results/surrogates_<backend>[_small|_budget].{md,json}`` (``--results``
elsewhere) after every stage, so a run cut short reports what it finished; CPU outputs carry
``cpu`` in their names and must not be read as GPU numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pdesurrogate.config import load_toml  # noqa: E402
from pdesurrogate.evaluation import time_call  # noqa: E402
from pdesurrogate.evaluation.metrics import relative_l2  # noqa: E402
from pdesurrogate.io import write_json, write_text  # noqa: E402
from training import refinement  # noqa: E402
from training.evaluation import evaluate_run  # noqa: E402
from training.physics import edge_mask  # noqa: E402
from training.run import train_run  # noqa: E402
from pdesurrogate.surrogate import FieldOperator, Surrogate, TraceOperator, read_spec  # noqa: E402

CONFIGS = REPO / "experiments" / "configs"

ABLATION = ("data only", "+ time reversal", "+ residual", "+ unrolled", "+ unrolled, solver-in-the-loop target")
ABLATION_UNROLL = 3  # macro steps of the ablation's unrolled rows


def stepper_ablation(reference: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows of the stepper loss ablation (``ABLATION``): the reference recipe's loss terms added
    one at a time with its own weights, then unrolled over ``ABLATION_UNROLL`` macro steps, then
    with the wave residual's solver step as a fixed (solver-in-the-loop) target. The row that
    trains as the reference recipe does ("+ residual" or "+ unrolled") is the reference run."""
    weights = reference["train"]["loss"]
    tr = {"data": 1.0, "time_reversal": weights["time_reversal"]}
    res = tr | {"residual": weights["residual"]}
    rows = [{"loss": {"data": 1.0}}, {"loss": tr}, {"loss": res}, {"loss": res, "unroll": ABLATION_UNROLL},
            {"loss": res, "unroll": ABLATION_UNROLL, "solver_target": True}]
    return dict(zip(ABLATION, rows))


# the USCT trace operator's physics loss: source-receiver reciprocity between its own shots
TRACE_ABLATION = {
    "USCT: data only": {"loss": {"data": 1.0}},
    "USCT: + reciprocity": {"loss": {"data": 1.0, "reciprocity": 0.1}},
}


def small_experiments() -> dict[str, dict[str, Any]]:
    """CPU smoke versions of the GPU experiments (same structure, tiny sizes)."""
    stepper = load_toml(CONFIGS / "acoustic_smoke.toml")
    stepper["model"] = {"kind": "fno", "modes": [8, 8], "width": 16, "depth": 2}
    stepper["train"] = {"steps": 150, "batch_size": 8, "lr": 2e-3, "warmup_steps": 15, "validate_every": 50,
                        "checkpoint_every": 50, "unroll": 3,
                        "loss": {"data": 1.0, "time_reversal": 0.1, "residual": 0.1}}
    maxwell_stepper = load_toml(CONFIGS / "maxwell_stepper_smoke.toml")
    maxwell_stepper["train"] = {"steps": 150, "batch_size": 8, "lr": 2e-3, "warmup_steps": 15, "validate_every": 50,
                                "checkpoint_every": 50, "unroll": 3,
                                "loss": {"data": 1.0, "time_reversal": 0.1, "residual": 0.1}}
    optics = load_toml(CONFIGS / "maxwell_smoke.toml")
    optics["data"] |= {"num_samples": 24, "spacing": 1.6e-8}  # the GPU config's resolution
    optics["model"] = {"kind": "fno", "modes": [8, 8], "width": 16, "depth": 2}
    optics["train"] = {"steps": 100, "batch_size": 4, "lr": 2e-3, "warmup_steps": 10, "validate_every": 50,
                       "checkpoint_every": 50, "loss": {"data": 1.0, "residual": 0.01}}
    usct = {"data": {"scenario": "usct", "num_samples": 32, "batch_size": 8, "shape": [32, 32], "spacing": 2e-4,
                     "seed": 0, "phantom": {"kind": "breast"},
                     "acoustic": {"scheme": "pstd", "cfl": 0.3, "pml_size": 6, "duration": 8e-6, "n_elements": 16,
                                  "n_shots": 4, "ring_margin": 1, "frequency": 5e5}},
            "model": {"kind": "fno", "modes": [8, 8], "width": 16, "depth": 3},
            "train": {"steps": 200, "batch_size": 4, "lr": 3e-3, "warmup_steps": 10, "validate_every": 50,
                      "checkpoint_every": 50}}
    return {"stepper": stepper, "maxwell_stepper": maxwell_stepper, "optics": optics, "usct": usct}


def gpu_experiments() -> dict[str, dict[str, Any]]:
    stepper = load_toml(CONFIGS / "acoustic_stepper_128.toml")
    # time reversal needs the velocity in the state; 20 macro steps for the 20-step rollout target;
    # 5000 samples keep the dataset near 20 GB with three channels
    stepper["data"] |= {"num_samples": 5000}
    stepper["data"]["acoustic"] |= {"save_velocity": True, "n_frames": 20}
    # time-reversal weight 1: on the 64^2 analogue it cut the inconsistency from 16% to 4.2% at an
    # unchanged one-step error (experiments/results/stepper_modes_cpu_s400*.md); no unrolling: there,
    # unrolling 3 macro steps was worse at equal steps in one-step error (1.78% against 1.13%), p99
    # and rollout (5.1% against 3.4%) (stepper_modes_cpu_u3.md); the ablation still measures it
    stepper["train"] |= {"loss": {"data": 1.0, "time_reversal": 1.0, "residual": 0.1}}
    maxwell_stepper = load_toml(CONFIGS / "maxwell_stepper_128.toml")
    maxwell_stepper["data"]["optics"] |= {"n_frames": 20}  # the 20-step rollout target
    maxwell_stepper["train"] |= {"loss": {"data": 1.0, "time_reversal": 1.0, "residual": 0.1}}
    optics = load_toml(CONFIGS / "maxwell_field_128.toml")
    optics["train"] |= {"loss": {"data": 1.0, "residual": 0.01}}
    usct = load_toml(CONFIGS / "usct_128.toml")
    return {"stepper": stepper, "maxwell_stepper": maxwell_stepper, "optics": optics, "usct": usct}


# (samples, training steps) of each experiment, sized for device calls of at most 10 minutes (see
# the README's GPU section): on an H200 the acoustic stepper trained at 7.7 steps/s with unroll 3,
# time reversal, residual, batch 32 and 2 windows, so its 3000 steps take at most about 390 s
# without unrolling, one call. The steppers get the most steps: their one-step targets are the
# tightest.
BUDGET = {"stepper": (1024, 3000), "maxwell_stepper": (512, 3000), "optics": (512, 1000), "usct": (512, 1000)}
BUDGET_ABLATION_STEPS = 300


def budget_experiments() -> dict[str, dict[str, Any]]:
    """The GPU experiments at their 128^2 grids with fewer samples and training steps, for short
    device sessions; results are labelled ``budget`` and are not the targets' sizes."""
    experiments = gpu_experiments()
    for name, (n, steps) in BUDGET.items():
        experiments[name]["data"]["num_samples"] = n
        experiments[name]["train"] |= {"steps": steps, "warmup_steps": 50, "validate_every": 250,
                                       "checkpoint_every": 250}
    return experiments


MODES = {"small": small_experiments, "budget": budget_experiments, "full": gpu_experiments}
TEST_SET_SAMPLES = {"small": 16, "budget": 128, "full": 500}


def test_sets(experiment: dict[str, Any], mode: str, dt: float | None) -> dict[str, dict[str, Any]]:
    """Rare-lesion and OOD test sets of an experiment's data: OOD skull (brain phantoms) or OOD
    contrast (others), twice the training shift; acoustic sets pinned to the training ``dt``."""
    out = {}
    ood = "ood_skull" if experiment["data"].get("phantom", {}).get("kind") == "brain" else "ood_contrast"
    for split, seed in (("rare_lesion", 1001), (ood, 3001)):
        data = copy.deepcopy(experiment["data"])
        data |= {"split": split, "seed": seed, "num_samples": TEST_SET_SAMPLES[mode]}
        if split == "rare_lesion":
            data["phantom"] = data.get("phantom", {}) | {"lesion_rate": 0.5 if mode == "small" else 0.2}
        else:
            data["ood_factor"] = 2.0
        if dt is not None:
            data["acoustic"] = dict(data["acoustic"]) | {"dt": dt}
            data["acoustic"].pop("cfl", None)
        out[split] = data
    return out


def dataset_ready(path: Path) -> bool:
    """Whether ``path`` holds a complete dataset (:func:`ensure_dataset` then generates nothing)."""
    from training.data import open_dataset

    return (path / "manifest.json").is_file() and open_dataset(path).complete


def newest_checkpoint(run: Path) -> int:
    """The training step of ``run``'s newest checkpoint (-1: none yet): it moves only when a call trains."""
    steps = [int(p.name) for p in (run / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps, default=-1)


def ensure_dataset(data: dict[str, Any], path: Path) -> Path:
    from training.data import generate
    from training.data.generate import default_workers

    if not dataset_ready(path):
        generate(copy.deepcopy(data), path, progress=True, workers=default_workers(data["num_samples"]))
    return path


def ensure_run(experiment: dict[str, Any], data: Path, run: Path) -> Path:
    if not (run / "evaluation.json").is_file():
        train_run(copy.deepcopy(experiment), data, run, resume=True, progress=True)
    return run


def evaluated(run: Path, data: list[Path]) -> dict[str, Any]:
    path = run / "evaluation.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = evaluate_run(run, data, run / "evaluation")
    write_json(path, result)  # atomic: a killed run never leaves a half-written file that reads as done
    return result


# ----- speed study ---------------------------------------------------------------------------------
def stepper_break_even(run: Path, data: Path, batch: int) -> dict[str, Any]:
    """Seconds per batched surrogate macro step and per batched solver step (fd and pstd) on the
    same grid; the break-even macro step is their ratio (a macro step spanning more solver steps
    than that makes the surrogate faster)."""
    from solvers import Grid, acoustic
    from training.data import open_dataset

    spec = read_spec(run)
    ds = open_dataset(data)
    s = ds.read(np.arange(batch))
    media = jnp.stack([jnp.asarray(s["sound_speed"]), jnp.asarray(s["density"])], 1)
    p0 = jnp.asarray(s["p0"])
    sur = Surrogate.load(run)
    grid = Grid(tuple(spec["shape"]), spec["spacing"])
    n = 8
    t_sur = time_call(jax.jit(jax.vmap(lambda m, p: sur.with_medium(m).run(sur.init(p), n))), media, p0) / n
    out = {"batch": batch, "surrogate_s_per_macro_step": t_sur, "macro_steps_k": spec["macro_steps"]}
    for scheme in ("fd", "pstd"):
        steps = 64

        def run_solver(m, p, scheme=scheme):
            st = acoustic.Stepper(grid, acoustic.Medium(sound_speed=m[0], density=m[1]), scheme=scheme,
                                  pml_size=spec["pml_size"], dt=spec["solver_dt"])
            return st.run(st.init(p), steps).p

        t = time_call(jax.jit(jax.vmap(run_solver)), media, p0) / steps
        out[scheme] = {"solver_s_per_step": t, "break_even_macro_step": t_sur / t}
    return out


# ----- equal accuracy: errors against a fine-grid reference ------------------------------------------
FINE = 2  # refinement factor of the fine-grid reference


def _median_error(out: Any, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Median per-sample relative L2 of ``out`` against ``ref`` (``(B, ...)``) over ``mask``'s nodes."""
    out = np.asarray(out)
    if mask is not None:
        out, ref = np.where(mask, out, 0), np.where(mask, ref, 0)
    return float(np.median(relative_l2(out, ref)))


def _scan(surrogate_error: float, data_error: float, surrogate_s: float, candidates: list[dict[str, Any]],
          reference: str, note: str) -> dict[str, Any]:
    """The cheapest candidate whose error against the reference is at most the surrogate's."""
    ok = [c for c in candidates if c.get("median_rel_l2", math.inf) <= surrogate_error and c.get("seconds")]
    cheapest = min(ok, key=lambda c: c["seconds"]) if ok else None
    return {"reference": reference, "surrogate_median_rel_l2": surrogate_error,
            "data_median_rel_l2": data_error, "surrogate_s": surrogate_s, "candidates": candidates,
            "cheapest": cheapest, "ratio": None if cheapest is None else cheapest["seconds"] / surrogate_s,
            "note": note}


# acoustic solver settings of the equal-accuracy scans: (scheme, fd order, fd stencil kind)
SOLVER_SETTINGS = (("fd", 2, "taylor"), ("fd", 4, "taylor"), ("fd", 8, "dispersion"), ("pstd", 4, "taylor"))


def _setting_name(scheme: str, order: int, kind: str) -> str:
    return "pstd" if scheme == "pstd" else f"fd{order}" + ("-disp" if kind == "dispersion" else "")


def _stable(grid: Any, fastest: Any, dt: float, scheme: str, order: int, kind: str = "taylor") -> bool:
    from solvers import acoustic

    try:
        acoustic.time_axis(grid, fastest, 0.0, dt=dt, scheme=scheme, fd_order=order, fd_coefficients=kind)
    except ValueError:
        return False
    return True


def stepper_equal_accuracy(run: Path, data: Path, batch: int) -> dict[str, Any]:
    """Cheapest acoustic solver setting whose pressure after the dataset's whole trajectory is as
    close to a fine-grid reference as the surrogate's rollout, on the same validation samples.

    Reference: ``pstd`` on a 2x finer grid at half the data's time step (medium linearly and ``p0``
    spectrally interpolated, absorbing layer of the same thickness). Candidates: ``SOLVER_SETTINGS``
    (``fd2``, ``fd4``, ``fd8-disp``, ``pstd``) on the data grid and a 2x coarser one, at 1-16x the data's time step where stable,
    over the same simulated time. Errors are taken outside the data's absorbing layer, on each
    candidate's own nodes.
    """
    from solvers import Grid, acoustic
    from training.data import open_dataset, phantoms

    spec = read_spec(run)
    ds = open_dataset(data)
    idx = np.arange(*spec["val_indices"])[:batch]
    s = ds.read(idx, ["sound_speed", "density", "p0", "pressure"])
    media = jnp.stack([jnp.asarray(s["sound_speed"]), jnp.asarray(s["density"])], 1)
    p0 = jnp.asarray(s["p0"])
    n_macro = s["pressure"].shape[1] - 1
    total, dt0 = n_macro * spec["macro_steps"], spec["solver_dt"]
    grid = Grid(tuple(spec["shape"]), spec["spacing"])
    fastest = acoustic.Medium(sound_speed=phantoms.max_sound_speed(ds.config), density=phantoms.WATER_DENSITY)
    mask = edge_mask(grid.shape, spec["pml_size"]).astype(bool)

    def solver(scheme: str, order: int, refine: int, coarsen: int, dt: float, nsteps: int, kind: str = "taylor"):
        g = refinement.regrid(grid, refine, coarsen)

        def one(med, p):
            med = refinement.resample(med, grid.ndim, refine, coarsen)
            p = refinement.resample(p, grid.ndim, refine, coarsen, method="spectral")
            st = acoustic.Stepper(g, acoustic.Medium(sound_speed=med[0], density=med[1]), scheme=scheme,
                                  fd_order=order, pml_size=refinement.cells(spec["pml_size"], refine, coarsen), dt=dt,
                                  fd_coefficients=kind)
            return refinement.data_nodes(st.run(st.init(p), nsteps).p, grid.ndim, refine)

        return jax.jit(jax.vmap(one))

    ref = np.asarray(solver("pstd", 4, FINE, 1, dt0 / FINE, total * FINE)(media, p0))
    sur = Surrogate.load(run)
    sur_fn = jax.jit(jax.vmap(lambda m, p: sur.with_medium(m).run(sur.init(p), n_macro)[0]))
    sur_err = _median_error(sur_fn(media, p0), ref, mask)
    candidates = []
    for scheme, order, kind in SOLVER_SETTINGS:
        for coarsen in (1, 2):
            for m in (1, 2, 4, 8, 16):
                g = refinement.regrid(grid, coarsen=coarsen)
                if total % m or not _stable(g, fastest, dt0 * m, scheme, order, kind):
                    continue
                fn = solver(scheme, order, 1, coarsen, dt0 * m, total // m, kind)
                err = _median_error(fn(media, p0), refinement.resample(ref, grid.ndim, coarsen=coarsen),
                                    refinement.resample(mask, grid.ndim, coarsen=coarsen))
                candidates.append({"scheme": _setting_name(scheme, order, kind), "coarsen": coarsen,
                                   "dt_multiple": m, "median_rel_l2": err,
                                   "seconds": time_call(fn, media, p0) if math.isfinite(err) else None})
    return _scan(sur_err, _median_error(s["pressure"][:, -1], ref, mask), time_call(sur_fn, media, p0), candidates,
                 "pstd on a 2x finer grid at half the time step",
                 "solver settings scanned: fd2 / fd4 / fd8-disp / pstd x grid (data, 2x coarser) x time step "
                 "(1-16x the data's, stable ones); final pressure after the whole trajectory, outside the "
                 "absorbing layer")


def field_equal_accuracy(run: Path, data: Path, batch: int) -> dict[str, Any]:
    """Cheapest FDTD run whose phasors are as close to a fine-grid reference as the field
    operator's, on the same validation samples.

    Reference: the ``optics`` scenario's per-angle runs on a 2x finer grid
    (:func:`training.data.scenarios.optics_runs`) for the data's duration. Candidates: the data
    grid and a 2x coarser one (index sampled at its nodes), each with 0.2-1x the data's duration.
    Errors are taken on each candidate's own nodes, outside the absorbing layers, where the
    candidate, the data grid and the reference agree on the total-field/scattered-field region
    (:func:`training.data.scenarios.optics_regions`; the coarse TFSF box may sit a coarse cell from
    the data's).
    """
    from training.data import open_dataset, scenarios
    from training.data.config import effective

    spec = read_spec(run)
    ds = open_dataset(data)
    cfg = effective(ds.config)
    idx = np.arange(*spec["val_indices"])[:batch]
    s = ds.read(idx, ["refractive_index", "field"])
    media = jnp.asarray(s["refractive_index"])
    full = scenarios.optics_duration(cfg)
    ndim = len(cfg.shape)
    on_data = scenarios.optics_regions(cfg)
    agreed = (on_data > 0) & (on_data == scenarios.optics_regions(cfg, refine=FINE))

    def comparable(coarsen: int) -> np.ndarray:
        own = scenarios.optics_regions(cfg, coarsen=coarsen)
        return np.asarray(refinement.resample(agreed, ndim, coarsen=coarsen)) & (
            own == refinement.resample(on_data, ndim, coarsen=coarsen))

    def fdtd(refine: int, duration: float, coarsen: int = 1):
        runs = scenarios.optics_runs(cfg, refine, duration, coarsen=coarsen)
        return jax.jit(jax.vmap(lambda n: runs(n)[0]))

    ref = np.asarray(fdtd(FINE, full)(media))
    op = FieldOperator.load(run)
    sur_fn = jax.jit(jax.vmap(lambda m: op(m)))
    candidates = []
    for coarsen in (1, 2):
        mask = comparable(coarsen)
        ref_c = np.asarray(refinement.resample(ref, ndim, coarsen=coarsen))
        for fraction in (0.2, 0.3, 0.45, 0.7, 1.0):
            try:
                fn = fdtd(1, fraction * full, coarsen)
                err = _median_error(fn(media), ref_c, mask)
            except ValueError as e:  # e.g. too few cells per wavelength on the coarse grid
                candidates.append({"coarsen": coarsen, "duration_fraction": fraction, "refused": str(e)})
                break
            candidates.append({"coarsen": coarsen, "duration_fraction": fraction, "median_rel_l2": err,
                               "seconds": time_call(fn, media)})
    mask = comparable(1)
    return _scan(_median_error(sur_fn(media), ref, mask), _median_error(s["field"], ref, mask),
                 time_call(sur_fn, media), candidates, "Yee FDTD on a 2x finer grid, the data's duration",
                 "solver settings scanned: grid (data, 2x coarser) x FDTD run length (0.2-1x the data's); errors "
                 "where every grid compared agrees on the total-field/scattered-field region")


def trace_equal_accuracy(run: Path, data: Path, batch: int) -> dict[str, Any]:
    """Cheapest acoustic solver setting whose USCT traces are as close to a fine-grid reference as
    the trace operator's, on the same validation samples (per-shot relative L2 over the traces of
    the non-emitting elements, :func:`training.data.scenarios.receiver_mask`).

    Reference: ``pstd`` on a 2x finer grid at half the data's time step (medium linearly
    interpolated, source signal scaled by :func:`training.refinement.point_source_gain`).
    Candidates: ``SOLVER_SETTINGS`` on the data grid and a 2x coarser one (skipped where
    the ring would lie in its absorbing layer), at the data's CFL number and twice it (stable
    ones), over the same simulated time; traces are interpolated linearly onto the data's time axis.
    """
    from solvers import Grid, acoustic
    from training.data import open_dataset, phantoms, scenarios

    spec = read_spec(run)
    ds = open_dataset(data)
    cfg, a = ds.config, ds.config.acoustic
    idx = np.arange(*spec["val_indices"])[:batch]
    s = ds.read(idx, ["sound_speed", "density", "traces"])
    media = jnp.stack([jnp.asarray(s["sound_speed"]), jnp.asarray(s["density"])], 1)
    emitters = scenarios.usct_emitters(cfg)
    ring = scenarios.ring_elements(cfg)
    dt0 = float(ds.manifest["constants"]["dt"])
    t_ref = np.arange(s["traces"].shape[2]) * dt0
    grid = Grid(tuple(cfg.shape), cfg.spacing)
    c_max = phantoms.max_sound_speed(cfg)
    fastest = acoustic.Medium(sound_speed=c_max, density=phantoms.WATER_DENSITY)

    def shots(scheme: str, order: int, refine: int, coarsen: int, dt: float, kind: str = "taylor"):
        runs, nt = scenarios.usct_runs(cfg, dt, scheme=scheme, fd_order=order, refine=refine, coarsen=coarsen,
                                       fd_coefficients=kind)
        t = np.arange(nt) * dt
        on_data_axis = jax.vmap(jax.vmap(lambda col: jnp.interp(t_ref, t, col), 1, 1))  # (S, nt, E) -> (S, nt0, E)
        return jax.jit(jax.vmap(lambda m: on_data_axis(runs(m))))

    keep = scenarios.receiver_mask(emitters, a.n_elements)[:, None, :]  # the emitter's own trace is left out

    def per_shot(x: Any) -> np.ndarray:
        return np.where(keep, np.asarray(x), 0.0).reshape(-1, *s["traces"].shape[2:])

    ref = per_shot(shots("pstd", 4, FINE, 1, dt0 / FINE)(media))
    op = TraceOperator.load(run)
    sur_fn = jax.jit(jax.vmap(lambda m: op.measure(m, emitters)))
    cfl0 = c_max * dt0 / cfg.spacing
    candidates = []
    for scheme, order, kind in SOLVER_SETTINGS:
        for coarsen in (1, 2):
            g = refinement.regrid(grid, coarsen=coarsen)
            pml = refinement.cells(a.pml_size, coarsen=coarsen) * g.spacing
            if ring.min() <= pml or ring.max() >= (min(g.shape) - 1) * g.spacing - pml:
                continue  # the ring would lie in this grid's absorbing layer
            for cfl in (cfl0, 2 * cfl0):
                dt = cfl * g.spacing / c_max
                if not _stable(g, fastest, dt, scheme, order, kind):
                    continue
                fn = shots(scheme, order, 1, coarsen, dt, kind)
                candidates.append({"scheme": _setting_name(scheme, order, kind), "coarsen": coarsen,
                                   "cfl": float(cfl), "median_rel_l2": _median_error(per_shot(fn(media)), ref),
                                   "seconds": time_call(fn, media)})
    return _scan(_median_error(per_shot(sur_fn(media)), ref), _median_error(per_shot(s["traces"]), ref),
                 time_call(sur_fn, media), candidates, "pstd on a 2x finer grid at half the time step",
                 "solver settings scanned: fd2 / fd4 / fd8-disp / pstd x grid (data, 2x coarser) x CFL (data, 2x)")


# ----- report ----------------------------------------------------------------------------------------
def _row(name: str, r: dict[str, Any]) -> str:
    d, b = r["rel_l2"], r["baseline_rel_l2"]
    ro = r.get("rollout", {}).get("median", [float("nan")])[-1]
    tr = (r.get("time_reversal") or r.get("reciprocity") or {}).get("median", float("nan"))
    return (f"| {name} | {d['median']:.4g} | {d['p95']:.4g} | {d['p99']:.4g} | {d['max']:.4g} | {ro:.4g} | {tr:.4g} | "
            f"{b['median']:.4g} |")


def _same_training(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two experiments train the same way: equal but for loss weights left at their defaults."""
    from pdesurrogate.config import to_dict
    from training.losses import LossWeights

    def filled(exp: dict[str, Any]) -> dict[str, Any]:
        return exp | {"train": exp["train"] | {"loss": to_dict(LossWeights()) | exp["train"].get("loss", {})}}

    return filled(a) == filled(b)


def _canonical(rows: dict[str, Any], order: list[str]) -> list[tuple[str, Any]]:
    """``rows``' items in ``order`` first (results merged from JSON come back sorted by name)."""
    return sorted(rows.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def markdown(results: dict[str, Any]) -> str:
    hdr = ["| model | median | p95 | p99 | max | rollout median (last step) | TR (steppers) / reciprocity (traces) "
           "inconsistency median | baseline median |", "|---|---|---|---|---|---|---|---|"]
    lines = [f"# Reference surrogates ({results['label']})", "",
             f"Device of the last run: {results['device']} (each stage's: Stages, below). "
             f"Mode: {MODE_TEXT[results['mode']]}. "
             f"Relative L2 per sample (stepper: one macro step, pressure; field operator: all phasors; "
             f"trace operator: the traces of one shot, the emitter's own left out).", ""]
    reference = _canonical(results["reference"], [n for v in REFERENCE.values() for n in (v[0], unet_name(v[0]))])
    lines += ["## Reference surrogates", "", *hdr]
    for name, r in reference:
        lines.append(_row(name, r))
        for split, sr in sorted(r.get("splits", {}).items()):
            lines.append(_row(f"{name} [{split}]", sr))
    lines += ["", "## Speed (ratio = solver s / surrogate s; > 1 means the surrogate is faster)", ""]
    for name, r in reference:
        s = r.get("speed")
        if s:
            lines.append(f"- same-grid, {name} (batch {s['batch']}): forward x{s['forward']['ratio']:.3g}, "
                         f"forward+gradient x{s['forward_gradient']['ratio']:.3g}")
    sp = results["speed"]
    be = sp.get("stepper_break_even")
    if be:
        lines.append(f"- stepper break-even macro step (batch {be['batch']}): fd "
                     f"{be['fd']['break_even_macro_step']:.3g} solver steps, pstd "
                     f"{be['pstd']['break_even_macro_step']:.3g} (trained k = {be['macro_steps_k']})")
    for key in [k for k in ("stepper_equal_accuracy", "field_equal_accuracy", "trace_equal_accuracy") if k in sp]:
        ea = sp[key]
        if ea["ratio"] is None:
            ratio = "no scanned solver setting reached the surrogate's error"
        else:
            c = ea["cheapest"]
            setting = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items())
            ratio = f"x{ea['ratio']:.3g} against the cheapest solver setting within the surrogate's error ({setting})"
        lines.append(f"- equal-accuracy, {key.split('_')[0]} (forward): {ratio}. Median rel L2 against the "
                     f"reference ({ea['reference']}): surrogate {ea['surrogate_median_rel_l2']:.3g}, the data's "
                     f"own solver {ea['data_median_rel_l2']:.3g}; {ea['note']}")
    lines += ["", "## Ablation (same data, steps and model within each surrogate: the acoustic stepper's losses, "
              "then the USCT trace operator's)", "", *hdr]
    lines += [_row(name, r) for name, r in _canonical(results["ablation"], list(ABLATION) + list(TRACE_ABLATION))]
    lines += ["", "## Not covered", "", *[f"- {n}" for n in results["not_covered"]], ""]
    if results.get("stage_seconds"):
        devices = results.get("stage_device", {})
        lines += ["## Stages (wall time with data and compilation of the call that trained each; where and when "
                  "it ran)", "",
                  "| stage | wall s | device, date |", "|---|---|---|",
                  *[f"| {k} | {v:.0f} | {devices.get(k, 'not recorded')} |"
                    for k, v in results["stage_seconds"].items()], ""]
    return "\n".join(lines)


MODE_TEXT = {"small": "--small (CPU smoke sizes)", "full": "full",
             "budget": f"--budget (GPU grids, fewer samples, {BUDGET['stepper'][1]} training steps for the steppers, "
                       f"{BUDGET['optics'][1]} for the field operators, {BUDGET_ABLATION_STEPS} "
                       "for the ablation; not the targets' sizes)"}
NOT_COVERED = ["USCT trace operator: no Helmholtz residual (it needs grid phasors; the operator predicts time "
               "traces at the ring); its physics loss is source-receiver reciprocity (ablation)"]


STAGES = ("stepper", "optics", "usct", "maxwell", "ablation", "unet")
# stage: (results name, experiment key = run directory, dataset directory, acoustic (dt-pinned test sets))
REFERENCE = {"stepper": ("acoustic stepper", "stepper", "acoustic_stepper", True),
             "optics": ("optical field operator", "optics", "optics", False),
             "usct": ("USCT trace operator", "usct", "usct", True),
             "maxwell": ("Maxwell TM stepper", "maxwell_stepper", "maxwell_stepper", False)}


# the speed study of each reference stage: results["speed"] key -> measure(run, training set, batch)
SPEED = {"stepper": {"stepper_break_even": stepper_break_even, "stepper_equal_accuracy": stepper_equal_accuracy},
         "optics": {"field_equal_accuracy": field_equal_accuracy},
         "usct": {"trace_equal_accuracy": trace_equal_accuracy}}
# stage unet: every reference surrogate again with a U-Net (same data, losses and steps), so that
# each table compares the FNO with another network, not only with the trivial baseline
UNET = {"small": {"kind": "unet", "width": 16, "levels": 3}, "budget": {"kind": "unet", "width": 32, "levels": 4},
        "full": {"kind": "unet", "width": 32, "levels": 4}}
UNET_SUFFIX = ", U-Net baseline"


def unet_name(name: str) -> str:
    return name + UNET_SUFFIX


def stage_done(results: dict[str, Any], stage: str) -> bool:
    """Whether ``results`` (a results file's content) holds everything ``stage`` writes."""
    if stage in REFERENCE:
        return (REFERENCE[stage][0] in results.get("reference", {})
                and all(key in results.get("speed", {}) for key in SPEED.get(stage, {})))
    if stage == "unet":
        return all(unet_name(name) in results.get("reference", {}) for name, *_ in REFERENCE.values())
    return all(name in results.get("ablation", {}) for name in (*ABLATION, *TRACE_ABLATION))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sizes = ap.add_mutually_exclusive_group()
    sizes.add_argument("--small", action="store_true", help="CPU smoke sizes")
    sizes.add_argument("--budget", action="store_true", help="GPU grids, fewer samples and steps (short device calls)")
    ap.add_argument("--work", default=None, help="datasets and runs (default: runs/reference[_<mode>])")
    ap.add_argument("--results", default=str(REPO / "experiments" / "results"))
    ap.add_argument("--stages", default=",".join(STAGES),
                    help=f"comma-separated stages to run, of {','.join(STAGES)} (default: all); results of the "
                         "other stages are kept from an existing results file, so stages can run on different "
                         "machines; a stage trains the runs it needs if they are missing")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip the stages whose results the existing results file already holds (a second "
                         "device call continues with what the first did not finish)")
    args = ap.parse_args(argv)
    stages = [st for st in args.stages.split(",") if st]
    if not stages or any(st not in STAGES for st in stages):
        raise ValueError(f"stages must be a comma-separated subset of {','.join(STAGES)}, got {args.stages!r}")
    mode = "small" if args.small else "budget" if args.budget else "full"
    t0 = time.perf_counter()
    work = Path(args.work or REPO / "runs" / ("reference" if mode == "full" else f"reference_{mode}"))
    experiments = MODES[mode]()
    backend = jax.default_backend()
    label = backend if mode == "full" else f"{backend}_{mode}"
    out = Path(args.results)
    previous = out / f"surrogates_{label}.json"
    results: dict[str, Any] = {"label": label, "mode": mode, "backend": backend,
                               "device": f"{backend} {jax.devices()[0].device_kind}", "reference": {},
                               "ablation": {}, "speed": {}, "stage_seconds": {}, "stage_device": {},
                               "not_covered": NOT_COVERED}
    if previous.is_file():  # keep what earlier runs (maybe on another machine) measured
        old = json.loads(previous.read_text())
        for key in ("reference", "ablation", "speed", "stage_seconds", "stage_device"):
            results[key] |= old.get(key, {})

    def save() -> None:  # after every stage, so a run cut short still reports what it finished
        results["wall_s"] = time.perf_counter() - t0
        write_json(out / f"surrogates_{label}.json", results)
        write_text(out / f"surrogates_{label}.md", markdown(results))

    built: list[Path] = []  # the datasets generated and the runs trained by this call

    def dataset(data: dict[str, Any], path: Path) -> Path:
        before = dataset_ready(path)
        ensure_dataset(data, path)
        if not before and dataset_ready(path):
            built.append(path)
        return path

    def run_of(experiment: dict[str, Any], data: Path, run: Path) -> Path:
        before = newest_checkpoint(run)
        ensure_run(experiment, data, run)
        if newest_checkpoint(run) != before:
            built.append(run)
        return run

    def main_dataset(stage: str) -> Path:
        """The training dataset of the reference surrogate of ``stage``, generated only if missing."""
        _, key, data_dir, _ = REFERENCE[stage]
        return dataset(experiments[key]["data"], work / data_dir)

    def datasets(stage: str) -> list[Path]:
        """The datasets of the reference surrogate of ``stage`` (main, then rare-lesion and OOD test
        sets), each generated only if missing."""
        _, key, data_dir, acoustic = REFERENCE[stage]
        main_set = main_dataset(stage)
        dt = json.loads((main_set / "manifest.json").read_text())["constants"]["dt"] if acoustic else None
        return [main_set] + [dataset(d, work / f"{data_dir}_{split}")
                             for split, d in test_sets(experiments[key], mode, dt).items()]

    def trained(stage: str) -> tuple[list[Path], Path]:
        """The datasets and the trained run of the reference surrogate of ``stage`` (trained only if missing)."""
        key = REFERENCE[stage][1]
        sets = datasets(stage)
        return sets, run_of(experiments[key], sets[0], work / "runs" / key)

    batch = 4 if mode == "small" else 32
    speed_batch = {"stepper": batch, "optics": min(batch, 4), "usct": min(batch, 4)}
    if args.skip_done:
        done = [st for st in stages if stage_done(results, st)]
        if done:
            print(f"skipping stages with results in {previous}: {', '.join(done)}", flush=True)
        stages = [st for st in stages if st not in done]
    for stage in (st for st in STAGES if st in stages):
        started, built_before = time.perf_counter(), len(built)
        if stage in REFERENCE:
            sets, run = trained(stage)
            results["reference"][REFERENCE[stage][0]] = evaluated(run, sets)
            save()
            for key, measure in SPEED.get(stage, {}).items():  # on the device that trained it, while the run is here
                results["speed"][key] = measure(run, sets[0], speed_batch[stage])
                save()
        elif stage == "unet":
            for ref_stage, (name, key, *_) in REFERENCE.items():
                sets = datasets(ref_stage)
                exp = copy.deepcopy(experiments[key]) | {"model": dict(UNET[mode])}
                results["reference"][unet_name(name)] = evaluated(run_of(exp, sets[0], work / "runs" / f"unet_{key}"),
                                                                  sets)
                save()
        else:  # ablation
            for key, table, prefix in (("stepper", stepper_ablation(experiments["stepper"]), "ablation_"),
                                       ("usct", TRACE_ABLATION, "ablation_usct_")):
                # the reference run is needed (and trained if missing) only by a row that trains as it does,
                # so a later device session can run this stage without training the reference surrogates again
                main_set = main_dataset(key)
                for i, (name, change) in enumerate(table.items()):
                    exp = copy.deepcopy(experiments[key])
                    exp["train"] = {k: v for k, v in exp["train"].items() if k not in ("loss", "unroll")} | change
                    if mode == "budget":
                        exp["train"]["steps"] = BUDGET_ABLATION_STEPS
                    # a row with the reference surrogate's own settings is that run, not a second training
                    same = _same_training(exp, experiments[key])
                    run = trained(key)[1] if same else run_of(exp, main_set, work / "runs" / f"{prefix}{i}")
                    results["ablation"][name] = evaluated(run, [main_set])
                    save()
        seconds = time.perf_counter() - started
        if len(built) > built_before or stage not in results["stage_seconds"]:
            results["stage_seconds"][stage] = seconds
            results["stage_device"][stage] = f"{results['device']}, {time.strftime('%Y-%m-%d')}"
        else:  # e.g. a speed-only rerun: the recorded time stays that of the call that trained the stage
            print(f"stage {stage}: {seconds:.0f} s, nothing trained or generated; its recorded wall time "
                  f"{results['stage_seconds'][stage]:.0f} s stays", flush=True)
        save()
    save()  # also when every stage was skipped
    print(markdown(results))
    print(f"wrote {out}/surrogates_{label}.md/.json in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
