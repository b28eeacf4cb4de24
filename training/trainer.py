"""Data-parallel training loop with exact resume, NaN handling, CSV logs and plots.

The trainer is task-agnostic: it takes a model config (see
:func:`pdesurrogate.models.build_model`), a ``loss_fn(model, batch, key) -> (loss, aux)`` (see
:mod:`training.losses`; ``key`` is a per-step PRNG key, ``None`` in validation) and loaders with
the interface

- ``len(loader)``: batches per epoch;
- ``loader.epoch(e, start=0)``: iterator of ``dict[str, np.ndarray]`` batches, deterministic
  given the loader's seed and ``e``, skipping the first ``start`` batches; every array has the
  batch on its leading axis (the process-local part of the global batch on multi-host runs);
- ``loader.stats``: ``{field: {"mean", "std"}}`` (per-channel model normalisation comes from
  :meth:`training.tasks.Task.stats`).

Two counters drive the loop:

- ``step``: *applied updates*. Training ends after exactly ``train.steps`` of them; the
  learning-rate schedule, checkpoint numbering, ``checkpoint_every``/``validate_every``/``log_every``
  and the CSV ``step`` column follow it, and update ``k`` (1-based) uses the noise key
  ``fold_in(key(train.seed), k - 1)``.
- ``batch``: *batches consumed*, the data position (epoch ``batch // len(loader)``, offset
  ``batch % len(loader)``). Every batch is consumed once, whether its update was applied or not.

A batch whose loss or gradient norm is not finite applies no update (``nan_policy="skip"``: the
next batch makes the same update), or (``"rollback"``) also restores parameters, optimizer state
and best validation loss from the newest checkpoint, so ``step`` goes back to that checkpoint;
the data position is not rewound, so the batches that led to the divergence are not replayed
(as in PaLM). Both are logged to ``events.log`` and as a ``metrics.csv`` row with ``event`` set.
A ``metrics.csv`` row describes one batch: ``step`` (applied updates after it), ``batch``
(batches consumed), ``lr`` (the learning rate of its update; for a non-finite batch the one it
would have used), ``steps_per_s`` (batches per second since the previous row), ``loss`` and
the loss terms; rows are written every ``log_every`` updates and for every event. Checkpoints
store ``step``, ``batches``, ``nan_events`` and ``best_val``; a resumed run replays from the
newest checkpoint's data position and repeats exactly what the uninterrupted run did, non-finite
batches and rollbacks included.

Multi-host: every process runs the same script with a loader that yields its part of each
global batch. Launch with ``train.distributed = true`` and either a cluster that
``jax.distributed.initialize()`` detects (SLURM, Open MPI, Kubernetes, Cloud TPU) or, on plain
hosts, the variables ``JAX_COORDINATOR_ADDRESS=host:port``, ``JAX_NUM_PROCESSES=n`` and
``JAX_PROCESS_ID=i`` in each process's environment (see :func:`initialize_distributed`).

Run directory layout: ``checkpoints/`` (periodic and last), ``best/`` (best validation loss),
``run.json`` (model and train configs), ``metrics.csv``, ``validation.csv``, ``events.log``,
``loss_curve.png``, ``sample.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pdesurrogate.config import to_dict, with_defaults
from pdesurrogate.io import save_figure, subplots, write_json
from pdesurrogate.models.registry import build_model, model_meta, split_model
from pdesurrogate.progress import Progress

from .checkpoint import CheckpointStore
from .config import TrainConfig
from .tasks import get_task

LossFn = Callable[[nnx.Module, dict[str, jax.Array], jax.Array | None], tuple[jax.Array, dict[str, jax.Array]]]
SampleFn = Callable[[nnx.Module, dict[str, jax.Array]], tuple[jax.Array, jax.Array]]


class Loader(Protocol):
    """The data interface the trainer consumes (implemented by ``training.data.loader``)."""

    stats: dict[str, dict[str, Any]]

    def __len__(self) -> int: ...

    def epoch(self, e: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]: ...


@dataclasses.dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`: the final model, applied updates (``train.steps``),
    batches consumed, best validation loss, number of non-finite batches handled, and the run
    directory."""

    model: nnx.Module
    step: int
    batches: int
    best_val: float | None
    nan_events: int
    run_dir: Path


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Learning rate of update ``k = count + 1`` (``count``: updates applied before it):
    ``lr * k / warmup_steps`` for ``k <= warmup_steps`` (so the first update is not wasted),
    then cosine decay from ``lr`` at ``k = warmup_steps`` to ``lr * final_lr_factor`` at
    ``k = steps`` (constant after). ``warmup_steps = 0`` starts on the cosine."""
    return _schedule(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr_factor)


def _schedule(lr: float, warmup_steps: int, steps: int, final_lr_factor: float) -> optax.Schedule:
    final = lr * final_lr_factor

    def schedule(count: jax.Array) -> jax.Array:
        k = jnp.asarray(count, jnp.float32) + 1.0
        warm = lr * k / max(warmup_steps, 1)
        progress = jnp.clip((k - warmup_steps) / (steps - warmup_steps), 0.0, 1.0)
        cosine = final + (lr - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(k <= warmup_steps, warm, cosine)

    return schedule


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW on :func:`make_schedule`, after global-norm gradient clipping (``cfg.grad_clip > 0``).
    The learning rate of the last update is in the state (``state.hyperparams["learning_rate"]``).
    Cached on the optimizer settings, so that trainers with equal settings share one compiled step."""
    return _optimizer(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr_factor, cfg.weight_decay, cfg.grad_clip)


