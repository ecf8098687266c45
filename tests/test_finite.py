"""apply_if_finite and zero_nans."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx

NAN, INF = float("nan"), float("inf")


def _momentum():
    return adaptx.sgd(0.1, momentum=0.9)


def _run(tx, grads, params, jit):
    """Applies each gradient in turn; returns the params and states after every step."""
    state = tx.init(params)
    update = jit(tx.update)
    history = []
    for g in grads:
        updates, state = update(g, state, params)
        params = adaptx.apply_updates(params, updates)
        history.append((params, state))
    return history


def _bits(tree):
    return [np.asarray(x).tobytes() for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_bad_step_leaves_params_and_inner_state_exactly_unchanged(bad, jit):
    tx = adaptx.apply_if_finite(_momentum(), max_consecutive_errors=5)
    params = {"w": jnp.array([1.0, -0.0, 2.5]), "b": jnp.array(-0.0)}
    good = {"w": jnp.array([1.0, 2.0, -3.0]), "b": jnp.array(0.5)}
    poisoned = {"w": jnp.array([1.0, bad, -3.0]), "b": jnp.array(0.5)}
    (p1, s1), (p2, s2), (p3, s3) = _run(tx, [good, poisoned, good], params, jit)
    assert _bits(p2) == _bits(p1)  # signed zeros included
    assert _bits(s2.inner_state) == _bits(s1.inner_state)
    assert (int(s2.notfinite_count), bool(s2.last_finite), int(s2.total_notfinite)) == (1, False, 1)
    assert (int(s3.notfinite_count), bool(s3.last_finite), int(s3.total_notfinite)) == (0, True, 1)
    # The run is the run without the bad step.
    _, (q2, r2) = _run(_momentum(), [good, good], params, jit)
    assert _bits(p3) == _bits(q2) and _bits(s3.inner_state) == _bits(r2)


def test_a_finite_gradient_with_non_finite_output_is_skipped():
    # The inner transform itself overflows: the output, not the input, is Inf.
    tx = adaptx.apply_if_finite(adaptx.scale(jnp.float32(1e30)), max_consecutive_errors=0)
    updates, state = tx.update(jnp.array([1e10]), tx.init(jnp.zeros(1)))
    # max_consecutive_errors=0: the limit is reached at once and on_limit="apply" takes it.
    assert np.isinf(updates[0]) and int(state.notfinite_count) == 0
    tx = adaptx.apply_if_finite(adaptx.scale(jnp.float32(1e30)), max_consecutive_errors=1)
    updates, state = tx.update(jnp.array([1e10]), tx.init(jnp.zeros(1)))
    assert float(updates[0]) == 0 and int(state.notfinite_count) == 1


def test_limit_apply_takes_the_step_and_restarts_the_counter():
    tx = adaptx.apply_if_finite(_momentum(), max_consecutive_errors=2)
    bad = jnp.array([NAN])
    history = _run(tx, [bad] * 6, jnp.zeros(1), jax.jit)
    taken = [bool(np.isnan(p[0])) for p, _ in history]
    counts = [int(s.notfinite_count) for _, s in history]
    # Two skipped, the third applied (params become NaN), counter restarts.
    assert taken[:3] == [False, False, True]
    assert counts == [1, 2, 0, 1, 2, 0]
    assert int(history[-1][1].total_notfinite) == 6


def test_optax_never_restarts_and_applies_every_later_bad_step():
    # The documented difference: optax's counter keeps growing past the limit.
    tx = optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=2)
    state = tx.init(jnp.zeros(1))
    counts = []
    for _ in range(5):
        with jax.numpy_dtype_promotion("standard"):
            _, state = tx.update(jnp.array([NAN]), state)
        counts.append(int(state.notfinite_count))
    assert counts == [1, 2, 3, 4, 5]


def test_limit_reset_reinitialises_the_inner_state_and_never_applies():
    tx = adaptx.apply_if_finite(_momentum(), max_consecutive_errors=1, on_limit="reset")
    good, bad = jnp.array([1.0]), jnp.array([NAN])
    history = _run(tx, [good, bad, bad, good], jnp.zeros(1), jax.jit)
    np.testing.assert_array_equal(history[1][1].inner_state[0].trace, [1.0])  # skipped, kept
    np.testing.assert_array_equal(history[2][1].inner_state[0].trace, [0.0])  # limit: reset
    assert int(history[2][1].notfinite_count) == 0
    np.testing.assert_allclose(history[2][0], history[0][0])  # params never saw the NaN
    np.testing.assert_allclose(history[3][0], [-0.2])  # fresh momentum: -0.1 - 0.1


def test_no_limit_skips_forever():
    tx = adaptx.apply_if_finite(_momentum(), max_consecutive_errors=None)
    history = _run(tx, [jnp.array([INF])] * 4, jnp.ones(1), jax.jit)
    np.testing.assert_array_equal(history[-1][0], [1.0])
    assert int(history[-1][1].notfinite_count) == 4


def test_apply_if_finite_validation():
    with pytest.raises(ValueError, match="max_consecutive_errors must be an integer >= 0"):
        adaptx.apply_if_finite(adaptx.identity(), -1)
    with pytest.raises(ValueError, match="on_limit must be"):
        adaptx.apply_if_finite(adaptx.identity(), 1, on_limit="raise")


def test_zero_nans_zeroes_nan_and_inf_and_flags_them(jit):
    tx = adaptx.zero_nans()
    u = {"a": jnp.array([1.0, NAN, -INF]), "b": jnp.array([2.0, INF]), "c": jnp.array([3.0])}
    out, state = jit(tx.update)(u, tx.init(u))
    np.testing.assert_array_equal(out["a"], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out["b"], [2.0, 0.0])
    np.testing.assert_array_equal(out["c"], [3.0])
    assert jax.tree.map(bool, state.found_nan) == {"a": True, "b": True, "c": False}


def test_zero_nans_without_inf_matches_optax():
    u = {"a": jnp.array([1.0, NAN, -INF]), "b": jnp.array([2.0, INF])}
    tx = adaptx.zero_nans(include_inf=False)
    out, state = tx.update(u, tx.init(u))
    ref_tx = optax.zero_nans()
    ref, ref_state = ref_tx.update(u, ref_tx.init(u))
    jax.tree.map(np.testing.assert_array_equal, out, ref)
    assert jax.tree.map(bool, state.found_nan) == jax.tree.map(bool, ref_state.found_nan)
