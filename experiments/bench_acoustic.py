"""Benchmark of the acoustic solver against jwave: throughput, time to accuracy, gradient memory,
checkpointing speed.

Usage:
    uv run python experiments/bench_acoustic.py            # GPU sizes (H100), writes acoustic_benchmark.{md,json}
    uv run python experiments/bench_acoustic.py --small    # CPU smoke sizes, writes acoustic_benchmark_cpu.{md,json}
    uv run python experiments/bench_acoustic.py --skip throughput memory checkpoint
        # off a GPU: the full-size time-to-accuracy scan (its errors do not depend on the device),
        # writes acoustic_benchmark_cpu_full.{md,json}

Sections:
1. Throughput (cell updates per second = cells x steps / wall time, forward, float32, heterogeneous
   c and rho, 20-cell PML) of ``pstd``, ``fd`` (orders 4 and 8) and jwave in the same run.
2. Time to accuracy on a smooth breast-like phantom (2D, ring array, a ~1 MHz Gaussian initial
   pressure at one element): the wall time of the cheapest grid and CFL number whose ring traces
   are within 1% relative L2 of a fine-grid pstd reference, per solver: pstd, fd4 and fd8 with
   Taylor and with dispersion-optimised ("-disp") stencils, and jwave; band-limited (sinc) sensors.
3. Gradient memory of ``sum(traces**2)`` w.r.t. the sound speed: XLA's compiled temp memory with
   segmented checkpointing vs storing every step, and (GPU) the measured peak bytes in use, each in
   a fresh process.
4. Gradient wall time with segmented vs recursive checkpointing.
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

# The gradient cases run in fresh processes: with JAX's default preallocation (75% of GPU memory)
# here, they would get a quarter of the card (the 'none' checkpointing case ran out of memory on an
# 80 GB H100). Allocate on demand here and in the children (they inherit the environment).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import CubicSpline  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdesurrogate.io import save_figure, subplots, write_json, write_text  # noqa: E402
from solvers import Grid, PointSampler, acoustic  # noqa: E402
from solvers.grid import fft_size  # noqa: E402
from solvers.acoustic.jwave_oracle import jwave_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PML = 20


# ----- media -----------------------------------------------------------------------------------
def smooth_random_medium(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Heterogeneous c (1400-1600 m/s) and rho (900-1100 kg/m^3): low-pass random fields, float32."""
    rng = np.random.default_rng(seed)
    k = np.sqrt(sum(np.meshgrid(*[np.fft.fftfreq(n) ** 2 for n in shape], indexing="ij")))
    filt = np.exp(-((k / 0.02) ** 2))

    def field():
        f = np.real(np.fft.ifftn(np.fft.fftn(rng.standard_normal(shape)) * filt))
        return f / (np.abs(f).max() + 1e-12)

    return (1500 + 100 * field()).astype(np.float32), (1000 + 100 * field()).astype(np.float32)


