"""Outputs of an inversion: ``history.csv`` and figures (curves, image panels), written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogate.io import save_figure, subplots, write_text


def write_history_csv(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """One row per iteration; the columns are the union of the records' keys in first-seen order
    (a key missing from a record, e.g. ``centre_misfit``, leaves its cell empty)."""
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buf.getvalue())


def plot_curves(runs: dict[str, Sequence[dict[str, Any]]], path: str | Path) -> None:
    """Misfit and ``rel_error`` against iteration and against ``seconds``, one line per run.

    Args:
        runs: label -> history (e.g. ``{"solver": result.history}``).
        path: the PNG to write.
    """
    has_error = any("rel_error" in r for h in runs.values() for r in h)
    fig, axes = subplots(1, 3 if has_error else 1, figsize=(13 if has_error else 5, 3.8), squeeze=False)
    axes = axes[0]
    for label, history in runs.items():
        it = [r["iteration"] for r in history]
        axes[0].semilogy(it, [r["misfit"] for r in history], label=label)
        if has_error:
            axes[1].plot(it, [r.get("rel_error", np.nan) for r in history], label=label)
            axes[2].plot([r["seconds"] for r in history], [r.get("rel_error", np.nan) for r in history], label=label)
    axes[0].set(xlabel="iteration", ylabel="misfit", title="data misfit")
    if has_error:
        axes[1].set(xlabel="iteration", ylabel="rel_error", title="model error")
        axes[2].set(xlabel="seconds (compilation excluded)", ylabel="rel_error", title="model error against time")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_images(panels: dict[str, np.ndarray], path: str | Path, *, extent: Sequence[float] | None = None,
                shared: Sequence[str] = (), units: str = "") -> None:
    """Image panels side by side (first array axis vertical).

    Args:
        panels: title -> 2D array.
        path: the PNG to write.
        extent: ``(x0, x1, y0, y1)`` of every panel (e.g. in mm).
        shared: titles whose panels share one colour range (e.g. reconstruction and truth);
            the others get their own (an error map: symmetric about 0).
        units: colour-bar label.
    """
    shared_arrays = [np.asarray(panels[k]) for k in shared]
    lo = min(a.min() for a in shared_arrays) if shared_arrays else None
    hi = max(a.max() for a in shared_arrays) if shared_arrays else None
    fig, axes = subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, img) in zip(axes[0], panels.items()):
        img = np.asarray(img)
        if title in shared:
            kw = {"vmin": lo, "vmax": hi, "cmap": "viridis"}
        else:
            v = float(np.abs(img).max()) or 1.0
            kw = {"vmin": -v, "vmax": v, "cmap": "RdBu_r"}
        im = ax.imshow(img, origin="lower", extent=extent, **kw)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8, label=units)
    save_figure(fig, path)
