"""Gradient-based reconstruction: one loop, two modalities.

The modality-independent machinery lives here once:

- :mod:`~pdesurrogate.inversion.loop`: :func:`run` over :class:`Stage` s (frequency bands,
  forward-model switches), optax L-BFGS (zoom line search) and Adam, random item subsets, a
  preconditioning hook, per-iteration history, atomic checkpoint/resume, a progress bar;
- :mod:`~pdesurrogate.inversion.forward`: :class:`ForwardModel` (``predict(m, items) -> data``,
  tagged solver or surrogate) and :class:`Corrected`, the surrogate corrected to first order by the
  solver at a centre (hybrid data-domain correction);
- :mod:`~pdesurrogate.inversion.guarded`: :class:`GuardedForward`, the surrogate or the solver per
  iteration as a calibrated trust guard (:class:`pdesurrogate.trust.Guarded`) decides (guarded hybrid);
- :mod:`~pdesurrogate.inversion.regularization`: :class:`Bounds` (box projection, positivity) and
  :class:`TotalVariation` (smoothed isotropic TV);
- :mod:`~pdesurrogate.inversion.report`: ``history.csv`` and figures.

A modality module (``usct``; ``optics``) adds its ``Acquisition``, ``simulate``, forward models,
misfits and ``invert``, and a ``run_config(config, observed_path, out_dir)`` for
``pdesurrogate invert MODALITY`` (see :data:`MODALITIES`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# modality -> "module:function", the function (config: dict, observed_path, out_dir) -> dict summary
MODALITIES = {"usct": "pdesurrogate.inversion.usct:run_config", "optics": "pdesurrogate.inversion.optics:run_config"}

_LAZY = {"Bounds": "regularization", "TotalVariation": "regularization", "Corrected": "forward",
         "ForwardModel": "forward", "GuardedForward": "guarded", "guarded_forward": "guarded", "Centre": "loop",
         "InversionResult": "loop", "Stage": "loop", "run": "loop"}

__all__ = ["MODALITIES", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `pdesurrogate invert --help` starts without JAX.
    if name in _LAZY:
        return getattr(importlib.import_module(f"pdesurrogate.inversion.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pdesurrogate.inversion' has no attribute {name!r}")


def run_modality(modality: str, config: dict[str, Any], observed_path: str, out_dir: str) -> dict[str, Any]:
    """Run ``MODALITIES[modality]`` on a parsed config; ``ValueError`` for an unknown modality."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {sorted(MODALITIES)}, got {modality!r}")
    module, function = MODALITIES[modality].split(":")
    return getattr(importlib.import_module(module), function)(config, observed_path, out_dir)


def read_observed_npz(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """The arrays of a ``pdesurrogate invert`` observed-data file, by name; ``ValueError`` when the
    file is missing or lacks a ``required`` array (the message lists ``required`` and ``optional``)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"observed file not found: {path}")
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing}; it must hold {list(required)} (+ optional {list(optional)})")
    return data
