"""Smoke-scale trust check (CPU, about 10-15 minutes on 2 shared cores): issue 18's figures for a
small optical field operator.

    uv run python experiments/trust_small.py --work data/trust_small

1. Datasets from ``experiments/configs/trust_small.toml`` (the ``maxwell_smoke`` optics at 40^2, 4
   illuminations): ``train`` (512, seed 0), ``calibration`` (576, seed 1), held-out ``test``
   (192, seed 2), ``ood_contrast`` (twice the index contrast, 192), ``large_textured`` (cells as
   large as this grid's room allows, 0.17-0.2 of the field, with textured cytoplasm: the
   shape of the real-micrograph failure, 192), ``iterates`` (smoothed, half-contrast media like
   inversion iterates, 192) and ``train_wide`` (a widened family: cell sizes 0.08-0.2 of the field,
   textured cytoplasm, smoothing 0-2 cells; 512).
2. An ensemble of 4 FNOs (seeds 0-3) on ``train`` (``training.ensemble.train_members``), and one
   FNO (seed 0) on ``train_wide``.
3. ``trust.calibrate`` on ``calibration`` (alpha = 0.1; tolerance: the calibration errors' 90th
   percentile), ``trust.assess`` on every test set: coverage, Spearman, AUROC, monitor flags,
   the guarded decision's accepted share and its accepted answers above tolerance.
4. ``trust.guard`` with the FDTD solver as the fallback on a stream of 48 test inputs followed by 48
   twice-contrast inputs: fallback share, accepted answers above tolerance (against the datasets'
   solver answers), adaptive-conformal checks and the time against solver-only.
5. The Spearman correlation of each raw signal with the error, per set.
6. Calibration that looks like use: the bound calibrated on a second iterate-like set
   (``iterates_calibration``, seed 7) and assessed on ``iterates``.
7. The error of member 0 and of the widened-family FNO (same seed and steps) on each set: the
   widening's effect on in-distribution morphology.

Writes ``experiments/results/trust_cpu_small.{md,json}`` and ``trust_cpu_small_bounds.png``. A
smoke-scale check: the 128^2 budget operators are for a later session.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pdesurrogate import trust  # noqa: E402
from pdesurrogate.config import load_toml  # noqa: E402
from pdesurrogate.evaluation import spearman  # noqa: E402
from pdesurrogate.io import write_json, write_text  # noqa: E402
from pdesurrogate.trust.guarded import relative_error  # noqa: E402
from training.data import generate, open_dataset, scenarios  # noqa: E402
from training.ensemble import train_members  # noqa: E402

CONFIG = REPO / "experiments" / "configs" / "trust_small.toml"
RESULTS = REPO / "experiments" / "results"
WIDE = {"cell_diameter": [0.08, 0.2], "texture": 0.004, "texture_cells": 1.5, "smoothing": [0.0, 2.0]}
SETS: dict[str, dict[str, Any]] = {
    "train": {"seed": 0, "num_samples": 512},
    "calibration": {"seed": 1, "num_samples": 576},
    "test": {"seed": 2, "num_samples": 192},
    "ood_contrast": {"seed": 3, "num_samples": 192, "split": "ood_contrast"},
    "large_textured": {"seed": 4, "num_samples": 192,
                       "phantom": {"cell_diameter": [0.17, 0.2], "texture": 0.006, "texture_cells": 1.5}},
    "iterates": {"seed": 5, "num_samples": 192, "phantom": {"smoothing": [1.0, 3.0], "contrast": 0.5}},
    "train_wide": {"seed": 6, "num_samples": 512, "phantom": WIDE},
    "iterates_calibration": {"seed": 7, "num_samples": 192, "phantom": {"smoothing": [1.0, 3.0], "contrast": 0.5}},
}
TEST_SETS = ("test", "ood_contrast", "large_textured", "iterates")
MEMBERS = 4


def data_config(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The ``[data]`` table of one set: ``base`` with ``changes`` (``phantom`` merged key by key)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = out.get(key, {}) | value if key == "phantom" else value
    return out


def guarded_stream(run: Path, work: Path, n_each: int) -> dict[str, Any]:
    """The guarded forward model over ``n_each`` test then ``n_each`` twice-contrast inputs."""
    ds = {name: open_dataset(work / name) for name in ("test", "ood_contrast")}
    simulate = jax.jit(scenarios.build(ds["test"].config).simulate)

    def solver(medium: jax.Array) -> jax.Array:
        return simulate({"refractive_index": medium[0]})["field"]

    guarded = trust.guard(run, solver, check_every=8)
    first = jnp.asarray(ds["test"].read(np.arange(1), ["refractive_index"])["refractive_index"])
    jax.block_until_ready((guarded.signals(first), solver(first)))  # compile both outside the timings
    errors, sets = [], []
    for name, d in ds.items():
        raw = d.read(np.arange(n_each), ["refractive_index", "field"])
        for i in range(n_each):
            answer = guarded(jnp.asarray(raw["refractive_index"][i][None]), id=f"{name}/{i}")
            errors.append(relative_error(answer, raw["field"][i]))
            sets.append(name)
    log = guarded.log
    t0 = time.perf_counter()
    for i in range(4):
        solver(jnp.asarray(raw["refractive_index"][i][None])).block_until_ready()
    solver_s = (time.perf_counter() - t0) / 4
    out: dict[str, Any] = {"summary": guarded.summary(), "solver_s_per_input": solver_s}
    for name in ds:
        rows = [(r, e) for r, e, s in zip(log, errors, sets) if s == name]
        accepted = [e for r, e in rows if r["decision"] == "surrogate"]
        out[name] = {"n": len(rows), "fallback": float(np.mean([r["decision"] == "solver" for r, _ in rows])),
                     "accepted_above_tolerance": float(np.mean(np.array(accepted) > guarded.tolerance))
                     if accepted else float("nan"),
                     "answer_error_max": float(np.max([e for _, e in rows])),
                     "reasons": sorted({r["reason"] for r, _ in rows})}
    total = out["summary"]["surrogate_s"] + out["summary"]["solver_s"]
    out["time_saved"] = 1.0 - total / (len(log) * solver_s)
    return out


def markdown(result: dict[str, Any]) -> str:
    a, g = result["assess"], result["guarded"]
    lines = ["# Trust, smoke scale (CPU)", "",
             f"Command: `{result['command']}`; {result['device']}; {result['seconds']:.0f} s in all (datasets, "
             "training, calibration and assessment; compilation included, except in the guarded stream). A smoke-scale "
             "check: a 40^2 optical field operator (4 illuminations, 4-member FNO ensemble, 600 steps each); the "
             "128^2 budget operators are for a later session.", "",
             f"Calibration: {result['calibration']['n_conformal']} conformal + {result['calibration']['n_fit']} "
             f"combiner samples; signals {', '.join(result['calibration']['signals'])}; bound = "
             f"{result['calibration']['quantile']:.3g} x predicted error; tolerance "
             f"{result['calibration']['tolerance']:.3g} "
             f"(relative L2: the calibration errors' 90th percentile); pointwise band multiplier "
             f"{result['calibration']['band']:.3g}.", "",
             trust.markdown_table(a), "",
             "`flagged`: share of samples in 16-sample windows the MMD test flags at 5% (windows in dataset order); "
             "`flagged_single`: share whose own kNN conformal p-value is at most 5%; `accepted`: bound <= tolerance "
             "and no flag (the guarded decision).", "",
             "| set | median error | median bound | band coverage (1-alpha of points, nominal 0.9) |",
             "|---|---|---|---|"]
    lines += [f"| {k} | {r['median_error']:.3g} | {r['median_bound']:.3g} | "
              f"{r.get('band_coverage', float('nan')):.3g} |" for k, r in a.items()]
    lines += ["", *[f"`{k}`: the bound under-covers ({r['coverage']:.3g} against {r['nominal']:.3g}); the monitor "
                    f"flags {100 * r['flagged']:.0f}% of its samples ({100 * r['flagged_single']:.0f}% one by one), "
                    f"and the guarded model falls back on the flagged ones." for k, r in a.items()
                    if r["coverage"] < r["nominal"] - 0.03]]
    r = result["raw_signal_spearman"]
    names = list(next(iter(r.values())))
    lines += ["", "Spearman of each raw signal against the error (the combined, calibrated prediction is the table's "
              "`spearman`):", "", "| set | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{v[n]:.3g}" for n in names) + " |" for k, v in r.items()]
    it = result["iterates_calibrated_on_iterates"]
    lines += ["", f"Calibrated on iterate-like media instead ({it['n']} iterates, a second set of 192 as calibration, "
              f"same tolerance): coverage {it['coverage']:.3g} (nominal {it['nominal']:.3g}), multiplier "
              f"{it['quantile']:.3g}, Spearman {it['spearman']:.3g}, flagged {it['flagged']:.3g} "
              f"(single {it['flagged_single']:.3g})."]
    s = g["summary"]
    lines += ["", f"Guarded stream ({s['n']} inputs: {g['test']['n']} test then {g['ood_contrast']['n']} "
              "twice-contrast; "
              f"the FDTD solver as fallback, an adaptive-conformal check every 8th input):", "",
              "| part | fallback | accepted above tolerance | max error of the answers | reasons |",
              "|---|---|---|---|---|"]
    lines += [f"| {k} | {g[k]['fallback']:.3g} | {g[k]['accepted_above_tolerance']:.3g} | "
              f"{g[k]['answer_error_max']:.3g} | {', '.join(g[k]['reasons'])} |" for k in ("test", "ood_contrast")]
    lines += ["", f"Checks {s['checks']} (miss rate {s['miss_rate']:.3g}, final multiplier {s['quantile']:.3g}); "
              f"surrogate {s['surrogate_s']:.3g} s + solver {s['solver_s']:.3g} s against "
              f"{g['solver_s_per_input']:.3g} s "
              f"per solver-only input: time saved {100 * g['time_saved']:.0f}% (CPU; the surrogate's time includes "
              "its signals and the monitor).", "",
              "Widening the phantom family (median / p95 relative L2 of one FNO, seed 0, 600 steps):", "",
              "| set | trained on cells | trained on the widened family |", "|---|---|---|"]
    w = result["widening"]
    lines += [f"| {k} | {w['before'][k]['median']:.3g} / {w['before'][k]['p95']:.3g} | "
              f"{w['after'][k]['median']:.3g} / {w['after'][k]['p95']:.3g} |" for k in w["before"]]
    lines += ["", "![bound vs error](trust_cpu_small_bounds.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="data/trust_small", help="datasets and runs (reused when complete)")
    parser.add_argument("--results", default=str(RESULTS), help="output directory")
    parser.add_argument("--stream", type=int, default=48, help="guarded-stream inputs per set")
    args = parser.parse_args()
    t0 = time.perf_counter()
    work, results = Path(args.work), Path(args.results)
    toml = load_toml(CONFIG)
    for name, changes in SETS.items():
        generate(data_config(toml["data"], changes), work / name, progress=False)
    run = work / "run"
    train_members(toml, work / "train", run, MEMBERS)
    wide = train_members(toml, work / "train_wide", work / "run_wide", 1)[0]
    cal = trust.calibrate(run, work / "calibration", alpha=0.1)
    section = trust.report(run, [work / s for s in TEST_SETS], results, list(TEST_SETS), calibration=cal)
    (results / section["figure"]).replace(results / "trust_cpu_small_bounds.png")
    m = trust.measure_set(run, work / "iterates_calibration")
    on_iterates = trust.fit_calibration(m["signals"], m["errors"], m["features"], m["names"], 0.1,
                                        tolerance=cal.tolerance)
    iterates = trust.assess(run, work / "iterates", calibration=on_iterates)
    raw = {}
    for s in TEST_SETS:
        m = trust.measure_set(run, work / s)
        raw[s] = {name: spearman(m["signals"][:, j], m["errors"]) for j, name in enumerate(m["names"])}
    widening = {label: {s: {k: float(np.percentile(trust.measure_set(d, work / s)["errors"], q))
                            for k, q in (("median", 50), ("p95", 95))} for s in TEST_SETS}
                for label, d in (("before", run / "members" / "0"), ("after", wide))}
    result = {"command": "uv run python experiments/trust_small.py --work " + args.work,
              "device": f"{jax.default_backend()} {jax.devices()[0].device_kind}",
              "calibration": cal.info | {"quantile": cal.quantile, "tolerance": cal.tolerance, "band": cal.band,
                                         "signals": list(cal.names), "alpha": cal.alpha},
              "assess": section["sets"],
              "guarded": guarded_stream(run, work, args.stream), "widening": widening,
              "iterates_calibrated_on_iterates": iterates | {"quantile": on_iterates.quantile},
              "raw_signal_spearman": raw}
    result["seconds"] = time.perf_counter() - t0
    write_json(results / "trust_cpu_small.json", result)
    write_text(results / "trust_cpu_small.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
