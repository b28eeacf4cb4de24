"""Dataset generation throughput: samples/s and the share of wall time spent outside simulation.

For each config, at the config's batch size:
- pure simulation: the same ``jit(vmap(simulate))`` on inputs already on the device, timed with
  ``block_until_ready`` (compilation excluded);
- generation: ``training.data.generate`` end to end into a fresh directory (same compiled code):
  host-side phantoms/sources, device run, device->host copy, compression, chunk writes, markers,
  statistics.
``overhead = 1 - t_simulation / t_generation`` is the share of generation wall time not explained
by simulation (target <= 10%), over the whole run and in steady state (after the first batch is
written: compilation and the host worker pool's start are fixed costs). The write stage is also
timed alone, and so is the storage itself (files of the dataset's largest chunk, written by the
same number of threads, each file fsync'd as tensorstore's file driver does by default, and
without fsync), so the table shows which stage bounds the rate.

    uv run python experiments/bench_data.py            # GPU sizes (128^2 configs)
    uv run python experiments/bench_data.py --small    # CPU smoke sizes
    uv run python experiments/bench_data.py --scratch /dev/shm --out DIR   # datasets in RAM:
        # the pipeline without the disk (compare with the default run to see what the disk costs)

Writes ``experiments/results/bench_data_<backend>[_small].{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GPU_CONFIGS = ("acoustic_stepper_128", "usct_128", "maxwell_field_128")
SMALL_CONFIGS = ("acoustic_smoke", "maxwell_smoke")


def storage_write_mb_per_s(scratch: Path, chunk_bytes: int, total_bytes: int, writers: int, sync: bool) -> float:
    """MB/s of writing ``total_bytes`` into ``scratch`` as files of ``chunk_bytes`` random bytes from
    ``writers`` threads, each file fsync'd before it is closed when ``sync`` (the dataset writer's
    chunk files are: tensorstore's ``file_io_sync`` defaults to true)."""
    block = np.random.default_rng(0).integers(0, 256, chunk_bytes, dtype=np.uint8).tobytes()
    n_files = max(writers, -(-total_bytes // chunk_bytes))
    folder = scratch / f"storage_{'sync' if sync else 'nosync'}"
    folder.mkdir()

    def write(i: int) -> None:
        with open(folder / f"f{i}", "wb") as f:
            f.write(block)
            if sync:
                os.fsync(f.fileno())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(n_files)))
    seconds = time.perf_counter() - t0
    shutil.rmtree(folder)
    return n_files * chunk_bytes / seconds / 1e6


def bench_config(name: str, batches: int, workers: int | None, writers: int, scratch: Path) -> dict:
    """One config's row; ``workers=None``: :func:`training.data.generate.default_workers`."""
    import jax

    from training.data import generate, load_data_config
    from training.data.generate import BatchedSimulator, batch_inputs, default_workers, padded, stored_arrays
    from training.data.scenarios import build
    from training.data.storage import DatasetWriter, chunk_samples

    config = load_data_config(ROOT / "experiments" / "configs" / f"{name}.toml")
    config = dataclasses.replace(config, num_samples=batches * config.batch_size)
    workers = default_workers(config.num_samples) if workers is None else workers
    scenario = build(config)
    sim = BatchedSimulator(scenario)
    bs = config.batch_size
    pad = -(-bs // sim.n_devices) * sim.n_devices

    t0 = time.perf_counter()
    host = [batch_inputs(scenario, list(range(b * bs, (b + 1) * bs))) for b in range(batches)]
    host_s = time.perf_counter() - t0
    placed = [sim.place(padded(h, pad)) for h, _ in host]
    jax.block_until_ready(placed)

    t0 = time.perf_counter()
    jax.block_until_ready(sim.run(placed[0]))
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    outputs = [sim.run(p) for p in placed]
    jax.block_until_ready(outputs)
    sim_s = time.perf_counter() - t0

    # the write stage alone (device->host copy, cast, compression, chunk writes, statistics, markers)
    # with the same writer threads, into a fresh dataset
    DatasetWriter.prepare(scratch / f"{name}_writes", config, scenario.fields, constants=scenario.constants,
                          overwrite=True)
    writer = DatasetWriter(scratch / f"{name}_writes")
    for field in writer.fields:
        writer.array(field)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda b: writer.write_batch(b, stored_arrays(writer, b, host[b][0], outputs[b]), host[b][1]),
                      range(batches)))
    write_s = time.perf_counter() - t0
    del outputs

    out_dir = scratch / name
    with open(os.devnull, "w") as devnull:
        report = generate(config, out_dir, overwrite=True, progress=False, workers=workers, writers=writers,
                          log=devnull)
    assert report["status"] == "complete", report
    gen_s, first_s = report["seconds"], report["first_batch_s"]
    disk = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    raw = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in scenario.fields.values())
    shutil.rmtree(out_dir)
    shutil.rmtree(scratch / f"{name}_writes")
    n = config.num_samples
    steady_rate = (n - bs) / (gen_s - first_s)
    chunk_bytes = max(chunk_samples(spec, bs) * math.prod(spec.shape) * np.dtype(spec.dtype).itemsize
                      for spec in scenario.fields.values())
    storage = {sync: storage_write_mb_per_s(scratch, chunk_bytes, disk, writers, sync) for sync in (True, False)}
    return {
        "config": name, "scenario": config.scenario, "shape": list(config.shape), "batch_size": bs,
        "samples": n, "devices": sim.n_devices, "workers": workers, "writers": writers,
        "compile_s": compile_s, "simulation_s": sim_s, "generation_s": gen_s, "first_batch_s": first_s,
        "simulation_samples_per_s": n / sim_s, "generation_samples_per_s": n / gen_s,
        "steady_samples_per_s": steady_rate,
        "overhead": 1.0 - sim_s / gen_s, "steady_overhead": 1.0 - steady_rate * sim_s / n,
        "host_inputs_ms_per_sample_1proc": 1e3 * host_s / n, "write_ms_per_sample": 1e3 * write_s / n,
        "raw_mb_per_sample": raw / 1e6, "disk_mb_per_sample": disk / n / 1e6,
        "scratch": str(scratch), "storage_chunk_mb": chunk_bytes / 1e6,
        "storage_mb_per_s_fsync": storage[True], "storage_mb_per_s_no_fsync": storage[False],
        "storage_bound_samples_per_s": storage[True] / (disk / n / 1e6),
    }


