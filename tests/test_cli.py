"""The command line: help, info, one-line errors, and simulate/demo outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pdesurrogate.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("info", "simulate", "demo"):
        assert name in out


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["backend"] == "cpu" and facts["devices"] and facts["packages"]["jax"]


def test_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nshape = [64, 64]\nspacing = -1.0\n")
    proc = subprocess.run([sys.executable, "-m", "pdesurrogate", "simulate", "acoustic", str(bad),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.grid.spacing" in lines[0] and "Traceback" not in proc.stderr


def test_simulate_acoustic_writes_outputs(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text(
        "[grid]\nshape = [64, 64]\nspacing = 5e-4\n"
        "[medium]\nphantom = \"homogeneous\"\n"
        "[array]\nn_elements = 16\n"
        "[source]\nkind = \"element\"\nfrequency = 5e5\n"
        "[simulation]\nscheme = \"fd\"\npml_size = 10\n"
    )
    out = tmp_path / "out"
    assert main(["simulate", "acoustic", str(cfg), "--out", str(out)]) == 0
    with np.load(out / "result.npz") as r:
        traces, time = r["traces"], r["time"]
        assert traces.shape == (time.size, 16) and np.all(np.isfinite(traces))
        # The emitting element records the burst; the opposite element receives it later.
        assert np.argmax(np.abs(traces[:, 8])) > np.argmax(np.abs(traces[:, 0]))
    assert (out / "simulation.png").stat().st_size > 10_000
    assert 'scheme = "fd"' in (out / "config.toml").read_text()


def test_file_system_errors_are_one_line(tmp_path, capsys):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    cfg = tmp_path / "sim.toml"
    cfg.write_text("[grid]\nshape = [32, 32]\nspacing = 5e-4\n[medium]\nphantom = \"homogeneous\"\n"
                   "[array]\nn_elements = 4\n[simulation]\npml_size = 4\n")
    assert main(["simulate", "acoustic", str(cfg), "--out", str(not_a_dir / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Not a directory" in err[0] and "Traceback" not in err[0]
