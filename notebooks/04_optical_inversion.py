# %% [markdown]
# # Optical diffraction tomography: Rytov, Rytov + TV and the FDTD inversion
#
# Optical diffraction tomography (ODT) recovers a cell's refractive index from the complex fields
# measured behind it at many illumination angles. This walkthrough builds a small acquisition
# (48² cells of 25 nm, 500 nm light in water, 8 angles over 360°), simulates the measurement with
# FDTD on a grid twice as fine plus 40 dB noise (so the reconstruction does not use the model that
# made its data), and reconstructs with the linear baselines (Rytov, Born, Rytov + TV) and the
# nonlinear FDTD inversion with its adjoint. It takes a few minutes on a laptop CPU, most of it
# compiling the FDTD programs once per acquisition. The last section shows how a trained field
# operator plugs in.

# %%
import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from pdesurrogate.inversion import optics
from solvers import Grid
from training import refinement

# %% [markdown]
# ## The acquisition
#
# Each illumination is a plane wave; with `rotating=True` the detector line turns with it (sample
# rotation). The FDTD forward model records the field on a line inside its total-field box, at
# distance `aperture` from the centre, and carries it to the detector by the angular spectrum
# method, so the detector may sit anywhere along the beam. Here it lies 200 nm beyond the
# recording line, one detector per cell. The object must stay inside the field of view, a disc of
# radius `aperture - 2 spacing`.

# %%
grid = Grid((48, 48), 25e-9)
n_water, wavelength = 1.333, 500e-9
angles = np.arange(8) * 2 * np.pi / 8
probe = optics.Acquisition(grid, wavelength, n_water, [0.0], [0.0], 0.0, pml_size=6)
acq = optics.Acquisition(grid, wavelength, n_water, angles, optics.recording_offsets(probe),
                         probe.aperture + 200e-9, pml_size=6)
print(f"{acq.n_angles} angles, {len(acq.detector_positions)} detectors, "
      f"field of view radius {(acq.aperture - 2 * grid.spacing) * 1e9:.0f} nm")

# %% [markdown]
# ## A cell: cytoplasm, nucleus and a nucleolus
#
# An elliptical cell body (n = 1.355) holds a nucleus (1.365) and a nucleolus (1.38), all within
# the field of view. Its phase delay is well below a radian: the regime where Rytov's linear model
# is nearly right.

# %%
x, y = (grid.coordinates() - ((np.array(grid.shape) - 1) / 2 * grid.spacing).reshape(2, 1, 1)) / 1e-9  # nm


def ellipse(cx, cy, a, b):
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1


truth = np.full(grid.shape, n_water)
truth[ellipse(0, 0, 120, 95)] = 1.355
truth[ellipse(20, -10, 60, 50)] = 1.365
truth[ellipse(30, -5, 20, 20)] = 1.38
optics.check_index(acq, truth)  # raises if the cell leaves the field of view

# %% [markdown]
# ## The measurement: FDTD on a grid twice as fine, with noise
#
# `optics.refined` is the same acquisition on a grid sharing every other node; the index is
# linearly interpolated onto it. The measurement is the background-corrected field `u / u_inc`.

# %%
t0 = time.perf_counter()
fine_index = refinement.resample(jnp.asarray(truth, jnp.float32), 2, 2)
clean = optics.simulate(optics.refined(acq, 2), fine_index)
observed = optics.add_noise(clean, 40.0, np.random.default_rng(0))
print(f"simulated {observed.shape} complex fields in {time.perf_counter() - t0:.1f} s (compilation included)")

fig, ax = plt.subplots(1, 2, figsize=(10, 3))
s_nm = np.asarray(acq.detector_positions) * 1e9
for j in (0, 2):
    ax[0].plot(s_nm, np.abs(observed[j]), label=f"angle {np.degrees(angles[j]):.0f}°")
    ax[1].plot(s_nm, np.unwrap(np.angle(observed[j])))
ax[0].set(xlabel="detector position [nm]", ylabel="|u / u_inc|")
ax[1].set(xlabel="detector position [nm]", ylabel="phase of u / u_inc [rad]")
ax[0].legend()
plt.show()

