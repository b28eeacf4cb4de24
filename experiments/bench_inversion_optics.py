"""Optical diffraction tomography benchmark: FDTD inversion against Rytov and Rytov + TV.

No inverse crime: the observed fields come from FDTD on a grid twice as fine (the phantom drawn on
it; the reconstruction grid's truth is the fine phantom at the coarse nodes), with complex white
noise 40 dB below the mean power of the scattered ratio ``u / u_inc - 1``. Sets:

- ``cells``: cell/organoid phantoms (``training.data.phantoms`` kind ``cell``), contrast 1;
- ``rare_lesion``: the same family, each with one small ball of 8% more excess index (3-5 cells
  across), a feature the field operator's training media never hold;
- ``cells_2x``: the same family at twice the contrast (strong scattering; out of the field
  operator's distribution);
- ``bead``: a polystyrene bead (n = 1.59) in water (1.333), several diameters (strong scattering).

Per method and set: median / p95 / max ``rel_error``, RMSE of Delta n inside the object, the mean
index per true-index band (the cell phantom has no nucleus/cytoplasm labels, so its bands stand in:
cytoplasm 1.35-1.36, nucleus and membrane 1.36-1.38, organelles 1.38-1.40), seconds (compilation
separate: the programs compile once per acquisition and later cases reuse them, so it is reported
once), solver and surrogate calls, and for each iterative method the median seconds to reach the
FDTD inversion's median error of the set (within 5%), Rytov's and Rytov + TV's (with how many cases
reached it).

With ``--surrogate RUN_DIR`` (a field operator trained on this geometry,
``experiments/configs/optics_64_small.toml``) four more rows: the surrogate alone, the hybrid
``correct`` (the surrogate corrected by FDTD every ``REFRESH`` iterations, in a trust region) and ``switch``
(``SWITCH_SURROGATE`` surrogate iterations, then ``SWITCH_SOLVER`` FDTD ones); each set then gets the
hybrids' speed-up over the FDTD inversion and, with ``--data-report`` (the JSON of
``pdesurrogate generate --json``), the break-even number of reconstructions: data and training
seconds over the seconds each reconstruction saves.

    uv run python experiments/bench_inversion_optics.py --small
    uv run python experiments/bench_inversion_optics.py --small --surrogate RUN_DIR --data-report REPORT.json

``--small`` (CPU): 64^2 at 25 nm (a field of view 0.48 um across), 8 angles; the output says what
ran. Writes ``experiments/results/inversion_optics_cpu.{md,json}`` and a PNG.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from pdesurrogate.inversion import optics
from pdesurrogate.io import save_figure, subplots, write_json, write_text
from solvers import Grid
from training.data import phantoms
from training.data.config import DataConfig, OpticsConfig, PhantomConfig

RESULTS = Path(__file__).resolve().parent / "results"
LAM, NB, BEAD = 5e-7, phantoms.WATER_INDEX, 1.59
SNR_DB = 40.0
TV = 3.0  # one TV weight for every regularised method (each misfit starts near 1), not tuned
BANDS = {"cytoplasm 1.35-1.36": (1.35, 1.36), "nucleus+membrane 1.36-1.38": (1.36, 1.38),
         "organelles 1.38-1.40": (1.38, 1.40)}


@dataclasses.dataclass(frozen=True)
class Scale:
    n: int  # coarse grid cells per axis
    spacing: float  # m
    n_angles: int
    cells: int  # in-distribution cell phantoms
    rare_cells: int  # cells with a rare lesion
    strong_cells: int  # cells at twice the contrast
    bead_diameters: tuple[float, ...]  # m
    iterations: int
    max_index: float = 1.6


SMALL = Scale(n=64, spacing=2.5e-8, n_angles=8, cells=16, rare_cells=3, strong_cells=3,
              bead_diameters=(2.5e-7, 4.5e-7), iterations=12)
# hybrid correct: FDTD refresh every REFRESH iterations, CORRECT_ITERATIONS in all, trust region of initial
# half-width TRUST_RADIUS (index units; without one the corrected model's minimiser jumps to the bounds)
REFRESH, CORRECT_ITERATIONS, TRUST_RADIUS = 4, 24, 0.01
SWITCH_SURROGATE, SWITCH_SOLVER = 12, 6  # hybrid switch: surrogate iterations, then FDTD iterations
TARGET_TOLERANCE = 0.05  # "reaching the FDTD inversion's error": within 5% of its median on the set
LESION = {"lesion_rate": 1.0, "lesion_cells": (6, 10), "lesion_contrast": 0.08}  # on the 2x finer grid


def acquisitions(s: Scale) -> tuple[optics.Acquisition, optics.Acquisition]:
    """The reconstruction acquisition and the 2x finer one that makes the data (same physical box)."""
    coarse = Grid((s.n, s.n), s.spacing)
    angles = np.arange(s.n_angles) * 2 * np.pi / s.n_angles
    probe = optics.Acquisition(coarse, LAM, NB, [0.0], [0.0], 0.0, max_index=s.max_index)
    acq = optics.Acquisition(coarse, LAM, NB, angles, optics.recording_offsets(probe), probe.aperture + 2e-7,
                             max_index=s.max_index)
    return acq, optics.refined(acq, 2)


def fine_fov(acq: optics.Acquisition, fine: Grid) -> np.ndarray:
    """The coarse field of view on the fine grid's nodes."""
    r = np.linalg.norm(fine.coordinates() - optics._centre(fine).reshape(2, 1, 1), axis=0)
    return r <= acq.aperture - optics.FOV_MARGIN * acq.grid.spacing


