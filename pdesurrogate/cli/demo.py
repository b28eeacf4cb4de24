"""``pdesurrogate demo``: the embedded end-to-end default, small enough for a laptop CPU.

It simulates an ultrasound computed-tomography shot: a breast-like phantom (fat, glandular
tissue, a cyst and a tumour) inside a 64-element ring array, one element firing a 1 MHz tone burst,
every element recording. It writes the traces, the final field, the config and a PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_CONFIG = {
    "grid": {"shape": [128, 128], "spacing": 2.5e-4},
    "medium": {"phantom": "breast", "seed": 0},
    "array": {"n_elements": 64},
    "source": {"kind": "element", "element": 0, "signal": "tone_burst", "frequency": 1.0e6, "cycles": 3.0},
    "simulation": {"scheme": "pstd", "pml_size": 20, "cfl": 0.3},
}


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.cli.simulate import simulate_acoustic

    simulate_acoustic(DEMO_CONFIG, Path(args.out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the embedded end-to-end default (small, CPU-friendly)")
    p.add_argument("--out", default="demo_output", help="output directory (default: demo_output)")
    p.set_defaults(handler=handler)
