"""USCT full-waveform inversion benchmark: a breast test set without inverse crime.

    uv run python experiments/bench_inversion_usct.py --small              # CPU: 64^2, 32 elements
    uv run python experiments/bench_inversion_usct.py --small --surrogate RUN_DIR   # + surrogate, hybrids
    uv run python experiments/bench_inversion_usct.py                      # GPU scale: 128^2, 64 elements

Observed data come from ``pstd`` on a grid twice as fine as the reconstruction grid (same physical
ring, source gain of :func:`training.refinement.point_source_gain`, every second time sample), with
Gaussian noise 40 dB below each dataset's RMS. Breast phantoms (``training.data.phantoms``, kind
``breast``, drawn on the fine grid and sampled at the coarse nodes) form the test set; each is
inverted from water (1500 m/s) with the solver (``fd``, order 4) and the recipe of
:func:`pdesurrogate.inversion.usct.invert` (frequency continuation, illumination preconditioning,
L-BFGS, bounds, TV of weight ``--tv``). The phantoms' density varies (fat ~930, gland ~1030 kg/m^3):
by default it is inverted together with the sound speed from 1000 kg/m^3 (``invert_density``);
``--density known`` holds it at 1000 kg/m^3 instead, and its reflections are then fitted as sound
speed (the recipe of the first benchmark runs); ``--ablate-density 1`` (default) adds that as the row
``solver_density_known``, same recipe otherwise. The calibration case re-inverts the first ``--calibration``
phantoms from data made with another source (a 4-cycle tone burst at 0.85 f0, 0.6x, 0.4 us late),
with ``water`` shots made with that source, so the wavelet estimation must calibrate it away.

Reported per forward model: median / p95 / max ``rel_error`` (inside the ring), SSIM (inside the
ring), lesion contrast recovered (lesion minus its 3-cell surround, reconstructed over true), and the
time (compilation excluded, reported separately) to reach ``--target`` rel_error.
With ``--surrogate RUN_DIR`` (a :class:`~pdesurrogate.surrogate.TraceOperator` trained on this
acquisition, e.g. ``experiments/configs/usct_64_small.toml`` at ``--small``) the surrogate and both
hybrids run on the same set; an operator trained on another acquisition is refused with the
difference named. With it:

- ``--surrogate-cost DATA_S TRAIN_S`` (the operator's data-generation and training seconds) gives the
  break-even number of reconstructions: ``(DATA_S + TRAIN_S)`` over the seconds a hybrid saves per
  reconstruction against the solver in reaching ``--target`` (median over the phantoms both reach it
  on; "never" when nothing is saved);
- ``--path N``: the surrogate's trace error along the solver inversions of the first ``N`` phantoms, at
  the start (water), at each band's end and at the true medium: relative L2 of the surrogate's traces
  against the inversion's solver over all shots (the emitter's own trace left out), of their
  scattered part (minus the solver's water traces), and of the water traces themselves (the baseline);
- ``--ood N``: ``N`` out-of-distribution phantoms of each kind (a denser breast: 1.5x the contrast; a
  head with skull: ``brain``, bone 2800-3000 m/s, bounds up to ``SKULL_UPPER``), solver against both
  hybrids, reported separately;
- ``--rare N``: ``N`` breasts with one rare small lesion each (the ``rare_lesion`` split: a ball of
  0.6-1.0 mm whose sound speed and density are 8% above the local tissue's), solver and hybrids,
  reported separately with the rare lesion's own contrast recovered.

``--gradient-cost N`` measures instead (and runs no inversion) what one objective-and-gradient
evaluation of the recipe's misfit over all shots costs, the unit of every inversion's time: our solver
with segmented checkpoints (the inversions' default), with every step stored (``"none"``, jwave's own
default), and jwave, the fastest of ``N`` repeats each after compilation, into
``<name>_gradient_cost.md`` and ``.json``.

``--floor`` measures instead what a band-limited image can reach at all: per test phantom the
``rel_error`` of its true sound speed low-passed (on the fine grid, ideal disc in k-space) to the
wavenumbers a ring can sample at frequency ``f``, ``|k| <= 2 (2 pi f / 1500 m/s)`` (transmission and
reflection together: the limiting circle of diffraction tomography), sampled at the coarse nodes, for
``f`` the top of each band, into ``<name>_floor.md`` and ``.json``.

Writes ``experiments/results/<name>.md``, ``.json``, ``_examples.png`` and ``_curves.png``, ``<name>``
``inversion_usct[_cpu]`` unless ``--name`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import uniform_filter

from pdesurrogate.evaluation.metrics import dilate, distribution
from pdesurrogate.inversion import ForwardModel, usct
from pdesurrogate.inversion.report import plot_curves
from pdesurrogate.io import save_figure, subplots, write_text
from solvers import Grid, acoustic, signals
from solvers.points import PointSampler
from training import refinement
from training.data import phantoms
from training.data.config import parse_data_config

RESULTS = Path(__file__).parent / "results"
SCALES = {  # reconstruction grid, elements, shots, spacing (m), centre frequency (Hz), pml (coarse cells)
    "small": {"n": 64, "elements": 32, "shots": 16, "spacing": 2e-4, "frequency": 1.0e6, "pml": 8, "margin": 2},
    "gpu": {"n": 128, "elements": 64, "shots": 64, "spacing": 1e-4, "frequency": 2.0e6, "pml": 10, "margin": 2},
}
SNR_DB = 40.0
BOUNDS = (1400.0, 1700.0)  # m/s: breast
SKULL_UPPER = 3100.0  # m/s: the upper bound for heads with skull (bone up to 3000 m/s)
DENSITY_BOUNDS = (900.0, 1100.0)  # kg/m^3: breast
SKULL_DENSITY_UPPER = 2000.0  # kg/m^3: heads with skull (bone up to 1950 kg/m^3)
OOD = {"dense_breast": {"kind": "breast", "contrast": 1.5}, "skull": {"kind": "brain"}}
RARE = {"lesion_rate": 1.0, "lesion_cells": (6, 10), "lesion_contrast": 0.08}  # fine cells (0.6-1.0 mm), +8%
EQUAL_QUALITY = 1.1  # "the same image": within 10% of the solver's final rel_error
RARE_LABEL = 3  # training.data.phantoms.LESION_LABELS


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray, window: int = 7) -> float:
    """Mean structural similarity (Wang et al. 2004, uniform ``window``) of ``a`` against reference
    ``b`` over ``region``; the dynamic range is ``b``'s inside the region."""
    rng = float(np.ptp(b[region])) or 1.0
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    mu_a, mu_b = uniform_filter(a, window), uniform_filter(b, window)
    var_a = uniform_filter(a * a, window) - mu_a**2
    var_b = uniform_filter(b * b, window) - mu_b**2
    cov = uniform_filter(a * b, window) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s[region].mean())