# %% [markdown]
# ## Linear baselines: Rytov, Born, Rytov + TV
#
# `rytov` and `born` refocus the fields to the rotation centre and backpropagate them with
# ODTbrain (the Fourier diffraction theorem). `rytov_tv` solves the same linear Rytov model by least
# squares with total variation and `n >= n_water`, iteratively.

# %%
n_rytov = optics.rytov(acq, observed)
n_born = optics.born(acq, observed)
rtv = optics.rytov_tv(acq, observed, tv=3.0, iterations=60, positive=True, truth=truth)
for name, n in (("Rytov", n_rytov), ("Born", n_born), ("Rytov + TV", rtv.refractive_index)):
    print(f"{name:>10}: rel_error {optics.rel_error(acq, n, truth):.3f}")

# %% [markdown]
# ## The FDTD inversion
#
# `invert(..., forward="solver")` fits the FDTD model's fields to the measurement with L-BFGS,
# gradients from the solver's adjoint, the same TV weight and `n >= n_water`. The history records
# every iteration's misfit, seconds (compilation apart), solver calls and, given the truth, its
# `rel_error`.

# %%
res = optics.invert(acq, observed, forward="solver", truth=truth, iterations=10, tv=3.0, positive=True,
                    progress=False)
last = res.history[-1]
print(f"FDTD inversion: rel_error {last['rel_error']:.3f} after {last['iteration']} iterations, "
      f"{last['seconds']:.1f} s (+ {last['compile_seconds']:.1f} s compilation), {last['solver_calls']} solver calls")

# %%
images = {"truth": truth, "Rytov": n_rytov, "Rytov + TV": rtv.refractive_index, "FDTD inversion": res.refractive_index}
fig, ax = plt.subplots(2, 4, figsize=(13, 6))
for k, (name, n) in enumerate(images.items()):
    ax[0, k].imshow(n, vmin=n_water, vmax=truth.max(), cmap="viridis", origin="lower")
    ax[0, k].set_title(name if k == 0 else f"{name}: {optics.rel_error(acq, n, truth):.3f}")
    ax[1, k].imshow(n - truth, vmin=-0.03, vmax=0.03, cmap="RdBu_r", origin="lower")
    ax[1, k].set_title("error n - truth" if k else "")
for a in ax.ravel():
    a.set_xticks([])
    a.set_yticks([])
plt.show()

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot([h["seconds"] for h in res.history], [h["rel_error"] for h in res.history], "o-", label="FDTD inversion")
ax.axhline(optics.rel_error(acq, n_rytov, truth), color="grey", ls="--", label="Rytov")
ax.axhline(optics.rel_error(acq, rtv.refractive_index, truth), color="k", ls=":", label="Rytov + TV")
ax.set(xlabel="seconds (compilation excluded)", ylabel="rel_error")
ax.legend()
plt.show()

# %% [markdown]
# ## Plugging in a field operator
#
# A `FieldOperator` trained on this geometry (same grid, wavelength, background index and angles,
# detector lines reaching the acquisition's recording lines) replaces FDTD in the same call. The
# operator's run directory or the loaded operator goes in `surrogate=`; an operator trained for
# anything else raises a `ValueError` that names what differs before anything runs.
#
# ```python
# # a dataset and an operator for this notebook's geometry: the demo's last stage trains one
# #   (training/demo_optics.py: DEMO_OPTICS, 48^2 at 25 nm, 8 angles, pml_size 6)
# res = optics.invert(acq, observed, forward="surrogate", surrogate="demo_output/reconstruction/run",
#                     truth=truth, iterations=10, tv=3.0, positive=True)
# # hybrids: the surrogate corrected by FDTD every few iterations, or surrogate then FDTD iterations
# res = optics.invert(acq, observed, forward="hybrid", hybrid="correct", refresh_every=5, surrogate=run_dir, ...)
# res = optics.invert(acq, observed, forward="hybrid", hybrid="switch", surrogate_iterations=12, iterations=3, ...)
# ```
#
# `experiments/bench_inversion_optics.py --small --surrogate RUN_DIR` measures all of them on the
# CPU benchmark's 64² geometry (`experiments/configs/optics_64_small.toml`).
