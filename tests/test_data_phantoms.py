"""Phantoms: determinism in (config, seed, index), value ranges, 3D, lesion masks and rates."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import parse_data_config
from training.data.phantoms import (LESION_LABELS, gaussian_random_field, has_rare_lesion, initial_pressure,
                                    max_sound_speed, phantom)

ACOUSTIC = ("breast", "brain", "grf", "ellipses")
OPTICAL = ("cell", "optical_ellipses", "optical_grf")


def cfg(kind: str, shape=(48, 48), **phantom_kw):
    return parse_data_config({"shape": list(shape), "spacing": 1e-4, "phantom": {"kind": kind, **phantom_kw}})


@pytest.mark.parametrize("kind", ACOUSTIC + OPTICAL)
@pytest.mark.parametrize("shape", [(48, 48), (20, 20, 20)])
def test_pure_function_of_config_seed_index(kind, shape):
    c = cfg(kind, shape, lesion_rate=0.5)
    a, b, other = phantom(c, 7, 3), phantom(c, 7, 3), phantom(c, 7, 4)
    for name in a.medium:
        assert a.medium[name].shape == shape and a.medium[name].dtype == np.float32
        np.testing.assert_array_equal(a.medium[name], b.medium[name])
        assert not np.array_equal(a.medium[name], other.medium[name])
    np.testing.assert_array_equal(a.lesion_mask, b.lesion_mask)
    assert set(np.unique(a.lesion_mask)) <= set(LESION_LABELS)


@pytest.mark.parametrize("kind", ACOUSTIC)
def test_acoustic_ranges(kind):
    c = cfg(kind)
    for i in range(6):
        m = phantom(c, 0, i).medium
        assert set(m) == {"sound_speed", "density"}
        assert m["sound_speed"].min() >= 1400 and m["sound_speed"].max() <= max_sound_speed(c)
        assert m["density"].min() >= 900
        if kind in ("breast", "grf", "ellipses"):
            assert m["sound_speed"].max() <= 1600


def test_brain_skull_values_and_thickness():
    thin, thick = cfg("brain", (64, 64)), cfg("brain", (64, 64), skull_thickness=0.16)
    m_thin, m_thick = phantom(thin, 0, 0).medium, phantom(thick, 0, 0).medium
    bone = m_thin["sound_speed"] > 2500
    assert 2800 <= m_thin["sound_speed"][bone].min() and m_thin["sound_speed"][bone].max() <= 3000
    assert 1850 <= m_thin["density"][bone].min() and m_thin["density"][bone].max() <= 1950
    assert (m_thick["sound_speed"] > 2500).sum() > 1.5 * bone.sum()


@pytest.mark.parametrize("kind", OPTICAL)
def test_optical_ranges(kind):
    c = cfg(kind, n_cells=[1, 4])
    for i in range(4):
        n = phantom(c, 1, i).medium["refractive_index"]
        assert n.min() >= 1.333 - 1e-6 and n.max() <= 1.41
        assert n.max() > 1.34  # something is there


def test_ood_split_shifts_contrast():
    base = cfg("grf")
    shifted = parse_data_config({"shape": [48, 48], "spacing": 1e-4, "split": "ood_contrast", "ood_factor": 2.0,
                                 "phantom": {"kind": "grf"}})
    assert phantom(shifted, 0, 0).medium["sound_speed"].std() > 1.5 * phantom(base, 0, 0).medium["sound_speed"].std()


def test_ood_shift_applied_once_in_datasets():
    from training.data.scenarios import build

    data = {"shape": [48, 48], "spacing": 1e-4, "phantom": {"kind": "grf"}}
    train = [build(parse_data_config(data)).inputs(i)[0]["sound_speed"] - 1500 for i in range(8)]
    ood = [build(parse_data_config(dict(data, split="ood_contrast", ood_factor=2.0))).inputs(i)[0]["sound_speed"] - 1500
           for i in range(8)]
    ratio = np.std(ood) / np.std(train)
    assert 1.6 < ratio < 2.5, ratio


def test_rare_lesion_rate_size_and_mask():
    c = cfg("breast", (48, 48), lesion_rate=0.1, lesion_cells=[2, 4], n_inclusions=[0, 0])
    flags = [has_rare_lesion(0.1, 0, i) for i in range(200)]
    assert sum(flags) == 20 and all(9 <= sum(flags[k:k + 100]) <= 11 for k in range(0, 100, 10))
    hits = [i for i in range(30) if phantom(c, 0, i).rare_lesion]
    assert hits == [i for i in range(30) if has_rare_lesion(0.1, 0, i)]
    for i in hits:
        p = phantom(c, 0, i)
        cells = int((p.lesion_mask == 3).sum())
        assert 1 <= cells <= 16  # a disc of diameter 2-4 cells
        clean = phantom(cfg("breast", (48, 48), n_inclusions=[0, 0]), 0, i)
        inside = p.lesion_mask == 3
        assert np.all(p.medium["sound_speed"][inside] > clean.medium["sound_speed"][inside] * 1.07)
        np.testing.assert_array_equal(p.medium["sound_speed"][~inside], clean.medium["sound_speed"][~inside])


def test_grf_correlation_length():
    rng = np.random.default_rng(0)
    short = gaussian_random_field(rng, (128, 128), 2.0)
    long = gaussian_random_field(rng, (128, 128), 8.0)
    for f in (short, long):
        assert abs(f.std() - 1) < 1e-9 and abs(f.mean()) < 1e-9
    lag = lambda f, k: float(np.mean(f * np.roll(f, k, 0)))  # noqa: E731
    # Covariance exp(-r^2 / (2 l^2)): at r = l it is exp(-1/2) ~ 0.61.
    assert abs(lag(short, 2) - np.exp(-0.5)) < 0.1 and abs(lag(long, 8) - np.exp(-0.5)) < 0.15


def test_initial_pressure_blobs_and_vessels():
    c = cfg("breast")
    p0 = initial_pressure(c, 0, 5)
    assert p0.shape == (48, 48) and p0.dtype == np.float32 and 0.4 < p0.max() < 3.5 and p0.min() >= 0
    np.testing.assert_array_equal(p0, initial_pressure(c, 0, 5))
    assert not np.array_equal(initial_pressure(c, 0, 5, vessels=True), p0)