def lesion_contrast(c: np.ndarray, truth: np.ndarray, lesions: np.ndarray) -> float:
    """Recovered over true lesion contrast (lesion mean minus the mean of its 3-cell surround); NaN without lesions."""
    lesion = lesions != 0
    if not lesion.any():
        return float("nan")
    around = dilate(lesion, 3) & ~lesion
    true = truth[lesion].mean() - truth[around].mean()
    return float((c[lesion].mean() - c[around].mean()) / true) if abs(true) > 1e-6 else float("nan")


def geometry(scale: dict) -> tuple[usct.Acquisition, usct.Acquisition, dict]:
    """The coarse (reconstruction) and fine (data) acquisitions and the fine data config."""
    n, h, f0 = scale["n"], scale["spacing"], scale["frequency"]
    coarse = Grid((n, n), h)
    fine = Grid((2 * n - 1, 2 * n - 1), h / 2)  # fine node 2i is coarse node i
    centre = np.array([(n - 1) / 2 * h] * 2)
    radius = ((n - 1) / 2 - scale["pml"] - scale["margin"]) * h
    elements = np.asarray(acoustic.ring_array(centre, radius, scale["elements"]))
    dt = 0.3 * h / 1650.0
    duration = 2.2 * radius / 1400.0 + 3.0 / f0  # the far side at the slowest speed, plus the pulse
    nt = int(duration / dt) + 1
    t = np.arange(2 * nt - 1) * dt / 2
    pulse = np.asarray(signals.tone_burst(t, f0, cycles=3.0))
    emitters = np.arange(0, scale["elements"], scale["elements"] // scale["shots"])
    acq = usct.Acquisition(coarse, elements, pulse[::2], dt, nt, emitters=emitters)
    gain = refinement.point_source_gain(2, refine=2)
    acq_fine = usct.Acquisition(fine, elements, gain * pulse, dt / 2, 2 * nt - 1, emitters=emitters)
    config = parse_data_config({"scenario": "usct", "shape": [2 * n - 1] * 2, "spacing": h / 2,
                                "phantom": {"kind": "breast"},
                                "acoustic": {"pml_size": 2 * scale["pml"], "ring_margin": 2 * scale["margin"] + 2,
                                             "n_elements": scale["elements"], "frequency": f0}})
    return acq, acq_fine, {"config": config, "pulse": pulse, "gain": gain, "t": t}


def observe(acq_fine: usct.Acquisition, medium: acoustic.Medium, rng: np.random.Generator, pml: int) -> np.ndarray:
    """Fine-grid ``pstd`` traces at the coarse time samples, with noise ``SNR_DB`` below their RMS."""
    traces = usct.simulate(acq_fine, medium, scheme="pstd", pml_size=pml)[:, ::2, :]
    noise = rng.normal(size=traces.shape) * np.sqrt(np.mean(traces**2)) * 10 ** (-SNR_DB / 20)
    return (traces + noise).astype(np.float32)


def jwave_forward(acq: usct.Acquisition, pml_size: int, joint: bool) -> ForwardModel:
    """jwave's ``simulate_wave_propagation`` (pstd, its own PML and source convention) as a forward model:
    the same one-hot shots, the element positions spread onto the grid and read back with our sinc
    stencils; parameters the sound speed at density 1000 kg/m^3, or (``joint``) sound speed and density
    stacked. Its row ``k`` is the pressure at ``k dt`` (jwave's row ``k - 1``)."""
    from jwave import FourierSeries
    from jwave.acoustics.time_varying import TimeWavePropagationSettings, simulate_wave_propagation
    from jwave.geometry import Domain, Medium, TimeAxis

    domain = Domain(acq.grid.shape, (acq.grid.spacing,) * 2)
    sampler = PointSampler(acq.grid, acq.elements, kernel="sinc")
    time_axis = TimeAxis(dt=acq.dt, t_end=(acq.nt - 1) * acq.dt)
    settings = TimeWavePropagationSettings(smooth_initial=False)
    onehot = jnp.asarray(np.eye(acq.n_elements, dtype=np.float32)[list(acq.emitters)])
    sigs = jnp.asarray(acq.signals)

    class Source(eqx.Module):  # jwave calls on_grid(n) for the mass source at step n
        weights: jax.Array
        signal: jax.Array

        def on_grid(self, n):
            return sampler.scatter(self.weights * self.signal[n.astype(jnp.int32)])[..., None] * (
                2.0 / (usct.WATER_SOUND_SPEED * acq.grid.spacing))

    def shot(m, w, sig):
        c, rho = (m[0], m[1]) if joint else (m, jnp.full_like(m, 1000.0))
        medium = Medium(domain=domain, sound_speed=FourierSeries(c[..., None], domain),
                        density=FourierSeries(rho[..., None], domain), pml_size=pml_size)
        ys = simulate_wave_propagation(medium, time_axis, sources=Source(w, sig), settings=settings,
                                       sensors=lambda p, u, rho: sampler.gather(p.on_grid[..., 0]))
        return jnp.concatenate([jnp.zeros((1, acq.n_elements), ys.dtype), ys[: acq.nt - 1]])

    def predict(c, shots):
        return jax.vmap(shot, in_axes=(None, 0, 0))(c, onehot[shots], sigs[shots])

    return ForwardModel(predict, "solver", "jwave")


def gradient_cost(acq: usct.Acquisition, observed: np.ndarray, joint: bool, repeats: int, name: str) -> None:
    """Seconds of one objective-and-gradient evaluation of the first band's misfit over all shots
    (fastest of ``repeats``, compiled beforehand) per forward model; writes ``<name>_gradient_cost.{md,json}``."""
    f0 = acq.peak_frequency()
    mask = usct.receiver_mask(acq, 0.25 * acq.radius)
    data = usct.band_data(acq, observed, np.ones((acq.n_shots, acq.nt + 1)), usct.lowpass(acq, 0.5 * f0), mask)
    shots = jnp.arange(acq.n_shots)
    c = np.full(acq.grid.shape, usct.WATER_SOUND_SPEED, np.float32)
    m = jnp.asarray(np.stack([c, np.full_like(c, 1000.0)]) if joint else c)
    base = usct.SolverSettings(c_ref=BOUNDS[1]).resolve(acq)
    models = {f"ours, fd order 4, checkpoint {ck}": usct.solver_forward(
        acq, dataclasses.replace(base, checkpoint=ck), None if joint else np.full(acq.grid.shape, 1000.0, np.float32))
        for ck in ("segmented", "none")}
    models["jwave (pstd), its default: every step stored"] = jwave_forward(acq, base.pml_size, joint)
    rows = []
    for label, model in models.items():
        def objective(m, model=model):
            return jnp.mean(jax.vmap(usct.shot_misfit, in_axes=(0, 0, None))(model.predict(m, shots), shots, data))

        program = jax.jit(jax.value_and_grad(objective))
        t0 = time.perf_counter()
        jax.block_until_ready(program(m))
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(program(m))
            times.append(time.perf_counter() - t0)
        rows.append({"forward": label, "seconds": min(times), "first_call_seconds": compile_s})
        print(f"{label}: {min(times):.3f} s", flush=True)
    jw = rows[-1]["seconds"]
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "command": "uv run python experiments/bench_inversion_usct.py " + " ".join(sys.argv[1:]),
              "host": platform.node(), "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "shots": acq.n_shots,
              "shape": list(acq.grid.shape), "nt": acq.nt, "joint_density": joint, "repeats": repeats, "rows": rows}
    write_text(RESULTS / f"{name}_gradient_cost.json", json.dumps(result, indent=2))
    lines = [f"# USCT inversion: the cost of one objective-and-gradient evaluation ({result['backend']})", "",
             f"`{result['command']}` ({result['date']}, {result['cpu_count']} CPU cores).", "",
             f"The first band's misfit over all {acq.n_shots} shots, {acq.grid.shape[0]}^2 grid, {acq.nt} steps, "
             + ("sound speed and density" if joint else "sound speed") + f" as parameters; fastest of {repeats} "
             "repeats after compilation.", "",
             "| forward model | seconds | jwave / this | first call (s, with compilation) |", "|---|---|---|---|"]
    lines += [f"| {r['forward']} | {r['seconds']:.3f} | {jw / r['seconds']:.2f} | {r['first_call_seconds']:.1f} |"
              for r in rows]
    write_text(RESULTS / f"{name}_gradient_cost.md", "\n".join(lines + [""]))
    print("\n".join(lines))


