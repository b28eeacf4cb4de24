"""The inversion loop shared by every modality: stages, optimisers, item subsets, history, resume.

An inversion minimises, stage by stage,

    J(m) = mean_{i in I_k} phi_i(predict(m, I_k)_i) + R(m),     m in the box of ``bounds``

over medium parameters ``m`` (one real array; a modality with complex parameters stacks real and
imaginary parts on a leading axis), where ``I_k`` is the subset of items (shots, angles) drawn for
iteration ``k``, ``phi_i`` the stage's per-item misfit and ``R`` the regulariser.

**Variables.** The optimiser works on ``x`` with ``m = P(m_ref + u * s * x)``: ``m_ref`` is the
model at the start of the stage, ``P`` the projection onto the bounds, ``s`` the square root of the
stage's diagonal preconditioner, normalised to a maximum of 1, and ``u`` the unit: ``scale`` (a
typical model update in parameter units) for Adam, ``scale * sqrt(n_active)`` for L-BFGS, whose first
step has unit norm in ``x`` (``n_active``: the number of parameters with ``s > 0``), so that its first
trial changes the model by about ``scale`` per parameter. A gradient step in ``x`` is therefore the
preconditioned step ``-u^2 diag(s^2) grad_m J`` in ``m``, and the line search sees the same function
it steps on.
Pixels where ``s = 0`` (e.g. outside the region being imaged) keep ``m_ref``. After each update
``x`` is reset where ``P`` clipped, so the iterate stays feasible.

**Optimisers** (per stage): ``"lbfgs"`` (``optax.lbfgs`` with the zoom line search; each line-search
step is one more objective-and-gradient evaluation, counted in ``evaluations`` and in the call
counters) and ``"adam"`` (``learning_rate`` in units of ``scale``). Every stage starts a fresh
optimiser state (the objective changes between stages).

**Items.** ``items_per_iteration=None`` uses every item; otherwise a random subset, drawn without
replacement from a ``jax.random`` key seeded by ``seed`` and split once per iteration.

**History.** One dict per iteration: ``iteration`` (1-based, over all stages), ``stage``, ``forward``,
``misfit`` (data misfit at the iterate the step started from, on that iteration's items; for a
corrected surrogate the corrected misfit), ``objective`` (misfit + regulariser), ``seconds``
(cumulative wall time of steps, corrections and preconditioners, compilation excluded),
``compile_seconds`` (cumulative), ``solver_calls`` / ``surrogate_calls`` (cumulative item forward
runs; a gradient counts as one call), ``evaluations`` (objective evaluations this iteration),
``rel_error`` (after the step) when an ``error`` function is given, and on iterations that refreshed
a :class:`Corrected` model ``centre_misfit`` (the solver's misfit, mean over all items, at the
candidate centre), ``accepted`` and ``radius`` (the trust radius after the update); in a
:class:`~pdesurrogate.inversion.guarded.GuardedForward` stage ``decision`` (the model the step used),
``held`` (the guard accepted the surrogate but the stage's ``hold`` kept the solver), ``reason``,
``bound`` (the guard's error bound at the iterate), ``check`` (whether the guard ran its solver check
there), ``guard_error`` (the surrogate's error at a check, else NaN) and ``guard_seconds`` (this
iteration's decision and check, in ``seconds``, with any compilation they trigger), and the calls of the
guard's decisions and checks are counted too.

**Checkpoint/resume.** With ``checkpoint_dir``, the whole state (current and stage-reference
parameters, optimiser variables and state, preconditioner, iteration counters, history, RNG key,
hybrid centre) is written atomically to ``checkpoint_dir/state.npz`` after every iteration. Calling
:func:`run` again with the same arguments continues from it; the continued run is bit-identical to
an uninterrupted one (the same compiled programs run on the same arrays). A checkpoint of a different
inversion (other stages, items, seed or parameter shape) raises ``ValueError``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdesurrogate.inversion.forward import Corrected, ForwardModel
from pdesurrogate.inversion.guarded import GuardedForward
from pdesurrogate.inversion.regularization import Bounds, TotalVariation
from pdesurrogate.io import atomic_path
from pdesurrogate.progress import Progress

OPTIMIZERS = ("lbfgs", "adam")
CHECKPOINT_FILE = "state.npz"

Misfit = Callable[[jax.Array, jax.Array, Any], jax.Array]
Preconditioner = Callable[[np.ndarray, "Stage"], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class Stage:
    """One stage of an inversion (a frequency band, a forward model, an optimiser).

    Attributes:
        name: label in the history.
        iterations: number of iterations (>= 0).
        forward: a :class:`ForwardModel`, a :class:`Corrected` surrogate or a
            :class:`~pdesurrogate.inversion.guarded.GuardedForward` (the guard picks the model per iteration).
        misfit: ``phi(predicted, item, data) -> scalar``: one item's misfit from its predicted data
            (``predict(m, items)[j]``), its index (an int32 scalar) and the stage's ``data``. The
            stage minimises the mean over the iteration's items, so scale each item's term as it
            should weigh.
        data: a pytree of arrays passed to ``misfit`` (observed data, filters, weights). Stages that
            differ only in ``data`` (e.g. frequency bands) share one compiled program.
        optimizer: ``"lbfgs"`` or ``"adam"``.
        learning_rate: Adam's step in units of the loop's ``scale`` (ignored by L-BFGS).
        items_per_iteration: items drawn per iteration (``None``: all).
        linesearch_steps: L-BFGS's maximum zoom line-search steps per iteration.
        memory: L-BFGS's number of stored correction pairs.
    """

    name: str
    iterations: int
    forward: ForwardModel | Corrected | GuardedForward
    misfit: Misfit
    data: Any = None
    optimizer: str = "lbfgs"
    learning_rate: float = 0.05
    items_per_iteration: int | None = None
    linesearch_steps: int = 16
    memory: int = 10

    def validate(self, n_items: int) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"stage {self.name!r}: iterations must be an integer >= 0, got {self.iterations!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"stage {self.name!r}: optimizer must be one of {list(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"stage {self.name!r}: learning_rate must be a finite number > 0, "
                             f"got {self.learning_rate!r}")
        k = self.items_per_iteration
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_items):
            raise ValueError(f"stage {self.name!r}: items_per_iteration must be None or an integer in [1, {n_items}], "
                             f"got {k!r}")
        for key, lo in (("linesearch_steps", 1), ("memory", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"stage {self.name!r}: {key} must be an integer >= {lo}, got {v!r}")
        if not isinstance(self.forward, ForwardModel | Corrected | GuardedForward):
            raise ValueError(f"stage {self.name!r}: forward must be a ForwardModel, Corrected or GuardedForward, "
                             f"got {type(self.forward).__name__}")

    @property
    def forward_name(self) -> str:
        return self.forward.name

    @property
    def program_key(self) -> tuple:
        """What the compiled step depends on (everything but the name, counts and ``data``)."""
        return (self.forward, self.misfit, self.optimizer, self.learning_rate, self.linesearch_steps, self.memory)


class Centre(NamedTuple):
    """The first-order correction of a :class:`Corrected` surrogate at the centre ``m``.

    Attributes:
        m: the centre, parameter shape.
        data: ``(n_items, ...)`` per item ``F_i(m) - S_i(m)``.
        grad: ``(n_items, *m.shape)`` per item ``grad phi_i(F_i)(m) - grad phi_i(S_i + data_i)(m)``.
        misfit: the solver's mean misfit over all items at ``m`` (a scalar).
        radius: the trust radius (a scalar, parameter units; ``inf`` without a trust region).
    """

    m: jax.Array
    data: jax.Array
    grad: jax.Array
    misfit: jax.Array
    radius: jax.Array


@dataclass
class InversionResult:
    """Output of :func:`run`.

    Attributes:
        params: the final parameters (numpy, the shape of ``initial``).
        history: one dict per iteration (see the module docstring).
        initial_error: ``error(initial)`` when an error function was given, else ``None``.
    """

    params: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    initial_error: float | None = None


def _optimizer(stage: Stage) -> optax.GradientTransformationExtraArgs:
    if stage.optimizer == "lbfgs":
        return optax.lbfgs(memory_size=stage.memory, linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=stage.linesearch_steps, initial_guess_strategy="one", increase_factor=4.0))
    return optax.adam(stage.learning_rate)


class _StageProgram(NamedTuple):
    step: Callable
    refresh: Callable | None
    to_x: Callable
    optimizer: optax.GradientTransformation
    compiled: dict  # argument signature -> compiled step


def _stage_program(stage: Stage, bounds: Bounds, regularizer: TotalVariation | None, scale: float,
                   forward: ForwardModel | Corrected | None = None) -> _StageProgram:
    """The jitted step (and centre refresh) of a stage, shared by stages of one ``program_key``;
    ``forward`` replaces the stage's forward model (a guarded stage's surrogate or solver)."""
    key = stage.program_key if forward is None else (forward, *stage.program_key[1:])
    return _program(key, bounds, regularizer, scale)


@functools.lru_cache(maxsize=16)
def _program(key: tuple, bounds: Bounds, regularizer: TotalVariation | None, scale: float) -> _StageProgram:
    fwd, misfit, optimizer, learning_rate, linesearch_steps, memory = key
    stage = Stage("", 0, fwd, misfit, optimizer=optimizer, learning_rate=learning_rate,
                  linesearch_steps=linesearch_steps, memory=memory)
    corrected = isinstance(fwd, Corrected)
    predict = fwd.surrogate.predict if corrected else fwd.predict
    opt = _optimizer(stage)

    def unit(s):
        return scale * jnp.sqrt(jnp.sum(s > 0).astype(s.dtype)) if stage.optimizer == "lbfgs" else scale

    def project(raw, centre):
        m = bounds.project(raw)
        return m if centre is None else jnp.clip(m, centre.m - centre.radius, centre.m + centre.radius)

    def objective(x, items, ref, s, centre, data):
        m = project(ref + unit(s) * s * x, centre)
        pred = predict(m, items)
        if corrected:
            pred = pred + centre.data[items]
        mis = jnp.mean(jax.vmap(misfit, in_axes=(0, 0, None))(pred, items, data))
        if corrected:
            mis = mis + jnp.mean(jax.vmap(lambda g: jnp.sum(g * (m - centre.m)))(centre.grad[items]))
        reg = regularizer(m) if regularizer is not None else jnp.zeros((), m.dtype)
        return mis + reg, mis

    def step(x, opt_state, items, ref, s, centre, data):
        f = lambda z: objective(z, items, ref, s, centre, data)  # noqa: E731
        (obj, mis), g = jax.value_and_grad(f, has_aux=True)(x)
        if stage.optimizer == "lbfgs":
            updates, opt_state = opt.update(g, opt_state, x, value=obj, grad=g, value_fn=lambda z: f(z)[0])
            n_ls = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps")
        else:
            updates, opt_state = opt.update(g, opt_state, x)
            n_ls = jnp.zeros((), jnp.int32)
        x = optax.apply_updates(x, updates)
        raw = ref + unit(s) * s * x
        m = project(raw, centre)
        x = jnp.where(m == raw, x, to_x(m, ref, s))
        return x, opt_state, m, obj, mis, n_ls

    def to_x(m, ref, s):
        return jnp.where(s > 0, (m - ref) / (unit(s) * jnp.where(s > 0, s, 1.0)), 0.0)

    refresh = None
    if corrected:
        def refresh(m_c, all_items, data):
            def one(i):
                i1 = i[None]
                (phi_f, f), g_f = jax.value_and_grad(
                    lambda m: (lambda p: (misfit(p, i, data), p))(fwd.solver.predict(m, i1)[0]), has_aux=True)(m_c)
                s_c, vjp = jax.vjp(lambda m: fwd.surrogate.predict(m, i1)[0], m_c)
                d = f - s_c
                (g_s,) = vjp(jax.grad(lambda p: misfit(p, i, data))(s_c + d))
                return d, g_f - g_s, phi_f

            d, g, phi = jax.lax.map(one, all_items)
            return Centre(m_c, d, g, jnp.mean(phi), jnp.asarray(jnp.inf, m_c.dtype))

    return _StageProgram(jax.jit(step), None if refresh is None else jax.jit(refresh), jax.jit(to_x), opt, {})


def _trust_update(old: Centre | None, candidate: Centre, radius: float | None) -> tuple[Centre, bool]:
    """The next centre of a :class:`Corrected` stage and whether ``candidate`` was accepted.

    The first centre of a stage gets the initial ``radius``. A candidate whose solver misfit does not
    exceed the old centre's is accepted and the radius doubles; otherwise the old centre stays and its
    radius shrinks fourfold (without a radius every candidate is accepted).
    """
    if old is None or radius is None:
        r = np.inf if radius is None else radius
        return candidate._replace(radius=jnp.asarray(r, candidate.m.dtype)), True
    if float(candidate.misfit) <= float(old.misfit):
        return candidate._replace(radius=2 * old.radius), True
    return old._replace(radius=old.radius / 4), False


def _guard_step(stage: Stage, m: jax.Array, meta: dict[str, Any], n_items: int, current: tuple[str | None, int],
                program: _StageProgram, opt_state: Any, x: jax.Array, setting: tuple,
                record: dict[str, Any]) -> tuple[tuple[str, int], _StageProgram, Any]:
    """Ask a guarded stage's guard about ``m`` before an iteration. ``current`` is ``(model, dwell)``:
    the model of the last iteration (``None`` at the stage's start) and its iterations since the last
    switch. Counts the guard's calls in ``meta``, writes ``decision``, ``held``, ``reason``, ``bound``,
    ``check``, ``guard_error`` and ``guard_seconds`` into ``record``, and returns ``((model, dwell),
    program, opt_state)``: the program of the model this iteration uses, the optimiser restarted when
    the model changed."""
    guard = stage.forward.decide(m, meta["iteration"] + 1)
    meta["surrogate_calls"] += n_items
    meta["solver_calls"] += n_items if guard["check"] else 0
    model, dwell = current
    held = guard["decision"] == "surrogate" and model == "solver" and dwell < stage.forward.hold
    decision = "solver" if held else guard["decision"]
    if decision != model:
        model, dwell = decision, 0
        program = _stage_program(stage, *setting, stage.forward.model(decision))
        opt_state = program.optimizer.init(x)  # the curvature pairs belong to the other model
    record |= {"decision": decision, "held": held, "reason": guard["reason"], "bound": guard["bound"],
               "check": guard["check"], "guard_error": guard["error"],
               "guard_seconds": guard["surrogate_s"] + guard["solver_s"]}
    return (model, dwell + 1), program, opt_state


def _compiled(program: _StageProgram, name: str, args: tuple, meta: dict[str, Any]) -> Callable:
    """``program.<name>`` compiled for ``args``' shapes (cached), its compile time added to ``meta``."""
    signature = name + str(jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), args))
    if signature not in program.compiled:
        t0 = time.perf_counter()
        program.compiled[signature] = getattr(program, name).lower(*args).compile()
        meta["compile_seconds"] += time.perf_counter() - t0
    return program.compiled[signature]


