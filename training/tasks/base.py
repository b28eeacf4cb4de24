"""The interface every surrogate kind implements, and the pieces the kinds share.

A :class:`Task` is a small stateless object. It knows, for its kind of surrogate:

- which dataset scenarios it trains on and which dataset fields it reads (:meth:`Task.layout`),
  and how a loader batch becomes the trainer's layout (:meth:`Task.to_batch`);
- its normalisation (:meth:`Task.stats`) and what else a run needs from the data: model channels
  and config, loader transform, physics residual, the ``surrogate.json`` spec (:meth:`Task.prepare`);
- its loss terms (:attr:`Task.loss_terms`, :meth:`Task.loss`);
- what evaluation measures for it, against which trivial baseline (:meth:`Task.evaluate`,
  :meth:`Task.speed`);
- what the trust layer measures: the samples (:meth:`Task.trust_samples`), the label-free signals
  of a loaded surrogate (:meth:`Task.trust_signals`) and the error they predict (:meth:`Task.trust_error`).

The generic code (:mod:`training.run`, :mod:`training.evaluation`, :mod:`training.trainer`,
:mod:`pdesurrogate.trust.run`) asks the task and never branches on its name.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pdesurrogate.evaluation import metrics

if TYPE_CHECKING:
    from training.config import ModelConfig, TrainConfig

Batch = dict[str, np.ndarray]
LOSS_TERMS = ("time_reversal", "residual", "reciprocity")  # the optional LossWeights terms
# TrainConfig settings that only a learned stepper uses: set for another task, they raise
STEPPER_SETTINGS = ("unroll", "pushforward", "noise_std", "residual_step", "windows", "solver_target",
                    "reversal_signs")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What :meth:`Task.prepare` derives from a dataset for one training run.

    Attributes:
        model_config: the registry config (channels and normalisation filled in).
        transform: loader batch (dataset fields) -> trainer batch (see :mod:`training.losses`).
        spec: the task's part of ``surrogate.json`` (``"offset"``, if present, an array that the
            run directory stores as ``spec["offset_file"]``).
        residual_fn: the physics residual of the loss, or ``None``.
        reversal_mask: ``grid.shape`` weights of the time-reversal loss (0 where absorption breaks
            reversibility), or ``None``.
        emitters: the emitting element of each shot (trace operators), or ``None``.
    """

    model_config: dict[str, Any]
    transform: Callable[[Batch], Batch]
    spec: dict[str, Any]
    residual_fn: Callable[..., Any] | None = None
    reversal_mask: np.ndarray | None = None
    emitters: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class TrustSamples:
    """One batch of ``n`` samples a trust measurement runs on (:meth:`Task.trust_samples`).

    Attributes:
        inputs: the inputs of the surrogate's one-sample forward model (:attr:`TrustSignals.forward`),
            each stacked on a leading axis of length ``n``.
        truth: the solver's answers ``(n, ...)``, the shape of the predictions.
        media: the media ``(n, M, *shape)`` (SI units of the dataset fields), for the shift monitor.
        keep: 1 where a point counts in the error, else 0; broadcastable to ``truth`` (or ``1.0``).
    """

    inputs: tuple[np.ndarray, ...]
    truth: np.ndarray
    media: np.ndarray
    keep: np.ndarray | float = 1.0


@dataclasses.dataclass(frozen=True)
class TrustSignals:
    """The label-free signals of a surrogate kind (:meth:`Task.trust_signals`), for one sample.

    Attributes:
        names: the ``J`` signal names.
        forward: ``forward(surrogate, *inputs)`` -> the prediction of one loaded surrogate
            (one ensemble member); jit, vmap and grad compose with it.
        physics: ``physics(surrogate, prediction, *inputs)`` -> signals ``(J,)``, positive; for an
            ensemble ``surrogate`` is member 0 and ``prediction`` the members' mean.
    """

    names: tuple[str, ...]
    forward: Callable[..., Any]
    physics: Callable[..., Any]