def breast_phantom(x: np.ndarray, y: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth breast-like slice in water: fat background, glandular lobes and two lesions.

    Args:
        x, y: coordinates in metres relative to the centre (any matching shapes).
        radius: body radius in metres.
    Returns:
        ``(c, rho)`` in m/s and kg/m^3, float64, smooth (tanh edges 0.25 mm wide).
    """
    w = 2.5e-4

    def inside(cx, cy, ax, ay):
        r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        return 0.5 * (1 - np.tanh((r - 1) * min(ax, ay) / w))

    body = inside(0, 0, radius, 0.92 * radius)
    gland = inside(0.15 * radius, -0.1 * radius, 0.55 * radius, 0.4 * radius)
    lobe = inside(-0.35 * radius, 0.3 * radius, 0.25 * radius, 0.3 * radius)
    lesion1 = inside(0.3 * radius, 0.05 * radius, 0.12 * radius, 0.12 * radius)
    lesion2 = inside(-0.4 * radius, -0.35 * radius, 0.08 * radius, 0.1 * radius)
    c = 1500 + body * (-50 + 100 * np.clip(gland + lobe, 0, 1)) + 60 * lesion1 + 40 * lesion2
    rho = 1000 + body * (-50 + 90 * np.clip(gland + lobe, 0, 1)) + 30 * lesion1 + 20 * lesion2
    return c, rho


# ----- helpers ---------------------------------------------------------------------------------
def best_time(fn, repeats: int = 3) -> float:
    """Best wall time in s of ``fn()`` (blocked until ready) over ``repeats`` runs after a warm-up."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', str(d))}"


# ----- 1. throughput ---------------------------------------------------------------------------
def throughput(shape: tuple[int, ...], steps: int) -> list[dict]:
    grid = Grid(shape, 1e-4)
    c, rho = smooth_random_medium(shape)
    x = np.indices(shape).astype(np.float32)
    p0 = np.exp(-sum((xi - n / 2) ** 2 for xi, n in zip(x, shape)) / 18.0).astype(np.float32)
    rows = []
    for scheme, order in (("pstd", 4), ("fd", 4), ("fd", 8)):
        st = acoustic.Stepper(grid, acoustic.Medium(c, rho), scheme=scheme, pml_size=PML, fd_order=order)
        run = jax.jit(lambda st, s: st.run(s, steps, checkpoint="none").p)
        s0 = st.init(p0)
        t = best_time(lambda: run(st, s0))
        rows.append(dict(shape=list(shape), solver=scheme if scheme == "pstd" else f"fd{order}", steps=steps,
                         seconds=t, cell_updates_per_s=math.prod(shape) * steps / t))
        print(rows[-1], flush=True)
    dt = float(acoustic.Stepper(grid, acoustic.Medium(c, rho), pml_size=PML).dt)
    jw = jwave_simulator(shape, 1e-4, PML, dt, steps + 1, lambda p: p[(0,) * len(shape)])
    args = (jnp.asarray(c), jnp.asarray(rho), jnp.asarray(p0))
    t = best_time(lambda: jw(*args))
    rows.append(dict(shape=list(shape), solver="jwave", steps=steps, seconds=t,
                     cell_updates_per_s=math.prod(shape) * steps / t))
    print(rows[-1], flush=True)
    return rows


# ----- 2. time to accuracy ---------------------------------------------------------------------
def time_to_accuracy(small: bool) -> dict:
    extent = 20e-3 if small else 64e-3  # physical square (m), PML added outside
    ring_r = 8e-3 if small else 28e-3
    body_r = 6e-3 if small else 22e-3
    sigma = 5e-4 if small else 3e-4  # p0 width: -6 dB at 0.56 MHz (small) / 0.94 MHz (full)
    n_el = 32 if small else 128
    duration = 1.6 * ring_r / 1500 + 4 * sigma / 1500
    ref_cells = 8  # reference: pstd at h = sigma / ref_cells
    candidates = [1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 4.0, 5.0]
    ring_local = acoustic.ring_array((0.0, 0.0), ring_r, n_el)

    def setup(cells_per_sigma: float):
        h = sigma / cells_per_sigma
        n = fft_size(int(math.ceil(extent / h)) + 2 * PML)  # FFT-friendly, for pstd and jwave alike
        grid = Grid((n, n), h)
        centre = (n - 1) / 2 * h
        xy = grid.coordinates() - centre
        c, rho = breast_phantom(xy[0], xy[1], body_r)
        src = ring_local[0]
        p0 = np.exp(-((xy[0] - src[0]) ** 2 + (xy[1] - src[1]) ** 2) / (2 * sigma**2))
        return grid, c.astype(np.float32), rho.astype(np.float32), p0.astype(np.float32), ring_local + centre

    def ours(cells, cfl, scheme, order=4, kind="taylor", timed=True):
        grid, c, rho, p0, ring = setup(cells)
        medium = acoustic.Medium(c, rho)

        def call():
            return acoustic.simulate(grid, medium, duration, p0=p0, sensors=ring, scheme=scheme, fd_order=order,
                                     pml_size=PML, cfl=cfl, fd_coefficients=kind)

        res = call()
        secs = best_time(lambda: call().traces, repeats=2) if timed else None
        return np.asarray(res.time), np.asarray(res.traces), secs, grid.shape

    def jwave(cells, cfl):
        grid, c, rho, p0, ring = setup(cells)
        dt, nt = acoustic.time_axis(grid, acoustic.Medium(c, rho), duration, cfl=cfl)
        sampler = PointSampler(grid, ring, kernel="sinc")
        run = jwave_simulator(grid.shape, grid.spacing, PML, dt, nt, sampler.gather)
        args = (jnp.asarray(c), jnp.asarray(rho), jnp.asarray(p0))
        return np.arange(nt) * dt, np.asarray(run(*args)), best_time(lambda: run(*args), repeats=2), grid.shape

    t_ref, tr_ref, _, ref_shape = ours(ref_cells, 0.3, "pstd", timed=False)
    spline = CubicSpline(t_ref, tr_ref, axis=0)

    def err(t, tr):
        ref = spline(np.clip(t, 0, t_ref[-1]))
        return float(np.linalg.norm(tr - ref) / np.linalg.norm(ref))

    out = {"reference": dict(solver="pstd", cells_per_sigma=ref_cells, shape=list(ref_shape)),
           "sigma_m": sigma, "extent_m": extent, "ring_radius_m": ring_r, "elements": n_el, "duration_s": duration,
           "solvers": {}}
    # fd also tries smaller CFL numbers: its leapfrog time error, not the space error, dominates at 1%
    # (the "-disp" stencils cancel part of it, solvers.acoustic.operators.fd_coefficients). pstd and
    # jwave, exact in time for c = c_ref, lose accuracy above 0.3 in this heterogeneous medium.
    solvers = {"pstd": (lambda k, cfl: ours(k, cfl, "pstd"), (0.3,)),
               "fd4": (lambda k, cfl: ours(k, cfl, "fd", 4), (0.3, 0.1)),
               "fd8": (lambda k, cfl: ours(k, cfl, "fd", 8), (0.3, 0.1)),
               "fd4-disp": (lambda k, cfl: ours(k, cfl, "fd", 4, "dispersion"), (0.3, 0.2)),
               "fd8-disp": (lambda k, cfl: ours(k, cfl, "fd", 8, "dispersion"), (0.3, 0.2)),
               "jwave": (jwave, (0.3,))}
    for name, (fn, cfls) in solvers.items():
        curve, reached = [], None
        for cfl in cfls:
            for k in candidates:
                # cells x steps ~ k^3 / cfl: a setting that does more work than the fastest one found
                # for this solver cannot be faster, so it is not run
                if reached is not None and k**3 / cfl >= reached["cells_per_sigma"] ** 3 / reached["cfl"]:
                    break
                t, tr, secs, shape = fn(k, cfl)
                e = err(t, tr)
                curve.append(dict(cells_per_sigma=k, cfl=cfl, points_per_min_wavelength=2.07 * k, shape=list(shape),
                                  steps=len(t) - 1, rel_l2=e, seconds=secs))
                print(name, curve[-1], flush=True)
                if e <= 0.01:
                    if reached is None or secs < reached["seconds"]:
                        reached = curve[-1]
                    break
        out["solvers"][name] = dict(curve=curve, reached=reached)
    return out


def accuracy_figure(tta: dict, device: str):
    """Ring-trace error against work (cell updates, device-independent) and against wall time on
    ``device``, one line per solver and CFL number, with the 1% target."""
    fig, (a_work, a_time) = subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for name, s in tta["solvers"].items():
        for cfl in sorted({r["cfl"] for r in s["curve"]}, reverse=True):
            rows = [r for r in s["curve"] if r["cfl"] == cfl]
            style = dict(label=f"{name} @ CFL {cfl}", marker="o", ms=3, ls="--" if name == "jwave" else "-")
            a_work.loglog([math.prod(r["shape"]) * r["steps"] for r in rows], [r["rel_l2"] for r in rows], **style)
            a_time.loglog([r["seconds"] for r in rows], [r["rel_l2"] for r in rows], **style)
    for ax, xlabel in ((a_work, "cell updates (grid cells x time steps)"), (a_time, f"wall time on {device} (s)")):
        ax.axhline(0.01, color="k", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ring-trace rel L2 vs fine-grid pstd")
        ax.grid(True, which="both", alpha=0.3)
    a_work.legend(fontsize=7, ncol=2)
    a_work.set_title("error against work")
    a_time.set_title("error against time")
    return fig


# ----- 3. gradient memory ----------------------------------------------------------------------
def gradient_case(shape: tuple[int, ...], steps: int, scheme: str, checkpoint: str, execute: bool) -> dict:
    grid = Grid(shape, 1e-4)
    c, rho = smooth_random_medium(shape)
    x = np.indices(shape).astype(np.float32)
    p0 = np.exp(-sum((xi - n / 2) ** 2 for xi, n in zip(x, shape)) / 18.0).astype(np.float32)
    centre = (np.array(shape) - 1) / 2 * 1e-4
    sensors = centre + 0.15 * min(shape) * 1e-4 * np.eye(len(shape))
    dt = 0.3 * 1e-4 / float(c.max())

    def loss(c):
        res = acoustic.simulate(grid, acoustic.Medium(c, rho), steps * dt, p0=p0, sensors=sensors, scheme=scheme,
                                pml_size=PML, dt=dt, checkpoint=checkpoint)
        return jnp.sum(res.traces**2)

    g = jax.jit(jax.grad(loss))
    compiled = g.lower(jnp.asarray(c)).compile()
    mem = compiled.memory_analysis()
    row = dict(shape=list(shape), steps=steps, scheme=scheme, checkpoint=checkpoint,
               temp_bytes=int(mem.temp_size_in_bytes), argument_bytes=int(mem.argument_size_in_bytes),
               state_bytes=int(4 * (2 * len(shape)) * math.prod(shape)))
    if execute:
        t = best_time(lambda: compiled(jnp.asarray(c)), repeats=1)
        row["seconds"] = t
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            row["peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
    return row


def gradient_case_subprocess(shape, steps, scheme, checkpoint, execute) -> dict:
    """:func:`gradient_case` in a fresh process (so that the peak-memory counter starts at zero);
    a failure (e.g. out of memory) is recorded as ``error``."""
    cmd = [sys.executable, __file__, "--gradient-case", json.dumps([list(shape), steps, scheme, checkpoint, execute])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        errors = [ln for ln in out.stderr.splitlines() if "Error" in ln] or out.stderr.splitlines() or ["failed"]
        return dict(shape=list(shape), steps=steps, scheme=scheme, checkpoint=checkpoint, error=errors[-1][:300])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----- report ----------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    kind = ("CPU smoke run, --small" if report["small"] else "GPU" if report["device"].startswith("gpu")
            else "full sizes on CPU: errors as on any device, wall times are CPU times")
    lines = [f"# Acoustic solver benchmark ({kind})", "",
             f"- device: `{report['device']}`", f"- date: {report['date']}", f"- command: `{report['command']}`",
             f"- jax {report['jax']}, python {report['python']}",
             *[f"- section '{k}' carried over from the run of {v}" for k, v in report.get("carried_over", {}).items()],
             "",
             "## Throughput (forward, float32, heterogeneous c and rho, 20-cell PML)", "",
             "| grid | solver | steps | wall s | G cell-updates/s | vs jwave |", "|---|---|---|---|---|---|"]
    if not report["throughput"]:
        lines.append("| not run | | | | | |")
    for shape_rows in report["throughput"]:
        jw = next(r for r in shape_rows if r["solver"] == "jwave")["cell_updates_per_s"]
        for r in shape_rows:
            lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['solver']} | {r['steps']} | {r['seconds']:.4f} | "
                         f"{r['cell_updates_per_s'] / 1e9:.3f} | {r['cell_updates_per_s'] / jw:.2f}x |")
    tta = report["time_to_accuracy"]
    lines += ["", "## Time to 1% rel L2 ring-trace error (breast-like phantom, 2D)", ""]
    if tta is None:
        lines.append("Not run.")
    else:
        lines += _accuracy_lines(tta)
    lines += _gradient_lines(report)
    return "\n".join(lines) + "\n"


def _accuracy_lines(tta: dict) -> list[str]:
    lines = [f"Reference: pstd at sigma/{tta['reference']['cells_per_sigma']} (grid {tta['reference']['shape']}); "
             f"p0 Gaussian sigma {tta['sigma_m'] * 1e3:.2f} mm at one of {tta['elements']} ring elements; "
             f"ring radius {tta['ring_radius_m'] * 1e3:.1f} mm; {tta['duration_s'] * 1e6:.1f} us.", "",
             "| solver | fastest grid reaching 1% | cfl | steps | points per min. wavelength | rel L2 | wall s | "
             "jwave / solver |",
             "|---|---|---|---|---|---|---|---|"]
    jw = tta["solvers"]["jwave"]["reached"]
    for name, s in tta["solvers"].items():
        r = s["reached"]
        if r is None:
            last = s["curve"][-1]
            lines.append(f"| {name} | not reached (last {last['rel_l2']:.3g} at {last['shape']}) | | | | | | |")
        else:
            ratio = f"{jw['seconds'] / r['seconds']:.2f}x" if jw else "n/a"
            lines.append(f"| {name} | {'x'.join(map(str, r['shape']))} | {r['cfl']} | {r.get('steps', '')} | "
                         f"{r['points_per_min_wavelength']:.1f} | "
                         f"{r['rel_l2']:.4f} | {r['seconds']:.4f} | {ratio} |")
    lines += ["", "Error curves (cells per sigma @ cfl: rel L2 / wall s):", ""]
    for name, s in tta["solvers"].items():
        lines.append(f"- {name}: " + ", ".join(f"{r['cells_per_sigma']}@{r['cfl']}: {r['rel_l2']:.3g} / {r['seconds']:.3g}"
                                              for r in s["curve"]))
    return lines


def _gradient_lines(report: dict) -> list[str]:
    lines = ["", "## Gradient memory (d sum(traces^2) / d c; XLA compiled temp memory)", "",
              "| grid x steps | scheme | checkpoint | temp MB | (state x steps) MB | measured peak MB | grad wall s |",
              "|---|---|---|---|---|---|---|"]
    for r in report["gradient_memory"]:
        if "error" in r:
            lines.append(f"| {'x'.join(map(str, r['shape']))} x {r['steps']} | {r['scheme']} | {r['checkpoint']} | "
                         f"failed: {r['error']} | | | |")
            continue
        peak = f"{r['peak_bytes_in_use'] / 2**20:.0f}" if "peak_bytes_in_use" in r else "n/a (CPU)"
        secs = f"{r['seconds']:.3f}" if "seconds" in r else "not run"
        lines.append(f"| {'x'.join(map(str, r['shape']))} x {r['steps']} | {r['scheme']} | {r['checkpoint']} | "
                     f"{r['temp_bytes'] / 2**20:.1f} | {r['state_bytes'] * r['steps'] / 2**20:.0f} | {peak} | {secs} |")
    for key, ratio in report["gradient_memory_ratio"].items():
        lines.append(f"\n{key}: segmented temp / store-every-step temp = {ratio:.4f}")
    lines += ["", "## Checkpointing speed (gradient wall time)", "", "| grid x steps | checkpoint | wall s |",
              "|---|---|---|"]
    for r in report["checkpoint_speed"]:
        if "error" in r:
            lines.append(f"| {'x'.join(map(str, r['shape']))} x {r['steps']} | {r['checkpoint']} | failed: {r['error']} |")
            continue
        lines.append(f"| {'x'.join(map(str, r['shape']))} x {r['steps']} | {r['checkpoint']} | {r['seconds']:.3f} |")
    return lines


SECTION_KEYS = {"throughput": ["throughput"], "accuracy": ["time_to_accuracy"],
                "memory": ["gradient_memory", "gradient_memory_ratio"], "checkpoint": ["checkpoint_speed"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="CPU smoke sizes; writes acoustic_benchmark_cpu.*")
    ap.add_argument("--skip", nargs="*", default=[], choices=list(SECTION_KEYS),
                    help="sections not to run; on the same device they keep the results of the last run")
    ap.add_argument("--gradient-case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gradient_case:
        shape, steps, scheme, checkpoint, execute = json.loads(args.gradient_case)
        print(json.dumps(gradient_case(tuple(shape), steps, scheme, checkpoint, execute)))
        return 0

    small = args.small
    report = dict(small=small, device=device_name(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  command=" ".join(["uv run python experiments/bench_acoustic.py", *sys.argv[1:]]),
                  jax=jax.__version__, python=platform.python_version(), throughput=[], gradient_memory=[],
                  gradient_memory_ratio={}, checkpoint_speed=[], time_to_accuracy=None, carried_over={})
    on_gpu = jax.devices()[0].platform == "gpu"

    # full sizes off a GPU (e.g. the device-independent accuracy section on CPU) get a file of their own
    stem = "acoustic_benchmark_cpu" if small else "acoustic_benchmark" if on_gpu else "acoustic_benchmark_cpu_full"

    previous = RESULTS / f"{stem}.json"
    if args.skip and previous.is_file():  # a partial rerun keeps the skipped sections of the last run
        old = json.loads(previous.read_text())
        if old.get("device") == report["device"]:
            for section in (sec for sec in args.skip if all(old.get(key) for key in SECTION_KEYS[sec])):
                for key in SECTION_KEYS[section]:
                    report[key] = old[key]
                report["carried_over"][section] = old.get("carried_over", {}).get(section, old["date"])

    def save() -> None:  # after every section, so a run cut short still leaves its finished sections
        write_json(RESULTS / f"{stem}.json", report)
        write_text(RESULTS / f"{stem}.md", markdown(report))
        print(f"wrote {RESULTS / stem}.json and .md", flush=True)

    if not on_gpu and not small:
        print("warning: full sizes on a non-GPU device", flush=True)
    if "throughput" not in args.skip:
        sizes = ([((256, 256), 100), ((512, 512), 50), ((48, 48, 48), 50), ((64, 64, 64), 20)] if small else
                 [((1024, 1024), 1000), ((4096, 4096), 200), ((128, 128, 128), 500), ((256, 256, 256), 100)])
        for shape, steps in sizes:
            report["throughput"].append(throughput(shape, steps))
            save()
    if "accuracy" not in args.skip:
        report["time_to_accuracy"] = time_to_accuracy(small)
        save()
        save_figure(accuracy_figure(report["time_to_accuracy"], report["device"]), RESULTS / f"{stem}_accuracy.png")
    if "memory" not in args.skip:
        cases = ([((128, 128), 400), ((64, 64, 64), 100)] if small else [((1024, 1024), 4000), ((128, 128, 128), 1000)])
        for shape, steps in cases:
            for scheme in ("pstd", "fd"):
                seg = gradient_case_subprocess(shape, steps, scheme, "segmented", True)
                full = gradient_case_subprocess(shape, steps, scheme, "none", small)
                report["gradient_memory"] += [seg, full]
                if "temp_bytes" in seg and "temp_bytes" in full:
                    report["gradient_memory_ratio"][f"{'x'.join(map(str, shape))} x {steps} {scheme}"] = (
                        seg["temp_bytes"] / full["temp_bytes"])
                print(seg, full, flush=True)
                save()
    if "checkpoint" not in args.skip:
        shape, steps = ((128, 128), 400) if small else ((1024, 1024), 500)  # "none" must fit in memory
        for ck in ("segmented", "recursive", "none"):
            r = gradient_case_subprocess(shape, steps, "pstd", ck, True)
            report["checkpoint_speed"].append(r)
            print(r, flush=True)
            save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
