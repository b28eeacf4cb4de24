"""On-disk datasets: determinism, resume after SIGKILL, reruns, refusal, multi-process and multi-device."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pdesurrogate.config import dump_toml
from training.data import generate, load_data_config, open_dataset, parse_data_config
from training.data.scenarios import build
from training.data.storage import batch_stats

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from pdesurrogate.cli import main; sys.exit(main())"]
PHANTOM = {"scenario": "phantom", "num_samples": 10, "batch_size": 4, "shape": [32, 32],
           "phantom": {"kind": "breast", "lesion_rate": 0.3}}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(dump_toml({"data": data, "model": {"kind": "fno", "modes": 8, "width": 16, "depth": 2},
                               "train": {"steps": 10, "batch_size": 4, "lr": 1e-3}}))
    return path


def assert_same_samples(a_dir: Path, b_dir: Path) -> None:
    a, b = open_dataset(a_dir), open_dataset(b_dir)
    assert a.complete and b.complete and len(a) == len(b)
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"sample {i} field {k}")
    assert a.manifest["stats"] == b.manifest["stats"]
    assert a.manifest["sample_stats"] == b.manifest["sample_stats"]


def test_roundtrip_metadata_and_determinism(tmp_path):
    report = generate(PHANTOM, tmp_path / "ds", progress=False)
    assert report["status"] == "complete" and report["written"] == 10
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == 10 and ds.complete
    scenario = build(parse_data_config(PHANTOM))
    for i in (0, 5, 9):  # sample i is reproduced exactly from (config, seed, i)
        s = ds[i]
        assert int(s["index"]) == i and int(s["seed"]) == 0
        expected, extra = scenario.inputs(i)
        for k, v in expected.items():
            np.testing.assert_array_equal(s[k], v)
    m = ds.manifest
    assert m["fields"]["sound_speed"]["unit"] == "m/s" and m["fields"]["sound_speed"]["shape"] == [32, 32]
    assert m["package_version"] and m["config"]["phantom"]["kind"] == "breast" and m["seed"] == 0
    assert len(m["sample_stats"]["sound_speed"]["mean"]) == 10
    all_c = np.stack([ds[i]["sound_speed"] for i in range(10)]).astype(np.float64)
    assert abs(ds.stats["sound_speed"]["mean"] - all_c.mean()) < 1e-6 * all_c.mean()
    assert abs(ds.stats["sound_speed"]["std"] - all_c.std()) < 1e-6 * all_c.std()
    assert m["num_rare_lesion"] == 3
    with pytest.raises(IndexError):
        ds[10]


def test_rerun_is_noop_and_different_config_refused(tmp_path, capsys):
    out = tmp_path / "ds"
    generate(PHANTOM, out, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    report = generate(PHANTOM, out, progress=False)
    assert report["status"] == "already complete" and report["written"] == 0
    assert "already complete" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    other = dict(PHANTOM, seed=1)
    with pytest.raises(ValueError, match=r"different config \(data.seed: 0 \(on disk\) vs 1.*--overwrite"):
        generate(other, out, progress=False)
    assert generate(other, out, progress=False, overwrite=True)["status"] == "complete"
    assert open_dataset(out).config.seed == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="non-empty directory"):
        generate(PHANTOM, tmp_path / "junk", progress=False)


def test_partial_then_resume_equals_uninterrupted(tmp_path):
    generate(PHANTOM, tmp_path / "full", progress=False)
    partial = generate(PHANTOM, tmp_path / "part", progress=False, max_batches=1)
    assert partial["status"] == "partial" and partial["written"] == 4
    ds = open_dataset(tmp_path / "part")
    assert not ds.complete and ds.written().sum() == 4
    with pytest.raises(ValueError, match="not written yet"):
        ds[5]
    assert open_dataset(tmp_path / "part").info()["complete"] is False
    resumed = generate(PHANTOM, tmp_path / "part", progress=False)
    assert resumed["written"] == 6
    assert_same_samples(tmp_path / "full", tmp_path / "part")


def test_resume_accepts_settings_added_since(tmp_path):
    """A dataset begun before a setting existed (its stored config lacks the key) resumes: the new
    setting counts as its default. A changed setting is still refused."""
    data = dict(PHANTOM, acoustic={"scheme": "fd"})
    generate(data, tmp_path / "part", progress=False, max_batches=1)
    manifest = tmp_path / "part" / "manifest.json"
    m = json.loads(manifest.read_text())
    for key in ("fd_order", "fd_coefficients"):  # settings added after such a dataset was begun
        del m["config"]["acoustic"][key]
    manifest.write_text(json.dumps(m))
    assert generate(data, tmp_path / "part", progress=False)["written"] == 6
    generate(data, tmp_path / "full", progress=False)
    assert_same_samples(tmp_path / "full", tmp_path / "part")
    changed = dict(PHANTOM, acoustic={"scheme": "fd", "fd_order": 8})
    with pytest.raises(ValueError, match=r"different config \(data\.acoustic\.fd_order: 4 \(on disk\) vs 8"):
        generate(changed, tmp_path / "part", progress=False)


def test_resume_with_other_code_warns(tmp_path):
    """A dataset begun by another commit is resumed (same config), with a warning: the solvers may
    have changed in between (e.g. a default point kernel), which the config fingerprint cannot see."""
    import io
    import json

    from training.data.storage import git_commit

    generate(PHANTOM, tmp_path / "part", progress=False, max_batches=1)
    manifest = tmp_path / "part" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["git_commit"] = "0" * 40
    manifest.write_text(json.dumps(m))
    log = io.StringIO()
    assert generate(PHANTOM, tmp_path / "part", progress=False, log=log)["written"] == 6
    if git_commit() is None:
        pytest.skip("not running from a git checkout")
    assert "begun at commit 0000000000000000000000000000000000000000" in log.getvalue()


@pytest.mark.parametrize("data", [
    dict(PHANTOM, num_samples=240, batch_size=1, shape=[48, 48]),
    # the device path: vmapped simulation and the background writer thread are killed mid-run
    {"scenario": "acoustic_stepper", "num_samples": 240, "batch_size": 1, "shape": [32, 32],
     "acoustic": {"pml_size": 4, "n_frames": 4}},
], ids=["phantom", "acoustic_stepper"])
def test_sigkill_and_resume_identical(tmp_path, data):
    cfg = _write_config(tmp_path / "cfg.toml", data)
    out = tmp_path / "killed"
    for kill_after in (15, 60):  # kill twice at different points, resume each time
        proc = subprocess.Popen([*CLI, "generate", str(cfg), "--out", str(out),
                                 "--quiet"], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            done = out / "done"
            if done.is_dir() and len(os.listdir(done)) >= kill_after:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "generation finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not open_dataset(out).complete
    log = io.StringIO()
    assert generate(load_data_config(str(cfg)), out, progress=False, log=log)["status"] == "complete"
    assert "resuming" in log.getvalue()
    generate(data, tmp_path / "clean", progress=False)
    assert_same_samples(tmp_path / "clean", out)


def test_leftovers_of_a_killed_prepare_or_overwrite_are_cleaned(tmp_path):
    out = tmp_path / "ds"
    for leftover in (tmp_path / ".ds.preparing" / "fields", tmp_path / ".ds.trash" / "done"):
        leftover.mkdir(parents=True)  # what a SIGKILL during prepare or --overwrite leaves behind
    assert generate(PHANTOM, out, progress=False)["status"] == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert generate(dict(PHANTOM, seed=3), out, progress=False, overwrite=True)["status"] == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"] and open_dataset(out).config.seed == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_process_distributed_generation(tmp_path):
    data = {"scenario": "acoustic_stepper", "num_samples": 10, "batch_size": 3, "shape": [32, 32],
            "phantom": {"kind": "brain"}, "acoustic": {"pml_size": 6, "n_frames": 2, "save_every": 3}}
    cfg = _write_config(tmp_path / "cfg.toml", data)
    out = tmp_path / "dist"
    port = _free_port()
    procs = [subprocess.Popen([*CLI, "generate", str(cfg), "--out", str(out),
                               "--quiet", "--json", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                               "--process-id", str(i)], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    reports = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(r["process_index"] for r in reports) == [0, 1]
    assert sum(r["written"] for r in reports) == 10 and all(r["written"] > 0 for r in reports)
    assert all(r["status"] == "complete" for r in reports)
    generate(data, tmp_path / "single", progress=False)
    assert_same_samples(tmp_path / "single", out)


def test_cli_generate_info_show(tmp_path, capsys):
    from pdesurrogate.cli import main

    cfg = _write_config(tmp_path / "cfg.toml", PHANTOM)
    out = tmp_path / "ds"
    assert main(["generate", str(cfg), "--out", str(out)]) == 0
    assert "samples/s" in capsys.readouterr().err
    assert main(["dataset", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_samples"] == 10 and info["complete"] is True
    assert info["fields"] == {"sound_speed": [32, 32], "density": [32, 32], "lesion_mask": [32, 32]}
    assert info["config"]["phantom"]["kind"] == "breast"
    assert main(["generate", str(cfg), "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().err
    other = _write_config(tmp_path / "other.toml", dict(PHANTOM, num_samples=11))
    assert main(["generate", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.num_samples" in err and "--overwrite" in err
    fig = tmp_path / "fig.png"
    assert main(["dataset", "show", str(out), "--index", "3", "--out", str(fig)]) == 0
    assert fig.stat().st_size > 10_000


def test_batch_stats_are_per_sample_float64_statistics():
    rng = np.random.default_rng(3)
    real = (1e3 + rng.standard_normal((5, 7, 9))).astype(np.float32)
    cplx = (rng.standard_normal((3, 4, 4)) + 1j * rng.standard_normal((3, 4, 4))).astype(np.complex64)
    for values in (real, cplx):
        got = np.array(batch_stats(values))
        for i, v in enumerate(values):
            m = np.abs(v).astype(np.float64)
            np.testing.assert_allclose(got[i], [m.mean(), m.std(), m.min(), m.max()], rtol=1e-12)
    assert batch_stats(np.arange(3.0)) == [[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0], [2.0, 0.0, 2.0, 2.0]]
