"""``pdesurrogate generate`` and ``pdesurrogate dataset info|show``: build and inspect datasets.

    pdesurrogate generate experiments/configs/acoustic_smoke.toml --out data/acoustic_smoke [--overwrite]
    pdesurrogate dataset info data/acoustic_smoke --json
    pdesurrogate dataset show data/acoustic_smoke --index 3 --out sample3.png
"""

from __future__ import annotations

import argparse
import json


def _generate(args: argparse.Namespace) -> int:
    from training.data.generate import generate_from_file

    if args.coordinator is not None and (args.num_processes is None or args.process_id is None):
        raise ValueError("--coordinator needs --num-processes and --process-id")
    distributed = {} if args.distributed else None  # {}: cluster auto-detection
    if args.coordinator is not None:
        distributed = {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
                       "process_id": args.process_id}
    report = generate_from_file(args.config, args.out, overwrite=args.overwrite, progress=not args.quiet,
                                workers=args.workers, writers=args.writers, distributed=distributed)
    if args.json:
        print(json.dumps(report))
    return 0


def _info(args: argparse.Namespace) -> int:
    from training.data import open_dataset
    from training.data.report import describe

    info = open_dataset(args.dir).info()
    print(json.dumps(info, indent=1) if args.json else describe(info))
    return 0


def _show(args: argparse.Namespace) -> int:
    from pdesurrogate.io import save_figure
    from training.data import open_dataset
    from training.data.report import sample_figure

    save_figure(sample_figure(open_dataset(args.dir), args.index), args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="generate (or resume) a dataset from a config's [data] section")
    g.add_argument("config", help="experiment TOML with a [data] section")
    g.add_argument("--out", required=True, help="dataset directory")
    g.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the generation report as JSON")
    g.add_argument("--workers", type=int, default=None,
                   help="host processes building phantoms ahead of the device (default: auto, 0 for "
                        "datasets under 256 samples)")
    g.add_argument("--writers", type=int, default=None,
                   help="threads writing finished batches (default: one per 4 CPU cores, 1 to 4)")
    g.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() with cluster auto-detection (SLURM, TPU, ...)")
    g.add_argument("--coordinator", help="jax.distributed coordinator address host:port")
    g.add_argument("--num-processes", type=int, help="jax.distributed process count")
    g.add_argument("--process-id", type=int, help="jax.distributed process index")
    g.set_defaults(handler=_generate)

    d = sub.add_parser("dataset", help="inspect a dataset directory")
    dsub = d.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    i = dsub.add_parser("info", help="summary: samples, completion, config, fields")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(handler=_info)
    s = dsub.add_parser("show", help="draw the medium, fields and traces of one sample")
    s.add_argument("dir")
    s.add_argument("--index", type=int, default=0)
    s.add_argument("--out", required=True, help="image file (png, pdf, ...)")
    s.set_defaults(handler=_show)
