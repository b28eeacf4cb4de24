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


# ----- wider families (issue 18): large cells, textured cytoplasm, smooth iterate-like media -----------
def _optics(shape=(128, 128), **phantom_kw):
    return parse_data_config({"scenario": "optics", "shape": list(shape), "spacing": 1.6e-8,
                              "optics": {"pml_size": 12}, "phantom": {"kind": "cell", **phantom_kw}})


def test_new_phantom_options_leave_defaults_and_fingerprints_unchanged():
    # pinned before the options existed: the default cell and breast configs' fingerprints and media
    import hashlib

    from training.data.config import fingerprint

    cell = parse_data_config({"scenario": "optics", "shape": [40, 40], "spacing": 4e-8, "optics": {"pml_size": 6},
                              "phantom": {"kind": "cell", "lesion_rate": 0.5}})
    breast = parse_data_config({"scenario": "acoustic_stepper", "shape": [40, 40], "spacing": 1e-4,
                                "phantom": {"kind": "breast", "lesion_rate": 0.5}})
    for c, fp, media in ((cell, "22d9870d8127deea51bf52d0adf7699c08dcc858e3e47b018686fc1b65b9ded7",
                          "f29d2948febf905d9ba0b5c7de94f55ae20482e04bddee38f7473e5760a39eb1"),
                         (breast, "bb4f1ba919875c971b04901e526449688c3891e910001df7d8a9469125cbbc64",
                          "878645d9bce5f71496ec1a4cb77e18f6cfe54a34135ee3bf634b61d1ea6e4d51")):
        assert fingerprint(c) == fp
        data = b"".join(phantom(c, 0, i).medium[n].tobytes() for i in range(4) for n in sorted(phantom(c, 0, i).medium))
        assert hashlib.sha256(data).hexdigest() == media


def test_large_cells_reach_half_the_field():
    c = _optics(cell_diameter=[0.4, 0.48])
    for i in range(4):
        n = phantom(c, 0, i).medium["refractive_index"]
        inside = n > 1.333 + 1e-4
        extent = max(np.ptp(np.nonzero(inside)[a]) + 1 for a in range(2)) / 128
        assert 0.4 * 0.95 <= extent <= 0.48 + 2 / 128, extent  # the widest axis of the ellipse, to a cell
        assert n.min() >= 1.333 - 1e-6 and n.max() <= 1.41
    default_extent = np.mean(phantom(_optics(), 0, 0).medium["refractive_index"] > 1.3331)
    assert np.mean(phantom(c, 0, 0).medium["refractive_index"] > 1.3331) > 1.5 * default_extent
    with pytest.raises(ValueError, match="cell_diameter.*at most 0.4"):
        phantom(_optics(cell_diameter=[0.4, 0.5]), 0, 0)
    with pytest.raises(ValueError, match="cell_diameter.*only for the 'cell'"):
        parse_data_config({"phantom": {"kind": "grf", "cell_diameter": [0.1, 0.2]}})
    with pytest.raises(ValueError, match="cell_diameter"):
        _optics(cell_diameter=[0.3, 0.2])


def test_textured_cytoplasm_keeps_the_cells_and_bounds():
    plain, textured = _optics(), _optics(texture=0.006, texture_cells=1.5)
    for i in range(3):
        a, b = phantom(plain, 2, i).medium["refractive_index"], phantom(textured, 2, i).medium["refractive_index"]
        changed = a != b
        assert changed.mean() > 0.4 * np.mean(a > 1.3331)  # the cytoplasm: most of each cell
        assert np.array_equal(a > 1.3331, b > 1.3331) or np.mean((a > 1.3331) != (b > 1.3331)) < 1e-3
        assert np.abs(b - a).max() <= 2 * 0.006 + 1e-6 and b.min() >= 1.333 - 1e-6
        np.testing.assert_array_equal(b, phantom(textured, 2, i).medium["refractive_index"])  # deterministic


@pytest.mark.parametrize("kind", ["cell", "breast"])
def test_smooth_iterate_like_media(kind):
    optical = kind == "cell"
    base = {"shape": [64, 64], "spacing": 1.6e-8 if optical else 1e-4,
            **({"scenario": "optics", "optics": {"pml_size": 8}} if optical else {})}
    sharp = parse_data_config(base | {"phantom": {"kind": kind}})
    iterate = parse_data_config(base | {"phantom": {"kind": kind, "smoothing": [2.0, 4.0], "contrast": 0.5}})
    name = "refractive_index" if optical else "sound_speed"
    water = 1.333 if optical else 1500.0
    for i in range(3):
        a, b = phantom(sharp, 1, i).medium[name] - water, phantom(iterate, 1, i).medium[name] - water
        roughness = lambda x: np.mean(np.abs(np.diff(x, axis=0)))  # noqa: E731
        assert roughness(b) < 0.3 * roughness(a)
        assert np.abs(b).max() <= 0.5 * np.abs(a).max() + 1e-6  # smoothing never raises the peak contrast
        np.testing.assert_array_equal(b + water, phantom(iterate, 1, i).medium[name])
