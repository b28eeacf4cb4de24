"""Human-readable views of a dataset (``pdesurrogate dataset info|show``).

- :func:`describe`: a few lines from :meth:`training.data.Dataset.info`;
- :func:`sample_figure`: the medium, fields and traces of one sample in one figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pdesurrogate.io import subplots


def describe(info: dict[str, Any]) -> str:
    """Path, scenario, completion, seed, provenance and one line per field (shape, dtype, unit,
    mean and std) of a dataset's ``info()``."""
    lines = [f"{info['path']}: {info['scenario']}, {info['num_written']}/{info['num_samples']} samples, "
             f"{'complete' if info['complete'] else 'INCOMPLETE'}",
             f"  seed {info['seed']}, package {info['package_version']}, commit {info['git_commit']}"]
    for name, meta in info["field_info"].items():
        stats = (info.get("stats") or {}).get(name)
        extra = f"  mean {stats['mean']:.4g} std {stats['std']:.4g}" if stats else ""
        lines.append(f"  {name:<18} {str(tuple(meta['shape'])):<22} {meta['dtype']:<10} {meta['unit']}{extra}")
    if info.get("num_rare_lesion") is not None:
        lines.append(f"  samples with a rare lesion: {info['num_rare_lesion']}")
    return "\n".join(lines)


def _slice2d(a: np.ndarray) -> np.ndarray:
    """A 2D view: the middle slice along the trailing axes beyond two."""
    while a.ndim > 2:
        a = a[..., a.shape[-1] // 2]
    return a


def _panels(ds: Any, sample: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray, str]]:
    """``(title, 2D image, colormap)`` of every field of ``sample`` worth drawing."""
    panels: list[tuple[str, np.ndarray, str]] = []
    for name in ("sound_speed", "density", "refractive_index", "p0", "e0"):
        if name in sample:
            panels.append((f"{name} [{ds.fields[name].unit}]", _slice2d(sample[name]), "viridis"))
    if "lesion_mask" in sample:
        panels.append(("lesion_mask (labels)", _slice2d(sample["lesion_mask"]).astype(float), "magma"))
    for name in ("pressure", "ez"):  # stepper trajectories (acoustic, Maxwell TM)
        if name in sample:
            frames, unit = sample[name], ds.fields[name].unit
            for k in sorted({0, len(frames) // 2, len(frames) - 1}):
                panels.append((f"{name} frame {k} [{unit}]", _slice2d(frames[k]), "RdBu_r"))
    if "field" in sample:
        panels.append(("|Ez| angle 0", np.abs(sample["field"][0]), "inferno"))
        panels.append(("Re Ez angle 0", np.real(sample["field"][0]), "RdBu_r"))
    if "traces" in sample:
        traces = sample["traces"] if sample["traces"].ndim == 2 else sample["traces"][0]
        panels.append(("traces (time x element)", traces, "RdBu_r"))
    if "detector" in sample:
        panels.append(("|detector| (angle x point)", np.abs(sample["detector"]), "inferno"))
    return panels


def sample_figure(ds: Any, index: int) -> Any:
    """A matplotlib figure of sample ``index`` of dataset ``ds``: media, initial fields, lesion
    outlines, trajectory frames, phasors and traces (3D fields: their middle slices)."""
    if not 0 <= index < len(ds):
        raise ValueError(f"index must be in [0, {len(ds) - 1}], got {index}")
    sample = ds[index]
    panels = _panels(ds, sample)
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (title, img, cmap) in zip(axes.ravel(), panels):
        ax.set_axis_on()
        if cmap == "RdBu_r":
            vmax = float(np.max(np.abs(img))) or 1.0
            im = ax.imshow(img, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto" if "traces" in title else "equal")
        else:
            im = ax.imshow(img, cmap=cmap, aspect="auto" if "detector" in title else "equal")
        if "lesion_mask" in sample and img.shape == _slice2d(sample["lesion_mask"]).shape and "lesion" not in title:
            mask = _slice2d(sample["lesion_mask"]) > 0
            if mask.any():
                ax.contour(mask, levels=[0.5], colors="w", linewidths=0.6)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{Path(ds.path).name} [{ds.manifest['scenario']}] sample {int(sample['index'])} "
                 f"(seed {int(sample['seed'])})", fontsize=9)
    fig.tight_layout()
    return fig
