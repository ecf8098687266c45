"""Schedules agree with optax's namesakes, and follow the documented step convention."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx

COUNTS = jnp.arange(0, 40, dtype=jnp.int32)

PAIRS = {
    "constant": (adaptx.constant_schedule(0.3), optax.constant_schedule(0.3)),
    "exponential": (
        adaptx.exponential_decay(1.0, 5, 0.5, transition_begin=3),
        optax.exponential_decay(1.0, 5, 0.5, transition_begin=3),
    ),
    "exponential_staircase_end": (
        adaptx.exponential_decay(1.0, 4, 0.5, staircase=True, end_value=0.1),
        optax.exponential_decay(1.0, 4, 0.5, staircase=True, end_value=0.1),
    ),
    "linear": (
        adaptx.linear_schedule(1.0, 0.1, 20, transition_begin=5),
        optax.linear_schedule(1.0, 0.1, 20, transition_begin=5),
    ),
    "polynomial": (
        adaptx.polynomial_schedule(2.0, 0.5, 3.0, 30),
        optax.polynomial_schedule(2.0, 0.5, 3.0, 30),
    ),
    "cosine": (
        adaptx.cosine_decay_schedule(1.0, 25, alpha=0.1, exponent=2.0),
        optax.cosine_decay_schedule(1.0, 25, alpha=0.1, exponent=2.0),
    ),
    "warmup_cosine": (
        adaptx.warmup_cosine_decay_schedule(0.0, 1.0, 5, 30, end_value=0.05),
        optax.warmup_cosine_decay_schedule(0.0, 1.0, 5, 30, end_value=0.05),
    ),
    "piecewise": (
        adaptx.piecewise_constant_schedule(1.0, {3: 0.5, 10: 0.1}),
        optax.piecewise_constant_schedule(1.0, {3: 0.5, 10: 0.1}),
    ),
    "join": (
        adaptx.join_schedules(
            [adaptx.linear_schedule(0.0, 1.0, 10), adaptx.cosine_decay_schedule(1.0, 20)], [10]
        ),
        optax.join_schedules(
            [optax.linear_schedule(0.0, 1.0, 10), optax.cosine_decay_schedule(1.0, 20)], [10]
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_schedule_matches_optax(name, jit):
    ours, theirs = PAIRS[name]
    got = jit(jax.vmap(ours))(COUNTS)
    with jax.numpy_dtype_promotion("standard"):  # optax's schedules are not strict-clean
        want = jax.vmap(theirs)(COUNTS)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_inverse_sqrt_is_the_adam_papers_alpha_over_sqrt_t():
    s = adaptx.inverse_sqrt_schedule(0.01)
    # The first update (count 0) is t = 1 in the paper.
    got = np.asarray(jax.vmap(s)(COUNTS))
    np.testing.assert_allclose(got, 0.01 / np.sqrt(np.arange(1, 41)), rtol=1e-6)


def test_first_update_uses_schedule_at_zero():
    calls = []
    tx = adaptx.scale_by_learning_rate(lambda c: (calls.append(c), jnp.float32(0.1))[1])
    state = tx.init(jnp.zeros(1))
    tx.update(jnp.ones(1), state)
    assert int(calls[0]) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: adaptx.exponential_decay(1.0, 0, 0.5),
        lambda: adaptx.linear_schedule(1.0, 0.0, -3),
        lambda: adaptx.cosine_decay_schedule(1.0, 10, alpha=1.5),
        lambda: adaptx.warmup_cosine_decay_schedule(0.0, 1.0, 10, 5),
        lambda: adaptx.join_schedules([adaptx.constant_schedule(1.0)], [3]),
        lambda: adaptx.piecewise_constant_schedule(1.0, {-1: 0.5}),
    ],
)
def test_bad_schedule_arguments_raise(make):
    with pytest.raises(ValueError):
        make()