class Task(abc.ABC):
    """One surrogate kind (see the module docstring); subclasses set the class attributes.

    Attributes:
        name: the ``train.task`` / ``surrogate.json`` ``task`` value.
        scenarios: dataset scenarios this task trains on.
        target: the trainer batch entry the model predicts.
        loss_terms: the optional loss terms of :data:`LOSS_TERMS` it trains with.
        vector_fields: dataset fields with one channel per spatial axis.
        target_scale_only: the target is normalised by its std alone (zero-mean waves, phasors).
        stepper_settings: it uses the ``[train]`` settings of :data:`STEPPER_SETTINGS`.
        baseline: the trivial baseline evaluation compares with, in words.
        trust_band: ensembles of this kind also get a pointwise conformal band (the members'
            spread per point as the scale of ``|prediction - truth|``).
    """

    name: ClassVar[str]
    scenarios: ClassVar[tuple[str, ...]]
    target: ClassVar[str]
    loss_terms: ClassVar[frozenset[str]]
    vector_fields: ClassVar[frozenset[str]] = frozenset()
    target_scale_only: ClassVar[bool] = False
    stepper_settings: ClassVar[bool] = False
    baseline: ClassVar[str]
    trust_band: ClassVar[bool] = False

    # ----- data ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def layout(self, fields: set[str] | dict) -> dict[str, list[str]]:
        """Trainer batch name -> the dataset fields stacked into its channel axis, in order."""

    def to_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A loader batch ``{field: (B, ...)}`` in the trainer's layout (numpy or jax arrays)."""
        xp = array_module(batch)
        layout = self.layout(batch)
        out = {name: batch[sources[0]] for name, sources in layout.items() if name != "medium"}
        out["medium"] = xp.stack([batch[name] for name in layout["medium"]], axis=1)
        return out

    def fields(self, dataset_fields: set[str] | dict) -> list[str]:
        """The dataset fields a loader must read (pass them as ``Loader(fields=...)``)."""
        needed = [f for names in self.layout(dataset_fields).values() for f in names]
        missing = sorted(set(needed) - set(dataset_fields))
        if missing:
            raise ValueError(f"task {self.name!r} needs dataset fields {missing}; the dataset has "
                             f"{sorted(dataset_fields)}")
        return needed

    def stats(self, stats: dict[str, dict[str, Any]], ndim: int) -> dict[str, dict[str, list[float]]]:
        """Per-channel ``{"mean": [...], "std": [...]}`` for each trainer batch name.

        Args:
            stats: the dataset's per-field statistics (``loader.stats``).
            ndim: spatial dimensions (the channels of a vector field).
        """
        out = {}
        for name, sources in self.layout(stats).items():
            means: list[float] = []
            stds: list[float] = []
            for f in sources:
                repeat = ndim if f in self.vector_fields else 1
                means += [float(stats[f]["mean"])] * repeat
                stds += [float(stats[f]["std"])] * repeat
            out[name] = {"mean": means, "std": stds}
        if self.target_scale_only:
            out[self.target] = {"mean": [0.0], "std": [float(stats[self.target]["std"])]}
        return out

    # ----- configuration -------------------------------------------------------------------------
    def check_train(self, cfg: TrainConfig) -> None:
        """Raise if ``cfg`` sets a loss term or a stepper setting this task does not use."""
        for term in LOSS_TERMS:
            if getattr(cfg.loss, term) > 0 and term not in self.loss_terms:
                users = [t.name for t in _registered() if term in t.loss_terms]
                raise ValueError(f"train.loss.{term}: task {self.name!r} has no such loss term (only "
                                 f"{users}); set it to 0")
        if self.stepper_settings:
            return
        defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
        for name in STEPPER_SETTINGS:  # stepper-only settings must not be set and silently ignored
            if getattr(cfg, name) != defaults[name]:
                raise ValueError(f"train.{name}: a stepper setting; task {self.name!r} does not use it "
                                 f"(remove it), got {getattr(cfg, name)!r}")

    def train_defaults(self, ds: Any) -> dict[str, Any]:
        """``[train]`` settings the dataset implies (the TOML may repeat them, not contradict them)."""
        return {}

    def check_model(self, model: ModelConfig, scenario: str) -> None:
        """Raise if the ``[model]`` section sets an option of another task."""
        if model.trace_bandwidth is not None:
            raise ValueError(f"model.trace_bandwidth: only for usct (traces) datasets, this one is {scenario!r}")

    @abc.abstractmethod
    def prepare(self, ds: Any, train: TrainConfig, model: ModelConfig, train_idx: np.ndarray) -> Prepared:
        """Model config, loader transform, spec and physics of a run on dataset ``ds``.

        Args:
            ds: the opened, complete dataset.
            train: the parsed ``[train]`` section.
            model: the parsed ``[model]`` section.
            train_idx: the training samples (target statistics are taken from the first 64).
        """

    @abc.abstractmethod
    def loss(self, cfg: TrainConfig, *, residual_fn: Callable[..., Any] | None = None,
             reversal_mask: Any = None, emitters: Any = None) -> tuple[Callable, Callable]:
        """``(loss_fn, sample_fn)`` for the trainer (see :mod:`training.losses`)."""

    # ----- evaluation ----------------------------------------------------------------------------
    def check_compatible(self, ds: Any, spec: dict[str, Any]) -> None:
        """Raise if dataset ``ds`` was made with other settings than the run's data (grid aside)."""

    @abc.abstractmethod
    def evaluate(self, model: Any, ds: Any, idx: np.ndarray, spec: dict[str, Any], batch: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(statistics, arrays for figures)`` of a trained surrogate on samples ``idx`` of ``ds``."""

    @abc.abstractmethod
    def speed(self, model: Any, ds: Any, sample: Batch, spec: dict[str, Any], gradient: bool) -> dict[str, Any]:
        """The surrogate against the reference solver on ``sample`` (a few samples), this device."""


    # ----- trust ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def trust_samples(self, ds: Any, spec: dict[str, Any], idx: np.ndarray, batch: int) -> Iterator[TrustSamples]:
        """The samples a trust measurement of a run (``spec``: its ``surrogate.json``) runs on, from
        dataset samples ``idx`` of ``ds`` read ``batch`` at a time."""

    def trust_keep(self, spec: dict[str, Any]) -> np.ndarray | float:
        """:attr:`TrustSamples.keep` of one sample of the run ``spec``: 1 where a point counts in the
        error, else 0, broadcastable to one prediction (``1.0``: every point)."""
        del spec
        return 1.0

    @abc.abstractmethod
    def trust_signals(self, spec: dict[str, Any], *, ensemble: bool) -> TrustSignals:
        """The label-free signals of a loaded surrogate of the run ``spec``.

        Args:
            spec: the run's ``surrogate.json``.
            ensemble: the surrogate is an ensemble, which adds the members' ``spread``
                (:func:`pdesurrogate.trust.signals.relative_spread`); without one a kind raises if it
                has no signal of its own.
        """

    def trust_error(self, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """The error trust bounds: relative L2 ``(n,)`` of predictions against the solver's answers
        ``(n, ...)`` (:attr:`TrustSamples.truth`), as ``pdesurrogate evaluate`` reports it."""
        return metrics.relative_l2(prediction, truth)


def _registered() -> list[Task]:
    from training.tasks import TASKS

    return list(TASKS.values())


def array_module(batch: dict[str, Any]) -> Any:
    """``numpy`` for a batch of numpy arrays, else ``jax.numpy``."""
    if all(isinstance(v, np.ndarray) for v in batch.values()):
        return np
    import jax.numpy as jnp

    return jnp


def batches(ds: Any, idx: np.ndarray, fields: list[str], batch: int) -> Iterator[Batch]:
    """``ds.read`` of ``idx`` in chunks of ``batch`` samples."""
    for s in range(0, len(idx), batch):
        yield ds.read(idx[s:s + batch], fields)


def summarise(per: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """:func:`pdesurrogate.evaluation.distribution` of each list of per-sample arrays."""
    return {k: metrics.distribution(np.concatenate(v)) if v else metrics.distribution([]) for k, v in per.items()}
