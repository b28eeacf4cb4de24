"""Dataset generation: vmapped batches sharded over local devices, a pool of writer threads, resumable.

``generate(config, out)`` fills ``out`` with ``config.num_samples`` samples:

- host side, each sample's inputs come from :meth:`Scenario.inputs` (pure in (config, seed, index));
- device side, a storage batch of ``batch_size`` samples runs as one ``jit(vmap(simulate))`` whose
  batch axis is sharded over ``jax.local_devices()`` (padded to a multiple of the device count;
  short final batches are padded to ``batch_size`` so every batch compiles once and computes alike);
- background writer threads pull finished batches off the device and write them (several batches
  at once: tensorstore compresses outside the GIL), so the next batches are prepared and dispatched
  while earlier ones are written;
- with ``jax.distributed`` initialised, the batches still missing are split into one contiguous
  range per process, and every process writes its range into the same directory.

Kill it at any moment and run the same command again: it resumes with the batches that have no
marker (see :mod:`training.data.storage`). Run it on a complete dataset: it says so and does nothing.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogate.progress import Progress
from training.data import scenarios
from training.data.config import DataConfig, as_config, config_dict, fingerprint, load_data_config, parse_data_config
from training.data.storage import DatasetWriter, git_commit


def _barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def batch_inputs(scenario: scenarios.Scenario, indices: list[int]) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Stacked host inputs ``{field: (len(indices), ...)}`` and per-sample metadata of ``indices``."""
    rows = [scenario.inputs(i) for i in indices]
    arrays = {k: np.stack([r[0][k] for r in rows]) for k in rows[0][0]}
    extra = {k: [r[1][k] for r in rows] for k in rows[0][1]}
    return arrays, extra


class BatchedSimulator:
    """``jit(vmap(scenario.simulate))`` with the batch axis sharded over ``devices``.

    ``sim(inputs)`` places host inputs ``{name: (B, ...)}`` (B a multiple of ``n_devices``) and
    dispatches the run asynchronously; ``sim.place`` and ``sim.run`` expose the two halves
    (benchmarks time ``run`` alone). Compiled code is shared by every simulator of the same config
    and devices.
    """

    _compiled: dict[tuple, Any] = {}

    def __init__(self, scenario: scenarios.Scenario, devices: list | None = None):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.n_devices = len(self.devices)
        self.inputs = scenario.device_inputs
        self.sharding = NamedSharding(Mesh(np.array(self.devices), ("batch",)), PartitionSpec("batch"))
        key = (fingerprint(scenario.config), tuple(str(d) for d in self.devices))
        if key not in self._compiled:
            self._compiled[key] = jax.jit(jax.vmap(scenario.simulate), out_shardings=self.sharding)
        self.run = self._compiled[key]

    def place(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        import jax

        return {k: jax.device_put(inputs[k], self.sharding) for k in self.inputs}

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        return self.run(self.place(inputs))


_WORKER: dict[str, Any] = {}


def _worker_init(config: dict[str, Any]) -> None:
    import jax

    jax.config.update("jax_platforms", "cpu")  # host-side inputs only: never touch the accelerator
    _WORKER["scenario"] = scenarios.build(parse_data_config(config))


def _worker_batch(indices: list[int]) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    return batch_inputs(_WORKER["scenario"], indices)


def host_batches(scenario: scenarios.Scenario, ranges: list[tuple[int, int, int]], workers: int
                 ) -> Iterator[tuple[int, dict[str, np.ndarray], dict[str, list]]]:
    """Yield ``(batch, inputs, extra)`` for every ``(batch, start, stop)`` in ``ranges``.

    With ``workers > 0`` a pool of spawned CPU-only processes builds the batches in order, ``workers
    + 1`` ahead. Whenever the pool's next batch is not ready (while the pool starts: a spawned worker
    imports JAX and builds the scenario, seconds), this process builds the last batch not yet
    handed to the pool, or, once all are handed out, takes the pool's oldest batch back, so the
    device never waits for the pool. Batches may therefore come out of order; each is a pure
    function of (config, index), so the dataset is the same.
    """
    def local(b: int, lo: int, hi: int) -> tuple[int, dict[str, np.ndarray], dict[str, list]]:
        return (b, *batch_inputs(scenario, list(range(lo, hi))))

    if workers <= 0 or len(ranges) <= 1:
        yield from itertools.starmap(local, ranges)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(config_dict(scenario.config),))
    try:
        todo = collections.deque(ranges)
        pending: collections.deque = collections.deque()

        def refill() -> None:
            while todo and len(pending) < workers + 1:
                b, lo, hi = todo.popleft()
                pending.append((b, lo, hi, pool.submit(_worker_batch, list(range(lo, hi)))))

        refill()
        while pending:
            b, lo, hi, fut = pending[0]
            if fut.done():
                pending.popleft()
                refill()
                yield (b, *fut.result())
            elif todo:
                yield local(*todo.pop())
            else:  # the pool lags at the end: take its oldest batch back
                pending.popleft()
                fut.cancel()
                yield local(b, lo, hi)
    finally:  # do not wait for workers still starting; their batches were built here
        pool.shutdown(wait=False, cancel_futures=True)


