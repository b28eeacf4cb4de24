"""Heterogeneous sound speed and density against jwave 0.2.1 (k-Wave-equivalent pstd oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from solvers import Grid, acoustic
from solvers.acoustic.jwave_oracle import jwave_traces

pytest.importorskip("jwave")


def test_heterogeneous_medium_matches_jwave(record_figure):
    n, h, pml = 96, 1e-4, 12
    grid = Grid((n, n), h)
    x = grid.coordinates()
    ctr = n // 2 * h

    def blob(cx, cy, s):
        return np.exp(-((x[0] - cx) ** 2 + (x[1] - cy) ** 2) / (2 * s**2))

    c = (1500 + 150 * blob(ctr + 8 * h, ctr - 6 * h, 8 * h)).astype(np.float32)
    rho = (1000 + 200 * blob(ctr - 6 * h, ctr + 8 * h, 7 * h)).astype(np.float32)
    p0 = blob(ctr, ctr, 3 * h).astype(np.float32)
    ix, iy = np.array([68, 28, 48, 48]), np.array([48, 48, 68, 28])
    sensors = np.stack([ix, iy], 1) * h
    medium = acoustic.Medium(c, rho)
    duration = 40 * h / 1500
    pstd = acoustic.simulate(grid, medium, duration, p0=p0, sensors=sensors, scheme="pstd", pml_size=pml)
    fd = acoustic.simulate(grid, medium, duration, p0=p0, sensors=sensors, scheme="fd", pml_size=pml)
    ref = jwave_traces(c, rho, p0, h, pml, float(pstd.dt), pstd.time.shape[0], (ix, iy))
    err_pstd = np.linalg.norm(np.asarray(pstd.traces) - ref) / np.linalg.norm(ref)
    err_fd = np.linalg.norm(np.asarray(fd.traces) - ref) / np.linalg.norm(ref)
    region = "96², c and rho Gaussian blobs, 12-cell PML, 4 sensors 20 cells from the centre; rel L2 of the traces"
    for scheme, err, tol in (("pstd", err_pstd, 5e-3), ("fd4", err_fd, 2e-2)):
        record_figure(f"heterogeneous c and rho vs jwave (no smoothing), `{scheme}`", err, tolerance=f"<= {tol:g}",
                      dtype=np.float32, region=region)
    assert err_pstd <= 5e-3, err_pstd
    assert err_fd <= 2e-2, err_fd
