"""Trainer: overfitting, exact resume after SIGKILL, 8 fake devices vs 1, the learning-rate
schedule, NaN handling (applied updates vs batches consumed, resume after a non-finite batch),
restore in a fresh process, logs and plots, configs.

Subprocess helpers live at the bottom (``python tests/test_trainer.py MODE ...``).
"""

from __future__ import annotations

import dataclasses

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from pdesurrogate.config import parse
from pdesurrogate.models import load_model
from training.config import ModelConfig, TrainConfig
from training.trainer import Trainer, make_optimizer, make_schedule, make_task_loss

REPO = Path(__file__).resolve().parents[1]


class InMemoryLoader:
    """The loader interface on in-memory arrays: ``len``, ``epoch(e, start)``, ``stats``.

    ``delay`` (s) slows every batch down (a slow input pipeline); ``nan_at`` puts NaN into the
    ``state``/``field`` of the batch with that global index ``e * len + i``; ``crash_at`` raises
    ``RuntimeError`` instead of yielding the batch with that global index (a crashed run)."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int = 0, delay: float = 0.0,
                 nan_at: int | None = None, crash_at: int | None = None):
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.delay, self.nan_at, self.crash_at = delay, nan_at, crash_at
        self.n = len(next(iter(arrays.values())))
        self.stats = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in arrays.items()
                      if not np.iscomplexobj(v)}

    def __len__(self) -> int:
        return self.n // self.batch_size

    def epoch(self, e: int, start: int = 0):
        perm = np.random.default_rng([self.seed, e]).permutation(self.n)
        for i in range(start, len(self)):
            if self.crash_at == e * len(self) + i:
                raise RuntimeError(f"simulated crash at batch {self.crash_at}")
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            batch = {k: v[idx].copy() for k, v in self.arrays.items()}
            if self.nan_at == e * len(self) + i:
                target = "state" if "state" in batch else "field"
                batch[target][0, -1] = np.nan
            if self.delay:
                time.sleep(self.delay)
            yield batch


class ListLoader:
    """The loader interface on a fixed list of batches (one epoch; every epoch is the same list)."""

    def __init__(self, batches: list[dict[str, np.ndarray]], stats: dict[str, dict[str, float]]):
        self.batches, self.stats = batches, stats

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, e: int, start: int = 0):
        yield from self.batches[start:]


def first_batches(loader, n: int) -> list[dict[str, np.ndarray]]:
    """The first ``n`` batches of ``loader`` in the order the trainer consumes them."""
    out: list[dict[str, np.ndarray]] = []
    e = 0
    while len(out) < n:
        out.extend(loader.epoch(e))
        e += 1
    return out[:n]


def expected_lr(cfg: TrainConfig, k: int) -> float:
    """Closed-form learning rate of update ``k`` (1-based): linear warm-up ``lr * k / warmup``,
    then cosine from ``lr`` at ``warmup`` to ``lr * final_lr_factor`` at ``steps``."""
    w, end = cfg.warmup_steps, cfg.lr * cfg.final_lr_factor
    if k <= w:
        return cfg.lr * k / w
    return end + (cfg.lr - end) * 0.5 * (1 + np.cos(np.pi * min((k - w) / (cfg.steps - w), 1.0)))


def shift_data(n: int = 8, size: int = 16, steps: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Stepper data: band-limited periodic fields (|k| <= 3) advected by one cell per step,
    plus a constant 'medium' channel. ``state`` (n, steps, 1, size, size), ``medium`` (n, 1, size, size)."""
    rng = np.random.default_rng(seed)
    spec = np.zeros((n, size, size), complex)
    for kx in range(-3, 4):
        for ky in range(-3, 4):
            spec[:, kx, ky] = rng.normal(size=n) + 1j * rng.normal(size=n)
    u = np.real(np.fft.ifft2(spec)) * size
    traj = np.stack([np.roll(u, t, axis=-1) for t in range(steps)], axis=1)[:, :, None]
    medium = np.broadcast_to(rng.uniform(1400, 1600, size=(n, 1, 1, 1)), (n, 1, size, size))
    return {"state": traj.astype(np.float32), "medium": np.ascontiguousarray(medium, np.float32)}


