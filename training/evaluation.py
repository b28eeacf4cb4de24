"""End-to-end evaluation of a trained surrogate against its reference solver data.

:func:`evaluate_run` reads a training run (``pdesurrogate train`` output) and one or more
datasets: the first is the test set (the run's own dataset: its test split, which neither trained
nor selected the checkpoint; any other: all samples); the others are extra test sets reported separately under ``splits``, keyed by
their ``data.split`` (``rare_lesion``, ``ood_contrast``, ...). It writes ``evaluation.json``,
``evaluation.md``, PNG figures and ``per_sample.npz`` into ``out_dir`` and returns the JSON dict.
What is measured, and against which trivial baseline, is the surrogate kind's
(:meth:`training.tasks.Task.evaluate`); ``per_sample.npz`` holds the first test set's per-evaluation
``rel_l2`` and ``baseline_rel_l2`` behind the distributions, sample-major (each of its ``samples``
contributes ``len(rel_l2) // len(samples)`` evaluations in a row: stepper one per macro step,
trace operator one per shot). The JSON dict:

- ``rel_l2``: per-sample relative L2 {n, mean, median, p95, p99, max} (stepper: one macro step from
  every frame of every trajectory, on the pressure; field operator: all phasors of a sample);
- ``rel_l2_state`` (stepper): the same on the whole state with channels scaled by their std;
- ``rollout``: rel L2 against the number of macro steps from frame 0 (stepper);
- ``baseline_rel_l2``: the trivial baseline: persistence ``u(t + dt) = u(t)`` (stepper), the
  incident field, i.e. the solver's field in the homogeneous background (field operator);
  ``baseline_rollout`` likewise;
- ``bands``: low / mid / high radial wavenumber bands (see :func:`.metrics.band_errors`);
- ``roi``: rel L2 within 3 cells of lesions, per sample with lesions (stepper: over the one-step
  predictions from every frame of the trajectory; field operator: all phasors);
- ``time_reversal`` (stepper with velocity): the inconsistency ``||R Phi(R Phi(u)) - u|| / ||u||``
  (unsquared; channels scaled by their std) from every frame, outside the absorbing layer and the
  2 cells next to it (the training loss L_TR is the square of this ratio, with the same mask);
- ``spectral_tail`` (FNO stepper): the share of each one-step pressure increment outside the
  model's retained Fourier modes, relative to the next pressure
  (:func:`pdesurrogate.evaluation.spectral_tail`): the spectral path cannot carry it and the
  pointwise path rebuilds it only locally, so a one-step error that stays a sizeable fraction of it
  asks for more ``modes``, not more training (``experiments/stepper_modes.py``);
- ``reciprocity`` (trace operator): the source-receiver reciprocity gap of each sample's
  predicted shots, ``sqrt`` of :func:`training.losses.reciprocity_gap` (relative L2 between
  reciprocal traces); ``data_reciprocity`` the same for the dataset's solver traces (its floor);
- ``splits``: the same statistics per extra test set;
- ``speed``: surrogate against the reference solver on this device, same simulated time,
  forward and forward + gradient with respect to the medium.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pdesurrogate import trust
from pdesurrogate.io import save_figure, save_npz, subplots, write_json, write_text
from pdesurrogate.surrogate import load, read_spec
from training.data import open_dataset
from training.tasks import get_task


def _dataset(path: str | Path):
    ds = open_dataset(path)
    if not ds.complete:
        raise ValueError(f"dataset {path} is incomplete")
    return ds


def _test_indices(ds: Any, spec: dict[str, Any], max_samples: int | None) -> np.ndarray:
    own = Path(spec["data_dir"]) == Path(ds.path).absolute() or ds.manifest.get("fingerprint") == spec.get(
        "data_fingerprint")
    idx = np.arange(*spec["test_indices"]) if own else np.arange(len(ds))
    return idx if max_samples is None else idx[:max_samples]


def _check_compatible(ds: Any, spec: dict[str, Any]) -> None:
    if list(ds.config.shape) != list(spec["shape"]) or not math.isclose(ds.config.spacing, spec["spacing"]):
        raise ValueError(f"dataset {ds.path} has grid {list(ds.config.shape)} x {ds.config.spacing} m; the surrogate "
                         f"was trained on {spec['shape']} x {spec['spacing']} m")
    get_task(spec["task"]).check_compatible(ds, spec)


# ----- figures and report -------------------------------------------------------------------------
def _figures(out_dir: Path, result: dict[str, Any], arrays: dict[str, Any]) -> list[str]:
    names = []
    fig, ax = subplots(figsize=(5.5, 3.8))
    bins = np.logspace(np.log10(max(min(arrays["one"].min(), arrays["base"].min()), 1e-6)),
                       np.log10(max(arrays["one"].max(), arrays["base"].max(), 1e-5)), 40)
    ax.hist(arrays["one"], bins=bins, alpha=0.7, label="surrogate")
    ax.hist(arrays["base"], bins=bins, alpha=0.5, label="baseline")
    ax.set_xscale("log")
    ax.set_xlabel("per-sample relative L2")
    ax.set_ylabel("count")
    ax.legend()
    save_figure(fig, out_dir / "error_histogram.png")
    names.append("error_histogram.png")
    if "rollout" in result:
        fig, ax = subplots(figsize=(5.5, 3.8))
        r, b = result["rollout"], result["baseline_rollout"]
        ax.plot(r["steps"], r["median"], "o-", label="surrogate median")
        ax.plot(r["steps"], r["p95"], "o--", label="surrogate p95")
        ax.plot(b["steps"], b["median"], "s:", label="persistence median")
        ax.set_yscale("log")
        ax.set_xlabel("macro steps")
        ax.set_ylabel("relative L2 (channel 0: pressure / Ez)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save_figure(fig, out_dir / "rollout.png")
        names.append("rollout.png")
    w = arrays["worst"]
    if "pred" in w:
        fig, axes = subplots(1, 4, figsize=(14, 3.4))
        lim = float(np.abs(w["truth"]).max()) or 1.0
        for ax, a, title in zip(axes, (w["input"], w["truth"], w["pred"], w["pred"] - w["truth"]),
                                ("input", "truth", "surrogate", "surrogate - truth")):
            a = np.asarray(a).T
            im = ax.imshow(a, origin="lower", cmap="RdBu_r" if title != "input" else "viridis",
                           aspect="equal" if a.shape[0] == a.shape[1] else "auto",
                           **({} if title == "input" else {"vmin": -lim, "vmax": lim}))
            ax.set_title(title)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(f"worst test sample: relative L2 {w['err']:.3g}")
        save_figure(fig, out_dir / "worst_sample.png")
        names.append("worst_sample.png")
    return names


def _fmt(d: dict[str, Any]) -> str:
    return "| " + " | ".join(f"{d[k]:.4g}" if isinstance(d[k], float) else str(d[k])
                             for k in ("n", "mean", "median", "p95", "p99", "max")) + " |"


def markdown(result: dict[str, Any]) -> str:
    """The markdown report of :func:`evaluate_run`'s result."""
    lines = [f"# Evaluation of `{result['run_dir']}`", "",
             f"Task: **{result['task']}**; test set `{result['data']}` ({result['rel_l2']['n']} evaluations); "
             f"device: {result.get('device', '?')}.", "",
             "| metric | n | mean | median | p95 | p99 | max |", "|---|---|---|---|---|---|---|"]
    rows = [("rel L2 (one macro step / one pass)", result["rel_l2"]),
            ("rel L2, whole state (channels / std)", result.get("rel_l2_state")),
            (f"baseline rel L2 ({get_task(result['task']).baseline})", result["baseline_rel_l2"]),
            ("increment outside the FNO's modes (spectral tail)", result.get("spectral_tail")),
            ("ROI rel L2 (lesions + 3 cells)", result["roi"]),
            ("time-reversal inconsistency", result.get("time_reversal")),
            ("reciprocity gap (reciprocal traces)", result.get("reciprocity")),
            ("reciprocity gap of the solver's data", result.get("data_reciprocity"))]
    rows += [(f"band error: {k}", v) for k, v in result["bands"].items()]
    for name, split in result.get("splits", {}).items():
        rows += [(f"[{name}] rel L2", split["rel_l2"]), (f"[{name}] baseline", split["baseline_rel_l2"]),
                 (f"[{name}] ROI", split["roi"])]
    lines += [f"| {name} {_fmt(d)}" for name, d in rows if d is not None]
    if "rollout" in result:
        r, b = result["rollout"], result["baseline_rollout"]
        lines += ["", "Rollout (relative L2 of the pressure after n macro steps):", "",
                  "| n | median | p95 | persistence median |", "|---|---|---|---|"]
        lines += [f"| {n} | {m:.4g} | {p:.4g} | {q:.4g} |" for n, m, p, q in
                  zip(r["steps"], r["median"], r["p95"], b["median"])]
    sp = result.get("speed")
    if sp:
        lines += ["", f"Speed ({sp['platform']} {sp['device']}, batch {sp['batch']}; ratio = solver / surrogate, "
                  f"> 1: surrogate faster):", "", "| | surrogate s | solver s | ratio |", "|---|---|---|---|"]
        for k in ("forward", "forward_gradient"):
            if k in sp:
                lines.append(f"| {k} | {sp[k]['surrogate_s']:.4g} | {sp[k]['solver_s']:.4g} | {sp[k]['ratio']:.3g} |")
    if "trust" in result:
        lines += ["", "Trust (the calibrated error bound, label-free signal and shift monitor per test set; "
                  "`pdesurrogate calibrate`):", "", result["trust"]["markdown"]]
    lines += ["", *[f"![{f}]({f})" for f in result.get("figures", [])], ""]
    return "\n".join(lines)


