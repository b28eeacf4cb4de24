"""How many Fourier modes a learned wave stepper needs: the spectral tail and a training check.

    uv run python experiments/stepper_modes.py                      # CPU, about an hour on 2 cores
    uv run python experiments/stepper_modes.py --steps 300 --modes 8 16   # a quicker look

A residual FNO stepper predicts the increment ``u_{n+1} - u_n`` of a macro step. Its spectral
path carries only the retained modes; its pointwise (1x1) path rebuilds finer detail only in
place (it can remove the old detail, not move it across cells). The share of the increment
outside the retained modes (:func:`pdesurrogate.evaluation.spectral_tail`, on the model's padded
grid) says how much of each step the spectral path cannot carry.

1. **Tail at the GPU configs' 128^2 size.** A few ``acoustic_stepper_128`` and
   ``maxwell_stepper_128`` trajectories (``experiments/train_reference.py``'s GPU settings: 20
   frames), and the tail of every macro step's pressure (Ez) increment for each ``modes`` at the
   configs' padding of 8 cells.
2. **Training check at 64^2**, where the CPU can train: the same physics (spacing, sources, time
   step, macro step) on a 64^2 grid, so that ``modes`` m at 64^2 corresponds to 2m at 128^2. One
   FNO (width 32, depth 4, padding 8) per ``modes``, trained alike on the one-step data loss, and
   its test one-step error next to the tail (the evaluation's ``spectral_tail``). ``--kind ffno``
   trains the factorised F-FNO instead (results file suffix ``_ffno``), whose parameters grow with
   the sum of the per-axis modes rather than their product; ``--time-reversal W`` adds the
   time-reversal loss (``_tr<W>``) and ``--unroll N`` unrolls the data loss over N macro steps
   (``_u<N>``).
3. **Cost of one network pass at 128^2** (batch 32, forward and gradient): parameters and XLA's
   count of floating-point operations and bytes accessed, for the FNO and F-FNO at several
   ``modes`` (compiled, not run).

Writes ``experiments/results/stepper_modes_<backend>.{md,json}``; work directories go to ``--work``
(default ``runs/stepper_modes``), where finished datasets and runs are reused.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pdesurrogate.evaluation import distribution, relative_l2, spectral_tail  # noqa: E402
from pdesurrogate.io import write_json, write_text  # noqa: E402

DEFAULT_STEPS = 1500  # other step counts and a time-reversal weight get their own results files
PADDING = 8  # the 128^2 configs' model padding (training.config default)
TAIL_MODES = (8, 16, 24, 32, 48, 64)
KIND_NAMES = {"fno": "FNO", "ffno": "F-FNO"}
COST_MODELS = (("fno", 16), ("fno", 32), ("fno", 48), ("ffno", 16), ("ffno", 48))
FAMILIES = {"acoustic_stepper": "pressure", "maxwell_stepper": "ez"}


def tail_data(n_samples: int) -> dict[str, dict[str, Any]]:
    """The GPU stepper data configs of train_reference.py, with ``n_samples`` samples."""
    from experiments.train_reference import gpu_experiments

    out = {}
    for key in ("stepper", "maxwell_stepper"):
        data = copy.deepcopy(gpu_experiments()[key]["data"])
        data |= {"num_samples": n_samples, "batch_size": min(n_samples, 8)}
        out[data["scenario"]] = data
    return out


def ensure(data: dict[str, Any], path: Path) -> Path:
    """Generate, resume or reuse (when complete) the dataset; a changed config is refused."""
    from training.data import generate

    generate(copy.deepcopy(data), path, progress=True, workers=1)
    return path


def tails(path: Path, modes: list[int], padding: int) -> dict[str, dict[str, float]]:
    """Tail distribution of every macro step's increment of the scalar field (pressure or Ez, the
    field ``rel_l2`` is reported on), per ``modes``, with the persistence baseline."""
    from training.data import open_dataset

    ds = open_dataset(path)
    name = FAMILIES[ds.manifest["scenario"]]
    u = ds.read(np.arange(len(ds)), [name])[name].astype(np.float64)  # (N, T, *shape)
    nxt = u[:, 1:].reshape((-1, 1) + u.shape[2:])
    inc = nxt - u[:, :-1].reshape(nxt.shape)
    out = {"persistence": distribution(relative_l2(nxt - inc, nxt))}
    for m in modes:
        out[str(m)] = distribution(spectral_tail(inc, nxt, (m,) * (inc.ndim - 2), padding))
    return out


def pass_cost(kind: str, modes: int, batch: int = 32, size: int = 128) -> dict[str, float]:
    """Parameters and XLA's cost analysis (on this backend) of one forward and gradient pass of the
    acoustic stepper network (width 32, depth 4, padding 8; pressure and velocity plus sound speed
    and density in, the state out) on a ``batch`` of ``size``^2 samples: the work a training step
    repeats once per predicted state."""
    import jax.numpy as jnp
    from flax import nnx

    from pdesurrogate.models import build_model, num_params

    model = build_model({"kind": kind, "in_channels": 5, "out_channels": 3, "modes": [modes, modes], "width": 32,
                         "depth": 4, "padding": PADDING})
    graphdef, state = nnx.split(model)

    def loss(st: nnx.State, x: jax.Array) -> jax.Array:
        return jnp.sum(jax.vmap(nnx.merge(graphdef, st))(x) ** 2)

    x = jax.ShapeDtypeStruct((batch, 5, size, size), jnp.float32)
    cost = jax.jit(jax.value_and_grad(loss)).lower(state, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"params": num_params(model), "gflop": cost["flops"] / 1e9, "gbytes": cost["bytes accessed"] / 1e9}


def small_data(n_samples: int) -> dict[str, Any]:
    """The 64^2 analogue of ``acoustic_stepper_128`` (same spacing, sources, CFL and macro step)."""
    return {"scenario": "acoustic_stepper", "num_samples": n_samples, "seed": 0, "shape": [64, 64],
            "spacing": 1e-4, "batch_size": 32, "phantom": {"kind": "breast", "lesion_rate": 0.0},
            "acoustic": {"scheme": "pstd", "pml_size": 8, "cfl": 0.3, "save_every": 10, "n_frames": 8,
                         "save_velocity": True, "source_radius": [1.5, 4.0], "n_sources": [1, 4]}}


def _metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def logged_train_seconds(run: Path) -> float:
    """Training wall time from the trainer's ``metrics.csv``: ``time_s`` restarts at 0 on every
    resume, so the time is the sum of each segment's last value."""
    times = [float(r["time_s"]) for r in _metrics(run)]
    return float(sum(a for a, b in zip(times, times[1:] + [0.0]) if b < a))


