"""``optics.refined`` (the 2x finer acquisition that avoids the inverse crime) and
``optics.add_noise`` (complex noise at a stated SNR)."""

from __future__ import annotations

import numpy as np
import pytest

from pdesurrogate.inversion import optics
from solvers import Grid


def _acq() -> optics.Acquisition:
    return optics.Acquisition(Grid((48, 48), 2.5e-8), 5e-7, 1.333, [0.0, 1.0], [-5e-8, 0.0, 5e-8], 3e-7)


def test_refined_shares_nodes_box_and_detector():
    acq = _acq()
    fine = optics.refined(acq, 2)
    assert fine.grid.shape == (95, 95) and fine.grid.spacing == pytest.approx(1.25e-8)
    assert (fine.pml_size, fine.tfsf_margin) == (2 * acq.pml_size, 2 * acq.tfsf_margin)
    np.testing.assert_allclose(optics._centre(fine.grid), optics._centre(acq.grid))
    assert acq.aperture <= fine.aperture <= acq.aperture + acq.grid.spacing  # same box, up to a cell
    assert fine.field_of_view()[::2, ::2][acq.field_of_view()].all()  # the coarse view lies inside
    assert (fine.angles, fine.detector_positions, fine.detector_distance) == (
        acq.angles, acq.detector_positions, acq.detector_distance)
    with pytest.raises(ValueError, match="factor"):
        optics.refined(acq, 0)


def test_add_noise_has_the_stated_snr():
    rng = np.random.default_rng(0)
    clean = 1.0 + 0.1 * np.exp(1j * rng.uniform(0, 2 * np.pi, (8, 4000)))
    noisy = optics.add_noise(clean, 20.0, np.random.default_rng(1))
    assert noisy.shape == clean.shape and noisy.dtype == np.complex128
    snr = 10 * np.log10(np.mean(np.abs(clean - 1) ** 2) / np.mean(np.abs(noisy - clean) ** 2))
    assert snr == pytest.approx(20.0, abs=0.2)
    with pytest.raises(ValueError, match="snr_db"):
        optics.add_noise(clean, float("nan"), rng)
