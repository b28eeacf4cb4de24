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


def summary(result: dict) -> str:
    """A few lines: median / p95 / p99 / max of the surrogate and the baseline, rollout end, speed."""
    r, b = result["rel_l2"], result["baseline_rel_l2"]
    lines = [f"{'':22s}{'median':>10s}{'p95':>10s}{'p99':>10s}{'max':>10s}",
             f"{'surrogate rel L2':22s}" + "".join(f"{r[k]:10.4g}" for k in ("median", "p95", "p99", "max")),
             f"{'baseline rel L2':22s}" + "".join(f"{b[k]:10.4g}" for k in ("median", "p95", "p99", "max"))]
    for name, split in result.get("splits", {}).items():
        s = split["rel_l2"]
        lines.append(f"{('[' + name + ']')[:22]:22s}" + "".join(f"{s[k]:10.4g}" for k in ("median", "p95", "p99", "max")))
    if "rollout" in result:
        ro = result["rollout"]
        lines.append(f"rollout: median rel L2 after {ro['steps'][-1]} macro steps {ro['median'][-1]:.4g} "
                     f"(persistence {result['baseline_rollout']['median'][-1]:.4g})")
    sp = result.get("speed")
    if sp:
        parts = [f"{k} x{sp[k]['ratio']:.3g}" for k in ("forward", "forward_gradient") if k in sp]
        lines.append(f"speed vs solver ({sp['platform']}, batch {sp['batch']}; >1 = surrogate faster): " + ", ".join(parts))
    return "\n".join(lines)


def handler(args: argparse.Namespace) -> int:
    from training.evaluation import evaluate_run
    from pdesurrogate.io import write_json

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
