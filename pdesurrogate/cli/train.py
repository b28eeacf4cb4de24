"""``pdesurrogate train CONFIG.toml --data DIR --out RUN``: train a surrogate on a dataset.

Calls :func:`training.run.train_run`: the ``[model]`` and ``[train]`` sections of the experiment
TOML configure the network and the optimisation; the dataset fixes the surrogate kind
(:mod:`training.tasks`). ``[train] members = K`` trains a deep ensemble of K seeds into
``RUN/members/<k>`` (:func:`training.ensemble.train_members`; :class:`pdesurrogate.trust.Ensemble`
loads it). A killed run resumes with the same command (``--resume``, the default).
"""

from __future__ import annotations

import argparse


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.config import load_toml
    from training.ensemble import train_members
    from training.run import train_run

    toml = load_toml(args.config)
    if isinstance(toml.get("train"), dict) and toml["train"].get("members", 1) != 1:  # [train] members = K
        for run_dir in train_members(toml, args.data, args.out, resume=args.resume, steps=args.steps,
                                     progress=not args.quiet):
            print(f"trained ensemble member -> {run_dir}")
        return 0
    result = train_run(toml, args.data, args.out, resume=args.resume, steps=args.steps, progress=not args.quiet)
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
