"""The ``maxwell_stepper`` scenario: stored (Ez, eta0 H) frames equal direct ``maxwell.Stepper`` runs,
samples are reproducible from (config, seed, i), and the trainer's stepper layout is
``state (B, T, 3, *s)`` = ``[ez, h_x, h_y]`` with reversal signs ``(+1, -1, -1)``."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import Loader, generate, open_dataset, parse_data_config
from training.data.scenarios import build
from training.tasks import get_task, reversal_signs

SAVE_EVERY, N_FRAMES, PML = 3, 3, 4
DATA = {"scenario": "maxwell_stepper", "num_samples": 3, "batch_size": 2, "shape": [32, 32], "spacing": 4e-8,
        "phantom": {"kind": "cell", "n_inclusions": [1, 2]},
        "optics": {"pml_size": PML, "save_every": SAVE_EVERY, "n_frames": N_FRAMES, "source_radius": [1.5, 2.5],
                   "n_sources": [2, 3]}}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("mxs") / "ds"
    report = generate(DATA, out, progress=False)
    assert report["status"] == "complete"
    return open_dataset(out)


def test_round_trip_through_open_dataset(ds):
    assert len(ds) == 3 and ds.complete and ds.manifest["scenario"] == "maxwell_stepper"
    shapes = {k: tuple(v.shape) for k, v in ds.fields.items()}
    assert shapes == {"refractive_index": (32, 32), "permittivity": (32, 32), "lesion_mask": (32, 32),
                      "e0": (32, 32), "dt": (), "ez": (N_FRAMES + 1, 32, 32), "h": (N_FRAMES + 1, 2, 32, 32)}
    assert ds.fields["ez"].unit == ds.fields["h"].unit == "V/m" and ds.fields["dt"].unit == "s"
    s = ds[1]
    assert int(s["index"]) == 1 and int(s["seed"]) == 0
    for name, shape in shapes.items():
        assert s[name].shape == shape, name
    c = ds.manifest["constants"]
    assert c["save_every"] == SAVE_EVERY and c["pml_size"] == PML
    assert c["frame_interval_s"] == pytest.approx(SAVE_EVERY * c["dt"], rel=1e-12)
    np.testing.assert_array_equal(s["permittivity"], s["refractive_index"] ** 2)
    assert 1.333**2 - 1e-6 <= s["permittivity"].min() and s["permittivity"].max() > 1.34**2  # a cell in water


def test_frames_equal_direct_stepper_run(ds):
    from solvers import Grid, maxwell

    grid = Grid((32, 32), 4e-8)
    for i in range(len(ds)):
        s = ds[i]
        stepper = maxwell.Stepper(grid, maxwell.Medium(permittivity=s["permittivity"]), pml_size=PML)
        assert float(s["dt"]) == stepper.dt == ds.manifest["constants"]["dt"]
        state = stepper.init(s["e0"])
        scale = np.abs(s["e0"]).max()
        np.testing.assert_array_equal(s["ez"][0], np.asarray(state.e[0]))  # e0 with Ez = 0 on the PEC walls
        np.testing.assert_allclose(s["ez"][0], s["e0"], rtol=0, atol=1e-6 * scale)  # blob tails there only
        np.testing.assert_array_equal(s["h"][0], 0.0)
        for k in range(1, N_FRAMES + 1):
            state = stepper.run(state, SAVE_EVERY)
            np.testing.assert_allclose(s["ez"][k], np.asarray(state.e[0]), rtol=0, atol=1e-6 * scale)
            np.testing.assert_allclose(s["h"][k], np.asarray(state.h), rtol=0, atol=1e-6 * scale)
        assert np.abs(s["ez"][-1] - s["ez"][0]).max() > 0.1 * scale  # it moved
        assert np.abs(s["h"][-1]).max() > 0.1 * scale  # and built up H


def test_samples_reproduce_from_config_seed_index(ds, tmp_path):
    scenario = build(parse_data_config(DATA))
    alone, _ = scenario.inputs(1)  # sample 1 without sample 0
    s = ds[1]
    for name, value in alone.items():
        np.testing.assert_array_equal(value, s[name], err_msg=name)
    again = generate(DATA, tmp_path / "again", progress=False)
    assert again["status"] == "complete"
    other = open_dataset(tmp_path / "again")
    for i in range(len(ds)):
        a, b = ds[i], other[i]
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"sample {i} field {k}")
    assert np.abs(ds[0]["e0"] - ds[1]["e0"]).max() > 0.1  # different samples differ


def test_stepper_task_layout_and_stats(ds):
    fields = get_task("stepper").fields(ds.fields)
    assert fields == ["ez", "h", "permittivity"]
    loader = Loader(ds, 2, fields=fields, process_index=0, process_count=1)
    raw = next(iter(loader.epoch(0)))
    batch = get_task("stepper").to_batch(raw)
    assert batch["state"].shape == (2, N_FRAMES + 1, 3, 32, 32) and batch["medium"].shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(batch["state"][:, :, 0], raw["ez"])
    np.testing.assert_array_equal(batch["state"][:, :, 1:], raw["h"])
    np.testing.assert_array_equal(batch["medium"][:, 0], raw["permittivity"])
    assert reversal_signs(ds.fields, 2) == [1.0, -1.0, -1.0]
    stats = get_task("stepper").stats(loader.stats, ndim=2)
    assert stats["state"]["std"] == [loader.stats["ez"]["std"]] + [loader.stats["h"]["std"]] * 2
    assert stats["medium"]["mean"] == [loader.stats["permittivity"]["mean"]]
    with pytest.raises(ValueError, match="needs dataset fields"):
        get_task("field").fields(ds.fields)


def test_reversal_signs_undo_a_lossless_trajectory():
    """With ``pml_size = 0`` (PEC box), flipping the last stored state with ``reversal_signs``, running
    the same number of steps and flipping again returns the first frame: L_TR = 0 for the solver."""
    import jax

    from solvers import Grid, maxwell
    from solvers.maxwell.yee import Fields

    data = dict(DATA, optics=dict(DATA["optics"], pml_size=0))
    scenario = build(parse_data_config(data))
    inputs, _ = scenario.inputs(0)
    out = jax.jit(scenario.simulate)({k: inputs[k] for k in scenario.device_inputs})
    batch = {k: np.asarray(v)[None] for k, v in out.items()} | {"permittivity": inputs["permittivity"][None]}
    state = get_task("stepper").to_batch(batch)["state"][0]  # (T, 3, 32, 32)
    signs = np.asarray(reversal_signs(scenario.fields, 2))[:, None, None]
    flipped = signs * state[-1]
    stepper = maxwell.Stepper(Grid((32, 32), 4e-8), maxwell.Medium(permittivity=inputs["permittivity"]))
    back = stepper.run(Fields(flipped[:1], flipped[1:]), SAVE_EVERY * N_FRAMES)
    back = signs * np.concatenate([np.asarray(back.e), np.asarray(back.h)])
    scale = np.abs(state[0]).max()
    assert np.abs(state[-1] - state[0]).max() > 0.1 * scale
    np.testing.assert_allclose(back, state[0], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("bad, match", [
    ({"phantom": {"kind": "breast"}}, "data.phantom.kind"),
    ({"shape": [16, 16, 16]}, "data.shape"),
    ({"optics": {"n_sources": [3, 1]}}, "data.optics.n_sources"),
    ({"optics": {"courant": 1.5}}, "optics.courant"),
])
def test_bad_configs_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_data_config(DATA | bad)


def test_training_wires_the_yee_residual(ds):
    """``pdesurrogate train`` on a maxwell_stepper dataset with ``loss.residual > 0`` gets the Yee
    residual with the data's step count, Courant number, CPML and state scales: 0 to rounding on
    the stored frames in the trainer's scaled units, and not on frames one step off."""
    import jax.numpy as jnp

    from training.run import build_run
    from training.physics import YeeResidual

    toml = {"model": {"kind": "fno", "modes": 4, "width": 4, "depth": 1},
            "train": {"steps": 2, "batch_size": 1, "warmup_steps": 0, "loss": {"data": 1.0, "residual": 0.1}}}
    run = build_run(toml, ds.path, steps=2)
    residual = run.residual_fn
    assert isinstance(residual, YeeResidual) and residual.substeps == SAVE_EVERY
    s = ds[0]
    scales = jnp.asarray(run.spec["state_scales"]).reshape(1, 3, 1, 1)
    states = jnp.asarray(np.concatenate([s["ez"][:, None], s["h"]], 1)) * scales
    medium = jnp.asarray(s["permittivity"][None])
    rms = lambda r: float(jnp.sqrt(jnp.mean(r**2)))  # noqa: E731
    assert rms(residual(states, medium)) < 1e-6
    assert rms(residual(states[::-1], medium)) > 1e-2
