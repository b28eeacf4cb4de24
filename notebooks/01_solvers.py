# %% [markdown]
# # Reference solvers: acoustic and Maxwell
#
# This walkthrough runs the same library calls the tests and the CLI use, at sizes that take seconds
# on a laptop CPU: a homogeneous acoustic pulse against its closed-form solution, exact time
# reversal, a gradient with respect to sound speed, and Mie scattering from a dielectric cylinder
# against the analytic series.

# %%
import matplotlib.pyplot as plt
import jax
import jax.numpy as jnp
import numpy as np

from solvers import Grid, acoustic, analytic, maxwell

# %% [markdown]
# ## A Gaussian initial pressure in 2D, against the Hankel-integral solution
#
# Grid index `i` sits at `x = i * spacing`. Sensors are positions in metres; these sit on grid points
# (off-grid positions are interpolated, by default with a band-limited sinc kernel for both schemes).

# %%
grid = Grid(shape=(128, 128), spacing=1e-4)
c0, sigma = 1500.0, 4e-4
centre = np.array([64, 64]) * grid.spacing
x, y = grid.coordinates()
p0 = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
sensors = centre + np.array([[20, 0], [0, 30], [35, 15]]) * grid.spacing
medium = acoustic.Medium(sound_speed=c0, density=1000.0)
runs = {s: acoustic.simulate(grid, medium, duration=4e-6, p0=p0, sensors=sensors, scheme=s, pml_size=20)
        for s in ("pstd", "fd")}
r = np.linalg.norm(sensors - centre, axis=1)
t = np.asarray(runs["pstd"].time)
exact = np.stack([analytic.gaussian_p0_2d(ri, t, sigma, c0) for ri in r], axis=1)
for s, res in runs.items():
    err = np.linalg.norm(np.asarray(res.traces) - exact) / np.linalg.norm(exact)
    print(f"{s:>4}: {res.time.size} steps, rel L2 trace error vs closed form = {err:.2e}")

fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
ax[0].imshow(np.asarray(runs["pstd"].pressure), cmap="RdBu_r")
ax[0].set_title("pstd pressure at t = 4 µs")
for k in range(len(r)):
    ax[1].plot(t * 1e6, exact[:, k], "k", lw=2.5, alpha=0.4)
    ax[1].plot(t * 1e6, np.asarray(runs["pstd"].traces)[:, k], "--", label=f"r = {r[k] * 1e3:.1f} mm")
ax[1].set(xlabel="time [µs]", ylabel="pressure [Pa]", title="traces: pstd (dashed) vs closed form (grey)")
ax[1].legend()
plt.show()

# %% [markdown]
# ## Exact time reversal with `pml_size=0`
#
# The kick-drift-kick leapfrog keeps pressure and velocity synchronised in time, so
# `R run(R run(s, n), n) == s` up to rounding.

# %%
rng = np.random.default_rng(0)
c_het = (1500 + 60 * rng.random(grid.shape)).astype(np.float32)
st = acoustic.Stepper(grid, acoustic.Medium(c_het, 1000.0), scheme="pstd", pml_size=0)
s0 = st.init(p0)
back = st.reverse(st.run(st.reverse(st.run(s0, 200)), 200))
print("relative error after 200 steps forward and back:",
      float(jnp.linalg.norm(back.p - s0.p) / jnp.linalg.norm(s0.p)))

# %% [markdown]
# ## A gradient with respect to sound speed
#
# `jax.grad` flows through the whole simulation; segmented checkpointing keeps memory at about
# `sqrt(steps)` states instead of every step.

# %%
def misfit(c):
    res = acoustic.simulate(grid, acoustic.Medium(c, 1000.0), duration=4e-6, p0=p0, sensors=sensors,
                            dt=float(runs["pstd"].dt))
    return jnp.sum((res.traces - exact) ** 2)

g = jax.jit(jax.grad(misfit))(jnp.full(grid.shape, 1480.0, jnp.float32))
plt.imshow(np.asarray(g), cmap="RdBu_r")
plt.title("d misfit / d sound speed (true c = 1500, model c = 1480)")
plt.colorbar()
plt.show()

# %% [markdown]
# ## Mie scattering: an n = 1.5 cylinder of radius λ0/2, 2D TM, with subpixel averaging

# %%
lam0, index, radius = 1e-6, 1.5, 0.5e-6
ogrid, omedium, oc = maxwell.analytic.mie_cylinder_setup(20, wavelength=lam0, index=index, radius=radius, subpixel=True)
src = maxwell.PlaneWave(wavelength=lam0, angle=0.0)
res = maxwell.simulate(ogrid, omedium, source=src, frequencies=[src.frequency])
ox, oy = ogrid.coordinates()
ref = maxwell.analytic.mie_cylinder(ox, oy, lam0, radius, index, oc, "TM")
inside = (ox - oc[0]) ** 2 + (oy - oc[1]) ** 2 < radius**2
sim = np.abs(np.asarray(res.field[0]))
err = np.linalg.norm(sim[inside] - np.abs(ref)[inside]) / np.linalg.norm(np.abs(ref)[inside])
print(f"{res.steps} steps, converged = {res.converged}; |Ez| rel L2 inside the cylinder = {err:.2%}")
fig, ax = plt.subplots(1, 2, figsize=(10, 4))
ax[0].imshow(sim, vmin=0, vmax=2.3, cmap="magma"); ax[0].set_title("FDTD |Ez|")
ax[1].imshow(np.abs(ref), vmin=0, vmax=2.3, cmap="magma"); ax[1].set_title("analytic |Ez|")
plt.show()
