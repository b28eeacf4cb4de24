"""Losses: relative L2, unrolling with the pushforward trick, input noise, time-reversal
consistency (exact 0 for a reversible leapfrog map), residual hook and the two task losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training.losses import (LossWeights, channel_reversal, field_loss, relative_l2, residual_loss, stepper_loss,
                             time_reversal_loss, unrolled_loss)

DT = 0.5  # time step of the test wave map; grid spacing 1


def _laplacian(u: jax.Array) -> jax.Array:
    """Periodic 5-point Laplacian (spacing 1)."""
    return sum(jnp.roll(u, s, axis=a) for a in (0, 1) for s in (1, -1)) - 4 * u


def _kdk(state: jax.Array, c2: jax.Array, damping: float = 0.0) -> jax.Array:
    """One kick-drift-kick leapfrog step of u_tt = c2 lap(u), state (2, N, N) = (u, u_t).
    Exactly time-reversible under (u, v) -> (u, -v) when ``damping == 0``."""
    u, v = state
    v = v + 0.5 * DT * c2 * _laplacian(u)
    u = u + DT * v
    v = (v + 0.5 * DT * c2 * _laplacian(u)) * (1.0 - damping)
    return jnp.stack([u, v])


def _wave_map(c2: jax.Array, steps: int, damping: float = 0.0, sponge: int = 0):
    def one(_, state: jax.Array) -> jax.Array:
        state = _kdk(state, c2, damping)
        if sponge:  # a hard absorbing layer: zero the outer `sponge` cells
            state = state * jnp.zeros(state.shape[1:], state.dtype).at[sponge:-sponge, sponge:-sponge].set(1.0)
        return state

    return lambda state: jax.lax.fori_loop(0, steps, one, state)


def _random_state(n: int = 32, seed: int = 0, dtype=np.float32) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    state = jnp.asarray(rng.normal(size=(2, n, n)).astype(dtype))
    c2 = jnp.asarray(rng.uniform(0.5, 1.0, size=(n, n)).astype(dtype))
    return state, c2


REVERSE = channel_reversal([1.0, -1.0])


def test_relative_l2_value():
    t = jnp.array([3.0, 4.0])
    assert float(relative_l2(t + jnp.array([0.0, 0.5]), t)) == pytest.approx(0.1, rel=1e-6)
    assert float(relative_l2({"a": t, "b": 2 * t}, {"a": t, "b": 2 * t})) < 1e-12


def test_time_reversal_zero_for_leapfrog_float32():
    state, c2 = _random_state()
    phi = _wave_map(c2, steps=10)
    assert float(jax.jit(lambda u: time_reversal_loss(phi, REVERSE, u))(state)) < 1e-10
    damped = _wave_map(c2, steps=10, damping=0.01)
    assert float(jax.jit(lambda u: time_reversal_loss(damped, REVERSE, u))(state)) > 1e-3


def test_time_reversal_zero_for_leapfrog_float64(x64):
    state, c2 = _random_state(dtype=np.float64)
    phi = _wave_map(c2, steps=10)
    assert float(jax.jit(lambda u: time_reversal_loss(phi, REVERSE, u))(state)) < 1e-26


def test_time_reversal_mask_excludes_absorbing_layer():
    """A hard sponge breaks reversibility; its influence spreads 2 cells per step, so after
    2 x 2 steps cells more than 2 + 8 from the edge are untouched and the masked loss is 0."""
    state, c2 = _random_state()
    phi = _wave_map(c2, steps=2, sponge=2)
    mask = jnp.zeros((32, 32)).at[11:21, 11:21].set(1.0)
    tr = jax.jit(lambda u, m: time_reversal_loss(phi, REVERSE, u, m))
    assert float(tr(state, None)) > 1e-2
    assert float(tr(state, mask)) < 1e-10


def test_pushforward_cuts_gradient_through_earlier_steps():
    """Step u -> a u on the trajectory u_k = 0.5^k u_0 with n = 2 unrolled steps:
    loss = (|a - .5| / .5 + |a^2 - .25| / .25) / 2; d/da = 3.4 at a = 0.6 with back-propagation
    through time and 2.2 with the pushforward trick (the second step sees a fixed input a u_0)."""
    u0 = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4)).astype(np.float32))
    states = jnp.stack([u0, 0.5 * u0, 0.25 * u0])

    def loss(a, pushforward):
        return unrolled_loss(lambda u: a * u, states, 2, pushforward=pushforward)[0]

    for pushforward, grad in ((False, 3.4), (True, 2.2)):
        value, g = jax.value_and_grad(loss)(0.6, pushforward)
        assert float(value) == pytest.approx(0.5 * (0.1 / 0.5 + 0.11 / 0.25), rel=1e-5)
        assert float(g) == pytest.approx(grad, rel=1e-5)
    with pytest.raises(ValueError, match="too short"):
        unrolled_loss(lambda u: u, states, 3)


def _trajectory(state, c2, steps, length):
    phi = _wave_map(c2, steps)

    def step(u, _):
        return phi(u), u

    return jax.jit(lambda u: jax.lax.scan(step, u, length=length)[1])(state)


def _exact_stepper_model(steps):
    """A 'model' on concat([state (2), medium (1)]) whose increment is exactly the wave map's."""
    def model(x):
        state, c2 = x[:2], x[2]
        return _wave_map(c2, steps)(state) - state
    return model


