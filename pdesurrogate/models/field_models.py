"""The field models of the registry, and the one builder every model config goes through.

A field model maps one sample ``(C_in, *spatial)`` to ``(C_out, *spatial)``; it is both a
surrogate network on its own and the backbone of a :class:`~.traces.TraceNet`, which is why this
table sits below both :mod:`.registry` and :mod:`.traces` (neither imports the other).
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from .ffno import FFNO
from .fno import FNO
from .unet import UNet

FIELD_MODELS: dict[str, type[nnx.Module]] = {"fno": FNO, "ffno": FFNO, "unet": UNet}


def build_from(kinds: dict[str, type[nnx.Module]], config: dict[str, Any]) -> nnx.Module:
    """Construct ``kinds[config["kind"]](**rest of config)``; an unknown kind or bad kwargs -> ValueError."""
    if not isinstance(config, dict) or "kind" not in config:
        raise ValueError(f"model config must be a dict with a 'kind' in {sorted(kinds)}, got {config!r}")
    kwargs = dict(config)
    kind = kwargs.pop("kind")
    if kind not in kinds:
        raise ValueError(f"model kind must be one of {sorted(kinds)}, got {kind!r}")
    try:
        return kinds[kind](**kwargs)
    except TypeError as err:
        raise ValueError(f"invalid arguments for model kind {kind!r}: {err}") from None


def build_field_model(config: dict[str, Any]) -> nnx.Module:
    """A field model (``fno``, ``ffno`` or ``unet``) from ``{"kind": ..., **kwargs}``."""
    return build_from(FIELD_MODELS, config)
