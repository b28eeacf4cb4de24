"""Grids that share a dataset's nodes (training.refinement): the fine-grid references and coarse
candidates of the equal-accuracy speed study."""

import jax.numpy as jnp
import numpy as np
import pytest

from solvers import Grid, acoustic, signals
from training import refinement
from training.data import scenarios
from training.physics import edge_mask


def test_regrid_shares_the_data_nodes():
    grid = Grid((32, 21), 1e-4)
    fine, coarse = refinement.regrid(grid, refine=2), refinement.regrid(grid, coarsen=2)
    assert fine.shape == (63, 41) and fine.spacing == pytest.approx(5e-5)
    assert coarse.shape == (16, 11) and coarse.spacing == pytest.approx(2e-4)
    assert refinement.cells(6, refine=2) == 12 and refinement.cells(5, coarsen=2) == 3  # rounded up
    x = np.random.default_rng(0).normal(size=(3, 32, 21)).astype(np.float32)
    for method in refinement.METHODS:
        y = refinement.resample(jnp.asarray(x), 2, refine=2, method=method)
        assert y.shape == (3, *fine.shape)
        np.testing.assert_allclose(refinement.data_nodes(y, 2, 2), x, atol=2e-6)
    np.testing.assert_array_equal(refinement.resample(x, 2, coarsen=2), x[:, ::2, ::2])


def test_linear_and_spectral_interpolants_are_exact_for_their_class():
    i, j = np.meshgrid(np.arange(12.0), np.arange(9.0), indexing="ij")
    plane = 0.3 * i - 1.7 * j + 2.0
    fi, fj = np.meshgrid(np.arange(23) / 2, np.arange(17) / 2, indexing="ij")
    np.testing.assert_allclose(refinement.resample(jnp.asarray(plane), 2, refine=2), 0.3 * fi - 1.7 * fj + 2.0,
                               atol=1e-5)
    n = 16  # a band-limited periodic signal, even length (the Nyquist bin is split)
    wave = np.cos(2 * np.pi * 3 * np.arange(n) / n) + 0.5 * np.cos(np.pi * np.arange(n))
    up = refinement.resample(jnp.asarray(wave), 1, refine=2, method="spectral")
    t = np.arange(2 * n - 1) / 2
    np.testing.assert_allclose(up, np.cos(2 * np.pi * 3 * t / n) + 0.5 * np.cos(np.pi * t), atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"refine": 2, "coarsen": 2}, "cannot both"),
    ({"refine": 0}, "refine must be an integer"),
    ({"coarsen": 1.5}, "coarsen must be an integer"),
    ({"refine": 2, "method": "cubic"}, "method"),
])
def test_bad_factors_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        refinement.resample(jnp.zeros((8, 8)), 2, **kwargs)


def test_point_source_gain_keeps_the_radiated_field():
    """A pressure point source in water, received 2.1 mm away: the data grid and a 2x finer grid
    with the gained signal agree to 0.5%; without the gain the fine grid is off by half."""
    grid = Grid((48, 48), 1e-4)
    water = acoustic.Medium(sound_speed=1500.0, density=1000.0)
    src, rec = np.array([[1.55e-3, 2.0e-3]]), np.array([[3.5e-3, 2.9e-3]])
    dt0, duration = 2e-8, 3.5e-6
    t0 = np.arange(round(duration / dt0) + 1) * dt0

    def trace(refine: int, gain: float) -> np.ndarray:
        g, dt = refinement.regrid(grid, refine=refine), dt0 / refine
        t = np.arange(round(duration / dt) + 1) * dt
        s = signals.tone_burst(jnp.asarray(t, jnp.float32), 1e6, cycles=3.0) * gain
        res = acoustic.simulate(g, water, duration=duration, sources=acoustic.PointSource(src, s), sensors=rec,
                                pml_size=refinement.cells(10, refine=refine), dt=dt)
        return np.interp(t0, t, np.asarray(res.traces)[:, 0])

    ref = trace(1, 1.0)

    def rel(x: np.ndarray) -> float:
        return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))

    assert rel(trace(2, refinement.point_source_gain(2, refine=2))) < 5e-3  # measured 1.8e-4
    assert rel(trace(2, 1.0)) > 0.4  # measured 0.50