def stored_arrays(writer: DatasetWriter, b: int, host: dict[str, np.ndarray], device_out: dict[str, Any] | None
                  ) -> dict[str, np.ndarray]:
    """The arrays of storage batch ``b``: the stored host inputs and the device outputs, copied to
    the host, cut to the batch's samples (padding dropped) and cast to the stored dtypes."""
    lo, hi = writer.batch_range(b)
    arrays = {k: v[:hi - lo] for k, v in host.items() if k in writer.fields}
    for k, v in (device_out or {}).items():
        arrays[k] = np.asarray(v)[:hi - lo].astype(writer.fields[k].dtype, copy=False)
    return arrays


def default_workers(num_samples: int) -> int:
    """Host processes for :func:`generate`: ``min(8, cpus - 2)`` on 4 or more CPU cores for datasets of
    256 samples or more (a pool's start, seconds, pays off only when the device stays busy), else 0."""
    cpus = os.cpu_count() or 1
    return min(8, cpus - 2) if cpus >= 4 and num_samples >= 256 else 0


def default_writers() -> int:
    """Writer threads for :func:`generate`: one per four CPU cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def padded(arrays: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Batch ``arrays`` padded to ``size`` rows by repeating the last sample (its results are dropped)."""
    return {k: np.concatenate([v, np.repeat(v[-1:], size - len(v), axis=0)]) if len(v) < size else v
            for k, v in arrays.items()}


