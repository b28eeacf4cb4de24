"""Build a training run from an experiment config and a dataset, and train it.

:func:`train_run` is the entry point of ``pdesurrogate train``: the ``[model]`` and ``[train]``
sections of the experiment TOML configure the network and the optimisation
(:mod:`training.config`); the dataset (``pdesurrogate generate`` output) fixes the task
(:func:`training.tasks.task_for_scenario`), the channels and their normalisation. The last ``1/8``
of the samples are the test set that ``pdesurrogate evaluate`` reports, the ``1/8`` before them
validate (and pick the best checkpoint), the rest train. Besides the trainer's files the run
directory gets ``surrogate.json``, which :func:`pdesurrogate.surrogate.load` reads. A killed run
resumes with the same call (``resume=True``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.config import parse, to_dict
from pdesurrogate.io import write_json
from training.config import ModelConfig, TrainConfig
from training.data import Loader, open_dataset
from training.tasks import Task, task_for_scenario
from training.trainer import Trainer, TrainResult, initialize_distributed, make_task_loss

HOLDOUT_FRACTION = 1 / 8  # of the samples for validation, and again for test


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a training run needs (see :func:`build_run`).

    Attributes:
        task: the surrogate kind the dataset trains.
        model_config: the registry config, with channels and normalisation.
        train: the parsed ``[train]`` section.
        train_loader: training batches (this process's share of each global batch).
        val_loader: validation batches, unshuffled.
        residual_fn: the physics residual of the loss, or ``None``.
        reversal_mask: stepper: 0 in the PML and 2 cells next to it, where absorption breaks time
            reversibility; else ``None``.
        emitters: traces: the emitting element of each shot; else ``None``.
        spec: the ``surrogate.json`` content (without ``train`` and ``model``).
        offset: an array the run directory stores as ``spec["offset_file"]``, or ``None``.
    """

    task: Task
    model_config: dict[str, Any]
    train: TrainConfig
    train_loader: Loader
    val_loader: Loader
    residual_fn: Any
    reversal_mask: np.ndarray | None
    emitters: np.ndarray | None
    spec: dict[str, Any]
    offset: np.ndarray | None


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


def _model_section(section: dict[str, Any], ndim: int) -> dict[str, Any]:
    """``modes = 8`` is shorthand for ``modes = [8] * ndim``."""
    out = dict(section)
    if isinstance(out.get("modes"), int):
        out["modes"] = [out["modes"]] * ndim
    return out


def build_run(toml: dict[str, Any], data_dir: str | Path, *, steps: int | None = None) -> Run:
    """A :class:`Run` from an experiment TOML dict and a complete dataset directory.

    Args:
        toml: the experiment config with ``[model]`` and ``[train]`` sections.
        data_dir: the dataset (``pdesurrogate generate`` output).
        steps: overrides ``train.steps`` (and caps ``warmup_steps`` at a tenth of it).
    """
    for name in ("model", "train"):
        if name not in toml:
            raise ValueError(f"the config has no [{name}] section")
    ds = open_dataset(data_dir)
    if not ds.complete:
        raise ValueError(f"dataset {data_dir} is incomplete; finish it with `pdesurrogate generate` first")
    scenario = ds.manifest["scenario"]
    task = task_for_scenario(scenario)
    train_section = dict(toml["train"])
    train_section.setdefault("task", task.name)
    if train_section["task"] != task.name:
        raise ValueError(f"train.task: {train_section['task']!r} does not fit the {scenario!r} dataset "
                         f"(needs {task.name!r})")
    if steps is not None:
        train_section["steps"] = steps
        train_section["warmup_steps"] = min(int(train_section.get("warmup_steps", 100)), max(steps // 10, 0))
    for key, value in task.train_defaults(ds).items():
        train_section.setdefault(key, value)
    train_cfg = parse(TrainConfig, train_section, "train")
    shape = tuple(ds.config.shape)
    model_cfg = parse(ModelConfig, _model_section(toml["model"], len(shape)), "model")
    task.check_model(model_cfg, scenario)

    train_idx, val_idx, test_idx = split_indices(len(ds))
    # The loaders yield this process's share; the trainer assembles the global batch.
    processes = jax.process_count()
    if train_cfg.batch_size % processes:
        raise ValueError(f"train.batch_size: {train_cfg.batch_size} must be a multiple of the {processes} processes")
    local_batch = train_cfg.batch_size // processes
    if len(train_idx) < train_cfg.batch_size:
        raise ValueError(f"train.batch_size: {train_cfg.batch_size} exceeds the {len(train_idx)} training samples")
    prepared = task.prepare(ds, train_cfg, model_cfg, train_idx)
    fields = task.fields(ds.fields)
    train_loader = Loader(ds, local_batch, fields=fields, seed=train_cfg.seed, shuffle=True, drop_last=True,
                          subset=train_idx, transform=prepared.transform)
    val_loader = Loader(ds, max(1, min(local_batch, len(val_idx) // processes)), fields=fields, seed=0,
                        shuffle=False, drop_last=False, subset=val_idx, transform=prepared.transform)
    spec = {"task": task.name, "scenario": scenario, "shape": list(shape), "spacing": ds.config.spacing,
            "data_dir": str(Path(data_dir).absolute()), "data_fingerprint": ds.manifest.get("fingerprint"),
            "val_indices": [int(val_idx[0]), int(val_idx[-1]) + 1],
            "test_indices": [int(test_idx[0]), int(test_idx[-1]) + 1]}
    task_spec = dict(prepared.spec)
    offset = task_spec.pop("offset", None)
    return Run(task=task, model_config=prepared.model_config, train=train_cfg, train_loader=train_loader,
               val_loader=val_loader, residual_fn=prepared.residual_fn, reversal_mask=prepared.reversal_mask,
               emitters=prepared.emitters, spec=spec | task_spec, offset=offset)


def train_run(toml: dict[str, Any], data_dir: str | Path, out: str | Path, *, resume: bool = True,
              steps: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) a run of ``toml`` on ``data_dir`` into the run directory ``out``.

    Args:
        toml: the experiment config with ``[model]`` and ``[train]`` sections.
        data_dir: the dataset (``pdesurrogate generate`` output).
        out: the run directory (checkpoints, logs, plots, ``surrogate.json``).
        resume: continue from the newest checkpoint in ``out`` (its data and model config must match).
        steps: overrides ``train.steps``.
        progress: show a progress bar.
    """
    if isinstance(toml.get("train"), dict) and toml["train"].get("distributed") is True:
        initialize_distributed()  # must precede every other JAX call, build_run's too
    run = build_run(toml, data_dir, steps=steps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = run.spec | {"train": to_dict(run.train), "model": run.model_config}
    spec_path = out / "surrogate.json"
    if resume and spec_path.is_file():
        old = json.loads(spec_path.read_text())
        if old.get("data_fingerprint") != spec["data_fingerprint"] or old.get("model") != spec["model"]:
            raise ValueError(f"cannot resume {out}: it was trained on other data or another model config "
                             f"(pass --no-resume to start over)")
    if run.offset is not None:
        np.save(out / spec["offset_file"], run.offset)
    write_json(spec_path, spec)
    mask = None if run.reversal_mask is None else jnp.asarray(run.reversal_mask)
    loss_fn, sample_fn = make_task_loss(run.train, residual_fn=run.residual_fn, reversal_mask=mask,
                                        emitters=run.emitters)
    trainer = Trainer(run.model_config, loss_fn, run.train_loader, run.train, out, val_loader=run.val_loader,
                      sample_fn=sample_fn, progress=progress)
    return trainer.fit(resume=resume)