@functools.lru_cache(maxsize=16)
def _optimizer(lr: float, warmup_steps: int, steps: int, final_lr_factor: float, weight_decay: float,
               grad_clip: float) -> optax.GradientTransformation:
    def clipped_adamw(learning_rate: float) -> optax.GradientTransformation:
        adamw = optax.adamw(learning_rate, weight_decay=weight_decay)
        return optax.chain(optax.clip_by_global_norm(grad_clip), adamw) if grad_clip > 0 else adamw

    return optax.inject_hyperparams(clipped_adamw)(learning_rate=_schedule(lr, warmup_steps, steps, final_lr_factor))


def initialize_distributed() -> None:
    """Call ``jax.distributed.initialize`` (before any other JAX call) for a multi-host run.

    ``JAX_COORDINATOR_ADDRESS`` (``host:port``), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
    from the environment are passed when set (JAX itself reads only the first); what is unset is
    detected from the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU) by JAX. Does nothing when
    already initialised.
    """
    if jax.distributed.is_initialized():
        return
    kwargs: dict[str, Any] = {}
    for name, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        value = os.environ.get(name)
        if value is not None:
            if not value.strip().isdigit():
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            kwargs[arg] = int(value)
    jax.distributed.initialize(os.environ.get("JAX_COORDINATOR_ADDRESS"), **kwargs)


def make_task_loss(cfg: TrainConfig, *, residual_fn: Callable[..., jax.Array] | None = None,
                   reversal_mask: jax.Array | None = None,
                   emitters: Sequence[int] | None = None) -> tuple[LossFn, SampleFn]:
    """``(loss_fn, sample_fn)`` of the configured task (:meth:`training.tasks.Task.loss`) with the
    configured weights and options; ``residual_fn``: the physics residual (stepper, field);
    ``reversal_mask``: the stepper's time-reversal weights; ``emitters``: the traces task's
    emitting element per shot (reciprocity)."""
    return get_task(cfg.task).loss(cfg, residual_fn=residual_fn, reversal_mask=reversal_mask, emitters=emitters)


