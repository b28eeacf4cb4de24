"""Build models from config dicts; save and restore them with their constructor arguments.

A model config is a plain dict ``{"kind": "fno" | "ffno" | "unet" | "traces", **constructor_kwargs}``
(TOML-compatible; a ``"traces"`` config nests its backbone's config). On disk a model is an
orbax checkpoint directory (an orbax ``CheckpointManager`` root) whose steps hold the items

- ``params``: ``{"param": [...], "rest": [...]}``, the leaves of the trainable
  (:class:`flax.nnx.Param`) and non-trainable model state in ``jax.tree_util`` order;
- ``meta``: JSON ``{"format_version", "model": <config>, "param_paths": [...], ...}``.

Training checkpoints (``training.checkpoint``) use the same layout plus an optimizer item, so
:func:`load_model` restores a model from a training run's checkpoint directory as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from .field_models import FIELD_MODELS, build_from
from .traces import TraceNet

FORMAT_VERSION = 1
MODEL_KINDS: dict[str, type[nnx.Module]] = FIELD_MODELS | {"traces": TraceNet}


def build_model(config: dict[str, Any]) -> nnx.Module:
    """Construct a model from ``{"kind": ..., **kwargs}``; unknown kind or bad kwargs -> ValueError."""
    return build_from(MODEL_KINDS, config)


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``(graphdef, params, rest)``: trainable :class:`flax.nnx.Param` state and everything else."""
    return nnx.split(model, nnx.Param, ...)


def param_paths(params: nnx.State) -> list[str]:
    """Human-readable key paths of the parameter leaves, in leaf order."""
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def apply_batched(model: nnx.Module, x: jax.Array) -> jax.Array:
    """Apply a one-sample model to a batch ``(B, C, *spatial)`` with ``jax.vmap``."""
    graphdef, state = nnx.split(model)
    return jax.vmap(lambda xi: nnx.merge(graphdef, state)(xi))(x)


def model_items(model: nnx.Module) -> dict[str, list[jax.Array]]:
    """The ``params`` checkpoint item of ``model``."""
    _, params, rest = split_model(model)
    return {"param": jax.tree_util.tree_leaves(params), "rest": jax.tree_util.tree_leaves(rest)}


def model_meta(model: nnx.Module, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``meta`` checkpoint item: format version, constructor config, parameter paths."""
    _, params, _ = split_model(model)
    return {"format_version": FORMAT_VERSION, "model": config, "param_paths": param_paths(params), **extra}


def _abstract(leaves: list[jax.Array]) -> list[jax.ShapeDtypeStruct]:
    """Restore targets on this process's first device, whatever mesh wrote the checkpoint."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return [jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=device) for x in leaves]


def with_items(model: nnx.Module, items: dict[str, list[Any]]) -> nnx.Module:
    """A copy of ``model`` whose state leaves are replaced by a ``params`` item."""
    graphdef, params, rest = split_model(model)
    def fill(like: nnx.State, stored: list[Any]) -> nnx.State:
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), [jnp.asarray(x) for x in stored])

    params, rest = fill(params, items["param"]), fill(rest, items["rest"])
    return nnx.merge(graphdef, params, rest)


def save_model(directory: str | Path, model: nnx.Module, config: dict[str, Any]) -> Path:
    """Write ``model`` (built from ``config``) as a one-step checkpoint directory; returns it."""
    directory = Path(directory).absolute()
    json.dumps(config)  # the config must be JSON (and TOML) serialisable
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            create=True, enable_async_checkpointing=False), item_names=("params", "meta")) as mngr:
        mngr.save(0, args=ocp.args.Composite(params=ocp.args.StandardSave(model_items(model)),
                                             meta=ocp.args.JsonSave(model_meta(model, config))), force=True)
    return directory


def load_model(directory: str | Path, step: int | None = None) -> tuple[nnx.Module, dict[str, Any]]:
    """Restore ``(model, meta)`` from a checkpoint directory written by :func:`save_model` or the
    trainer (``step=None``: the latest step). The model is rebuilt from the stored constructor
    config and its state replaced by the stored leaves."""
    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise ValueError(f"checkpoint directory not found: {directory}")
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                               item_names=("params", "meta")) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no checkpoint found in {directory}")
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"checkpoint {directory} has format_version {version}; this code reads {FORMAT_VERSION}")
        model = build_model(meta["model"])
        _, params, _ = split_model(model)
        if param_paths(params) != meta["param_paths"]:
            raise ValueError(f"checkpoint {directory}: stored parameters do not match the model built from its config")
        abstract = {k: _abstract(v) for k, v in model_items(model).items()}
        items = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))).params
    return with_items(model, items), meta
