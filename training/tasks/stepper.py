"""The learned stepper (:class:`pdesurrogate.Surrogate`): one macro step of a time-domain solver.

Batch layout: ``state`` ``(B, T, C, *spatial)`` = one scalar field then the components of one
vector field that time reversal flips (:data:`STATES`), and ``medium`` ``(B, M, *spatial)``:

- ``acoustic_stepper`` / ``photoacoustic``: channels ``[pressure, velocity_0, ..., velocity_{d-1}]``
  (velocity only if stored), medium ``[sound_speed, density]``;
- ``maxwell_stepper`` (2D TM): channels ``[ez, h_x, h_y]`` (``h = eta0 * H``), medium ``[permittivity]``.

Normalisation: channel ``c`` is multiplied by ``std_0 / std_c`` (:func:`state_scales`), so the
relative L2 loss weighs every channel alike. Loss terms: one-step / unrolled data, time
reversal (:func:`reversal_signs`, masked by :func:`training.physics.reversal_mask`) and the
solver's own residual (:class:`training.physics.WaveResidual` / :class:`~training.physics.YeeResidual`).
Evaluation: one macro step from every frame, rollouts from frame 0, time-reversal inconsistency
and the FNO's spectral tail, against persistence ``u(t + dt) = u(t)``. Trust: one-step predictions
from every frame but the last, their wave / Yee residual and time-reversal inconsistency.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pdesurrogate.evaluation import metrics
from pdesurrogate.evaluation.speed import stepper_speed
from pdesurrogate.models import FNO
from pdesurrogate.trust.signals import rms, time_reversal
from solvers import Grid, acoustic, maxwell
from training.losses import stepper_loss, stepper_sample
from training.physics import WaveResidual, YeeResidual, reversal_mask

from .base import Prepared, Task, TrustSamples, TrustSignals, array_module, batches, summarise

# State families: (scalar field (T, *s), vector field (T, d, *s) flipped by time reversal, medium fields).
STATES = (
    ("pressure", "velocity", ("sound_speed", "density")),  # acoustic_stepper, photoacoustic
    ("ez", "h", ("permittivity",)),  # maxwell_stepper (2D TM: h = eta0 * (Hx, Hy))
)
PHYSICS = {"acoustic_stepper": "acoustic", "photoacoustic": "acoustic", "maxwell_stepper": "maxwell"}
INITIAL_FIELD = {"acoustic": "p0", "maxwell": "e0"}


def _family(fields: set[str] | dict) -> tuple[str, str, tuple[str, ...]]:
    for family in STATES:
        if family[0] in fields:
            return family
    raise ValueError(f"task 'stepper' needs one of the dataset fields {[f[0] for f in STATES]}; "
                     f"the dataset has {sorted(fields)}")


def reversal_signs(dataset_fields: set[str] | dict, ndim: int) -> list[float]:
    """Time-reversal signs of the state channels: the scalar (pressure or Ez) +1, each vector
    component (velocity or H) -1 (acoustic ``(p, v) -> (p, -v)``, Maxwell ``(E, H) -> (E, -H)``)."""
    _, vector, _ = _family(dataset_fields)
    return [1.0] + ([-1.0] * ndim if vector in dataset_fields else [])


def state_scales(stds: list[float]) -> list[float]:
    """Channel factors ``std_0 / std_c``: the network and the loss see every channel (e.g.
    velocity, ~1e-6 of the pressure in Pa) with the pressure's magnitude, so the relative L2 loss
    weighs all channels alike; :class:`pdesurrogate.Surrogate` undoes them."""
    return [float(stds[0] / s) if s > 0 else 1.0 for s in stds]


def solver(spec: dict[str, Any]) -> tuple[Any, Any]:
    """``(make, read)``: ``make(medium (M, *shape))`` -> the solver Stepper of a run's data (scheme,
    PML, time step) and ``read(state)`` -> its channel-0 field (pressure or Ez)."""
    grid = Grid(tuple(spec["shape"]), spec["spacing"])
    if spec.get("physics") == "maxwell":
        def make_maxwell(m: jax.Array) -> maxwell.Stepper:
            return maxwell.Stepper(grid, maxwell.Medium(permittivity=m[0]), pml_size=spec["pml_size"],
                                   courant=spec["courant"])

        return make_maxwell, lambda state: state.e[0]

    def make(m: jax.Array) -> acoustic.Stepper:
        return acoustic.Stepper(grid, acoustic.Medium(sound_speed=m[0], density=m[1]), scheme=spec["scheme"],
                                pml_size=spec["pml_size"], dt=spec["solver_dt"], fd_order=spec.get("fd_order", 4),
                                fd_coefficients=spec.get("fd_coefficients", "taylor"))

    return make, lambda state: state.p


def _solver_config(ds: Any) -> Any:
    """The dataset's solver section: ``data.optics`` (Maxwell) or ``data.acoustic``."""
    return ds.config.optics if PHYSICS[ds.manifest["scenario"]] == "maxwell" else ds.config.acoustic


