"""Dataset fields -> the trainer's batch layout (see :mod:`training.losses`).

- ``"stepper"`` (``acoustic_stepper`` / ``photoacoustic`` datasets): ``state`` ``(B, T, C, *spatial)``
  with channels ``[pressure, velocity_0, ..., velocity_{d-1}]`` (velocity only if stored) and
  ``medium`` ``(B, 2, *spatial)`` = ``[sound_speed, density]``. Time reversal flips the velocity:
  :func:`reversal_signs` gives ``[+1, -1, ...]``.
- ``"field"`` (``optics`` datasets): ``medium`` ``(B, 1, *spatial)`` = ``[refractive_index]`` and
  ``field`` ``(B, n_angles, *spatial)`` complex phasors (one channel per illumination angle).

``task_stats`` turns the per-field normalisation statistics of the manifest into per-channel
lists under the same names (``state``, ``medium``, ``field``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

TASKS = ("stepper", "field")


def _layout(task: str, fields: set[str] | dict) -> dict[str, list[str]]:
    """Batch name -> the dataset fields stacked into its channel axis, in order."""
    if task == "stepper":
        state = ["pressure"] + (["velocity"] if "velocity" in fields else [])
        return {"state": state, "medium": ["sound_speed", "density"]}
    if task == "field":
        return {"medium": ["refractive_index"], "field": ["field"]}
    raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def task_fields(task: str, dataset_fields: set[str] | dict) -> list[str]:
    """The dataset fields a loader must read for ``task`` (pass them as ``Loader(fields=...)``)."""
    layout = _layout(task, dataset_fields)
    needed = [f for names in layout.values() for f in names]
    missing = sorted(set(needed) - set(dataset_fields))
    if missing:
        raise ValueError(f"task {task!r} needs dataset fields {missing}; the dataset has {sorted(dataset_fields)}")
    return needed


def to_task_batch(batch: dict[str, Any], task: str) -> dict[str, Any]:
    """A loader batch ``{field: (B, ...)}`` in the trainer's layout (numpy or jax arrays alike).

    Stepper: ``pressure (B, T, *s)`` and ``velocity (B, T, d, *s)`` become ``state (B, T, 1 + d, *s)``.
    """
    if all(isinstance(v, np.ndarray) for v in batch.values()):
        xp = np
    else:
        import jax.numpy as xp
    layout = _layout(task, batch)
    out: dict[str, Any] = {}
    if task == "stepper":
        p = batch["pressure"][:, :, None]
        out["state"] = xp.concatenate([p, batch["velocity"]], axis=2) if "velocity" in batch else p
    else:
        out["field"] = batch["field"]
    out["medium"] = xp.stack([batch[name] for name in layout["medium"]], axis=1)
    return out


def task_stats(stats: dict[str, dict[str, Any]], task: str, ndim: int) -> dict[str, dict[str, list[float]]]:
    """Per-channel ``{"mean": [...], "std": [...]}`` for each batch name of ``task``.

    Args:
        stats: ``loader.stats`` (per dataset field).
        task: ``"stepper"`` or ``"field"``.
        ndim: spatial dimensions (velocity channels of the stepper state).
    """
    layout = _layout(task, stats)
    out = {}
    for name, sources in layout.items():
        means: list[float] = []
        stds: list[float] = []
        for f in sources:
            repeat = ndim if f == "velocity" else 1
            means += [float(stats[f]["mean"])] * repeat
            stds += [float(stats[f]["std"])] * repeat
        out[name] = {"mean": means, "std": stds}
    if task == "field":
        out["field"] = {"mean": [0.0], "std": [float(stats["field"]["std"])]}  # complex: scale only
    return out


def reversal_signs(dataset_fields: set[str] | dict, ndim: int) -> list[float]:
    """Time-reversal signs of the stepper state channels: pressure +1, each velocity component -1."""
    return [1.0] + ([-1.0] * ndim if "velocity" in dataset_fields else [])
