"""Tree and numeric helpers against independent NumPy float64 computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx
from adaptx._numerics import one_minus_pow


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999, 0.9999, 0.99999])
@pytest.mark.parametrize("t", [1, 2, 5, 100, 10_000])
def test_one_minus_pow_keeps_relative_precision_in_float32(decay, t, jit):
    got = float(jit(lambda c: one_minus_pow(decay, c))(jnp.asarray(t, jnp.int32)))
    d32 = float(np.float32(decay))  # the decay as float32 holds it, used consistently
    want = 1.0 - d32**t  # float64
    assert abs(got - want) <= 4e-7 * want


def test_one_minus_pow_python_float_and_array_are_bit_identical():
    counts = jnp.arange(1, 3000, dtype=jnp.int32)
    for decay in [0.0, 0.3, 0.9, 0.999, 0.99999]:
        a = jax.jit(jax.vmap(lambda c: one_minus_pow(decay, c)))(counts)
        b = jax.jit(jax.vmap(one_minus_pow, in_axes=(None, 0)))(jnp.float32(decay), counts)
        np.testing.assert_array_equal(a, b)


def test_bias_correction_in_bfloat16_computes_factor_wide():
    m = jnp.full((3,), 1e-3, jnp.bfloat16)
    out = adaptx.bias_correction(m, 0.999, jnp.asarray(1, jnp.int32))
    assert out.dtype == jnp.bfloat16
    # A bfloat16 factor 1 - 0.999 would be 0 or badly off; the float32 one is 1e-3.
    np.testing.assert_allclose(np.asarray(out, np.float32), 1.0, rtol=1e-2)


def test_bias_correction_with_traced_decay_matches_python_decay(jit):
    m = jnp.array([0.5, -0.25], jnp.float32)
    c = jnp.asarray(7, jnp.int32)
    a = adaptx.bias_correction(m, 0.9, c)
    b = jit(adaptx.bias_correction)(m, jnp.float32(0.9), c)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(a, np.array([0.5, -0.25]) / (1 - 0.9**7), rtol=1e-6)


def test_safe_increment_saturates(jit):
    top = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    assert int(jit(adaptx.safe_increment)(top)) == np.iinfo(np.int32).max
    assert int(jit(adaptx.safe_increment)(top - 1)) == np.iinfo(np.int32).max
    assert int(jit(adaptx.safe_increment)(jnp.asarray(0, jnp.int32))) == 1
    assert adaptx.safe_increment(top).dtype == jnp.int32


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8", "uint16", "int32", "float16"])
def test_safe_increment_every_dtype_counts_then_saturates_at_its_maximum(dtype, jit):
    dtype = jnp.dtype(dtype)
    inc = jit(adaptx.safe_increment)
    three = jnp.asarray(3, dtype)
    assert inc(three).dtype == dtype
    assert int(inc(three)) == 4
    top = np.iinfo(dtype).max if jnp.issubdtype(dtype, jnp.integer) else np.finfo(dtype).max
    top = jnp.asarray(top, dtype)
    assert inc(top) == top  # never wraps to the minimum (or to inf)
    assert inc(top - jnp.ones((), dtype)) == top or jnp.issubdtype(dtype, jnp.floating)


@pytest.mark.parametrize("dtype", ["bool", "complex64"])
def test_safe_increment_rejects_what_is_no_counter(dtype):
    with pytest.raises(ValueError, match=f"integer or floating counter, got dtype {dtype}"):
        adaptx.safe_increment(jnp.asarray(1, dtype))


def test_global_norm_matches_numpy_and_bf16_does_not_overflow():
    tree = {"a": jnp.arange(5.0, dtype=jnp.float32), "b": [jnp.array([[3.0, -4.0]], jnp.float32)]}
    want = np.sqrt(np.sum(np.arange(5.0) ** 2) + 25.0)
    np.testing.assert_allclose(adaptx.global_norm(tree), want, rtol=1e-6)
    big = {"x": jnp.full((4,), 300.0, jnp.float16)}  # 300**2 overflows float16
    np.testing.assert_allclose(adaptx.global_norm(big), 600.0, rtol=1e-6)
    z = {"z": jnp.array([3 + 4j], jnp.complex64)}
    np.testing.assert_allclose(adaptx.global_norm(z), 5.0, rtol=1e-6)


def test_moments_match_numpy():
    g = np.array([1.0, -2.0, 0.0, 0.5])
    m = np.array([0.1, 0.2, 0.3, -0.4])
    got = adaptx.tree_update_moment(
        jnp.asarray(g, jnp.float32), jnp.asarray(m, jnp.float32), 0.9, 1
    )
    np.testing.assert_allclose(got, 0.9 * m + 0.1 * g, rtol=1e-6, atol=1e-7)
    got2 = adaptx.tree_update_moment_per_elem_norm(
        jnp.asarray(g, jnp.float32), jnp.asarray(np.abs(m), jnp.float32), 0.99, 2
    )
    np.testing.assert_allclose(got2, 0.99 * np.abs(m) + 0.01 * g**2, rtol=1e-6)
    inf = adaptx.tree_update_infinity_moment(
        jnp.asarray(g, jnp.float32), jnp.asarray(np.abs(m), jnp.float32), 0.9, 1e-8
    )
    np.testing.assert_allclose(inf, np.maximum(0.9 * np.abs(m), np.abs(g) + 1e-8), rtol=1e-6)


def test_complex_second_moment_is_real_modulus_squared():
    g = jnp.array([3 + 4j, 1j], jnp.complex64)
    v = adaptx.tree_update_moment_per_elem_norm(g, jnp.zeros(2, jnp.float32), 0.0, 2)
    assert v.dtype == jnp.float32
    np.testing.assert_allclose(v, [25.0, 1.0])


def test_apply_updates_keeps_param_dtype_and_rounds_once():
    p = {"w": jnp.array([1.0, 256.0], jnp.bfloat16), "n": None}
    u = {"w": jnp.array([0.75, 1.5], jnp.float32), "n": None}
    out = adaptx.apply_updates(p, u)
    assert out["w"].dtype == jnp.bfloat16 and out["n"] is None
    # 256 + 1.5 = 257.5 rounds to 258 in bfloat16 (8 bits of mantissa): one rounding.
    np.testing.assert_array_equal(np.asarray(out["w"], np.float32), [1.75, 258.0])


def test_incremental_update(jit):
    new = {"a": jnp.array([1.0, 2.0])}
    old = {"a": jnp.array([3.0, 4.0])}
    out = jit(adaptx.incremental_update)(new, old, 0.25)
    np.testing.assert_allclose(out["a"], [2.5, 3.5])


def test_tree_zeros_like_and_cast():
    t = {"a": jnp.ones((2, 3), jnp.bfloat16), "b": jax.ShapeDtypeStruct((4,), jnp.float32)}
    z = adaptx.tree_zeros_like(t)
    assert z["a"].dtype == jnp.bfloat16 and z["b"].shape == (4,)
    assert adaptx.tree_cast(z, jnp.float32)["a"].dtype == jnp.float32
    assert adaptx.tree_cast(z, None) is z


def test_chain_rejects_non_transforms_and_foreign_states():
    with pytest.raises(TypeError, match="chain argument 1"):
        adaptx.chain(adaptx.identity(), "sgd")
    tx = adaptx.chain(adaptx.identity(), adaptx.scale(2.0))
    with pytest.raises(ValueError, match="2 transforms got a state with 1"):
        tx.update(jnp.ones(1), (adaptx.EmptyState(),))
    with pytest.raises(ValueError, match="unique"):
        adaptx.named_chain(("a", adaptx.identity()), ("a", adaptx.identity()))


def test_learning_rate_validation():
    with pytest.raises(ValueError, match=r"learning_rate must be in \[0.0, inf\), got -1"):
        adaptx.scale_by_learning_rate(-1)
    with pytest.raises(ValueError, match="learning_rate"):
        adaptx.scale_by_learning_rate(float("nan"))
    with pytest.raises(ValueError, match="at step 0"):
        adaptx.scale_by_learning_rate(lambda c: jnp.float32(-0.1))
    adaptx.scale_by_learning_rate(jnp.float32(0.1))  # arrays are fine


def test_global_norm_of_mixed_float32_and_float64_leaves(x64):
    tree = {"a": jnp.array([3.0], jnp.float32), "b": jnp.array([4.0], jnp.float64)}
    norm = adaptx.global_norm(tree)
    assert norm.dtype == jnp.float64
    np.testing.assert_allclose(norm, 5.0, rtol=1e-15)
