"""Trained models as drop-in replacements for the reference solvers.

- :class:`Surrogate`: a learned :class:`solvers.protocol.Stepper`. Its state is the channel stack
  ``(C, *grid.shape)`` of the solver state it learned from (acoustic: ``[p, v_0, ..., v_{d-1}]``
  or ``[p]``; Maxwell TM: ``[Ez, Hx~, Hy~]``); one ``step`` is a macro step of ``macro_steps``
  solver steps, ``dt = macro_steps * solver_dt``; ``reverse`` multiplies the channels by the
  time-reversal signs (velocity / H flipped). :meth:`Surrogate.rollout` records sensor traces
  along a rollout like :func:`solvers.acoustic.simulate`.
- :class:`FieldOperator`: one pass from a medium (plus an optional condition such as an
  illumination angle) to the complex phasor fields ``(F, *grid.shape)``, or to measurements at
  points (:meth:`FieldOperator.measure`).
- :class:`TraceOperator` (a :class:`FieldOperator`): one pass from a medium and an emitting ring
  element to the USCT traces at every ring element, ``(nt, n_elements)``; :meth:`TraceOperator.measure`
  gives all shots of a sample like the ``usct`` dataset's ``traces``.

Both are equinox modules (pytrees) holding the network state and the medium, so ``jit``, ``vmap``
and ``grad`` compose with them; gradients with respect to the medium flow through
:meth:`Surrogate.with_medium` / the ``medium`` argument. Computation follows the input dtype.
Both restore from a training run directory (``pdesurrogate train`` output) in a fresh process
with ``load(run_dir)``; the run's ``surrogate.json`` records what the network was trained on, and
:func:`load` restores any run as the class it names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pdesurrogate.models import channels_to_complex, distance_channels, load_model, predict_field, predict_step
from solvers.grid import Grid
from solvers.points import PointSampler
from solvers.protocol import StepperModule
from solvers.validate import check_int_range, is_concrete

SURROGATE_FILE = "surrogate.json"
CHECKPOINTS = ("best", "last")


def read_spec(run_dir: str | Path) -> dict[str, Any]:
    """The ``surrogate.json`` of a training run directory (task, grid, time step, channels, ...)."""
    path = Path(run_dir) / SURROGATE_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a surrogate training run (no {SURROGATE_FILE}); "
                         f"train one with `pdesurrogate train`")
    return json.loads(path.read_text())


def load_run_model(run_dir: str | Path, checkpoint: str = "best") -> tuple[nnx.Module, dict[str, Any]]:
    """``(model, meta)`` of a run: ``checkpoint="best"`` (best validation loss; falls back to the
    last checkpoint when the run had no validation) or ``"last"``."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {list(CHECKPOINTS)}, got {checkpoint!r}")
    run_dir = Path(run_dir)
    best = run_dir / "best"
    if checkpoint == "best" and best.is_dir() and any(p.name.isdigit() for p in best.iterdir()):
        return load_model(best)
    return load_model(run_dir / "checkpoints")


def _medium_array(medium: Any, names: tuple[str, ...], shape: tuple[int, ...]) -> jax.Array:
    """A medium object (attributes ``names``) or an array ``(M, *shape)`` / ``shape`` -> ``(M, *shape)``."""
    if all(hasattr(medium, n) for n in names):
        parts = [jnp.broadcast_to(jnp.asarray(getattr(medium, n)), shape) for n in names]
        dtype = jnp.result_type(*parts)
        return jnp.stack([p.astype(dtype) for p in parts])
    arr = jnp.asarray(medium)
    if arr.shape == shape and len(names) == 1:
        arr = arr[None]
    if arr.shape != (len(names), *shape):
        raise ValueError(f"medium must be an object with {list(names)} or an array of shape "
                         f"{(len(names), *shape)}, got {arr.shape}")
    if is_concrete(arr) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError("medium must be finite everywhere")
    return arr


