"""``simulate_maxwell``: a TOML dict in, fields.npz / field.png / config.toml out."""

from __future__ import annotations

import numpy as np
import pytest

from training.simulation import simulate_maxwell
from pdesurrogate.config import load_toml

SMALL = {
    "grid": {"shape": [48, 48], "spacing": 1e-7},
    "medium": {"kind": "cylinder", "index": 1.5, "radius": 3e-7},
    "source": {"wavelength": 1e-6},
    "simulation": {"pml_size": 10, "duration": 3e-14},
}


def test_simulate_maxwell_writes_outputs(tmp_path):
    simulate_maxwell(SMALL, tmp_path)
    data = np.load(tmp_path / "fields.npz")
    assert data["field"].shape == (1, 48, 48) and np.iscomplexobj(data["field"])
    assert data["permittivity"].shape == (48, 48) and np.isclose(data["permittivity"].max(), 2.25)
    assert np.allclose(data["frequencies"], 299_792_458.0 / 1e-6)
    assert (tmp_path / "field.png").stat().st_size > 1000
    used = load_toml(tmp_path / "config.toml")
    assert used["simulation"]["pml_size"] == 10 and used["source"]["kind"] == "plane_wave"
    # the written config reproduces the run
    simulate_maxwell(used, tmp_path / "again")
    np.testing.assert_allclose(np.load(tmp_path / "again" / "fields.npz")["field"], data["field"], rtol=1e-6, atol=1e-7)


def test_simulate_maxwell_file_medium(tmp_path):
    eps = np.ones((48, 48))
    eps[20:28, 20:28] = 2.0
    np.save(tmp_path / "eps.npy", eps)
    cfg = {**SMALL, "medium": {"kind": "file", "path": str(tmp_path / "eps.npy")}}
    simulate_maxwell(cfg, tmp_path / "out")
    assert np.load(tmp_path / "out" / "fields.npz")["permittivity"][24, 24] == 2.0


@pytest.mark.parametrize("bad,match", [
    ({"grid": {"shape": [48, 48], "spacing": -1.0}}, "config.grid.spacing"),
    ({"medium": {"kind": "sphere"}}, "config.medium.kind"),
    ({"source": {"wavelength": 1e-6, "colour": "red"}}, "config.source.colour: unknown key"),
    ({"detector": {}}, "config.detector: unknown key"),
    ({"medium": {"kind": "file"}}, "config.medium.path: required"),
])
def test_simulate_maxwell_bad_config(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        simulate_maxwell({**SMALL, **bad}, tmp_path)
