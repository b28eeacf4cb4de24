"""Maxwell FDTD benchmark: throughput, time to a converged Mie phasor, gradient memory.

    uv run python experiments/bench_maxwell.py            # GPU sizes (H100): 2D 4096^2, 3D 256^3, ...
    uv run python experiments/bench_maxwell.py --small    # CPU smoke sizes -> maxwell_benchmark_cpu.*

Measures (float32):
1. cell-updates/s of ``maxwell.Stepper.run`` (jit, lax.scan of fused Yee updates) in 2D TM and 3D,
   lossless PEC box (pml_size=0) and with a 20-cell CPML on every side;
2. wall time of ``maxwell.simulate`` to a converged phasor (relative change <= 1e-3) for an n=1.5
   cylinder (2D TM) / sphere (3D) of radius lam0/2 at 20 cells per wavelength in the dielectric,
   first call (with compilation) and second call;
3. peak memory and time of ``jax.grad`` of a DFT-monitor loss through a fixed-duration 3D run,
   for segmented checkpointing (sqrt(n) segments), recursive checkpointing and the time-reversal
   adjoint. On GPU: ``device.memory_stats()['peak_bytes_in_use']`` after the run (reset by running
   each variant in a fresh process); on CPU: XLA's compiled memory analysis
   (``temp + argument + output`` bytes).
Writes ``experiments/results/maxwell_benchmark[_cpu].md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# JAX's default preallocation (75% of GPU memory) in this process would leave the gradient variants'
# fresh processes a quarter of the card: on an 80 GB H100 the adjoint ran out of memory loading its
# kernels. Allocate on demand here and in the children (they inherit the environment).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from pdesurrogate.io import write_json, write_text  # noqa: E402
from solvers import Grid, maxwell  # noqa: E402

LAM0 = 1.0e-6
INDEX = 1.5
DX = LAM0 / INDEX / 20


def _sync(x):
    jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)
    return x


def throughput(shape: tuple[int, ...], steps: int, pml: int) -> dict:
    """Cell-updates/s of Stepper.run on ``shape`` (best of 3 after a warm-up)."""
    grid = Grid(shape, DX)
    st = maxwell.Stepper(grid, maxwell.Medium(jnp.ones(shape, jnp.float32)), pml_size=pml)
    n_e = len(st.op.mode.e)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n_e, *shape)), jnp.float32)
    # The stepper is an argument, not a closure: its coefficient arrays stay device buffers
    # instead of becoming constants embedded in the compiled program.
    run = eqx.filter_jit(lambda stepper, s: stepper.run(s, steps))
    state = st.init(x if n_e > 1 else x[0])
    _sync(run(st, state))
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        _sync(run(st, state))
        best = min(best, time.perf_counter() - t)
    return {"shape": list(shape), "pml": pml, "steps": steps, "seconds": best,
            "gcells_per_s": math.prod(shape) * steps / best / 1e9}


def _scatterer(shape: tuple[int, ...], radius: float = LAM0 / 2) -> np.ndarray:
    """n = 1.5 disc (2D) or sphere (3D) of ``radius`` m at the grid centre."""
    grid = Grid(shape, DX)
    x = grid.coordinates()
    c = np.array(grid.extent).reshape((-1,) + (1,) * len(shape)) / 2
    inside = np.sum((x - c) ** 2, axis=0) < radius**2
    return np.where(inside, INDEX**2, 1.0).astype(np.float32)


def mie_time(shape: tuple[int, ...], pml: int) -> dict:
    """Wall time to a converged phasor (first call includes compilation)."""
    grid = Grid(shape, DX)
    medium = maxwell.Medium(_scatterer(shape))
    times = []
    for _ in range(2):
        t = time.perf_counter()
        res = maxwell.simulate(grid, medium, maxwell.PlaneWave(LAM0), pml_size=pml)
        _sync(res.field)
        times.append(time.perf_counter() - t)
    return {"shape": list(shape), "pml": pml, "steps": res.steps, "converged": bool(res.converged),
            "change": res.change,
            "first_call_s": times[0], "second_call_s": times[1],
            "gcells_per_s": math.prod(shape) * res.steps / times[1] / 1e9}


def gradient_memory(shape: tuple[int, ...], steps: int, variant: str) -> dict:
    """Peak memory and time of jax.grad through a fixed-duration 3D simulate."""
    grid = Grid(shape, DX)
    n = shape[0]
    eps0 = jnp.asarray(_scatterer(shape, n / 8 * DX))
    pml = min(20, n // 8)
    region = tuple((n // 2 - 4, n // 2 + 4) for _ in shape)
    src = maxwell.PlaneWave(LAM0)
    dt = maxwell.time_step(grid, 0.99)
    duration = steps * dt * 0.999
    gradient, checkpoint = {"segmented": ("checkpoint", "segmented"), "recursive": ("checkpoint", "recursive"),
                            "adjoint": ("adjoint", "segmented"), "none": ("checkpoint", "none")}[variant]

    def loss(eps):
        res = maxwell.simulate(grid, maxwell.Medium(eps), src, duration=duration, pml_size=pml, region=region,
                               gradient=gradient, checkpoint=checkpoint, tfsf_margin=2)
        return jnp.sum(jnp.abs(res.field) ** 2)

    f = jax.jit(jax.grad(loss))
    t = time.perf_counter()
    compiled = f.lower(eps0).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    analysed = None
    if mem is not None:
        analysed = int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)
    t = time.perf_counter()
    g = _sync(compiled(eps0))
    run_s = time.perf_counter() - t
    dev = jax.devices()[0]
    peak = None
    if dev.platform == "gpu":
        peak = int(dev.memory_stats().get("peak_bytes_in_use", 0))
    steps_run = math.ceil(duration / (1.0 / (src.frequency * math.ceil(1 / (src.frequency * dt)))))
    return {"shape": list(shape), "steps": steps_run, "variant": variant, "compile_s": compile_s, "run_s": run_s,
            "xla_memory_analysis_bytes": analysed, "gpu_peak_bytes_in_use": peak,
            "grad_finite": bool(jnp.all(jnp.isfinite(g))),
            "state_bytes": int(6 * math.prod(shape) * 4)}


def _fmt_bytes(b):
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description="Maxwell FDTD benchmark")
    parser.add_argument("--small", action="store_true", help="CPU smoke sizes")
    parser.add_argument("--only", choices=("throughput", "mie", "gradient"), default=None,
                        help="run one section; on the same device the others keep the last run's results")
    parser.add_argument("--grad-variant", default=None, help="internal: run one gradient variant and print JSON")
    args = parser.parse_args()
    small = args.small
    sizes = {
        "tp2": (512, 512) if small else (4096, 4096), "tp3": (64, 64, 64) if small else (256, 256, 256),
        "tp_steps2": 20 if small else 200, "tp_steps3": 10 if small else 100,
        "mie2": (160, 160) if small else (1024, 1024), "mie3": (64, 64, 64) if small else (128, 128, 128),
        "grad3": (32, 32, 32) if small else (128, 128, 128), "grad_steps": 200 if small else 2000,
    }
    if args.grad_variant:
        print(json.dumps(gradient_memory(sizes["grad3"], sizes["grad_steps"], args.grad_variant)))
        return
    dev = jax.devices()[0]
    out = {"device": f"{dev.platform}: {dev.device_kind}", "jax": jax.__version__, "python": platform.python_version(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(["uv run python experiments/bench_maxwell.py", *sys.argv[1:]]),
           "dtype": "float32"}
    suffix = "_cpu" if small else ""
    res_dir = Path(__file__).parent / "results"
    previous = res_dir / f"maxwell_benchmark{suffix}.json"
    if args.only and previous.is_file():  # a one-section rerun keeps the other sections of the last run
        old = json.loads(previous.read_text())
        if old.get("device") == out["device"]:
            out["carried_over"] = {}
            for section in (sec for sec in ("throughput", "mie", "gradient") if sec != args.only and sec in old):
                out[section] = old[section]
                out["carried_over"][section] = old.get("carried_over", {}).get(section, old["date"])

    def save() -> None:  # after every section, so a run cut short still leaves its finished sections
        write_json(res_dir / f"maxwell_benchmark{suffix}.json", out)
        write_text(res_dir / f"maxwell_benchmark{suffix}.md", markdown(out))

    if args.only in (None, "throughput"):
        cases = (("tp2", "tp_steps2"), ("tp3", "tp_steps3"))
        out["throughput"] = [throughput(sizes[g], sizes[s], pml) for g, s in cases for pml in (0, 20)]
        print(json.dumps(out["throughput"], indent=1), flush=True)
        save()
    if args.only in (None, "mie"):
        pml = 8 if small else 20
        out["mie"] = [mie_time(sizes["mie2"], pml), mie_time(sizes["mie3"], pml)]
        print(json.dumps(out["mie"], indent=1), flush=True)
        save()
    if args.only in (None, "gradient"):
        variants = ["segmented", "recursive", "adjoint"] + (["none"] if small else [])
        out["gradient"] = []
        for v in variants:  # one process each, so GPU peak memory is per variant
            cmd = [sys.executable, __file__, "--grad-variant", v] + (["--small"] if small else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                out["gradient"].append({"variant": v, "error": proc.stderr.strip().splitlines()[-1]})
            else:
                out["gradient"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(out["gradient"][-1]), flush=True)
            save()
    print(markdown(out))


def markdown(out: dict) -> str:
    lines = [f"# Maxwell FDTD benchmark ({'CPU smoke sizes' if 'cpu' in out['device'] else 'GPU'})", "",
             f"- device: {out['device']}", f"- date: {out['date']}", f"- command: `{out['command']}`",
             f"- jax {out['jax']}, Python {out['python']}, {out['dtype']}",
             *[f"- section '{k}' carried over from the run of {v}" for k, v in out.get("carried_over", {}).items()],
             ""]
    if "throughput" in out:
        lines += ["## Throughput (`Stepper.run`, jit + lax.scan)", "",
                  "| grid | CPML cells | steps | time (s) | G cell-updates/s |", "|---|---|---|---|---|"]
        lines += [f"| {'x'.join(map(str, r['shape']))} | {r['pml']} | {r['steps']} | {r['seconds']:.3f} | "
                  f"{r['gcells_per_s']:.2f} |" for r in out["throughput"]]
        lines.append("")
    if "mie" in out:
        lines += ["## Time to a converged Mie phasor (`simulate`, duration=None, tolerance 1e-3)", "",
                  "| grid | CPML cells | steps | converged | first call (s, incl. compile) | second call (s) | "
                  "G cell-updates/s |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {'x'.join(map(str, r['shape']))} | {r['pml']} | {r['steps']} | {r['converged']} | "
                  f"{r['first_call_s']:.2f} | {r['second_call_s']:.2f} | {r['gcells_per_s']:.2f} |" for r in out["mie"]]
        lines.append("")
    if "gradient" in out:
        lines += ["## Gradient of a DFT loss w.r.t. permittivity (3D, `jax.jit(jax.grad(...))`)", "",
                  "| grid | steps | method | XLA memory analysis | GPU peak in use | compile (s) | run (s) |",
                  "|---|---|---|---|---|---|---|"]
        for r in out["gradient"]:
            if "error" in r:
                lines.append(f"| | | {r['variant']} | failed: {r['error']} | | | |")
                continue
            lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['steps']} | {r['variant']} | "
                         f"{_fmt_bytes(r['xla_memory_analysis_bytes'])} | {_fmt_bytes(r['gpu_peak_bytes_in_use'])} | "
                         f"{r['compile_s']:.1f} | {r['run_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
