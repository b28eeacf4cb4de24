"""The ``[model]`` and ``[train]`` TOML sections as validated dataclasses.

Parse with :func:`pdesurrogate.config.parse`::

    model = parse(ModelConfig, toml["model"], "model")
    train = parse(TrainConfig, toml["train"], "train")

Example::

    [model]
    kind = "fno"          # fno | ffno | unet
    modes = [16, 16]
    width = 32
    depth = 4
    padding = 8

    [train]
    task = "stepper"      # stepper | field | traces (set from the dataset)
    steps = 20000
    batch_size = 16
    lr = 1e-3
    unroll = 4
    [train.loss]
    data = 1.0
    time_reversal = 0.1
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from pdesurrogate.config import spec

from .losses import LossWeights
from .tasks import TASKS, get_task

_KIND_FIELDS = {
    "fno": {"modes", "width", "depth", "padding", "coord_features", "projection_channels"},
    "ffno": {"modes", "width", "depth", "padding", "coord_features", "projection_channels", "mlp_ratio"},
    "unet": {"width", "levels", "coord_features"},
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (channels and normalisation come from the data)."""

    kind: str = field(default="fno", metadata=spec(choices=("fno", "ffno", "unet"), doc="architecture"))
    modes: tuple[int, ...] | None = field(default=None, metadata=spec(min=1, doc="Fourier modes per axis (fno, ffno)"))
    width: int | None = field(default=None, metadata=spec(min=1, doc="hidden channels (finest level for unet)"))
    depth: int | None = field(default=None, metadata=spec(min=1, doc="Fourier layers (fno, ffno)"))
    padding: int | None = field(default=None, metadata=spec(min=0, unit="cells", doc="domain padding per side"))
    coord_features: bool | None = field(default=None, metadata=spec(doc="append grid coordinates"))
    projection_channels: int | None = field(default=None, metadata=spec(min=1, doc="projection hidden channels"))
    mlp_ratio: int | None = field(default=None, metadata=spec(min=1, doc="F-FNO feed-forward expansion"))
    levels: int | None = field(default=None, metadata=spec(min=1, max=8, doc="U-Net resolutions"))
    trace_bandwidth: float | None = field(default=None, metadata=spec(
        min=0.5, max=50.0, doc="usct trace operator: predicted bandwidth in source frequencies (default 3)"))
    seed: int = field(default=0, metadata=spec(min=0, doc="initialisation seed"))

    def __post_init__(self) -> None:
        allowed = _KIND_FIELDS[self.kind] | {"kind", "seed", "trace_bandwidth"}
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is not None and f.name not in allowed:
                raise ValueError(f"model.{f.name}: not used by kind {self.kind!r} (allowed: {sorted(allowed)})")
        if self.kind in ("fno", "ffno") and self.modes is None:
            raise ValueError(f"model.modes: required for kind {self.kind!r}")
        if self.modes is not None and len(self.modes) not in (2, 3):
            raise ValueError(f"model.modes: must list 2 or 3 values (one per spatial axis), got {list(self.modes)}")

    def build_config(self, in_channels: int, out_channels: int, ndim: int,
                     normalisation: dict[str, list[float]] | None = None) -> dict[str, Any]:
        """The registry config ``{"kind", ...}`` for given channel counts, spatial dimension and
        optional ``{"in_mean", "in_std", "out_mean", "out_std"}`` statistics."""
        cfg: dict[str, Any] = {"kind": self.kind, "in_channels": in_channels, "out_channels": out_channels,
                               "seed": self.seed}
        if self.kind == "unet":
            cfg["ndim"] = ndim
        elif len(self.modes) != ndim:
            raise ValueError(f"model.modes: {len(self.modes)} values for {ndim}D data")
        for name in sorted(_KIND_FIELDS[self.kind]):
            value = getattr(self, name)
            if value is not None:
                cfg[name] = list(value) if isinstance(value, tuple) else value
        cfg.update(normalisation or {})
        return cfg


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, checkpointing, logging and loss settings of one training run."""

    task: str = field(default="stepper", metadata=spec(choices=tuple(TASKS),
                                                       doc="surrogate form (set from the dataset)"))
    steps: int = field(default=1000, metadata=spec(min=1, doc="optimizer steps in total"))
    batch_size: int = field(default=8, metadata=spec(min=1, doc="global batch size (samples per step)"))
    seed: int = field(default=0, metadata=spec(min=0, doc="seed of the data order and the loss noise"))
    lr: float = field(default=1e-3, metadata=spec(min=0.0, max=1.0, doc="peak learning rate"))
    warmup_steps: int = field(default=100, metadata=spec(min=0, doc="linear warm-up steps"))
    final_lr_factor: float = field(default=0.01, metadata=spec(min=0.0, max=1.0, doc="cosine end / peak"))
    weight_decay: float = field(default=1e-4, metadata=spec(min=0.0, doc="AdamW decoupled weight decay"))
    grad_clip: float = field(default=1.0, metadata=spec(min=0.0, doc="global-norm clip (0: off)"))
    precision: str = field(default="float32", metadata=spec(choices=("float32", "bf16"), doc="forward precision"))
    checkpoint_every: int = field(default=500, metadata=spec(min=1, doc="periodic checkpoint interval (steps)"))
    keep_checkpoints: int = field(default=2, metadata=spec(min=1, doc="periodic checkpoints kept"))
    validate_every: int = field(default=500, metadata=spec(min=1, doc="validation interval (steps)"))
    log_every: int = field(default=10, metadata=spec(min=1, doc="CSV/progress interval (steps)"))
    nan_policy: str = field(default="skip", metadata=spec(
        choices=("skip", "rollback"), doc="on a non-finite loss: skip the step or restore the last checkpoint"))
    max_nan_events: int = field(default=20, metadata=spec(min=1, doc="consecutive non-finite steps before giving up"))
    distributed: bool = field(default=False, metadata=spec(
        doc="multi-host: initialise jax.distributed first (training.trainer.initialize_distributed)"))
    unroll: int = field(default=1, metadata=spec(min=1, doc="stepper: unrolled macro steps in the data loss"))
    pushforward: bool = field(default=True, metadata=spec(doc="stepper: cut gradients between unrolled steps"))
    noise_std: float = field(default=0.0, metadata=spec(min=0.0, doc="stepper: input noise / channel RMS"))
    residual_step: bool = field(default=True, metadata=spec(doc="stepper: predict the increment u_next - u"))
    windows: int = field(default=0, metadata=spec(
        min=0, doc="stepper: random rollout windows per trajectory per step (0: every start; "
                   "GPU-size trajectories need a few, or a step holds all T - unroll rollouts in memory)"))
    solver_target: bool = field(default=False, metadata=spec(
        doc="stepper: the wave residual's solver step from each predicted state is a fixed target "
            "(stop-gradient, solver-in-the-loop) instead of a two-sided consistency term"))
    reversal_signs: tuple[float, ...] | None = field(default=None, metadata=spec(
        choices=(-1.0, 1.0), doc="stepper: channel signs of the time reversal R"))
    loss: LossWeights = field(default_factory=LossWeights, metadata=spec(doc="loss weights"))

    def __post_init__(self) -> None:
        if self.warmup_steps >= self.steps:
            raise ValueError(f"train.warmup_steps: must be < train.steps={self.steps}, got {self.warmup_steps}")
        if self.loss.time_reversal > 0 and self.reversal_signs is None:
            raise ValueError("train.reversal_signs: required when train.loss.time_reversal > 0")
        if self.solver_target and self.loss.residual == 0:
            raise ValueError("train.solver_target: it changes the wave residual, so it needs train.loss.residual > 0")
        get_task(self.task).check_train(self)
