"""pdesurrogate."""

from __future__ import annotations

from typing import Any

__all__ = ["FieldOperator", "Surrogate", "TraceOperator", "load"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `pdesurrogate --help` and light subcommands start without JAX.
    if name in __all__:
        from pdesurrogate import surrogate

        return getattr(surrogate, name)
    raise AttributeError(f"module 'pdesurrogate' has no attribute {name!r}")
