"""End-to-end evaluation of a trained surrogate against its reference solver data.

:func:`evaluate_run` reads a training run (``pdesurrogate train`` output) and one or more
datasets: the first is the test set (the run's own dataset: its test split, which neither trained
nor selected the checkpoint; any other: all samples); the others are extra test sets reported separately under ``splits``, keyed by
their ``data.split`` (``rare_lesion``, ``ood_contrast``, ...). It writes ``evaluation.json``,
``evaluation.md`` and PNG figures into ``out_dir`` and returns the JSON dict:

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

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.evaluation import metrics
from pdesurrogate.evaluation.speed import compare, stepper_speed
from pdesurrogate.models import FNO
from pdesurrogate.surrogate import FieldOperator, Surrogate, TraceOperator, read_spec
from training.data import open_dataset, phantoms, scenarios, task_fields, to_task_batch
from training.losses import reciprocity_gap, reciprocity_pairs
from training.physics import reversal_mask


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
    if spec["task"] == "stepper":
        dt = float(ds.manifest["constants"]["dt"])
        every = (ds.config.optics if spec.get("physics") == "maxwell" else ds.config.acoustic).save_every
        if not math.isclose(dt, spec["solver_dt"], rel_tol=1e-6) or every != spec["macro_steps"]:
            raise ValueError(f"dataset {ds.path} has dt={dt:.6g} s x {every} steps per frame; "
                             f"the surrogate's macro step is {spec['solver_dt']:.6g} s x {spec['macro_steps']} "
                             f"(pin data.acoustic.dt to the training set's)")
    if spec["task"] == "traces":
        ours, theirs = ds.manifest["constants"], spec["info"]
        for key in ("dt", "nt", "emitters", "ring_radius_m", "frequency_hz", "signal"):
            same = math.isclose(ours[key], theirs[key], rel_tol=1e-6) if isinstance(ours[key], float) else \
                ours[key] == theirs[key]
            if not same:
                raise ValueError(f"dataset {ds.path} has {key}={ours[key]}; the trace operator was trained with "
                                 f"{theirs[key]} (pin data.acoustic.dt / the ring to the training set's)")


def _batches(ds: Any, idx: np.ndarray, fields: list[str], batch: int):
    for s in range(0, len(idx), batch):
        yield ds.read(idx[s:s + batch], fields)


def _stats(per: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    return {k: metrics.distribution(np.concatenate(v)) if v else metrics.distribution([]) for k, v in per.items()}


# ----- stepper ------------------------------------------------------------------------------------
def evaluate_stepper(sur: Surrogate, ds: Any, idx: np.ndarray, stds: list[float], batch: int = 8,
                     reversal_mask: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Statistics of a learned stepper on samples ``idx`` of a trajectory dataset, plus arrays for figures.

    ``reversal_mask`` (``grid.shape``; 0 in and next to the absorbing layer) restricts the
    time-reversal inconsistency to where the physics is reversible, as the training loss does.
    """
    fields = task_fields("stepper", ds.fields) + ["lesion_mask"]

    @jax.jit
    def predict(states, media):
        one = jax.vmap(lambda u, m: sur.with_medium(m).step(u))  # one macro step from every frame
        B, T = states.shape[:2]
        nxt = one(states[:, :-1].reshape(B * (T - 1), *states.shape[2:]),
                  jnp.repeat(media, T - 1, axis=0)).reshape(B, T - 1, *states.shape[2:])

        def roll(u0, m):
            s = sur.with_medium(m)
            return jax.lax.scan(lambda u, _: (s.step(u),) * 2, u0, None, length=T - 1)[1]

        rolled = jax.vmap(roll)(states[:, 0], media)
        # R Phi R Phi u from every frame (frame 0 alone has zero velocity, a special state)
        tr = jax.vmap(lambda u, m: (lambda s: s.reverse(s.step(s.reverse(s.step(u)))))(sur.with_medium(m)))(
            states.reshape(B * T, *states.shape[2:]), jnp.repeat(media, T, axis=0))
        return nxt, rolled, tr

    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("one", "state", "base", "roi", "tr", "low", "mid", "high",
                                                        "tail")}
    fno = sur.model if isinstance(sur.model, FNO) else None
    roll_err, roll_base = [], []
    worst = {"err": -1.0}
    for raw in _batches(ds, idx, fields, batch):
        b = to_task_batch({k: v for k, v in raw.items() if k != "lesion_mask"}, "stepper")
        states, media = jnp.asarray(b["state"]), jnp.asarray(b["medium"])
        nxt, rolled, tr = jax.device_get(predict(states, media))
        states = np.asarray(states)
        B, T = states.shape[:2]
        truth = states[:, 1:]
        flat = lambda a: a.reshape(B * (T - 1), *a.shape[2:])  # noqa: E731
        one = metrics.relative_l2(flat(nxt[:, :, 0]), flat(truth[:, :, 0]))
        acc["one"].append(one)
        acc["state"].append(metrics.normalised_relative_l2(flat(nxt), flat(truth), stds))
        acc["base"].append(metrics.relative_l2(flat(states[:, :-1, 0]), flat(truth[:, :, 0])))
        if fno is not None:
            acc["tail"].append(metrics.spectral_tail(flat(truth[:, :, :1] - states[:, :-1, :1]), flat(truth[:, :, :1]),
                                                      fno.spectral[0].modes, fno.padding))
        for k, v in metrics.band_errors(flat(nxt[:, :, 0]), flat(truth[:, :, 0]), len(ds.config.shape)).items():
            acc[k].append(v)
        acc["roi"].append(metrics.roi_errors(nxt[:, :, 0], truth[:, :, 0], raw["lesion_mask"]))  # all steps
        if states.shape[2] > 1:
            w = 1.0 if reversal_mask is None else reversal_mask
            acc["tr"].append(metrics.normalised_relative_l2(tr * w, states.reshape(tr.shape) * w, stds))
        roll_err.append(np.stack([metrics.relative_l2(rolled[:, t, 0], truth[:, t, 0]) for t in range(T - 1)], 1))
        roll_base.append(np.stack([metrics.relative_l2(states[:, 0, 0], truth[:, t, 0]) for t in range(T - 1)], 1))
        i = int(np.argmax(one))
        if one[i] > worst["err"]:
            worst = {"err": float(one[i]), "pred": flat(nxt)[i, 0], "truth": flat(truth)[i, 0],
                     "input": flat(states[:, :-1])[i, 0]}
    s = _stats(acc)
    out = {"rel_l2": s["one"], "rel_l2_state": s["state"], "baseline_rel_l2": s["base"],
           "bands": {k: s[k] for k in metrics.BANDS}, "roi": s["roi"],
           "time_reversal": s["tr"] if acc["tr"] else None,
           "spectral_tail": s["tail"] if acc["tail"] else None,
           "rollout": metrics.rollout_curve(np.concatenate(roll_err)),
           "baseline_rollout": metrics.rollout_curve(np.concatenate(roll_base))}
    return out, {"worst": worst, "one": np.concatenate(acc["one"]), "base": np.concatenate(acc["base"])}


