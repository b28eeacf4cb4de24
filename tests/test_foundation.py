"""Grid, point sampling, checkpointed scans, signals, configs and progress."""

from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdesurrogate.config import dump_toml, load_toml, parse, spec, to_dict
from pdesurrogate.progress import Progress
from solvers import Grid, PointSampler, signals
from solvers.grid import fft_size
from solvers.scan import scan


def test_grid_coordinates_follow_index_times_spacing():
    g = Grid((8, 6), 0.5e-3)
    x, y = g.coordinates()
    assert x[3, 0] == pytest.approx(1.5e-3) and y[0, 5] == pytest.approx(2.5e-3)
    assert g.extent == pytest.approx((3.5e-3, 2.5e-3)) and g.size == 48 and g.ndim == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (8,), "spacing": 1e-3}, "shape must have 2 or 3"),
        ({"shape": (8, 2), "spacing": 1e-3}, "shape entries must be >= 4"),
        ({"shape": (8, 8), "spacing": 0.0}, "spacing must be a finite number > 0"),
        ({"shape": (8, 8), "spacing": float("nan")}, "spacing must be a finite number > 0"),
    ],
)
def test_grid_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grid(**kwargs)


def test_fft_size_is_the_next_7_smooth_size():
    assert [fft_size(n) for n in (1, 7, 11, 41, 574, 1107, 1747, 1024)] == [1, 7, 12, 42, 576, 1120, 1750, 1024]
    brute = [next(m for m in range(n, 2 * n + 8) if all(p <= 7 for p in _prime_factors(m))) for n in range(1, 300)]
    assert [fft_size(n) for n in range(1, 300)] == brute
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            fft_size(bad)


def _prime_factors(m: int) -> list[int]:
    out, p = [], 2
    while m > 1:
        while m % p == 0:
            out.append(p)
            m //= p
        p += 1
    return out


def test_check_points_names_argument_and_range():
    g = Grid((10, 10), 1e-3)
    with pytest.raises(ValueError, match=r"sensors must lie inside the grid"):
        g.check_points("sensors", np.array([[0.0, 0.0], [0.0, 9.5e-3]]))
    with pytest.raises(ValueError, match=r"sensors must have shape \(n, 2\)"):
        g.check_points("sensors", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="margin 2"):
        g.check_points("sources", np.array([[1e-3, 5e-3]]), margin=2)


# linear: error bound ndim * (k h)^2 / 8 = 0.0385 at 16 points per wavelength; sinc: spectral.
@pytest.mark.parametrize("kernel, tol", [("linear", 2 * (2 * np.pi / 16) ** 2 / 8), ("sinc", 2e-4)])
def test_point_sampler_interpolates_smooth_fields(kernel, tol):
    g = Grid((64, 64), 1.0)
    k = 2 * np.pi / 16.0  # 16 points per wavelength
    x, y = g.coordinates()
    field = jnp.asarray(np.cos(k * x) * np.sin(k * y + 0.3))
    rng = np.random.default_rng(0)
    pts = rng.uniform(12, 51, size=(20, 2))
    got = np.asarray(PointSampler(g, pts, kernel=kernel).gather(field))
    want = np.cos(k * pts[:, 0]) * np.sin(k * pts[:, 1] + 0.3)
    assert np.max(np.abs(got - want)) < tol


def test_point_sampler_exact_on_grid_and_scatter_is_adjoint():
    g = Grid((12, 10, 8), 2e-3)
    rng = np.random.default_rng(1)
    field = jnp.asarray(rng.normal(size=g.shape))
    on_grid = np.array([[2, 3, 4], [5, 5, 1]]) * g.spacing
    for kernel in ("linear", "sinc"):
        s = PointSampler(g, on_grid, kernel=kernel)
        np.testing.assert_allclose(s.gather(field), field[(2, 5), (3, 5), (4, 1)], atol=1e-6)
        off = PointSampler(g, rng.uniform(1e-3, 12e-3, size=(4, 3)), kernel=kernel)
        vals = jnp.asarray(rng.normal(size=4))
        lhs = jnp.vdot(off.gather(field), vals)
        rhs = jnp.vdot(field, off.scatter(vals))
        assert float(lhs) == pytest.approx(float(rhs), rel=1e-5)


def _scan_step(c, x):
    c = jnp.sin(c) * 1.01 + x * c[::-1]
    return c, c.sum()


@pytest.mark.parametrize("checkpoint", ["none", "segmented", "recursive"])
def test_checkpointed_scan_matches_plain_gradients(checkpoint):
    xs = jnp.linspace(0.0, 1.0, 23)

    def loss(c0, run):
        c, ys = run(c0)
        return c.sum() + ys.sum()

    c0 = jnp.array([0.3, -0.2, 0.9])
    got = jax.grad(loss)(c0, lambda c: scan(_scan_step, c, xs, checkpoint=checkpoint, segment=5))
    want = jax.grad(loss)(c0, lambda c: jax.lax.scan(_scan_step, c, xs))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_segmented_checkpointing_bounds_gradient_memory():
    """sqrt(n)-step segments keep about 2 sqrt(n) states instead of n: 5% at n = 1600 (measured
    3.8% with JAX 0.9.2 and 0.10.2, 5.2% with 0.12.0.1; at n = 400 the ideal is already 10%, which
    left no margin)."""
    n, size = 1600, 4096

    def make(checkpoint):
        def loss(c0):
            c, _ = scan(lambda c, _: (jnp.tanh(c) + 0.1 * jnp.roll(c, 1), None), c0, length=n,
                        checkpoint=checkpoint)
            return jnp.sum(c**2)

        return jax.jit(jax.grad(loss)).lower(jnp.ones(size)).compile().memory_analysis().temp_size_in_bytes

    store_all, segmented = make("none"), make("segmented")
    assert store_all >= n * size * 4  # every step's state is kept
    assert segmented <= 0.1 * store_all


