"""``pdesurrogate demo``: the embedded end-to-end default (:func:`training.demo.run_demo`).

Simulates a USCT shot, generates a small acoustic stepper dataset, trains a small FNO stepper
on it and evaluates it against the solver, then reconstructs a cell by optical diffraction
tomography with FDTD, a field operator trained on the spot and Rytov, all into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def handler(args: argparse.Namespace) -> int:
    from training.demo import run_demo

    run_demo(Path(args.out), steps=args.steps, simulate=not args.skip_simulation,
             reconstruct=not args.skip_reconstruction, progress=not args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the embedded end-to-end default (small, CPU-friendly)")
    p.add_argument("--out", default="demo_output", help="output directory (default: demo_output)")
    p.add_argument("--steps", type=int, default=None,
                   help="override both trainings' steps (default 300 for both)")
    p.add_argument("--skip-simulation", action="store_true", help="skip step 0 (the USCT shot)")
    p.add_argument("--skip-reconstruction", action="store_true",
                   help="skip step 4 (the optical reconstruction)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=handler)
