"""Mie validation figure: simulated vs analytic |Ez| for a unit TM plane wave on an n = 1.5 cylinder.

    uv run python experiments/mie_figure.py            # writes experiments/results/mie_validation.png

Radius lam0 / 2, 20 cells per wavelength inside the cylinder, CPML 20 cells, run to convergence
(relative phasor change <= 1e-3). Panels: simulated |Ez| (sub-pixel averaging), the analytic
Bessel/Hankel series, their difference, and a cut along the propagation axis through the centre
for staircased and sub-pixel media. The errors printed in the title are the rel L2 of |Ez|
inside the cylinder (the quantity the tests bound).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solvers import maxwell  # noqa: E402

LAM0, INDEX = 1.0e-6, 1.5
RADIUS = LAM0 / 2


def run(cells: float, subpixel: bool):
    """Simulated and analytic Ez phasors (TF region), coordinates and the inside mask."""
    pml = 20
    grid, medium, centre = maxwell.analytic.mie_cylinder_setup(cells, wavelength=LAM0, index=INDEX, radius=RADIUS,
                                                               pml_size=pml, subpixel=subpixel)
    n = grid.shape[0]
    res = maxwell.simulate(grid, medium, maxwell.PlaneWave(LAM0), pml_size=pml)
    x, y = grid.coordinates()
    ref = maxwell.analytic.mie_cylinder(x, y, LAM0, RADIUS, INDEX, centre=tuple(centre))
    box = slice(pml + 5, n - pml - 5)
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 < RADIUS**2
    sim = np.asarray(res.field[0])
    err = np.linalg.norm(np.abs(sim[inside]) - np.abs(ref[inside])) / np.linalg.norm(np.abs(ref[inside]))
    return {"sim": sim[box, box], "ref": ref[box, box], "x": (x[box, box] - centre[0]) / LAM0,
            "y": (y[box, box] - centre[1]) / LAM0, "err": err, "steps": res.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/mie_validation.png")
    args = parser.parse_args()
    stair = run(20, subpixel=False)
    sub = run(20, subpixel=True)
    ext = [sub["x"].min(), sub["x"].max(), sub["y"].min(), sub["y"].max()]
    fig, ax = plt.subplots(1, 4, figsize=(17, 4))
    vmax = max(np.abs(sub["sim"]).max(), np.abs(sub["ref"]).max())
    for a, img, title in ((ax[0], np.abs(sub["sim"]), "FDTD |Ez| (sub-pixel)"),
                          (ax[1], np.abs(sub["ref"]), "analytic Mie |Ez|"),
                          (ax[2], np.abs(sub["sim"]) - np.abs(sub["ref"]), "difference")):
        im = a.imshow(img.T, origin="lower", extent=ext, cmap="magma" if "diff" not in title else "RdBu_r",
                      vmin=None if "diff" in title else 0, vmax=None if "diff" in title else vmax)
        a.add_patch(plt.Circle((0, 0), RADIUS / LAM0, fill=False, color="w", lw=0.8, ls="--"))
        a.set_title(title)
        a.set_xlabel("x / λ0")
        a.set_ylabel("y / λ0")
        fig.colorbar(im, ax=a, fraction=0.046)
    mid = sub["sim"].shape[1] // 2
    ax[3].plot(sub["x"][:, mid], np.abs(sub["ref"][:, mid]), "k-", lw=2, label="analytic")
    ax[3].plot(stair["x"][:, mid], np.abs(stair["sim"][:, mid]), "C0--",
               label=f"staircased ({100 * stair['err']:.2f}%)")
    ax[3].plot(sub["x"][:, mid], np.abs(sub["sim"][:, mid]), "C3:", lw=2, label=f"sub-pixel ({100 * sub['err']:.2f}%)")
    ax[3].axvspan(-RADIUS / LAM0, RADIUS / LAM0, color="0.9")
    ax[3].set_xlabel("x / λ0 (y = 0)")
    ax[3].set_ylabel("|Ez|")
    ax[3].legend(fontsize=8)
    ax[3].set_title("cut through the centre")
    fig.suptitle(f"TM Mie, n = {INDEX}, radius λ0/2, 20 cells/λ in the cylinder: |Ez| rel L2 inside "
                 f"{100 * stair['err']:.2f}% staircased, {100 * sub['err']:.2f}% sub-pixel")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"staircased {stair['err']:.4f}, subpixel {sub['err']:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