class SurrogateResult(eqx.Module):
    """Output of :meth:`Surrogate.rollout` (the structure of :class:`solvers.acoustic.SimulationResult`).

    Attributes:
        time: ``(n + 1,)`` times ``k * dt`` in s (``time[0] = 0``: the initial state).
        traces: ``(n + 1, n_sensors)`` channel-0 values (pressure in Pa) at the sensors,
            ``traces[k]`` at ``time[k]``; ``None`` without sensors.
        pressure: channel 0 of the final state, ``grid.shape``.
        states: ``(n + 1, C, *grid.shape)`` every macro state, or ``None`` unless requested.
        dt: the macro time step in s.
    """

    time: jax.Array
    traces: jax.Array | None
    pressure: jax.Array
    states: jax.Array | None
    dt: float = eqx.field(static=True)


class Surrogate(StepperModule):
    """A learned time stepper (implements :class:`solvers.protocol.Stepper`).

    Args:
        model: a one-sample model ``(C + M, *shape) -> (C, *shape)`` (see
            :func:`pdesurrogate.models.predict_step`).
        grid: the grid of the training data.
        medium: the medium: an object with the attributes ``medium_names`` (e.g.
            :class:`solvers.acoustic.Medium`) or an array ``(M, *grid.shape)``; ``None`` for a model
            without medium channels.
        solver_dt: the time step of the solver that made the data, in s.
        macro_steps: solver steps per surrogate step (``k``).
        reversal_signs: ``C`` signs of the time reversal (acoustic ``[1, -1, ...]``).
        residual: the model predicts the increment ``u_next - u``.
        medium_names: medium attributes in channel order.
        channel_names: names of the state channels.
        state_scales: ``C`` positive factors: the network sees channel ``c`` multiplied by
            ``state_scales[c]`` (e.g. velocity times an impedance, so that all channels share one
            magnitude in the training loss); the surrogate's own state stays in physical units.

    Attributes:
        dt: the macro time step ``macro_steps * solver_dt`` in s.
    """

    graphdef: nnx.GraphDef = eqx.field(static=True)
    model_state: nnx.State
    medium: jax.Array | None
    grid: Grid
    solver_dt: float = eqx.field(static=True)
    macro_steps: int = eqx.field(static=True)
    reversal_signs: tuple[float, ...] = eqx.field(static=True)
    residual: bool = eqx.field(static=True)
    medium_names: tuple[str, ...] = eqx.field(static=True)
    channel_names: tuple[str, ...] = eqx.field(static=True)
    state_scales: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, model: nnx.Module, grid: Grid, medium: Any, solver_dt: float, macro_steps: int,
                 reversal_signs: tuple[float, ...] | list[float], *, residual: bool = True,
                 medium_names: tuple[str, ...] = ("sound_speed", "density"),
                 channel_names: tuple[str, ...] | None = None, state_scales: tuple[float, ...] | None = None):
        signs = tuple(float(s) for s in reversal_signs)
        if not signs or any(abs(s) != 1.0 for s in signs):
            raise ValueError(f"reversal_signs must be a non-empty list of +1/-1, got {list(reversal_signs)}")
        if not (np.isfinite(solver_dt) and solver_dt > 0):
            raise ValueError(f"solver_dt must be a positive finite time step in s, got {solver_dt}")
        self.macro_steps = check_int_range("macro_steps", macro_steps, 1)
        self.graphdef, self.model_state = nnx.split(model)
        self.grid = grid
        self.solver_dt = float(solver_dt)
        self.reversal_signs = signs
        self.residual = bool(residual)
        self.medium_names = tuple(medium_names)
        self.channel_names = tuple(channel_names) if channel_names is not None else \
            ("p",) + tuple(f"v{d}" for d in range(len(signs) - 1))
        if len(self.channel_names) != len(signs):
            raise ValueError(f"channel_names has {len(self.channel_names)} entries for {len(signs)} channels")
        self.state_scales = tuple(float(v) for v in state_scales) if state_scales is not None else (1.0,) * len(signs)
        if len(self.state_scales) != len(signs) or not all(np.isfinite(v) and v > 0 for v in self.state_scales):
            raise ValueError(f"state_scales must hold {len(signs)} positive finite factors, got {state_scales}")
        self.medium = None if medium is None else _medium_array(medium, self.medium_names, grid.shape)

    # ----- construction ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | Path, medium: Any = None, *, checkpoint: str = "best") -> Surrogate:
        """Restore a trained stepper from a training run directory (in any process).

        Args:
            run_dir: ``pdesurrogate train`` output (``surrogate.json`` and orbax checkpoints).
            medium: the medium to bind (see the class); may be bound later with :meth:`with_medium`.
            checkpoint: ``"best"`` (validation) or ``"last"``.
        """
        spec = read_spec(run_dir)
        if spec["task"] != "stepper":
            raise ValueError(f"{run_dir} holds a {spec['task']!r} surrogate; use FieldOperator.load "
                             f"(or pdesurrogate.surrogate.load for any kind)")
        model, _ = load_run_model(run_dir, checkpoint)
        return cls(model, Grid(tuple(spec["shape"]), spec["spacing"]), medium, spec["solver_dt"],
                   spec["macro_steps"], spec["reversal_signs"], residual=spec["residual_step"],
                   medium_names=tuple(spec["medium_names"]), channel_names=tuple(spec["channel_names"]),
                   state_scales=tuple(spec.get("state_scales", [1.0] * len(spec["reversal_signs"]))))

    def with_medium(self, medium: Any) -> Surrogate:
        """The same surrogate bound to another medium (differentiable in ``medium``)."""
        return eqx.tree_at(lambda s: s.medium, self, _medium_array(medium, self.medium_names, self.grid.shape),
                           is_leaf=lambda x: x is None)

    @property
    def model(self) -> nnx.Module:
        """The network (a fresh nnx module view of the stored state)."""
        return nnx.merge(self.graphdef, self.model_state)

    @property
    def dt(self) -> float:
        """The macro time step in s."""
        return self.macro_steps * self.solver_dt

    @property
    def num_channels(self) -> int:
        return len(self.reversal_signs)

    # ----- the Stepper protocol ------------------------------------------------------------------
    def init(self, initial_field: jax.Array) -> jax.Array:
        """State ``(C, *shape)`` from the channel-0 field (pressure / Ez), other channels zero.

        A full state ``(C, *shape)`` is accepted as is.
        """
        u = jnp.asarray(initial_field)
        shape = self.grid.shape
        if u.shape == (self.num_channels, *shape):
            return u
        if u.shape != shape:
            raise ValueError(f"initial_field must have shape {shape} (or a full state "
                             f"{(self.num_channels, *shape)}), got {u.shape}")
        if is_concrete(u) and not bool(jnp.all(jnp.isfinite(u))):
            raise ValueError("initial_field must be finite everywhere")
        return jnp.concatenate([u[None], jnp.zeros((self.num_channels - 1, *shape), u.dtype)])

    def step(self, state: jax.Array) -> jax.Array:
        """One macro step ``dt`` of ``state`` ``(C, *shape)``."""
        self._check_state(state)
        medium = None if self.medium is None else self.medium.astype(state.dtype)
        scales = jnp.asarray(self.state_scales, state.dtype).reshape((-1,) + (1,) * self.grid.ndim)
        return predict_step(self.model, state * scales, medium, residual=self.residual) / scales

    def run(self, state: jax.Array, n: int) -> jax.Array:
        """``n`` macro steps (``n`` a static int >= 0) with ``lax.scan``."""
        n = check_int_range("n", n, 0)
        self._check_state(state)
        final, _ = jax.lax.scan(lambda s, _: (self.step(s), None), state, None, length=n)
        return final

    def reverse(self, state: jax.Array) -> jax.Array:
        """Time reversal: multiply each channel by its sign (velocity / H flipped)."""
        self._check_state(state)
        signs = jnp.asarray(self.reversal_signs, state.dtype).reshape((-1,) + (1,) * self.grid.ndim)
        return state * signs

    def _check_state(self, state: jax.Array) -> None:
        if state.shape != (self.num_channels, *self.grid.shape):
            raise ValueError(f"state must have shape {(self.num_channels, *self.grid.shape)}, got {state.shape}")

    # ----- rollouts ------------------------------------------------------------------------------
    def rollout(self, initial: jax.Array, n: int, sensors: np.ndarray | None = None, *, kernel: str = "sinc",
                keep_states: bool = False) -> SurrogateResult:
        """Roll out ``n`` macro steps and read channel 0 at sensors after every step.

        Args:
            initial: channel-0 field ``grid.shape`` (e.g. ``p0``) or a full state ``(C, *shape)``.
            n: macro steps (static int >= 0); simulated time ``n * dt``.
            sensors: ``(n_sensors, ndim)`` positions in m (off-grid allowed), or ``None``.
            kernel: :class:`solvers.points.PointSampler` interpolation kernel: ``"sinc"`` as
                ``acoustic.simulate``'s sensors, ``"linear"`` as the Maxwell solver's point monitors.
            keep_states: also return every state ``(n + 1, C, *shape)``.
        """
        n = check_int_range("n", n, 0)
        state = self.init(initial)
        sampler = None if sensors is None else PointSampler(self.grid, np.asarray(sensors), kernel=kernel)

        def body(s, _):
            s = self.step(s)
            return s, (None if sampler is None else sampler.gather(s[0]), s if keep_states else None)

        final, (rec, states) = jax.lax.scan(body, state, None, length=n)
        traces = None if sampler is None else jnp.concatenate([sampler.gather(state[0])[None], rec])
        if keep_states:
            states = jnp.concatenate([state[None], states])
        return SurrogateResult(time=self.dt * jnp.arange(n + 1, dtype=state.dtype), traces=traces,
                               pressure=final[0], states=states, dt=self.dt)


