"""Reference surrogates, the loss ablation and the speed study (GPU script; ``--small`` for a CPU smoke run).

    uv run python experiments/train_reference.py            # GPU sizes (configs in experiments/configs)
    uv run python experiments/train_reference.py --small    # CPU smoke run, minutes

Steps (each skipped when its output exists, so a killed run continues where it stopped):

1. Datasets: ``acoustic_stepper_128`` with velocity stored (time reversal needs it), 20 macro
   steps and 5000 samples, ``maxwell_stepper_128``, ``maxwell_field_128`` and ``usct_128``, each
   with rare-lesion and OOD test sets (acoustic ones with the training ``dt``) (``--small``:
   32^2 / 40^2 versions with few samples).
2. Reference surrogates: the acoustic FNO stepper (all losses), the Maxwell TM stepper, the
   optical field operator (data + Helmholtz residual) and the USCT trace operator, each evaluated
   with :func:`training.evaluation.evaluate_run` on the held-out, rare-lesion and OOD sets.
3. Ablation of the stepper losses: data only, + time reversal, + wave residual, + unrolled.
4. Speed: same-grid ratios (from the evaluations), the stepper's break-even macro step against
   ``fd`` and ``pstd`` (batched), and equal-accuracy ratios: the cheapest solver setting that
   reaches the surrogate's error (stepper: ``pstd``/``fd`` with longer time steps over the
   same simulated time; field operator: shorter FDTD runs, ``settle_periods``), against the
   dataset's reference; trace operator: ``fd`` / ``pstd`` on the data grid and on a 2x coarser
   grid, at the data's CFL number and twice it).

Writes ``experiments/results/surrogates_<backend>[_small].{md,json}``; CPU outputs carry ``cpu`` in
their names and must not be read as GPU numbers.
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

from pdesurrogate.cli.train import train_run  # noqa: E402
from pdesurrogate.config import load_toml  # noqa: E402
from pdesurrogate.evaluation import time_call  # noqa: E402
from training.evaluation import evaluate_run  # noqa: E402
from pdesurrogate.surrogate import FieldOperator, Surrogate, TraceOperator, read_spec  # noqa: E402

CONFIGS = REPO / "experiments" / "configs"

ABLATION = {
    "data only": {"loss": {"data": 1.0}},
    "+ time reversal": {"loss": {"data": 1.0, "time_reversal": 0.1}},
    "+ residual": {"loss": {"data": 1.0, "time_reversal": 0.1, "residual": 0.1}},
    "+ unrolled": {"loss": {"data": 1.0, "time_reversal": 0.1, "residual": 0.1}, "unroll": 3},
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
                                "checkpoint_every": 50, "unroll": 3, "loss": {"data": 1.0, "time_reversal": 0.1}}
    optics = load_toml(CONFIGS / "maxwell_smoke.toml")
    optics["data"]["num_samples"] = 24
    optics["model"] = {"kind": "fno", "modes": [8, 8], "width": 16, "depth": 2}
    optics["train"] = {"steps": 100, "batch_size": 4, "lr": 2e-3, "warmup_steps": 10, "validate_every": 50,
                       "checkpoint_every": 50, "loss": {"data": 1.0, "residual": 0.01}}
    usct = {"data": {"scenario": "usct", "num_samples": 32, "batch_size": 8, "shape": [32, 32], "spacing": 2e-4,
                     "seed": 0, "phantom": {"kind": "breast"},
                     "acoustic": {"pml_size": 6, "duration": 8e-6, "n_elements": 16, "n_shots": 4, "ring_margin": 1,
                                  "frequency": 5e5}},
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
    stepper["train"] |= {"unroll": 3, "loss": {"data": 1.0, "time_reversal": 0.1, "residual": 0.1}}
    maxwell_stepper = load_toml(CONFIGS / "maxwell_stepper_128.toml")
    maxwell_stepper["data"]["optics"] |= {"n_frames": 20}  # the 20-step rollout target
    maxwell_stepper["train"] |= {"unroll": 3, "loss": {"data": 1.0, "time_reversal": 0.1}}
    optics = load_toml(CONFIGS / "maxwell_field_128.toml")
    optics["train"] |= {"loss": {"data": 1.0, "residual": 0.01}}
    usct = load_toml(CONFIGS / "usct_128.toml")
    return {"stepper": stepper, "maxwell_stepper": maxwell_stepper, "optics": optics, "usct": usct}


def test_sets(experiment: dict[str, Any], small: bool, dt: float | None) -> dict[str, dict[str, Any]]:
    """Rare-lesion and OOD test sets of an experiment's data: OOD skull (brain phantoms) or OOD
    contrast (others), twice the training shift; acoustic sets pinned to the training ``dt``."""
    out = {}
    ood = "ood_skull" if experiment["data"].get("phantom", {}).get("kind") == "brain" else "ood_contrast"
    for split, seed in (("rare_lesion", 1001), (ood, 3001)):
        data = copy.deepcopy(experiment["data"])
        data |= {"split": split, "seed": seed, "num_samples": 16 if small else 500}
        if split == "rare_lesion":
            data["phantom"] = data.get("phantom", {}) | {"lesion_rate": 0.5 if small else 0.2}
        else:
            data["ood_factor"] = 2.0
        if dt is not None:
            data["acoustic"] = dict(data["acoustic"]) | {"dt": dt}
            data["acoustic"].pop("cfl", None)
        out[split] = data
    return out


def ensure_dataset(data: dict[str, Any], path: Path) -> Path:
    from training.data import generate, open_dataset

    if not ((path / "manifest.json").is_file() and open_dataset(path).complete):
        generate(copy.deepcopy(data), path, progress=True)
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
    path.write_text(json.dumps(result, indent=1))
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


def stepper_equal_accuracy(run: Path, data: Path, evaluation: dict[str, Any], batch: int) -> dict[str, Any]:
    """Cheapest solver setting (scheme, time step multiple ``m``) whose final pressure after the
    full trajectory is within the surrogate's median rollout error of the dataset's reference."""
    from solvers import Grid, acoustic
    from training.data import open_dataset

    spec = read_spec(run)
    ds = open_dataset(data)
    idx = np.arange(*spec["val_indices"])[:batch]
    s = ds.read(idx)
    media = jnp.stack([jnp.asarray(s["sound_speed"]), jnp.asarray(s["density"])], 1)
    p0, ref = jnp.asarray(s["p0"]), s["pressure"][:, -1]
    n_macro = s["pressure"].shape[1] - 1
    total = n_macro * spec["macro_steps"]
    target = evaluation["rollout"]["median"][-1]
    grid = Grid(tuple(spec["shape"]), spec["spacing"])
    sur = Surrogate.load(run)
    sur_fn = jax.jit(jax.vmap(lambda m, p: sur.with_medium(m).run(sur.init(p), n_macro)[0]))
    t_sur = time_call(sur_fn, media, p0)
    candidates = []
    for scheme in ("fd", "pstd"):
        for m in (1, 2, 4, 8, 16):
            if total % m:
                continue
            dt = spec["solver_dt"] * m

            def run_solver(med, p, scheme=scheme, dt=dt, nsteps=total // m):
                st = acoustic.Stepper(grid, acoustic.Medium(sound_speed=med[0], density=med[1]), scheme=scheme,
                                      pml_size=spec["pml_size"], dt=dt)
                return st.run(st.init(p), nsteps).p

            try:
                fn = jax.jit(jax.vmap(run_solver))
                out = np.asarray(fn(media, p0))
            except ValueError as err:  # unstable time step for this scheme
                candidates.append({"scheme": scheme, "dt_multiple": m, "skipped": str(err)[:120]})
                continue
            err = float(np.median(np.linalg.norm((out - ref).reshape(len(idx), -1), axis=1)
                                  / np.linalg.norm(ref.reshape(len(idx), -1), axis=1)))
            candidates.append({"scheme": scheme, "dt_multiple": m, "median_rel_l2": err,
                               "seconds": time_call(fn, media, p0) if math.isfinite(err) else None})
    ok = [c for c in candidates if c.get("median_rel_l2", math.inf) <= target and c.get("seconds")]
    cheapest = min(ok, key=lambda c: c["seconds"]) if ok else None
    return {"surrogate_rollout_median_rel_l2": target, "surrogate_s": t_sur, "candidates": candidates,
            "cheapest": cheapest, "ratio": None if cheapest is None else cheapest["seconds"] / t_sur,
            "note": "solver settings scanned: scheme x time-step multiple on the data grid (not coarser grids)"}


def field_equal_accuracy(run: Path, data: Path, evaluation: dict[str, Any], batch: int) -> dict[str, Any]:
    """Cheapest FDTD run length whose phasors are within the field operator's median error of the
    dataset's reference phasors (run for ``optics_duration``): the same per-angle runs as the
    ``optics`` scenario, with the duration scaled by 0.2 ... 1."""
    from solvers import Grid, maxwell
    from training.data import open_dataset, phantoms, scenarios

    spec = read_spec(run)
    ds = open_dataset(data)
    cfg, o = ds.config, ds.config.optics
    idx = np.arange(*spec["val_indices"])[:batch]
    s = ds.read(idx, ["refractive_index", "field"])
    media = jnp.asarray(s["refractive_index"])
    op = FieldOperator.load(run)
    t_sur = time_call(jax.jit(jax.vmap(lambda m: op(m))), media)
    target = evaluation["rel_l2"]["median"]
    grid = Grid(tuple(cfg.shape), cfg.spacing)
    angles, _ = scenarios.optics_geometry(cfg)
    full = scenarios.optics_duration(cfg)
    candidates = []
    for fraction in (0.2, 0.3, 0.45, 0.7, 1.0):
        def fields(n, duration=fraction * full):
            medium = maxwell.Medium(permittivity=n**2, conductivity=jnp.zeros_like(n))
            out = []
            for angle in angles:
                src = maxwell.PlaneWave(wavelength=o.wavelength, angle=float(angle), ramp_cycles=scenarios.RAMP_CYCLES,
                                        background_permittivity=phantoms.WATER_INDEX**2)
                with jax.ensure_compile_time_eval():
                    res = maxwell.simulate(grid, medium, source=src, frequencies=[maxwell.C0 / o.wavelength],
                                           duration=duration, pml_size=o.pml_size, tfsf_margin=phantoms.TFSF_MARGIN)
                out.append(res.field[0])
            return jnp.stack(out)

        fn = jax.jit(jax.vmap(fields))
        out = np.asarray(fn(media))
        err = float(np.median(np.linalg.norm((out - s["field"]).reshape(len(idx), -1), axis=1)
                              / np.linalg.norm(s["field"].reshape(len(idx), -1), axis=1)))
        candidates.append({"duration_fraction": fraction, "duration_s": fraction * full, "median_rel_l2": err,
                           "seconds": time_call(fn, media, repeats=1)})
    ok = [c for c in candidates if c["median_rel_l2"] <= target]
    cheapest = min(ok, key=lambda c: c["seconds"]) if ok else None
    return {"surrogate_median_rel_l2": target, "surrogate_s": t_sur, "candidates": candidates, "cheapest": cheapest,
            "ratio": None if cheapest is None else cheapest["seconds"] / t_sur,
            "note": "solver settings scanned: FDTD run length (0.2-1 x the data's) on the data grid, not coarser grids"}


def trace_equal_accuracy(run: Path, data: Path, evaluation: dict[str, Any], batch: int) -> dict[str, Any]:
    """Cheapest acoustic solver setting whose USCT traces are within the trace operator's median
    error of the dataset's traces: ``fd`` (order 2, 4) and ``pstd`` on the data grid and on a 2x
    coarser grid (medium subsampled, absorbing layer of the same thickness; skipped where the ring
    would lie in it), at the data's CFL number and twice it (unstable settings are skipped), over
    the same simulated time; traces are
    interpolated linearly onto the data's time axis. Timed on the same batch as the operator."""
    from solvers import Grid, acoustic
    from training.data import open_dataset, phantoms, scenarios

    spec = read_spec(run)
    ds = open_dataset(data)
    cfg, a = ds.config, ds.config.acoustic
    idx = np.arange(*spec["val_indices"])[:batch]
    s = ds.read(idx, ["sound_speed", "density", "traces"])
    media = jnp.stack([jnp.asarray(s["sound_speed"]), jnp.asarray(s["density"])], 1)
    emitters = scenarios.usct_emitters(cfg)
    weights = jnp.asarray(np.eye(a.n_elements, dtype=np.float32)[emitters])  # (n_shots, n_elements)
    op = TraceOperator.load(run)
    t_sur = time_call(jax.jit(jax.vmap(lambda m: op.measure(m, emitters))), media)
    target = evaluation["rel_l2"]["median"]
    ring = scenarios.ring_elements(cfg)
    nt = s["traces"].shape[2]
    t_ref = np.arange(nt) * float(ds.manifest["constants"]["dt"])
    fastest = acoustic.Medium(sound_speed=phantoms.max_sound_speed(cfg), density=phantoms.WATER_DENSITY)
    cfl0 = phantoms.max_sound_speed(cfg) * a.dt / cfg.spacing if a.dt else a.cfl
    candidates = []
    for scheme, order in (("fd", 2), ("fd", 4), ("pstd", 4)):
        for coarsen in (1, 2):
            for cfl in (cfl0, 2 * cfl0):
                grid = Grid(tuple(n // coarsen for n in cfg.shape), cfg.spacing * coarsen)
                pml = -(-a.pml_size // coarsen)  # the same thickness in metres (rounded up)
                inner = (pml * grid.spacing, (min(grid.shape) - 1 - pml) * grid.spacing)
                if ring.min() <= inner[0] or ring.max() >= inner[1]:
                    continue  # the ring would lie in this grid's absorbing layer
                try:
                    dt, n_c = acoustic.time_axis(grid, fastest, a.duration, cfl=cfl, scheme=scheme, fd_order=order)
                except ValueError:
                    continue  # unstable at this CFL number
                pulse = scenarios.source_signal(cfg, np.arange(n_c) * dt)
                t_c = np.arange(n_c) * dt

                def traces(m, grid=grid, dt=dt, pulse=pulse, t_c=t_c, scheme=scheme, order=order, coarsen=coarsen,
                           pml=pml):
                    medium = acoustic.Medium(sound_speed=m[0, ::coarsen, ::coarsen], density=m[1, ::coarsen, ::coarsen])

                    def shot(w):  # one-hot element weights: the shots vmap like the usct scenario's
                        res = acoustic.simulate(grid, medium, duration=a.duration,
                                                sources=acoustic.PointSource(ring, w[:, None] * pulse[None, :]),
                                                sensors=ring, scheme=scheme, fd_order=order, pml_size=pml, dt=dt)
                        return jax.vmap(lambda col: jnp.interp(t_ref, t_c, col), 1, 1)(res.traces)

                    return jax.vmap(shot)(weights)

                fn = jax.jit(jax.vmap(traces))
                out = np.asarray(fn(media))
                ref = s["traces"].reshape(-1, *s["traces"].shape[2:])
                err = float(np.median(np.linalg.norm((out.reshape(ref.shape) - ref).reshape(len(ref), -1), axis=1)
                                      / np.linalg.norm(ref.reshape(len(ref), -1), axis=1)))
                candidates.append({"scheme": f"{scheme}{order if scheme == 'fd' else ''}", "coarsen": coarsen,
                                   "cfl": float(cfl), "steps": int(n_c), "median_rel_l2": err,
                                   "seconds": time_call(fn, media, repeats=1)})
    ok = [c for c in candidates if c["median_rel_l2"] <= target]
    cheapest = min(ok, key=lambda c: c["seconds"]) if ok else None
    return {"surrogate_median_rel_l2": target, "surrogate_s": t_sur, "candidates": candidates, "cheapest": cheapest,
            "ratio": None if cheapest is None else cheapest["seconds"] / t_sur,
            "note": "solver settings scanned: fd2 / fd4 / pstd x grid (data, 2x coarser) x CFL (data, 2x); "
                    "reference: the dataset's traces"}


# ----- report ----------------------------------------------------------------------------------------
def _row(name: str, r: dict[str, Any]) -> str:
    d, b = r["rel_l2"], r["baseline_rel_l2"]
    ro = r.get("rollout", {}).get("median", [float("nan")])[-1]
    tr = (r.get("time_reversal") or {}).get("median", float("nan"))
    return (f"| {name} | {d['median']:.4g} | {d['p95']:.4g} | {d['p99']:.4g} | {d['max']:.4g} | {ro:.4g} | {tr:.4g} | "
            f"{b['median']:.4g} |")


def markdown(results: dict[str, Any]) -> str:
    hdr = ["| model | median | p95 | p99 | max | rollout median (last step) | TR inconsistency median | "
           "baseline median |", "|---|---|---|---|---|---|---|---|"]
    lines = [f"# Reference surrogates ({results['label']})", "",
             f"Device: {results['device']}. Mode: {'--small (CPU smoke sizes)' if results['small'] else 'full'}. "
             f"Relative L2 per sample (stepper: one macro step, pressure; field operator: all phasors; "
             f"trace operator: all traces of one shot).", ""]
    lines += ["## Reference surrogates", "", *hdr]
    for name, r in results["reference"].items():
        lines.append(_row(name, r))
        for split, sr in r.get("splits", {}).items():
            lines.append(_row(f"{name} [{split}]", sr))
    lines += ["", "## Ablation (acoustic stepper, same data, steps and model)", "", *hdr]
    lines += [_row(name, r) for name, r in results["ablation"].items()]
    sp = results["speed"]
    lines += ["", "## Speed (ratio = solver s / surrogate s; > 1 means the surrogate is faster)", ""]
    for name, r in results["reference"].items():
        s = r.get("speed")
        if s:
            lines.append(f"- same-grid, {name} (batch {s['batch']}): forward x{s['forward']['ratio']:.3g}, "
                         f"forward+gradient x{s['forward_gradient']['ratio']:.3g}")
    be = sp["stepper_break_even"]
    lines.append(f"- stepper break-even macro step (batch {be['batch']}): fd {be['fd']['break_even_macro_step']:.3g} "
                 f"solver steps, pstd {be['pstd']['break_even_macro_step']:.3g} (trained k = {be['macro_steps_k']})")
    for key in ("stepper_equal_accuracy", "field_equal_accuracy", "trace_equal_accuracy"):
        ea = sp[key]
        if ea["ratio"] is None:
            ratio = "no scanned solver setting reached the surrogate's error"
        else:
            c = ea["cheapest"]
            setting = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items())
            ratio = f"x{ea['ratio']:.3g} against the cheapest solver setting within the surrogate's error ({setting})"
        lines.append(f"- equal-accuracy, {key.split('_')[0]} (forward): {ratio}; {ea['note']}")
    lines += ["", "## Not covered", "", *[f"- {n}" for n in results["not_covered"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="CPU smoke sizes")
    ap.add_argument("--work", default=None, help="datasets and runs (default: runs/reference[_small])")
    ap.add_argument("--results", default=str(REPO / "experiments" / "results"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    work = Path(args.work or REPO / "runs" / ("reference_small" if args.small else "reference"))
    experiments = small_experiments() if args.small else gpu_experiments()
    backend = jax.default_backend()
    label = f"{backend}{'_small' if args.small else ''}"
    stepper, optics, usct = experiments["stepper"], experiments["optics"], experiments["usct"]

    def with_test_sets(name: str, experiment: dict[str, Any], acoustic: bool) -> list[Path]:
        main_set = ensure_dataset(experiment["data"], work / name)
        dt = json.loads((main_set / "manifest.json").read_text())["constants"]["dt"] if acoustic else None
        return [main_set] + [ensure_dataset(d, work / f"{name}_{split}")
                             for split, d in test_sets(experiment, args.small, dt).items()]

    stepper_sets = with_test_sets("acoustic_stepper", stepper, True)
    optics_sets = with_test_sets("optics", optics, False)
    usct_sets = with_test_sets("usct", usct, True)
    maxwell_sets = with_test_sets("maxwell_stepper", experiments["maxwell_stepper"], False)
    data = {"stepper": stepper_sets[0], "optics": optics_sets[0], "usct": usct_sets[0],
            "maxwell_stepper": maxwell_sets[0]}

    reference = {}
    ref_run = ensure_run(stepper, data["stepper"], work / "runs" / "stepper")
    reference["acoustic stepper"] = evaluated(ref_run, stepper_sets)
    mx_run = ensure_run(experiments["maxwell_stepper"], data["maxwell_stepper"], work / "runs" / "maxwell_stepper")
    reference["Maxwell TM stepper"] = evaluated(mx_run, maxwell_sets)
    field_run = ensure_run(optics, data["optics"], work / "runs" / "optics")
    reference["optical field operator"] = evaluated(field_run, optics_sets)
    trace_run = ensure_run(usct, data["usct"], work / "runs" / "usct")
    reference["USCT trace operator"] = evaluated(trace_run, usct_sets)

    ablation = {}
    for i, (name, change) in enumerate(ABLATION.items()):
        exp = copy.deepcopy(stepper)
        exp["train"] = {k: v for k, v in exp["train"].items() if k not in ("loss", "unroll")} | change
        run = ensure_run(exp, data["stepper"], work / "runs" / f"ablation_{i}")
        ablation[name] = evaluated(run, [data["stepper"]])

    batch = 4 if args.small else 32
    speed = {"stepper_break_even": stepper_break_even(ref_run, data["stepper"], batch),
             "stepper_equal_accuracy": stepper_equal_accuracy(ref_run, data["stepper"],
                                                              reference["acoustic stepper"], batch),
             "field_equal_accuracy": field_equal_accuracy(field_run, data["optics"],
                                                          reference["optical field operator"], min(batch, 4)),
             "trace_equal_accuracy": trace_equal_accuracy(trace_run, data["usct"], reference["USCT trace operator"],
                                                          min(batch, 4))}
    results = {"label": label, "small": args.small, "backend": backend,
               "device": f"{backend} {jax.devices()[0].device_kind}", "reference": reference, "ablation": ablation,
               "speed": speed, "wall_s": time.perf_counter() - t0,
               "not_covered": ["Maxwell stepper: no physics residual (the wave residual is acoustic)",
                               "USCT trace operator: no physics loss (the Helmholtz residual needs grid phasors)"]}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"surrogates_{label}.json").write_text(json.dumps(results, indent=1))
    (out / f"surrogates_{label}.md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {out}/surrogates_{label}.md/.json in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
