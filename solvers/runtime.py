"""A work-around for a deadlock in JAX 0.11's CPU runtime, applied when ``solvers`` is imported.

In JAX 0.11.x, XLA's CPU ``FftThunk`` runs on a worker of the intra-op Eigen thread pool and hands
that same pool to the FFT library, which fans out into it and waits: with every worker waiting, the
program never finishes (reported downstream as PyAutoLabs/PyAutoFit#1528 and #1530). Here it hung
the gradient of a ``pstd`` simulation at 256^2 and up on the CPU, with JAX 0.11.2 only (0.9.2,
0.10.2 and 0.12.0.1 are unaffected). ``--xla_cpu_multi_thread_eigen=false`` avoids it, at the cost
of single-threaded CPU FFTs and contractions. The flag is added to ``XLA_FLAGS`` only for JAX
0.11.x and only when the user has not set it either way. It takes effect only if no JAX backend
has started yet: import ``solvers`` (or ``pdesurrogate``) before running JAX computations, or set
the flag yourself. GPU computations are unaffected.
"""

from __future__ import annotations

import importlib.metadata
import os

FLAG = "--xla_cpu_multi_thread_eigen"


def xla_flags_for(jax_version: str, xla_flags: str) -> str | None:
    """The ``XLA_FLAGS`` value to set for ``jax_version``, or ``None`` to leave ``xla_flags`` alone."""
    if not jax_version.startswith("0.11.") or FLAG in xla_flags:
        return None
    return f"{xla_flags} {FLAG}=false".strip()


def apply() -> None:
    """Set ``XLA_FLAGS`` for the installed JAX (see the module docstring)."""
    try:
        version = importlib.metadata.version("jax")
    except importlib.metadata.PackageNotFoundError:
        return
    flags = xla_flags_for(version, os.environ.get("XLA_FLAGS", ""))
    if flags is not None:
        os.environ["XLA_FLAGS"] = flags
