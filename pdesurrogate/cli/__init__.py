"""The ``pdesurrogate`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``. Errors the user can fix (``ValueError``, file-system errors, a missing
key or an index out of range) print one line and exit with status 2; ``--traceback`` shows the
full stack instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules under pdesurrogate.cli that register subcommands, in --help order.
COMMAND_MODULES = ("info", "simulate", "data", "train", "evaluate", "calibrate", "invert", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="pdesurrogate",
        description="Differentiable wave solvers, datasets and neural surrogates for ultrasound and optics.",
    )
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"pdesurrogate.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError, KeyError, IndexError) as err:
        if args.traceback:
            raise
        if isinstance(err, OSError) and err.strerror:
            msg = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
        else:
            msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"pdesurrogate {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pdesurrogate {args.command}: interrupted", file=sys.stderr)
        return 130


