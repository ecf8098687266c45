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


def _cos(t: float) -> float:
    return 0.5 * (1.0 + np.cos(np.pi * t))


BIG = 10**10  # no int32 holds it
TOP = np.iinfo(np.int32).max  # where step counters saturate

# (schedule with step arguments past int32, count, value from float64 NumPy)
HUGE_STEPS = {
    "cosine": (adaptx.cosine_decay_schedule(1000.0, BIG), 10**9, 1000.0 * _cos(0.1)),
    "exponential": (adaptx.exponential_decay(1.0, BIG, 0.5), 10**9, 0.5**0.1),
    "exponential_begin": (adaptx.exponential_decay(1.0, 10, 0.5, transition_begin=BIG), TOP, 1.0),
    "polynomial": (adaptx.polynomial_schedule(1.0, 0.0, 2, BIG), 10**9, 0.9**2),
    "linear_begin": (adaptx.linear_schedule(1.0, 0.0, 10, transition_begin=BIG), TOP, 1.0),
    "warmup_cosine": (
        adaptx.warmup_cosine_decay_schedule(0.0, 1.0, BIG, 2 * BIG),
        10**9,
        0.1,
    ),
    "warmup_cosine_decay": (
        adaptx.warmup_cosine_decay_schedule(0.0, 1.0, 10, BIG + 10),
        10**9 + 10,
        _cos(0.1),
    ),
    "piecewise": (adaptx.piecewise_constant_schedule(1.0, {10: 0.5, BIG: 0.1}), TOP, 0.5),
    "join": (
        adaptx.join_schedules(
            [adaptx.constant_schedule(1.0), adaptx.constant_schedule(2.0)], [BIG]
        ),
        TOP,
        1.0,
    ),
}


@pytest.mark.parametrize("name", sorted(HUGE_STEPS))
def test_step_arguments_past_int32_work(name, jit):
    # A Python int past int32 used to be accepted at construction and raise
    # OverflowError when the schedule was called.
    schedule, count, want = HUGE_STEPS[name]
    got = jit(schedule)(jnp.asarray(count, jnp.int32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_warmup_cosine_reaches_any_end_value():
    # end_value below zero, and a zero peak: the decay still ends at end_value.
    for peak, end in ((1.21, -3.0), (0.0, -3.0)):
        s = adaptx.warmup_cosine_decay_schedule(0.2, peak, 50, 100, end_value=end, exponent=2)
        counts = np.array([0, 10, 50, 75, 100, 130])
        warm = 0.2 + (peak - 0.2) * np.minimum(counts, 50) / 50
        frac = np.minimum(np.maximum(counts - 50, 0), 50) / 50
        decay = end + (peak - end) * _cos(frac) ** 2
        want = np.where(counts < 50, warm, decay)
        np.testing.assert_allclose(jax.vmap(s)(jnp.asarray(counts)), want, rtol=1e-5, atol=1e-6)
