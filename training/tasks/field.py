"""The optical field operator (:class:`pdesurrogate.FieldOperator`): medium -> steady-state phasors.

Batch layout (``optics`` datasets): ``medium`` ``(B, 1, *spatial)`` = ``[refractive_index]`` and
``field`` ``(B, n_angles, *spatial)`` complex phasors (one channel per illumination angle). The
network learns the scattered field: the loader subtracts the incident field (the solver's field in
the homogeneous background, :func:`incident_field`), which the operator adds back; targets are
normalised by their RMS per real/imaginary channel. Loss terms: data and the discrete Helmholtz
residual (:class:`training.physics.HelmholtzResidual`). Evaluation: all phasors of a sample in one
pass, against the incident field. Trust: the RMS Helmholtz residual of the predicted total field,
and for ensembles a pointwise band.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.evaluation import metrics
from pdesurrogate.evaluation.speed import compare
from pdesurrogate.trust.signals import rms
from solvers import Grid
from training.data import scenarios
from training.losses import field_loss, field_sample
from training.physics import HelmholtzResidual

from .base import Prepared, Task, TrustSamples, TrustSignals, batches, summarise


def incident_field(ds: Any) -> np.ndarray:
    """The solver's fields ``(F, *shape)`` for the homogeneous background (refractive index of the
    data's background): the field operator's trivial baseline and the offset it learns on top of."""
    shape = tuple(ds.config.shape)
    n_b = float(ds.manifest["constants"].get("background_index", 1.0))
    out = jax.jit(scenarios.build(ds.config).simulate)({"refractive_index": jnp.full(shape, n_b, jnp.float32)})
    return np.asarray(out["field"])


class FieldTask(Task):
    """A one-pass field operator (see the module docstring)."""

    name: ClassVar[str] = "field"
    scenarios: ClassVar[tuple[str, ...]] = ("optics",)
    target: ClassVar[str] = "field"
    loss_terms: ClassVar[frozenset[str]] = frozenset({"residual"})
    target_scale_only: ClassVar[bool] = True
    baseline: ClassVar[str] = "the incident field (the solver's field in the homogeneous background)"
    trust_band: ClassVar[bool] = True

    def layout(self, fields: set[str] | dict) -> dict[str, list[str]]:
        return {"medium": ["refractive_index"], "field": ["field"]}

    def prepare(self, ds: Any, train: Any, model: Any, train_idx: np.ndarray) -> Prepared:
        shape = tuple(ds.config.shape)
        stats = self.stats(ds.stats, len(shape))
        offset = incident_field(ds)
        f = ds.fields["field"].shape[0]
        scattered = ds.read(train_idx[:64], ["field"])["field"] - offset[None]
        scattered_std = float(np.sqrt(np.mean(np.abs(scattered) ** 2) / 2)) or 1.0  # per real/imag channel
        norm = {"in_mean": stats["medium"]["mean"], "in_std": stats["medium"]["std"],
                "out_mean": [0.0] * (2 * f), "out_std": [scattered_std] * (2 * f)}
        o = ds.config.optics
        constants = ds.manifest.get("constants", {})
        spec = {"complex_output": True, "medium_names": ["refractive_index"], "pml_size": int(o.pml_size),
                "info": constants, "offset_file": "incident_field.npy", "offset": offset}
        residual_fn = None
        if train.loss.residual > 0:
            residual_fn = HelmholtzResidual(Grid(shape, ds.config.spacing), o.wavelength, o.pml_size,
                                            background_index=float(constants.get("background_index", 1.0)),
                                            offset=offset)

        def transform(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = self.to_batch(batch)
            out["field"] = out["field"] - offset[None].astype(out["field"].dtype)
            return out

        return Prepared(model.build_config(1, 2 * f, len(shape), norm), transform, spec, residual_fn=residual_fn)

    def loss(self, cfg: Any, *, residual_fn: Any = None, reversal_mask: Any = None,
             emitters: Any = None) -> tuple[Any, Any]:
        def loss_fn(model, batch, key):
            return field_loss(model, batch, key, weights=cfg.loss, residual_fn=residual_fn)

        return loss_fn, field_sample

    def evaluate(self, model: Any, ds: Any, idx: np.ndarray, spec: dict[str, Any], batch: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        return evaluate_field(model, ds, idx, batch)

    def speed(self, model: Any, ds: Any, sample: dict[str, np.ndarray], spec: dict[str, Any],
              gradient: bool) -> dict[str, Any]:
        sim = scenarios.build(ds.config).simulate
        media = jnp.asarray(sample["refractive_index"])[:, None]
        return compare(jax.vmap(lambda m: model(m)), jax.vmap(lambda m: sim({"refractive_index": m[0]})["field"]),
                       media, gradient=gradient, repeats=2)


    def trust_samples(self, ds: Any, spec: dict[str, Any], idx: np.ndarray, batch: int) -> Iterator[TrustSamples]:
        """Inputs ``(medium (n, 1, *shape),)`` (refractive index), truth the fields ``(n, F, *shape)``
        (complex phasors, one per illumination angle)."""
        for raw in batches(ds, idx, self.fields(ds.fields), batch):
            b = self.to_batch(raw)
            yield TrustSamples((b["medium"],), b["field"], b["medium"])

    def trust_signals(self, spec: dict[str, Any], *, ensemble: bool) -> TrustSignals:
        """``helmholtz``: the RMS discrete Helmholtz residual of the predicted total field
        ``(F, *shape)`` (:class:`training.physics.HelmholtzResidual`, the solver's own operator)."""
        info = spec["info"]
        residual = HelmholtzResidual(Grid(tuple(spec["shape"]), spec["spacing"]), float(info["wavelength_m"]),
                                     int(spec["pml_size"]), background_index=float(info.get("background_index", 1.0)))

        def forward(op: Any, medium: jax.Array) -> jax.Array:
            return op(medium)

        def physics(op: Any, pred: jax.Array, medium: jax.Array) -> jax.Array:
            return rms(residual(pred, medium))[None]

        return TrustSignals(("helmholtz",), forward, physics)


def evaluate_field(op: Any, ds: Any, idx: np.ndarray, batch: int = 8) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statistics of a field operator on samples ``idx`` of an optics dataset, plus arrays for figures."""
    predict = jax.jit(jax.vmap(lambda m: op(m)))
    incident = incident_field(ds)
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("one", "base", "roi", "low", "mid", "high")}
    worst: dict[str, Any] = {"err": -1.0}
    for raw in batches(ds, idx, ["refractive_index", "field", "lesion_mask"], batch):
        media = jnp.asarray(raw["refractive_index"])[:, None]
        pred = np.asarray(predict(media))
        truth = raw["field"]
        e = metrics.relative_l2(pred, truth)
        acc["one"].append(e)
        acc["base"].append(metrics.relative_l2(np.broadcast_to(incident, truth.shape), truth))
        for k, v in metrics.band_errors(pred, truth, 2).items():
            acc[k].append(v)
        acc["roi"].append(metrics.roi_errors(pred, truth, raw["lesion_mask"]))
        i = int(np.argmax(e))
        if e[i] > worst["err"]:
            worst = {"err": float(e[i]), "pred": np.real(pred[i, 0]), "truth": np.real(truth[i, 0]),
                     "input": raw["refractive_index"][i]}
    s = summarise(acc)
    return ({"rel_l2": s["one"], "baseline_rel_l2": s["base"], "bands": {k: s[k] for k in metrics.BANDS},
             "roi": s["roi"]},
            {"worst": worst, "one": np.concatenate(acc["one"]), "base": np.concatenate(acc["base"])})
