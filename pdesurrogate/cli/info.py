"""``pdesurrogate info``: JAX version, backend, devices and key package versions."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform

PACKAGES = ("pdesurrogate", "jax", "jaxlib", "equinox", "flax", "optax", "orbax-checkpoint",
            "tensorstore", "numpy", "jwave", "jaxdf", "odtbrain", "matplotlib")


def collect() -> dict:
    """Environment facts as a JSON-compatible dict."""
    import jax

    from pdesurrogate.version import package_version

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = package_version() if name == "pdesurrogate" else None
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "x64": bool(jax.config.read("jax_enable_x64")),
        "packages": versions,
    }


def handler(args: argparse.Namespace) -> int:
    facts = collect()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"python   {facts['python']}")
    print(f"jax      {facts['jax']}  backend={facts['backend']}  x64={facts['x64']}")
    print(f"devices  {', '.join(facts['devices'])}  (processes: {facts['process_count']})")
    for name, ver in facts["packages"].items():
        print(f"  {name:<18} {ver or 'not installed'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="JAX version, backend, devices and package versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=handler)
