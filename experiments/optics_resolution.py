"""FDTD discretisation error of the optics data against a 2x finer grid, by grid spacing.

    uv run python experiments/optics_resolution.py            # 128^2 (the GPU data's grid)
    uv run python experiments/optics_resolution.py --small    # 64^2, seconds

For each spacing, the ``maxwell_field_128`` data config with that spacing (the phantoms scale with
the domain) runs the ``optics`` scenario's per-angle FDTD on the data grid and on a 2x finer one
(:func:`training.data.scenarios.optics_runs`). The table gives the median relative L2 between the
two, outside the absorbing layer, for ``--samples`` phantoms and for water alone. That error is a
floor for any surrogate trained on the data: a surrogate cannot come closer to the converged field
than its data. Writes ``experiments/results/optics_resolution_<backend>[_small].{md,json}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pdesurrogate.config import load_toml  # noqa: E402
from pdesurrogate.evaluation.metrics import relative_l2  # noqa: E402
from training.data import phantoms, scenarios  # noqa: E402
from training.data.config import effective, parse_data_config  # noqa: E402
from training.physics import edge_mask  # noqa: E402

SPACINGS = (4e-8, 2.5e-8, 2e-8, 1.6e-8)


def errors(data: dict, spacing: float, samples: int) -> dict[str, float]:
    """Median rel L2 of the data-grid phasors against the 2x finer grid's: phantoms and water."""
    cfg = effective(parse_data_config(data | {"spacing": spacing}))
    media = np.stack([phantoms.phantom(cfg, cfg.seed, i).medium["refractive_index"] for i in range(samples)])
    media = jnp.asarray(np.concatenate([media, np.full((1, *cfg.shape), phantoms.WATER_INDEX, np.float32)]))
    coarse, fine = (jax.jit(jax.vmap(lambda n, r=r: scenarios.optics_runs(cfg, r)(n)[0])) for r in (1, 2))
    mask = edge_mask(tuple(cfg.shape), cfg.optics.pml_size).astype(bool)
    a, b = np.asarray(coarse(media)), np.asarray(fine(media))
    e = relative_l2(np.where(mask, a, 0), np.where(mask, b, 0))
    return {"spacing_m": spacing, "cells_per_wavelength_in_water": cfg.optics.wavelength / phantoms.WATER_INDEX / spacing,
            "phantoms_median_rel_l2": float(np.median(e[:-1])), "phantoms_max_rel_l2": float(np.max(e[:-1])),
            "water_rel_l2": float(e[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="64^2 instead of 128^2")
    ap.add_argument("--samples", type=int, default=2, help="phantoms per spacing (default 2)")
    ap.add_argument("--angles", type=int, default=2, help="illuminations per phantom (default 2: 0 and 180 degrees)")
    ap.add_argument("--results", default=str(REPO / "experiments" / "results"))
    args = ap.parse_args(argv)
    if args.samples < 1 or args.angles < 1:
        raise SystemExit("--samples and --angles must be >= 1")
    data = copy.deepcopy(load_toml(REPO / "experiments" / "configs" / "maxwell_field_128.toml")["data"])
    data["optics"] |= {"n_angles": args.angles}
    if args.small:
        data["shape"] = [64, 64]
    t0 = time.perf_counter()
    rows = []
    for h in SPACINGS:
        rows.append(errors(data, h, args.samples))
        r = rows[-1]
        print(f"spacing {h:.3g} m ({r['cells_per_wavelength_in_water']:.1f} cells/wavelength): "
              f"phantoms {r['phantoms_median_rel_l2']:.4f}, water {r['water_rel_l2']:.4f}", flush=True)
    backend = jax.default_backend()
    label = f"{backend}{'_small' if args.small else ''}"
    result = {"label": label, "device": f"{backend} {jax.devices()[0].device_kind}", "shape": data["shape"],
              "samples": args.samples, "angles": args.angles, "rows": rows, "wall_s": time.perf_counter() - t0,
              "command": "uv run python experiments/optics_resolution.py" + (" --small" if args.small else "")}
    lines = [f"# Optics data: FDTD error against a 2x finer grid ({label}, {result['device']})", "",
             f"Grid {data['shape'][0]}x{data['shape'][1]}, {args.samples} cell phantoms x {args.angles} "
             f"illuminations, median rel L2 of the phasors outside the absorbing layer. Command: "
             f"`{result['command']}`.", "",
             "| spacing (nm) | cells per wavelength in water | phantoms median | phantoms max | water |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['spacing_m'] * 1e9:.0f} | {r['cells_per_wavelength_in_water']:.1f} | "
              f"{r['phantoms_median_rel_l2']:.4f} | {r['phantoms_max_rel_l2']:.4f} | {r['water_rel_l2']:.4f} |"
              for r in rows]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"optics_resolution_{label}.json").write_text(json.dumps(result, indent=1))
    (out / f"optics_resolution_{label}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