def test_stepper_loss_terms_vanish_for_exact_map():
    c2s, trajs = [], []
    for seed in (0, 1):
        s, c2 = _random_state(16, seed)
        traj = _trajectory(s, c2, 3, 4)
        trajs.append(traj)
        c2s.append(c2[None])
    batch = {"state": jnp.stack(trajs), "medium": jnp.stack(c2s)}  # (2, 4, 2, 16, 16), (2, 1, 16, 16)

    def residual_fn(seq, medium):  # the exact discrete dynamics as a residual
        phi = _wave_map(medium[0], 3)
        return seq[1:] - jax.vmap(phi)(seq[:-1])

    weights = LossWeights(data=1.0, time_reversal=0.5, residual=2.0)
    run = jax.jit(lambda m, b: stepper_loss(m, b, None, unroll=2, weights=weights, reversal_signs=[1, -1],
                                            residual_fn=residual_fn), static_argnums=0)
    loss, terms = run(_exact_stepper_model(3), batch)
    assert float(terms["data"]) < 1e-5 and float(terms["time_reversal"]) < 1e-10
    assert float(terms["residual"]) < 1e-10 and float(loss) < 1e-5
    wrong = lambda x: 1.01 * _exact_stepper_model(3)(x)  # noqa: E731
    loss_w, terms_w = run(wrong, batch)
    assert float(terms_w["data"]) > 1e-3
    assert float(terms_w["time_reversal"]) > 1e-6 and float(terms_w["residual"]) > 1e-6
    expected = terms_w["data"] + 0.5 * terms_w["time_reversal"] + 2.0 * terms_w["residual"]
    assert float(loss_w) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="reversal_signs"):
        stepper_loss(_exact_stepper_model(3), batch, None, weights=weights)


def test_input_noise_is_deterministic_per_key_and_off_without_key():
    s, c2 = _random_state(16)
    traj = _trajectory(s, c2, 2, 3)
    batch = {"state": traj[None], "medium": c2[None, None]}
    model = _exact_stepper_model(2)
    loss = jax.jit(lambda key, noise: stepper_loss(model, batch, key, noise_std=noise)[0], static_argnums=1)
    clean = float(loss(None, 0.1))
    noisy = [float(loss(jax.random.key(k), 0.1)) for k in (1, 1, 2)]
    assert clean < 1e-5
    assert noisy[0] == noisy[1] and noisy[0] != noisy[2] and min(noisy) > 1e-2
    assert float(loss(jax.random.key(1), 0.0)) == clean


def test_random_windows_sample_distinct_starts():
    """``windows = W`` draws W distinct rollout starts per sample (training, with a key): W = all
    starts gives the whole-trajectory data loss; W = 1 gives one start's loss, which one depends
    on the key; without a key (validation) the whole trajectory is used."""
    s, c2 = _random_state(16)
    traj = _trajectory(s, c2, 2, 6)  # 6 states: 5 starts of a 1-step rollout
    batch = {"state": traj[None], "medium": c2[None, None]}
    exact = _exact_stepper_model(2)
    model = lambda x: 1.01 * exact(x)  # noqa: E731  (an increment 1% too large)

    def data(key, windows):
        return float(stepper_loss(model, batch, key, windows=windows)[1]["data"])

    whole = data(None, 0)
    assert data(jax.random.key(0), 5) == pytest.approx(whole, rel=1e-6)
    assert data(None, 2) == whole  # validation ignores windows
    per_start = [float(relative_l2(traj[i] + 1.01 * (traj[i + 1] - traj[i]), traj[i + 1])) for i in range(5)]
    assert np.mean(per_start) == pytest.approx(whole, rel=1e-4)
    singles = {round(data(jax.random.key(k), 1), 7) for k in range(12)}
    assert len(singles) > 1 and all(min(abs(v - p) for p in per_start) < 1e-6 for v in singles)
    with pytest.raises(ValueError, match="windows must be in"):
        stepper_loss(model, batch, jax.random.key(0), windows=6)