def test_receiver_mask_leaves_out_the_emitters_own_trace():
    keep = scenarios.receiver_mask(np.array([0, 4]), 8)
    assert keep.shape == (2, 8) and not keep[0, 0] and not keep[1, 4] and keep.sum() == 14
    with pytest.raises(ValueError, match="emitters"):
        scenarios.receiver_mask(np.array([8]), 8)


def test_refined_optics_runs_converge_at_second_order():
    """The optics scenario on 2x and 4x refined grids (index, absorbing layer and TFSF box carried
    over): the data grid's error against the 4x grid is about 5x the 2x grid's (second order in
    the spacing: 15/3 for Richardson), so the refined runs share the data grid's nodes and geometry."""
    from training.data import parse_data_config, phantoms

    cfg = parse_data_config({"scenario": "optics", "num_samples": 1, "shape": [40, 40], "spacing": 4e-8,
                             "phantom": {"kind": "cell"}, "optics": {"pml_size": 6, "n_angles": 1}})
    n = jnp.asarray(phantoms.phantom(cfg, cfg.seed, 0).medium["refractive_index"])
    runs = {r: np.asarray(scenarios.optics_runs(cfg, r)(n)[0]) for r in (1, 2, 4)}
    np.testing.assert_array_equal(runs[1], np.asarray(scenarios.build(cfg).simulate({"refractive_index": n})["field"]))
    inside = edge_mask(cfg.shape, 6).astype(bool)

    def err(r: int) -> float:
        return float(np.linalg.norm((runs[r] - runs[4])[:, inside]) / np.linalg.norm(runs[4][:, inside]))

    assert 3.5 < err(1) / err(2) < 7, (err(1), err(2))  # measured 5.2 (0.053 / 0.010)


def test_coarse_optics_runs_compare_where_the_tfsf_regions_agree():
    """A 2x coarser optics run: its pml_size 5 / margin 4 layers round up to 3 / 2 coarse cells, so
    its total-field box ends one data cell short of the data run's on the high faces. The region
    map marks exactly those nodes (scattered-field on the coarse grid, total-field on the data grid),
    where the two runs differ by about the incident wave; elsewhere outside the absorbing layers
    they differ by the coarse grid's discretisation error."""
    from training.data import parse_data_config, phantoms

    cfg = parse_data_config({"scenario": "optics", "num_samples": 1, "shape": [40, 40], "spacing": 2.5e-8,
                             "phantom": {"kind": "cell"}, "optics": {"pml_size": 5, "n_angles": 1}})
    regions = {f: scenarios.optics_regions(cfg, coarsen=f) for f in (1, 2)}
    np.testing.assert_array_equal(regions[1], scenarios.optics_regions(cfg, refine=2))
    assert regions[2].shape == (20, 20)
    on_coarse_nodes = refinement.resample(regions[1], 2, coarsen=2)
    differ = (on_coarse_nodes != regions[2]) & (on_coarse_nodes > 0) & (regions[2] > 0)
    assert np.all(on_coarse_nodes[differ] == 2) and np.all(regions[2][differ] == 1)
    assert set(np.argwhere(differ).max(axis=1)) == {15}  # data node 30: the data box's high face

    n = jnp.asarray(phantoms.phantom(cfg, cfg.seed, 0).medium["refractive_index"])
    data = refinement.resample(np.asarray(scenarios.optics_runs(cfg)(n)[0]), 2, coarsen=2)
    coarse = np.asarray(scenarios.optics_runs(cfg, coarsen=2)(n)[0])
    assert coarse.shape == data.shape == (1, 20, 20)
    same = ~differ & (regions[2] > 0) & (on_coarse_nodes > 0)

    def rel(mask: np.ndarray) -> float:
        return float(np.linalg.norm((coarse - data)[:, mask]) / np.linalg.norm(data[:, mask]))

    assert rel(same) < 0.35, rel(same)  # measured 0.22 (7.5 cells per wavelength in water)
    assert rel(differ) > 0.7, rel(differ)  # measured 1.01
