"""Invalid input raises ValueError naming the argument and the allowed range, before running."""

from __future__ import annotations

import numpy as np
import pytest

from solvers import Grid, maxwell

LAM0 = 1e-6
GRID = Grid((64, 64), LAM0 / 20)


def _sim(**kw):
    args = dict(grid=GRID, medium=maxwell.Medium(1.0), source=maxwell.PlaneWave(LAM0))
    args.update(kw)
    return maxwell.simulate(args.pop("grid"), args.pop("medium"), args.pop("source"), **args)


@pytest.mark.parametrize("value", [0.0, -2.0, np.nan, np.inf])
def test_permittivity_must_be_positive_finite(value):
    eps = np.ones(GRID.shape)
    eps[3, 3] = value
    with pytest.raises(ValueError, match="permittivity must be"):
        maxwell.Medium(eps)


def test_conductivity_must_be_non_negative():
    with pytest.raises(ValueError, match=r"conductivity must be >= 0"):
        maxwell.Medium(1.0, conductivity=-1.0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"permittivity must be a scalar or an array of shape \(64, 64\)"):
        _sim(medium=maxwell.Medium(np.ones((10, 10))))
    with pytest.raises(ValueError, match=r"conductivity must be a scalar or an array of shape"):
        maxwell.Stepper(GRID, maxwell.Medium(1.0, np.zeros((3, 3))))


@pytest.mark.parametrize("wavelength", [0.0, -1e-6, np.nan])
def test_wavelength_must_be_positive(wavelength):
    with pytest.raises(ValueError, match="wavelength must be a finite number > 0"):
        maxwell.PlaneWave(wavelength)


@pytest.mark.parametrize("freqs", [[-1e14], [0.0], [np.nan], []])
def test_frequencies_must_be_positive(freqs):
    with pytest.raises(ValueError, match="frequencies must be a non-empty list of finite values > 0"):
        _sim(source=maxwell.PlaneWave(LAM0, waveform="pulse"), frequencies=freqs)


def test_wavelength_resolution():
    with pytest.raises(ValueError, match=r"wavelength must span >= 2 cells in the densest medium \(n = 3"):
        _sim(medium=maxwell.Medium(9.0), source=maxwell.PlaneWave(LAM0 * 4 / 20))
    with pytest.raises(ValueError, match=r"frequencies must be resolved by >= 2 cells"):
        _sim(source=maxwell.PlaneWave(LAM0, waveform="pulse"), frequencies=[maxwell.C0 / LAM0 * 20])


def test_cw_source_frequency_mismatch():
    with pytest.raises(ValueError, match=r"frequencies must be within 1% of the cw source frequency"):
        _sim(frequencies=[maxwell.C0 / LAM0 * 1.1])


def test_cw_frequency_from_rounded_speed_of_light_is_the_source_frequency():
    res = _sim(frequencies=[3e8 / LAM0])
    assert res.frequencies.tolist() == [maxwell.C0 / LAM0]


def test_sources_outside_grid():
    with pytest.raises(ValueError, match="position must lie inside the grid"):
        _sim(source=maxwell.PointDipole(LAM0, position=(-1e-6, 1e-6)))
    with pytest.raises(ValueError, match=r"position must lie inside the grid.*margin 20"):
        _sim(source=maxwell.PointDipole(LAM0, position=(5 * GRID.spacing, 30 * GRID.spacing)))
    with pytest.raises(ValueError, match="focus must lie inside the grid"):
        _sim(source=maxwell.GaussianBeam(LAM0, waist=LAM0, focus=(1.0, 0.0)))


def test_monitors_outside_grid():
    with pytest.raises(ValueError, match="points must lie inside the grid"):
        _sim(points=np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"region must be 2 \(start, stop\) index pairs"):
        _sim(region=((0, 10), (5, 100)))
    with pytest.raises(ValueError, match="components must be one of"):
        _sim(components=("Ex",))


def test_other_options():
    with pytest.raises(ValueError, match=r"polarization must be one of \['TM', 'TE'\]"):
        _sim(polarization="TEM")
    with pytest.raises(ValueError, match=r"courant must be in \(0, 1\]"):
        _sim(courant=1.2)
    with pytest.raises(ValueError, match=r"pml_size must be an integer in \[0, 30\]"):
        _sim(pml_size=31)
    with pytest.raises(ValueError, match="subpixel=True needs medium.component_permittivity"):
        _sim(subpixel=True)
    with pytest.raises(ValueError, match="waveform must be one of"):
        maxwell.PlaneWave(LAM0, waveform="square")
    eps = np.ones(GRID.shape)
    eps[20:40, 20:40] = 2.0  # crosses the TFSF box (24 cells in)
    with pytest.raises(ValueError, match="permittivity must equal the source's background_permittivity"):
        _sim(medium=maxwell.Medium(eps))


def test_smoothed_medium_is_used_unless_switched_off():
    centre = np.array(GRID.extent) / 2

    def eps_fn(x):
        return np.where(np.sum((x - centre.reshape(2, 1, 1)) ** 2, axis=0) < (LAM0 / 6) ** 2, 2.25, 1.0)

    smooth = maxwell.subpixel.smoothed_medium(GRID, eps_fn)
    default, explicit = _sim(medium=smooth), _sim(medium=smooth, subpixel=True)
    staircased = _sim(medium=smooth, subpixel=False)
    np.testing.assert_array_equal(np.asarray(default.field), np.asarray(explicit.field))
    assert float(np.max(np.abs(np.asarray(default.field) - np.asarray(staircased.field)))) > 1e-3
