"""Dataset fields -> the trainer's batch layout (see :mod:`training.losses`).

- ``"stepper"``: ``state`` ``(B, T, C, *spatial)`` = one scalar field then the components of one
  vector field that time reversal flips (:data:`STEPPER_STATES`), and ``medium`` ``(B, M, *spatial)``:

  - ``acoustic_stepper`` / ``photoacoustic``: channels ``[pressure, velocity_0, ..., velocity_{d-1}]``
    (velocity only if stored), medium ``[sound_speed, density]``;
  - ``maxwell_stepper`` (2D TM): channels ``[ez, h_x, h_y]`` (``h = eta0 * H``), medium ``[permittivity]``.

  :func:`reversal_signs` gives ``[+1, -1, ...]`` (acoustic ``(p, v) -> (p, -v)``, Maxwell ``(E, H) -> (E, -H)``).
- ``"field"`` (``optics`` datasets): ``medium`` ``(B, 1, *spatial)`` = ``[refractive_index]`` and
  ``field`` ``(B, n_angles, *spatial)`` complex phasors (one channel per illumination angle).
- ``"traces"`` (``usct`` datasets): ``medium`` ``(B, 2, *spatial)`` = ``[sound_speed, density]`` and
  ``traces`` ``(B, n_shots, nt, n_elements)`` (Pa; one entry per emitting element).

``task_stats`` turns the per-field normalisation statistics of the manifest into per-channel
lists under the same names (``state``, ``medium``, ``field``, ``traces``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

TASKS = ("stepper", "field", "traces")

# Stepper state families: (scalar field (T, *s), vector field (T, d, *s) flipped by time reversal, medium fields).
STEPPER_STATES = (
    ("pressure", "velocity", ("sound_speed", "density")),  # acoustic_stepper, photoacoustic
    ("ez", "h", ("permittivity",)),  # maxwell_stepper (2D TM: h = eta0 * (Hx, Hy))
)
_VECTOR_FIELDS = {vector for _, vector, _ in STEPPER_STATES}


def _stepper_family(fields: set[str] | dict) -> tuple[str, str, tuple[str, ...]]:
    for family in STEPPER_STATES:
        if family[0] in fields:
            return family
    raise ValueError(f"task 'stepper' needs one of the dataset fields {[f[0] for f in STEPPER_STATES]}; "
                     f"the dataset has {sorted(fields)}")


def task_layout(task: str, fields: set[str] | dict) -> dict[str, list[str]]:
    """Batch name -> the dataset fields stacked into its channel axis, in order.

    Args:
        task: one of :data:`TASKS`.
        fields: the dataset's (or a batch's) field names; they pick the stepper family.
    """
    if task == "stepper":
        scalar, vector, medium = _stepper_family(fields)
        return {"state": [scalar] + ([vector] if vector in fields else []), "medium": list(medium)}
    if task == "field":
        return {"medium": ["refractive_index"], "field": ["field"]}
    if task == "traces":
        return {"medium": ["sound_speed", "density"], "traces": ["traces"]}
    raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def task_fields(task: str, dataset_fields: set[str] | dict) -> list[str]:
    """The dataset fields a loader must read for ``task`` (pass them as ``Loader(fields=...)``)."""
    layout = task_layout(task, dataset_fields)
    needed = [f for names in layout.values() for f in names]
    missing = sorted(set(needed) - set(dataset_fields))
    if missing:
        raise ValueError(f"task {task!r} needs dataset fields {missing}; the dataset has {sorted(dataset_fields)}")
    return needed


def to_task_batch(batch: dict[str, Any], task: str) -> dict[str, Any]:
    """A loader batch ``{field: (B, ...)}`` in the trainer's layout (numpy or jax arrays alike).

    Stepper: ``pressure (B, T, *s)`` and ``velocity (B, T, d, *s)`` (or ``ez`` and ``h``) become
    ``state (B, T, 1 + d, *s)``.
    """
    if all(isinstance(v, np.ndarray) for v in batch.values()):
        xp = np
    else:
        import jax.numpy as xp
    layout = task_layout(task, batch)
    out: dict[str, Any] = {}
    if task == "stepper":
        scalar, *vector = layout["state"]
        s = batch[scalar][:, :, None]
        out["state"] = xp.concatenate([s, batch[vector[0]]], axis=2) if vector else s
    else:
        for name, sources in layout.items():
            if name != "medium":
                out[name] = batch[sources[0]]
    out["medium"] = xp.stack([batch[name] for name in layout["medium"]], axis=1)
    return out


def task_stats(stats: dict[str, dict[str, Any]], task: str, ndim: int) -> dict[str, dict[str, list[float]]]:
    """Per-channel ``{"mean": [...], "std": [...]}`` for each batch name of ``task``.

    Args:
        stats: ``loader.stats`` (per dataset field).
        task: one of :data:`TASKS`.
        ndim: spatial dimensions (vector-field channels of the stepper state: velocity or H).
    """
    layout = task_layout(task, stats)
    out = {}
    for name, sources in layout.items():
        means: list[float] = []
        stds: list[float] = []
        for f in sources:
            repeat = ndim if f in _VECTOR_FIELDS else 1
            means += [float(stats[f]["mean"])] * repeat
            stds += [float(stats[f]["std"])] * repeat
        out[name] = {"mean": means, "std": stds}
    for name in ("field", "traces"):  # complex phasors / zero-mean waves: scale only
        if name in out:
            out[name] = {"mean": [0.0], "std": [float(stats[name]["std"])]}
    return out


def reversal_signs(dataset_fields: set[str] | dict, ndim: int) -> list[float]:
    """Time-reversal signs of the stepper state channels: the scalar (pressure or Ez) +1, each
    vector component (velocity or H) -1."""
    _, vector, _ = _stepper_family(dataset_fields)
    return [1.0] + ([-1.0] * ndim if vector in dataset_fields else [])