class StepperTask(Task):
    """A learned :class:`solvers.protocol.Stepper` (see the module docstring)."""

    name: ClassVar[str] = "stepper"
    scenarios: ClassVar[tuple[str, ...]] = tuple(PHYSICS)
    target: ClassVar[str] = "state"
    loss_terms: ClassVar[frozenset[str]] = frozenset({"time_reversal", "residual"})
    vector_fields: ClassVar[frozenset[str]] = frozenset(vector for _, vector, _ in STATES)
    stepper_settings: ClassVar[bool] = True
    baseline: ClassVar[str] = "persistence u(t + dt) = u(t)"

    def layout(self, fields: set[str] | dict) -> dict[str, list[str]]:
        scalar, vector, medium = _family(fields)
        return {"state": [scalar] + ([vector] if vector in fields else []), "medium": list(medium)}

    def to_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``pressure (B, T, *s)`` and ``velocity (B, T, d, *s)`` (or ``ez`` and ``h``) become
        ``state (B, T, 1 + d, *s)``; the medium fields ``medium (B, M, *s)``."""
        xp = array_module(batch)
        layout = self.layout(batch)
        scalar, *vector = layout["state"]
        s = batch[scalar][:, :, None]
        return {"state": xp.concatenate([s, batch[vector[0]]], axis=2) if vector else s,
                "medium": xp.stack([batch[name] for name in layout["medium"]], axis=1)}

    def train_defaults(self, ds: Any) -> dict[str, Any]:
        signs = reversal_signs(ds.fields, len(ds.config.shape))
        return {"reversal_signs": signs} if len(signs) > 1 else {}

    def prepare(self, ds: Any, train: Any, model: Any, train_idx: np.ndarray) -> Prepared:
        scenario = ds.manifest["scenario"]
        shape = tuple(ds.config.shape)
        ndim = len(shape)
        stats = self.stats(ds.stats, ndim)
        channels = len(stats["state"]["mean"])
        signs = reversal_signs(ds.fields, ndim) if channels > 1 else [1.0]
        if channels > 1 and list(train.reversal_signs) != list(signs):
            raise ValueError(f"train.reversal_signs: the {scenario} state {channels} channels reverse with {signs}, "
                             f"got {list(train.reversal_signs)}")
        scales = state_scales(stats["state"]["std"])
        layout = self.layout(ds.fields)
        physics = PHYSICS[scenario]
        solver_cfg = _solver_config(ds)
        scaled_mean = [m * f for m, f in zip(stats["state"]["mean"], scales)]
        scaled_std = [s * f for s, f in zip(stats["state"]["std"], scales)]
        norm = {"in_mean": scaled_mean + stats["medium"]["mean"], "in_std": scaled_std + stats["medium"]["std"],
                "out_mean": [0.0] * channels, "out_std": scaled_std}
        model_config = model.build_config(channels + len(layout["medium"]), channels, ndim, norm)
        names = layout["state"][:1] + [f"{layout['state'][-1]}{d}" for d in range(channels - 1)]
        macro_steps = int(solver_cfg.save_every)
        solver_dt = float(ds.manifest["constants"]["dt"])
        spec: dict[str, Any] = {
            "physics": physics, "solver_dt": solver_dt, "macro_steps": macro_steps, "reversal_signs": signs,
            "residual_step": train.residual_step, "medium_names": layout["medium"], "channel_names": names,
            "state_scales": scales, "state_std": stats["state"]["std"], "initial_field": INITIAL_FIELD[physics],
            "pml_size": int(solver_cfg.pml_size)}
        grid = Grid(shape, ds.config.spacing)
        residual_fn = None
        if physics == "maxwell":
            spec["courant"] = float(solver_cfg.courant)
            if train.loss.residual > 0:
                residual_fn = YeeResidual(grid, macro_steps, solver_cfg.courant, solver_cfg.pml_size,
                                          state_scales=scales, solver_target=train.solver_target)
        else:
            spec |= {"scheme": solver_cfg.scheme, "fd_order": solver_cfg.fd_order,
                     "fd_coefficients": solver_cfg.fd_coefficients}
            if train.loss.residual > 0:
                residual_fn = WaveResidual(grid, solver_dt * macro_steps, solver_cfg.scheme,
                                           fd_order=solver_cfg.fd_order, pml_size=solver_cfg.pml_size,
                                           substeps=macro_steps, state_scales=scales,
                                           solver_target=train.solver_target,
                                           fd_coefficients=solver_cfg.fd_coefficients)
        factors = np.asarray(scales, np.float32)

        def transform(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = self.to_batch(batch)
            out["state"] = out["state"] * factors.reshape((1, 1, -1) + (1,) * (out["state"].ndim - 3))
            return out

        return Prepared(model_config, transform, spec, residual_fn=residual_fn,
                        reversal_mask=reversal_mask(shape, solver_cfg.pml_size))

    def loss(self, cfg: Any, *, residual_fn: Any = None, reversal_mask: Any = None,
             emitters: Any = None) -> tuple[Any, Any]:
        def loss_fn(model, batch, key):
            return stepper_loss(model, batch, key, unroll=cfg.unroll, pushforward=cfg.pushforward,
                                noise_std=cfg.noise_std, residual_step=cfg.residual_step, windows=cfg.windows,
                                weights=cfg.loss, reversal_signs=cfg.reversal_signs, reversal_mask=reversal_mask,
                                residual_fn=residual_fn)

        def sample_fn(model, batch):
            return stepper_sample(model, batch, residual_step=cfg.residual_step)

        return loss_fn, sample_fn

    def check_compatible(self, ds: Any, spec: dict[str, Any]) -> None:
        dt = float(ds.manifest["constants"]["dt"])
        every = (ds.config.optics if spec.get("physics") == "maxwell" else ds.config.acoustic).save_every
        if not math.isclose(dt, spec["solver_dt"], rel_tol=1e-6) or every != spec["macro_steps"]:
            raise ValueError(f"dataset {ds.path} has dt={dt:.6g} s x {every} steps per frame; "
                             f"the surrogate's macro step is {spec['solver_dt']:.6g} s x {spec['macro_steps']} "
                             f"(pin data.acoustic.dt to the training set's)")

    def evaluate(self, model: Any, ds: Any, idx: np.ndarray, spec: dict[str, Any], batch: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        mask = reversal_mask(tuple(spec["shape"]), int(spec.get("pml_size", 0)))
        return evaluate_stepper(model, ds, idx, spec["state_std"], batch, reversal_mask=mask)

    def speed(self, model: Any, ds: Any, sample: dict[str, np.ndarray], spec: dict[str, Any],
              gradient: bool) -> dict[str, Any]:
        media = jnp.stack([jnp.asarray(sample[n]) for n in spec["medium_names"]], 1)
        frames = sample[spec["channel_names"][0]].shape[1]
        make, read = solver(spec)
        return stepper_speed(model, make, media, jnp.asarray(sample[spec.get("initial_field", "p0")]), frames - 1,
                             gradient=gradient, read=read)

    def trust_samples(self, ds: Any, spec: dict[str, Any], idx: np.ndarray, batch: int) -> Iterator[TrustSamples]:
        """One sample per frame but the last of every trajectory: inputs ``(state (n, C, *shape),
        medium (n, M, *shape))`` (SI units, unscaled channels), truth the next frame's state ``(n, C, *shape)``."""
        for raw in batches(ds, idx, self.fields(ds.fields), batch):
            b = self.to_batch(raw)
            states, media = b["state"], b["medium"]
            n, steps = states.shape[0], states.shape[1] - 1
            media = np.repeat(media, steps, axis=0)
            yield TrustSamples((states[:, :-1].reshape(n * steps, *states.shape[2:]), media),
                               states[:, 1:].reshape(n * steps, *states.shape[2:]), media)

    def trust_signals(self, spec: dict[str, Any], *, ensemble: bool) -> TrustSignals:
        """``residual``: the RMS of the wave (acoustic) or Yee (Maxwell) residual of the predicted step
        (:mod:`training.physics`, the data's scheme: 0 for the solver's own step); ``time_reversal``:
        ``||R Phi(R Phi(u)) - u|| / ||u||`` with channels scaled as the network sees them, outside the
        absorbing layer (for an ensemble: of member 0). Both need states with velocity / H; a
        pressure-only stepper has none (and raises unless ``ensemble``)."""
        grid = Grid(tuple(spec["shape"]), spec["spacing"])
        channels = len(spec["reversal_signs"])
        if channels == 1 and not ensemble:
            raise ValueError("a pressure-only stepper has no one-step label-free signal (the wave residual needs "
                             "velocity, time reversal too); train an ensemble (training.ensemble) for its spread")
        if spec.get("physics") == "maxwell":
            residual = YeeResidual(grid, spec["macro_steps"], spec["courant"], spec["pml_size"])
        else:
            residual = WaveResidual(grid, spec["solver_dt"] * spec["macro_steps"], spec["scheme"], spec["fd_order"],
                                    spec["pml_size"], substeps=spec["macro_steps"],
                                    fd_coefficients=spec.get("fd_coefficients", "taylor"))
        mask = reversal_mask(tuple(spec["shape"]), int(spec["pml_size"]))
        scales = np.asarray(spec["state_scales"], np.float32).reshape((-1,) + (1,) * grid.ndim)
        weights = jnp.asarray(scales if mask is None else scales * mask[None])

        def forward(op: Any, state: jax.Array, medium: jax.Array) -> jax.Array:
            return op.with_medium(medium).step(state)

        def physics(op: Any, pred: jax.Array, state: jax.Array, medium: jax.Array) -> jax.Array:
            if channels == 1:
                return jnp.zeros((0,), pred.dtype)
            return jnp.stack([rms(residual(jnp.stack([state, pred]), medium)),
                              time_reversal(op.with_medium(medium), state, weights)])

        return TrustSignals(("residual", "time_reversal") if channels > 1 else (), forward, physics)

    def trust_error(self, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """Relative L2 of channel 0 (pressure / Ez) of the next state, as ``pdesurrogate evaluate``."""
        return metrics.relative_l2(prediction[:, 0], truth[:, 0])


def evaluate_stepper(sur: Any, ds: Any, idx: np.ndarray, stds: list[float], batch: int = 8,
                     reversal_mask: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statistics of a learned stepper on samples ``idx`` of a trajectory dataset, plus arrays for figures.

    ``reversal_mask`` (``grid.shape``; 0 in and next to the absorbing layer) restricts the
    time-reversal inconsistency to where the physics is reversible, as the training loss does.
    """
    task = StepperTask()
    fields = task.fields(ds.fields) + ["lesion_mask"]

    @jax.jit
    def predict(states, media):
        one = jax.vmap(lambda u, m: sur.with_medium(m).step(u))  # one macro step from every frame
        B, T = states.shape[:2]
        nxt = one(states[:, :-1].reshape(B * (T - 1), *states.shape[2:]),
                  jnp.repeat(media, T - 1, axis=0)).reshape(B, T - 1, *states.shape[2:])

        def roll(u0, m):
            s = sur.with_medium(m)
            return jax.lax.scan(lambda u, _: (s.step(u),) * 2, u0, None, length=T - 1)[1]

        rolled = jax.vmap(roll)(states[:, 0], media)
        # R Phi R Phi u from every frame (frame 0 alone has zero velocity, a special state)
        tr = jax.vmap(lambda u, m: (lambda s: s.reverse(s.step(s.reverse(s.step(u)))))(sur.with_medium(m)))(
            states.reshape(B * T, *states.shape[2:]), jnp.repeat(media, T, axis=0))
        return nxt, rolled, tr

    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("one", "state", "base", "roi", "tr", "low", "mid", "high",
                                                        "tail")}
    fno = sur.model if isinstance(sur.model, FNO) else None
    roll_err, roll_base = [], []
    worst: dict[str, Any] = {"err": -1.0}
    for raw in batches(ds, idx, fields, batch):
        b = task.to_batch({k: v for k, v in raw.items() if k != "lesion_mask"})
        states, media = jnp.asarray(b["state"]), jnp.asarray(b["medium"])
        nxt, rolled, tr = jax.device_get(predict(states, media))
        states = np.asarray(states)
        B, T = states.shape[:2]
        truth = states[:, 1:]
        flat = lambda a: a.reshape(B * (T - 1), *a.shape[2:])  # noqa: E731
        one = metrics.relative_l2(flat(nxt[:, :, 0]), flat(truth[:, :, 0]))
        acc["one"].append(one)
        acc["state"].append(metrics.normalised_relative_l2(flat(nxt), flat(truth), stds))
        acc["base"].append(metrics.relative_l2(flat(states[:, :-1, 0]), flat(truth[:, :, 0])))
        if fno is not None:
            acc["tail"].append(metrics.spectral_tail(flat(truth[:, :, :1] - states[:, :-1, :1]), flat(truth[:, :, :1]),
                                                      fno.spectral[0].modes, fno.padding))
        for k, v in metrics.band_errors(flat(nxt[:, :, 0]), flat(truth[:, :, 0]), len(ds.config.shape)).items():
            acc[k].append(v)
        acc["roi"].append(metrics.roi_errors(nxt[:, :, 0], truth[:, :, 0], raw["lesion_mask"]))  # all steps
        if states.shape[2] > 1:
            w = 1.0 if reversal_mask is None else reversal_mask
            acc["tr"].append(metrics.normalised_relative_l2(tr * w, states.reshape(tr.shape) * w, stds))
        roll_err.append(np.stack([metrics.relative_l2(rolled[:, t, 0], truth[:, t, 0]) for t in range(T - 1)], 1))
        roll_base.append(np.stack([metrics.relative_l2(states[:, 0, 0], truth[:, t, 0]) for t in range(T - 1)], 1))
        i = int(np.argmax(one))
        if one[i] > worst["err"]:
            worst = {"err": float(one[i]), "pred": flat(nxt)[i, 0], "truth": flat(truth)[i, 0],
                     "input": flat(states[:, :-1])[i, 0]}
    s = summarise(acc)
    out = {"rel_l2": s["one"], "rel_l2_state": s["state"], "baseline_rel_l2": s["base"],
           "bands": {k: s[k] for k in metrics.BANDS}, "roi": s["roi"],
           "time_reversal": s["tr"] if acc["tr"] else None,
           "spectral_tail": s["tail"] if acc["tail"] else None,
           "rollout": metrics.rollout_curve(np.concatenate(roll_err)),
           "baseline_rollout": metrics.rollout_curve(np.concatenate(roll_base))}
    return out, {"worst": worst, "one": np.concatenate(acc["one"]), "base": np.concatenate(acc["base"])}
