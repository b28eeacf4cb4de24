"""``pdesurrogate invert MODALITY CONFIG.toml --observed OBS.npz --out DIR``: reconstruct a medium.

The modality's ``run_config`` (see :data:`pdesurrogate.inversion.MODALITIES`) reads the observed
data and writes the reconstruction, ``history.csv``, figures and ``report.md`` into ``DIR``.
"""

from __future__ import annotations

import argparse
import json

from pdesurrogate.inversion import MODALITIES, run_modality


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.config import load_toml

    summary = run_modality(args.modality, load_toml(args.config), args.observed, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="reconstruct a medium from observed data (full-waveform inversion)")
    p.add_argument("modality", choices=sorted(MODALITIES), help="imaging modality")
    p.add_argument("config", help="TOML file of inversion options")
    p.add_argument("--observed", required=True, help=".npz with the observed data and the acquisition")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=handler)
