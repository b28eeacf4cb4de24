"""Bad input raises ValueError naming the argument and the allowed range, before compiling."""

from __future__ import annotations

import numpy as np
import pytest

from solvers import Grid, acoustic
from solvers.acoustic.simulate import _simulate_core

H = 1e-4
GRID = Grid((32, 32), H)
P0 = np.zeros((32, 32), np.float32)


def _sim(**kw):
    args = dict(grid=GRID, medium=acoustic.Medium(1500.0, 1000.0), duration=1e-6, p0=P0, pml_size=4)
    args.update(kw)
    return acoustic.simulate(**args)


BAD = [
    (dict(medium=acoustic.Medium(-1500.0, 1000.0)), r"sound_speed must be > 0"),
    (dict(medium=acoustic.Medium(np.full((32, 32), np.nan), 1000.0)), r"sound_speed must be finite"),
    (dict(medium=acoustic.Medium(1500.0, 0.0)), r"density must be > 0"),
    (dict(medium=acoustic.Medium(1500.0, np.full((32, 32), np.inf))), r"density must be finite"),
    (dict(medium=acoustic.Medium(np.full((16, 32), 1500.0), 1000.0)), r"sound_speed must be a scalar or an array of shape \(32, 32\)"),
    (dict(medium=acoustic.Medium(1500.0, 1000.0, alpha_coeff=-1.0)), r"alpha_coeff must be >= 0"),
    (dict(p0=np.zeros((32, 31))), r"p0 must have shape \(32, 32\)"),
    (dict(sensors=np.array([[0.1, 0.001]])), r"sensors must lie inside the grid"),
    (dict(sensors=np.zeros((2, 3))), r"sensors must have shape \(n, 2\)"),
    (dict(sources=acoustic.PointSource([[-1e-3, 1e-3]], np.zeros(51))), r"sources\[0\].positions must lie inside the grid"),
    (dict(sources=acoustic.PointSource([[1.5e-3, 1.5e-3]], np.zeros(7))), r"sources\[0\].signals must have nt=51"),
    (dict(duration=-1e-6), r"duration must be a finite number >= 0"),
    (dict(dt=1e-7, scheme="fd"), r"dt must be in \(0, 4\.041e-08\] s for stability"),
    (dict(cfl=2.0, scheme="fd"), r"cfl=2 gives dt=.* above the stability limit"),
    (dict(dt=-1e-9), r"dt must be a finite number > 0"),
    (dict(scheme="fdtd"), r"scheme must be one of \['pstd', 'fd'\]"),
    (dict(fd_order=3, scheme="fd"), r"fd_order must be one of \[2, 4, 6, 8\]"),
    (dict(pml_size=16), r"pml_size must be an integer in \[0, 15\]"),
    (dict(checkpoint="all"), r"checkpoint must be one of"),
    (dict(snapshot_times=[2e-6]), r"snapshot_times must be finite times in \[0, "),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_input_raises_before_compiling(kwargs, message):
    before = _simulate_core._cache_size()
    with pytest.raises(ValueError, match=message):
        _sim(**kwargs)
    assert _simulate_core._cache_size() == before


def test_points_inside_the_pml_are_allowed_with_a_warning():
    with pytest.warns(UserWarning, match="1 of the sensors lie inside the 4-cell PML"):
        res = _sim(sensors=np.array([[1e-4, 1.5e-3], [1.5e-3, 1.5e-3]]))
    assert res.traces.shape == (res.time.size, 2)
    with pytest.warns(UserWarning, match=r"sources\[0\].positions lie inside"):
        _sim(sources=acoustic.PointSource([[1e-4, 1.5e-3]], np.zeros(51)))


def test_stepper_validates_too():
    with pytest.raises(ValueError, match="density must be > 0"):
        acoustic.Stepper(GRID, acoustic.Medium(1500.0, -1.0))
    with pytest.raises(ValueError, match="scheme must be one of"):
        acoustic.Stepper(GRID, acoustic.Medium(1500.0, 1000.0), scheme="spectral")
    with pytest.raises(ValueError, match="dt must be in"):
        acoustic.Stepper(GRID, acoustic.Medium(1500.0, 1000.0), scheme="fd", fd_order=8, dt=5e-8)
    st = acoustic.Stepper(GRID, acoustic.Medium(1500.0, 1000.0))
    with pytest.raises(ValueError, match=r"p0 must have shape \(32, 32\)"):
        st.init(np.zeros((32, 33)))


def test_source_and_array_helpers_validate():
    with pytest.raises(ValueError, match="velocity sources need exactly one of direction"):
        acoustic.PointSource([[1e-3, 1e-3]], np.zeros(5), "velocity")
    with pytest.raises(ValueError, match="kind must be one of"):
        acoustic.PointSource([[1e-3, 1e-3]], np.zeros(5), "force")
    with pytest.raises(ValueError, match=r"signals must have shape \(nt,\) or \(2, nt\)"):
        acoustic.PointSource([[1e-3, 1e-3], [2e-3, 1e-3]], np.zeros((3, 5)))
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        acoustic.ring_array((0.0, 0.0), -1.0, 8)
    with pytest.raises(ValueError, match="alpha_power must be in"):
        acoustic.Medium(1500.0, 1000.0, alpha_coeff=0.5, alpha_power=4.0)
    ring = acoustic.ring_array((1e-3, 1e-3), 5e-4, 8)
    assert ring.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(ring[:, 0] - 1e-3, ring[:, 1] - 1e-3), 5e-4)
    lin = acoustic.linear_array((1e-3, 2e-3, 3e-3), 1e-4, 5, axis=1)
    np.testing.assert_allclose(lin[:, 1], 2e-3 + 1e-4 * np.arange(5))
    np.testing.assert_allclose(lin[:, [0, 2]], np.tile([1e-3, 3e-3], (5, 1)))
