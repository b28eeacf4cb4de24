"""Shared test setup: CPU only, an x64 fixture and a recorded-figures fixture."""

from __future__ import annotations

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
