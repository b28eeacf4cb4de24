"""Dataset generation throughput: samples/s and the share of wall time spent outside simulation.

For each config, at the config's batch size:
- pure simulation: the same ``jit(vmap(simulate))`` on inputs already on the device, timed with
  ``block_until_ready`` (compilation excluded);
- generation: ``training.data.generate`` end to end into a fresh directory (same compiled code):
  host-side phantoms/sources, device run, device->host copy, compression, chunk writes, markers,
  statistics.
``overhead = 1 - t_simulation / t_generation`` is the share of generation wall time not explained
by simulation (target <= 10%).

    uv run python experiments/bench_data.py            # GPU sizes (128^2 configs)
    uv run python experiments/bench_data.py --small    # CPU smoke sizes

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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GPU_CONFIGS = ("acoustic_stepper_128", "usct_128", "maxwell_field_128")
SMALL_CONFIGS = ("acoustic_smoke", "maxwell_smoke")


def bench_config(name: str, batches: int, workers: int, scratch: Path) -> dict:
    import jax

    from training.data import generate, load_data_config
    from training.data.generate import BatchedSimulator, batch_inputs
    from training.data.scenarios import build

    config = load_data_config(ROOT / "experiments" / "configs" / f"{name}.toml")
    config = dataclasses.replace(config, num_samples=batches * config.batch_size)
    scenario = build(config)
    sim = BatchedSimulator(scenario)
    bs = config.batch_size
    pad = -(-bs // sim.n_devices) * sim.n_devices

    t0 = time.perf_counter()
    host = [batch_inputs(scenario, list(range(b * bs, (b + 1) * bs)))[0] for b in range(batches)]
    host_s = time.perf_counter() - t0
    if pad != bs:
        host = [{k: np.concatenate([v, np.repeat(v[-1:], pad - bs, 0)]) for k, v in h.items()} for h in host]
    placed = [sim.place(h) for h in host]
    jax.block_until_ready(placed)

    t0 = time.perf_counter()
    jax.block_until_ready(sim.run(placed[0]))
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for p in placed:
        out = sim.run(p)
    jax.block_until_ready(out)
    sim_s = time.perf_counter() - t0

    out_dir = scratch / name
    t0 = time.perf_counter()
    report = generate(config, out_dir, overwrite=True, progress=False, workers=workers, log=open(os.devnull, "w"))
    gen_s = time.perf_counter() - t0
    assert report["status"] == "complete", report
    disk = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    raw = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in scenario.fields.values())
    shutil.rmtree(out_dir)
    n = config.num_samples
    return {
        "config": name, "scenario": config.scenario, "shape": list(config.shape), "batch_size": bs,
        "samples": n, "devices": sim.n_devices, "workers": workers,
        "compile_s": compile_s, "simulation_s": sim_s, "generation_s": gen_s,
        "simulation_samples_per_s": n / sim_s, "generation_samples_per_s": n / gen_s,
        "overhead": 1.0 - sim_s / gen_s, "host_inputs_ms_per_sample_1proc": 1e3 * host_s / n,
        "raw_mb_per_sample": raw / 1e6, "disk_mb_per_sample": disk / n / 1e6,
    }


def write_report(out: Path, stem: str, meta: dict, rows: list[dict], small: bool) -> None:
    """Write ``<stem>.json`` and the markdown table ``<stem>.md`` (atomically) into ``out``."""
    from pdesurrogate.io import write_json, write_text

    write_json(out / f"{stem}.json", {"meta": meta, "rows": rows})
    lines = [f"# Dataset generation throughput ({meta['device']}, JAX {meta['jax']})", "",
             f"`uv run python experiments/bench_data.py{' --small' if small else ''}` on {meta['date']}. "
             "Overhead = share of generation wall time outside simulation (target <= 10%).", "",
             "| config | scenario | grid | batch | samples | devices | workers | simulation samples/s | "
             "generation samples/s | overhead | host inputs ms/sample (1 proc) | MB/sample raw -> disk |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['scenario']} | {'x'.join(map(str, r['shape']))} | {r['batch_size']} | "
                     f"{r['samples']} | {r['devices']} | {r['workers']} | {r['simulation_samples_per_s']:.3g} | "
                     f"{r['generation_samples_per_s']:.3g} | {100 * r['overhead']:.1f}% | "
                     f"{r['host_inputs_ms_per_sample_1proc']:.2f} | {r['raw_mb_per_sample']:.3g} -> "
                     f"{r['disk_mb_per_sample']:.3g} |")
    write_text(out / f"{stem}.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CPU smoke sizes")
    parser.add_argument("--configs", help="comma-separated config names (experiments/configs/NAME.toml)")
    parser.add_argument("--batches", type=int, default=None, help="batches per config (default 8; --small 4)")
    parser.add_argument("--workers", type=int, default=None,
                        help="host worker processes for generation (default: min(8, cpus - 2); --small 0)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    args = parser.parse_args(argv)

    import jax

    names = args.configs.split(",") if args.configs else (SMALL_CONFIGS if args.small else GPU_CONFIGS)
    batches = args.batches or (4 if args.small else 8)
    auto_workers = 0 if args.small else max(0, min(8, (os.cpu_count() or 1) - 2))
    workers = args.workers if args.workers is not None else auto_workers
    backend = jax.default_backend()
    device = str(jax.devices()[0].device_kind) if backend != "cpu" else f"CPU ({os.cpu_count()} cores visible)"
    meta = {"backend": backend, "device": device, "jax": jax.__version__, "python": platform.python_version(),
            "small": args.small, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    stem = f"bench_data_{backend}{'_small' if args.small else ''}"
    out = Path(args.out)
    scratch = Path(tempfile.mkdtemp(prefix="bench_data_"))
    rows: list[dict] = []
    try:
        for name in names:
            rows.append(bench_config(name, batches, workers, scratch))
            print(json.dumps(rows[-1]), flush=True)
            write_report(out, stem, meta, rows, args.small)  # after every config: a cut run keeps its rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