def _fingerprint(stages: list[Stage], initial: np.ndarray, n_items: int, seed: int) -> str:
    return json.dumps({"stages": [[s.name, s.iterations, s.optimizer, s.items_per_iteration, s.forward_name]
                                  for s in stages], "shape": list(initial.shape), "dtype": str(initial.dtype),
                       "n_items": n_items, "seed": seed})


def _save(path: Path, arrays: dict[str, Any], meta: dict[str, Any], opt_state: Any) -> None:
    leaves = {f"opt_{i}": np.asarray(v) for i, v in enumerate(jax.tree.leaves(opt_state))}
    payload = {k: np.asarray(v) for k, v in arrays.items() if v is not None} | leaves
    payload["meta"] = np.asarray(json.dumps(meta))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **payload)


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def _validate_run(stages: list[Stage], initial: np.ndarray, n_items: int, bounds: Bounds, scale: float,
                  seed: int, checkpoint_dir: str | Path | None) -> None:
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise ValueError(f"n_items must be an integer >= 1, got {n_items!r}")
    if not stages:
        raise ValueError("stages must hold at least one Stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be distinct, got {names}")
    for s in stages:
        s.validate(n_items)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0 (parameter units), got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    bounds.check("initial", initial)
    guarded = [s.name for s in stages if isinstance(s.forward, GuardedForward)]
    if guarded and checkpoint_dir is not None:
        raise ValueError(f"checkpoint_dir must be None with guarded stages {guarded}: the guard's state "
                         "(multiplier, monitor window, log) is not part of the checkpoint")


