"""Does diffrax earn its place? Its integrators and checkpointed adjoint against the project's own scan.

    uv run --group diffrax python experiments/bench_diffrax.py            # 128^2 x 400 steps, about 3 min on 2 CPU cores
    uv run --group diffrax python experiments/bench_diffrax.py --n 64 --steps 100   # seconds

The problem is the acoustic solver's semi-discrete wave system, lossless and periodic
(``pml_size=0``): a heterogeneous ``c`` and ``rho``, ``fd`` order 4 in space, a Gaussian ``p0``.
Every integrator uses the same spatial operators (those of :class:`solvers.acoustic.Stepper`) and
the same time step (CFL 0.3 unless stated), so only the time integration and the loop machinery
differ:

- ``scan``: ``Stepper.run``, the project's kick-drift-kick leapfrog in ``solvers.scan``;
- ``diffrax SemiImplicitEuler``: the same staggered leapfrog written as diffrax's symplectic Euler
  of the separable system ``(p, v)``, started from the half-kicked velocity, so its pressure
  sequence equals the leapfrog's to rounding;
- ``diffrax ReversibleHeun``: diffrax's algebraically reversible second-order scheme, at the
  leapfrog's step and at half of it.

Error: relative L2 of the final pressure against the leapfrog at a 16x smaller time step (the
semi-discrete system's time-converged solution, to the leapfrog's second order). Speed: the fastest
of ``--repeats`` calls, forward and forward plus gradient with respect to the sound speed, all in
the same run (ratios against ``scan``). Gradient memory: XLA's temp memory of the compiled gradient
(``memory_analysis``), for the scan's ``segmented``/``recursive``/``none`` checkpointing and
diffrax's ``RecursiveCheckpointAdjoint`` (its default adjoint). Writes
``experiments/results/diffrax_<backend>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pdesurrogate.evaluation.speed import time_call  # noqa: E402
from solvers import Grid, acoustic  # noqa: E402
from solvers.acoustic.operators import fd_backward, fd_coefficients, fd_forward  # noqa: E402

H = 1e-4
ORDER = 4
REFINE = 16


def setup(n: int) -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray]:
    """Grid, a heterogeneous (c, rho) and a Gaussian p0 (sigma 3 cells)."""
    grid = Grid((n, n), H)
    x, y = grid.coordinates() / H
    bump = np.exp(-((x - 0.55 * n) ** 2 + (y - 0.45 * n) ** 2) / (2 * (0.15 * n) ** 2))
    c = (1500 + 120 * bump).astype(np.float32)
    rho = (1000 + 150 * bump[::-1]).astype(np.float32)
    p0 = np.exp(-((x - 0.4 * n) ** 2 + (y - 0.5 * n) ** 2) / (2 * 3.0**2)).astype(np.float32)
    return grid, c, rho, p0


def vector_fields(st: acoustic.Stepper):
    """``dp_d/dt(v)`` and ``dv_d/dt(p)`` of the stepper's semi-discrete system (fd, no PML), in Pa/s and m/s².

    The pressure is split into one component per axis (``p = sum_d p_d``, ``dp_d/dt = -rho c^2
    dv_d/dx_d``), as the stepper does with a PML: diffrax checks each of SemiImplicitEuler's two
    terms against its own half of the state, so both halves must have the same structure.
    """
    coeffs = fd_coefficients(ORDER)
    nd, h = st.grid.ndim, st.grid.spacing

    def dp(v):
        return tuple(-st.bulk * fd_backward(v[d], d, h, coeffs) for d in range(nd))

    def dv(p_split):
        p = sum(p_split)
        return tuple(-st.inv_rho[d] * fd_forward(p, d, h, coeffs) for d in range(nd))

    return dp, dv


def final_pressure(method: str, grid: Grid, c, rho, p0, dt: float, steps: int, checkpoint: str = "segmented"):
    """The pressure after ``steps`` steps of ``dt`` (s) with one integrator; differentiable in ``c``."""
    st = acoustic.Stepper(grid, acoustic.Medium(c, rho), scheme="fd", fd_order=ORDER, pml_size=0, dt=dt)
    if method == "scan":
        return st.run(st.init(p0), steps, checkpoint=checkpoint).p
    dp, dv = vector_fields(st)
    p0 = jnp.asarray(p0, st.dtype)
    v0 = tuple(jnp.zeros_like(p0) for _ in range(grid.ndim))
    p0_split = tuple(p0 / grid.ndim for _ in range(grid.ndim))
    # Time in units of steps (t = 0 .. steps, dt0 = 1) keeps the step count exact in float32.
    kw = dict(t0=0.0, t1=float(steps), dt0=1.0, saveat=diffrax.SaveAt(t1=True), max_steps=steps,
              adjoint=diffrax.RecursiveCheckpointAdjoint())
    if method == "SemiImplicitEuler":
        v_half = tuple(a + 0.5 * dt * b for a, b in zip(v0, dv(p0_split)))  # the leapfrog's first half kick
        terms = (diffrax.ODETerm(lambda t, v, a: scaled(dt, dp(v))), diffrax.ODETerm(lambda t, p, a: scaled(dt, dv(p))))
        sol = diffrax.diffeqsolve(terms, diffrax.SemiImplicitEuler(), y0=(p0_split, v_half), **kw)
    else:  # ReversibleHeun: one term on the whole state (p, v).
        term = diffrax.ODETerm(lambda t, y, a: (scaled(dt, dp(y[1])), scaled(dt, dv(y[0]))))
        sol = diffrax.diffeqsolve(term, diffrax.ReversibleHeun(), y0=(p0_split, v0), **kw)
    return sum(a[0] for a in sol.ys[0])


def scaled(factor: float, arrays: tuple) -> tuple:
    return tuple(factor * a for a in arrays)


def temp_bytes(fn, *args) -> int:
    return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128, help="grid points per axis (default 128)")
    ap.add_argument("--steps", type=int, default=400, help="time steps at the working dt (default 400)")
    ap.add_argument("--cfl", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--results", default=str(REPO / "experiments" / "results"))
    args = ap.parse_args(argv)
    grid, c, rho, p0 = setup(args.n)
    dt = args.cfl * H / float(c.max())
    cj = jnp.asarray(c)
    reference = np.asarray(jax.jit(lambda c: final_pressure("scan", grid, c, rho, p0, dt / REFINE,
                                                             REFINE * args.steps))(cj))
    cases = [  # (label, method, steps per working step, checkpointing)
        ("scan (leapfrog), segmented", "scan", 1, "segmented"),
        ("scan (leapfrog), recursive", "scan", 1, "recursive"),
        ("scan (leapfrog), none", "scan", 1, "none"),
        ("diffrax SemiImplicitEuler, RecursiveCheckpointAdjoint", "SemiImplicitEuler", 1, None),
        ("diffrax ReversibleHeun, RecursiveCheckpointAdjoint", "ReversibleHeun", 1, None),
        ("diffrax ReversibleHeun at dt/2, RecursiveCheckpointAdjoint", "ReversibleHeun", 2, None),
    ]
    rows = []
    for label, method, sub, ckpt in cases:
        def forward(c, method=method, sub=sub, ckpt=ckpt):
            return final_pressure(method, grid, c, rho, p0, dt / sub, sub * args.steps, ckpt or "segmented")

        def loss(c, forward=forward):
            return jnp.sum(forward(c) ** 2)

        fwd, grad = jax.jit(forward), jax.jit(jax.grad(loss))
        out = np.asarray(fwd(cj))
        err = float(np.linalg.norm(out - reference) / np.linalg.norm(reference)) if np.all(np.isfinite(out)) else math.inf
        row = {"case": label, "method": method, "dt_s": dt / sub, "steps": sub * args.steps,
               "rel_l2_vs_time_converged": err,
               "forward_s": time_call(fwd, cj, repeats=args.repeats),
               "gradient_s": time_call(grad, cj, repeats=args.repeats),
               "gradient_temp_bytes": temp_bytes(jax.grad(loss), cj),
               "gradient": np.asarray(grad(cj))}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "gradient"}), flush=True)
    base, g0 = rows[0], rows[0]["gradient"]
    for row in rows:
        g = row.pop("gradient")
        row["gradient_rel_diff_vs_segmented"] = float(np.linalg.norm(g - g0) / np.linalg.norm(g0))
        row["forward_vs_scan"] = row["forward_s"] / base["forward_s"]
        row["gradient_vs_scan"] = row["gradient_s"] / base["gradient_s"]
        row["memory_vs_segmented"] = row["gradient_temp_bytes"] / base["gradient_temp_bytes"]
    backend = jax.default_backend()
    meta = {"grid": [args.n, args.n], "spacing_m": H, "fd_order": ORDER, "cfl": args.cfl, "steps": args.steps,
            "reference": f"leapfrog at dt/{REFINE}", "dtype": "float32", "repeats": args.repeats,
            "backend": backend, "device": str(jax.devices()[0]), "jax": jax.__version__,
            "diffrax": diffrax.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"diffrax_{backend}" + ("" if (args.n, args.steps) == (128, 400) else f"_{args.n}_{args.steps}")
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# diffrax against the project's scan ({backend}, {meta['date']})", "",
             f"Acoustic semi-discrete system, {args.n}² `fd{ORDER}`, lossless and periodic, float32, "
             f"{args.steps} steps at CFL {args.cfl:g}; error against the leapfrog at dt/{REFINE}; times: "
             f"fastest of {args.repeats} calls in this run; memory: XLA temp bytes of the compiled gradient. "
             f"JAX {jax.__version__}, diffrax {diffrax.__version__}, {meta['device']}.", "",
             "| integrator and adjoint | steps | rel L2 vs time-converged | forward s (× scan) "
             "| forward + gradient s (× scan) | gradient temp MiB (× segmented) | gradient rel diff vs scan |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['steps']} | {r['rel_l2_vs_time_converged']:.3g} "
                     f"| {r['forward_s']:.3g} ({r['forward_vs_scan']:.2f}×) "
                     f"| {r['gradient_s']:.3g} ({r['gradient_vs_scan']:.2f}×) "
                     f"| {r['gradient_temp_bytes'] / 2**20:.1f} ({r['memory_vs_segmented']:.2f}×) "
                     f"| {r['gradient_rel_diff_vs_segmented']:.2g} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
