"""USCT shots sharded over devices: two forced host devices give the one-device traces and gradient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, {tests!r})
from test_inversion_usct import make_case
from pdesurrogate.inversion import usct
acq, truth = make_case(duration=3e-6)
settings = usct.SolverSettings("fd", 4, None).resolve(acq)
rho = jnp.full(acq.grid.shape, 1000.0)
traces = jax.jit(lambda c: usct._shots(acq, settings, c, rho, jnp.arange(acq.n_shots)))(jnp.asarray(truth))
grad = jax.jit(jax.grad(lambda c: jnp.sum(usct._shots(acq, settings, c, rho, jnp.arange(acq.n_shots)) ** 2)))(
    jnp.asarray(truth))
np.savez({out!r}, traces=np.asarray(traces), grad=np.asarray(grad))
print(json.dumps({{"devices": jax.local_device_count(), "trace_devices": len(traces.sharding.device_set),
                  "sharding": None if usct.shot_sharding(acq.n_shots) is None else
                  len(usct.shot_sharding(acq.n_shots).device_set)}}))
"""


def _run(tmp_path: Path, devices: int) -> tuple[dict, dict]:
    out = tmp_path / f"d{devices}.npz"
    env = os.environ | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    script = SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as z:
        return json.loads(proc.stdout.strip().splitlines()[-1]), {k: z[k] for k in z.files}


def test_shots_shard_over_devices_with_the_one_device_traces_and_gradient(tmp_path):
    info2, two = _run(tmp_path, 2)
    info1, one = _run(tmp_path, 1)
    assert info2 == {"devices": 2, "trace_devices": 2, "sharding": 2}, info2  # each device ran four of the eight shots
    assert info1 == {"devices": 1, "trace_devices": 1, "sharding": None}, info1
    scale = np.abs(one["traces"]).max()
    np.testing.assert_allclose(two["traces"], one["traces"], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(two["grad"], one["grad"], rtol=0, atol=1e-4 * np.abs(one["grad"]).max())
    assert np.abs(one["grad"]).max() > 0