def resolution_floor(acq: usct.Acquisition, config, seed: int, count: int, bands: list[float], f0: float,
                     name: str) -> None:
    """Per phantom, ``rel_error`` of the truth low-passed to ``|k| <= 4 pi f / 1500`` for ``f`` in
    ``bands`` x ``f0`` (see ``--floor``); writes ``<name>_floor.{md,json}``."""
    rows = []
    for index in range(count):
        c = phantoms.phantom(config, seed, index).medium["sound_speed"].astype(np.float64)
        k = 2 * np.pi * np.fft.fftfreq(c.shape[0], acq.grid.spacing / 2)
        kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
        excess = np.fft.fft2(c - usct.WATER_SOUND_SPEED)
        errors = [usct.rel_error(acq, (np.real(np.fft.ifft2(excess * (kk <= 4 * np.pi * b * f0 / 1500.0)))
                                       + usct.WATER_SOUND_SPEED)[::2, ::2], c[::2, ::2]) for b in bands]
        rows.append({"phantom": index, "rel_error": errors})
    med = np.median([r["rel_error"] for r in rows], axis=0)
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "command": "uv run python experiments/bench_inversion_usct.py " + " ".join(sys.argv[1:]),
              "bands_f0": bands, "f0": f0, "rows": rows, "median": med.tolist()}
    write_text(RESULTS / f"{name}_floor.json", json.dumps(result, indent=2))
    lines = ["# USCT: the rel_error a band-limited image cannot beat", "",
             f"`{result['command']}` ({result['date']}).", "",
             "Per test phantom, the true sound speed low-passed to `|k| <= 2 * 2 pi f / 1500 m/s` (an ideal disc "
             "in k-space on the 0.1 mm grid, then sampled at the 0.2 mm nodes): the resolution of transmission and "
             "reflection together at frequency f. The phantoms' sharp boundaries and 1-cell texture lie outside it.",
             "", "| phantom | " + " | ".join(f"f = {b:g} f0" for b in bands) + " |", "|---|" + "---|" * len(bands)]
    lines += [f"| {r['phantom']} | " + " | ".join(f"{e:.3f}" for e in r["rel_error"]) + " |" for r in rows]
    lines += ["| median | " + " | ".join(f"{m:.3f}" for m in med) + " |", ""]
    write_text(RESULTS / f"{name}_floor.md", "\n".join(lines))
    print("\n".join(lines))


def time_to(history: list[dict], target: float) -> float | None:
    """Seconds (compilation excluded) of the first iteration with ``rel_error <= target``."""
    return next((r["seconds"] for r in history if r["rel_error"] <= target), None)


