"""The package version, installed or run from a source checkout."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_version() -> str | None:
    """The installed ``pdesurrogate`` distribution's version or, from a checkout on ``PYTHONPATH``
    without an install (as on the GPU host), the version in its ``pyproject.toml``; ``None`` if
    neither is found."""
    try:
        return importlib.metadata.version("pdesurrogate")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads(_PYPROJECT.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    return str(project["version"]) if project.get("name") == "pdesurrogate" and "version" in project else None
