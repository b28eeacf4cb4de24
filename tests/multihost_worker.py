"""One process of the two-process ``jax.distributed`` training test (``tests/test_multihost.py``).

Usage: ``python tests/multihost_worker.py RUN_DIR OUT.npz`` with ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set: the Trainer (``train.distributed = true``)
initialises ``jax.distributed`` from them before any other JAX call, then trains on this
process's half of every global batch. Writes the final state leaves (``leaf_0``, ...), the best
validation loss and the logged training losses (process 0) to ``OUT.npz``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from tests.test_trainer import InMemoryLoader, leaves, read_csv, shift_data, stepper_setup  # noqa: E402
from training.trainer import Trainer  # noqa: E402

TRAIN = {"steps": 8, "batch_size": 8, "unroll": 2, "noise_std": 0.05, "checkpoint_every": 8, "validate_every": 8}


def setup(**train):
    """``(model config, loss_fn, global train loader, global val loader, train config)`` shared
    by the workers and the single-process reference."""
    model_cfg, loss_fn, _, loader, cfg = stepper_setup(shift_data(16), **TRAIN, **train)
    return model_cfg, loss_fn, loader, InMemoryLoader(shift_data(8, seed=1), 8), cfg


class ProcessLocalLoader:
    """This process's contiguous ``1 / jax.process_count()`` of every batch of ``loader``
    (process ``i`` gets rows ``[i * b, (i + 1) * b)``, ``b = batch / process_count``)."""

    def __init__(self, loader: InMemoryLoader):
        self.loader, self.stats = loader, loader.stats

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, e: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        n, i = jax.process_count(), jax.process_index()
        for batch in self.loader.epoch(e, start):
            b = len(next(iter(batch.values()))) // n
            yield {k: v[i * b:(i + 1) * b] for k, v in batch.items()}


def main(run_dir: str, out: str) -> None:
    model_cfg, loss_fn, loader, val, cfg = setup(distributed=True)
    trainer = Trainer(model_cfg, loss_fn, ProcessLocalLoader(loader), cfg, run_dir,
                      val_loader=ProcessLocalLoader(val), progress=False)
    result = trainer.fit()
    losses = [float(r["loss"]) for r in read_csv(Path(run_dir) / "metrics.csv")] if jax.process_index() == 0 else []
    np.savez(out, process_count=jax.process_count(), devices=len(jax.devices()), step=result.step,
             best_val=result.best_val, losses=np.asarray(losses),
             **{f"leaf_{i}": x for i, x in enumerate(leaves(result.model))})


if __name__ == "__main__":
    main(*sys.argv[1:])
