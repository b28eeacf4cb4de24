"""``pdesurrogate train CONFIG.toml --data DIR --out RUN``: train a surrogate on a dataset.

The ``[model]`` and ``[train]`` sections of the experiment TOML configure the network and the
optimisation (:mod:`training.config`); the dataset (``pdesurrogate generate`` output) fixes the
task (``acoustic_stepper`` / ``photoacoustic`` / ``maxwell_stepper``: a learned stepper; ``optics``:
a field operator; ``usct``: a trace operator),
the channels and their normalisation. The last ``1/8`` of the samples are the test set that
``pdesurrogate evaluate`` reports, the ``1/8`` before them validate (and pick the best
checkpoint), the rest train. Besides the trainer's files
the run directory gets ``surrogate.json``, which :meth:`pdesurrogate.Surrogate.load` and
:meth:`pdesurrogate.FieldOperator.load` read. A killed run resumes with the same command
(``--resume``, the default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

STEPPER_SCENARIOS = ("acoustic_stepper", "photoacoustic", "maxwell_stepper")
FIELD_SCENARIOS = ("optics",)
TRACE_SCENARIOS = ("usct",)
TRACE_BANDWIDTH = 3.0  # default kept bandwidth of predicted traces, in source frequencies
HOLDOUT_FRACTION = 1 / 8  # of the samples for validation, and again for test


def task_loader(dataset: Any, indices: np.ndarray, batch_size: int, task: str, *, seed: int = 0,
                shuffle: bool = True, drop_last: bool = True, state_scales: list[float] | None = None,
                offset: np.ndarray | None = None, condition: np.ndarray | None = None,
                receivers: np.ndarray | None = None) -> Any:
    """A :class:`training.data.Loader` over ``indices`` that yields batches in the trainer's layout.

    Batches are stacked by ``training.data.to_task_batch`` on the loader's prefetch thread; the
    loader shards them per process and resumes mid-epoch exactly.

    Args:
        dataset: an opened, complete dataset.
        indices: the samples to use.
        batch_size: samples per batch (per process).
        task: ``"stepper"``, ``"field"`` or ``"traces"``.
        seed: shuffling seed (epoch ``e`` uses ``default_rng([seed, e])``).
        shuffle: shuffle per epoch.
        drop_last: drop the incomplete last batch (training needs batches of exactly ``batch_size``).
        state_scales: stepper: per-channel factors applied to ``state`` (see :func:`state_scales`).
        offset: field / traces task: subtracted from every target (``field`` ``(F, *shape)``: the
            incident field; ``traces`` ``(S, nt, n_elements)``: the water traces), so that the
            network learns the scattered part.
        condition: traces task: the per-shot emitter encoding ``(S, K, *shape)``, added to every
            batch as ``condition`` ``(B, S, K, *shape)``.
        receivers: traces task: ``(S, n_elements)`` booleans, the traces each shot's loss counts
            (:func:`training.data.scenarios.receiver_mask`), added as ``receivers``
            ``(B, S, n_elements)``.
    """
    from training.data import Loader, task_fields, to_task_batch

    scales = None if state_scales is None else np.asarray(state_scales, np.float32)

    def transform(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = to_task_batch(batch, task)
        if scales is not None:
            batch["state"] = batch["state"] * scales.reshape((1, 1, -1) + (1,) * (batch["state"].ndim - 3))
        target = "traces" if task == "traces" else "field"
        if offset is not None:
            batch[target] = batch[target] - offset[None].astype(batch[target].dtype)
        if condition is not None:
            batch["condition"] = np.broadcast_to(condition[None], (len(batch["medium"]),) + condition.shape)
        if receivers is not None:
            batch["receivers"] = np.broadcast_to(receivers[None], (len(batch["medium"]),) + receivers.shape)
        return batch

    return Loader(dataset, batch_size, fields=task_fields(task, dataset.fields), seed=seed, shuffle=shuffle,
                  drop_last=drop_last, subset=indices, transform=transform)


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, validation, test)`` sample indices.

    The last ``n / 8`` samples (at least 1) are the test set, which ``pdesurrogate evaluate``
    reports; the ``n / 8`` before them validate (and pick the best checkpoint), so the reported
    test error is not biased by checkpoint selection.
    """
    if n < 3:
        raise ValueError(f"a dataset needs at least 3 samples to train, validate and test, got {n}")
    n_hold = max(1, int(round(n * HOLDOUT_FRACTION)))
    return np.arange(n - 2 * n_hold), np.arange(n - 2 * n_hold, n - n_hold), np.arange(n - n_hold, n)