def generate(config: DataConfig | dict[str, Any], out: str | Path, *, overwrite: bool = False,
             progress: bool = True, devices: list | None = None, max_batches: int | None = None,
             workers: int = 0, writers: int | None = None, log=None) -> dict[str, Any]:
    """Generate (or resume, or confirm) the dataset of ``config`` in directory ``out``.

    Args:
        config: a :class:`DataConfig` or the raw ``[data]`` table.
        out: the dataset directory (created if missing).
        overwrite: replace an existing dataset of a different (or the same) config.
        progress: show a progress bar (samples/s, ETA) on stderr.
        devices: local devices to shard each batch over (default: all local devices).
        max_batches: stop after this many batches in this process (benchmarks; the dataset stays resumable).
        workers: host processes that build phantoms and sources ahead of the device (0: in this process).
        writers: threads that copy finished batches to the host and write them (default
            :func:`default_writers`); at most ``writers + 1`` batches wait for a writer.
        log: stream for status lines (default stderr).

    Returns:
        a report: ``status`` ("complete", "already complete" or "partial"), ``written`` (samples
        written by this process), ``seconds``, ``samples_per_s``, ``first_batch_s`` (seconds until
        the first batch was written: compilation and start-up; ``None`` when nothing was written),
        ``process_index``, ``process_count``.

    Raises:
        ValueError: invalid config, or ``out`` holds a different dataset and ``overwrite`` is False.
    """
    import jax

    writers = default_writers() if writers is None else writers
    if writers < 1:
        raise ValueError(f"writers must be >= 1, got {writers}")
    log = log or sys.stderr
    config = as_config(config)
    scenario = scenarios.build(config)
    pid, nproc = jax.process_index(), jax.process_count()
    if pid == 0:
        DatasetWriter.prepare(out, config, scenario.fields, constants=scenario.constants, overwrite=overwrite)
    _barrier("pdesurrogate-data-prepare")
    if pid != 0:
        DatasetWriter.prepare(out, config, scenario.fields, constants=scenario.constants)
    writer = DatasetWriter(out)
    if writer.complete:
        print(f"{out}: dataset already complete ({len(writer)} samples); nothing to do", file=log)
        return {"status": "already complete", "written": 0, "seconds": 0.0, "samples_per_s": 0.0,
                "first_batch_s": None, "process_index": pid, "process_count": nproc}
    done = writer.done_batches()
    _barrier("pdesurrogate-data-listed")
    todo = [b for b in range(writer.num_batches) if b not in done]
    mine = [int(b) for b in np.array_split(np.array(todo, dtype=int), nproc)[pid]]
    if max_batches is not None:
        mine = mine[:max_batches]
    if done:
        print(f"{out}: resuming, {len(done)}/{writer.num_batches} batches already written", file=log)
        began, now = writer.manifest.get("git_commit"), git_commit()
        if began and now and began != now:
            print(f"{out}: warning: the dataset was begun at commit {began} and is resumed at {now}; if the "
                  f"solvers changed in between, the two runs' samples differ (--overwrite regenerates all)",
                  file=log)
    bs = config.batch_size
    n_mine = sum(writer.batch_range(b)[1] - writer.batch_range(b)[0] for b in mine)
    bar = Progress(total=n_mine, desc=f"generate[{pid}/{nproc}]" if nproc > 1 else "generate",
                   unit="samples", enabled=progress, stream=log)
    start_time = time.perf_counter()

    if scenario.simulate is not None and mine:
        simulate = BatchedSimulator(scenario, devices)
        padded_size = -(-bs // simulate.n_devices) * simulate.n_devices
    else:
        simulate, padded_size = None, bs

    for name in writer.fields:  # open every array before the writer threads share the handles
        writer.array(name)
    pending: queue.Queue = queue.Queue(maxsize=writers + 1)
    failure: list[BaseException] = []
    first_write: list[float] = []  # seconds from the start to the first finished batch
    bar_lock = threading.Lock()

    def write_loop() -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            if failure:
                continue
            b, host, extra, device_out = item
            try:
                writer.write_batch(b, stored_arrays(writer, b, host, device_out), extra)
                lo, hi = writer.batch_range(b)
                with bar_lock:
                    bar.update(hi - lo)
                    if not first_write:
                        first_write.append(time.perf_counter() - start_time)
            except BaseException as err:  # re-raised in the main thread
                failure.append(err)

    threads = [threading.Thread(target=write_loop, name=f"dataset-writer-{i}", daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    try:
        for b, host, extra in host_batches(scenario, [(b, *writer.batch_range(b)) for b in mine], workers):
            if failure:
                break
            device_out = None
            if simulate is not None:
                device_out = simulate(padded(host, padded_size))  # dispatched asynchronously
            pending.put((b, host, extra, device_out))
    finally:
        for _ in threads:
            pending.put(None)
        for thread in threads:
            thread.join()
        bar.close()
    if failure:
        raise failure[0]
    seconds = time.perf_counter() - start_time
    _barrier("pdesurrogate-data-written")
    complete = writer.finalize() if pid == 0 or nproc == 1 else DatasetWriter(out).done_batches() == set(
        range(writer.num_batches))
    _barrier("pdesurrogate-data-finalized")
    status = "complete" if complete else "partial"
    if pid == 0:
        print(f"{out}: {status}: wrote {n_mine} samples in {seconds:.1f} s "
              f"({n_mine / seconds if seconds > 0 else 0:.3g} samples/s) on {nproc} process(es)", file=log)
    return {"status": status, "written": n_mine, "seconds": seconds,
            "samples_per_s": n_mine / seconds if seconds > 0 else 0.0,
            "first_batch_s": first_write[0] if first_write else None, "process_index": pid, "process_count": nproc}


def generate_from_file(path: str | Path, out: str | Path, *, overwrite: bool = False, progress: bool = True,
                       workers: int | None = None, writers: int | None = None,
                       distributed: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`generate` the ``[data]`` section of the experiment TOML file ``path`` into ``out``
    (``pdesurrogate generate``).

    Args:
        workers: phantom-building host processes (default :func:`default_workers`).
        writers: writer threads (default :func:`default_writers`).
        distributed: ``None`` for one process; else the keyword arguments of
            ``jax.distributed.initialize`` (``{}``: cluster auto-detection, or ``coordinator_address``,
            ``num_processes`` and ``process_id``), called before anything else touches JAX.
    """
    import jax

    config = load_data_config(str(path))
    if distributed is not None:
        jax.distributed.initialize(**distributed)
    return generate(config, out, overwrite=overwrite, progress=progress, writers=writers,
                    workers=default_workers(config.num_samples) if workers is None else workers)