def summary(result: dict[str, Any]) -> str:
    """A few lines of :func:`evaluate_run`'s result: median / p95 / p99 / max of the surrogate and
    the baseline, the extra test sets, the rollout end and the speed."""
    r, b = result["rel_l2"], result["baseline_rel_l2"]
    lines = [f"{'':22s}{'median':>10s}{'p95':>10s}{'p99':>10s}{'max':>10s}",
             f"{'surrogate rel L2':22s}" + "".join(f"{r[k]:10.4g}" for k in ("median", "p95", "p99", "max")),
             f"{'baseline rel L2':22s}" + "".join(f"{b[k]:10.4g}" for k in ("median", "p95", "p99", "max"))]
    for name, split in result.get("splits", {}).items():
        s = split["rel_l2"]
        lines.append(f"{('[' + name + ']')[:22]:22s}" + "".join(f"{s[k]:10.4g}" for k in ("median", "p95", "p99", "max")))
    if "rollout" in result:
        ro = result["rollout"]
        lines.append(f"rollout: median rel L2 after {ro['steps'][-1]} macro steps {ro['median'][-1]:.4g} "
                     f"(persistence {result['baseline_rollout']['median'][-1]:.4g})")
    sp = result.get("speed")
    if sp:
        parts = [f"{k} x{sp[k]['ratio']:.3g}" for k in ("forward", "forward_gradient") if k in sp]
        lines.append(f"speed vs solver ({sp['platform']}, batch {sp['batch']}; >1 = surrogate faster): " + ", ".join(parts))
    return "\n".join(lines)


