"""orbax training checkpoints in the model format of :mod:`pdesurrogate.models.registry`.

A :class:`CheckpointStore` is one orbax ``CheckpointManager`` directory whose steps hold the
items ``params`` and ``meta`` (the model, readable by :func:`pdesurrogate.models.load_model`)
and ``opt`` (the optimizer state leaves). The trainer's ``meta`` also holds its resume position:
``step`` (applied updates, the checkpoint's number), ``batches`` (batches consumed, the data
position), ``nan_events``, ``best_val`` and the train config. A run directory has two stores: ``checkpoints/``
(periodic and last, the newest ``keep`` are kept) and ``best/`` (the best validation loss).
Saves are synchronous and atomic (orbax writes to a temporary directory and renames it), so a
process killed at any moment leaves the previous checkpoints intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from pdesurrogate.models.registry import FORMAT_VERSION


class CheckpointStore:
    """Save and restore ``(model items, optimizer leaves, meta)`` by step.

    Args:
        directory: the store's root (created on the first save).
        keep: how many of the newest steps to keep.
    """

    def __init__(self, directory: str | Path, keep: int):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("params", "opt", "meta"))

    def latest_step(self) -> int | None:
        """The newest complete step, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, ascending."""
        return sorted(self._manager.all_steps())

    def clear(self, after: int = -1) -> None:
        """Delete every step greater than ``after`` (default: all, for a fresh run)."""
        for step in self._manager.all_steps():
            if step > after:
                self._manager.delete(step)

    def save(self, step: int, items: dict[str, list[jax.Array]], opt: list[jax.Array], meta: dict[str, Any]) -> None:
        """Write ``step`` (replacing an existing checkpoint of the same step)."""
        if step in self._manager.all_steps():
            self._manager.delete(step)
        self._manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(items), opt=ocp.args.StandardSave(opt),
            meta=ocp.args.JsonSave({"format_version": FORMAT_VERSION, **meta})), force=True)
        self._manager.wait_until_finished()

    def meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of ``step`` (format version, model config, step, ...)."""
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"checkpoint {self.directory}/{step} has format_version {meta.get('format_version')}; "
                             f"this code reads {FORMAT_VERSION}")
        return meta

    def restore(self, step: int, items_like: dict[str, list[Any]], opt_like: list[Any]
                ) -> tuple[dict[str, list[jax.Array]], list[jax.Array], dict[str, Any]]:
        """Restore ``step`` into the shapes, dtypes and shardings of ``items_like`` and ``opt_like``
        (arrays or ``jax.ShapeDtypeStruct``)."""
        def abstract(x: Any) -> jax.ShapeDtypeStruct:
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))

        meta = self.meta(step)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(jax.tree_util.tree_map(abstract, items_like)),
            opt=ocp.args.StandardRestore(jax.tree_util.tree_map(abstract, opt_like))))
        return restored.params, restored.opt, meta

    def close(self) -> None:
        """Release the manager's resources."""
        self._manager.close()
