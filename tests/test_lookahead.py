"""lookahead against a float64 NumPy implementation of the paper and against optax."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import adaptx

A = np.array([[3.0, 0.5], [0.5, 1.0]])
TARGET = np.array([1.0, -2.0])


def _grad(theta):
    return A @ (theta - TARGET)


def _reference(theta0, lr, k, alpha, steps):
    """Zhang et al. 2019, Algorithm 1, with SGD as the inner optimizer, in float64."""
    slow = np.array(theta0, np.float64)
    fast = slow.copy()
    fasts, slows = [], []
    for t in range(1, steps + 1):
        fast = fast - lr * _grad(fast)
        if t % k == 0:
            slow = slow + alpha * (fast - slow)
            fast = slow.copy()
        fasts.append(fast.copy())
        slows.append(slow.copy())
    return np.array(fasts), np.array(slows)


def test_matches_the_paper(jit):
    tx = adaptx.lookahead(adaptx.sgd(0.1), sync_period=3, slow_step_size=0.5)
    params = jnp.zeros(2)
    state = jit(tx.init)(params)
    update = jit(tx.update)
    fasts, slows = [], []
    for _ in range(10):
        g = jnp.asarray(_grad(np.asarray(params, np.float64)), jnp.float32)
        updates, state = update(g, state, params)
        params = adaptx.apply_updates(params, updates)
        fasts.append(np.asarray(params))
        slows.append(np.asarray(state.slow))
        if int(state.steps_since_sync) == 0:  # just synchronised: fast == slow, bit for bit
            np.testing.assert_array_equal(params, state.slow)
    want_fast, want_slow = _reference(np.zeros(2), 0.1, 3, 0.5, 10)
    np.testing.assert_allclose(np.array(fasts), want_fast, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(slows), want_slow, rtol=1e-5, atol=1e-6)


def test_reset_state_after_sync():
    tx = adaptx.lookahead(adaptx.sgd(0.1, momentum=0.9), 2, 0.5, reset_state=True)
    p = jnp.zeros(1)
    state = tx.init(p)
    buffers = []
    for _ in range(3):
        u, state = tx.update(jnp.ones(1), state, p)
        p = adaptx.apply_updates(p, u)
        buffers.append(float(state.fast_state[0].trace[0]))
    assert buffers == [1.0, 0.0, 1.0]


def test_slow_step_size_one_is_the_fast_optimizer():
    tx = adaptx.lookahead(adaptx.sgd(0.1, momentum=0.9), 3, 1.0)
    ref = adaptx.sgd(0.1, momentum=0.9)
    p, q = jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0])
    s, r = tx.init(p), ref.init(q)
    for i in range(7):
        g = jnp.array([0.5, -1.0]) * (i + 1)
        u, s = tx.update(g, s, p)
        v, r = ref.update(g, r, q)
        p, q = adaptx.apply_updates(p, u), adaptx.apply_updates(q, v)
    np.testing.assert_allclose(p, q, rtol=1e-6)


def test_validation_and_params_required():
    with pytest.raises(ValueError, match="sync_period must be an integer >= 1"):
        adaptx.lookahead(adaptx.sgd(0.1), 0, 0.5)
    with pytest.raises(ValueError, match="slow_step_size must be in"):
        adaptx.lookahead(adaptx.sgd(0.1), 2, 1.5)
    tx = adaptx.lookahead(adaptx.sgd(0.1), 2, 0.5)
    with pytest.raises(ValueError, match="lookahead needs params"):
        tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
