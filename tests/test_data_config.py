"""The [data] section: one clear error naming the field for unknown keys, wrong types, out-of-range values."""

from __future__ import annotations

import pytest

from training.data import parse_data_config
from training.data.config import DataConfig, fingerprint


@pytest.mark.parametrize("section, message", [
    ({"num_sample": 3}, r"^data\.num_sample: unknown key"),
    ({"phantom": {"kindd": "brain"}}, r"^data\.phantom\.kindd: unknown key"),
    ({"num_samples": "ten"}, r"^data\.num_samples: must be an integer, got 'ten'"),
    ({"num_samples": 2.5}, r"^data\.num_samples: must be an integer"),
    ({"acoustic": {"save_velocity": 1}}, r"^data\.acoustic\.save_velocity: must be true or false"),
    ({"num_samples": 0}, r"^data\.num_samples: must be in \[1, "),
    ({"spacing": -1e-4}, r"^data\.spacing: must be in .* m, got -0\.0001"),
    ({"phantom": {"lesion_rate": 1.5}}, r"^data\.phantom\.lesion_rate: must be in \[0\.0, 1\.0\]"),
    ({"scenario": "weather"}, r"^data\.scenario: must be one of \['phantom'"),
    ({"shape": [32]}, r"^data\.shape: must have 2 or 3 entries"),
    ({"shape": [32, 4]}, r"^data\.shape: must be in \[8, 4096\]"),
    ({"scenario": "optics", "phantom": {"kind": "breast"}}, r"^data\.phantom\.kind: the optics scenario needs"),
    ({"scenario": "usct", "shape": [32, 32, 32]}, r"^data\.shape: the usct scenario is 2D only"),
    ({"phantom": {"n_inclusions": [4, 1]}}, r"^data\.phantom\.n_inclusions: must be \[low, high\]"),
    ({"split": "rare_lesion"}, r"^data\.phantom\.lesion_rate: the rare_lesion split needs a rate > 0"),
    ({"split": "ood_skull"}, r"^data\.split: ood_skull shifts the skull of the 'brain' phantom"),
    ({"scenario": "acoustic_stepper", "split": "ood_frequency"}, r"^data\.split: ood_frequency needs a scenario"),
    ({"acoustic": {"fd_order": 5}}, r"^data\.acoustic\.fd_order: must be one of \[2, 4, 6, 8\]"),
    ({"acoustic": {"fd_coefficients": "optimal"}}, r"^data\.acoustic\.fd_coefficients: must be one of"),
    ({"acoustic": {"scheme": "pstd", "fd_coefficients": "dispersion"}},
     r"^data\.acoustic\.fd_order / fd_coefficients: they set the fd stencil, and data\.acoustic\.scheme is 'pstd'"),
])
def test_bad_config_names_the_field(section, message):
    with pytest.raises(ValueError, match=message):
        parse_data_config(section)


def test_unknown_section_in_experiment_file(tmp_path):
    from training.data import load_data_config

    cfg = tmp_path / "typo.toml"
    cfg.write_text('[data]\nnum_samples = 4\n[trian]\nsteps = 1\n')
    with pytest.raises(ValueError, match=r"^trian: unknown section in .*allowed sections are \['data', 'model', 'train'\]"):
        load_data_config(str(cfg))


def test_ood_frequency_shifts_the_source_frequency():
    from training.data.config import effective

    usct = parse_data_config({"scenario": "usct", "split": "ood_frequency", "ood_factor": 1.5})
    assert effective(usct).acoustic.frequency == 1.5 * usct.acoustic.frequency
    optics = parse_data_config({"scenario": "optics", "split": "ood_frequency", "ood_factor": 2.0,
                                "phantom": {"kind": "cell"}, "shape": [64, 64]})
    assert effective(optics).optics.wavelength == optics.optics.wavelength / 2


def test_defaults_and_fingerprint():
    a = parse_data_config({})
    assert isinstance(a, DataConfig) and a.shape == (32, 32)
    assert fingerprint(a) == fingerprint(parse_data_config({"num_samples": 64}))
    assert fingerprint(a) != fingerprint(parse_data_config({"num_samples": 65}))


def test_cli_bad_config_one_line_error(tmp_path, capsys):
    from pdesurrogate.cli import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data]\nnum_samples = -3\n[model]\nkind = "fno"\n[train]\nsteps = 1\n')
    assert main(["generate", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "pdesurrogate generate: error: data.num_samples: must be in [1, 10000000], got -3"]
    assert not (tmp_path / "o").exists()