class FieldOperator(StepperModule):
    """A learned one-pass operator: medium (+ condition) -> complex phasor fields or measurements.

    Args:
        model: a one-sample model ``(M + K, *shape) -> (2F or F, *shape)`` (see
            :func:`pdesurrogate.models.predict_field`).
        grid: the grid of the training data.
        complex_output: the model outputs real/imaginary channel pairs of ``F`` complex fields.
        medium_names: medium attributes in channel order (optics: ``("refractive_index",)``).
        info: JSON metadata of the training data (e.g. ``angles_rad``, ``wavelength_m``,
            ``detector_positions_m``).
        offset: fields ``(F, *shape)`` added to the network's output, e.g. the incident field, so
            that the network learns only the scattered field (``None``: no offset).
    """

    graphdef: nnx.GraphDef = eqx.field(static=True)
    model_state: nnx.State
    grid: Grid
    complex_output: bool = eqx.field(static=True)
    medium_names: tuple[str, ...] = eqx.field(static=True)
    info_json: str = eqx.field(static=True)
    offset: jax.Array | None

    def __init__(self, model: nnx.Module, grid: Grid, *, complex_output: bool = True,
                 medium_names: tuple[str, ...] = ("refractive_index",), info: dict[str, Any] | None = None,
                 offset: jax.Array | None = None):
        if offset is not None and tuple(np.shape(offset)[1:]) != grid.shape:
            raise ValueError(f"offset must have shape (F, *{grid.shape}), got {np.shape(offset)}")
        self.offset = None if offset is None else jnp.asarray(offset)
        self.graphdef, self.model_state = nnx.split(model)
        self.grid = grid
        self.complex_output = bool(complex_output)
        self.medium_names = tuple(medium_names)
        self.info_json = json.dumps(info or {}, sort_keys=True)

    @classmethod
    def load(cls, run_dir: str | Path, *, checkpoint: str = "best") -> FieldOperator:
        """Restore a trained field operator from a training run directory (in any process); a USCT
        run (task ``traces``) restores as a :class:`TraceOperator`."""
        spec = read_spec(run_dir)
        kind = SURROGATES.get(spec["task"], cls)
        if cls is FieldOperator and kind is not cls and issubclass(kind, FieldOperator):
            return kind.load(run_dir, checkpoint=checkpoint)
        if spec["task"] != "field":
            raise ValueError(f"{run_dir} holds a {spec['task']!r} surrogate; use Surrogate.load "
                             f"(or pdesurrogate.surrogate.load for any kind)")
        model, _ = load_run_model(run_dir, checkpoint)
        offset = np.load(Path(run_dir) / spec["offset_file"]) if spec.get("offset_file") else None
        return cls(model, Grid(tuple(spec["shape"]), spec["spacing"]), complex_output=spec["complex_output"],
                   medium_names=tuple(spec["medium_names"]), info=spec.get("info", {}), offset=offset)

    @property
    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.model_state)

    @property
    def info(self) -> dict[str, Any]:
        """Metadata of the training data (angles, wavelength, detector positions, ...)."""
        return json.loads(self.info_json)

    def __call__(self, medium: Any, condition: jax.Array | None = None) -> jax.Array:
        """Fields of one medium: complex ``(F, *shape)`` (or real channels when not complex).

        Args:
            medium: an object with ``medium_names`` attributes or an array ``(M, *shape)``
                (``shape`` alone for one channel).
            condition: ``(K,)`` scalars or ``(K, *shape)`` maps (e.g. an illumination angle), if the
                model was trained with them.
        """
        med = _medium_array(medium, self.medium_names, self.grid.shape)
        out = predict_field(self.model, med, condition)
        out = channels_to_complex(out) if self.complex_output else out
        return out if self.offset is None else out + self.offset.astype(out.dtype)

    def measure(self, medium: Any, positions: np.ndarray | None = None, condition: jax.Array | None = None, *,
                kernel: str = "linear") -> jax.Array:
        """Fields read at points: ``(F, n_points)``.

        Args:
            positions: ``(n_points, ndim)`` positions in m shared by every field, or
                ``(F, n_points, ndim)`` one set per field (e.g. one detector line per angle);
                default: the training data's ``detector_positions_m``.
        """
        pos = np.asarray(positions if positions is not None else self.info.get("detector_positions_m"))
        if pos.ndim == 0:
            raise ValueError("positions must be given (the training data recorded no detector_positions_m)")
        fields = self(medium, condition)
        per_field = pos if pos.ndim == 3 else np.broadcast_to(pos, (fields.shape[0], *pos.shape))
        if per_field.shape[0] != fields.shape[0]:
            raise ValueError(f"positions hold {per_field.shape[0]} point sets for {fields.shape[0]} fields")

        def gather(f: jax.Array, p: np.ndarray) -> jax.Array:
            s = PointSampler(self.grid, p, kernel=kernel)
            if jnp.iscomplexobj(f):
                return jax.lax.complex(s.gather(f.real), s.gather(f.imag))
            return s.gather(f)

        return jnp.stack([gather(f, p) for f, p in zip(fields, per_field)])