def stepper_solver(spec: dict[str, Any]):
    """``(make, read)``: ``make(medium (M, *shape))`` -> the solver Stepper of the data (scheme, PML,
    time step) and ``read(state)`` -> its channel-0 field (pressure or Ez)."""
    from solvers import Grid, acoustic, maxwell

    grid = Grid(tuple(spec["shape"]), spec["spacing"])
    if spec.get("physics") == "maxwell":
        def make_maxwell(m: jax.Array):
            return maxwell.Stepper(grid, maxwell.Medium(permittivity=m[0]), pml_size=spec["pml_size"],
                                   courant=spec["courant"])

        return make_maxwell, lambda state: state.e[0]

    def make(m: jax.Array):
        return acoustic.Stepper(grid, acoustic.Medium(sound_speed=m[0], density=m[1]), scheme=spec["scheme"],
                                pml_size=spec["pml_size"], dt=spec["solver_dt"], fd_order=spec.get("fd_order", 4),
                                fd_coefficients=spec.get("fd_coefficients", "taylor"))

    return make, lambda state: state.p


# ----- field operator -----------------------------------------------------------------------------
def homogeneous_response(ds: Any) -> np.ndarray:
    """The solver's output for the homogeneous background medium: the field operators' trivial
    baseline, and the offset they learn on top of.

    - ``optics``: the incident fields ``(F, *shape)`` (background refractive index);
    - ``usct``: the water traces ``(n_elements, nt, n_elements)`` with every ring element emitting
      in turn (row ``e``: element ``e`` emits), so that any element's shot has its baseline.
    """
    config = ds.config
    shape = tuple(config.shape)
    if ds.manifest["scenario"] == "usct":
        a = config.acoustic
        sc = scenarios.build(dataclasses.replace(config, acoustic=dataclasses.replace(a, n_shots=a.n_elements)))
        if not math.isclose(sc.constants["dt"], float(ds.manifest["constants"]["dt"]), rel_tol=1e-9):
            raise ValueError(f"dataset {ds.path}: its time step differs from its config's (regenerate it)")
        water = {"sound_speed": jnp.full(shape, phantoms.WATER_SOUND_SPEED, jnp.float32),
                 "density": jnp.full(shape, phantoms.WATER_DENSITY, jnp.float32)}
        return np.asarray(jax.jit(sc.simulate)(water)["traces"])
    if ds.manifest["scenario"] != "optics":
        raise ValueError(f"dataset scenario {ds.manifest['scenario']!r} has no field-operator baseline "
                         f"(optics or usct)")
    n_b = float(ds.manifest["constants"].get("background_index", 1.0))
    out = jax.jit(scenarios.build(config).simulate)({"refractive_index": jnp.full(shape, n_b, jnp.float32)})
    return np.asarray(out["field"])


