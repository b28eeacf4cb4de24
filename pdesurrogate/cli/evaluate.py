"""``pdesurrogate evaluate RUN --data DIR [--extra-data DIR ...] --json OUT.json``.

Evaluates a trained surrogate (``pdesurrogate train`` output) against the reference solver's data
with :func:`training.evaluation.evaluate_run`: per-sample error distributions, rollout error,
trivial baselines, frequency bands, lesion regions, extra test sets (rare-lesion, OOD) and speed
against the solver. Writes the JSON to ``--json`` and the markdown report and PNGs to ``--report``
(default ``RUN/evaluation``), and prints a short table.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate.io import write_json
    from training.evaluation import evaluate_run, summary

    result = evaluate_run(args.run, [args.data, *(args.extra_data or [])], args.report,
                          checkpoint=args.checkpoint, max_samples=args.max_samples, speed=not args.no_speed)
    write_json(args.json, result)
    print(summary(result))
    print(f"wrote {args.json} and {Path(args.report) if args.report else Path(args.run) / 'evaluation'}/evaluation.md")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained surrogate against the reference solver's data")
    p.add_argument("run", help="training run directory (pdesurrogate train --out)")
    p.add_argument("--data", required=True, help="test dataset (the training dataset: its held-out test split)")
    p.add_argument("--extra-data", action="append", metavar="DIR",
                   help="extra test set reported separately (rare-lesion, OOD); repeatable")
    p.add_argument("--json", required=True, help="output JSON file")
    p.add_argument("--report", default=None, help="directory for evaluation.md and PNGs (default RUN/evaluation)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate at most this many samples per dataset")
    p.add_argument("--no-speed", action="store_true", help="skip the speed comparison with the solver")
    p.set_defaults(handler=handler)
