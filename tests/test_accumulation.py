"""MultiSteps: gradient accumulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx


def _counting():
    """Identity that counts its calls in its state."""

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, state, params=None, **extra_args):
        return updates, state + 1

    return adaptx.GradientTransformation(init, update)


@pytest.mark.parametrize("use_grad_mean, want", [(True, 3.0), (False, 9.0)])
def test_exact_mean_or_sum_and_zero_mini_steps(use_grad_mean, want, jit):
    tx = adaptx.MultiSteps(_counting(), 3, use_grad_mean)
    state = tx.init({"w": jnp.zeros(2)})
    update = jit(tx.update)
    outs = []
    for g in [1.0, 2.0, 6.0, 4.0]:
        u, state = update({"w": jnp.full((2,), g)}, state)
        outs.append((np.asarray(u["w"]).tolist(), int(state.inner_opt_state)))
    assert outs == [([0.0, 0.0], 0), ([0.0, 0.0], 0), ([want, want], 1), ([0.0, 0.0], 1)]
    assert int(state.mini_step) == 1 and int(state.gradient_step) == 1
    np.testing.assert_array_equal(state.acc_grads["w"], [4.0, 4.0])


def test_has_updated_and_gradient_transformation():
    tx = adaptx.MultiSteps(adaptx.identity(), every_k_schedule=2)
    plain = tx.gradient_transformation()
    assert type(plain) is adaptx.GradientTransformation
    state = plain.init(jnp.zeros(1))
    flags = []
    for _ in range(4):
        _, state = plain.update(jnp.ones(1), state)
        flags.append(bool(tx.has_updated(state)))
    assert flags == [False, True, False, True]


def test_every_k_schedule_changes_the_batch_size():
    tx = adaptx.MultiSteps(_counting(), lambda step: step + 1)  # k = 1, 2, 3, ...
    state = tx.init(jnp.zeros(1))
    emitted = []
    for i in range(6):
        u, state = jax.jit(tx.update)(jnp.full((1,), float(i + 1)), state)
        emitted.append(float(u[0]))
    # Step 0 alone; mean(2, 3); mean(4, 5, 6).
    assert emitted == [1.0, 0.0, 2.5, 0.0, 0.0, 5.0]


def test_low_precision_gradients_accumulate_in_float32():
    g = [1.0, 2.0**-8, 2.0**-8, 2.0**-8]  # bfloat16 cannot hold 1 + 2**-8
    want = np.asarray(np.float32(sum(g) / 4), jnp.bfloat16)

    def run(**kw):
        tx = adaptx.MultiSteps(adaptx.identity(), 4, **kw)
        state = tx.init(jnp.zeros(1, jnp.bfloat16))
        update = jax.jit(tx.update)
        for x in g:
            u, state = update(jnp.full((1,), x, jnp.bfloat16), state)
        return state, u

    state, u = run()
    assert state.acc_grads.dtype == jnp.float32 and u.dtype == jnp.bfloat16
    assert u[0] == want
    state, u = run(accumulator_dtype=jnp.bfloat16)
    assert state.acc_grads.dtype == jnp.bfloat16 and u[0] != want


def _data():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(32, 3)), jnp.float32)
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.3
    return x, y


def _loss(p, x, y):
    return jnp.mean(jnp.square(x @ p["w"] + p["b"] - y))


def _train(tx, batches, steps):
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    state = tx.init(params)

    @jax.jit
    def step(params, state, x, y):
        u, state = tx.update(jax.grad(_loss)(params, x, y), state, params)
        return adaptx.apply_updates(params, u), state

    for _ in range(steps):
        for x, y in batches:
            params, state = step(params, state, x, y)
    return params


def test_equals_one_big_batch_step():
    # Mean of 4 equal mini-batch gradients of a mean loss = the big-batch gradient.
    x, y = _data()
    minis = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    big = _train(adaptx.sgd(0.05, momentum=0.9), [(x, y)], 5)
    accumulated = _train(adaptx.MultiSteps(adaptx.sgd(0.05, momentum=0.9), 4), minis, 5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), accumulated, big
    )


def test_validation():
    with pytest.raises(ValueError, match="every_k_schedule must be an integer >= 1"):
        adaptx.MultiSteps(adaptx.identity(), 0)