def state_scales(stds: list[float]) -> list[float]:
    """Stepper channel factors ``std_0 / std_c``: the network and the loss see every channel (e.g.
    velocity, ~1e-6 of the pressure in Pa) with the pressure's magnitude, so the relative L2 loss
    weighs all channels alike; :class:`pdesurrogate.Surrogate` undoes them."""
    return [float(stds[0] / s) if s > 0 else 1.0 for s in stds]


def task_of(scenario: str) -> str:
    """The surrogate form a dataset scenario trains."""
    if scenario in STEPPER_SCENARIOS:
        return "stepper"
    if scenario in FIELD_SCENARIOS:
        return "field"
    if scenario in TRACE_SCENARIOS:
        return "traces"
    raise ValueError(f"dataset scenario {scenario!r} has no surrogate task; use one of "
                     f"{list(STEPPER_SCENARIOS + FIELD_SCENARIOS + TRACE_SCENARIOS)}")


def _model_section(section: dict[str, Any], ndim: int) -> dict[str, Any]:
    """``modes = 8`` is shorthand for ``modes = [8] * ndim``."""
    out = dict(section)
    if isinstance(out.get("modes"), int):
        out["modes"] = [out["modes"]] * ndim
    return out


def build_run(toml: dict[str, Any], data_dir: str | Path, *, steps: int | None = None) -> dict[str, Any]:
    """Everything a training run needs, from an experiment TOML dict and a dataset directory.

    Returns a dict with ``model_config`` (registry config with normalisation), ``train`` (a
    :class:`~training.config.TrainConfig`), ``train_loader``, ``val_loader``, ``residual_fn``,
    ``reversal_mask`` (stepper: 0 in the PML and 2 cells next to it, where absorption breaks
    time reversibility), ``spec`` (the ``surrogate.json`` content) and ``emitters`` (traces: the
    emitting element of each shot).
    """
    from pdesurrogate.config import parse
    from training.config import ModelConfig, TrainConfig
    from training.data import open_dataset, reversal_signs, task_stats

    for name in ("model", "train"):
        if name not in toml:
            raise ValueError(f"the config has no [{name}] section")
    ds = open_dataset(data_dir)
    if not ds.complete:
        raise ValueError(f"dataset {data_dir} is incomplete; finish it with `pdesurrogate generate` first")
    scenario = ds.manifest["scenario"]
    task = task_of(scenario)
    train_section = dict(toml["train"])
    train_section.setdefault("task", task)
    if train_section["task"] != task:
        raise ValueError(f"train.task: {train_section['task']!r} does not fit the {scenario!r} dataset (needs {task!r})")
    if steps is not None:
        train_section["steps"] = steps
        train_section["warmup_steps"] = min(int(train_section.get("warmup_steps", 100)), max(steps // 10, 0))
    shape = tuple(ds.config.shape)
    ndim = len(shape)
    stats = task_stats(ds.stats, task, ndim)
    constants = ds.manifest.get("constants", {})
    if task == "stepper":
        channels = len(stats["state"]["mean"])
        signs = reversal_signs(ds.fields, ndim) if channels > 1 else [1.0]
        if channels > 1:
            train_section.setdefault("reversal_signs", signs)
    train_cfg = parse(TrainConfig, train_section, "train")
    if task == "stepper" and channels > 1 and list(train_cfg.reversal_signs) != list(signs):
        raise ValueError(f"train.reversal_signs: the {scenario} state {channels} channels reverse with {signs}, "
                         f"got {list(train_cfg.reversal_signs)}")
    model_cfg = parse(ModelConfig, _model_section(toml["model"], ndim), "model")

    import jax

    train_idx, val_idx, test_idx = split_indices(len(ds))
    # The loaders yield this process's share; the trainer assembles the global batch.
    processes = jax.process_count()
    if train_cfg.batch_size % processes:
        raise ValueError(f"train.batch_size: {train_cfg.batch_size} must be a multiple of the {processes} processes")
    local_batch = train_cfg.batch_size // processes
    if len(train_idx) < train_cfg.batch_size:
        raise ValueError(f"train.batch_size: {train_cfg.batch_size} exceeds the {len(train_idx)} training samples")
    scales = state_scales(stats["state"]["std"]) if task == "stepper" else None
    if model_cfg.trace_bandwidth is not None and task != "traces":
        raise ValueError(f"model.trace_bandwidth: only for usct (traces) datasets, this one is {scenario!r}")
    offset, target_offset, condition, receivers, emitters = None, None, None, None, None
    if task != "stepper":
        from training.evaluation import homogeneous_response

        offset = homogeneous_response(ds)  # optics: (F, *shape); usct: (n_elements, nt, n_elements)
        target_offset = offset
    if task == "traces":
        from pdesurrogate.models import distance_channels
        from training.data import scenarios

        emitters = scenarios.usct_emitters(ds.config)
        elements = scenarios.ring_elements(ds.config)
        radius = scenarios.ring_radius(ds.config)
        condition = np.asarray(distance_channels(shape, ds.config.spacing, elements[emitters], radius))
        target_offset = offset[emitters]
        receivers = scenarios.receiver_mask(emitters, len(elements))  # the emitter's own trace is left out
    train_loader = task_loader(ds, train_idx, local_batch, task, seed=train_cfg.seed, state_scales=scales,
                               offset=target_offset, condition=condition, receivers=receivers)
    val_loader = task_loader(ds, val_idx, max(1, min(local_batch, len(val_idx) // processes)), task, shuffle=False,
                             drop_last=False, state_scales=scales, offset=target_offset, condition=condition,
                             receivers=receivers)
    spec: dict[str, Any] = {"task": task, "scenario": scenario, "shape": list(shape), "spacing": ds.config.spacing,
                            "data_dir": str(Path(data_dir).absolute()), "data_fingerprint": ds.manifest.get("fingerprint"),
                            "val_indices": [int(val_idx[0]), int(val_idx[-1]) + 1],
                            "test_indices": [int(test_idx[0]), int(test_idx[-1]) + 1]}
    if task == "stepper":
        from training.data.tasks import task_layout

        layout = task_layout("stepper", ds.fields)
        maxwell = scenario == "maxwell_stepper"
        solver_cfg = ds.config.optics if maxwell else ds.config.acoustic
        scaled_mean = [m * f for m, f in zip(stats["state"]["mean"], scales)]
        scaled_std = [s * f for s, f in zip(stats["state"]["std"], scales)]
        norm = {"in_mean": scaled_mean + stats["medium"]["mean"], "in_std": scaled_std + stats["medium"]["std"],
                "out_mean": [0.0] * channels, "out_std": scaled_std}
        model_config = model_cfg.build_config(channels + len(layout["medium"]), channels, ndim, norm)
        names = layout["state"][:1] + [f"{layout['state'][-1]}{d}" for d in range(channels - 1)]
        spec |= {"physics": "maxwell" if maxwell else "acoustic", "solver_dt": float(constants["dt"]),
                 "macro_steps": int(solver_cfg.save_every), "reversal_signs": signs,
                 "residual_step": train_cfg.residual_step, "medium_names": layout["medium"],
                 "channel_names": names, "state_scales": scales, "state_std": stats["state"]["std"],
                 "initial_field": "e0" if maxwell else "p0", "pml_size": int(solver_cfg.pml_size)}
        if maxwell:
            spec["courant"] = float(solver_cfg.courant)
        else:
            spec |= {"scheme": solver_cfg.scheme, "fd_order": solver_cfg.fd_order,
                     "fd_coefficients": solver_cfg.fd_coefficients}
        residual_fn = None
        from training.physics import reversal_mask as reversible_region

        reversal_mask = reversible_region(shape, solver_cfg.pml_size)
        if train_cfg.loss.residual > 0 and maxwell:
            from solvers.grid import Grid
            from training.physics import YeeResidual

            residual_fn = YeeResidual(Grid(shape, ds.config.spacing), spec["macro_steps"], solver_cfg.courant,
                                      solver_cfg.pml_size, state_scales=scales, solver_target=train_cfg.solver_target)
        elif train_cfg.loss.residual > 0:
            from solvers.grid import Grid
            from training.physics import WaveResidual

            residual_fn = WaveResidual(Grid(shape, ds.config.spacing), spec["solver_dt"] * spec["macro_steps"],
                                       solver_cfg.scheme, fd_order=solver_cfg.fd_order, pml_size=solver_cfg.pml_size,
                                       substeps=spec["macro_steps"], state_scales=scales,
                                       solver_target=train_cfg.solver_target,
                                       fd_coefficients=solver_cfg.fd_coefficients)
    elif task == "traces":
        from pdesurrogate.models import band_limit, dct_bandwidth_coefficients

        nt = int(ds.fields["traces"].shape[1])
        a = ds.config.acoustic
        bandwidth = TRACE_BANDWIDTH if model_cfg.trace_bandwidth is None else model_cfg.trace_bandwidth
        n_coef = dct_bandwidth_coefficients(nt, float(constants["dt"]), bandwidth * a.frequency)
        sample_traces = ds.read(train_idx[:64], ["traces"])["traces"]
        scattered = sample_traces - target_offset[None]
        floor = float(np.linalg.norm(band_limit(sample_traces, n_coef, axis=2) - sample_traces)
                      / (np.linalg.norm(sample_traces) or 1.0))
        latent = model_cfg.width or 32
        norm = {"in_mean": stats["medium"]["mean"] + [float(condition.mean())],
                "in_std": stats["medium"]["std"] + [float(condition.std()) or 1.0]}
        model_config = {"kind": "traces", "backbone": model_cfg.build_config(3, latent, ndim, norm),
                        "receivers": (elements / ds.config.spacing).tolist(), "n_time": nt,
                        "n_coefficients": n_coef, "hidden": 4 * latent,
                        "out_std": float(np.sqrt(np.mean(scattered**2))) or 1.0, "seed": model_cfg.seed}
        spec |= {"complex_output": False, "medium_names": ["sound_speed", "density"], "pml_size": int(a.pml_size),
                 "info": constants | {"elements_m": elements.tolist(), "trace_bandwidth_hz": bandwidth * a.frequency,
                                      "trace_band_limit_rel_l2": floor},
                 "offset_file": "homogeneous_traces.npy", "offset": offset}
        residual_fn, reversal_mask = None, None
    else:
        f = ds.fields["field"].shape[0]
        scattered = ds.read(train_idx[:64], ["field"])["field"] - offset[None]
        scattered_std = float(np.sqrt(np.mean(np.abs(scattered) ** 2) / 2)) or 1.0  # per real/imag channel
        norm = {"in_mean": stats["medium"]["mean"], "in_std": stats["medium"]["std"],
                "out_mean": [0.0] * (2 * f), "out_std": [scattered_std] * (2 * f)}
        model_config = model_cfg.build_config(1, 2 * f, ndim, norm)
        o = ds.config.optics
        spec |= {"complex_output": True, "medium_names": ["refractive_index"], "pml_size": int(o.pml_size),
                 "info": constants, "offset_file": "incident_field.npy", "offset": offset}
        residual_fn, reversal_mask = None, None
        if train_cfg.loss.residual > 0:
            from solvers.grid import Grid
            from training.physics import HelmholtzResidual

            residual_fn = HelmholtzResidual(Grid(shape, ds.config.spacing), o.wavelength, o.pml_size,
                                            background_index=float(constants.get("background_index", 1.0)),
                                            offset=offset)
    return {"model_config": model_config, "train": train_cfg, "train_loader": train_loader,
            "val_loader": val_loader, "residual_fn": residual_fn, "reversal_mask": reversal_mask, "spec": spec,
            "emitters": emitters}


def train_run(toml: dict[str, Any], data_dir: str | Path, out: str | Path, *, resume: bool = True,
              steps: int | None = None, progress: bool = True) -> Any:
    """Train (or resume) a run; returns the trainer's :class:`~training.trainer.TrainResult`."""
    import jax.numpy as jnp

    from pdesurrogate.config import to_dict
    from pdesurrogate.io import write_json
    from training.trainer import Trainer, initialize_distributed, make_task_loss

    if isinstance(toml.get("train"), dict) and toml["train"].get("distributed") is True:
        initialize_distributed()  # must precede every other JAX call, build_run's too
    run = build_run(toml, data_dir, steps=steps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = run["spec"] | {"train": to_dict(run["train"]), "model": run["model_config"]}
    offset = spec.pop("offset", None)
    spec_path = out / "surrogate.json"
    if resume and spec_path.is_file():
        old = json.loads(spec_path.read_text())
        if old.get("data_fingerprint") != spec["data_fingerprint"] or old.get("model") != spec["model"]:
            raise ValueError(f"cannot resume {out}: it was trained on other data or another model config "
                             f"(pass --no-resume to start over)")
    if offset is not None:
        np.save(out / spec["offset_file"], offset)
    write_json(spec_path, spec)
    mask = None if run["reversal_mask"] is None else jnp.asarray(run["reversal_mask"])
    loss_fn, sample_fn = make_task_loss(run["train"], residual_fn=run["residual_fn"], reversal_mask=mask,
                                        emitters=run["emitters"])
    trainer = Trainer(run["model_config"], loss_fn, run["train_loader"], run["train"], out,
                      val_loader=run["val_loader"], sample_fn=sample_fn, progress=progress)
    return trainer.fit(resume=resume)


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.config import load_toml

    result = train_run(load_toml(args.config), args.data, args.out, resume=args.resume, steps=args.steps,
                       progress=not args.quiet)
    best = "n/a" if result.best_val is None else f"{result.best_val:.4g}"
    print(f"trained {result.step} steps -> {result.run_dir} (best validation loss {best}, "
          f"non-finite steps {result.nan_events})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a surrogate ([model] and [train] of CONFIG) on a dataset")
    p.add_argument("config", help="experiment TOML with [model] and [train] sections")
    p.add_argument("--data", required=True, help="dataset directory (pdesurrogate generate output)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, plots, surrogate.json)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the newest checkpoint in --out (default: on)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handler)


__all__ = ["build_run", "split_indices", "task_loader", "task_of", "train_run"]
