"""``pdesurrogate generate`` and ``pdesurrogate dataset info|show``: build and inspect datasets.

    pdesurrogate generate experiments/configs/acoustic_smoke.toml --out data/acoustic_smoke [--overwrite]
    pdesurrogate dataset info data/acoustic_smoke --json
    pdesurrogate dataset show data/acoustic_smoke --index 3 --out sample3.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from pdesurrogate.io import save_figure, subplots


def _generate(args: argparse.Namespace) -> int:
    import jax

    from training.data import generate, load_data_config
    from training.data.generate import default_workers

    config = load_data_config(args.config)
    if args.coordinator is not None or args.distributed:
        if args.coordinator is not None and (args.num_processes is None or args.process_id is None):
            raise ValueError("--coordinator needs --num-processes and --process-id")
        kwargs = {} if args.coordinator is None else {
            "coordinator_address": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}
        jax.distributed.initialize(**kwargs)
    workers = default_workers(config.num_samples) if args.workers is None else args.workers
    report = generate(config, args.out, overwrite=args.overwrite, progress=not args.quiet, workers=workers,
                      writers=args.writers)
    if args.json:
        print(json.dumps(report))
    return 0


def _info(args: argparse.Namespace) -> int:
    from training.data import open_dataset

    info = open_dataset(args.dir).info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{info['path']}: {info['scenario']}, {info['num_written']}/{info['num_samples']} samples, "
          f"{'complete' if info['complete'] else 'INCOMPLETE'}")
    print(f"  seed {info['seed']}, package {info['package_version']}, commit {info['git_commit']}")
    for name, meta in info["field_info"].items():
        stats = (info.get("stats") or {}).get(name)
        extra = f"  mean {stats['mean']:.4g} std {stats['std']:.4g}" if stats else ""
        print(f"  {name:<18} {str(tuple(meta['shape'])):<22} {meta['dtype']:<10} {meta['unit']}{extra}")
    if info.get("num_rare_lesion") is not None:
        print(f"  samples with a rare lesion: {info['num_rare_lesion']}")
    return 0


def _slice2d(a: np.ndarray) -> np.ndarray:
    """A 2D view: the middle slice along the trailing axes beyond two."""
    while a.ndim > 2:
        a = a[..., a.shape[-1] // 2]
    return a


def _show(args: argparse.Namespace) -> int:
    from training.data import open_dataset

    ds = open_dataset(args.dir)
    if not 0 <= args.index < len(ds):
        raise ValueError(f"--index must be in [0, {len(ds) - 1}], got {args.index}")
    sample = ds[args.index]
    panels: list[tuple[str, np.ndarray, str]] = []
    for name in ("sound_speed", "density", "refractive_index", "p0", "e0"):
        if name in sample:
            panels.append((f"{name} [{ds.fields[name].unit}]", _slice2d(sample[name]), "viridis"))
    if "lesion_mask" in sample:
        panels.append(("lesion_mask (labels)", _slice2d(sample["lesion_mask"]).astype(float), "magma"))
    for name in ("pressure", "ez"):  # stepper trajectories (acoustic, Maxwell TM)
        if name in sample:
            frames, unit = sample[name], ds.fields[name].unit
            for k in sorted({0, len(frames) // 2, len(frames) - 1}):
                panels.append((f"{name} frame {k} [{unit}]", _slice2d(frames[k]), "RdBu_r"))
    if "field" in sample:
        panels.append(("|Ez| angle 0", np.abs(sample["field"][0]), "inferno"))
        panels.append(("Re Ez angle 0", np.real(sample["field"][0]), "RdBu_r"))
    if "traces" in sample:
        traces = sample["traces"] if sample["traces"].ndim == 2 else sample["traces"][0]
        panels.append(("traces (time x element)", traces, "RdBu_r"))
    if "detector" in sample:
        panels.append(("|detector| (angle x point)", np.abs(sample["detector"]), "inferno"))
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (title, img, cmap) in zip(axes.ravel(), panels):
        ax.set_axis_on()
        if cmap == "RdBu_r":
            vmax = float(np.max(np.abs(img))) or 1.0
            im = ax.imshow(img, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto" if "traces" in title else "equal")
        else:
            im = ax.imshow(img, cmap=cmap, aspect="auto" if "detector" in title else "equal")
        if "lesion_mask" in sample and img.shape == _slice2d(sample["lesion_mask"]).shape and "lesion" not in title:
            mask = _slice2d(sample["lesion_mask"]) > 0
            if mask.any():
                ax.contour(mask, levels=[0.5], colors="w", linewidths=0.6)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{Path(args.dir).name} [{ds.manifest['scenario']}] sample {int(sample['index'])} "
                 f"(seed {int(sample['seed'])})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=110)
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
