"""On-disk datasets: chunked, compressed zarr v3 arrays (via tensorstore) plus a JSON manifest.

Layout of a dataset directory::

    DIR/manifest.json           config, fingerprint, package version, git commit, seeds,
                                fields (shape, dtype, unit), completion, statistics
    DIR/fields/<name>/          one zarr v3 array per field, shape (num_samples, *field_shape),
                                zstd-compressed, chunked along the sample axis
    DIR/done/b<batch>.json      one marker per written batch: its sample range and per-sample stats

Samples are written in batches aligned to a global grid (batch ``b`` holds samples
``[b * batch_size, (b + 1) * batch_size)``), and no chunk spans two batches, so every batch is
written by exactly one writer. A batch counts as written only once its marker exists, and the
marker is written (temporary file + ``os.replace``) after every chunk write of the batch has
completed. A process killed at any moment therefore leaves whole batches with markers and at most
some orphan chunks without one; a rerun regenerates exactly the batches without a marker,
deterministically, so the resumed dataset equals an uninterrupted one sample for sample.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from pdesurrogate.config import with_defaults
from pdesurrogate.io import write_text
from pdesurrogate.version import package_version
from training.data.config import DataConfig, config_dict, fingerprint, parse_data_config

FORMAT = "pdesurrogate-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK_BYTES = 4 << 20  # small fields share one chunk per batch up to this size
CACHE_BYTES = 256 << 20  # decoded-chunk cache per opened dataset


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One stored per-sample array: shape (without the sample axis), numpy dtype name, unit, meaning."""

    shape: tuple[int, ...]
    dtype: str
    unit: str = ""
    doc: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "unit": self.unit, "doc": self.doc}

    @staticmethod
    def from_json(d: dict[str, Any]) -> FieldSpec:
        return FieldSpec(tuple(d["shape"]), d["dtype"], d.get("unit", ""), d.get("doc", ""))


def chunk_samples(spec: FieldSpec, batch_size: int) -> int:
    """Samples per chunk: a whole batch for small fields, one sample for large ones."""
    nbytes = math.prod(spec.shape) * np.dtype(spec.dtype).itemsize
    return batch_size if nbytes * batch_size <= CHUNK_BYTES else 1