def cell_phantom(fine: Grid, mask: np.ndarray, contrast: float, index: int, lesion: bool = False) -> np.ndarray:
    """A ``cell`` phantom drawn on the fine grid (body radius inside the coarse field of view); with
    ``lesion`` the rare-lesion split's phantom (:data:`LESION`)."""
    extra = LESION if lesion else {}
    config = DataConfig(scenario="optics", shape=fine.shape, spacing=fine.spacing, seed=7,
                        split="rare_lesion" if lesion else "train",
                        phantom=PhantomConfig(kind="cell", contrast=contrast, n_cells=(1, 4), n_inclusions=(2, 6),
                                              **extra),
                        optics=OpticsConfig(pml_size=22, detector_margin=5))
    n = phantoms.phantom(config, 7, index).medium["refractive_index"].astype(np.float64)
    return np.where(mask & (np.abs(n - NB) > 1e-6), n, NB)  # float32 water is NB


def bead(fine: Grid, diameter: float) -> np.ndarray:
    r = np.linalg.norm(fine.coordinates() - optics._centre(fine).reshape(2, 1, 1), axis=0)
    return np.where(r < diameter / 2, BEAD, NB)


def metrics(acq: optics.Acquisition, n: np.ndarray, truth: np.ndarray) -> dict:
    inside = truth != NB
    out = {"rel_error": optics.rel_error(acq, n, truth),
           "rmse_dn_inside": float(np.sqrt(np.mean((n[inside] - truth[inside]) ** 2)))}
    for name, (lo, hi) in BANDS.items():
        band = (truth >= lo) & (truth < hi)
        if band.any():
            out[f"mean {name}"] = float(np.mean(n[band]))
            out[f"true {name}"] = float(np.mean(truth[band]))
    return out


def time_to(curve: list[list[float]], target: float) -> float | None:
    """Seconds (compilation excluded) at the first ``[seconds, rel_error]`` point of ``curve`` with
    ``rel_error <= target`` (``None``: never)."""
    return next((t for t, e in curve if e <= target), None)


def iterative_row(acq: optics.Acquisition, res: optics.OpticsResult, truth: np.ndarray) -> dict:
    """Metrics, timing, call counts and the ``[seconds, rel_error]`` curve of one iterative run."""
    last = res.history[-1]
    return metrics(acq, res.refractive_index, truth) | {
        "seconds": last["seconds"], "compile_seconds": last["compile_seconds"],
        "solver_calls": last["solver_calls"], "surrogate_calls": last["surrogate_calls"],
        "curve": [[h["seconds"], h["rel_error"]] for h in res.history]}


