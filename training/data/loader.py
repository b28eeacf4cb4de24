"""Training batches from a dataset: seeded shuffling, per-process sharding, background prefetch.

Epoch ``e`` visits a permutation drawn from ``numpy.random.default_rng([seed, e])`` (or the
identity without shuffling). The permutation is split into ``process_count`` contiguous parts;
process ``p`` reads only its part, in batches of ``batch_size``. So every sample appears exactly
once per epoch across processes (with ``drop_last=False``; ``drop_last=True`` drops the same
``N mod process_count`` samples from all processes and each process's incomplete last batch,
which keeps the batch count equal on every process). Batches are deterministic in
``(seed, epoch)``, and ``epoch(e, start=b)`` resumes mid-epoch by skipping ``b`` batches without
reading them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from training.data.storage import Dataset


class Loader:
    """Batches of a :class:`~training.data.storage.Dataset` for one process.

    Args:
        dataset: an opened, complete dataset.
        batch_size: samples per batch on this process.
        fields: fields to read (default: every field); ``seed`` and ``index`` are always included.
        seed: shuffling seed.
        shuffle: shuffle per epoch (else sample order).
        drop_last: drop incomplete batches (and the samples that do not split evenly over processes).
            The default ``False`` yields every sample exactly once per epoch across processes;
            training passes ``True`` for batches of exactly ``batch_size``.
        process_index, process_count: this process's share (default: ``jax.process_index()`` /
            ``jax.process_count()``).
        prefetch: batches read ahead on a background thread (0: read synchronously).
        device: optional ``jax.Device`` or ``jax.sharding.Sharding``; batches are then placed there
            on the prefetch thread and yielded as ``jax.Array`` (default: numpy arrays).
        subset: the sample indices to draw from (e.g. a train/validation split); default all.
        transform: applied to every batch (a dict of numpy arrays) on the prefetch thread, before
            device placement; e.g. stacking fields into a task layout.

    Attributes:
        stats: normalisation statistics ``{field: {"mean": float, "std": float, ...}}`` from the manifest.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, fields: list[str] | tuple[str, ...] | None = None,
                 seed: int = 0, shuffle: bool = True, drop_last: bool = False, process_index: int | None = None,
                 process_count: int | None = None, prefetch: int = 2, device: Any = None,
                 subset: np.ndarray | list[int] | None = None,
                 transform: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None):
        if not dataset.complete:
            raise ValueError(f"dataset {dataset.path} is incomplete ({int(dataset.written().sum())}/{len(dataset)} "
                             f"samples); finish it with `pdesurrogate generate` first")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if process_index is None or process_count is None:
            import jax

            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"process_index must be in [0, {process_count - 1}] with process_count >= 1, "
                             f"got {process_index} of {process_count}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        unknown = sorted(set(fields or ()) - set(dataset.fields))
        if unknown:
            raise ValueError(f"fields must be among {sorted(dataset.fields)}, got unknown {unknown}")
        self.dataset = dataset
        self.subset = np.arange(len(dataset)) if subset is None else np.asarray(subset, np.int64).reshape(-1)
        if self.subset.size and (self.subset.min() < 0 or self.subset.max() >= len(dataset)):
            raise ValueError(f"subset must hold sample indices in [0, {len(dataset) - 1}]")
        self.transform = transform
        self.batch_size = int(batch_size)
        self.fields = tuple(fields) if fields is not None else tuple(dataset.fields)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.prefetch = int(prefetch)
        self.device = device
        self.stats: dict[str, dict[str, float]] = {k: v for k, v in dataset.stats.items() if k in self.fields}
        if len(self) == 0:
            raise ValueError(f"batch_size {batch_size} with {process_count} process(es) leaves no batch "
                             f"from {len(self.subset)} samples (drop_last={drop_last})")

    def indices(self, epoch: int) -> np.ndarray:
        """This process's sample order for ``epoch``, ``(n,)``."""
        n = len(self.subset)
        order = np.random.default_rng([self.seed, int(epoch)]).permutation(self.subset) if self.shuffle \
            else self.subset
        if self.drop_last:
            per = n // self.process_count
            part = order[self.process_index * per:(self.process_index + 1) * per]
            return part[: len(part) // self.batch_size * self.batch_size]
        return np.array_split(order, self.process_count)[self.process_index]

    def __len__(self) -> int:
        """Batches per epoch on this process."""
        n = len(self.subset)
        if self.drop_last:
            return (n // self.process_count) // self.batch_size
        return -(-len(np.array_split(np.arange(n), self.process_count)[self.process_index]) // self.batch_size)

    def _read(self, idx: np.ndarray) -> dict[str, Any]:
        batch = self.dataset.read(idx, self.fields)
        if self.transform is not None:
            batch = self.transform(batch)
        if self.device is not None:
            import jax

            batch = {k: jax.device_put(v, self.device) for k, v in batch.items()}
        return batch

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """Yield the batches of ``epoch`` from batch ``start`` on: ``{field: (B, ...), "seed", "index"}``."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}], got {start}")
        order = self.indices(epoch)
        chunks = [order[b * self.batch_size:(b + 1) * self.batch_size] for b in range(start, len(self))]
        if self.prefetch == 0:
            for idx in chunks:
                yield self._read(idx)
            return
        yield from _prefetched((self._read(idx) for idx in chunks), self.prefetch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.epoch(0)


def _prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Evaluate ``items`` on a background thread, up to ``depth`` ahead; errors surface in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", end))
        except BaseException as err:
            q.put(("error", err))

    thread = threading.Thread(target=produce, name="loader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