def _precondition(precondition: np.ndarray | Preconditioner | None, m: np.ndarray,
                  stage: Stage) -> tuple[np.ndarray, int]:
    """``(s, solver_calls)``: the normalised square root of the stage's diagonal preconditioner."""
    if precondition is None:
        return np.ones_like(m), 0
    diag, calls = precondition(m, stage) if callable(precondition) else (precondition, 0)
    diag = np.asarray(diag, m.dtype)
    if diag.shape != m.shape or not np.all(np.isfinite(diag)) or np.any(diag < 0) or not diag.max() > 0:
        raise ValueError(f"the preconditioner must be a finite non-negative array of shape {m.shape} with a positive "
                         f"maximum, got shape {diag.shape}")
    return np.sqrt(diag / diag.max()).astype(m.dtype), int(calls)


def run(stages: list[Stage], initial: np.ndarray, *, n_items: int, bounds: Bounds | None = None,
        regularizer: TotalVariation | None = None, scale: float = 1.0,
        precondition: np.ndarray | Preconditioner | None = None, error: Callable[[np.ndarray], float] | None = None,
        seed: int = 0, checkpoint_dir: str | Path | None = None, progress: bool = True,
        desc: str = "invert") -> InversionResult:
    """Run the stages in order from ``initial`` (see the module docstring).

    Args:
        stages: the :class:`Stage` s.
        initial: the starting parameters (any shape, real; float32 or float64 sets the precision).
        n_items: number of items (shots, angles); item indices run over ``[0, n_items)``.
        bounds: box constraints (default: none); ``initial`` must lie inside.
        regularizer: e.g. :class:`TotalVariation` (default: none).
        scale: a typical model update in parameter units (the optimiser's unit step).
        precondition: a fixed diagonal (array of ``initial``'s shape, >= 0) or a hook
            ``(m, stage) -> (diagonal, solver_calls)`` called at the start of each stage with the
            current parameters; ``None``: no preconditioning.
        error: ``m -> float`` evaluated after every iteration (``rel_error`` in the history).
        seed: seed of the item subsets.
        checkpoint_dir: directory of the resumable state (see the module docstring).
        progress: show a :class:`pdesurrogate.progress.Progress` bar on stderr.
        desc: the progress bar's label.

    Returns:
        an :class:`InversionResult`.
    """
    initial = np.asarray(initial)
    if not np.issubdtype(initial.dtype, np.floating):
        initial = initial.astype(np.float32)
    bounds = bounds or Bounds()
    stages = list(stages)
    _validate_run(stages, initial, n_items, bounds, scale, seed, checkpoint_dir)
    fingerprint = _fingerprint(stages, initial, n_items, seed)
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
    initial_error = None if error is None else float(error(initial))

    meta: dict[str, Any] = {"fingerprint": fingerprint, "stage": 0, "stage_iteration": 0, "iteration": 0,
                            "seconds": 0.0, "compile_seconds": 0.0, "solver_calls": 0, "surrogate_calls": 0,
                            "history": []}
    saved: dict[str, np.ndarray] = {"m": initial, "key": np.asarray(jax.random.PRNGKey(seed))}
    if path is not None and path.is_file():
        saved, meta = _load(path)
        if meta["fingerprint"] != fingerprint:
            raise ValueError(f"checkpoint_dir {checkpoint_dir} holds the state of a different inversion "
                             f"({meta['fingerprint']}); use another directory")
    m = jnp.asarray(saved["m"])
    key = jnp.asarray(saved["key"])
    total = sum(s.iterations for s in stages)
    bar = Progress(total=total, desc=desc, unit="it", initial=meta["iteration"], enabled=progress)
    all_items = jnp.arange(n_items, dtype=jnp.int32)

    for index in range(meta["stage"], len(stages)):
        stage = stages[index]
        resumed = index == meta["stage"] and meta["stage_iteration"] > 0
        if resumed and meta["stage_iteration"] >= stage.iterations:
            continue
        guarded = isinstance(stage.forward, GuardedForward)
        program = _stage_program(stage, bounds, regularizer, scale, stage.forward.surrogate if guarded else None)
        current: tuple[str | None, int] = (None, 0)  # a guarded stage's model and its iterations since a switch
        if resumed:
            ref, s, x = (jnp.asarray(saved[k]) for k in ("ref", "s", "x"))
            template = program.optimizer.init(x)
            n_leaves = len(jax.tree.leaves(template))
            opt_state = jax.tree.unflatten(jax.tree.structure(template),
                                           [jnp.asarray(saved[f"opt_{i}"]) for i in range(n_leaves)])
            centre = Centre(*(jnp.asarray(saved[f"centre_{k}"]) for k in Centre._fields)) \
                if "centre_m" in saved else None
        else:
            t0 = time.perf_counter()
            s_np, calls = _precondition(precondition, np.asarray(m), stage)
            meta["seconds"] += time.perf_counter() - t0
            meta["solver_calls"] += calls
            ref, s = m, jnp.asarray(s_np)
            x = jnp.zeros_like(m)
            opt_state = program.optimizer.init(x)
            centre = None
            meta["stage"], meta["stage_iteration"] = index, 0
        batch = stage.items_per_iteration or n_items
        for k in range(meta["stage_iteration"], stage.iterations):
            record: dict[str, Any] = {}
            t0 = time.perf_counter()
            if program.refresh is not None and k % stage.forward.refresh_every == 0:
                refresh = _compiled(program, "refresh", (m, all_items, stage.data), meta)
                t0 = time.perf_counter()
                candidate = jax.block_until_ready(refresh(m, all_items, stage.data))
                meta["solver_calls"] += n_items
                meta["surrogate_calls"] += n_items
                centre, accepted = _trust_update(centre, candidate, stage.forward.radius)
                if not accepted:  # back to the old centre
                    m = centre.m
                    x = program.to_x(m, ref, s)
                opt_state = program.optimizer.init(x)  # a new centre or radius is a new subproblem
                record |= {"centre_misfit": float(candidate.misfit), "accepted": accepted,
                           "radius": float(centre.radius)}
            if guarded:
                current, program, opt_state = _guard_step(stage, m, meta, n_items, current, program, opt_state, x,
                                                          (bounds, regularizer, scale), record)
            key, sub = jax.random.split(key)
            items = all_items if batch >= n_items else \
                jnp.sort(jax.random.choice(sub, n_items, (batch,), replace=False)).astype(jnp.int32)
            args = (x, opt_state, items, ref, s, centre, stage.data)
            meta["seconds"] += time.perf_counter() - t0
            compiled = _compiled(program, "step", args, meta)
            t0 = time.perf_counter()
            x, opt_state, m, obj, mis, n_ls = jax.block_until_ready(compiled(*args))
            meta["seconds"] += time.perf_counter() - t0
            evaluations = 1 + int(n_ls)
            kind = current[0] if guarded else \
                "surrogate" if isinstance(stage.forward, Corrected) else stage.forward.kind
            meta[f"{kind}_calls"] += evaluations * batch
            meta["iteration"] += 1
            meta["stage_iteration"] = k + 1
            record = {"iteration": meta["iteration"], "stage": stage.name, "forward": stage.forward_name,
                      "misfit": float(mis), "objective": float(obj), "seconds": meta["seconds"],
                      "compile_seconds": meta["compile_seconds"], "solver_calls": meta["solver_calls"],
                      "surrogate_calls": meta["surrogate_calls"], "evaluations": evaluations} | record
            if error is not None:
                record["rel_error"] = float(error(np.asarray(m)))
            meta["history"].append(record)
            if path is not None:
                arrays = {"m": m, "key": key, "ref": ref, "s": s, "x": x}
                if centre is not None:
                    arrays |= {f"centre_{k}": v for k, v in centre._asdict().items()}
                _save(path, arrays, meta, opt_state)
            bar.update(1, misfit=record["misfit"], **({"rel_error": record["rel_error"]} if error else {}))
    bar.close()
    return InversionResult(np.asarray(m), list(meta["history"]), initial_error)
