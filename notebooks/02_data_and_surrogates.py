# %% [markdown]
# # From solver data to a trained surrogate stepper
#
# The same library calls as `pdesurrogate generate`, `train` and `evaluate`, at a size that runs in
# about a minute on a laptop CPU: a resumable dataset of solver trajectories on breast-like media,
# a small FNO stepper trained on it, its evaluation beyond averages, and the trained surrogate used
# as a drop-in `Stepper` with a gradient with respect to the medium.

# %%
import copy
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from pdesurrogate import Surrogate
from solvers import acoustic
from training.data import Loader, generate, open_dataset
from training.demo import DEMO_EXPERIMENT
from training.evaluation import evaluate_run
from training.run import train_run

work = Path(tempfile.mkdtemp(prefix="pdesurrogate-walkthrough-"))
experiment = copy.deepcopy(DEMO_EXPERIMENT)  # the settings of `pdesurrogate demo`
print(experiment)

# %% [markdown]
# ## A dataset of solver trajectories
#
# Sample `i` is a pure function of `(config, seed, i)`; a killed generation resumes with the same call.

# %%
report = generate(experiment["data"], work / "data", progress=False)
ds = open_dataset(work / "data")
print(report["status"], len(ds), "samples;", {k: v for k, v in ds.info()["fields"].items()})
sample = ds[3]
fig, ax = plt.subplots(1, 4, figsize=(14, 3))
ax[0].imshow(sample["sound_speed"]); ax[0].set_title("sound speed [m/s]")
for k, frame in zip(range(1, 4), (0, 4, 8)):
    ax[k].imshow(sample["pressure"][frame], cmap="RdBu_r"); ax[k].set_title(f"pressure, frame {frame}")
plt.show()
print("a second call is a no-op:", generate(experiment["data"], work / "data", progress=False)["status"])
batch = next(iter(Loader(ds, 8, seed=0).epoch(0)))
print("a loader batch:", {k: v.shape for k, v in batch.items()})

# %% [markdown]
# ## Train a small FNO stepper (macro step = 4 solver steps)

# %%
result = train_run(experiment, work / "data", work / "run", progress=False)
print(f"{result.step} steps, best validation loss {result.best_val:.4g}")
plt.imshow(plt.imread(work / "run" / "loss_curve.png")); plt.axis("off"); plt.show()

# %% [markdown]
# ## Evaluate beyond averages: tails, rollout, baseline, bands, lesions, speed

# %%
ev = evaluate_run(work / "run", [work / "data"], work / "evaluation")
for key in ("rel_l2", "baseline_rel_l2"):
    print(f"{key:>16}: " + ", ".join(f"{s} {ev[key][s]:.3g}" for s in ("median", "p95", "p99", "max")))
print("rollout median by macro step:", np.round(ev["rollout"]["median"], 3))
print("speed vs solver (ratio > 1: surrogate faster):", {k: round(v["ratio"], 3) for k, v in ev["speed"].items()
                                                         if isinstance(v, dict) and "ratio" in v})

# %% [markdown]
# ## The surrogate is a `Stepper`: roll it out next to the solver, and differentiate it

# %%
held_out = ds[63]
c, rho, p0 = (jnp.asarray(held_out[k]) for k in ("sound_speed", "density", "p0"))
sur = Surrogate.load(work / "run", acoustic.Medium(sound_speed=c, density=rho))
solver = acoustic.Stepper(sur.grid, acoustic.Medium(c, rho), scheme="fd", pml_size=6,
                          dt=float(held_out["dt"]))
s_sur, s_ref = sur.init(p0), solver.init(p0)
fig, ax = plt.subplots(2, 4, figsize=(13, 6))
for j in range(4):
    s_sur, s_ref = sur.step(s_sur), solver.run(s_ref, sur.macro_steps)
    lim = float(jnp.abs(s_ref.p).max())
    ax[0, j].imshow(s_ref.p, cmap="RdBu_r", vmin=-lim, vmax=lim); ax[0, j].set_title(f"solver, step {j + 1}")
    ax[1, j].imshow(s_sur[0], cmap="RdBu_r", vmin=-lim, vmax=lim); ax[1, j].set_title(f"surrogate, step {j + 1}")
plt.show()

xy = np.array([[0.8e-3, 1.6e-3], [2.4e-3, 1.6e-3]])
target = sur.rollout(p0, 8, sensors=xy).traces
loss = lambda c_: jnp.sum((sur.with_medium(jnp.stack([c_, rho])).rollout(p0, 8, xy).traces - 1.05 * target) ** 2)
g = jax.grad(loss)(c)
plt.imshow(g, cmap="RdBu_r"); plt.title("d loss / d sound speed through the surrogate"); plt.colorbar(); plt.show()
