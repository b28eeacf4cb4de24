"""Models: spectral convolutions against direct DFT sums, shapes of FNO / F-FNO / U-Net in
2D and 3D, domain padding, normalisation, complex channels, bf16, save/restore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pdesurrogate.models import (FFNO, FNO, FactorizedSpectralConv, SpectralConv, UNet, apply_batched, build_model,
                                 channels_to_complex, complex_to_channels, load_model, save_model)

REPO = Path(__file__).resolve().parents[1]


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _weights(layer) -> np.ndarray:
    w = np.asarray(layer.weight[...], np.float64)
    return w[..., 0] + 1j * w[..., 1]


def _direct_spectral_conv(x: np.ndarray, w: np.ndarray, modes: tuple[int, ...]) -> np.ndarray:
    """y = irfftn(W rfftn(x)) on retained modes written as explicit DFT sums (no FFT)."""
    spatial = x.shape[1:]
    nd = len(spatial)
    kept = [np.concatenate([np.arange(m), np.arange(n - m, n)]) for n, m in zip(spatial[:-1], modes[:-1])]
    kept.append(np.arange(modes[-1]))
    grids = np.meshgrid(*[np.arange(n) for n in spatial], indexing="ij")
    y = np.zeros((w.shape[1],) + spatial)
    for idx in np.ndindex(*[len(k) for k in kept]):
        k = [kept[d][idx[d]] for d in range(nd)]
        phase = sum(k[d] * grids[d] / spatial[d] for d in range(nd))
        basis = np.exp(-2j * np.pi * phase)
        X = np.tensordot(x, basis, axes=(tuple(range(1, nd + 1)), tuple(range(nd))))  # (Cin,)
        Y = X @ w[(slice(None), slice(None)) + idx]  # (Cout,)
        weight = 1.0 if k[-1] == 0 else 2.0  # Hermitian partner of the halved last axis
        y += weight * np.real(Y.reshape((-1,) + (1,) * nd) * np.conj(basis)[None])
    return y / np.prod(spatial)


@pytest.mark.parametrize("spatial,modes", [((12, 10), (3, 4)), ((8, 6, 7), (2, 3, 3))])
def test_spectral_conv_matches_direct_dft(x64, spatial, modes):
    layer = SpectralConv(3, 2, modes, seed=1)
    x = np.random.default_rng(0).normal(size=(3,) + spatial)
    y = np.asarray(jax.jit(lambda v: layer(v))(jnp.asarray(x)))
    ref = _direct_spectral_conv(x, _weights(layer), modes)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_factorized_spectral_conv_matches_direct_dft(x64):
    spatial, modes, C = (10, 9), (3, 4), 2
    layer = FactorizedSpectralConv(C, modes, seed=2)
    x = np.random.default_rng(1).normal(size=(C,) + spatial)
    y = np.asarray(layer(jnp.asarray(x)))
    ref = np.zeros_like(x)
    for d, (m, wp) in enumerate(zip(modes, layer.weights)):
        w = np.asarray(wp[...], np.float64)
        w = w[..., 0] + 1j * w[..., 1]
        n = spatial[d]
        j = np.arange(n)
        for k in range(m):
            basis = np.exp(-2j * np.pi * k * j / n)
            X = np.moveaxis(np.tensordot(x, basis, axes=([d + 1], [0])), 0, 0)  # (C, other)
            Y = np.einsum("i...,io->o...", X, w[:, :, k])
            contrib = (1.0 if k == 0 else 2.0) * np.real(np.multiply.outer(Y, np.conj(basis))) / n
            ref += np.moveaxis(contrib, -1, d + 1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_spectral_conv_rejects_too_many_modes():
    layer = SpectralConv(1, 1, (5, 5))
    with pytest.raises(ValueError, match="modes"):
        layer(jnp.zeros((1, 8, 16)))
    with pytest.raises(ValueError, match="shape"):
        layer(jnp.zeros((2, 16, 16)))


CASES = [
    (dict(kind="fno", in_channels=3, out_channels=2, modes=[4, 3], width=8, depth=2, padding=2), (3, 16, 12)),
    (dict(kind="fno", in_channels=2, out_channels=4, modes=[2, 2, 3], width=6, depth=2, padding=[1, 0, 2]),
     (2, 8, 6, 10)),
    (dict(kind="ffno", in_channels=3, out_channels=2, modes=[4, 3], width=8, depth=2, padding=1), (3, 16, 12)),
    (dict(kind="ffno", in_channels=2, out_channels=1, modes=[3, 2, 2], width=6, depth=2), (2, 8, 6, 6)),
    (dict(kind="unet", in_channels=3, out_channels=2, ndim=2, width=8, levels=3), (3, 16, 12)),
    (dict(kind="unet", in_channels=2, out_channels=1, ndim=3, width=4, levels=2), (2, 8, 6, 4)),
]


@pytest.mark.parametrize("config,shape", CASES, ids=[f"{c['kind']}{len(s) - 1}d" for c, s in CASES])
def test_model_shapes_and_vmap(config, shape):
    model = build_model(config)
    x = _normal(0, (2,) + shape)
    y = jax.jit(lambda v: apply_batched(model, v))(x)
    assert y.shape == (2, config["out_channels"]) + shape[1:]
    assert y.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_allclose(y[1], jax.jit(model)(x[1]), rtol=1e-5, atol=1e-5)


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="kind"):
        build_model({"kind": "transformer"})
    with pytest.raises(ValueError, match="invalid arguments"):
        build_model({"kind": "fno", "in_channels": 1, "out_channels": 1, "modes": [2, 2], "bogus": 1})
    with pytest.raises(ValueError, match="width"):
        FNO(1, 1, (2, 2), width=0)
    with pytest.raises(ValueError, match="padding"):
        FFNO(1, 1, (2, 2), padding=[1, 2, 3])
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(1, 1, ndim=2, width=4, levels=3)(jnp.zeros((1, 12, 10)))
    with pytest.raises(ValueError, match="one sample"):
        FNO(2, 1, (2, 2), width=4, depth=1)(jnp.zeros((4, 2, 8, 8)))
    with pytest.raises(ValueError, match="std"):
        FNO(1, 1, (2, 2), in_std=[0.0])


def test_domain_padding_breaks_periodic_wraparound():
    """Without padding or coordinates an FNO commutes with circular shifts (it is periodic);
    with domain padding it does not, so no information wraps around the domain."""
    x = _normal(1, (1, 16, 16))
    shift = lambda v: jnp.roll(v, 5, axis=1)  # noqa: E731
    for padding, periodic in ((0, True), (4, False)):
        model = FNO(1, 1, (4, 4), width=8, depth=2, padding=padding, coord_features=False)
        err = float(jnp.max(jnp.abs(model(shift(x)) - shift(model(x)))))
        assert (err < 1e-5) == periodic, (padding, err)


def test_normalisation_makes_models_unit_free():
    """Inputs and outputs in physical units: scaling the data and the stored statistics together
    scales the output identically."""
    x = _normal(2, (2, 8, 8))
    base = FNO(2, 1, (3, 3), width=4, depth=1)
    scaled = FNO(2, 1, (3, 3), width=4, depth=1, in_mean=[1500.0, 1000.0], in_std=[100.0, 50.0],
                 out_mean=[2.0], out_std=[1e5])
    x_phys = x * jnp.array([100.0, 50.0])[:, None, None] + jnp.array([1500.0, 1000.0])[:, None, None]
    np.testing.assert_allclose(scaled(x_phys), base(x) * 1e5 + 2.0, rtol=2e-4, atol=2.0)


def test_complex_channel_pairs_roundtrip():
    z = _normal(3, (3, 4, 5)) + 1j * _normal(4, (3, 4, 5))
    ch = complex_to_channels(z)
    assert ch.shape == (6, 4, 5) and not jnp.iscomplexobj(ch)
    np.testing.assert_array_equal(ch[2], z[1].real)
    np.testing.assert_array_equal(ch[3], z[1].imag)
    np.testing.assert_array_equal(channels_to_complex(ch), z)


def test_bf16_parameters_give_bf16_forward_close_to_float32():
    model = FNO(2, 1, (4, 4), width=8, depth=2, padding=2)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params16 = jax.tree_util.tree_map(lambda p: p.astype(jnp.bfloat16), params)
    model16 = nnx.merge(graphdef, params16, rest)
    x = _normal(5, (2, 16, 16))
    y32, y16 = jax.jit(model)(x), jax.jit(model16)(x)
    assert y16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 0 < rel < 0.05, rel


def test_save_and_restore_in_fresh_process(tmp_path):
    config = dict(kind="ffno", in_channels=2, out_channels=2, modes=[3, 3], width=6, depth=2, padding=1,
                  in_mean=[1.0, 2.0], in_std=[3.0, 4.0])
    model = build_model(config)
    x = np.random.default_rng(0).normal(size=(2, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    save_model(tmp_path / "model", model, config)
    restored, meta = load_model(tmp_path / "model")
    assert meta["model"] == config and meta["format_version"] == 1
    expected = np.asarray(jax.jit(model)(jnp.asarray(x)))
    np.testing.assert_array_equal(np.asarray(jax.jit(restored)(jnp.asarray(x))), expected)
    code = ("import sys, numpy as np, jax, jax.numpy as jnp\n"
            "from pdesurrogate.models import load_model\n"
            "m, _ = load_model(sys.argv[1])\n"
            "np.save(sys.argv[2], np.asarray(jax.jit(m)(jnp.asarray(np.load(sys.argv[3])))))\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    args = [str(tmp_path / "model"), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")]
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env, cwd=REPO, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    meta_file = next((tmp_path / "model").glob("*/meta/metadata"))
    stored = json.loads(meta_file.read_text())
    stored["format_version"] = 99
    meta_file.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="format_version"):
        load_model(tmp_path / "model")
