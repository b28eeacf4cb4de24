"""Trust figures for the operators the inversions use (CPU), and the guarded hybrid inversion.

    uv run python experiments/trust_inversion.py optics --run RUN --work /work/data/trust/optics
    uv run python experiments/trust_inversion.py usct --run RUN --work /work/data/trust/usct

``RUN`` is a field operator trained on the geometry of ``experiments/bench_inversion_optics.py --small``
or a trace operator trained on that of ``experiments/bench_inversion_usct.py --small``. Per modality:

1. Datasets from the run's own data config (its ``surrogate.json``'s ``data_dir`` manifest) with other
   seeds: ``calibration`` (``--calibration`` samples, seed 1001), held-out ``test`` (seed 1002),
   ``ood_contrast`` (twice the phantom contrast, seed 1003) and, for USCT, ``skull`` (``brain``
   phantoms with a skull, seed 1004). A sample is one medium with the operator's whole output: the
   fields of every illumination (optics) or the traces of every shot (USCT; the emitter's own trace
   left out of the error).
2. ``trust.calibrate`` (alpha 0.1, tolerance the calibration errors' 90th percentile) and
   ``trust.report`` on every test set: coverage, Spearman, AUROC, monitor flags (false alarms on
   ``test``, detection on the shifted sets), the guarded decision's accepted share, and the figure of
   bound against error (one panel per set).
3. A guarded stream: ``trust.guard`` with the run's data solver (``trust.reference_solver``) as the
   fallback on ``--stream`` inputs of each test set in turn (a solver check every 8th input): fallback
   share, accepted answers above tolerance (against the datasets' answers) and the time against
   solver-only (compilation excluded: both are warmed up first).
4. Guarded-hybrid inversion (``hybrid="guarded"``, one per ``--tolerance`` and ``--hold``) against solver-only on
   ``--phantoms`` phantoms of the benchmark's acquisition (its functions make the phantoms and the
   data): final ``rel_error``,
   solver and surrogate calls, seconds (the loop's, compilation excluded; the guard's decisions and
   checks count, and its programs, built anew per inversion, compile inside them: JAX's persistent
   compilation cache in ``WORK/jax_cache`` makes that a load from disk after the first inversion), the
   fallback share and reasons along the path, and the coverage of the guard's bound at its solver checks.

Each run updates ``experiments/results/trust_inversion_cpu.json`` under its modality and rewrites
``trust_inversion_cpu.md``; the figure is ``trust_inversion_cpu_<modality>_bounds.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from trust_small import data_config  # noqa: E402

from pdesurrogate import trust  # noqa: E402
from pdesurrogate.io import write_json, write_text  # noqa: E402
from pdesurrogate.trust.run import run_spec  # noqa: E402
from training.data import generate, open_dataset  # noqa: E402
from training.tasks import get_task  # noqa: E402

RESULTS = REPO / "experiments" / "results"
NAME = "trust_inversion_cpu"
CHECK_EVERY = 8  # inputs between the guarded stream's solver checks


def sets(modality: str, n_calibration: int, n_test: int) -> dict[str, dict[str, Any]]:
    """The datasets' changes to the run's data config, by set name."""
    out = {"calibration": {"seed": 1001, "num_samples": n_calibration},
           "test": {"seed": 1002, "num_samples": n_test},
           "ood_contrast": {"seed": 1003, "num_samples": n_test, "split": "ood_contrast"}}
    if modality == "usct":
        out["skull"] = {"seed": 1004, "num_samples": n_test, "phantom": {"kind": "brain"}}
    return out


def make_sets(run: Path, work: Path, changes: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Generate (or confirm) every set from the run's data config; returns their directories."""
    base = open_dataset(run_spec(run)["data_dir"]).manifest["config"]
    out = {}
    for name, change in changes.items():
        out[name] = work / name
        generate(data_config(base | {"split": "train"}, change), out[name], progress=False)
    return out