def evaluate_field(op: FieldOperator, ds: Any, idx: np.ndarray, batch: int = 8
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Statistics of a field operator on samples ``idx`` of an optics dataset."""
    predict = jax.jit(jax.vmap(lambda m: op(m)))
    incident = homogeneous_response(ds)
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("one", "base", "roi", "low", "mid", "high")}
    worst = {"err": -1.0}
    for raw in _batches(ds, idx, ["refractive_index", "field", "lesion_mask"], batch):
        media = jnp.asarray(raw["refractive_index"])[:, None]
        pred = np.asarray(predict(media))
        truth = raw["field"]
        e = metrics.relative_l2(pred, truth)
        acc["one"].append(e)
        acc["base"].append(metrics.relative_l2(np.broadcast_to(incident, truth.shape), truth))
        for k, v in metrics.band_errors(pred, truth, 2).items():
            acc[k].append(v)
        acc["roi"].append(metrics.roi_errors(pred, truth, raw["lesion_mask"]))
        i = int(np.argmax(e))
        if e[i] > worst["err"]:
            worst = {"err": float(e[i]), "pred": np.real(pred[i, 0]), "truth": np.real(truth[i, 0]),
                     "input": raw["refractive_index"][i]}
    s = _stats(acc)
    return ({"rel_l2": s["one"], "baseline_rel_l2": s["base"], "bands": {k: s[k] for k in metrics.BANDS},
             "roi": s["roi"]},
            {"worst": worst, "one": np.concatenate(acc["one"]), "base": np.concatenate(acc["base"])})


# ----- USCT trace operator ------------------------------------------------------------------------
def evaluate_traces(op: TraceOperator, ds: Any, idx: np.ndarray, batch: int = 8
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Statistics of a trace operator on samples ``idx`` of a ``usct`` dataset, per shot.

    The baseline is the water traces of the same shot; the bands split each trace's temporal
    spectrum around the source frequency (:func:`.metrics.frequency_band_index`). The emitting
    element's own trace is left out of every statistic (:func:`training.data.scenarios.receiver_mask`).
    """
    emitters = np.asarray(ds.manifest["constants"]["emitters"])
    predict = jax.jit(jax.vmap(lambda m: op.measure(m, emitters)))
    keep = scenarios.receiver_mask(emitters, ds.fields["traces"].shape[-1])[:, None, :]  # (S, 1, n_elements)
    water = np.where(keep, np.asarray(op.offset)[emitters], 0.0)  # (S, nt, n_elements)
    c = ds.manifest["constants"]
    band = metrics.frequency_band_index(ds.fields["traces"].shape[1], float(c["dt"]), float(c["frequency_hz"]))
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("one", "base", "low", "mid", "high", "rec", "rec_data")}
    worst = {"err": -1.0}
    gap = jax.jit(jax.vmap(lambda t: jnp.sqrt(reciprocity_gap(t, emitters))))
    has_pairs = len(reciprocity_pairs(emitters)[0]) > 0
    for raw in _batches(ds, idx, ["sound_speed", "density", "traces"], batch):
        media = jnp.stack([jnp.asarray(raw["sound_speed"]), jnp.asarray(raw["density"])], 1)
        pred = np.where(keep, np.asarray(predict(media)), 0.0)
        truth = np.where(keep, raw["traces"], 0.0)
        B, S = truth.shape[:2]
        flat = lambda a: a.reshape(B * S, *a.shape[2:])  # noqa: E731
        e = metrics.relative_l2(flat(pred), flat(truth))
        acc["one"].append(e)
        acc["base"].append(metrics.relative_l2(flat(np.broadcast_to(water, truth.shape)), flat(truth)))
        if has_pairs:
            acc["rec"].append(np.asarray(gap(jnp.asarray(pred))))
            acc["rec_data"].append(np.asarray(gap(jnp.asarray(truth))))
        for k, v in metrics.band_errors(np.swapaxes(flat(pred), 1, 2), np.swapaxes(flat(truth), 1, 2), 1,
                                        band=band).items():
            acc[k].append(v)
        i = int(np.argmax(e))
        if e[i] > worst["err"]:
            worst = {"err": float(e[i]), "pred": flat(pred)[i], "truth": flat(truth)[i],
                     "input": raw["sound_speed"][i // S]}
    s = _stats(acc)
    return ({"rel_l2": s["one"], "baseline_rel_l2": s["base"], "bands": {k: s[k] for k in metrics.BANDS},
             "roi": None, "reciprocity": s["rec"] if acc["rec"] else None,
             "data_reciprocity": s["rec_data"] if acc["rec_data"] else None},
            {"worst": worst, "one": np.concatenate(acc["one"]), "base": np.concatenate(acc["base"])})


# ----- figures and report -------------------------------------------------------------------------
def _figures(out_dir: Path, result: dict[str, Any], arrays: dict[str, Any]) -> list[str]:
    from pdesurrogate.io import save_figure, subplots

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
            ("baseline rel L2 (persistence / incident field / water traces)", result["baseline_rel_l2"]),
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
    lines += ["", *[f"![{f}]({f})" for f in result.get("figures", [])], ""]
    return "\n".join(lines)


def evaluate_run(run_dir: str | Path, data_dirs: list[str | Path] | str | Path, out_dir: str | Path | None = None, *,
                 checkpoint: str = "best", max_samples: int | None = None, batch: int = 8, speed: bool = True,
                 speed_batch: int = 4, speed_gradient: bool = True) -> dict[str, Any]:
    """Evaluate a training run on test datasets; writes JSON, markdown and PNGs to ``out_dir``.

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
    from pdesurrogate.io import write_json, write_text

    data_dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    if not data_dirs:
        raise ValueError("data_dirs must name at least one dataset")
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    task = spec["task"]
    model = {"stepper": Surrogate, "field": FieldOperator, "traces": TraceOperator}[task].load(
        run_dir, checkpoint=checkpoint)
    stds = spec["state_std"] if task == "stepper" else None

    def one(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], Any, np.ndarray]:
        ds = _dataset(path)
        _check_compatible(ds, spec)
        idx = _test_indices(ds, spec, max_samples)
        if task == "stepper":
            mask = reversal_mask(tuple(spec["shape"]), int(spec.get("pml_size", 0)))
            res, arrays = evaluate_stepper(model, ds, idx, stds, batch, reversal_mask=mask)
        elif task == "traces":
            res, arrays = evaluate_traces(model, ds, idx, batch)
        else:
            res, arrays = evaluate_field(model, ds, idx, batch)
        return res, arrays, ds, idx

    result, arrays, ds, idx = one(data_dirs[0])
    result = {"run_dir": str(run_dir), "task": task, "data": str(data_dirs[0]), "checkpoint": checkpoint,
              "device": f"{jax.default_backend()} {jax.devices()[0].device_kind}", **result, "splits": {}}
    for path in data_dirs[1:]:
        res, _, ds_x, _ = one(path)
        name = ds_x.config.split if getattr(ds_x.config, "split", None) else Path(path).name
        result["splits"][str(name)] = res
    if speed:
        n = min(speed_batch, len(idx))
        sample = ds.read(idx[:n])
        if task == "stepper":
            media = jnp.stack([jnp.asarray(sample[n]) for n in spec["medium_names"]], 1)
            T = sample["ez" if spec.get("physics") == "maxwell" else "pressure"].shape[1]
            make, read = stepper_solver(spec)
            result["speed"] = stepper_speed(model, make, media, jnp.asarray(sample[spec.get("initial_field", "p0")]),
                                            T - 1, gradient=speed_gradient, read=read)
        elif task == "traces":
            sim = scenarios.build(ds.config).simulate
            media = jnp.stack([jnp.asarray(sample["sound_speed"]), jnp.asarray(sample["density"])], 1)
            emitters = ds.manifest["constants"]["emitters"]
            result["speed"] = compare(jax.vmap(lambda m: model.measure(m, emitters)),
                                      jax.vmap(lambda m: sim({"sound_speed": m[0], "density": m[1]})["traces"]),
                                      media, gradient=speed_gradient, repeats=2)
        else:
            sim = scenarios.build(ds.config).simulate
            media = jnp.asarray(sample["refractive_index"])[:, None]
            result["speed"] = compare(jax.vmap(lambda m: model(m)),
                                      jax.vmap(lambda m: sim({"refractive_index": m[0]})["field"]), media,
                                      gradient=speed_gradient, repeats=2)
    result["figures"] = _figures(out_dir, result, arrays)
    write_json(out_dir / "evaluation.json", result)
    write_text(out_dir / "evaluation.md", markdown(result))
    return result