def measure(res: usct.USCTResult, index: int, truth: np.ndarray, lesions: np.ndarray, region: np.ndarray,
            target: float, rho: np.ndarray | None = None) -> dict:
    """One inversion's figures for the tables (with the true density ``rho``, the inverted density's
    relative error ``||rho - rho_true|| / ||rho_true - 1000||`` inside the ring too)."""
    h = res.history[-1]
    dens = None
    if rho is not None and res.density is not None:
        dens = float(np.linalg.norm((res.density - rho)[region]) / np.linalg.norm((rho - 1000.0)[region]))
    return {"phantom": index, "rel_error": h["rel_error"], "initial_rel_error": res.initial_error,
            "density_rel_error": dens,
            "ssim": ssim(res.sound_speed, truth, region),
            "lesion_contrast": lesion_contrast(res.sound_speed, truth, lesions),
            "seconds": h["seconds"], "compile_seconds": h["compile_seconds"] + res.preconditioner_compile_seconds,
            "solver_calls": h["solver_calls"], "surrogate_calls": h["surrogate_calls"],
            "time_to_target": time_to(res.history, target),
            "trajectory": [[r["seconds"], r["rel_error"]] for r in res.history]}


def report(index: int, name: str, case: dict, t_start: float) -> None:
    print(f"phantom {index} {name}: rel_error {case['rel_error']:.3f} ssim {case['ssim']:.3f} "
          f"{case['seconds']:.1f} s (+{case['compile_seconds']:.1f} s compile) [{time.perf_counter() - t_start:.0f} s]",
          flush=True)


def row(name: str, runs: list[dict], target: float) -> dict:
    reach = [r["time_to_target"] for r in runs]
    return {"forward": name, "n": len(runs), "rel_error": distribution([r["rel_error"] for r in runs]),
            "ssim": distribution([r["ssim"] for r in runs]),
            "lesion_contrast": distribution([r["lesion_contrast"] for r in runs]),
            "reached_target": sum(t is not None for t in reach),
            "time_to_target_s": distribution([np.nan if t is None else t for t in reach]),
            "seconds": distribution([r["seconds"] for r in runs]),
            "compile_seconds": distribution([r["compile_seconds"] for r in runs]),
            "solver_calls": distribution([r["solver_calls"] for r in runs]),
            "surrogate_calls": distribution([r["surrogate_calls"] for r in runs])}