def write_report(out: Path, stem: str, meta: dict, rows: list[dict], small: bool) -> None:
    """Write ``<stem>.json`` and the markdown table ``<stem>.md`` (atomically) into ``out``."""
    from pdesurrogate.io import write_json, write_text

    write_json(out / f"{stem}.json", {"meta": meta, "rows": rows})
    lines = [f"# Dataset generation throughput ({meta['device']}, JAX {meta['jax']})", "",
             f"`{meta['command']}` on {meta['date']}, datasets written under `{meta['scratch']}`. "
             "Overhead = share of generation wall time outside simulation (target <= 10%): over the whole "
             "run, and in steady state (after the first batch is written, i.e. without compilation and "
             "the worker pool's start). Host inputs: phantoms and sources in one process; writes: the "
             "write stage alone (device->host copy, compression, chunk writes, statistics, markers) "
             "with the writer threads. Storage: files of the largest chunk written by as many threads, "
             "fsync'd each (as the writer's) and not; storage-bound samples/s = fsync'd MB/s / disk MB per "
             "sample.", "",
             "| config | grid | batch | samples | workers | writers | simulation samples/s | "
             "generation samples/s | overhead | steady samples/s | steady overhead | first batch s | "
             "host inputs ms/sample (1 proc) | writes ms/sample | MB/sample raw -> disk | "
             "storage MB/s fsync / none | storage-bound samples/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {'x'.join(map(str, r['shape']))} | {r['batch_size']} | {r['samples']} | "
                     f"{r['workers']} | {r['writers']} | {r['simulation_samples_per_s']:.3g} | "
                     f"{r['generation_samples_per_s']:.3g} | {100 * r['overhead']:.1f}% | "
                     f"{r['steady_samples_per_s']:.3g} | {100 * r['steady_overhead']:.1f}% | {r['first_batch_s']:.2f} | "
                     f"{r['host_inputs_ms_per_sample_1proc']:.2f} | {r['write_ms_per_sample']:.2f} | "
                     f"{r['raw_mb_per_sample']:.3g} -> {r['disk_mb_per_sample']:.3g} | "
                     f"{r['storage_mb_per_s_fsync']:.0f} / {r['storage_mb_per_s_no_fsync']:.0f} | "
                     f"{r['storage_bound_samples_per_s']:.3g} |")
    write_text(out / f"{stem}.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CPU smoke sizes")
    parser.add_argument("--configs", help="comma-separated config names (experiments/configs/NAME.toml)")
    parser.add_argument("--batches", type=int, default=None, help="batches per config (default 24; --small 6)")
    parser.add_argument("--workers", type=int, default=None,
                        help="host worker processes for generation (default: training.data.generate."
                             "default_workers; --small 0)")
    parser.add_argument("--writers", type=int, default=None,
                        help="writer threads for generation (default: training.data.generate.default_writers())")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    parser.add_argument("--scratch", default=None,
                        help="folder to generate the datasets in (default: the system's temporary folder)")
    args = parser.parse_args(argv)

    import jax

    names = args.configs.split(",") if args.configs else (SMALL_CONFIGS if args.small else GPU_CONFIGS)
    batches = args.batches or (6 if args.small else 24)
    if batches < 2:
        raise ValueError(f"--batches must be >= 2 (steady state starts after the first batch), got {batches}")
    from training.data.generate import default_writers

    workers = 0 if args.small and args.workers is None else args.workers
    writers = args.writers if args.writers is not None else default_writers()
    backend = jax.default_backend()
    device = str(jax.devices()[0].device_kind) if backend != "cpu" else f"CPU ({os.cpu_count()} cores visible)"
    meta = {"backend": backend, "device": device, "jax": jax.__version__, "python": platform.python_version(),
            "small": args.small, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "scratch": str(Path(args.scratch or tempfile.gettempdir()).resolve()),
            "command": "uv run python experiments/bench_data.py" + " ".join(["", *(argv if argv is not None else sys.argv[1:])])}
    stem = f"bench_data_{backend}{'_small' if args.small else ''}"
    out = Path(args.out)
    if args.scratch is not None and not Path(args.scratch).is_dir():
        raise ValueError(f"--scratch must be an existing folder, got {args.scratch}")
    scratch = Path(tempfile.mkdtemp(prefix="bench_data_", dir=args.scratch))
    rows: list[dict] = []
    try:
        for name in names:
            rows.append(bench_config(name, batches, workers, writers, scratch))
            print(json.dumps(rows[-1]), flush=True)
            write_report(out, stem, meta, rows, args.small)  # after every config: a cut run keeps its rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
