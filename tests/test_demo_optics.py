"""The optical reconstruction stage of ``pdesurrogate demo`` (:mod:`training.demo_optics`): its
geometry is the dataset's, its cell is new and inside the field of view, its table is right; end to
end (slow) on a tiny dataset, training and inversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pdesurrogate.inversion import optics
from training.data import phantoms, scenarios
from training.data.config import as_config
from training.demo_optics import DEMO_OPTICS, acquisition, held_out_cell, run_optics_demo, table


def test_acquisition_matches_the_dataset_geometry():
    config = as_config(DEMO_OPTICS["data"])
    acq = acquisition(config)
    angles, det = scenarios.optics_geometry(config)
    np.testing.assert_allclose(acq.angles, angles)
    assert acq.grid.shape == tuple(config.shape) and acq.pml_size == config.optics.pml_size
    reach = np.min(np.linalg.norm(det - scenarios.grid_center(config), axis=-1))
    assert acq.aperture <= reach * (1 + 1e-9)  # the field operator's fields reach the recording lines


def test_held_out_cell_is_new_sharp_and_inside_the_field_of_view():
    config = as_config(DEMO_OPTICS["data"])
    acq = acquisition(config)
    cell = held_out_cell(config)
    optics.check_index(acq, cell)  # raises outside the field of view
    assert cell.max() > phantoms.WATER_INDEX + 0.01
    for i in (0, config.num_samples - 1):
        assert not np.allclose(cell, phantoms.phantom(config, config.seed, i).medium["refractive_index"], atol=1e-4)


def test_table_gives_each_error_relative_to_rytov():
    row = {"seconds": 1.0, "compile_seconds": 2.0, "solver_calls": 3, "surrogate_calls": 0}
    text = table({"rytov": row | {"rel_error": 0.8}, "FDTD": row | {"rel_error": 0.4}})
    assert "| FDTD | 0.400 | 0.50 | 1.0 | 2.0 | 3 / 0 |" in text.splitlines()


@pytest.mark.slow
def test_optics_demo_end_to_end(tmp_path):
    result = run_optics_demo(tmp_path, steps=5, num_samples=16, iterations=2, progress=False)
    rows = result["rows"]
    assert set(rows) == {"rytov", "FDTD", "surrogate"}
    assert rows["FDTD"]["solver_calls"] > 0 and rows["surrogate"]["surrogate_calls"] > 0
    assert rows["surrogate"]["solver_calls"] == 0
    assert all(np.isfinite(r["rel_error"]) and r["rel_error"] > 0 for r in rows.values())
    saved = json.loads((tmp_path / "reconstruction.json").read_text())
    assert saved["rows"]["FDTD"]["rel_error"] == pytest.approx(rows["FDTD"]["rel_error"])
    assert "| FDTD |" in (tmp_path / "reconstruction.md").read_text()
    assert (tmp_path / "reconstruction.png").stat().st_size > 0