def test_signals_shapes_and_spectra():
    t = jnp.arange(4000) * 1e-8
    f0 = 1e6
    for s in (signals.tone_burst(t, f0, cycles=3), signals.gaussian_pulse(t, f0), signals.ramped_cw(t, f0)):
        assert s.shape == t.shape and bool(jnp.all(jnp.isfinite(s)))
        spec_ = np.abs(np.fft.rfft(np.asarray(s)))
        freqs = np.fft.rfftfreq(t.size, 1e-8)
        assert abs(freqs[np.argmax(spec_)] - f0) < 0.2 * f0
    burst = signals.tone_burst(t, f0, cycles=3, delay=1e-6)
    assert float(jnp.max(jnp.abs(burst[t < 1e-6]))) == 0.0 and float(jnp.max(jnp.abs(burst[t > 4e-6]))) == 0.0
    with pytest.raises(ValueError, match="frequency must be a finite number > 0"):
        signals.tone_burst(t, -1.0)


@dataclasses.dataclass(frozen=True)
class _Inner:
    spacing: float = dataclasses.field(default=1e-4, metadata=spec(min=1e-9, unit="m"))


@dataclasses.dataclass(frozen=True)
class _Section:
    num_samples: int = dataclasses.field(default=4, metadata=spec(min=1, max=100))
    kind: str = dataclasses.field(default="breast", metadata=spec(choices=("breast", "brain")))
    shape: tuple[int, ...] = (32, 32)
    grid: _Inner = _Inner()
    label: str | None = None


def test_config_parse_valid_and_roundtrip(tmp_path):
    cfg = parse(_Section, {"num_samples": 8, "shape": [16, 16], "grid": {"spacing": 2}}, "data")
    assert cfg.num_samples == 8 and cfg.shape == (16, 16) and cfg.grid.spacing == 2.0
    path = tmp_path / "c.toml"
    path.write_text(dump_toml({"data": to_dict(cfg)}))
    assert parse(_Section, load_toml(path)["data"], "data") == cfg


@pytest.mark.parametrize(
    "data, match",
    [
        ({"num_sample": 3}, r"data\.num_sample: unknown key"),
        ({"num_samples": "3"}, r"data\.num_samples: must be an integer"),
        ({"num_samples": 0}, r"data\.num_samples: must be in \[1, 100\]"),
        ({"kind": "liver"}, r"data\.kind: must be one of"),
        ({"shape": [16, "a"]}, r"data\.shape\[1\]: must be an integer"),
        ({"grid": {"spacing": -1.0}}, r"data\.grid\.spacing: must be in \[1e-09, inf\] m"),
        ({"grid": {"dx": 1.0}}, r"data\.grid\.dx: unknown key"),
    ],
)
def test_config_errors_name_the_field(data, match):
    with pytest.raises(ValueError, match=match):
        parse(_Section, data, "data")


def test_load_toml_reports_path(tmp_path):
    with pytest.raises(ValueError, match="config file not found"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("a = [1,\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_toml(bad)


def test_progress_reports_rate_and_eta():
    out = io.StringIO()
    bar = Progress(total=10, desc="gen", unit="samples", stream=out, log_every=0.0)
    for _ in range(10):
        bar.update(1, loss=0.5)
    bar.close()
    last = out.getvalue().strip().splitlines()[-1]
    assert "10/10" in last and "samples/s" in last and "loss=0.5" in last


@pytest.mark.parametrize("kwargs, match", [
    ({"shape": (32.5, 32), "spacing": 1e-3}, "shape must be whole numbers of cells"),
    ({"shape": (32, 32), "spacing": True}, "spacing must be a finite number > 0"),
])
def test_grid_rejects_non_integer_shape_and_bool_spacing(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grid(**kwargs)


def test_complex_material_values_are_rejected():
    from solvers import acoustic

    with pytest.raises(ValueError, match="sound_speed must be real-valued"):
        acoustic.Stepper(Grid((8, 8), 1e-3), acoustic.Medium(1500.0 + 1j, 1000.0))


def test_package_version_without_an_install(monkeypatch):
    """From a checkout on PYTHONPATH with no install (the GPU host), the version comes from
    pyproject.toml, so dataset manifests still record it."""
    import importlib.metadata
    import tomllib
    from pathlib import Path

    from pdesurrogate import version

    expected = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert version.package_version() == expected
    monkeypatch.setattr(version, "_PYPROJECT", Path("/nonexistent/pyproject.toml"))
    assert version.package_version() is None


def test_jax_0_11_cpu_deadlock_workaround_flag():
    """solvers.runtime adds --xla_cpu_multi_thread_eigen=false for JAX 0.11.x only, and never
    overrides a user's own setting of that flag."""
    from solvers.runtime import xla_flags_for

    assert xla_flags_for("0.11.2", "") == "--xla_cpu_multi_thread_eigen=false"
    assert xla_flags_for("0.11.0", "--xla_dump_to=/tmp/d") == "--xla_dump_to=/tmp/d --xla_cpu_multi_thread_eigen=false"
    assert xla_flags_for("0.11.2", "--xla_cpu_multi_thread_eigen=true") is None
    for version in ("0.9.2", "0.10.2", "0.12.0.1", "0.110.0"):
        assert xla_flags_for(version, "") is None