MODEL = {"kind": "fno", "modes": [4, 4], "width": 12, "depth": 2}


def stepper_setup(data: dict[str, np.ndarray], model: dict | None = None, **train):
    train_cfg = parse(TrainConfig, {"lr": 1e-2, "warmup_steps": 5, "steps": 40, "batch_size": 4,
                                    "checkpoint_every": 10, "validate_every": 20, "log_every": 1, **train}, "train")
    loader = InMemoryLoader(data, train_cfg.batch_size, seed=train_cfg.seed)
    stats = loader.stats  # one channel each: state, medium
    norm = {"in_mean": [float(stats[k]["mean"]) for k in ("state", "medium")],
            "in_std": [float(stats[k]["std"]) for k in ("state", "medium")]}
    model_cfg = parse(ModelConfig, model or MODEL, "model").build_config(2, 1, 2, norm)
    loss_fn, sample_fn = make_task_loss(train_cfg)
    return model_cfg, loss_fn, sample_fn, loader, train_cfg


def leaves(model, kind=...) -> list[np.ndarray]:
    """The model's state leaves (``kind=nnx.Param``: trainable parameters only)."""
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, kind))]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO), **extra}


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("overfit")
    model_cfg, loss_fn, sample_fn, loader, cfg = stepper_setup(shift_data(), steps=150, validate_every=50,
                                                               checkpoint_every=50, log_every=10)
    val = InMemoryLoader(shift_data(4, seed=1), 4)
    result = Trainer(model_cfg, loss_fn, loader, cfg, run, val_loader=val, sample_fn=sample_fn,
                     progress=False).fit()
    return result


def test_tiny_model_overfits(overfit_run):
    rows = read_csv(overfit_run.run_dir / "metrics.csv")
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    print(f"overfit: loss {first:.4g} -> {last:.4g} (x{first / last:.1f})")
    assert first / last >= 10
    assert overfit_run.step == 150 and overfit_run.best_val is not None and overfit_run.best_val < first / 10


def test_logs_plots_and_checkpoints(overfit_run):
    run = overfit_run.run_dir
    for name in ("metrics.csv", "validation.csv", "events.log", "loss_curve.png", "sample.png", "run.json"):
        assert (run / name).stat().st_size > 0, name
    rows = read_csv(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(10, 151, 10))
    assert [int(r["batch"]) for r in rows] == list(range(10, 151, 10))  # no non-finite batch
    assert {"loss", "lr", "grad_norm", "steps_per_s", "data"} <= set(rows[0])
    cfg = parse(TrainConfig, json.loads((run / "run.json").read_text())["train"], "train")
    np.testing.assert_allclose([float(r["lr"]) for r in rows], [expected_lr(cfg, int(r["step"])) for r in rows],
                               rtol=0, atol=1e-6 * cfg.lr)
    val = read_csv(run / "validation.csv")
    assert [int(r["step"]) for r in val] == [50, 100, 150]
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [100, 150]
    best_step = int(next(p.name for p in (run / "best").iterdir() if p.name.isdigit()))
    best_loss = min(float(r["val_loss"]) for r in val)
    assert float(next(r for r in val if int(r["step"]) == best_step)["val_loss"]) == best_loss
    assert json.loads((run / "run.json").read_text())["model"]["kind"] == "fno"