def stream(run: Path, data: dict[str, Path], n_each: int) -> dict[str, Any]:
    """The guarded forward model on ``n_each`` inputs of each set in turn (see the module docstring)."""
    spec = run_spec(run)
    task = get_task(spec["task"])
    guarded = trust.guard(run, trust.reference_solver(run), check_every=CHECK_EVERY)
    samples = {name: next(task.trust_samples(open_dataset(d), spec, np.arange(n_each), n_each))
               for name, d in data.items()}
    first = jnp.asarray(next(iter(samples.values())).inputs[0][0])
    jax.block_until_ready((guarded.signals(first), guarded.solver(first)))  # compile both outside the timings
    t0 = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(guarded.solver(first))
    solver_s = (time.perf_counter() - t0) / 3
    out: dict[str, Any] = {}
    for name, s in samples.items():
        start = len(guarded.log)
        errors = []
        for i in range(n_each):
            answer = np.asarray(guarded(jnp.asarray(s.inputs[0][i]), id=f"{name}/{i}"))
            keep = np.broadcast_to(s.keep, s.truth[i].shape)
            kept = [np.where(keep, a, 0)[None] for a in (answer, s.truth[i])]
            errors.append(float(task.trust_error(*kept)[0]))
        rows = guarded.log[start:]
        accepted = [e for r, e in zip(rows, errors) if r["decision"] == "surrogate"]
        spent = sum(r["surrogate_s"] + r["solver_s"] for r in rows)
        out[name] = {"n": n_each, "fallback": float(np.mean([r["decision"] == "solver" for r in rows])),
                     "accepted_above_tolerance": float(np.mean(np.array(accepted) > guarded.tolerance))
                     if accepted else float("nan"),
                     "answer_error_max": float(np.max(errors)), "reasons": sorted({r["reason"] for r in rows}),
                     "seconds": spent, "solver_only_seconds": n_each * solver_s,
                     "time_saved": 1.0 - spent / (n_each * solver_s)}
    return {"sets": out, "summary": guarded.summary(), "solver_s_per_input": solver_s, "check_every": CHECK_EVERY}


def optics_cases(phantoms: int) -> list[dict[str, Any]]:
    """``[{"name", "acq", "observed", "truth", "options"}]`` from the optics benchmark's functions."""
    import bench_inversion_optics as bench

    from pdesurrogate.inversion import optics

    acq, acq_fine = bench.acquisitions(bench.SMALL)
    mask = bench.fine_fov(acq, acq_fine.grid)
    rng = np.random.default_rng(0)
    out = []
    for i in range(phantoms):
        fine_n = bench.cell_phantom(acq_fine.grid, mask, 1.0, i)
        observed = optics.add_noise(optics.simulate(acq_fine, jnp.asarray(fine_n, jnp.float32)), bench.SNR_DB, rng)
        out.append({"name": f"cells {i}", "acq": acq, "observed": observed, "truth": fine_n[::2, ::2],
                    "options": {"iterations": bench.SMALL.iterations, "tv": bench.TV, "positive": True}})
    return out


def usct_cases(phantoms: int) -> list[dict[str, Any]]:
    """``[{"name", "acq", "observed", "truth", "options"}]`` from the USCT benchmark's functions."""
    import bench_inversion_usct as bench

    from solvers import acoustic
    from training.data import phantoms as phantom_lib

    scale = bench.SCALES["small"]
    acq, acq_fine, extra = bench.geometry(scale)
    rng = np.random.default_rng(0)
    f0 = scale["frequency"]
    out = []
    for i in range(phantoms):
        ph = phantom_lib.phantom(extra["config"], 0, i)
        c, rho = ph.medium["sound_speed"], ph.medium["density"]
        observed = bench.observe(acq_fine, acoustic.Medium(sound_speed=c, density=rho), rng, 2 * scale["pml"])
        out.append({"name": f"breast {i}", "acq": acq, "observed": observed, "truth": c[::2, ::2].astype(np.float32),
                    "options": {"bands": tuple(b * f0 for b in (0.5, 0.75, 1.0)), "iterations": (3, 3, 3)}})
    return out