def reconstruct(acq: optics.Acquisition, obs: np.ndarray, truth: np.ndarray, iterations: int,
                surrogate: str | None) -> tuple[dict, dict]:
    """Every method on one case: ``(rows, images)``."""
    rows, images = {}, {}
    t = time.perf_counter()
    n = optics.rytov(acq, obs)
    rows["rytov"] = metrics(acq, n, truth) | {"seconds": time.perf_counter() - t}
    images["rytov"] = n
    tv = optics.rytov_tv(acq, obs, tv=TV, iterations=60, positive=True, truth=truth)
    rows["rytov_tv"] = iterative_row(acq, tv, truth)
    images["rytov_tv"] = tv.refractive_index
    common = {"truth": truth, "tv": TV, "positive": True, "progress": False, "surrogate": surrogate}
    runs = {"solver": {"forward": "solver", "iterations": iterations},
            "solver from rytov_tv": {"forward": "solver", "iterations": iterations, "initial": tv.refractive_index}}
    if surrogate:
        runs |= {"surrogate": {"forward": "surrogate", "iterations": iterations},
                 "hybrid correct": {"forward": "hybrid", "hybrid": "correct", "iterations": CORRECT_ITERATIONS,
                                    "refresh_every": REFRESH, "trust_radius": TRUST_RADIUS},
                 "hybrid switch": {"forward": "hybrid", "hybrid": "switch", "iterations": SWITCH_SOLVER,
                                   "surrogate_iterations": SWITCH_SURROGATE}}
    for label, kw in runs.items():
        res = optics.invert(acq, obs, **common, **kw)
        rows[label] = iterative_row(acq, res, truth)
        images[label] = res.refractive_index
    for row in rows.values():
        if "curve" in row:
            row["seconds_to_rytov_error"] = time_to(row["curve"], rows["rytov"]["rel_error"])
            row["seconds_to_rytov_tv_error"] = time_to(row["curve"], rows["rytov_tv"]["rel_error"])
    return rows, images


def summarise(cases: list[dict]) -> dict:
    """Per set and method: median / p95 / max rel_error and the medians of the other numbers; the
    FDTD target of a set is its ``solver`` median rel_error times ``1 + TARGET_TOLERANCE``."""
    out: dict = {}
    for case in cases:
        for method, row in case["rows"].items():
            out.setdefault(case["set"], {}).setdefault(method, []).append(row)
    table = {}
    for name, methods in out.items():
        table[name] = {}
        target = (1 + TARGET_TOLERANCE) * float(np.median([r["rel_error"] for r in methods["solver"]]))
        for method, rows in sorted(methods.items(), key=lambda kv: _rank(kv[0])):
            err = np.array([r["rel_error"] for r in rows])
            entry = {"n": len(rows), "median": float(np.median(err)), "p95": float(np.percentile(err, 95)),
                     "max": float(err.max()),
                     "rmse_dn_inside": float(np.median([r["rmse_dn_inside"] for r in rows])),
                     "seconds": float(np.median([r["seconds"] for r in rows]))}
            for key in ("solver_calls", "surrogate_calls"):
                if key in rows[0]:
                    entry[key] = float(np.median([r[key] for r in rows]))
            times = {k: [r[k] for r in rows] for k in ("seconds_to_rytov_error", "seconds_to_rytov_tv_error")
                     if k in rows[0]}
            if "curve" in rows[0]:
                entry["fdtd_target"] = target
                times["seconds_to_fdtd_error"] = [time_to(r["curve"], target) for r in rows]
            for key, per_case in times.items():
                vals = [v for v in per_case if v is not None]
                entry[key] = float(np.median(vals)) if vals else None
                entry[f"{key}_reached"] = f"{len(vals)}/{len(rows)}"
            if "curve" in rows[0]:  # a case that never reaches the target counts as infinitely slow
                m = float(np.median([np.inf if v is None else v for v in times["seconds_to_fdtd_error"]]))
                entry["seconds_to_fdtd_error_all"] = m if np.isfinite(m) else None
            for key in rows[0]:
                if key.startswith("mean ") or key.startswith("true "):
                    vals = [r[key] for r in rows if key in r]
                    entry[key] = float(np.mean(vals))
            table[name][method] = entry
    return table


def compile_totals(cases: list[dict]) -> dict[str, tuple[float, float]]:
    """Compilation seconds per method: ``(total over the run, median per case)``."""
    out: dict[str, list[float]] = {}
    for case in cases:
        for method, row in case["rows"].items():
            if row.get("compile_seconds") is not None:
                out.setdefault(method, []).append(row["compile_seconds"])
    return {m: (float(np.sum(v)), float(np.median(v))) for m, v in sorted(out.items(), key=lambda kv: _rank(kv[0]))}


METHODS = ("rytov", "rytov_tv", "solver", "solver from rytov_tv", "surrogate", "hybrid correct", "hybrid switch")


