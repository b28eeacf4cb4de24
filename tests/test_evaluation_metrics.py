"""Evaluation metrics on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pdesurrogate.evaluation import (band_errors, dilate, distribution, normalised_relative_l2, radial_band_index,
                                     relative_l2, roi_errors, rollout_curve)


def test_distribution_of_known_values():
    d = distribution(np.arange(1, 101, dtype=float))
    assert d["n"] == 100 and d["mean"] == 50.5 and d["max"] == 100.0
    assert d["median"] == pytest.approx(50.5) and d["p95"] == pytest.approx(95.05) and d["p99"] == pytest.approx(99.01)
    assert distribution([np.nan, 2.0])["n"] == 1
    assert np.isnan(distribution([])["median"])


def test_relative_l2_known_values_real_and_complex():
    truth = np.ones((2, 4, 4))
    pred = truth.copy()
    pred[0] *= 1.1           # 10% everywhere
    pred[1, 0, 0] = 3.0      # one cell off by 2 of 16 unit cells -> 2 / 4
    np.testing.assert_allclose(relative_l2(pred, truth), [0.1, 0.5])
    z = np.exp(1j * np.linspace(0, 3, 8)).reshape(1, 8)
    np.testing.assert_allclose(relative_l2(z * 1j, z), [np.sqrt(2)])  # |i - 1| = sqrt 2
    with pytest.raises(ValueError, match="same shape"):
        relative_l2(pred[:, :2], truth)


def test_normalised_relative_l2_weights_channels_by_scale():
    truth = np.stack([np.full((3, 3), 1e3), np.full((3, 3), 1e-3)])[None]  # pressure-like and velocity-like
    pred = truth.copy()
    pred[0, 1] *= 2.0  # the small channel is 100% wrong
    assert relative_l2(pred, truth)[0] < 1e-6                        # invisible without scaling
    assert normalised_relative_l2(pred, truth, [1e3, 1e-3])[0] == pytest.approx(np.sqrt(0.5))


def test_band_errors_place_a_single_wavenumber_and_add_in_quadrature():
    n = 48
    x = np.arange(n)
    truth = np.cos(2 * np.pi * 2 * x / n)[None, :, None] * np.ones((1, n, n))         # |k| = 2/24 Nyquist: low
    for kk, band in ((3, "low"), (12, "mid"), (20, "high")):
        pred = truth + 0.1 * np.cos(2 * np.pi * kk * x / n)[None, :, None]
        e = band_errors(pred, truth, 2)
        assert e[band][0] == pytest.approx(0.1, rel=1e-9)
        assert all(e[b][0] < 1e-12 for b in e if b != band)
    rng = np.random.default_rng(0)
    pred = truth + 0.05 * rng.normal(size=truth.shape)
    e = band_errors(pred, truth, 2)
    assert np.sqrt(sum(v[0] ** 2 for v in e.values())) == pytest.approx(relative_l2(pred, truth)[0], rel=1e-9)
    assert set(np.unique(radial_band_index((8, 8)))) == {0, 1, 2}


def test_roi_errors_see_only_the_lesion_region():
    truth = np.ones((2, 16, 16))
    pred = truth.copy()
    pred[:, 0, 0] = 5.0                       # error far from the lesion
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[0, 8, 8] = 3
    pred[0, 9, 9] = 1.5                       # error inside the dilated lesion region (radius 1: 3x3 = 9 cells)
    e = roi_errors(pred, truth, masks, radius=1)
    assert e[0] == pytest.approx(0.5 / 3)     # sqrt(0.25) / sqrt(9)
    assert np.isnan(e[1])                     # no lesion: not counted
    assert dilate(masks[0] > 0, 2).sum() == 25


def test_rollout_curve_statistics():
    errors = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    c = rollout_curve(errors)
    assert c["steps"] == [1, 2] and c["median"] == [0.3, 0.4] and c["max"] == [0.5, 0.6]
    np.testing.assert_allclose(c["mean"], [0.3, 0.4])


@pytest.mark.parametrize("spatial, modes, padding", [((24, 20), (5, 4), 3), ((12, 10, 8), (3, 2, 4), (1, 2, 0))])
def test_spectral_tail_is_what_an_fno_layer_drops(spatial, modes, padding):
    """The tail equals ``x`` minus a SpectralConv with unit weights on the same padded grid."""
    import jax.numpy as jnp

    from pdesurrogate.evaluation import spectral_tail
    from pdesurrogate.models.layers import SpectralConv, domain_crop, domain_pad

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 1) + spatial)
    ref = rng.normal(size=x.shape)
    pads = (padding,) * len(spatial) if isinstance(padding, int) else padding
    conv = SpectralConv(1, 1, modes)
    conv.weight[...] = jnp.zeros_like(conv.weight[...]).at[..., 0].set(1.0)
    low = np.stack([np.asarray(domain_crop(conv(domain_pad(jnp.asarray(xi, jnp.float32), pads)), pads)) for xi in x])
    want = np.sqrt(((x - low) ** 2).sum(axis=tuple(range(1, x.ndim))) / (ref**2).sum(axis=tuple(range(1, x.ndim))))
    got = spectral_tail(x, ref, modes, padding)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert 0.1 < got.min()  # white noise lies mostly outside the kept modes
    # a field inside the kept modes has no tail
    n = spatial[0]
    smooth = np.broadcast_to(np.cos(2 * np.pi * np.arange(n) / n).reshape((1, 1, n) + (1,) * (len(spatial) - 1)),
                             x.shape)
    assert spectral_tail(smooth, ref, modes, 0).max() < 1e-12
    with pytest.raises(ValueError, match="modes and padding"):
        spectral_tail(x, ref, modes[:-1])
