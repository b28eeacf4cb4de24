"""Trust for a training run: calibrate on a dataset, assess on test sets, guard a forward model.

These functions read datasets (:mod:`training.data`) and ask the run's surrogate kind
(:func:`training.tasks.get_task` of ``surrogate.json``'s ``task``) for what differs per kind: the
samples (:meth:`~training.tasks.Task.trust_samples`), the label-free signals
(:meth:`~training.tasks.Task.trust_signals`: Helmholtz residual for field operators, reciprocity for
trace operators, wave / Yee residual and time-reversal inconsistency for steppers) and the error
(:meth:`~training.tasks.Task.trust_error`). So, like the CLI, they import ``training`` (inside the
functions); the rest of :mod:`pdesurrogate.trust` imports only ``solvers`` and ``pdesurrogate``.
Runs are single surrogates or ensembles (``RUN/members/<k>``, adding the members' disagreement ``spread``).

Datasets: the run's own dataset contributes its validation split to :func:`calibrate` and its
test split to :func:`assess` (as ``pdesurrogate evaluate``); any other dataset all its samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.evaluation.metrics import auroc, spearman
from pdesurrogate.trust.calibration import Calibration, fit_calibration
from pdesurrogate.trust.conformal import coverage, pointwise_band
from pdesurrogate.trust.ensemble import Ensemble, member_dirs
from pdesurrogate.trust.guarded import Guarded
from pdesurrogate.trust.monitor import medium_features
from pdesurrogate.trust.signals import relative_spread

if TYPE_CHECKING:
    from training.tasks import Task, TrustSignals

ROLES = ("calibration", "test")
_TINY = 1e-30


def run_spec(run_dir: str | Path) -> dict[str, Any]:
    """The ``surrogate.json`` of a run, or of its first member for an ensemble run."""
    from pdesurrogate.surrogate import read_spec

    members = member_dirs(run_dir)
    return read_spec(members[0] if members else run_dir)


def load_operator(run_dir: str | Path, *, checkpoint: str = "best") -> Any:
    """The run's forward model: an :class:`Ensemble` when ``run_dir/members`` holds >= 2 runs, else the
    surrogate of ``run_dir`` (:func:`pdesurrogate.surrogate.load`)."""
    from pdesurrogate.surrogate import load

    if len(member_dirs(run_dir)) >= 2:
        return Ensemble.load(run_dir, checkpoint=checkpoint)
    return load(run_dir, checkpoint=checkpoint)


def _task_signals(operator: Any, spec: dict[str, Any]) -> tuple[Task, TrustSignals]:
    """``(task, signals)``: the run's :class:`training.tasks.Task` and its
    :class:`~training.tasks.TrustSignals` for ``operator``."""
    from training.tasks import get_task

    task = get_task(spec["task"])
    return task, task.trust_signals(spec, ensemble=isinstance(operator, Ensemble))


def signal_function(operator: Any, spec: dict[str, Any]) -> tuple[tuple[str, ...], Callable[..., tuple[Any, Any]]]:
    """``(names, fn)``: ``fn(*inputs)`` -> ``(prediction, signals (J,))`` for one sample.

    The run's task (``spec["task"]``) gives the inputs and the signals
    (:meth:`training.tasks.Task.trust_signals`): field operators ``inputs = (medium (M, *shape),)``,
    the fields ``(F, *shape)`` and ``helmholtz``; trace operators ``(medium,)``, all shots ``(S, nt,
    n_elements)`` of the data's emitters and ``reciprocity``; steppers ``(state (C, *shape), medium)``,
    the next state and ``residual``, ``time_reversal``. Ensembles predict the members' mean and add
    ``spread`` (:func:`~pdesurrogate.trust.signals.relative_spread`).
    """
    return _compose(operator, _task_signals(operator, spec)[1])


def _compose(operator: Any, sig: TrustSignals) -> tuple[tuple[str, ...], Callable[..., tuple[Any, Any]]]:
    """:func:`signal_function` of ``operator`` from its task's :class:`~training.tasks.TrustSignals`."""
    if not isinstance(operator, Ensemble):
        def fn(*inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
            pred = sig.forward(operator, *inputs)
            return pred, sig.physics(operator, pred, *inputs)

        return sig.names, fn

    def ensemble_fn(*inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        members = operator.apply(sig.forward, *inputs)
        pred = jnp.mean(members, axis=0)
        return pred, jnp.concatenate([sig.physics(operator.member(0), pred, *inputs), relative_spread(members)[None]])

    return sig.names + ("spread",), ensemble_fn


def monitor_features(signals: np.ndarray, media: np.ndarray) -> np.ndarray:
    """Monitor features ``(B, d)``: the medium descriptors (:func:`~pdesurrogate.trust.monitor.medium_features`)
    and the log signals, of signals ``(B, J)`` and media ``(B, M, *shape)``."""
    return np.concatenate([medium_features(media), np.log(np.maximum(np.asarray(signals, np.float64), _TINY))], 1)


def _indices(ds: Any, spec: dict[str, Any], role: str, max_samples: int | None) -> np.ndarray:
    own = ds.manifest.get("fingerprint") == spec.get("data_fingerprint")
    key = "val_indices" if role == "calibration" else "test_indices"
    idx = np.arange(*spec[key]) if own else np.arange(len(ds))
    return idx if max_samples is None else idx[:max_samples]


def measure_set(run_dir: str | Path, data_dir: str | Path, role: str = "test", *, operator: Any = None,
                max_samples: int | None = None, batch: int = 16, checkpoint: str = "best") -> dict[str, Any]:
    """Errors, signals and monitor features of a run on a dataset.

    Args:
        role: ``"calibration"`` (the run's own dataset: its validation split) or ``"test"`` (its
            test split); another dataset contributes all its samples either way.
        operator: the loaded forward model (default :func:`load_operator`).

    Returns:
        ``names`` (J,), ``errors`` ``(n,)`` (relative L2 against the dataset's solver answer),
        ``signals`` ``(n, J)``, ``features`` ``(n, d)``, and for ensembles of a kind with a pointwise band
        (:attr:`training.tasks.Task.trust_band`: field operators) ``band_errors`` / ``band_scales``
        ``(n, F, *shape)`` (|error| and the members' spread). ``n`` counts the task's trust samples
        (:meth:`training.tasks.Task.trust_samples`: a stepper's one-step predictions from every frame).
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
    task, parts = _task_signals(operator, spec)
    names, fn = _compose(operator, parts)
    band = isinstance(operator, Ensemble) and task.trust_band

    @jax.jit
    def evaluate(*inputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        pred, sig = jax.vmap(fn)(*inputs)
        if not band:
            return pred, sig, None
        members = jax.vmap(lambda *x: operator.apply(parts.forward, *x))(*inputs)
        return pred, sig, jnp.sqrt(jnp.mean(jnp.abs(members - pred[:, None]) ** 2, axis=1))

    idx = _indices(ds, spec, role, max_samples)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("errors", "signals", "features", "band_errors",
                                                        "band_scales")}
    for samples in task.trust_samples(ds, spec, idx, batch):
        pred, sig, spread = jax.device_get(evaluate(*map(jnp.asarray, samples.inputs)))
        pred, truth = np.where(samples.keep, pred, 0), np.where(samples.keep, samples.truth, 0)
        out["errors"].append(task.trust_error(pred, truth))
        out["signals"].append(np.asarray(sig, np.float64))
        out["features"].append(monitor_features(sig, samples.media))
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


def reference_solver(run_dir: str | Path) -> Callable[[jax.Array], jax.Array]:
    """The solver that made a field or trace operator's training data, ``solver(medium) -> answer``
    (jitted): the medium ``(M, *shape)`` in the run's ``medium_names`` order, the answer of the
    prediction's shape (fields ``(F, *shape)``; all shots ``(S, nt, n_elements)``). It is the
    simulation of the run's dataset (``surrogate.json``'s ``data_dir``; only its manifest is read), so its
    answers are those the calibration's errors were measured against."""
    from training.data import open_dataset, scenarios
    from training.tasks import get_task

    spec = run_spec(run_dir)
    task = get_task(spec["task"])
    if task.target not in ("field", "traces"):
        raise ValueError(f"reference_solver covers field and trace operators; run {run_dir} is a {spec['task']!r} run")
    if not Path(spec["data_dir"]).is_dir():
        raise ValueError(f"run {run_dir} was trained on {spec['data_dir']}, which is gone; its config defines "
                         "the solver")
    simulate = scenarios.build(open_dataset(spec["data_dir"]).config).simulate
    names = tuple(spec["medium_names"])
    return jax.jit(lambda medium: simulate(dict(zip(names, medium)))[task.target])


def guard(run_dir: str | Path, solver: Callable[..., Any], tolerance: float | None = None, *,
          checkpoint: str = "best", check_every: int = 10, gamma: float = 0.01) -> Guarded:
    """The guarded forward model of a calibrated run: ``guarded(medium)`` -> fields (field operators)
    or all shots (trace operators); ``guarded(state, medium)`` -> the next state (steppers).

    Its ``operator`` (what :meth:`Guarded.select` returns when the surrogate may answer) is the
    prediction of :func:`signal_function`'s ``fn`` (an ensemble's mean), differentiable in its inputs;
    its checks measure the error as the calibration did (the task's ``trust_error`` over the points of
    :meth:`training.tasks.Task.trust_keep`: a trace operator leaves each emitter's own trace out).

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

    task = _task_signals(operator, spec)[0]
    keep = task.trust_keep(spec)

    def features(signals: np.ndarray, *inputs: Any) -> np.ndarray:  # the medium is the last input
        return monitor_features(signals[None], np.asarray(inputs[-1])[None])[0]

    def error(prediction: Any, truth: Any) -> float:  # as calibrated: over the task's kept points
        kept = [np.where(keep, np.asarray(a), 0)[None] for a in (prediction, truth)]
        return float(task.trust_error(*kept)[0])

    return Guarded(lambda *inputs: fn(*inputs)[0], cal, tolerance, solver=solver, signals=jax.jit(fn),
                   features=features, check_every=check_every, gamma=gamma, error=error)


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
