"""centralize, adaptive_grad_clip, add_noise, normalize_by_update_norm: papers and optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx


def _tree(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    shapes = {"dense": (5, 4), "heads": (6, 2, 3), "conv": (3, 3, 2, 4), "b": (4,), "row": (1, 5)}
    return {k: jnp.asarray(rng.standard_normal(s), dtype) for k, s in shapes.items()}


def _paths(state):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


# --- centralize: the paper's Eq. (4) -------------------------------------------------------


def centralize_reference(g: np.ndarray, output_axis: int) -> np.ndarray:
    """Each output unit's gradient (a slice along output_axis) minus its own mean."""
    g = np.asarray(g, np.float64)
    if g.ndim < 2:
        return g
    out = np.empty_like(g)
    for i in range(g.shape[output_axis]):
        unit = np.take(g, i, axis=output_axis)
        idx = [slice(None)] * g.ndim
        idx[output_axis] = i
        out[tuple(idx)] = unit - unit.sum() / unit.size
    return out


@pytest.mark.parametrize("output_axis", [0, -1])
def test_centralize_matches_the_paper(output_axis, jit):
    g = _tree()
    tx = adaptx.centralize(output_axis=output_axis)
    out, _ = jit(tx.update)(g, tx.init(g))
    for k in g:
        np.testing.assert_allclose(out[k], centralize_reference(g[k], output_axis), atol=1e-6)
        if g[k].ndim >= 2:  # each unit's gradient now sums to zero over its fan-in
            axes = tuple(i for i in range(g[k].ndim) if i != output_axis % g[k].ndim)
            np.testing.assert_allclose(np.sum(np.asarray(out[k]), axis=axes), 0, atol=1e-5)


def test_centralize_default_is_optax_and_flax_kernels_need_output_axis():
    g = _tree()
    ours, _ = adaptx.centralize().update(g, adaptx.EmptyState())
    theirs, _ = optax.centralize().update(g, optax.EmptyState())
    for k in g:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, atol=1e-6)
    # A flax Dense kernel is (in, out): optax centralizes per input unit, not per output.
    flax_style, _ = adaptx.centralize(output_axis=-1).update(g, adaptx.EmptyState())
    per_output = np.sum(np.asarray(theirs["dense"]), axis=0)
    assert np.max(np.abs(per_output)) > 0.1
    np.testing.assert_allclose(np.sum(np.asarray(flax_style["dense"]), axis=0), 0, atol=1e-5)


def test_centralize_keeps_bfloat16_and_rejects_bad_axis():
    g = {"w": jnp.ones((2, 3), jnp.bfloat16)}
    out, _ = adaptx.centralize().update(g, adaptx.EmptyState())
    assert out["w"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="output_axis=2 is out of range"):
        adaptx.centralize(output_axis=2).update(g, adaptx.EmptyState())
    with pytest.raises(ValueError, match="output_axis must be an integer"):
        adaptx.centralize(output_axis=None)


# --- adaptive_grad_clip: the paper's Eq. (3) ---------------------------------------------------


def agc_reference(g, w, lam, eps, fan_in_axes):
    """Per unit i: clip G_i to lam * max(||W_i||, eps) when ||G_i|| / max(||W_i||, eps) > lam."""
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    gn = np.sqrt(np.sum(g**2, axis=fan_in_axes, keepdims=True))
    wn = np.maximum(np.sqrt(np.sum(w**2, axis=fan_in_axes, keepdims=True)), eps)
    ratio = gn / wn
    return np.where(ratio > lam, lam * wn / np.where(gn > 0, gn, 1) * g, g)


FAN_IN = {"dense": (0,), "heads": (0,), "conv": (0, 1, 2), "b": (0,), "row": (0, 1)}