def git_commit() -> str | None:
    """The git commit of the source tree this package runs from (``"<sha>-dirty"`` when tracked
    files differ from it), or ``None`` outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=here, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")


def _array_spec(path: Path, num_samples: int, spec: FieldSpec, chunk: int, level: int) -> dict[str, Any]:
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if level > 0:
        codecs.append({"name": "zstd", "configuration": {"level": level}})
    return {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "shape": [num_samples, *spec.shape],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk, *spec.shape]}},
            "data_type": spec.dtype,
            "codecs": codecs,
        },
    }


def batch_stats(values: np.ndarray) -> list[list[float]]:
    """Per-sample statistics ``[mean, std, min, max]`` of a batch ``(n, ...)``, accumulated in
    float64; complex fields use the magnitude."""
    v = np.abs(values) if np.iscomplexobj(values) else values
    v = v.reshape(len(v), -1)
    mean = v.mean(axis=1, dtype=np.float64)
    std = v.std(axis=1, dtype=np.float64)
    return np.stack([mean, std, v.min(axis=1).astype(np.float64), v.max(axis=1).astype(np.float64)], 1).tolist()


def _first_difference(a: Any, b: Any, where: str = "data") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    return f"{where}: {a!r} (on disk) vs {b!r} (requested)"


class Dataset:
    """A dataset directory opened for reading (and, through :class:`DatasetWriter`, writing).

    ``len(ds)`` is the configured number of samples; ``ds[i]`` returns a dict of numpy arrays with
    every field plus the metadata ``seed`` and ``index``; reading a sample that is not yet written
    raises ``ValueError``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise ValueError(f"{self.path} is not a dataset directory (no {MANIFEST})")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: not a {FORMAT} manifest")
        self.config: DataConfig = parse_data_config(self.manifest["config"])
        self.fields: dict[str, FieldSpec] = {k: FieldSpec.from_json(v) for k, v in self.manifest["fields"].items()}
        self._arrays: dict[str, ts.TensorStore] = {}
        self._done: np.ndarray | None = None
        # Decoded chunks are cached, so random reads of samples that share a chunk decode it once.
        self._context = ts.Context({"cache_pool": {"total_bytes_limit": CACHE_BYTES}})

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    @property
    def batch_size(self) -> int:
        return int(self.manifest["batch_size"])

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def batch_range(self, b: int) -> tuple[int, int]:
        """Sample range ``[start, stop)`` of storage batch ``b``."""
        return b * self.batch_size, min((b + 1) * self.batch_size, len(self))

    def done_batches(self) -> set[int]:
        """Storage batches whose marker exists (re-read from disk on every call)."""
        done_dir = self.path / "done"
        if not done_dir.is_dir():
            return set()
        return {int(p.name[1:-5]) for p in done_dir.glob("b*.json")}

    def written(self) -> np.ndarray:
        """Boolean mask ``(num_samples,)`` of samples that are completely written."""
        mask = np.zeros(len(self), bool)
        for b in self.done_batches():
            mask[slice(*self.batch_range(b))] = True
        self._done = mask
        return mask

    @property
    def complete(self) -> bool:
        """Whether every sample is written (and the statistics are in the manifest)."""
        return bool(self.manifest.get("complete", False))

    @property
    def stats(self) -> dict[str, dict[str, float]]:
        """Normalisation statistics ``{field: {"mean", "std"}}`` over the whole dataset (complete datasets)."""
        if "stats" not in self.manifest:
            raise ValueError(f"{self.path}: the dataset is incomplete; statistics are written when it completes")
        return self.manifest["stats"]

    def array(self, name: str) -> ts.TensorStore:
        """The tensorstore array of field ``name``, shape ``(num_samples, *field_shape)``."""
        if name not in self.fields:
            raise ValueError(f"field must be one of {sorted(self.fields)}, got {name!r}")
        if name not in self._arrays:
            spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(self.path / "fields" / name)},
                    "open": True}
            self._arrays[name] = ts.open(spec, context=self._context).result()
        return self._arrays[name]

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        n = len(self)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if np.any((indices < -n) | (indices >= n)):
            raise IndexError(f"index out of range for a dataset of {n} samples: {indices.tolist()}")
        indices = np.where(indices < 0, indices + n, indices)
        if not self.complete:
            done = self._done if self._done is not None and self._done[indices].all() else self.written()
            if not done[indices].all():
                missing = indices[~done[indices]]
                raise ValueError(f"sample(s) {missing[:8].tolist()} of {self.path} are not written yet")
        return indices

    def read(self, indices: np.ndarray | list[int], fields: list[str] | tuple[str, ...] | None = None
             ) -> dict[str, np.ndarray]:
        """Several samples at once: ``{field: (len(indices), *shape)}`` plus ``seed`` and ``index`` ``(len,)``."""
        indices = self._check_indices(np.asarray(indices))
        names = list(self.fields) if fields is None else list(fields)
        futures = {name: self.array(name)[indices].read() for name in names}
        out = {name: f.result() for name, f in futures.items()}
        out["seed"] = np.full(len(indices), int(self.config.seed), np.int64)
        out["index"] = indices.copy()
        return out

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
        batch = self.read([int(index)])
        return {k: np.asarray(v[0]) for k, v in batch.items()}

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def info(self) -> dict[str, Any]:
        """A JSON-compatible summary: ``num_samples``, ``complete``, ``config``, ``fields`` (name -> shape), ..."""
        written = int(self.written().sum())
        return {
            "path": str(self.path),
            "num_samples": len(self),
            "num_written": written,
            "complete": self.complete,
            "scenario": self.manifest["scenario"],
            "config": self.manifest["config"],
            "fields": {k: list(v.shape) for k, v in self.fields.items()},
            "field_info": self.manifest["fields"],
            "seed": self.manifest["seed"],
            "constants": self.manifest.get("constants", {}),
            "package_version": self.manifest.get("package_version"),
            "git_commit": self.manifest.get("git_commit"),
            "stats": self.manifest.get("stats"),
            "num_rare_lesion": self.manifest.get("num_rare_lesion"),
        }