def test_field_loss_complex_target_and_residual():
    rng = np.random.default_rng(3)
    medium = jnp.asarray(rng.uniform(1, 2, size=(3, 1, 8, 8)).astype(np.float32))
    angle = jnp.asarray(rng.uniform(0, np.pi, size=(3, 1)).astype(np.float32))
    field = medium * jnp.exp(1j * angle)[:, :, None, None]
    batch = {"medium": medium, "condition": angle, "field": field}

    def model(x):  # x = (medium, broadcast angle) -> (re, im) of the exact field
        return jnp.stack([x[0] * jnp.cos(x[1]), x[0] * jnp.sin(x[1])])

    def residual_fn(f, med, cond):
        return f - med * jnp.exp(1j * cond)[:, None, None]

    w = LossWeights(residual=1.0)
    loss, terms = field_loss(model, batch, None, weights=w, residual_fn=residual_fn)
    assert float(terms["data"]) < 1e-6 and float(terms["residual"]) < 1e-10
    loss, terms = field_loss(lambda x: model(x) * 1.1, batch, None, weights=w, residual_fn=residual_fn)
    assert float(terms["data"]) == pytest.approx(0.1, rel=1e-4) and float(terms["residual"]) > 1e-3


def test_residual_loss_and_weights_validation():
    seq = jnp.arange(6.0).reshape(3, 2)
    assert float(residual_loss(seq, lambda s: s[1:] - s[:-1] - 2.0)) == 0.0
    assert float(residual_loss(seq, lambda s: s[1:] - s[:-1])) == 4.0
    with pytest.raises(ValueError, match="time_reversal"):
        LossWeights(time_reversal=-1.0)
    with pytest.raises(ValueError, match="signs"):
        channel_reversal([1.0, 0.5])


def test_reciprocity_gap_is_zero_for_reciprocal_shots_only():
    """Shots from elements 0, 2 and 5 of 6: shot a's trace at e_b must equal shot b's at e_a."""
    from training.losses import reciprocity_gap, reciprocity_pairs

    emitters = np.array([0, 2, 5])
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 10, 6)).astype(np.float32)
    for a, b in zip(*reciprocity_pairs(emitters)):
        t[b, :, emitters[a]] = t[a, :, emitters[b]]
    assert float(reciprocity_gap(jnp.asarray(t), emitters)) == 0.0
    broken = t.copy()
    broken[2, :, 0] *= -1.0  # shot 2 (element 5) at element 0 no longer matches shot 0 at element 5
    gap = float(reciprocity_gap(jnp.asarray(broken), emitters))
    x = t[0, :, 5]
    assert gap == pytest.approx(np.sum((2 * x) ** 2) / np.sum(np.stack([t[0, :, 2], t[0, :, 5], t[1, :, 5]]) ** 2
                                                              + np.stack([t[1, :, 0], t[2, :, 0], t[2, :, 2]]) ** 2)
                                * 2, rel=1e-5)
    assert [list(p) for p in reciprocity_pairs(np.array([3, 3, 1]))] == [[0, 1], [2, 2]]  # same element: no pair
    with pytest.raises(ValueError, match="shots=3"):
        reciprocity_gap(jnp.zeros((2, 10, 6)), emitters)


def test_shot_loss_reciprocity_term():
    """The reciprocity term needs no target: a model whose shots are reciprocal pays nothing, one
    whose shots are not pays; it needs the emitters; other tasks refuse the weight."""
    from pdesurrogate.config import parse
    from training.config import TrainConfig
    from training.losses import shot_loss

    batch = {"medium": jnp.ones((2, 1, 8, 8)), "condition": jnp.stack([jnp.zeros((2, 1, 8, 8)),
                                                                       jnp.ones((2, 1, 8, 8))], 1),
             "traces": jnp.zeros((2, 2, 5, 4))}
    weights = LossWeights(data=0.0, reciprocity=1.0)
    emitters = np.array([0, 3])
    symmetric = lambda x: jnp.ones((5, 4)) * x[0, 0, 0]  # noqa: E731  (every receiver the same)
    shot_dependent = lambda x: jnp.ones((5, 4)) * (1.0 + x[1, 0, 0])  # noqa: E731
    assert float(shot_loss(symmetric, batch, None, weights=weights, emitters=emitters)[0]) == 0.0
    loss, terms = shot_loss(shot_dependent, batch, None, weights=weights, emitters=emitters)
    assert float(loss) == pytest.approx(float(terms["reciprocity"])) and float(loss) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="emitters"):
        shot_loss(symmetric, batch, None, weights=weights)
    with pytest.raises(ValueError, match="train.loss.reciprocity"):
        parse(TrainConfig, {"task": "field", "loss": {"reciprocity": 0.1}}, "train")