def test_restore_in_fresh_process_gives_identical_outputs(overfit_run, tmp_path):
    x = shift_data(1, seed=5)
    inp = np.concatenate([x["state"][0, 0], x["medium"][0]])
    np.save(tmp_path / "x.npy", inp)
    expected = np.asarray(jax.jit(overfit_run.model)(inp))
    model, meta = load_model(overfit_run.run_dir / "checkpoints")
    assert meta["step"] == 150
    np.testing.assert_array_equal(np.asarray(jax.jit(model)(inp)), expected)
    subprocess.run([sys.executable, __file__, "restore", str(overfit_run.run_dir / "checkpoints"),
                    str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], check=True, env=_env(), cwd=REPO, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_sigkill_and_resume_matches_uninterrupted(tmp_path):
    steps = 40
    model_cfg, loss_fn, _, loader, cfg = stepper_setup(shift_data(), steps=steps, noise_std=0.05)
    reference = Trainer(model_cfg, loss_fn, loader, cfg, tmp_path / "ref", progress=False).fit()

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, __file__, "train", str(run), str(steps), "0.03"], env=_env(), cwd=REPO)
    killed_at = None
    deadline = time.time() + 100
    while time.time() < deadline and proc.poll() is None:
        metrics = run / "metrics.csv"
        if metrics.exists():
            done = [int(r["step"]) for r in read_csv(metrics)]
            if done and done[-1] >= 15:
                proc.send_signal(signal.SIGKILL)
                killed_at = done[-1]
                break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert killed_at is not None, "the training subprocess ended before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    model, meta = load_model(run / "checkpoints")
    assert meta["step"] < steps
    print(f"killed after step {killed_at}; newest checkpoint step {meta['step']}")

    resumed = Trainer(model_cfg, loss_fn, loader, cfg, run, progress=False).fit(resume=True)
    assert resumed.step == steps
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves(resumed.model), leaves(reference.model)))
    print(f"max |resumed - uninterrupted| parameter difference: {diff:.3g}")
    assert diff <= 1e-6
    rows = read_csv(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    ref_rows = read_csv(tmp_path / "ref" / "metrics.csv")
    np.testing.assert_allclose([float(r["loss"]) for r in rows], [float(r["loss"]) for r in ref_rows],
                               rtol=1e-6)
    assert "event=resume" in (run / "events.log").read_text()
    other = {**model_cfg, "width": 8}
    with pytest.raises(ValueError, match="cannot resume"):
        Trainer(other, loss_fn, loader, cfg, run, progress=False).fit(resume=True)
    with pytest.raises(ValueError, match=r"cannot resume .*: train\.lr was"):
        Trainer(model_cfg, loss_fn, loader, dataclasses.replace(cfg, lr=cfg.lr * 2), run, progress=False).fit()


def test_eight_fake_devices_match_one_device(tmp_path):
    out = tmp_path / "devices.json"
    subprocess.run([sys.executable, __file__, "devices", str(tmp_path), str(out)], check=True, cwd=REPO, timeout=300,
                   env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
    r = json.loads(out.read_text())
    print(r)
    assert r["devices"] == 8 and r["batch_shards"] == 8
    assert "must be divisible by the 8 devices" in r["indivisible_error"]
    assert r["partial_validation_loss"] > 0
    # float32 with a different reduction order across shards: after 10 AdamW steps the parameters
    # (largest |p| ~ 1) agree to ~5e-7; the tolerance is 1e-5 absolute
    assert r["max_param"] < 5 and r["max_param_diff"] <= 1e-5
    assert r["max_loss_rel_diff"] <= 1e-5
    # a checkpoint written by the 8-device mesh restores in this 1-device process
    one, _ = load_model(tmp_path / "dev1" / "checkpoints")
    eight, _ = load_model(tmp_path / "dev8" / "checkpoints")
    diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
             zip(jax.tree_util.tree_leaves(nnx.state(one)), jax.tree_util.tree_leaves(nnx.state(eight)))]
    assert diffs and max(diffs) <= 1e-5


def test_schedule_starts_warm_up_above_zero():
    """Update 1 has a non-zero learning rate; ``warmup_steps = 0`` starts on the cosine; the lr
    the optimizer applies (its state) equals the schedule at that update."""
    for warmup in (5, 0):
        cfg = parse(TrainConfig, {"lr": 1e-2, "warmup_steps": warmup, "steps": 40, "final_lr_factor": 0.1}, "train")
        schedule = make_schedule(cfg)
        got = [float(schedule(k - 1)) for k in range(1, cfg.steps + 3)]
        want = [expected_lr(cfg, k) for k in range(1, cfg.steps + 3)]
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert got[0] == pytest.approx(2e-3) if warmup else got[0] > 0.99 * cfg.lr  # update 1: lr / 5, or ~lr
        assert got[cfg.steps - 1] == pytest.approx(1e-3) and got[-1] == pytest.approx(1e-3)
        optimizer = make_optimizer(cfg)
        params = {"w": np.ones(3, np.float32)}
        state = optimizer.init(params)
        for k in range(1, 4):
            _, state = optimizer.update(params, state, params)
            assert float(state.hyperparams["learning_rate"]) == pytest.approx(expected_lr(cfg, k), rel=1e-6)


NAN_AT, CRASH_AT = 6, 8  # the 7th batch has a NaN; a crash before the 9th batch (after the NaN)


@pytest.mark.parametrize("policy", ["skip", "rollback"])
def test_nan_batch_keeps_the_update_count_and_resumes_exactly(tmp_path, policy):
    """With a NaN in the 7th batch (checkpoints every 4 updates): ``train.steps`` = 12 updates are
    applied; each logged lr is the schedule at its update count; the result equals a run on the
    same batches without the skipped ones (skip: the NaN batch; rollback: also the two batches
    after checkpoint 4 that led to it); a crash after the NaN resumes to the same result."""
    data = shift_data()
    model_cfg, loss_fn, _, _, cfg = stepper_setup(data, steps=12, nan_policy=policy, checkpoint_every=4,
                                                  noise_std=0.05)
    loader = InMemoryLoader(data, 4, nan_at=NAN_AT)
    result = Trainer(model_cfg, loss_fn, loader, cfg, tmp_path / "run", progress=False).fit()
    consumed = 13 if policy == "skip" else 15  # rollback: updates 5, 6 are discarded and made again
    assert (result.step, result.batches, result.nan_events) == (12, consumed, 1)
    _, meta = load_model(tmp_path / "run" / "checkpoints")
    assert (meta["step"], meta["batches"], meta["nan_events"]) == (12, consumed, 1)

    events = (tmp_path / "run" / "events.log").read_text()
    assert f"step=6 batch=7 event=nonfinite_loss loss=nan grad_norm=nan action={policy}" in events
    assert ("step=6 batch=7 event=rollback restored_step=4" in events) == (policy == "rollback")
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert [int(r["batch"]) for r in rows] == list(range(1, consumed + 1))
    assert [r["event"] for r in rows if r["event"]] == [f"nonfinite_{policy}"]
    assert int(rows[NAN_AT]["step"]) == (6 if policy == "skip" else 4)
    applied = [r for r in rows if not r["event"]]
    redone = [] if policy == "skip" else [5, 6]
    assert [int(r["step"]) for r in applied] == [*range(1, 7), *redone, *range(7, 13)]
    lr = [float(r["lr"]) for r in applied]
    np.testing.assert_allclose(lr, [expected_lr(cfg, int(r["step"])) for r in applied], rtol=0, atol=1e-6 * cfg.lr)
    assert lr[0] == pytest.approx(cfg.lr / cfg.warmup_steps)

    omitted = {NAN_AT} if policy == "skip" else {4, 5, NAN_AT}
    batches = [b for i, b in enumerate(first_batches(loader, consumed)) if i not in omitted]
    reference = Trainer(model_cfg, loss_fn, ListLoader(batches, loader.stats), cfg, tmp_path / "ref",
                        progress=False).fit()
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves(result.model), leaves(reference.model)))
    print(f"{policy}: max |NaN run - run without the skipped batches| = {diff:.3g}")
    assert reference.step == 12 and diff <= 1e-6

    crashing = InMemoryLoader(data, 4, nan_at=NAN_AT, crash_at=CRASH_AT)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(model_cfg, loss_fn, crashing, cfg, tmp_path / "crash", progress=False).fit()
    assert load_model(tmp_path / "crash" / "checkpoints")[1]["step"] == 4  # before the NaN batch
    resumed = Trainer(model_cfg, loss_fn, loader, cfg, tmp_path / "crash", progress=False).fit(resume=True)
    assert (resumed.step, resumed.batches, resumed.nan_events) == (12, consumed, 1)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves(resumed.model), leaves(result.model)))
    print(f"{policy}: max |resumed after a crash - uninterrupted| = {diff:.3g}")
    assert diff <= 1e-6
    columns = ("step", "batch", "event", "lr", "loss")
    assert [[r[c] for c in columns] for r in read_csv(tmp_path / "crash" / "metrics.csv")] == \
        [[r[c] for c in columns] for r in rows]


