"""``pdesurrogate train CONFIG.toml --data DIR --out RUN``: train a surrogate on a dataset.

Calls :func:`training.run.train_run`: the ``[model]`` and ``[train]`` sections of the experiment
TOML configure the network and the optimisation; the dataset fixes the surrogate kind
(:mod:`training.tasks`). A killed run resumes with the same command (``--resume``, the default).
"""

from __future__ import annotations

import argparse


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.config import load_toml
    from training.run import train_run

    result = train_run(load_toml(args.config), args.data, args.out, resume=args.resume, steps=args.steps,
                       progress=not args.quiet)
    best = "n/a" if result.best_val is None else f"{result.best_val:.4g}"
    print(f"trained {result.step} steps -> {result.run_dir} (best validation loss {best}, "
          f"non-finite steps {result.nan_events})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a surrogate ([model] and [train] of CONFIG) on a dataset")
    p.add_argument("config", help="experiment TOML with [model] and [train] sections")
    p.add_argument("--data", required=True, help="dataset directory (pdesurrogate generate output)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, plots, surrogate.json)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the newest checkpoint in --out (default: on)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handler)