def evaluate_run(run_dir: str | Path, data_dirs: list[str | Path] | str | Path, out_dir: str | Path | None = None, *,
                 checkpoint: str = "best", max_samples: int | None = None, batch: int = 8, speed: bool = True,
                 speed_batch: int = 4, speed_gradient: bool = True) -> dict[str, Any]:
    """Evaluate a training run on test datasets; writes JSON, markdown, PNGs and the per-sample
    errors (``per_sample.npz``) to ``out_dir``.

    Args:
        run_dir: the training run directory.
        data_dirs: the test dataset, then optional extra test sets (rare-lesion, OOD, ...).
        out_dir: report directory (default ``run_dir/evaluation``).
        checkpoint: ``"best"`` or ``"last"``.
        max_samples: evaluate at most this many samples per dataset.
        batch: samples per evaluation batch.
        speed: time the surrogate against the reference solver (``speed_batch`` samples at once).
        speed_gradient: include forward + gradient timings.
    """
    data_dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    if not data_dirs:
        raise ValueError("data_dirs must name at least one dataset")
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(spec["task"])
    model = load(run_dir, checkpoint=checkpoint)

    def one(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], Any, np.ndarray]:
        ds = _dataset(path)
        _check_compatible(ds, spec)
        idx = _test_indices(ds, spec, max_samples)
        res, arrays = task.evaluate(model, ds, idx, spec, batch)
        return res, arrays, ds, idx

    result, arrays, ds, idx = one(data_dirs[0])
    result = {"run_dir": str(run_dir), "task": task.name, "data": str(data_dirs[0]), "checkpoint": checkpoint,
              "device": f"{jax.default_backend()} {jax.devices()[0].device_kind}", **result, "splits": {}}
    names = ["test"]
    for path in data_dirs[1:]:
        res, _, ds_x, _ = one(path)
        name = ds_x.config.split if getattr(ds_x.config, "split", None) else Path(path).name
        result["splits"][str(name)] = res
        names.append(str(name))
    if speed:
        result["speed"] = task.speed(model, ds, ds.read(idx[:min(speed_batch, len(idx))]), spec, speed_gradient)
    result["figures"] = _figures(out_dir, result, arrays)
    if (run_dir / trust.TRUST_FILE).is_file():  # calibrated (`pdesurrogate calibrate`): bound, signal, monitor per set
        result["trust"] = trust.report(run_dir, data_dirs, out_dir, names, max_samples=max_samples, batch=batch,
                                       checkpoint=checkpoint)
        result["figures"].append(result["trust"]["figure"])
    save_npz(out_dir / "per_sample.npz", rel_l2=arrays["one"], baseline_rel_l2=arrays["base"], samples=idx)
    write_json(out_dir / "evaluation.json", result)
    write_text(out_dir / "evaluation.md", markdown(result))
    return result