def plot_losses(runs: dict[int, Path], path: Path) -> None:
    """Training loss (50-step running mean) against step, one curve per ``modes``."""
    from pdesurrogate.io import save_figure, subplots

    fig, ax = subplots(figsize=(6, 4))
    for modes, run in runs.items():
        rows = _metrics(run)
        step = np.array([int(r["step"]) for r in rows])
        loss = np.convolve([float(r["loss"]) for r in rows], np.ones(5) / 5, mode="valid")  # rows every 10 steps
        ax.semilogy(step[4:], loss, label=f"modes {modes} at 64² (= {2 * modes} at 128²)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (data rel L2 + weighted time reversal)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the training check varies besides ``modes`` and ``steps``: the network, the weight of
    the time-reversal loss and the number of macro steps unrolled in the data loss."""

    kind: str = "fno"
    time_reversal: float = 0.0
    unroll: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KIND_NAMES:
            raise ValueError(f"kind must be one of {sorted(KIND_NAMES)}, got {self.kind!r}")
        if self.time_reversal < 0:
            raise ValueError(f"time_reversal must be >= 0, got {self.time_reversal}")
        if self.unroll < 1:
            raise ValueError(f"unroll must be >= 1, got {self.unroll}")

    @property
    def suffix(self) -> str:
        """``_tr<w>``, ``_u<n>`` for settings off their defaults (run and results file names)."""
        return (f"_tr{self.time_reversal:g}" if self.time_reversal else "") + (f"_u{self.unroll}" if self.unroll > 1 else "")

    @property
    def loss_text(self) -> str:
        unrolled = f"data loss unrolled over {self.unroll} macro steps" if self.unroll > 1 else "one-step data loss"
        return f"{unrolled} (time-reversal weight {self.time_reversal:g})"


def run_name(recipe: Recipe, modes: int, steps: int) -> str:
    return f"{recipe.kind}_m{modes}_s{steps}{recipe.suffix}"


def train_check(data_dir: Path, work: Path, recipe: Recipe, modes: int, steps: int) -> dict[str, Any]:
    from training.run import train_run
    from pdesurrogate.models import num_params
    from pdesurrogate.surrogate import load_run_model
    from training.evaluation import evaluate_run

    run = work / run_name(recipe, modes, steps)
    result = run / "modes_result.json"
    if result.is_file():  # a finished run (its parameter count is taken from the checkpoint)
        return {**json.loads(result.read_text()), "kind": recipe.kind, "params": num_params(load_run_model(run)[0])}
    cfg = {"model": {"kind": recipe.kind, "modes": modes, "width": 32, "depth": 4, "padding": PADDING},
           "train": {"steps": steps, "batch_size": 16, "lr": 1e-3, "warmup_steps": min(50, steps // 10),
                     "validate_every": max(steps // 3, 1), "checkpoint_every": max(steps // 3, 1), "windows": 2,
                     "unroll": recipe.unroll, "loss": {"data": 1.0, "time_reversal": recipe.time_reversal}}}
    train_run(cfg, data_dir, run, progress=True)
    ev = evaluate_run(run, [data_dir], run / "evaluation", speed=False)
    out = {"kind": recipe.kind, "modes": modes, "steps": steps, "train_s": logged_train_seconds(run),
           "params": num_params(load_run_model(run)[0]), "rel_l2": ev["rel_l2"],
           "baseline_rel_l2": ev["baseline_rel_l2"], "spectral_tail": ev["spectral_tail"],
           "rollout": ev["rollout"], "time_reversal": ev["time_reversal"]}
    write_json(result, out)
    return out


def _fraction(x: float | str) -> str:
    return x if isinstance(x, str) else f"{x:.4f}"


def table(results: dict[str, Any]) -> str:
    backend, recipe = results["backend"], Recipe(**results["recipe"])
    lines = [f"# Fourier modes of a learned wave stepper ({backend}, {results['date']})", "",
             f"Command: `{results['command']}`", "",
             "Tail: the share of a macro step's increment of the pressure (Ez) outside the FNO's retained "
             f"modes (`spectral_tail`, padding {PADDING}), relative to the next pressure (Ez), the field "
             "the evaluation's one-step `rel_l2` is taken on. The spectral path cannot carry it; the "
             "pointwise path rebuilds part of it in place, so it is no strict bound.", ""]
    lines += ["## Cost of one network pass at 128² (batch 32, forward and gradient)", "",
              f"XLA's cost analysis on this backend ({backend}), compiled, not run: its count of floating-point "
              "operations and of bytes read and written (a count of the unfused program's traffic, not a "
              "measured time). A training step repeats it once per predicted state.", "",
              "| network | modes | parameters | GFLOP | GB accessed |", "|---|---|---|---|---|"]
    lines += [f"| {KIND_NAMES[c['kind']]} | {c['modes']} | {c['params']:,} | {c['gflop']:.1f} | {c['gbytes']:.1f} |"
              for c in results["pass_cost"]]
    lines.append("")
    for name, fl in results["tail_128"].items():
        lines += [f"## Tail, `{name}` at 128² (GPU config, {fl['persistence']['n']} macro steps; "
                  f"persistence median {fl['persistence']['median']:.3f})", "",
                  "| modes | tail median | tail p99 |", "|---|---|---|"]
        lines += [f"| {m} | {v['median']:.4f} | {v['p99']:.4f} |" for m, v in fl.items() if m != "persistence"]
        lines.append("")
    if results["train"]:
        lines += ["## Training check at 64² (modes m at 64² = 2m at 128²)", "",
                  f"Acoustic stepper, {results['train_samples']} trajectories (1/8 test), "
                  f"{KIND_NAMES[recipe.kind]} width 32, depth 4, {recipe.loss_text}, batch 16. Test one-step "
                  "rel L2 of the best validation checkpoint.", "",
                  "| modes (64²) | as at 128² | parameters | steps | train s | one-step median | p99 | tail median "
                  "| tail p99 | rollout median, last step | time-reversal inconsistency median |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["train"]:
            # the evaluation reports no tail for the F-FNO: its per-axis 1D convolutions keep no 2D mode set
            f = r["spectral_tail"] or {"median": "n/a", "p99": "n/a"}
            lines.append(f"| {r['modes']} | {2 * r['modes']} | {r['params']:,} | {r['steps']} | {r['train_s']:.0f} | "
                         f"{r['rel_l2']['median']:.4f} | {r['rel_l2']['p99']:.4f} | {_fraction(f['median'])} | "
                         f"{_fraction(f['p99'])} | {r['rollout']['median'][-1]:.4f} | {r['time_reversal']['median']:.4f} |")
        n = len(results["train"][0]["rollout"]["median"])
        lines += ["", f"Persistence baseline median {results['train'][0]['baseline_rel_l2']['median']:.3f}. The "
                  f"rollout runs {n} macro steps from each test trajectory's first frame.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", type=int, nargs="+", default=[8, 16, 24], help="modes to train at 64^2")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps per model (0: tails only)")
    p.add_argument("--samples", type=int, default=512, help="64^2 training trajectories")
    p.add_argument("--tail-samples", type=int, default=16, help="128^2 trajectories per tail dataset")
    p.add_argument("--kind", choices=sorted(KIND_NAMES), default="fno",
                   help="network of the training check (results file suffix _ffno for the F-FNO)")
    p.add_argument("--time-reversal", type=float, default=0.0,
                   help="weight of the time-reversal loss in the training check (results file suffix _tr<w>)")
    p.add_argument("--unroll", type=int, default=1,
                   help="macro steps unrolled in the training check's data loss (results file suffix _u<n>)")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "stepper_modes")
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results")
    args = p.parse_args(argv)
    recipe = Recipe(args.kind, args.time_reversal, args.unroll)
    if args.steps < 0 or args.samples < 24 or args.tail_samples < 1 or any(m < 1 for m in args.modes):
        raise ValueError("--steps must be >= 0, --samples >= 24, --tail-samples >= 1 and --modes >= 1")
    backend = jax.default_backend()
    results: dict[str, Any] = {"backend": backend, "date": time.strftime("%Y-%m-%d"),
                               "command": " ".join(["uv run python experiments/stepper_modes.py", *sys.argv[1:]]),
                               "tail_128": {}, "train": [], "train_samples": args.samples,
                               "pass_cost": [{"kind": k, "modes": m, **pass_cost(k, m)} for k, m in COST_MODELS],
                               "recipe": dataclasses.asdict(recipe)}
    for name, data in tail_data(args.tail_samples).items():
        path = ensure(data, args.work / f"{name}_128_n{args.tail_samples}")
        results["tail_128"][name] = tails(path, list(TAIL_MODES), PADDING)
    if args.steps:
        data_dir = ensure(small_data(args.samples), args.work / f"acoustic_stepper_64_n{args.samples}")
        results["train"] = [train_check(data_dir, args.work, recipe, m, args.steps) for m in args.modes]
    stem = args.out / (f"stepper_modes_{backend}" + (f"_s{args.steps}" if args.steps != DEFAULT_STEPS else "")
                       + recipe.suffix + (f"_{recipe.kind}" if recipe.kind != "fno" else ""))
    if args.steps:
        plot_losses({m: args.work / run_name(recipe, m, args.steps) for m in args.modes},
                    Path(f"{stem}_loss.png"))
    write_json(stem.with_suffix(".json"), results)
    write_text(stem.with_suffix(".md"), table(results))
    print(table(results))


if __name__ == "__main__":
    main()
