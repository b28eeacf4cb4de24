"""Atomic file outputs: a reader never sees a half-written file, even after a SIGKILL.

Each writer writes to a temporary file in the target directory, flushes it to disk, then renames
it over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is moved onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    tmp.touch(exist_ok=False)  # created with the usual umask permissions (mkstemp would give 0600)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Atomically write arrays to a compressed ``.npz`` file."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes(path, buf.getvalue())


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` like ``pyplot.subplots``, but a standalone ``matplotlib.figure.Figure``.

    Library figures never touch pyplot's global state or backend, so they work headless and
    leave notebooks' inline plotting alone. ``kwargs`` go to ``Figure`` (``figsize``) or to
    ``Figure.subplots`` (``squeeze``, ``sharex``, ...).
    """
    from matplotlib.figure import Figure

    fig_keys = {"figsize", "dpi", "layout"}
    fig = Figure(**{k: v for k, v in kwargs.items() if k in fig_keys})
    return fig, fig.subplots(nrows, ncols, **{k: v for k, v in kwargs.items() if k not in fig_keys})


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """Atomically save a matplotlib figure as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buf.getvalue())