def changed_train_settings(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, stored, current)`` of every ``train`` setting but ``steps`` that differs between a
    checkpoint's settings and the current ones; settings added to :class:`TrainConfig` after the
    checkpoint was written count as their defaults."""
    stored = with_defaults(TrainConfig, stored, "train")
    return [(k, stored.get(k), current.get(k)) for k in sorted(set(stored) | set(current))
            if k != "steps" and stored.get(k) != current.get(k)]


class _CsvLog:
    """Append-only CSV of scalar rows with a ``batch`` column (batches consumed); on resume rows
    with ``batch > keep_until`` are dropped (they were logged after the checkpoint and will be
    logged again)."""

    def __init__(self, path: Path, keep_until: int, enabled: bool):
        self.path, self.enabled = path, enabled
        self.fields: list[str] | None = None
        if enabled and path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                rows = [r for r in reader if int(r["batch"]) <= keep_until]
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plot_losses(run_dir: str | Path) -> Path:
    """Plot training (and validation) loss against step from the run's CSV logs to ``loss_curve.png``."""
    run_dir = Path(run_dir)
    train = [(int(r["step"]), float(r["loss"])) for r in _read_csv(run_dir / "metrics.csv")]
    val = [(int(r["step"]), float(r["val_loss"])) for r in _read_csv(run_dir / "validation.csv")]
    fig, ax = subplots(figsize=(6, 4))
    for rows, label, style in ((train, "train", "-"), (val, "validation", "o-")):
        rows = [(s, v) for s, v in rows if math.isfinite(v) and v > 0]
        if rows:
            ax.plot(*zip(*rows), style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = run_dir / "loss_curve.png"
    save_figure(fig, out, dpi=100)
    return out


def plot_sample(prediction: np.ndarray, truth: np.ndarray, path: str | Path, channel: int = 0) -> Path:
    """Truth, prediction and error of one channel of ``(C, *spatial)`` fields (3D: middle slice)."""
    def plane(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)[channel]
        while a.ndim > 2:
            a = a[a.shape[0] // 2]
        return a

    t, p = plane(truth), plane(prediction)
    lim = float(np.abs(t).max()) or 1.0
    fig, axes = subplots(1, 3, figsize=(11, 3.4))
    for ax, a, title in zip(axes, (t, p, p - t), ("truth", "prediction", "prediction - truth")):
        im = ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="equal" if a.shape[0] == a.shape[1] else "auto")
        ax.set_title(title)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    rel = float(np.linalg.norm(p - t) / (np.linalg.norm(t) or 1.0))
    fig.suptitle(f"channel {channel}: relative L2 error {rel:.3g}")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return Path(path)


def _cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _merge(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, precision: str) -> nnx.Module:
    """The model with parameters in the forward precision (bf16: floating parameters cast)."""
    if precision == "bf16":
        params = _cast_floats(params, jnp.bfloat16)
    return nnx.merge(graphdef, params, rest)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _train_step(graphdef, loss_fn, optimizer, precision, replicated, params, opt_state, rest, batch, key):
    """One AdamW update; a non-finite loss or gradient leaves parameters and optimizer state
    unchanged and returns ``finite=False``. The metrics hold the learning rate of this update
    (``lr``, not applied when not finite). Compiled once per (model, loss, optimizer, mesh)."""
    def objective(p):
        loss, aux = loss_fn(_merge(graphdef, p, rest, precision), batch, key)
        return loss.astype(jnp.float32), aux

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    params = jax.lax.with_sharding_constraint(jax.tree_util.tree_map(keep, new_params, params), replicated)
    opt_state = jax.lax.with_sharding_constraint(jax.tree_util.tree_map(keep, new_opt, opt_state), replicated)
    metrics = {"loss": loss, "grad_norm": grad_norm, "finite": finite, "lr": new_opt.hyperparams["learning_rate"],
               **aux}
    return params, opt_state, jax.lax.with_sharding_constraint(metrics, replicated)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _eval_step(graphdef, loss_fn, precision, replicated, params, rest, batch):
    """Loss and aux metrics without randomness (``key=None``)."""
    loss, aux = loss_fn(_merge(graphdef, params, rest, precision), batch, None)
    return jax.lax.with_sharding_constraint({"loss": loss.astype(jnp.float32), **aux}, replicated)


@dataclasses.dataclass
class _Position:
    """Where a run stands: ``step`` applied updates, ``batches`` consumed (the data position),
    ``nan_events`` non-finite batches so far, the best validation loss, and ``bad`` consecutive
    non-finite batches (0 at every checkpoint, which follow applied updates)."""

    step: int = 0
    batches: int = 0
    nan_events: int = 0
    best_val: float | None = None
    bad: int = 0


class Trainer:
    """Train a model from a config on one or many devices with checkpoints and exact resume.

    Args:
        model_config: registry config ``{"kind", ...}`` (stored in every checkpoint).
        loss_fn: ``loss_fn(model, batch, key) -> (loss, aux)``; ``aux`` is a dict of scalars.
        train_loader: training batches (see the module docstring).
        config: :class:`~training.config.TrainConfig`.
        run_dir: output directory.
        val_loader: optional validation batches (``epoch(0)`` is the validation set).
        sample_fn: optional ``sample_fn(model, batch) -> (prediction, truth)`` arrays
            ``(C, *spatial)`` plotted to ``sample.png`` at the end.
        devices: devices of the data-parallel mesh (default: all devices of all processes).
        progress: show the progress bar.

    Data parallelism: a 1D ``jax.sharding.Mesh`` over ``devices`` with axis ``"data"``; every
    batch array is sharded on its leading axis, parameters and optimizer state are replicated.
    The global batch must divide evenly over the devices. On multi-host runs the mesh spans the
    devices of all processes and each process's loader yields its own rows of every global batch,
    which land on that process's devices (``train.distributed``; see the module docstring).

    Training ends after exactly ``config.steps`` applied updates; non-finite batches are consumed
    without an update (see the module docstring for the two counters and the NaN policies).
    """

    def __init__(self, model_config: dict[str, Any], loss_fn: LossFn, train_loader: Loader, config: TrainConfig,
                 run_dir: str | Path, *, val_loader: Loader | None = None, sample_fn: SampleFn | None = None,
                 devices: Sequence[jax.Device] | None = None, progress: bool = True):
        if len(train_loader) < 1:
            raise ValueError(f"train_loader must have at least one batch per epoch, got {len(train_loader)}")
        self.model_config = json.loads(json.dumps(model_config))
        self.loss_fn, self.sample_fn = loss_fn, sample_fn
        self.train_loader, self.val_loader = train_loader, val_loader
        self.cfg = config
        self.run_dir = Path(run_dir).absolute()
        self.progress = progress
        if config.distributed:
            initialize_distributed()  # only works before any other JAX call (the CLI does it first)
        self.mesh = Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.is_main = jax.process_index() == 0
        self.optimizer = make_optimizer(config)

    def _train_step(self, params, opt_state, rest, batch, key):
        return _train_step(self._graphdef, self.loss_fn, self.optimizer, self.cfg.precision, self.replicated,
                           params, opt_state, rest, batch, key)

    def _eval_step(self, params, rest, batch):
        return _eval_step(self._graphdef, self.loss_fn, self.cfg.precision, self.replicated, params, rest, batch)

    # ----- host-side helpers ----------------------------------------------------------------
    def _shard_batch(self, batch: dict[str, np.ndarray], *, train: bool = True) -> dict[str, jax.Array]:
        """Place a batch on the mesh, sharded on its leading axis.

        Training batches must hold ``train.batch_size`` samples (globally), divisible by the device
        count. Validation batches may be smaller (a last partial batch); one whose size does not
        divide over the devices is evaluated replicated instead.
        """
        n = len(self.mesh.devices.flat)
        sizes = {np.shape(v)[0] * jax.process_count() for v in batch.values()}
        if len(sizes) != 1:
            raise ValueError(f"batch arrays disagree on the batch size: "
                             f"{ {k: np.shape(v)[0] for k, v in batch.items()} }")
        global_b = sizes.pop()
        if train and global_b != self.cfg.batch_size:
            raise ValueError(f"training batch of {global_b} samples differs from train.batch_size={self.cfg.batch_size}")
        if global_b % n:
            if train or jax.process_count() > 1:
                raise ValueError(f"batch of {global_b} samples must be divisible by the {n} devices of the data mesh")
            return {k: jax.device_put(np.asarray(v), self.replicated) for k, v in batch.items()}
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(v)) for k, v in batch.items()}

    def _leaves(self, tree: Any) -> list[jax.Array]:
        return jax.tree_util.tree_leaves(tree)

    def _unflatten(self, like: Any, leaves: list[Any]) -> Any:
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), list(leaves))

    def _save(self, store: CheckpointStore, pos: _Position, params, opt_state, rest) -> None:
        """Checkpoint ``pos.step`` with the position needed to resume exactly in its meta."""
        model = nnx.merge(self._graphdef, params, rest)
        meta = model_meta(model, self.model_config, step=pos.step, batches=pos.batches, best_val=pos.best_val,
                          nan_events=pos.nan_events, train=to_dict(self.cfg))
        store.save(pos.step, {"param": self._leaves(params), "rest": self._leaves(rest)}, self._leaves(opt_state),
                   meta)

    def _restore(self, store: CheckpointStore, step: int, params, opt_state, rest):
        items_like = {"param": self._leaves(params), "rest": self._leaves(rest)}
        items, opt, meta = store.restore(step, items_like, self._leaves(opt_state))
        return (self._unflatten(params, items["param"]), self._unflatten(opt_state, opt),
                self._unflatten(rest, items["rest"]), meta)

    def _event(self, pos: _Position, message: str) -> None:
        """Append ``TIME step=S batch=B MESSAGE`` to ``events.log`` (main process only)."""
        if self.is_main:
            with (self.run_dir / "events.log").open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} step={pos.step} batch={pos.batches} {message}\n")

    def validate(self, params, rest) -> dict[str, float]:
        """Sample-weighted mean of the loss and its aux metrics over ``val_loader.epoch(0)``."""
        sums: dict[str, float] = {}
        count = 0
        for batch in self.val_loader.epoch(0):
            size = len(next(iter(batch.values())))
            m = jax.device_get(self._eval_step(params, rest, self._shard_batch(batch, train=False)))
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + size * float(v)
            count += size
        if count == 0:
            raise ValueError("val_loader.epoch(0) yielded no batches")
        return {k: v / count for k, v in sums.items()}

    # ----- the loop ---------------------------------------------------------------------------
    def fit(self, resume: bool = True) -> TrainResult:
        """Train until ``config.steps`` updates are applied (see the module docstring for applied
        updates vs batches consumed); with ``resume`` continue from the newest checkpoint in
        ``run_dir/checkpoints`` exactly: same data position, noise keys, optimizer state and
        non-finite handling as the uninterrupted run."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        model = build_model(self.model_config)
        self._graphdef, params, rest = split_model(model)
        params = jax.device_put(params, self.replicated)
        rest = jax.device_put(rest, self.replicated)
        opt_state = jax.device_put(self.optimizer.init(params), self.replicated)
        store = CheckpointStore(self.run_dir / "checkpoints", self.cfg.keep_checkpoints)
        best_store = CheckpointStore(self.run_dir / "best", 1)
        latest = store.latest_step() if resume else None
        if latest is None:
            pos = self._start(store, best_store, params, opt_state, rest)
        else:
            params, opt_state, rest, pos = self._resume(store, best_store, latest, params, opt_state, rest)
        params, rest, last_batch = self._loop(pos, params, opt_state, rest, store, best_store)
        # replicated: every process holds a full copy; take the local one (works on multi-host too)
        on_host = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x.addressable_data(0)), tree)  # noqa: E731
        model = nnx.merge(self._graphdef, on_host(params), on_host(rest))
        if self.is_main:
            if (self.run_dir / "metrics.csv").exists():
                plot_losses(self.run_dir)
            self._plot_sample(model, last_batch)
        self._event(pos, "event=finish")
        store.close()
        best_store.close()
        return TrainResult(model=model, step=pos.step, batches=pos.batches, best_val=pos.best_val,
                           nan_events=pos.nan_events, run_dir=self.run_dir)

    def _start(self, store: CheckpointStore, best_store: CheckpointStore, params, opt_state, rest) -> _Position:
        """A fresh run: clear the run directory's checkpoints and logs, save step 0."""
        store.clear()
        best_store.clear()
        pos = _Position()
        if self.is_main:
            for name in ("metrics.csv", "validation.csv", "events.log"):
                (self.run_dir / name).unlink(missing_ok=True)
            write_json(self.run_dir / "run.json", {"model": self.model_config, "train": to_dict(self.cfg)})
        self._save(store, pos, params, opt_state, rest)
        self._event(pos, "event=start")
        return pos

    def _resume(self, store: CheckpointStore, best_store: CheckpointStore, latest: int, params, opt_state, rest):
        """Restore checkpoint ``latest`` after checking that it belongs to the same run settings."""
        meta = store.meta(latest)
        if meta["model"] != self.model_config:
            raise ValueError(f"cannot resume {self.run_dir}: its model config {meta['model']} differs "
                             f"from {self.model_config}")
        if "batches" not in meta:
            raise ValueError(f"cannot resume {self.run_dir}: its checkpoints have no data position (written by an "
                             f"older trainer; start over with --no-resume)")
        # Resuming continues the same optimisation: only the step budget may grow.
        changed = changed_train_settings(meta["train"], to_dict(self.cfg))
        if changed:
            name, was, now = changed[0]
            raise ValueError(f"cannot resume {self.run_dir}: train.{name} was {was!r}, now {now!r} "
                             f"(only train.steps may change on resume; start over with --no-resume)")
        params, opt_state, rest, meta = self._restore(store, latest, params, opt_state, rest)
        pos = _Position(step=meta["step"], batches=meta["batches"], nan_events=meta["nan_events"],
                        best_val=meta["best_val"])
        best_store.clear(after=pos.step)  # saved after the resumed checkpoint; recomputed identically
        self._event(pos, "event=resume")
        return params, opt_state, rest, pos

    def _loop(self, pos: _Position, params, opt_state, rest, store: CheckpointStore, best_store: CheckpointStore):
        """Consume batches from ``pos.batches`` until ``pos.step == train.steps``; returns the
        final ``(params, rest, last training batch)``."""
        cfg, nb = self.cfg, len(self.train_loader)
        metrics_log = _CsvLog(self.run_dir / "metrics.csv", pos.batches, self.is_main)
        val_log = _CsvLog(self.run_dir / "validation.csv", pos.batches, self.is_main)
        bar = Progress(total=cfg.steps, desc="train", unit="steps", initial=pos.step,
                       enabled=self.progress and self.is_main)
        base_key = jax.random.key(cfg.seed)
        t0 = last_t = time.perf_counter()
        last_batches, last_batch = pos.batches, None
        while pos.step < cfg.steps:
            epoch, offset = divmod(pos.batches, nb)
            for batch in self.train_loader.epoch(epoch, start=offset):
                last_batch = batch
                key = jax.random.fold_in(base_key, pos.step)
                params, opt_state, m = self._train_step(params, opt_state, rest, self._shard_batch(batch), key)
                m = {k: float(v) for k, v in jax.device_get(m).items()}
                pos.batches += 1
                event = "" if m.pop("finite") else f"nonfinite_{cfg.nan_policy}"
                if event:
                    params, opt_state, rest = self._nonfinite(pos, m, store, best_store, params, opt_state, rest)
                else:
                    pos.step, pos.bad = pos.step + 1, 0
                if event or pos.step % cfg.log_every == 0 or pos.step == cfg.steps:
                    now = time.perf_counter()
                    rate = (pos.batches - last_batches) / max(now - last_t, 1e-9)
                    last_t, last_batches = now, pos.batches
                    metrics_log.write({"step": pos.step, "batch": pos.batches, "epoch": epoch, "steps_per_s": rate,
                                       "time_s": now - t0, "event": event, **m})
                bar.update(pos.step - bar.count, loss=m["loss"])
                if not event:
                    self._after_update(pos, params, opt_state, rest, store, best_store, val_log)
                if pos.step >= cfg.steps:
                    break
        bar.close()
        return params, rest, last_batch

    def _nonfinite(self, pos: _Position, m: dict[str, float], store: CheckpointStore, best_store: CheckpointStore,
                   params, opt_state, rest):
        """Count and log a non-finite batch and apply ``train.nan_policy``; ``rollback`` restores
        the newest checkpoint (``pos.step`` and ``pos.best_val`` included, not the data position)."""
        cfg = self.cfg
        pos.nan_events, pos.bad = pos.nan_events + 1, pos.bad + 1
        self._event(pos, f"event=nonfinite_loss loss={m['loss']} grad_norm={m['grad_norm']} action={cfg.nan_policy}")
        if pos.bad >= cfg.max_nan_events:
            raise RuntimeError(f"{pos.bad} consecutive non-finite losses up to batch {pos.batches}; "
                               f"see {self.run_dir / 'events.log'}")
        if cfg.nan_policy == "rollback":
            ck = store.latest_step()
            params, opt_state, rest, meta = self._restore(store, ck, params, opt_state, rest)
            self._event(pos, f"event=rollback restored_step={ck}")
            pos.step, pos.best_val = ck, meta["best_val"]
            best_store.clear(after=ck)  # bests of the discarded updates
        return params, opt_state, rest

    def _after_update(self, pos: _Position, params, opt_state, rest, store: CheckpointStore,
                      best_store: CheckpointStore, val_log: _CsvLog) -> None:
        """Validation (and the best checkpoint) and the periodic checkpoint due after update ``pos.step``."""
        cfg = self.cfg
        last = pos.step == cfg.steps
        if self.val_loader is not None and (pos.step % cfg.validate_every == 0 or last):
            v = self.validate(params, rest)
            improved = math.isfinite(v["loss"]) and (pos.best_val is None or v["loss"] < pos.best_val)
            if improved:
                pos.best_val = v["loss"]
                self._save(best_store, pos, params, opt_state, rest)
            val_log.write({"step": pos.step, "batch": pos.batches, "val_loss": v["loss"], "best": int(improved),
                           **{f"val_{k}": x for k, x in v.items() if k != "loss"}})
        if pos.step % cfg.checkpoint_every == 0 or last:
            self._save(store, pos, params, opt_state, rest)

    def _plot_sample(self, model: nnx.Module, last_batch: dict[str, np.ndarray] | None) -> None:
        """``sample.png`` of the first validation sample (else of the last training batch)."""
        if self.sample_fn is None:
            return
        sample_batch = next(iter(self.val_loader.epoch(0))) if self.val_loader is not None else last_batch
        if sample_batch is None:
            return
        one = {k: np.asarray(v)[:1] for k, v in sample_batch.items()}
        graphdef = self._graphdef
        pred, truth = jax.jit(lambda p, r, b: self.sample_fn(nnx.merge(graphdef, p, r), b))(
            *split_model(model)[1:], one)
        plot_sample(np.asarray(pred), np.asarray(truth), self.run_dir / "sample.png")
