"""The USCT trace operator (:class:`pdesurrogate.TraceOperator`): medium + emitter -> ring traces.

Batch layout (``usct`` datasets): ``medium`` ``(B, 2, *spatial)`` = ``[sound_speed, density]``,
``traces`` ``(B, n_shots, nt, n_elements)`` (Pa; one entry per emitting element) minus the water
traces of the same shot (:func:`water_traces`, which the operator adds back), ``condition``
``(B, n_shots, 1, *spatial)`` the emitter's distance map and ``receivers`` ``(B, n_shots,
n_elements)`` the traces each shot's loss counts (the emitter's own left out). The network is a
:class:`pdesurrogate.models.TraceNet` that predicts ``TRACE_BANDWIDTH`` source frequencies of
bandwidth unless ``model.trace_bandwidth`` says otherwise. Loss terms: data and source-receiver
reciprocity; there is no physics residual. Evaluation: per shot, against the water traces, with
the reciprocity gap of the predictions and of the solver's data. Trust: the reciprocity gap of the
predicted scattered traces; the error leaves the emitter's own trace out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.evaluation import metrics
from pdesurrogate.evaluation.speed import compare
from pdesurrogate.models import band_limit, dct_bandwidth_coefficients, distance_channels
from training.data import phantoms, scenarios
from training.losses import reciprocity_gap, reciprocity_pairs, shot_loss, shot_sample

from .base import Prepared, Task, TrustSamples, TrustSignals, batches, summarise

TRACE_BANDWIDTH = 3.0  # default kept bandwidth of predicted traces, in source frequencies
CHECKED_CONSTANTS = ("dt", "nt", "emitters", "ring_radius_m", "frequency_hz", "signal")
_TINY = 1e-30  # keeps sqrt of a zero reciprocity gap differentiable


def water_traces(ds: Any) -> np.ndarray:
    """The solver's traces ``(n_elements, nt, n_elements)`` in homogeneous water with every ring
    element emitting in turn (row ``e``: element ``e`` emits): the trivial baseline of any shot,
    and the offset the trace operator learns on top of."""
    config = ds.config
    shape = tuple(config.shape)
    a = config.acoustic
    sc = scenarios.build(dataclasses.replace(config, acoustic=dataclasses.replace(a, n_shots=a.n_elements)))
    if not math.isclose(sc.constants["dt"], float(ds.manifest["constants"]["dt"]), rel_tol=1e-9):
        raise ValueError(f"dataset {ds.path}: its time step differs from its config's (regenerate it)")
    water = {"sound_speed": jnp.full(shape, phantoms.WATER_SOUND_SPEED, jnp.float32),
             "density": jnp.full(shape, phantoms.WATER_DENSITY, jnp.float32)}
    return np.asarray(jax.jit(sc.simulate)(water)["traces"])


class TraceTask(Task):
    """A per-shot trace operator (see the module docstring)."""

    name: ClassVar[str] = "traces"
    scenarios: ClassVar[tuple[str, ...]] = ("usct",)
    target: ClassVar[str] = "traces"
    loss_terms: ClassVar[frozenset[str]] = frozenset({"reciprocity"})
    target_scale_only: ClassVar[bool] = True
    baseline: ClassVar[str] = "the water traces of the same shot"

    def layout(self, fields: set[str] | dict) -> dict[str, list[str]]:
        return {"medium": ["sound_speed", "density"], "traces": ["traces"]}

    def check_model(self, model: Any, scenario: str) -> None:
        """Every ``[model]`` option applies (``trace_bandwidth`` is this task's)."""

    def prepare(self, ds: Any, train: Any, model: Any, train_idx: np.ndarray) -> Prepared:
        shape = tuple(ds.config.shape)
        ndim = len(shape)
        stats = self.stats(ds.stats, ndim)
        constants = ds.manifest.get("constants", {})
        offset = water_traces(ds)  # (n_elements, nt, n_elements)
        emitters = scenarios.usct_emitters(ds.config)
        elements = scenarios.ring_elements(ds.config)
        radius = scenarios.ring_radius(ds.config)
        condition = np.asarray(distance_channels(shape, ds.config.spacing, elements[emitters], radius))
        target_offset = offset[emitters]
        receivers = scenarios.receiver_mask(emitters, len(elements))  # the emitter's own trace is left out
        nt = int(ds.fields["traces"].shape[1])
        a = ds.config.acoustic
        bandwidth = TRACE_BANDWIDTH if model.trace_bandwidth is None else model.trace_bandwidth
        n_coef = dct_bandwidth_coefficients(nt, float(constants["dt"]), bandwidth * a.frequency)
        sample_traces = ds.read(train_idx[:64], ["traces"])["traces"]
        scattered = sample_traces - target_offset[None]
        floor = float(np.linalg.norm(band_limit(sample_traces, n_coef, axis=2) - sample_traces)
                      / (np.linalg.norm(sample_traces) or 1.0))
        latent = model.width or 32
        norm = {"in_mean": stats["medium"]["mean"] + [float(condition.mean())],
                "in_std": stats["medium"]["std"] + [float(condition.std()) or 1.0]}
        model_config = {"kind": "traces", "backbone": model.build_config(3, latent, ndim, norm),
                        "receivers": (elements / ds.config.spacing).tolist(), "n_time": nt,
                        "n_coefficients": n_coef, "hidden": 4 * latent,
                        "out_std": float(np.sqrt(np.mean(scattered**2))) or 1.0, "seed": model.seed}
        spec = {"complex_output": False, "medium_names": ["sound_speed", "density"], "pml_size": int(a.pml_size),
                "info": constants | {"elements_m": elements.tolist(), "trace_bandwidth_hz": bandwidth * a.frequency,
                                     "trace_band_limit_rel_l2": floor},
                "offset_file": "homogeneous_traces.npy", "offset": offset}

        def transform(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = self.to_batch(batch)
            out["traces"] = out["traces"] - target_offset[None].astype(out["traces"].dtype)
            n = len(out["medium"])
            out["condition"] = np.broadcast_to(condition[None], (n,) + condition.shape)
            out["receivers"] = np.broadcast_to(receivers[None], (n,) + receivers.shape)
            return out

        return Prepared(model_config, transform, spec, emitters=emitters)

    def loss(self, cfg: Any, *, residual_fn: Any = None, reversal_mask: Any = None,
             emitters: Any = None) -> tuple[Any, Any]:
        def loss_fn(model, batch, key):
            return shot_loss(model, batch, key, weights=cfg.loss, emitters=emitters)

        return loss_fn, shot_sample

    def check_compatible(self, ds: Any, spec: dict[str, Any]) -> None:
        ours, theirs = ds.manifest["constants"], spec["info"]
        for key in CHECKED_CONSTANTS:
            same = math.isclose(ours[key], theirs[key], rel_tol=1e-6) if isinstance(ours[key], float) else \
                ours[key] == theirs[key]
            if not same:
                raise ValueError(f"dataset {ds.path} has {key}={ours[key]}; the trace operator was trained with "
                                 f"{theirs[key]} (pin data.acoustic.dt / the ring to the training set's)")

    def evaluate(self, model: Any, ds: Any, idx: np.ndarray, spec: dict[str, Any], batch: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        return evaluate_traces(model, ds, idx, batch)

    def speed(self, model: Any, ds: Any, sample: dict[str, np.ndarray], spec: dict[str, Any],
              gradient: bool) -> dict[str, Any]:
        sim = scenarios.build(ds.config).simulate
        media = jnp.stack([jnp.asarray(sample["sound_speed"]), jnp.asarray(sample["density"])], 1)
        emitters = ds.manifest["constants"]["emitters"]
        return compare(jax.vmap(lambda m: model.measure(m, emitters)),
                       jax.vmap(lambda m: sim({"sound_speed": m[0], "density": m[1]})["traces"]),
                       media, gradient=gradient, repeats=2)


    def trust_samples(self, ds: Any, spec: dict[str, Any], idx: np.ndarray, batch: int) -> Iterator[TrustSamples]:
        """Inputs ``(medium (n, 2, *shape),)`` (sound speed m/s, density kg/m^3), truth all shots
        ``(n, S, nt, n_elements)`` (Pa) of the data's emitters; ``keep`` ``(S, 1, n_elements)`` leaves each
        emitter's own trace out (:func:`training.data.scenarios.receiver_mask`)."""
        keep = self.trust_keep(spec)
        for raw in batches(ds, idx, self.fields(ds.fields), batch):
            b = self.to_batch(raw)
            yield TrustSamples((b["medium"],), b["traces"], b["medium"], keep)

    def trust_keep(self, spec: dict[str, Any]) -> np.ndarray:
        """``(S, 1, n_elements)``: each emitter's own trace left out
        (:func:`training.data.scenarios.receiver_mask`)."""
        info = spec["info"]
        return scenarios.receiver_mask(np.asarray(info["emitters"]), len(info["elements_m"]))[:, None, :]

    def trust_signals(self, spec: dict[str, Any], *, ensemble: bool) -> TrustSignals:
        """``reciprocity``: ``sqrt`` of the reciprocity gap (:func:`training.losses.reciprocity_gap`) of
        the predicted scattered traces (all shots minus the water traces of the operator's ``offset``)."""
        emitters = np.asarray(spec["info"]["emitters"])

        def forward(op: Any, medium: jax.Array) -> jax.Array:
            return op.measure(medium, emitters)

        def physics(op: Any, pred: jax.Array, medium: jax.Array) -> jax.Array:
            water = op.offset[emitters].astype(pred.dtype)
            return jnp.sqrt(reciprocity_gap(pred - water, emitters) + _TINY)[None]

        return TrustSignals(("reciprocity",), forward, physics)


def evaluate_traces(op: Any, ds: Any, idx: np.ndarray, batch: int = 8) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statistics of a trace operator on samples ``idx`` of a ``usct`` dataset, per shot.

    The baseline is the water traces of the same shot; the bands split each trace's temporal
    spectrum around the source frequency (:func:`pdesurrogate.evaluation.metrics.frequency_band_index`).
    The emitting element's own trace is left out of every statistic
    (:func:`training.data.scenarios.receiver_mask`).
    """
    emitters = np.asarray(ds.manifest["constants"]["emitters"])
    predict = jax.jit(jax.vmap(lambda m: op.measure(m, emitters)))
    keep = scenarios.receiver_mask(emitters, ds.fields["traces"].shape[-1])[:, None, :]  # (S, 1, n_elements)
    water = np.where(keep, np.asarray(op.offset)[emitters], 0.0)  # (S, nt, n_elements)
    c = ds.manifest["constants"]
    band = metrics.frequency_band_index(ds.fields["traces"].shape[1], float(c["dt"]), float(c["frequency_hz"]))
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("one", "base", "low", "mid", "high", "rec", "rec_data")}
    worst: dict[str, Any] = {"err": -1.0}
    gap = jax.jit(jax.vmap(lambda t: jnp.sqrt(reciprocity_gap(t, emitters))))
    has_pairs = len(reciprocity_pairs(emitters)[0]) > 0
    for raw in batches(ds, idx, ["sound_speed", "density", "traces"], batch):
        media = jnp.stack([jnp.asarray(raw["sound_speed"]), jnp.asarray(raw["density"])], 1)
        pred = np.where(keep, np.asarray(predict(media)), 0.0)
        truth = np.where(keep, raw["traces"], 0.0)
        B, S = truth.shape[:2]
        flat = lambda a: a.reshape(B * S, *a.shape[2:])  # noqa: E731
        e = metrics.relative_l2(flat(pred), flat(truth))
        acc["one"].append(e)
        acc["base"].append(metrics.relative_l2(flat(np.broadcast_to(water, truth.shape)), flat(truth)))
        if has_pairs:
            acc["rec"].append(np.asarray(gap(jnp.asarray(pred))))
            acc["rec_data"].append(np.asarray(gap(jnp.asarray(truth))))
        for k, v in metrics.band_errors(np.swapaxes(flat(pred), 1, 2), np.swapaxes(flat(truth), 1, 2), 1,
                                        band=band).items():
            acc[k].append(v)
        i = int(np.argmax(e))
        if e[i] > worst["err"]:
            worst = {"err": float(e[i]), "pred": flat(pred)[i], "truth": flat(truth)[i],
                     "input": raw["sound_speed"][i // S]}
    s = summarise(acc)
    return ({"rel_l2": s["one"], "baseline_rel_l2": s["base"], "bands": {k: s[k] for k in metrics.BANDS},
             "roi": None, "reciprocity": s["rec"] if acc["rec"] else None,
             "data_reciprocity": s["rec_data"] if acc["rec_data"] else None},
            {"worst": worst, "one": np.concatenate(acc["one"]), "base": np.concatenate(acc["base"])})