def path_points(res: usct.USCTResult, truth: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(label, parameters)`` along one inversion: its start, each band's end, and the truth (the
    parameters as the inversion's: sound speed, or sound speed and density stacked)."""
    names = list(res.stage_starts)
    final = res.sound_speed if res.density is None else np.stack([res.sound_speed, res.density])
    ends = [res.stage_starts[n] for n in names[1:]] + [final]
    return [("start (water)", res.stage_starts[names[0]])] + \
        [(f"end of {n}", c) for n, c in zip(names, ends)] + [("truth", truth)]


@functools.lru_cache(maxsize=4)
def _jitted(model: ForwardModel):
    """``model.predict`` jitted once per forward model (the path points of every phantom share it)."""
    return jax.jit(model.predict)


def path_errors(acq: usct.Acquisition, operator: ForwardModel, solver: ForwardModel,
                points: list[tuple[str, np.ndarray]]) -> list[dict]:
    """The surrogate's traces against the solver's at each point ``(label, parameters)`` (the forward
    models' parameterisation: sound speed ``grid.shape`` m/s, or stacked with density):
    relative L2 over all shots and kept receivers (emitter's own trace out) of the traces
    (``rel_l2``), of their scattered part (minus the solver's water traces, ``scattered_rel_l2``), and
    of the water traces as a prediction (``water_rel_l2``, the baseline)."""
    keep = usct.receiver_mask(acq, 0.0)[:, None, :]
    shots = jnp.arange(acq.n_shots)
    sur, sol = _jitted(operator), _jitted(solver)

    def traces(fn, c: np.ndarray) -> np.ndarray:
        return np.asarray(fn(jnp.asarray(c, jnp.float32), shots)) * keep

    water_m = np.full(np.shape(points[0][1]), usct.WATER_SOUND_SPEED, np.float32)
    if water_m.ndim == 3:  # sound speed and density stacked
        water_m[1] = 1000.0
    water = traces(sol, water_m)
    out = []
    for label, c in points:
        f, s_ = traces(sol, c), traces(sur, c)
        err = float(np.linalg.norm(s_ - f))
        out.append({"point": label, "rel_l2": err / float(np.linalg.norm(f)),
                    "scattered_rel_l2": err / (float(np.linalg.norm(f - water)) or float("nan")),
                    "water_rel_l2": float(np.linalg.norm(water - f) / np.linalg.norm(f))})
    return out


def equal_quality(solver_runs: list[dict], runs: list[dict], factor: float) -> dict:
    """The same image, how much faster: per phantom the threshold ``factor`` x the solver's final
    rel_error, and the seconds (compilation excluded) the solver and the other forward model take to
    first reach it; the speed-up is their ratio, over the phantoms both reach it on."""
    per = []
    for s, o in zip(solver_runs, runs):
        if "trajectory" not in s or "trajectory" not in o:
            continue
        threshold = factor * s["rel_error"]
        t_s = next((t for t, e in s["trajectory"] if e <= threshold), None)
        t_o = next((t for t, e in o["trajectory"] if e <= threshold), None)
        per.append({"phantom": s["phantom"], "threshold": threshold, "solver_seconds": t_s, "seconds": t_o,
                    "speedup": None if t_o is None or t_s is None else t_s / t_o})
    ups = [p["speedup"] for p in per if p["speedup"] is not None]
    return {"factor": factor, "phantoms": len(per), "reached": len(ups),
            "speedup": distribution(ups) if ups else None, "per_phantom": per}


def break_even(solver_runs: list[dict], hybrid_runs: list[dict], cost_seconds: float) -> dict:
    """Reconstructions after which ``cost_seconds`` (data + training) is paid back: ``cost`` over the
    median, over the phantoms both reach the target on, of the solver's time to target minus the
    hybrid's; ``None`` (never) when that saving is not positive or no phantom counts."""
    saved = [s["time_to_target"] - h["time_to_target"] for s, h in zip(solver_runs, hybrid_runs)
             if s["time_to_target"] is not None and h["time_to_target"] is not None]
    median = float(np.median(saved)) if saved else float("nan")
    return {"phantoms": len(saved), "saved_seconds_median": median, "cost_seconds": cost_seconds,
            "reconstructions": cost_seconds / median if saved and median > 0 else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CPU scale (64^2, 32 elements)")
    p.add_argument("--phantoms", type=int, default=8, help="breast test-set size")
    p.add_argument("--calibration", type=int, default=1, help="phantoms re-inverted with another source + water")
    p.add_argument("--iterations", type=int, nargs="+", default=[4, 4, 4, 4, 4], help="L-BFGS iterations per band")
    p.add_argument("--bands", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25, 1.5], help="band tops / f0")
    p.add_argument("--jwave", type=int, default=1, help="calibration phantoms also inverted with jwave")
    p.add_argument("--target", type=float, default=0.4, help="rel_error for the time-to-target column")
    p.add_argument("--surrogate", default=None, help="TraceOperator run directory: add surrogate and hybrid rows")
    p.add_argument("--refresh-every", type=int, nargs="+", default=[1],
                   help="hybrid_corrected: iterations between refreshes (more than one: a row each, "
                        "hybrid_corrected_every<k> for the later ones)")
    p.add_argument("--trust-radius", type=float, default=20.0, help="hybrid_corrected: initial trust radius (m/s)")
    p.add_argument("--surrogate-cost", type=float, nargs=2, default=None, metavar=("DATA_S", "TRAIN_S"),
                   help="the surrogate's data-generation and training seconds (break-even)")
    p.add_argument("--path", type=int, default=0, help="phantoms whose solver path is checked with the surrogate")
    p.add_argument("--ood", type=int, default=0, help="phantoms of each out-of-distribution kind (dense, skull)")
    p.add_argument("--rare", type=int, default=0, help="breasts with one rare small lesion, reported separately")
    p.add_argument("--tv", type=float, default=1e-4, help="TV weight (misfit units per m/s)")
    p.add_argument("--density", choices=("invert", "known"), default="invert",
                   help="invert density with the sound speed, or hold it at 1000 kg/m^3")
    p.add_argument("--ablate-density", type=int, default=1,
                   help="with --density invert: also the solver with density held at 1000 kg/m^3")
    p.add_argument("--gradient-cost", type=int, default=0, metavar="N",
                   help="only measure one objective-and-gradient evaluation per forward model (fastest of N)")
    p.add_argument("--floor", action="store_true",
                   help="only measure the rel_error of the band-limited truths of the test set")
    p.add_argument("--name", default=None, help="results file stem (default inversion_usct[_cpu])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-json", default=None, help="only rewrite the markdown from this result JSON")
    args = p.parse_args(argv)
    name_ = args.name or ("inversion_usct_cpu" if args.small else "inversion_usct")
    if args.from_json:
        write_markdown(json.loads(Path(args.from_json).read_text()), name_)
        return 0
    if not args.surrogate and (args.path or args.surrogate_cost):
        raise ValueError("--path and --surrogate-cost need --surrogate RUN_DIR")
    scale = SCALES["small" if args.small else "gpu"]
    acq, acq_fine, extra = geometry(scale)
    f0 = scale["frequency"]
    joint = args.density == "invert"
    recipe = {"bands": tuple(b * f0 for b in args.bands), "iterations": tuple(args.iterations), "tv": args.tv,
              "invert_density": joint, "progress": False}
    rng = np.random.default_rng(args.seed)
    if args.floor:
        resolution_floor(acq, extra["config"], args.seed, args.phantoms, [1.0, 1.5, 2.0], f0, name_)
        return 0
    if args.gradient_cost:
        ph = phantoms.phantom(extra["config"], args.seed, 0)
        observed = observe(acq_fine, acoustic.Medium(sound_speed=ph.medium["sound_speed"], density=ph.medium["density"]),
                           rng, 2 * scale["pml"])
        gradient_cost(acq, observed, joint, args.gradient_cost, name_)
        return 0
    forwards = {"solver": {"forward": "solver"}}
    if joint and args.ablate_density:  # the same recipe with density held at 1000 kg/m^3
        forwards["solver_density_known"] = {"forward": "solver", "invert_density": False}
    if args.surrogate:
        forwards |= {"surrogate": {"forward": "surrogate", "surrogate": args.surrogate},
                     "hybrid_corrected": {"forward": "hybrid", "hybrid": "corrected", "surrogate": args.surrogate,
                                          "refresh_every": args.refresh_every[0], "trust_radius": args.trust_radius},
                     **{f"hybrid_corrected_every{k}": {"forward": "hybrid", "hybrid": "corrected",
                                                      "surrogate": args.surrogate, "refresh_every": k,
                                                      "trust_radius": args.trust_radius}
                        for k in args.refresh_every[1:]},
                     "hybrid_surrogate_first": {"forward": "hybrid", "hybrid": "surrogate_first",
                                                "surrogate": args.surrogate}}
    cases: dict[str, list[dict]] = {k: [] for k in forwards} | {"solver_calibrated": [], "jwave_calibrated": []}
    speed: list[dict] = []
    pml_coarse = usct.SolverSettings().resolve(acq).pml_size
    examples, histories = [], {}
    t_start = time.perf_counter()
    pml_fine = 2 * scale["pml"]
    other = None
    paths: list[dict] = []
    if args.path:
        from pdesurrogate.surrogate import TraceOperator

        rho_known = None if joint else np.full(acq.grid.shape, 1000.0, np.float32)
        sur_fwd = usct.surrogate_forward(acq, TraceOperator.load(args.surrogate), rho_known)
        sol_fwd = usct.solver_forward(acq, usct.SolverSettings(c_ref=BOUNDS[1]).resolve(acq), rho_known)
    ood_cases: dict[str, list[dict]] = {}
    hybrids = {k: v for k, v in forwards.items() if k.startswith("hybrid")}

    def save() -> dict:
        """The result so far, written to ``<name>.json`` (after every phantom: a crash keeps what ran)."""
        rows = [row(k, v, args.target) for k, v in cases.items() if v]
        ood_rows = [row(k, v, args.target) for k, v in ood_cases.items()]
        cost = None if args.surrogate_cost is None else {"data_seconds": args.surrogate_cost[0],
                                                         "train_seconds": args.surrogate_cost[1]}
        even = {} if cost is None else {k: break_even(cases["solver"], cases[k], sum(cost.values())) for k in hybrids}
        same = {k: equal_quality(cases["solver"], cases[k], EQUAL_QUALITY) for k in forwards if k != "solver"}
        result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "command": "uv run python experiments/bench_inversion_usct.py " + " ".join(sys.argv[1:] if argv is None
                                                                                             else argv),
                  "host": platform.node(), "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                  "scale": scale, "nt": acq.nt, "dt": acq.dt, "snr_db": SNR_DB, "recipe": {k: v for k, v in recipe.items()
                                                                                            if k != "progress"},
                  "target": args.target, "rows": rows, "cases": cases, "jwave_speed": speed,
                  "hybrid_corrected": {"refresh_every": args.refresh_every[0], "trust_radius": args.trust_radius},
                  "surrogate": args.surrogate, "surrogate_cost": cost, "break_even": even, "equal_quality": same, "path": paths,
                  "ood_rows": ood_rows, "ood_cases": ood_cases, "skull_bounds": [BOUNDS[0], SKULL_UPPER],
                  "skull_density_bounds": [DENSITY_BOUNDS[0], SKULL_DENSITY_UPPER], "rare": RARE,
                  "wall_seconds": time.perf_counter() - t_start}
        RESULTS.mkdir(exist_ok=True)
        write_text(RESULTS / f"{name_}.json", json.dumps(result, indent=2, default=float))
        return result

    region = acq.region()
    for index in range(args.phantoms):
        ph = phantoms.phantom(extra["config"], args.seed, index)
        c_fine, rho_fine = ph.medium["sound_speed"], ph.medium["density"]
        truth, lesions = c_fine[::2, ::2].astype(np.float32), ph.lesion_mask[::2, ::2]
        observed = observe(acq_fine, acoustic.Medium(sound_speed=c_fine, density=rho_fine), rng, pml_fine)
        for name, kw in forwards.items():
            res = usct.invert(acq, observed, truth=truth, **(recipe | kw))
            cases[name].append(measure(res, index, truth, lesions, region, args.target, rho_fine[::2, ::2]))
            report(index, name, cases[name][-1], t_start)
            if name == "solver" and index < 4:
                examples.append((index, truth, res.sound_speed))
            if index == 0:
                histories[name] = res.history
            if name == "solver" and index < args.path:
                true_m = np.stack([truth, rho_fine[::2, ::2]]) if joint else truth
                for r in path_errors(acq, sur_fwd, sol_fwd, path_points(res, true_m)):
                    paths.append({"phantom": index} | r)
                    print(f"phantom {index} path {r['point']}: surrogate rel_l2 {r['rel_l2']:.3f} "
                          f"(scattered {r['scattered_rel_l2']:.3f}, water {r['water_rel_l2']:.3f})", flush=True)
        if index < args.calibration:
            if other is None:  # the scanner's own source: another waveform, amplitude and delay
                t = extra["t"]
                other = 0.6 * extra["gain"] * np.asarray(signals.tone_burst(t - 0.4e-6, 0.85 * f0, cycles=4.0))
                acq_other = usct.Acquisition(acq_fine.grid, acq_fine.elements, other, acq_fine.dt, acq_fine.nt,
                                             emitters=np.array(acq_fine.emitters))
                water = observe(acq_other, acoustic.Medium(sound_speed=1500.0, density=1000.0), rng, pml_fine)
            obs_other = observe(acq_other, acoustic.Medium(sound_speed=c_fine, density=rho_fine), rng, pml_fine)
            res = usct.invert(acq, obs_other, water=water, truth=truth, **recipe)
            cases["solver_calibrated"].append(measure(res, index, truth, lesions, region, args.target, rho_fine[::2, ::2]))
            report(index, "solver_calibrated", cases["solver_calibrated"][-1], t_start)
            if index < args.jwave:  # the external baseline: the same recipe with jwave as forward model
                jw = usct.invert(acq, obs_other, forward=jwave_forward(acq, pml_coarse, joint), water=water, truth=truth,
                                 **recipe)
                cases["jwave_calibrated"].append(measure(jw, index, truth, lesions, region, args.target, rho_fine[::2, ::2]))
                report(index, "jwave_calibrated", cases["jwave_calibrated"][-1], t_start)
                final = jw.history[-1]["rel_error"]
                ours, theirs = time_to(res.history, final), time_to(jw.history, final)
                speed.append({"phantom": index, "jwave_final_rel_error": final, "jwave_seconds": theirs,
                              "solver_seconds": ours, "speedup": None if ours is None else theirs / ours})
        save()

    base = extra["config"]
    sets = [(kind, dataclasses.replace(base, phantom=dataclasses.replace(base.phantom, **params)), args.ood)
            for kind, params in OOD.items()]
    sets.append(("rare_lesion", dataclasses.replace(base, split="rare_lesion",
                                                    phantom=dataclasses.replace(base.phantom, **RARE)), args.rare))
    for kind, config, count in sets:
        skull = config.phantom.kind == "brain"
        limits = {"bounds": (BOUNDS[0], SKULL_UPPER) if skull else BOUNDS,
                  "density_bounds": (DENSITY_BOUNDS[0], SKULL_DENSITY_UPPER) if skull else DENSITY_BOUNDS}
        for index in range(count):
            ph = phantoms.phantom(config, args.seed, index)
            c_fine, rho_fine = ph.medium["sound_speed"], ph.medium["density"]
            truth, lesions = c_fine[::2, ::2].astype(np.float32), ph.lesion_mask[::2, ::2]
            if kind == "rare_lesion":  # the rare lesion's own contrast
                lesions = lesions == RARE_LABEL
            observed = observe(acq_fine, acoustic.Medium(sound_speed=c_fine, density=rho_fine), rng, pml_fine)
            for name, kw in ({"solver": forwards["solver"]} | hybrids).items():
                res = usct.invert(acq, observed, truth=truth, **limits, **kw, **recipe)
                ood_cases.setdefault(f"{kind}: {name}", []).append(
                    measure(res, index, truth, lesions, region, args.target, rho_fine[::2, ::2]))
                report(index, f"{kind} {name}", ood_cases[f"{kind}: {name}"][-1], t_start)
                save()

    result = save()

    fig, axes = subplots(2, max(len(examples), 1), figsize=(3.6 * max(len(examples), 1), 6.4), squeeze=False)
    for j, (index, truth, rec) in enumerate(examples):
        lo, hi = truth.min(), truth.max()
        axes[0][j].imshow(truth, origin="lower", vmin=lo, vmax=hi)
        axes[0][j].set_title(f"phantom {index}: truth")
        axes[1][j].imshow(rec, origin="lower", vmin=lo, vmax=hi)
        axes[1][j].set_title(f"solver FWI, rel_error {cases['solver'][j]['rel_error']:.3f}")
    save_figure(fig, RESULTS / f"{name_}_examples.png")
    plot_curves(histories, RESULTS / f"{name_}_curves.png")

    write_markdown(result, name_)
    return 0


