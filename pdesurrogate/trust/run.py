"""Trust for a training run: calibrate on a dataset, assess on test sets, guard a forward model.

These functions read datasets (:mod:`training.data`) and build physics residuals
(:mod:`training.physics`, :mod:`training.losses`), so, like the CLI, they import ``training``
(inside the functions); the rest of :mod:`pdesurrogate.trust` imports only ``solvers`` and
``pdesurrogate``. Supported runs: optical field operators (``field``: Helmholtz residual), USCT
trace operators (``traces``: reciprocity) and steppers (``stepper``: the wave or Yee residual of
one macro step and the time-reversal inconsistency), single or ensembles (``RUN/members/<k>``,
adding the members' disagreement ``spread``). A stepper's samples are its one-step predictions
from every frame of every trajectory (the error: relative L2 of channel 0, as ``pdesurrogate evaluate``).

Datasets: the run's own dataset contributes its validation split to :func:`calibrate` and its
test split to :func:`assess` (as ``pdesurrogate evaluate``); any other dataset all its samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.evaluation.metrics import auroc, relative_l2, spearman
from pdesurrogate.trust.calibration import Calibration, fit_calibration
from pdesurrogate.trust.conformal import coverage, pointwise_band
from pdesurrogate.trust.ensemble import Ensemble, member_dirs
from pdesurrogate.trust.guarded import Guarded
from pdesurrogate.trust.monitor import medium_features
from pdesurrogate.trust.signals import relative_spread, rms, time_reversal

ROLES = ("calibration", "test")
_TINY = 1e-30


def run_spec(run_dir: str | Path) -> dict[str, Any]:
    """The ``surrogate.json`` of a run, or of its first member for an ensemble run."""
    from pdesurrogate.surrogate import read_spec

    members = member_dirs(run_dir)
    return read_spec(members[0] if members else run_dir)


def load_operator(run_dir: str | Path, *, checkpoint: str = "best") -> Any:
    """The run's forward model: an :class:`Ensemble` when ``run_dir/members`` holds >= 2 runs, else the
    :class:`~pdesurrogate.FieldOperator` / :class:`~pdesurrogate.TraceOperator` /
    :class:`~pdesurrogate.Surrogate` of ``run_dir``."""
    from pdesurrogate.surrogate import FieldOperator, Surrogate

    if len(member_dirs(run_dir)) >= 2:
        return Ensemble.load(run_dir, checkpoint=checkpoint)
    load = Surrogate.load if run_spec(run_dir)["task"] == "stepper" else FieldOperator.load
    return load(run_dir, checkpoint=checkpoint)


def signal_function(operator: Any, spec: dict[str, Any]) -> tuple[tuple[str, ...], Callable[..., tuple[Any, Any]]]:
    """``(names, fn)``: ``fn(*inputs)`` -> ``(prediction, signals (J,))`` for one sample.

    Field operators (``inputs = (medium (M, *shape),)``): the prediction is the fields
    ``(F, *shape)`` and the signals the RMS Helmholtz residual of the predicted total field
    (``helmholtz``); trace operators (``inputs = (medium,)``): all shots ``(S, nt, n_elements)`` of
    the data's emitters and the reciprocity gap of their scattered traces (``reciprocity``);
    steppers (``inputs = (state (C, *shape), medium)``): see :func:`stepper_signal_function`.
    Ensembles predict the members' mean and add ``spread`` (:func:`~pdesurrogate.trust.signals.relative_spread`).
    """
    ensemble = isinstance(operator, Ensemble)
    if spec["task"] == "stepper":
        return stepper_signal_function(operator, spec)
    if spec["task"] == "field":
        from solvers.grid import Grid
        from training.physics import HelmholtzResidual

        info = spec["info"]
        residual = HelmholtzResidual(Grid(tuple(spec["shape"]), spec["spacing"]), float(info["wavelength_m"]),
                                     int(spec["pml_size"]), background_index=float(info.get("background_index", 1.0)))

        def physics(pred: jax.Array, medium: jax.Array) -> jax.Array:
            return rms(residual(pred, medium))

        forward: Callable[[Any, jax.Array], jax.Array] = lambda op, m: op(m)  # noqa: E731
        names: tuple[str, ...] = ("helmholtz",)
    else:
        from training.losses import reciprocity_gap

        emitters = np.asarray(spec["info"]["emitters"])
        template = operator.template if ensemble else operator
        water = template.offset[emitters]

        def physics(pred: jax.Array, medium: jax.Array) -> jax.Array:
            return jnp.sqrt(reciprocity_gap(pred - water.astype(pred.dtype), emitters) + _TINY)

        forward = lambda op, m: op.measure(m, emitters)  # noqa: E731
        names = ("reciprocity",)

    def fn(medium: jax.Array) -> tuple[jax.Array, jax.Array]:
        if not ensemble:
            pred = forward(operator, medium)
            return pred, physics(pred, medium)[None]
        members = operator.apply(forward, medium)
        pred = jnp.mean(members, axis=0)
        return pred, jnp.stack([physics(pred, medium), relative_spread(members)])

    return names + (("spread",) if ensemble else ()), fn


def stepper_signal_function(operator: Any, spec: dict[str, Any]) -> tuple[tuple[str, ...], Callable[..., Any]]:
    """``(names, fn)`` of a stepper run: ``fn(state, medium)`` -> ``(next state, signals)``.

    Signals: ``residual``, the RMS of the wave (acoustic, states with velocity) or Yee (Maxwell)
    residual of the predicted step (:mod:`training.physics`, the data's scheme: 0 for the solver's
    own step); ``time_reversal``, ``||R Phi(R Phi(u)) - u|| / ||u||`` with channels scaled as the
    network sees them, outside the absorbing layer (states with velocity / H); ``spread`` for
    ensembles (the members' next states; the time reversal of member 0).
    """
    from solvers.grid import Grid
    from training.physics import WaveResidual, YeeResidual, reversal_mask

    grid = Grid(tuple(spec["shape"]), spec["spacing"])
    channels = len(spec["reversal_signs"])
    if channels == 1 and not isinstance(operator, Ensemble):
        raise ValueError("a pressure-only stepper has no one-step label-free signal (the wave residual needs "
                         "velocity, time reversal too); train an ensemble (training.ensemble) for its spread")
    if spec.get("physics") == "maxwell":
        residual = YeeResidual(grid, spec["macro_steps"], spec["courant"], spec["pml_size"])
    else:
        residual = WaveResidual(grid, spec["solver_dt"] * spec["macro_steps"], spec["scheme"], spec["fd_order"],
                                spec["pml_size"], substeps=spec["macro_steps"],
                                fd_coefficients=spec.get("fd_coefficients", "taylor"))
    mask = reversal_mask(tuple(spec["shape"]), int(spec["pml_size"]))
    scales = np.asarray(spec["state_scales"], np.float32).reshape((-1,) + (1,) * grid.ndim)
    weights = jnp.asarray(scales if mask is None else scales * mask[None])
    names = ("residual", "time_reversal") if channels > 1 else ()

    def fn(state: jax.Array, medium: jax.Array) -> tuple[jax.Array, jax.Array]:
        if isinstance(operator, Ensemble):
            members = operator.apply(lambda op, u, m: op.with_medium(m).step(u), state, medium)
            pred, first = jnp.mean(members, axis=0), operator.member(0).with_medium(medium)
            extra = [relative_spread(members)]
        else:
            first = operator.with_medium(medium)
            pred, extra = first.step(state), []
        own = [rms(residual(jnp.stack([state, pred]), medium)), time_reversal(first, state, weights)] \
            if channels > 1 else []
        return pred, jnp.stack(own + extra)

    return names + (("spread",) if isinstance(operator, Ensemble) else ()), fn


def monitor_features(signals: np.ndarray, media: np.ndarray) -> np.ndarray:
    """Monitor features ``(B, d)``: the medium descriptors (:func:`~pdesurrogate.trust.monitor.medium_features`)
    and the log signals, of signals ``(B, J)`` and media ``(B, M, *shape)``."""
    return np.concatenate([medium_features(media), np.log(np.maximum(np.asarray(signals, np.float64), _TINY))], 1)


def _indices(ds: Any, spec: dict[str, Any], role: str, max_samples: int | None) -> np.ndarray:
    own = ds.manifest.get("fingerprint") == spec.get("data_fingerprint")
    key = "val_indices" if role == "calibration" else "test_indices"
    idx = np.arange(*spec[key]) if own else np.arange(len(ds))
    return idx if max_samples is None else idx[:max_samples]


def _batches(ds: Any, spec: dict[str, Any], idx: np.ndarray, batch: int):
    """``(inputs, truth, media, keep)`` per batch of samples ``idx``: the inputs of
    :func:`signal_function`'s ``fn`` stacked on a leading axis, the solver's answers, the media
    ``(B, M, *shape)`` and what counts in the error (trace operators: not the emitting element's own
    trace, :func:`training.data.scenarios.receiver_mask`; else 1). Steppers: one sample per frame
    but the last of every trajectory."""
    from training.data import scenarios, task_fields, to_task_batch

    task = spec["task"]
    for s in range(0, len(idx), batch):
        rows = idx[s:s + batch]
        if task == "stepper":
            b = to_task_batch(ds.read(rows, task_fields("stepper", ds.fields)), "stepper")
            states, media = b["state"], b["medium"]
            n, steps = states.shape[0], states.shape[1] - 1
            media = np.repeat(media, steps, axis=0)
            yield ((states[:, :-1].reshape(n * steps, *states.shape[2:]), media),
                   states[:, 1:].reshape(n * steps, *states.shape[2:]), media, 1.0)
        elif task == "field":
            raw = ds.read(rows, ["refractive_index", "field"])
            media = raw["refractive_index"][:, None]
            yield (media,), raw["field"], media, 1.0
        else:
            raw = ds.read(rows, ["sound_speed", "density", "traces"])
            media = np.stack([raw["sound_speed"], raw["density"]], 1)
            keep = scenarios.receiver_mask(np.asarray(spec["info"]["emitters"]), raw["traces"].shape[-1])
            yield (media,), raw["traces"], media, keep[:, None, :]


def measure_set(run_dir: str | Path, data_dir: str | Path, role: str = "test", *, operator: Any = None,
                max_samples: int | None = None, batch: int = 16, checkpoint: str = "best") -> dict[str, Any]:
    """Errors, signals and monitor features of a run on a dataset.

    Args:
        role: ``"calibration"`` (the run's own dataset: its validation split) or ``"test"`` (its
            test split); another dataset contributes all its samples either way.
        operator: the loaded forward model (default :func:`load_operator`).

    Returns:
        ``names`` (J,), ``errors`` ``(n,)`` (relative L2 against the dataset's solver answer),
        ``signals`` ``(n, J)``, ``features`` ``(n, d)``, and for ensembles of field operators the
        pointwise ``band_errors`` / ``band_scales`` ``(n, F, *shape)`` (|error| and the members' spread).
    """
    from training.data import open_dataset

    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    spec = run_spec(run_dir)
    operator = load_operator(run_dir, checkpoint=checkpoint) if operator is None else operator
    ds = open_dataset(data_dir)
    if not ds.complete:
        raise ValueError(f"dataset {data_dir} is incomplete")
    if list(ds.config.shape) != list(spec["shape"]) or not math.isclose(ds.config.spacing, spec["spacing"]):
        raise ValueError(f"dataset {data_dir} has grid {list(ds.config.shape)} x {ds.config.spacing} m; the run was "
                         f"trained on {spec['shape']} x {spec['spacing']} m")
    names, fn = signal_function(operator, spec)
    ensemble_field = isinstance(operator, Ensemble) and spec["task"] == "field"

    @jax.jit
    def evaluate(*inputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        pred, sig = jax.vmap(fn)(*inputs)
        if not ensemble_field:
            return pred, sig, None
        members = jax.vmap(lambda m: operator.apply(lambda op, x: op(x), m))(*inputs)
        return pred, sig, jnp.sqrt(jnp.mean(jnp.abs(members - pred[:, None]) ** 2, axis=1))

    idx = _indices(ds, spec, role, max_samples)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("errors", "signals", "features", "band_errors",
                                                        "band_scales")}
    for inputs, truth, media, keep in _batches(ds, spec, idx, batch):
        pred, sig, spread = jax.device_get(evaluate(*map(jnp.asarray, inputs)))
        pred, truth = np.where(keep, pred, 0), np.where(keep, truth, 0)
        # steppers: channel 0 (pressure / Ez), as pdesurrogate evaluate
        out["errors"].append(relative_l2(pred[:, 0], truth[:, 0]) if spec["task"] == "stepper" else
                             relative_l2(pred, truth))
        out["signals"].append(np.asarray(sig, np.float64))
        out["features"].append(monitor_features(sig, media))
        if spread is not None:
            out["band_errors"].append(np.abs(pred - truth))
            out["band_scales"].append(np.asarray(spread))
    result = {"names": names, "n": len(idx), "data": str(data_dir)}
    return result | {k: np.concatenate(v) for k, v in out.items() if v}


def _band_scales(spread: np.ndarray) -> np.ndarray:
    """Positive pointwise scales: the members' spread with a floor of 1% of each sample's mean spread."""
    floor = 0.01 * spread.reshape(len(spread), -1).mean(1).reshape((-1,) + (1,) * (spread.ndim - 1))
    return spread + floor + _TINY


def calibrate(run_dir: str | Path, data_dir: str | Path, alpha: float = 0.1, *, tolerance: float | None = None,
              max_samples: int | None = None, batch: int = 16, checkpoint: str = "best", seed: int = 0,
              fit_fraction: float = 0.3, window: int = 16) -> Calibration:
    """Calibrate a run's error bound, tolerance and shift monitor on a dataset; saves ``run_dir/trust.json``.

    Args:
        run_dir: a field-operator, trace-operator or stepper run (or an ensemble run with ``members/``).
        data_dir: the calibration dataset (data like the use: held-out phantoms, inversion iterates).
        alpha: miscoverage of the bound, in (0, 1).
        tolerance: the acceptable relative L2 error (default: the calibration errors' ``1 - alpha`` quantile).
        max_samples: use at most this many samples.
        batch: samples per evaluation batch.
        checkpoint: ``"best"`` or ``"last"``.
        seed: seed of the split between the combiner's fit and the conformal quantile.
        fit_fraction: share of samples that fit the signal combiner.
        window: inputs per window of the monitor's MMD test.
    """
    m = measure_set(run_dir, data_dir, "calibration", max_samples=max_samples, batch=batch, checkpoint=checkpoint)
    band = (pointwise_band(m["band_errors"], _band_scales(m["band_scales"]), alpha, alpha)
            if "band_scales" in m else None)
    cal = fit_calibration(m["signals"], m["errors"], m["features"], m["names"], alpha, tolerance=tolerance,
                          fit_fraction=fit_fraction, band=band, seed=seed, window=window,
                          info={"data": str(data_dir), "checkpoint": checkpoint})
    cal.save(run_dir)
    return cal


def assess(run_dir: str | Path, data_dir: str | Path, *, calibration: Calibration | None = None,
           max_samples: int | None = None, batch: int = 16, checkpoint: str = "best",
           keep_arrays: bool = False) -> dict[str, Any]:
    """The trust figures of a calibrated run on one test set.

    Returns a dict: ``coverage`` (share of samples with error <= bound) and ``nominal`` (``1 - alpha``);
    ``spearman`` (predicted error against true error); ``auroc`` (the predicted error flagging
    errors above the calibrated ``tolerance``; NaN when no or every sample is above);
    ``flagged`` (share of samples in monitor windows whose MMD p-value is at most the level; windows
    of consecutive samples) and ``flagged_single`` (share with their own p-value at most the level);
    ``n``; ``tolerance``, ``above_tolerance`` (share of samples above it); the guarded decision
    (``bound <= tolerance`` and no monitor flag): ``accepted`` share and ``accepted_above_tolerance``
    (share of the accepted above tolerance); ``band_coverage`` (ensembles of field operators: share
    of samples with at least ``1 - alpha`` of their points inside the pointwise band); with
    ``keep_arrays`` also ``errors`` and ``bounds`` lists.
    """
    cal = Calibration.load(run_dir) if calibration is None else calibration
    m = measure_set(run_dir, data_dir, "test", max_samples=max_samples, batch=batch, checkpoint=checkpoint)
    if tuple(m["names"]) != cal.names:
        raise ValueError(f"the calibration's signals {list(cal.names)} differ from the run's {list(m['names'])}; "
                         f"recalibrate")
    e, predicted = m["errors"], cal.predicted_error(m["signals"])
    bounds = cal.quantile * predicted
    above = e > cal.tolerance
    single = cal.monitor.sample_pvalues(m["features"]) <= cal.monitor.level
    windows = cal.monitor.window_flags(m["features"]) if len(e) >= 2 else single
    accepted = (bounds <= cal.tolerance) & ~windows & ~single
    report = {"n": int(len(e)), "data": m["data"], "coverage": coverage(e, bounds), "nominal": 1.0 - cal.alpha,
              "spearman": spearman(predicted, e), "auroc": auroc(predicted, above), "flagged": float(windows.mean()),
              "flagged_single": float(single.mean()), "tolerance": cal.tolerance,
              "above_tolerance": float(above.mean()), "accepted": float(accepted.mean()),
              "accepted_above_tolerance": float(above[accepted].mean()) if accepted.any() else float("nan"),
              "median_error": float(np.median(e)), "median_bound": float(np.median(bounds)),
              "signals": list(cal.names)}
    if cal.band is not None and "band_scales" in m:
        inside = m["band_errors"] <= cal.band * _band_scales(m["band_scales"])
        report["band_coverage"] = float(np.mean(inside.reshape(len(e), -1).mean(1) >= 1.0 - cal.alpha))
    if keep_arrays:
        report |= {"errors": e.tolist(), "bounds": bounds.tolist()}
    return report


def bound_figure(path: str | Path, reports: dict[str, dict[str, Any]]) -> None:
    """A PNG of predicted bound against true error, one panel per test set (``assess(..., keep_arrays=True)``
    reports by set name), with the diagonal and the tolerance."""
    from pdesurrogate.io import save_figure, subplots

    fig, axes = subplots(1, len(reports), figsize=(4.2 * len(reports), 4.0), squeeze=False, layout="constrained")
    for ax, (name, r) in zip(axes[0], reports.items()):
        e, b = np.asarray(r["errors"]), np.asarray(r["bounds"])
        ax.loglog(e, b, ".", ms=3, alpha=0.6)
        lo, hi = min(e.min(), b.min()), max(e.max(), b.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="bound = error")
        ax.axvline(r["tolerance"], color="r", lw=0.8, label="tolerance")
        ax.axhline(r["tolerance"], color="r", lw=0.8, ls=":")
        ax.set_title(f"{name}: coverage {r['coverage']:.2f} (nominal {r['nominal']:.2f})", fontsize=9)
        ax.set_xlabel("true relative L2 error")
        ax.set_ylabel("conformal bound")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def markdown_table(reports: dict[str, dict[str, Any]]) -> str:
    """The trust figures of several test sets as a markdown table (for evaluation reports)."""
    keys = ("n", "coverage", "nominal", "spearman", "auroc", "flagged", "flagged_single", "above_tolerance",
            "accepted", "accepted_above_tolerance")
    lines = ["| set | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in reports.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                                 for k in keys) + " |")
    return "\n".join(lines)


def guard(run_dir: str | Path, solver: Callable[..., Any], tolerance: float | None = None, *,
          checkpoint: str = "best", check_every: int = 10, gamma: float = 0.01) -> Guarded:
    """The guarded forward model of a calibrated run: ``guarded(medium)`` -> fields (field operators)
    or all shots (trace operators); ``guarded(state, medium)`` -> the next state (steppers).

    Its ``operator`` (what :meth:`Guarded.select` returns when the surrogate may answer) is the
    prediction of :func:`signal_function`'s ``fn`` (an ensemble's mean), differentiable in its inputs.

    Args:
        run_dir: a run calibrated with :func:`calibrate`.
        solver: the reference forward model of the same inputs, ``solver(*inputs) -> answer`` of
            the prediction's shape.
        tolerance: acceptable relative L2 (default the calibration's).
        check_every, gamma: see :class:`Guarded`.
    """
    cal = Calibration.load(run_dir)
    operator = load_operator(run_dir, checkpoint=checkpoint)
    spec = run_spec(run_dir)
    names, fn = signal_function(operator, spec)
    if names != cal.names:
        raise ValueError(f"the calibration's signals {list(cal.names)} differ from the run's {list(names)}; "
                         f"recalibrate")

    def features(signals: np.ndarray, *inputs: Any) -> np.ndarray:  # the medium is the last input
        return monitor_features(signals[None], np.asarray(inputs[-1])[None])[0]

    return Guarded(lambda *inputs: fn(*inputs)[0], cal, tolerance, solver=solver, signals=jax.jit(fn),
                   features=features, check_every=check_every, gamma=gamma)


def report(run_dir: str | Path, data_dirs: Sequence[str | Path], out_dir: str | Path,
           names: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """The trust section of an evaluation report: :func:`assess` on every test set, the figure of
    bound against error (``out_dir/trust_bounds.png``, :func:`bound_figure`) and the markdown table.

    Returns ``{"sets": {name: assess report}, "markdown": table, "figure": "trust_bounds.png"}``;
    ``kwargs`` go to :func:`assess` (``max_samples``, ``batch``, ``checkpoint``, ``calibration``).
    """
    reports = assess_sets(run_dir, data_dirs, names, keep_arrays=True, **kwargs)
    bound_figure(Path(out_dir) / "trust_bounds.png", reports)
    sets = {k: {m: v for m, v in r.items() if m not in ("errors", "bounds")} for k, r in reports.items()}
    return {"sets": sets, "markdown": markdown_table(sets), "figure": "trust_bounds.png"}


def assess_sets(run_dir: str | Path, data_dirs: Sequence[str | Path], names: Sequence[str] | None = None,
                **kwargs: Any) -> dict[str, dict[str, Any]]:
    """:func:`assess` on several test sets, keyed by ``names`` (default the directory names)."""
    names = [Path(d).name for d in data_dirs] if names is None else list(names)
    if len(names) != len(data_dirs):
        raise ValueError(f"names must give one name per dataset ({len(data_dirs)}), got {len(names)}")
    return {n: assess(run_dir, d, **kwargs) for n, d in zip(names, data_dirs)}
