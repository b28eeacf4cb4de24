"""Loader: seeded shuffling, exactly-once epochs across processes, cheap resume, prefetch, stats."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import Loader, generate, open_dataset

DATA = {"scenario": "phantom", "num_samples": 23, "batch_size": 5, "shape": [16, 16],
        "phantom": {"kind": "grf", "correlation_length": 3e-4}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "ds"
    generate(DATA, out, progress=False)
    return open_dataset(out)


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_each_sample_once_per_epoch_across_processes(dataset, process_count):
    for epoch in (0, 1):
        seen = []
        for p in range(process_count):
            loader = Loader(dataset, 4, seed=3, drop_last=False, process_index=p, process_count=process_count)
            batches = list(loader.epoch(epoch))
            assert len(batches) == len(loader)
            seen += [int(i) for b in batches for i in b["index"]]
        assert sorted(seen) == list(range(23))


def test_drop_last_equal_batches_disjoint(dataset):
    loaders = [Loader(dataset, 3, seed=0, drop_last=True, process_index=p, process_count=2) for p in range(2)]
    assert [len(lo) for lo in loaders] == [3, 3]  # 23 // 2 = 11 per process -> 3 full batches
    idx = [np.concatenate([b["index"] for b in lo.epoch(0)]) for lo in loaders]
    assert all(len(i) == 9 for i in idx) and not set(idx[0]) & set(idx[1])
    assert all(len(b["index"]) == 3 for lo in loaders for b in lo.epoch(1))


def test_deterministic_shuffle_resume_and_content(dataset):
    lo = Loader(dataset, 4, seed=1, process_index=0, process_count=1, prefetch=2)
    e0 = [b["index"].tolist() for b in lo.epoch(0)]
    assert e0 == [b["index"].tolist() for b in Loader(dataset, 4, seed=1, process_index=0, process_count=1,
                                                      prefetch=0).epoch(0)]
    assert e0 != [b["index"].tolist() for b in lo.epoch(1)]
    assert e0 != [b["index"].tolist() for b in Loader(dataset, 4, seed=2, process_index=0,
                                                      process_count=1).epoch(0)]
    assert [b["index"].tolist() for b in lo.epoch(0, start=3)] == e0[3:]
    batch = next(iter(lo.epoch(0)))
    assert batch["sound_speed"].shape == (4, 16, 16) and batch["sound_speed"].dtype == np.float32
    for row, i in enumerate(batch["index"]):
        np.testing.assert_array_equal(batch["sound_speed"][row], dataset[int(i)]["sound_speed"])
    ordered = Loader(dataset, 5, shuffle=False, process_index=0, process_count=1)
    assert [b["index"].tolist() for b in ordered.epoch(0)][0] == [0, 1, 2, 3, 4]


def test_fields_stats_device(dataset):
    import jax

    lo = Loader(dataset, 2, fields=["density"], process_index=0, process_count=1, device=jax.devices()[0])
    batch = next(iter(lo.epoch(0)))
    assert set(batch) == {"density", "seed", "index"} and isinstance(batch["density"], jax.Array)
    assert set(lo.stats) == {"density"} and lo.stats["density"]["std"] > 0
    assert lo.stats == {"density": dataset.manifest["stats"]["density"]}
    with pytest.raises(ValueError, match="fields must be among"):
        Loader(dataset, 2, fields=["nope"], process_index=0, process_count=1)
    with pytest.raises(ValueError, match="batch_size"):
        Loader(dataset, 0, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="start must be"):
        next(lo.epoch(0, start=99))


def test_incomplete_dataset_refused(tmp_path):
    generate(DATA, tmp_path / "part", progress=False, max_batches=1)
    with pytest.raises(ValueError, match="incomplete"):
        Loader(open_dataset(tmp_path / "part"), 2, process_index=0, process_count=1)


def test_task_layout_for_the_trainer(tmp_path):
    from training.tasks import get_task, reversal_signs

    stepper = get_task("stepper")

    data = {"scenario": "acoustic_stepper", "num_samples": 4, "batch_size": 4, "shape": [24, 24],
            "phantom": {"kind": "grf"}, "acoustic": {"pml_size": 4, "n_frames": 2, "save_every": 2}}
    generate(data, tmp_path / "st", progress=False)
    ds = open_dataset(tmp_path / "st")
    lo = Loader(ds, 2, fields=stepper.fields(ds.fields), process_index=0, process_count=1)
    batch = stepper.to_batch(next(iter(lo.epoch(0))))
    assert batch["state"].shape == (2, 3, 3, 24, 24) and batch["medium"].shape == (2, 2, 24, 24)
    raw = ds[int(next(iter(lo.epoch(0)))["index"][0])]
    np.testing.assert_array_equal(batch["state"][0, :, 0], raw["pressure"])
    np.testing.assert_array_equal(batch["state"][0, :, 2], raw["velocity"][:, 1])
    np.testing.assert_array_equal(batch["medium"][0, 1], raw["density"])
    stats = stepper.stats(lo.stats, ndim=2)
    assert len(stats["state"]["mean"]) == 3 and stats["medium"]["std"][0] == lo.stats["sound_speed"]["std"]
    assert reversal_signs(ds.fields, 2) == [1.0, -1.0, -1.0]
    with pytest.raises(ValueError, match="needs dataset fields"):
        get_task("field").fields(ds.fields)