def _rank(method: str) -> int:
    """Position of ``method`` in the tables (:data:`METHODS` order)."""
    return METHODS.index(method)


HYBRIDS = ("hybrid correct", "hybrid switch")
OOD_SETS = ("rare_lesion", "cells_2x", "bead")  # out of the field operator's training distribution


def speed_lines(name: str, methods: dict, cost: dict | None) -> list[str]:
    """The surrogate-based rows against the FDTD inversion on one set: error ratio, speed-up to the
    FDTD target (ratio of the medians over all cases, one that never reaches it counting as
    infinitely slow) and over the whole run, and (with ``cost``: data and training seconds) break-even."""
    solver = methods["solver"]
    lines = [f"Against the FDTD inversion (target: its median rel_error {solver['median']:.3f} + "
             f"{TARGET_TOLERANCE:.0%} = {solver['fdtd_target']:.3f}):", "",
             "| method | median rel_error / FDTD's | median s to target, all cases (reached) | speed-up to target | "
             "speed-up, whole run | break-even reconstructions |", "|---|---|---|---|---|---|"]
    for m in ("surrogate",) + HYBRIDS:
        e = methods[m]
        t, t_fdtd = e["seconds_to_fdtd_error_all"], solver["seconds_to_fdtd_error_all"]
        to_target = f"{t_fdtd / t:.1f}x" if t and t_fdtd else "- (half or more never reach it)"
        saved = solver["seconds"] - e["seconds"]
        even = ("-" if cost is None else f"{sum(cost.values()) / saved:.0f}" if saved > 0 else "never (no saving)")
        lines.append(f"| {m} | {e['median'] / solver['median']:.3f} | "
                     f"{'-' if t is None else f'{t:.1f}'} ({e['seconds_to_fdtd_error_reached']}) | {to_target} | "
                     f"{solver['seconds'] / e['seconds']:.1f}x | {even} |")
    tol = 0.10 if name in OOD_SETS else TARGET_TOLERANCE
    goal = (f"hybrid within {tol:.0%} of the FDTD inversion's median error" +
            ("" if name in OOD_SETS else " at >= 10x its speed"))
    lines += ["", f"Target ({name}): {goal}.", ""]
    return lines


