"""Multi-host data parallelism through ``jax.distributed``: two CPU processes on localhost with
two devices each (4 devices globally, gloo collectives) train the same model as one process on
the same global batches. The workers are ``tests/multihost_worker.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.multihost_worker import setup
from tests.test_trainer import leaves, read_csv
from training.checkpoint import CheckpointStore
from training.trainer import Trainer, initialize_distributed

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 150  # a worker that hangs (e.g. its peer died) fails the test instead of blocking CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, n: int = 2) -> list[subprocess.Popen]:
    """Start ``n`` workers with the plain-host environment variables (output to ``worker{i}.log``)."""
    port = _free_port()
    procs = []
    for i in range(n):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO),
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
               "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": str(n), "JAX_PROCESS_ID": str(i)}
        with (tmp_path / f"worker{i}.log").open("w") as log:
            procs.append(subprocess.Popen([sys.executable, str(REPO / "tests" / "multihost_worker.py"),
                                           str(tmp_path / "run"), str(tmp_path / f"out{i}.npz")],
                                          env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _results(tmp_path: Path, procs: list[subprocess.Popen]) -> list[dict[str, np.ndarray]]:
    """Wait for the workers (killing all of them after ``TIMEOUT_S``); their ``out{i}.npz`` contents."""
    try:
        for p in procs:
            p.wait(timeout=TIMEOUT_S)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, p in enumerate(procs):
        log = (tmp_path / f"worker{i}.log").read_text()
        assert p.returncode == 0, f"worker {i} exited {p.returncode}:\n{log[-3000:]}"
    return [dict(np.load(tmp_path / f"out{i}.npz")) for i in range(len(procs))]


def test_two_processes_match_one_process(tmp_path):
    procs = _launch(tmp_path)  # the single-process reference runs meanwhile
    model_cfg, loss_fn, loader, val, cfg = setup()
    try:
        reference = Trainer(model_cfg, loss_fn, loader, cfg, tmp_path / "single", val_loader=val,
                            devices=jax.devices()[:1], progress=False).fit()
    except BaseException:
        for p in procs:
            p.kill()
        raise
    ref_leaves = leaves(reference.model)
    ref_losses = np.array([float(r["loss"]) for r in read_csv(tmp_path / "single" / "metrics.csv")])

    workers = _results(tmp_path, procs)
    for w in workers:
        assert int(w["process_count"]) == 2 and int(w["devices"]) == 4 and int(w["step"]) == cfg.steps
    # both processes end with the same replicated parameters
    assert all(np.array_equal(workers[0][f"leaf_{i}"], workers[1][f"leaf_{i}"]) for i in range(len(ref_leaves)))
    # float32 reductions over 4 shards vs 1 differ in order: after 8 AdamW updates the state leaves
    # (|p| up to ~1) agree to ~1e-6; the tolerance is 1e-5 absolute
    diff = max(float(np.max(np.abs(workers[0][f"leaf_{i}"] - r))) for i, r in enumerate(ref_leaves))
    loss_diff = float(np.max(np.abs(workers[0]["losses"] - ref_losses) / ref_losses))
    val_diff = abs(float(workers[0]["best_val"]) - reference.best_val) / reference.best_val
    print(f"2 processes x 2 devices vs 1 device: max |state diff| {diff:.3g}, max rel loss diff {loss_diff:.3g}, "
          f"best val rel diff {val_diff:.3g}")
    assert diff <= 1e-5 and loss_diff <= 1e-5 and val_diff <= 1e-5
    assert len(ref_losses) == cfg.steps
    store = CheckpointStore(tmp_path / "run" / "checkpoints", cfg.keep_checkpoints)
    assert store.latest_step() == cfg.steps and store.meta(cfg.steps)["batches"] == cfg.steps


@pytest.mark.parametrize("name", ["JAX_NUM_PROCESSES", "JAX_PROCESS_ID"])
def test_initialize_distributed_rejects_a_bad_environment(monkeypatch, name):
    monkeypatch.setenv(name, "two")
    with pytest.raises(ValueError, match=f"{name} must be a non-negative integer, got 'two'"):
        initialize_distributed()