def test_field_task_bf16_trains(tmp_path):
    """Field operator (scalar condition, complex target as channel pairs) with a bf16 forward."""
    rng = np.random.default_rng(0)
    medium = rng.uniform(1.0, 2.0, size=(8, 1, 8, 8)).astype(np.float32)
    angle = rng.uniform(0, np.pi, size=(8, 1)).astype(np.float32)
    field = (medium * np.exp(1j * angle)[:, :, None, None]).astype(np.complex64)
    cfg = parse(TrainConfig, {"task": "field", "steps": 40, "lr": 1e-2, "warmup_steps": 4, "batch_size": 4,
                              "precision": "bf16", "checkpoint_every": 40, "log_every": 1}, "train")
    loader = InMemoryLoader({"medium": medium, "condition": angle, "field": field}, 4)
    model = parse(ModelConfig, {"kind": "ffno", "modes": [3, 3], "width": 8, "depth": 2}, "model")
    model_cfg = model.build_config(2, 2, 2)
    loss_fn, sample_fn = make_task_loss(cfg)
    result = Trainer(model_cfg, loss_fn, loader, cfg, tmp_path, sample_fn=sample_fn, progress=False).fit()
    losses = [float(r["loss"]) for r in read_csv(tmp_path / "metrics.csv")]
    print(f"bf16 field task: loss {losses[0]:.3g} -> {losses[-1]:.3g}")
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] / 3
    assert result.step == cfg.steps and result.nan_events == 0
    assert (tmp_path / "sample.png").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="train.bogus"):
        parse(TrainConfig, {"bogus": 1}, "train")
    with pytest.raises(ValueError, match="train.precision"):
        parse(TrainConfig, {"precision": "fp8"}, "train")
    with pytest.raises(ValueError, match="train.warmup_steps"):
        parse(TrainConfig, {"steps": 10, "warmup_steps": 10}, "train")
    with pytest.raises(ValueError, match="train.reversal_signs"):
        parse(TrainConfig, {"loss": {"time_reversal": 0.1}}, "train")
    with pytest.raises(ValueError, match="train.loss.data"):
        parse(TrainConfig, {"loss": {"data": -1.0}}, "train")
    with pytest.raises(ValueError, match="model.levels"):
        parse(ModelConfig, {"kind": "fno", "modes": [4, 4], "levels": 2}, "model")
    with pytest.raises(ValueError, match="model.modes"):
        parse(ModelConfig, {"kind": "ffno"}, "model")
    cfg = parse(TrainConfig, {"task": "stepper", "reversal_signs": [1, -1, -1], "loss": {"time_reversal": 0.1}},
                "train")
    assert cfg.reversal_signs == (1.0, -1.0, -1.0) and cfg.loss.time_reversal == 0.1
    model_cfg, loss_fn, _, loader, cfg = stepper_setup(shift_data(), steps=2, warmup_steps=0, batch_size=3)
    trainer = Trainer(model_cfg, loss_fn, loader, cfg, "/nonexistent-unused", progress=False)
    with pytest.raises(ValueError, match="train.batch_size"):
        trainer._shard_batch({"state": np.zeros((4, 1))})