def markdown(table: dict, compile_seconds: dict[str, tuple[float, float]],
             scale: Scale, acq: optics.Acquisition, command: str, wall: float,
             missing: list[str], cost: dict | None = None) -> str:
    """The results page; ``cost``: the field operator's data and training seconds, if known."""
    lines = ["# Optical diffraction tomography: FDTD inversion vs Rytov (CPU)", "",
             f"Command: `{command}` ({wall / 60:.1f} min on the shared 2-core CPU host).", "",
             f"Reconstruction grid {scale.n}^2 at {scale.spacing * 1e9:.0f} nm (wavelength {LAM * 1e9:.0f} nm in water "
             f"n = {NB}; field of view {2 * (acq.aperture - 2 * acq.grid.spacing) * 1e6:.2f} um across), "
             f"{scale.n_angles} angles over 360 deg, detector 200 nm beyond the recording line. Observed: FDTD on the "
             f"2x finer grid, {SNR_DB:.0f} dB noise. FDTD inversion: {scale.iterations} L-BFGS iterations, TV {TV:g}, "
             "n >= n_water, from the background or from the Rytov + TV image (its seconds then exclude Rytov + TV's); "
             f"Rytov + TV: 60 iterations, TV {TV:g}, n >= n_water. The TV weight is the same for both and "
             "was not tuned. Seconds exclude compilation: the FDTD programs compile once per acquisition, the "
             "surrogate and hybrid programs once per reconstruction (each run builds its own operator closures). "
             "Compilation seconds, total over the run (median per case): "
             + ", ".join(f"{m} {t:.1f} s ({med:.1f} s)" for m, (t, med) in compile_seconds.items()) + ".", ""]
    if "surrogate" in next(iter(table.values())):
        lines += [f"Field operator rows (same TV, bounds and start as the FDTD inversion): surrogate, "
                  f"{scale.iterations} L-BFGS iterations on the operator alone; hybrid correct, {CORRECT_ITERATIONS} "
                  f"iterations on the operator corrected by FDTD every {REFRESH} (trust region {TRUST_RADIUS:g}); "
                  "hybrid switch, "
                  f"{SWITCH_SURROGATE} operator iterations then {SWITCH_SOLVER} FDTD iterations."
                  + ("" if cost is None else f" The operator cost {cost['data_seconds']:.0f} s of data and "
                     f"{cost['train_seconds']:.0f} s of training on this host; break-even = that cost / (FDTD "
                     "inversion seconds - the method's seconds), medians per set."), ""]
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    for name, methods in table.items():
        lines += [f"## {name}", "", "| method | n | median rel_error | p95 | max | RMSE dn inside | seconds | "
                  "solver / surrogate calls | s to FDTD error | s to Rytov error | s to Rytov+TV error |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, e in methods.items():
            calls = (f"{e['solver_calls']:.0f} / {e['surrogate_calls']:.0f}" if "surrogate_calls" in e else "-")
            times = " | ".join(f"{fmt(e.get(k))} ({e.get(k + '_reached') or '-'})" for k in
                               ("seconds_to_fdtd_error", "seconds_to_rytov_error", "seconds_to_rytov_tv_error"))
            lines.append(f"| {method} | {e['n']} | {e['median']:.3f} | {e['p95']:.3f} | {e['max']:.3f} | "
                         f"{e['rmse_dn_inside']:.4f} | {e['seconds']:.1f} | {calls} | {times} |")
        bands = [k for k in next(iter(methods.values())) if k.startswith("mean ")]
        if bands:
            lines += ["", "Mean index per true-index band (truth in brackets):", "",
                      "| method | " + " | ".join(b[5:] for b in bands) + " |", "|---|" + "---|" * len(bands)]
            for method, e in methods.items():
                lines.append(f"| {method} | " + " | ".join(f"{e[b]:.4f} ({e['true ' + b[5:]]:.4f})" for b in bands)
                             + " |")
        ratios = ", ".join(f"{m} {methods[m]['median'] / methods['rytov']['median']:.2f}"
                           for m in methods if m.startswith("solver"))
        lines += ["", f"Median rel_error relative to Rytov: **{ratios}** (targets: <= 0.7 in distribution, "
                  "<= 0.5 on the strong-scattering sets).", ""]
        if "surrogate" in methods:
            lines += speed_lines(name, methods, cost)
    lines += ["## Not run here", ""] + [f"- {m}" for m in missing] + [""]
    return "\n".join(lines)


def figure(examples: dict, path: Path) -> None:
    names = list(examples)
    methods = ["truth"] + [m for m in next(iter(examples.values())) if m != "truth"]
    fig, axes = subplots(len(names), len(methods), figsize=(2.6 * len(methods), 2.5 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        truth = examples[name]["truth"]
        lo, hi = NB, max(truth.max(), NB + 1e-3)
        for c, m in enumerate(methods):
            ax = axes[r][c]
            ax.imshow(examples[name][m], vmin=lo, vmax=hi, origin="lower", cmap="viridis")
            ax.set_title(f"{name}: {m}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    save_figure(fig, path)


def operator_cost(run_dir: str, data_report: str) -> dict[str, float]:
    """The field operator's data and training seconds: ``seconds`` of the ``pdesurrogate generate --json``
    report and the last ``time_s`` of the run's ``metrics.csv``."""
    data = float(json.loads(Path(data_report).read_text())["seconds"])
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        train = float(list(csv.DictReader(f))[-1]["time_s"])
    return {"data_seconds": data, "train_seconds": train}


def test_sets(scale: Scale, fine: Grid, mask: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(case name, fine-grid index)`` of every case, the other sets interleaved with the first
    cells so that a partial run covers every set."""
    cells = [("cells", cell_phantom(fine, mask, 1.0, i)) for i in range(scale.cells)]
    others = [("rare_lesion", cell_phantom(fine, mask, 1.0, i, lesion=True)) for i in range(scale.rare_cells)]
    others += [("cells_2x", cell_phantom(fine, mask, 2.0, i)) for i in range(scale.strong_cells)]
    others += [(f"bead {d * 1e6:.2f} um", bead(fine, d)) for d in scale.bead_diameters]
    return [c for pair in zip(cells, others) for c in pair] + cells[len(others):] + others[len(cells):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="the CPU scale (the only one implemented here)")
    ap.add_argument("--surrogate", default=None, help="a FieldOperator run directory trained on this geometry")
    ap.add_argument("--data-report", default=None,
                    help="with --surrogate: the JSON report of `pdesurrogate generate --json` for its data")
    ap.add_argument("--cells", type=int, default=None, help="in-distribution cells (default: the scale's)")
    ap.add_argument("--out", default=str(RESULTS / "inversion_optics_cpu"), help="output path without suffix")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite OUT.md and OUT.json from the cases in OUT.json (the figure stays)")
    args = ap.parse_args()
    if args.render:
        render(Path(args.out))
        return
    if not args.small:
        raise SystemExit("only --small (CPU) is implemented; the GPU scale needs the 128^2 field operator")
    if args.data_report and not args.surrogate:
        raise SystemExit("--data-report: only with --surrogate")
    scale = SMALL if args.cells is None else dataclasses.replace(SMALL, cells=args.cells)
    cost = operator_cost(args.surrogate, args.data_report) if args.data_report else None
    command = " ".join(["uv run python experiments/bench_inversion_optics.py --small"]
                       + [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                          if k in ("surrogate", "data_report", "cells") and v is not None])
    t_start = time.perf_counter()
    acq, acq_fine = acquisitions(scale)
    sets = test_sets(scale, acq_fine.grid, fine_fov(acq, acq_fine.grid))
    rng = np.random.default_rng(0)
    cases, examples = [], {}
    for k, (name, fine_n) in enumerate(sets):
        obs = optics.add_noise(optics.simulate(acq_fine, jnp.asarray(fine_n, jnp.float32)), SNR_DB, rng)
        truth = fine_n[::2, ::2]
        rows, images = reconstruct(acq, obs, truth, scale.iterations, args.surrogate)
        group = "bead" if name.startswith("bead") else name
        cases.append({"set": group, "case": name, "index": k, "rows": rows})
        key = name if group == "bead" else group  # the first case of each set, every bead
        if key not in examples:
            examples[key] = {"truth": truth} | images
        print(name, {m: round(r["rel_error"], 3) for m, r in rows.items()}, flush=True)
        write_outputs(Path(args.out), cases, examples, scale, acq, time.perf_counter() - t_start, len(sets),
                      command, cost, args.surrogate is not None)


def render(out: Path) -> None:
    """Rewrite ``out.md`` and ``out.json`` from the cases, scale, command and cost stored in ``out.json``."""
    saved = json.loads(out.with_suffix(".json").read_text())
    scale = Scale(**(saved["scale"] | {"bead_diameters": tuple(saved["scale"]["bead_diameters"])}))
    acq, _ = acquisitions(scale)
    planned = scale.cells + scale.rare_cells + scale.strong_cells + len(scale.bead_diameters)
    write_outputs(out, saved["cases"], None, scale, acq, saved["wall_seconds"], planned, saved["command"],
                  saved["operator_cost"], "surrogate" in saved["cases"][0]["rows"])


def write_outputs(out: Path, cases: list[dict], examples: dict | None, scale: Scale, acq: optics.Acquisition,
                  wall: float, planned: int, command: str, cost: dict | None, surrogate: bool) -> None:
    """The table, JSON and (with ``examples``) figure of the cases run so far (rewritten after every case)."""
    table = summarise(cases)
    missing = ["beads of 1-4 wavelengths: at 64^2 the field of view is 0.48 um across, so the beads here are "
               f"{', '.join(f'{d * 1e6:.2f}' for d in scale.bead_diameters)} um (0.5-0.9 vacuum wavelengths)",
               "the GPU scale (128^2, 16 angles, 16+ phantoms)"]
    if scale.cells < 16:
        missing.insert(0, f"the in-distribution set has {scale.cells} cells, not the issue's >= 16")
    if not surrogate:
        missing.insert(0, "surrogate and hybrid rows: rerun with --surrogate RUN_DIR (a field operator trained on "
                          "experiments/configs/optics_64_small.toml)")
    if len(cases) < planned:
        missing.insert(0, f"only {len(cases)} of the {planned} planned cases finished")
    write_json(out.with_suffix(".json"), {"scale": dataclasses.asdict(scale), "snr_db": SNR_DB, "table": table,
                                          "operator_cost": cost, "cases": cases, "missing": missing,
                                          "wall_seconds": wall, "command": command})
    write_text(out.with_suffix(".md"), markdown(table, compile_totals(cases), scale, acq, command, wall, missing,
                                                cost))
    if examples is not None:
        figure(examples, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
