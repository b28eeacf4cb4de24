"""``pdesurrogate calibrate RUN --data DIR [--alpha 0.1] [--tolerance T] [--test DIR ...]``.

Calibrates a run's conformal error bound, tolerance and shift monitor on a dataset with
:func:`pdesurrogate.trust.calibrate` (saved as ``RUN/trust.json``), then prints the trust figures of
each ``--test`` set (:func:`pdesurrogate.trust.assess`).
"""

from __future__ import annotations

import argparse


def handler(args: argparse.Namespace) -> int:
    from pdesurrogate import trust

    cal = trust.calibrate(args.run, args.data, args.alpha, tolerance=args.tolerance, max_samples=args.max_samples)
    print(f"calibrated {args.run} on {cal.info['n_conformal']} + {cal.info['n_fit']} samples: bound = "
          f"{cal.quantile:.4g} x predicted error ({', '.join(cal.names)}), tolerance {cal.tolerance:.4g} "
          f"-> {args.run}/trust.json")
    if args.test:
        print(trust.markdown_table(trust.assess_sets(args.run, args.test, calibration=cal,
                                                     max_samples=args.max_samples)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="calibrate a run's error bound and shift monitor (RUN/trust.json)")
    p.add_argument("run", help="training run directory (a field or trace operator, or an ensemble run)")
    p.add_argument("--data", required=True, help="calibration dataset (the run's own: its validation split)")
    p.add_argument("--alpha", type=float, default=0.1, help="miscoverage of the bound (default 0.1)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="acceptable relative L2 error (default: the calibration errors' 1 - alpha quantile)")
    p.add_argument("--test", action="append", metavar="DIR", help="test set to assess after calibrating; repeatable")
    p.add_argument("--max-samples", type=int, default=None, help="use at most this many samples per dataset")
    p.set_defaults(handler=handler)
