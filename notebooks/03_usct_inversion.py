# %% [markdown]
# # Ultrasound tomography: full-waveform inversion with the solver, then with a surrogate
#
# A ring of transducers around a breast fires one element at a time; every element records. From
# these traces, full-waveform inversion (FWI) recovers the sound-speed map. This walkthrough runs the
# library calls of `pdesurrogate invert usct` and of the benchmark
# (`experiments/bench_inversion_usct.py`) at a size that takes a few minutes on a laptop CPU: a 32²
# grid at 0.2 mm, 16 elements, 8 shots, a 1 MHz tone burst.
#
# Here the observed traces come from the same solver and grid as the inversion (an *inverse crime*,
# kept for speed; the benchmark makes its data with another scheme on a twice finer grid, with noise).

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pdesurrogate.inversion import usct
from solvers import Grid, acoustic
from training.data import generate, phantoms, scenarios
from training.data.config import parse_data_config
from training.run import train_run

work = Path(tempfile.mkdtemp(prefix="pdesurrogate-usct-"))

# %% [markdown]
# ## The acquisition, from a `usct` data config
#
# The same `[data]` table later generates the surrogate's training set, so the surrogate and the
# inversion share grid, elements, emitters, signal and time axis: `usct.invert` checks all five and
# refuses an operator trained on anything else. The absorbing layer (6 cells) and the 1-cell margin
# are what the inversion's solver picks for this ring (`usct.SolverSettings().resolve`).

# %%
data = {"scenario": "usct", "num_samples": 48, "seed": 0, "shape": [32, 32], "spacing": 2e-4, "batch_size": 16,
        "phantom": {"kind": "breast", "smoothing": [0.0, 3.0], "contrast_scale": [0.2, 1.0]},
        "acoustic": {"scheme": "fd", "fd_order": 4, "pml_size": 6, "ring_margin": 1, "dt": 0.3 * 2e-4 / 1650,
                     "frequency": 1e6, "cycles": 3.0, "duration": 6e-6, "n_elements": 16, "n_shots": 8}}
config = parse_data_config(data)
dt = scenarios.time_step(config)
_, nt = scenarios.usct_runs(config, dt)
acq = usct.Acquisition(Grid(tuple(config.shape), config.spacing), scenarios.ring_elements(config),
                       np.asarray(scenarios.source_signal(config, np.arange(nt) * dt)), dt, nt,
                       emitters=scenarios.usct_emitters(config))
print(f"{acq.n_elements} elements on a {acq.radius * 1e3:.2f} mm ring, {acq.n_shots} shots, {nt} samples of "
      f"{dt * 1e9:.1f} ns; solver settings: {usct.SolverSettings().resolve(acq)}")

# a breast phantom that is not in the training set (another seed), without the training set's smoothing
truth_config = parse_data_config(data | {"phantom": {"kind": "breast"}})
ph = phantoms.phantom(truth_config, 7, 0)
truth, rho = ph.medium["sound_speed"], ph.medium["density"]
observed = usct.simulate(acq, acoustic.Medium(sound_speed=truth, density=rho))
observed = observed + np.random.default_rng(0).normal(size=observed.shape).astype(np.float32) * 0.01 * observed.std()
print("observed traces:", observed.shape, "(shots, time samples, receivers)")

# %% [markdown]
# ## Solver FWI
#
# Frequency continuation over three low-pass bands, illumination preconditioning, L-BFGS with a line
# search, box bounds; the density is not inverted (1000 kg/m³ assumed, a model error the inversion
# lives with). `save_outputs` writes what the CLI writes: the reconstruction, the history, the figures
# and a report.

# %%
recipe = {"bands": (0.5e6, 0.75e6, 1.0e6), "iterations": 3, "progress": False}
solver_run = usct.invert(acq, observed, forward="solver", truth=truth, **recipe)
summary = usct.save_outputs(acq, solver_run, observed, work / "solver", truth=truth)
h = solver_run.history[-1]
print(f"solver FWI: rel_error {solver_run.initial_error:.3f} -> {h['rel_error']:.3f} in {h['seconds']:.1f} s "
      f"(+{h['compile_seconds']:.1f} s compile), {h['solver_calls']} solver calls")
for name in ("reconstruction", "curves", "traces"):
    plt.figure(figsize=(13, 4)); plt.imshow(plt.imread(work / "solver" / f"{name}.png")); plt.axis("off")
plt.show()

# %% [markdown]
# ## Plugging in a surrogate: `forward="hybrid"`
#
# A `TraceOperator` (medium + emitting element -> the traces at every element) is trained with the
# same calls as `pdesurrogate generate` and `pdesurrogate train`, on breasts smoothed and scaled down
# per sample (`phantom.smoothing`, `phantom.contrast_scale`): an inversion from water passes through
# smooth, low-contrast media, and the surrogate must hold there. At this size (48 samples, 100 steps)
# it is a poor surrogate; the *corrected* hybrid lives with that: at a centre, refreshed at each band's
# start and every `refresh_every` iterations, the solver's traces correct the surrogate's so that
# misfit and gradient agree with the solver's, and a trust region re-centres only where the solver
# confirms a decrease. The trained benchmark operator and its figures are in `docs/inversion_usct.md`.

# %%
experiment = {"data": data, "model": {"kind": "fno", "modes": [8, 8], "width": 16, "depth": 2},
              "train": {"steps": 100, "batch_size": 2, "lr": 3e-3, "warmup_steps": 10, "validate_every": 50,
                        "checkpoint_every": 50}}
report = generate(data, work / "data", progress=False)
print(f"data: {report['written']} samples in {report['seconds']:.1f} s")
trained = train_run(experiment, work / "data", work / "run", progress=False)
print(f"training: {trained.step} steps, best validation loss (relative L2 of the scattered traces) "
      f"{trained.best_val:.3f}")

runs = {"solver": solver_run}
for hybrid in ("corrected", "surrogate_first"):
    runs[f"hybrid {hybrid}"] = usct.invert(acq, observed, forward="hybrid", hybrid=hybrid, surrogate=work / "run",
                                           truth=truth, **recipe)
runs["surrogate only"] = usct.invert(acq, observed, forward="surrogate", surrogate=work / "run", truth=truth,
                                     **recipe)
fig, ax = plt.subplots(1, len(runs) + 1, figsize=(3.4 * (len(runs) + 1), 3.2))
lo, hi = truth.min(), truth.max()
ax[0].imshow(truth, origin="lower", vmin=lo, vmax=hi); ax[0].set_title("truth")
for a, (name, res) in zip(ax[1:], runs.items()):
    last = res.history[-1]
    a.imshow(res.sound_speed, origin="lower", vmin=lo, vmax=hi)
    a.set_title(f"{name}\nrel_error {last['rel_error']:.3f}", fontsize=9)
    print(f"{name:>24}: rel_error {last['rel_error']:.3f}, {last['seconds']:6.1f} s, "
          f"{last['solver_calls']:4d} solver calls, {last['surrogate_calls']:4d} surrogate calls")
plt.show()

# %% [markdown]
# An operator trained on another acquisition is refused, with what differs named:

# %%
other = usct.Acquisition(acq.grid, acq.elements, acq.signals[0], acq.dt, acq.nt, emitters=np.arange(16))
try:
    usct.invert(other, np.zeros((16, nt, 16)) + 1.0, forward="hybrid", surrogate=work / "run", **recipe)
except ValueError as err:
    print("ValueError:", err)