@pytest.mark.parametrize("lam", [0.01, 0.3, 100.0])
def test_adaptive_grad_clip_matches_the_paper_and_optax(lam, jit):
    params, grads = _tree(1), _tree(2)
    params["b"] = jnp.zeros(4)  # a zero-initialised unit: eps sets its scale
    tx = adaptx.adaptive_grad_clip(lam)
    out, _ = jit(tx.update)(grads, tx.init(params), params)
    theirs, _ = optax.adaptive_grad_clip(lam).update(grads, optax.EmptyState(), params)
    for k in grads:
        ref = agc_reference(grads[k], params[k], lam, 1e-3, FAN_IN[k])
        np.testing.assert_allclose(out[k], ref, rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(out[k], theirs[k], rtol=2e-6, atol=1e-7)
    if lam == 0.01:  # everything is clipped: every unit's ratio is now exactly lambda
        ratio = np.linalg.norm(out["dense"], axis=0) / np.linalg.norm(params["dense"], axis=0)
        np.testing.assert_allclose(ratio, lam, rtol=1e-5)
    if lam == 100.0:  # nothing is clipped (except the zero unit: 100 * 1e-3 is small)
        np.testing.assert_array_equal(out["dense"], grads["dense"])


def test_adaptive_grad_clip_axis_override_and_edges():
    params, grads = _tree(1), _tree(2)
    tx = adaptx.adaptive_grad_clip(0.05, axis=(0, 1))
    out, _ = tx.update({"h": grads["heads"]}, tx.init(None), {"h": params["heads"]})
    theirs, _ = optax.adaptive_grad_clip(0.05, axis=(0, 1)).update(
        {"h": grads["heads"]}, optax.EmptyState(), {"h": params["heads"]}
    )
    np.testing.assert_allclose(out["h"], theirs["h"], rtol=2e-6)
    np.testing.assert_allclose(
        out["h"], agc_reference(grads["heads"], params["heads"], 0.05, 1e-3, (0, 1)), rtol=2e-6
    )
    nan = {"w": jnp.array([[jnp.nan, 1.0], [1.0, 1.0]])}
    out, _ = adaptx.adaptive_grad_clip(0.1).update(
        nan, adaptx.EmptyState(), {"w": jnp.ones((2, 2))}
    )
    assert bool(jnp.all(jnp.isnan(out["w"][:, 0])))  # the unit with a NaN: NaN, as optax
    np.testing.assert_allclose(out["w"][:, 1], 0.1 * np.sqrt(2) / np.sqrt(2))  # clipped
    with pytest.raises(ValueError, match="needs the parameters"):
        adaptx.adaptive_grad_clip(0.1).update(nan, adaptx.EmptyState())
    with pytest.raises(ValueError, match="no default unit for a leaf of shape"):
        z = {"x": jnp.ones((2, 2, 2, 2, 2, 2))}
        adaptx.adaptive_grad_clip(0.1).update(z, adaptx.EmptyState(), z)
    with pytest.raises(ValueError, match=r"clipping must be in \[0.0, inf\), got -1.0"):
        adaptx.adaptive_grad_clip(-1.0)
    with pytest.raises(TypeError, match="axis must be None, an integer or a tuple"):
        adaptx.adaptive_grad_clip(0.1, axis=[0])


# --- add_noise: the paper's Eq. (1) ---------------------------------------------------------


def test_add_noise_is_optax_bit_for_bit_and_has_its_state_layout():
    g = _tree(3)
    theirs = optax.add_noise(0.3, 0.55, jax.random.key(7))
    with jax.numpy_dtype_promotion("standard"):  # optax's count**gamma mixes int and float
        st = theirs.init(g)
        expected = []
        for _ in range(2):
            ut, st = theirs.update(g, st)
            expected.append(ut)
    for key in (7, jax.random.key(7), jax.random.PRNGKey(7)):
        ours = adaptx.add_noise(0.3, 0.55, key)
        so = ours.init(g)
        assert _paths(so) == _paths(theirs.init(g))
        for want in expected:
            uo, so = ours.update(g, so)
            for k in g:
                np.testing.assert_array_equal(uo[k], want[k])
    np.testing.assert_array_equal(so.rng_key, jax.random.key_data(st.rng_key))


@pytest.mark.parametrize("t", [1, 10, 1000])
def test_add_noise_variance_is_eta_over_t_to_the_gamma(t):
    eta, gamma, n = 0.3, 0.55, 200_000
    tx = adaptx.add_noise(eta, gamma, key=1)
    state = tx.init(jnp.zeros(n))._replace(count=jnp.asarray(t - 1, jnp.int32))  # step t
    out, state = tx.update(jnp.full(n, 2.0), state)
    noise = np.asarray(out, np.float64) - 2.0
    want = eta / t**gamma  # the paper's sigma_t**2 = eta / (1 + t')**gamma, t' = t - 1
    # Sample variance of n normals: relative standard error sqrt(2 / n) = 0.3%.
    assert abs(noise.var() / want - 1) < 0.02
    assert abs(noise.mean()) < 5 * np.sqrt(want / n)
    assert int(state.count) == t


def test_add_noise_state_checkpoints_and_keys_are_checked(tmp_path):
    tx = adaptx.add_noise(0.01, 0.55, key=3)
    g = _tree(4)
    _, state = tx.update(g, tx.init(g))
    restored = adaptx.load_state(adaptx.save_state(tmp_path / "s.npz", state), like=tx.init(g))
    a, _ = tx.update(g, state)
    b, _ = tx.update(g, restored)
    for k in g:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(TypeError, match="add_noise needs a key"):
        adaptx.add_noise(0.01, 0.55, None)
    with pytest.raises(TypeError, match="key must be an integer seed or a PRNG key"):
        adaptx.add_noise(0.01, 0.55, key="seed")
    with pytest.raises(ValueError, match=r"eta must be in \[0.0, inf\), got -0.1"):
        adaptx.add_noise(-0.1, 0.55, key=0)


def test_add_noise_keeps_low_precision_dtypes():
    g = {"h": jnp.zeros(4, jnp.bfloat16), "z": jnp.zeros(3, jnp.complex64)}
    tx = adaptx.add_noise(1.0, 0.55, key=0)
    out, _ = tx.update(g, tx.init(g))
    assert out["h"].dtype == jnp.bfloat16 and out["z"].dtype == jnp.complex64
    assert bool(jnp.all(out["z"].imag != 0))


# --- normalize_by_update_norm ---------------------------------------------------------------


@pytest.mark.parametrize("scale_factor, eps", [(1.0, 1e-6), (2.5, 0.0), (-0.5, 1e-3)])
def test_normalize_by_update_norm_matches_optax(scale_factor, eps, jit):
    g = _tree(5)
    tx = adaptx.normalize_by_update_norm(scale_factor, eps)
    out, _ = jit(tx.update)(g, tx.init(g))
    theirs, _ = optax.normalize_by_update_norm(scale_factor, eps).update(g, optax.EmptyState())
    norm = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in g.values()))
    for k in g:
        np.testing.assert_allclose(out[k], theirs[k], rtol=2e-6)
        np.testing.assert_allclose(
            out[k], scale_factor * np.asarray(g[k]) / (norm + eps), rtol=2e-6
        )


def test_normalize_by_update_norm_zero_stays_zero_nan_stays_nan():
    tx = adaptx.normalize_by_update_norm(eps=0.0)
    out, _ = tx.update({"a": jnp.zeros(3)}, tx.init(None))
    np.testing.assert_array_equal(out["a"], 0.0)
    out, _ = tx.update({"a": jnp.array([1.0, jnp.nan])}, tx.init(None))
    assert bool(jnp.all(jnp.isnan(out["a"])))
    with pytest.raises(ValueError, match="scale_factor must be a finite number"):
        adaptx.normalize_by_update_norm(float("inf"))
    with pytest.raises(ValueError, match="eps must be in"):
        adaptx.normalize_by_update_norm(1.0, -1.0)