def guarded_row(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The guard's figures along one guarded inversion (its history)."""
    checks = [r for r in history if r["check"]]
    return {"fallback": float(np.mean([r["decision"] == "solver" for r in history])),
            "decisions": [r["decision"] for r in history], "reasons": sorted({r["reason"] for r in history}),
            "guard_seconds": float(sum(r["guard_seconds"] for r in history)), "checks": len(checks),
            "check_coverage": float(np.mean([r["guard_error"] <= r["bound"] for r in checks]))
            if checks else float("nan"),
            "check_errors": [r["guard_error"] for r in checks], "check_bounds": [r["bound"] for r in checks]}


def invert_case(modality: str, run: Path, case: dict[str, Any], check_every: int,
                tolerances: list[float | None], holds: list[int]) -> dict[str, Any]:
    """Solver-only and guarded-hybrid inversions (one per tolerance, ``None``: the calibration's, and
    hold) of one case: ``{"solver": figures, "guarded": {"<tolerance>, hold <h>": figures}}``."""
    from pdesurrogate.inversion import optics, usct

    module = {"optics": optics, "usct": usct}[modality]

    def invert(**kw: Any) -> dict[str, Any]:
        res = module.invert(case["acq"], case["observed"], truth=case["truth"], progress=False, **kw, **case["options"])
        last = res.history[-1]
        return {k: last[k] for k in ("rel_error", "seconds", "compile_seconds", "solver_calls", "surrogate_calls")} | \
            ({"guard": guarded_row(res.history)} if kw["forward"] == "hybrid" else {})

    out: dict[str, Any] = {"solver": invert(forward="solver"), "guarded": {}}
    for tol in tolerances:
        for hold in holds:
            g = invert(forward="hybrid", hybrid="guarded", surrogate=str(run), check_every=check_every,
                       guard_tolerance=tol, guard_hold=hold)
            g["relative_to_solver"] = g["rel_error"] / out["solver"]["rel_error"] - 1.0
            out["guarded"][f"{'calibration' if tol is None else f'{tol:g}'}, hold {hold}"] = g
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Trust for the inversion operators (CPU)", "",
             "Written by `experiments/trust_inversion.py` (one run per modality; commands below). A sample is one "
             "medium with the operator's whole output: every illumination's field (optics), every shot's traces "
             "(USCT, the emitter's own trace left out). alpha = 0.1; tolerance: the calibration errors' 90th "
             "percentile. Run from the trust branch with the usct and optics branches merged (their benchmarks' "
             "functions and data configs).", ""]
    for modality, r in results.items():
        cal = r["calibration"]
        order = [k for k in sets(modality, 0, 0) if k in r["assess"]]  # the sets in the order they ran
        lines += [f"## {modality}", "", f"Command: `{r['command']}`; {r['device']}; {r['seconds']:.0f} s in all. "
                  f"Run `{r['run']}`.", "",
                  f"Calibration: {cal['n_conformal']} conformal + {cal['n_fit']} combiner samples; signals "
                  f"{', '.join(cal['signals'])}; bound = {cal['quantile']:.3g} x predicted error; tolerance "
                  f"{cal['tolerance']:.3g} (relative L2).", "",
                  trust.markdown_table({k: r["assess"][k] for k in order}), "",
                  "`flagged`: share of samples in 16-sample windows the MMD test flags at 5% (false alarms on "
                  "`test`, detection on the shifted sets); `accepted`: bound <= tolerance and no flag.", "",
                  f"Bound against error, per set: `{NAME}_{modality}_bounds.png` (next to this file).", ""]
        s = r["stream"]
        counts = ", ".join(f"{k}: {s['sets'][k]['n']}" for k in order)
        lines += [f"Guarded stream ({counts} inputs in turn; the "
                  f"run's data solver as fallback, {s['solver_s_per_input']:.3g} s per input; a check every "
                  f"{s['check_every']}th input):", "",
                  "| set | fallback | accepted above tolerance | max answer error | reasons | time saved |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['fallback']:.3g} | {v['accepted_above_tolerance']:.3g} | "
                  f"{v['answer_error_max']:.3g} | {', '.join(v['reasons'])} | {100 * v['time_saved']:.0f}% |"
                  for k, v in ((k, s["sets"][k]) for k in order)]
        sm = s["summary"]
        lines += ["", f"Checks {sm['checks']} (miss rate {sm['miss_rate']:.3g}, final multiplier "
                  f"{sm['quantile']:.3g}).",
                  "", "Guarded-hybrid inversion against solver-only (same data, recipe and seeds; seconds exclude the "
                  "loop's compilation; the guard's programs compile or load from the persistent cache inside "
                  "them):", "",
                  "| case | tolerance, hold | solver rel_error | guarded rel_error | guarded / solver - 1 | solver "
                  "calls (solver / guarded) | surrogate calls | seconds (solver / guarded; of which guard) | fallback "
                  "share | reasons | checks: bound coverage |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, c in r["inversions"].items():
            a = c["solver"]
            for tol, g in c["guarded"].items():
                q = g["guard"]
                lines.append(f"| {name} | {tol} | {a['rel_error']:.4g} | {g['rel_error']:.4g} | "
                             f"{100 * g['relative_to_solver']:+.1f}% | {a['solver_calls']} / {g['solver_calls']} | "
                             f"{g['surrogate_calls']} | {a['seconds']:.1f} / {g['seconds']:.1f}; "
                             f"{q['guard_seconds']:.1f} | {q['fallback']:.2f} | {', '.join(q['reasons'])} | "
                             f"{q['checks']}: {q['check_coverage']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modality", choices=("optics", "usct"))
    parser.add_argument("--run", required=True, help="the operator's run directory (calibration is saved there)")
    parser.add_argument("--work", required=True, help="datasets (reused when complete)")
    parser.add_argument("--calibration", type=int, default=512, help="calibration samples")
    parser.add_argument("--test", type=int, default=160, help="samples per test set")
    parser.add_argument("--stream", type=int, default=32, help="guarded-stream inputs per set")
    parser.add_argument("--phantoms", type=int, default=2, help="inversions per method")
    parser.add_argument("--check-every", type=int, default=5, help="iterations between the guard's solver checks")
    parser.add_argument("--tolerance", nargs="+", default=["calibration"],
                        help="the guarded inversions' tolerances (relative L2 of the operator's output; 'calibration': "
                             "the calibration's), one guarded inversion per value")
    parser.add_argument("--hold", type=int, nargs="+", default=[0],
                        help="the guarded inversions' guard_hold values (iterations a fallback keeps the solver)")
    parser.add_argument("--stage", choices=("data", "all", "markdown"), default="all",
                        help="data: only generate the sets; markdown: only rewrite the markdown from the JSON")
    parser.add_argument("--results", default=str(RESULTS), help="output directory")
    args = parser.parse_args()
    t0 = time.perf_counter()
    run, work, results = Path(args.run), Path(args.work), Path(args.results)
    path = results / f"{NAME}.json"
    if args.stage == "markdown":
        write_text(results / f"{NAME}.md", markdown(json.loads(path.read_text())))
        return
    # later inversions load the guard's programs (rebuilt per inversion) from disk instead of recompiling
    jax.config.update("jax_compilation_cache_dir", str(work / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    data = make_sets(run, work, sets(args.modality, args.calibration, args.test))
    if args.stage == "data":
        return
    cal = trust.calibrate(run, data.pop("calibration"), alpha=0.1)
    section = trust.report(run, list(data.values()), results, list(data), calibration=cal)
    (results / section["figure"]).replace(results / f"{NAME}_{args.modality}_bounds.png")
    cases = (optics_cases if args.modality == "optics" else usct_cases)(args.phantoms)
    tolerances = [None if t == "calibration" else float(t) for t in args.tolerance]
    inversions = {c["name"]: invert_case(args.modality, run, c, args.check_every, tolerances, args.hold)
                  for c in cases}
    command = (f"uv run python experiments/trust_inversion.py {args.modality} --run {args.run} --work {args.work} "
               f"--calibration {args.calibration} --test {args.test} --stream {args.stream} --phantoms {args.phantoms} "
               f"--check-every {args.check_every} --tolerance {' '.join(args.tolerance)} "
               f"--hold {' '.join(map(str, args.hold))}")
    entry = {"command": command, "run": str(run), "device": f"{jax.default_backend()} {jax.devices()[0].device_kind}",
             "calibration": cal.info | {"quantile": cal.quantile, "tolerance": cal.tolerance,
                                        "signals": list(cal.names), "alpha": cal.alpha},
             "assess": section["sets"], "stream": stream(run, data, args.stream), "inversions": inversions,
             "median_relative_to_solver": {t: statistics.median(c["guarded"][t]["relative_to_solver"]
                                                                for c in inversions.values())
                                           for t in next(iter(inversions.values()))["guarded"]}}
    entry["seconds"] = time.perf_counter() - t0
    everything = json.loads(path.read_text()) if path.is_file() else {}
    everything[args.modality] = entry
    write_json(path, everything)
    write_text(results / f"{NAME}.md", markdown(everything))
    print(markdown({args.modality: entry}))


if __name__ == "__main__":
    main()