class TraceOperator(FieldOperator):
    """A learned USCT shot operator: medium + emitting ring element -> traces at the ring elements.

    The emitter enters the network as its distance map ``|x - x_e| / ring_radius`` (see
    :func:`pdesurrogate.models.distance_channels`); the network (a
    :class:`pdesurrogate.models.TraceNet`) predicts the traces minus those of the homogeneous water
    medium, which the operator adds back (``offset``).

    Args:
        model: a one-sample model ``(M + 1, *shape) -> (nt, n_elements)``.
        grid: the grid of the training data.
        info: the data's geometry: ``elements_m`` ``(n_elements, 2)`` ring positions (m),
            ``ring_radius_m``, ``emitters`` (the dataset's emitting elements), ``dt`` (s), ...
        offset: ``(n_elements, nt, n_elements)`` water traces, row ``e`` for element ``e`` emitting.
        medium_names: medium attributes in channel order.
    """

    def __init__(self, model: nnx.Module, grid: Grid, *, info: dict[str, Any], offset: jax.Array,
                 medium_names: tuple[str, ...] = ("sound_speed", "density")):
        for key in ("elements_m", "ring_radius_m", "emitters"):
            if key not in info:
                raise ValueError(f"info must hold {key!r} (the USCT geometry of the training data)")
        n_el = len(info["elements_m"])
        if np.ndim(offset) != 3 or np.shape(offset)[0] != n_el:
            raise ValueError(f"offset must have shape ({n_el}, nt, n_receivers), got {np.shape(offset)}")
        self.offset = jnp.asarray(offset)
        self.graphdef, self.model_state = nnx.split(model)
        self.grid = grid
        self.complex_output = False
        self.medium_names = tuple(medium_names)
        self.info_json = json.dumps(info, sort_keys=True)

    @classmethod
    def load(cls, run_dir: str | Path, *, checkpoint: str = "best") -> TraceOperator:
        """Restore a trained trace operator from a training run directory (in any process)."""
        spec = read_spec(run_dir)
        if spec["task"] != "traces":
            raise ValueError(f"{run_dir} holds a {spec['task']!r} surrogate, not a USCT trace operator")
        model, _ = load_run_model(run_dir, checkpoint)
        return cls(model, Grid(tuple(spec["shape"]), spec["spacing"]), info=spec["info"],
                   offset=np.load(Path(run_dir) / spec["offset_file"]), medium_names=tuple(spec["medium_names"]))

    @property
    def num_elements(self) -> int:
        return int(self.offset.shape[0])

    def _element(self, element: int | jax.Array) -> jax.Array:
        if is_concrete(element):
            e = np.asarray(element)
            if e.shape != () or not np.issubdtype(e.dtype, np.integer) or not 0 <= int(e) < self.num_elements:
                raise ValueError(f"element must be an integer in [0, {self.num_elements}), got {element!r}")
        return jnp.asarray(element, jnp.int32)

    def __call__(self, medium: Any, element: int | jax.Array = 0) -> jax.Array:
        """Traces ``(nt, n_elements)`` (Pa) of one shot: ring element ``element`` emits.

        Args:
            medium: an object with ``medium_names`` attributes or an array ``(M, *shape)``.
            element: index of the emitting ring element, ``0 <= element < n_elements`` (an int or
                an integer tracer, e.g. under ``vmap``).
        """
        med = _medium_array(medium, self.medium_names, self.grid.shape)
        e = self._element(element)
        info = self.info
        position = jnp.asarray(info["elements_m"], jnp.float32)[e][None]
        cond = distance_channels(self.grid.shape, self.grid.spacing, position, info["ring_radius_m"])[0]
        out = predict_field(self.model, med, cond.astype(med.dtype))
        return out + self.offset[e].astype(out.dtype)

    def measure(self, medium: Any, elements: Any = None) -> jax.Array:
        """Traces of several shots, ``(S, nt, n_elements)``; default: the training data's emitters
        (the layout of the ``usct`` dataset's ``traces``)."""
        idx = np.asarray(self.info["emitters"] if elements is None else elements)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"elements must be a non-empty list of element indices, got {elements!r}")
        for e in idx:
            self._element(e)
        return jax.vmap(lambda e: self(medium, e))(jnp.asarray(idx, jnp.int32))


# surrogate.json "task" -> the class that restores it (one line per deployed surrogate kind)
SURROGATES: dict[str, type[StepperModule]] = {"stepper": Surrogate, "field": FieldOperator, "traces": TraceOperator}


def load(run_dir: str | Path, *, checkpoint: str = "best") -> Surrogate | FieldOperator:
    """Any trained surrogate of a training run directory, restored as the class its
    ``surrogate.json`` ``task`` names (:data:`SURROGATES`): a :class:`Surrogate`, a
    :class:`FieldOperator` or a :class:`TraceOperator`.

    Args:
        run_dir: ``pdesurrogate train`` output (``surrogate.json`` and orbax checkpoints).
        checkpoint: ``"best"`` (validation) or ``"last"``.
    """
    spec = read_spec(run_dir)
    if spec.get("task") not in SURROGATES:
        raise ValueError(f"{run_dir}: surrogate.json task must be one of {list(SURROGATES)}, got {spec.get('task')!r}")
    return SURROGATES[spec["task"]].load(run_dir, checkpoint=checkpoint)