class DatasetWriter(Dataset):
    """A dataset directory prepared for writing batches of ``config``.

    Use :func:`prepare` (leader process) then :meth:`attach` (every process).
    """

    @staticmethod
    def prepare(path: str | Path, config: DataConfig, fields: dict[str, FieldSpec], *,
                constants: dict[str, Any] | None = None, overwrite: bool = False) -> str:
        """Create (or validate) the directory, the arrays and the manifest; returns ``"new"``,
        ``"resume"``, or ``"complete"``. ``constants`` (time step, geometry) go into the manifest.

        Raises:
            ValueError: the directory holds a dataset of a different config (without
                ``overwrite``), or holds other files.
        """
        path = Path(path)
        manifest_path = path / MANIFEST
        staging, trash = path.parent / f".{path.name}.preparing", path.parent / f".{path.name}.trash"
        for leftover in (staging, trash):  # from a run killed while preparing or overwriting
            if leftover.exists():
                shutil.rmtree(leftover)
        if path.exists() and not path.is_dir():
            raise ValueError(f"--out {path} exists and is not a directory")
        if manifest_path.is_file():
            old = json.loads(manifest_path.read_text())
            if overwrite:
                os.replace(path, trash)  # atomic: the old dataset is gone at once, deleted below
                shutil.rmtree(trash)
            # a setting added to DataConfig since the dataset was begun counts as its default
            elif (stored := with_defaults(DataConfig, old.get("config"), "data")) != config_dict(config):
                diff = _first_difference(stored, config_dict(config))
                raise ValueError(f"{path} holds a dataset generated with a different config ({diff}); "
                                 f"pass --overwrite to replace it or choose another --out")
            else:
                return "complete" if old.get("complete") else "resume"
        elif path.is_dir() and any(path.iterdir()):
            raise ValueError(f"--out {path} is a non-empty directory without a {MANIFEST}; refusing to write there")
        # Build the arrays and the manifest in a staging directory, then rename it into place, so a
        # kill at any moment leaves either no dataset or a complete empty one.
        staging.mkdir(parents=True)
        (staging / "done").mkdir()
        for name, spec in fields.items():
            chunk = chunk_samples(spec, config.batch_size)
            ts.open(_array_spec(staging / "fields" / name, config.num_samples, spec, chunk, config.compression_level)
                    | {"create": True, "delete_existing": True}).result()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": package_version(),
            "git_commit": git_commit(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "scenario": config.scenario,
            "num_samples": config.num_samples,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "seeds": {"base": config.seed, "split": config.split,
                      "rule": "sample i draws from numpy.random.default_rng([seed, split_code, i, stream])"},
            "config": config_dict(config),
            "fingerprint": fingerprint(config),
            "fields": {k: v.to_json() | {"chunk_samples": chunk_samples(v, config.batch_size)}
                       for k, v in fields.items()},
            "constants": constants or {},
            "complete": False,
        }
        write_text(staging / MANIFEST, json.dumps(manifest, indent=1))
        os.replace(staging, path)  # replaces a missing or empty directory atomically
        return "new"

    def write_batch(self, b: int, arrays: dict[str, np.ndarray], extra: dict[str, list] | None = None) -> None:
        """Write storage batch ``b`` (every field, leading axis = batch samples), then its marker.

        ``extra`` holds per-sample JSON values (e.g. ``rare_lesion``) kept in the marker.
        """
        start, stop = self.batch_range(b)
        if set(arrays) != set(self.fields):
            raise ValueError(f"write_batch needs exactly the fields {sorted(self.fields)}, got {sorted(arrays)}")
        futures = []
        for name, value in arrays.items():
            spec = self.fields[name]
            value = np.asarray(value)
            if value.shape != (stop - start, *spec.shape) or value.dtype != np.dtype(spec.dtype):
                raise ValueError(f"field {name}: expected {(stop - start, *spec.shape)} {spec.dtype}, "
                                 f"got {value.shape} {value.dtype}")
            futures.append(self.array(name)[start:stop].write(value))
        for f in futures:
            f.result()
        stats = {name: batch_stats(np.asarray(value)) for name, value in arrays.items()
                 if np.issubdtype(np.asarray(value).dtype, np.inexact)}
        marker = {"batch": b, "start": start, "stop": stop, "stats": stats, "extra": extra or {}}
        write_text(self.path / "done" / f"b{b:08d}.json", json.dumps(marker))

    def finalize(self) -> bool:
        """If every batch is written, aggregate the statistics into the manifest and mark it complete.

        Idempotent and safe to call from several processes (the content is deterministic).
        Returns whether the dataset is complete.
        """
        if self.done_batches() != set(range(self.num_batches)):
            return False
        markers = [json.loads((self.path / "done" / f"b{b:08d}.json").read_text()) for b in range(self.num_batches)]
        per_sample: dict[str, dict[str, list[float]]] = {}
        for name in markers[0]["stats"]:
            rows = np.array([row for m in markers for row in m["stats"][name]], dtype=np.float64)
            per_sample[name] = {"mean": rows[:, 0].tolist(), "std": rows[:, 1].tolist(),
                                "min": rows[:, 2].tolist(), "max": rows[:, 3].tolist()}
        stats = {}
        for name, s in per_sample.items():
            mean_i, std_i = np.array(s["mean"]), np.array(s["std"])
            complex_field = np.issubdtype(np.dtype(self.fields[name].dtype), np.complexfloating)
            if complex_field:  # scale-only normalisation keeps the phase: mean 0, std = RMS magnitude
                rms = float(np.sqrt(np.mean(std_i**2 + mean_i**2)))
                stats[name] = {"mean": 0.0, "std": rms, "min": float(np.min(s["min"])), "max": float(np.max(s["max"]))}
            else:
                mean = float(mean_i.mean())
                var = float(np.mean(std_i**2 + mean_i**2) - mean**2)
                stats[name] = {"mean": mean, "std": math.sqrt(max(var, 0.0)),
                               "min": float(np.min(s["min"])), "max": float(np.max(s["max"]))}
        extra_keys = markers[0]["extra"].keys()
        extra = {k: [v for m in markers for v in m["extra"][k]] for k in extra_keys}
        manifest = dict(self.manifest)
        manifest.update(complete=True, stats=stats, sample_stats=per_sample, sample_extra=extra)
        if "rare_lesion" in extra:
            manifest["num_rare_lesion"] = int(sum(extra["rare_lesion"]))
        write_text(self.path / MANIFEST, json.dumps(manifest, indent=1))
        self.manifest = manifest
        return True


def open_dataset(path: str | Path) -> Dataset:
    """Open a dataset directory for reading: ``len(ds)``, ``ds[i] -> {field: np.ndarray, "seed", "index"}``."""
    return Dataset(path)
