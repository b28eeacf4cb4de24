"""Shared test setup: CPU only, a compilation cache for the session, an x64 fixture, a
recorded-figures fixture and one tiny trained USCT trace operator shared by every module."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests build the same programs again (new closures over equal arrays, and the subprocesses of
# the resume and command-line tests): a persistent cache for this session (inherited by the
# subprocesses) compiles each once. It is removed at exit; a user's own cache directory is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="pdesurrogate-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# experiments/validation.py sets this to a file; each recorded figure is appended to it as one JSON line.
FIGURES_ENV = "PDESURROGATE_FIGURES"


@pytest.fixture
def x64():
    """Enable float64 for one test and restore the previous setting afterwards."""
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def record_figure(request):
    """``record(check, value, *, tolerance, dtype, region, unit="", detail="")``: a validation
    test's measured figure, recorded before the test asserts on it.

    ``check`` names the row (what is compared with what), ``tolerance`` is the test's own bound as
    text (built from the value it asserts against), ``dtype`` the compute dtype, ``region`` where
    and how the figure is taken (sensors, grid, steps, masks). The figure is stored in the test's
    ``user_properties`` and, when ``$PDESURROGATE_FIGURES`` names a file, appended to it
    (``experiments/validation.py`` turns those lines into ``experiments/results/validation_cpu.md``).
    """

    def record(check: str, value: float, *, tolerance: str, dtype, region: str, unit: str = "",
               detail: str = "") -> None:
        entry = {"check": check, "value": float(value), "unit": unit, "tolerance": tolerance,
                 "dtype": np.dtype(dtype).name, "region": region, "detail": detail, "test": request.node.nodeid}
        request.node.user_properties.append(("figure", entry))
        path = os.environ.get(FIGURES_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    return record


def pytest_addoption(parser):
    parser.addoption("--figures", action="store_true",
                     help="print the figures the validation tests recorded (record_figure) after the run")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not config.getoption("--figures"):
        return
    reports = [r for rs in terminalreporter.stats.values() for r in rs if getattr(r, "when", None) == "call"]
    figures = [entry for r in reports for key, entry in r.user_properties if key == "figure"]
    terminalreporter.section(f"recorded figures ({len(figures)})")
    for f in figures:
        detail = f" ({f['detail']})" if f["detail"] else ""
        terminalreporter.write_line(f"{f['check']}: {f['value']:.3g}{detail}  [tolerance {f['tolerance']}, "
                                    f"{f['dtype']}; {f['region']}]  {f['test']}")


USCT_DATA = {"scenario": "usct", "num_samples": 16, "batch_size": 8, "shape": [32, 32], "spacing": 2e-4, "seed": 0,
             "phantom": {"kind": "breast"},
             "acoustic": {"pml_size": 6, "duration": 8e-6, "n_elements": 16, "n_shots": 4, "ring_margin": 1,
                          "frequency": 5e5}}
USCT_TOML = {"data": USCT_DATA, "model": {"kind": "fno", "modes": 8, "width": 16, "depth": 3},
             "train": {"steps": 150, "batch_size": 4, "lr": 3e-3, "warmup_steps": 10, "validate_every": 50,
                       "checkpoint_every": 50, "log_every": 10, "loss": {"data": 1.0, "reciprocity": 0.1}}}


@pytest.fixture(scope="session")
def usct_run(tmp_path_factory):
    """``(root, TrainResult)``: a 16-sample 32^2 ``usct`` dataset (16 elements, 4 shots, 0.5 MHz) in
    ``root / "data"`` and a 150-step trace operator trained on it in ``root / "run"``; trained once
    per session (the trace-operator, USCT-inversion and trust tests share it)."""
    from training.data import generate
    from training.run import train_run

    root = tmp_path_factory.mktemp("usct")
    generate(USCT_DATA, root / "data", progress=False)
    result = train_run(USCT_TOML, root / "data", root / "run", resume=False, progress=False)
    return root, result
