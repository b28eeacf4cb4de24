"""``pdesurrogate simulate {acoustic,maxwell} CONFIG.toml --out DIR``: one reference-solver run.

Calls :func:`training.simulation.simulate_acoustic` or :func:`training.simulation.simulate_maxwell`,
which validate the config, run the solver and write the result arrays, ``config.toml`` (the
complete config as used, defaults filled in) and a PNG into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.config import load_toml
    from training.simulation import SIMULATIONS

    SIMULATIONS[args.physics](load_toml(args.config), Path(args.out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a reference solver from a TOML config")
    p.add_argument("physics", choices=("acoustic", "maxwell"), help="which solver")
    p.add_argument("config", help="TOML config file")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=handler)