def test_resume_check_fills_settings_added_since_the_checkpoint():
    """A checkpoint written before a TrainConfig setting existed (e.g. train.loss.reciprocity)
    resumes: the missing setting counts as its default. A changed setting is still reported, and
    so is a grown step budget not."""
    from pdesurrogate.config import to_dict
    from training.config import TrainConfig
    from training.trainer import changed_train_settings

    now = to_dict(TrainConfig())
    old = dict(now, loss={k: v for k, v in now["loss"].items() if k != "reciprocity"})
    assert "reciprocity" not in old["loss"] and changed_train_settings(old, now) == []
    assert changed_train_settings(dict(old, steps=now["steps"] // 2), now) == []
    changed = dict(old, loss=dict(old["loss"], data=2.0))
    assert changed_train_settings(changed, now) == [("loss", dict(now["loss"], data=2.0), now["loss"])]


# ---------------------------------------------------------------------------------------------
# subprocess entry points
def _main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "train":  # train RUN_DIR STEPS DELAY: (resumable) stepper training with a slow loader
        run, steps, delay = argv[1], int(argv[2]), float(argv[3])
        model_cfg, loss_fn, _, loader, cfg = stepper_setup(shift_data(), steps=steps, noise_std=0.05)
        loader.delay = delay
        Trainer(model_cfg, loss_fn, loader, cfg, run, progress=False).fit(resume=True)
    elif mode == "restore":  # restore CKPT_DIR X.npy OUT.npy
        model, _ = load_model(argv[1])
        np.save(argv[3], np.asarray(jax.jit(model)(np.load(argv[2]))))
    elif mode == "devices":  # devices TMP OUT.json: 8 devices vs 1 device, same data and steps
        tmp, out = Path(argv[1]), Path(argv[2])
        model_cfg, loss_fn, _, loader, cfg = stepper_setup(shift_data(16), steps=10, batch_size=8, unroll=2,
                                                           checkpoint_every=10)
        runs = {}
        for n in (8, 1):
            trainer = Trainer(model_cfg, loss_fn, loader, cfg, tmp / f"dev{n}", devices=jax.devices()[:n],
                              progress=False)
            shards = len(trainer._shard_batch(next(loader.epoch(0)))["state"].sharding.device_set)
            res = trainer.fit()
            runs[n] = (leaves(res.model), [float(r["loss"]) for r in read_csv(tmp / f"dev{n}" / "metrics.csv")], shards,
                       leaves(res.model, nnx.Param))
        try:
            _, _, _, small, small_cfg = stepper_setup(shift_data(16), steps=10, batch_size=4)
            Trainer(model_cfg, loss_fn, small, small_cfg, tmp / "bad", progress=False)._shard_batch(
                next(small.epoch(0)))
            error = ""
        except ValueError as err:
            error = str(err)
        # a partial validation batch (3 samples on 8 devices) is evaluated replicated
        partial = InMemoryLoader(shift_data(3, seed=2), 3)
        partial_loss = Trainer(model_cfg, loss_fn, loader, cfg, tmp / "partial", val_loader=partial,
                               progress=False).fit().best_val
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(runs[8][0], runs[1][0]))
        loss_diff = float(np.max(np.abs(np.array(runs[8][1]) - runs[1][1]) / np.abs(runs[1][1])))
        out.write_text(json.dumps({"devices": len(jax.devices()), "batch_shards": runs[8][2], "indivisible_error": error,
                                   "partial_validation_loss": partial_loss,
                                   "max_param_diff": diff, "max_param": max(float(np.abs(a).max()) for a in runs[1][3]),
                                   "max_loss_rel_diff": loss_diff}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _main(sys.argv[1:])