def write_markdown(result: dict, name: str) -> None:
    """``<name>.md`` from a result dict (as saved in the JSON)."""
    def fmt(d: dict) -> str:
        return f"{d['median']:.3f} / {d['p95']:.3f} / {d['max']:.3f}"

    scale, recipe, target = result["scale"], result["recipe"], result["target"]
    f0 = scale["frequency"]
    header = ("| forward | n | rel_error median / p95 / max | SSIM median / p95 / max "
              "| lesion contrast median / p95 / max "
              f"| reached {target} | time to {target} (s, median) | seconds (median) | compile (s, first run) "
              "| solver calls | surrogate calls |")

    def table(rows: list[dict]) -> list[str]:
        return [header, "|---|---|---|---|---|---|---|---|---|---|---|"] + [
            f"| {r['forward']} | {r['n']} | {fmt(r['rel_error'])} | {fmt(r['ssim'])} "
            f"| {fmt(r['lesion_contrast'])} "
            f"| {r['reached_target']}/{r['n']} | {r['time_to_target_s']['median']:.1f} "
            f"| {r['seconds']['median']:.1f} | {r['compile_seconds']['max']:.1f} "
            f"| {r['solver_calls']['median']:.0f} | {r['surrogate_calls']['median']:.0f} |" for r in rows]

    forwards = {r["forward"] for r in result["rows"]}
    lines = [f"# USCT full-waveform inversion benchmark ({'CPU' if scale['n'] <= 64 else 'GPU'} scale)", "",
             f"`{result['command']}` ({result['date']}, {result['backend']}, {result['wall_seconds']:.0f} s wall).", "",
             f"Reconstruction grid {scale['n']}^2 at {scale['spacing'] * 1e3:g} mm, {scale['elements']} ring elements "
             f"(receivers), {scale['shots']} evenly spaced emitters, tone burst {f0 / 1e6:g} MHz, {result['nt']} "
             f"samples; data from `pstd` on the {2 * scale['n'] - 1}^2 grid, noise {result['snr_db']:g} dB below RMS; "
             f"bands {[round(b / f0, 3) for b in recipe['bands']]} x f0, L-BFGS iterations per band "
             f"{list(recipe['iterations'])}, TV weight {recipe.get('tv', 0.0):g}; start: water; density "
             + ("inverted with the sound speed from 1000 kg/m^3 (bounds 900-1100 kg/m^3)."
                if recipe.get("invert_density") else "held at 1000 kg/m^3 (the phantoms' varies)."), ""]
    hc = result.get("hybrid_corrected", {"refresh_every": 5, "trust_radius": 20.0})  # the defaults of earlier runs
    if result.get("surrogate"):
        lines += [f"Surrogate: the TraceOperator in `{result['surrogate']}`. `surrogate`: it replaces the solver; "
                  "`hybrid_corrected`: it is corrected to first order by the solver at a centre refreshed at the start "
                  f"of each band and every {hc['refresh_every']} iterations, within a trust region of initial radius "
                  f"{hc['trust_radius']:g} m/s (reset at each band); `hybrid_corrected_every<k>`: the same, refreshed "
                  "every k iterations; `hybrid_surrogate_first`: surrogate through every band, then 5 solver "
                  "iterations in the last band.", ""]
    lines += table(result["rows"])
    dens = {r["forward"]: [c["density_rel_error"] for c in result["cases"][r["forward"]]
                           if c.get("density_rel_error") is not None] for r in result["rows"]}
    dens = {k: v for k, v in dens.items() if v}
    if dens:
        lines += ["", "Inverted density, `||rho - rho_true|| / ||rho_true - 1000||` inside the ring (median / max): "
                  + "; ".join(f"`{k}` {np.median(v):.3f} / {np.max(v):.3f}" for k, v in dens.items()) + "."]
    lines += ["", "Compilation is shared: a forward model's later inversions reuse the first one's programs.", ""]
    if "solver_calibrated" in forwards:
        lines += ["`solver_calibrated`: data from another source waveform (4-cycle tone burst at 0.85 f0, 0.6x, "
                  "0.4 us late), source estimated from water shots of the same scanner.", ""]
    if "jwave_calibrated" in forwards:
        lines += ["`jwave_calibrated`: the same recipe and data as `solver_calibrated` with jwave's "
                  "`simulate_wave_propagation` (pstd) as forward model and its own water traces for the wavelet.", ""]
    for sp in result["jwave_speed"]:
        ours, theirs = (next(c for c in result["cases"][k] if c["phantom"] == sp["phantom"])
                        for k in ("solver_calibrated", "jwave_calibrated"))
        lines.append(f"Phantom {sp['phantom']}: jwave FWI reaches rel_error {sp['jwave_final_rel_error']:.3f} in "
                     f"{sp['jwave_seconds']:.1f} s; our solver FWI reaches it in "
                     + ("(never: it ends at " f"{ours['rel_error']:.3f})" if sp["solver_seconds"] is None
                        else f"{sp['solver_seconds']:.1f} s: {sp['speedup']:.1f}x faster")
                     + f". The whole recipe ({ours['solver_calls']} solver calls each): {ours['seconds']:.1f} s against "
                     f"jwave's {theirs['seconds']:.1f} s, {theirs['seconds'] / ours['seconds']:.1f}x"
                     + ("" if ours["time_to_target"] is None or theirs["time_to_target"] is None else
                        f"; to rel_error {target}: {ours['time_to_target']:.1f} s against {theirs['time_to_target']:.1f} s, "
                        f"{theirs['time_to_target'] / ours['time_to_target']:.1f}x")
                     + " (compilation excluded, same run).")
    if result.get("note"):
        lines += ["", f"Note: {result['note']}"]
    same = {k: v for k, v in result.get("equal_quality", {}).items() if v["phantoms"]}
    if same:
        factor = next(iter(same.values()))["factor"]
        lines += ["", f"**The same image, how much faster.** Per phantom, the seconds (compilation excluded) to first "
                  f"reach {factor:g}x the solver's final rel_error, the solver's own against each other forward "
                  "model's; the speed-up over the phantoms both reach it on.", "",
                  "| forward | reached | speed-up median / min / max | seconds median (solver / this) |",
                  "|---|---|---|---|"]
        for k, v in same.items():
            per = [q for q in v["per_phantom"] if q["speedup"] is not None]
            if not per:
                lines.append(f"| {k} | 0/{v['phantoms']} | never | - |")
                continue
            sp = [q["speedup"] for q in per]
            lines.append(f"| {k} | {v['reached']}/{v['phantoms']} | {np.median(sp):.2f} / {min(sp):.2f} / "
                         f"{max(sp):.2f} | {np.median([q['solver_seconds'] for q in per]):.1f} / "
                         f"{np.median([q['seconds'] for q in per]):.1f} |")
    cost = result.get("surrogate_cost")
    if cost:
        lines += ["", f"**Break-even.** The surrogate cost {cost['data_seconds']:.0f} s of data generation and "
                  f"{cost['train_seconds']:.0f} s of training on this CPU (separate runs, "
                  "`experiments/configs/usct_64_small.toml`).", ""]
        for k, b in result["break_even"].items():
            n = "never" if b["reconstructions"] is None else \
                f"after {math.ceil(b['reconstructions'])} reconstructions"
            lines.append(f"- `{k}`: saves {b['saved_seconds_median']:.1f} s per reconstruction in reaching rel_error "
                         f"{target} (median over the {b['phantoms']} phantoms both reach it on): break-even {n}.")
    if result.get("path"):
        points = list(dict.fromkeys(r["point"] for r in result["path"]))
        n = len({r["phantom"] for r in result["path"]})
        lines += ["", f"**The surrogate along real inversion paths** (the solver inversions of {n} phantoms): "
                  "relative L2 of the surrogate's traces against the inversion's solver, all shots, the emitter's "
                  "own trace left out; of the scattered part (minus the solver's water traces); and of the water "
                  "traces as a prediction (the baseline). Median / max over the phantoms.", "",
                  "| point | surrogate rel L2 | surrogate rel L2 of the scattered traces | water traces rel L2 |",
                  "|---|---|---|---|"]
        for pt in points:
            rs = [r for r in result["path"] if r["point"] == pt]

            def mm(key: str, rs: list[dict] = rs) -> str:
                v = [r[key] for r in rs]
                return f"{np.median(v):.3f} / {np.max(v):.3f}"

            lines.append(f"| {pt} | {mm('rel_l2')} | {mm('scattered_rel_l2')} | {mm('water_rel_l2')} |")
    if result.get("ood_rows"):
        lo, hi = result["skull_bounds"]
        dlo, dhi = result.get("skull_density_bounds", (900.0, 2000.0))
        kinds = {r["forward"].split(":")[0] for r in result["ood_rows"]}
        text = []
        if "dense_breast" in kinds:
            text.append("`dense_breast` 1.5x the breast contrast")
        if "skull" in kinds:
            text.append(f"`skull`: a head with skull (`brain` phantom, bone 2800-3000 m/s), bounds ({lo:g}, {hi:g}) "
                        f"m/s (density ({dlo:g}, {dhi:g}) kg/m^3)")
        if "rare_lesion" in kinds:
            rare = result["rare"]
            text.append(f"`rare_lesion`: breasts with one small ball of {rare['lesion_cells']} fine cells' diameter "
                        f"(0.1 mm cells) whose sound speed and density are {100 * rare['lesion_contrast']:g}% above "
                        "the local tissue's, its lesion contrast column that lesion's alone")
        lines += ["", "**Out of distribution and rare lesions** (reported apart from the test set; the surrogate "
                  "was trained on breasts only, without rare lesions): " + "; ".join(text) + ".", ""] + \
            table(result["ood_rows"])
    lines += ["", f"Figures beside this file: `{name}_examples.png` (truths and solver reconstructions), "
              f"`{name}_curves.png` (misfit and rel_error of phantom 0 per forward model).", ""]
    write_text(RESULTS / f"{name}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
