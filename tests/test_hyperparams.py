"""Run-time hyper-parameters: inject_hyperparams, set_hyperparams, get_hyperparams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx


def _params():
    return {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.3, 0.7])}


def _grads(params, k):
    return jax.tree.map(lambda p: jnp.sin(3.0 * p + k.astype(p.dtype)) + 0.1 * p, params)


def _trajectory(tx, steps, params=None):
    params = _params() if params is None else params

    def body(carry, k):
        p, s = carry
        u, s = tx.update(_grads(p, k), s, p)
        return (adaptx.apply_updates(p, u), s), None

    (p, s), _ = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), jnp.arange(steps)))(params)
    return p, s


def _assert_bits_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize(
    "learning_rate",
    [0.03, adaptx.warmup_cosine_decay_schedule(0.0, 0.05, 10, 200)],
    ids=["constant", "schedule"],
)
def test_bit_identical_to_plain_optimizer(learning_rate):
    plain_p, plain_s = _trajectory(adaptx.sgd(learning_rate, 0.9), 200)
    inj_p, inj_s = _trajectory(adaptx.inject_hyperparams(adaptx.sgd)(learning_rate, 0.9), 200)
    _assert_bits_equal(inj_p, plain_p)
    _assert_bits_equal(inj_s.inner_state[0], plain_s[0])  # the momentum trace


def test_schedule_stays_a_schedule_and_its_value_is_logged():
    schedule = adaptx.linear_schedule(1.0, 0.0, transition_steps=4)
    tx = adaptx.inject_hyperparams(adaptx.scale_by_learning_rate)(learning_rate=schedule)
    state = tx.init(jnp.zeros(1))
    assert float(state.hyperparams["learning_rate"]) == 1.0  # what the first step will use
    logged, applied = [], []
    for _ in range(3):
        u, state = tx.update(jnp.ones(1), state)
        applied.append(float(u[0]))
        logged.append(float(adaptx.get_hyperparams(state)["learning_rate"]))
    assert applied == [-1.0, -0.75, -0.5]
    assert logged == [1.0, 0.75, 0.5]
    assert int(state.count) == 3


def test_changed_values_take_effect():
    tx = adaptx.inject_hyperparams(adaptx.sgd)(learning_rate=0.1, momentum=0.0)
    state = tx.init(jnp.zeros(1))
    u, state = tx.update(jnp.ones(1), state)
    np.testing.assert_allclose(u, [-0.1])
    state = adaptx.set_hyperparams(state, learning_rate=1.0, momentum=0.5)
    u, state = jax.jit(tx.update)(jnp.ones(1), state)
    np.testing.assert_allclose(u, [-1.5])  # trace 0.5 * 1 + 1


def test_which_arguments_are_injected():
    seen = {}

    def factory(learning_rate, momentum=0.9, steps=3, *, mask=None, nesterov=False, dtype=None):
        seen.update(
            learning_rate=learning_rate,
            momentum=momentum,
            steps=steps,
            mask=mask,
            nesterov=nesterov,
            dtype=dtype,
        )
        return adaptx.identity()

    mask_fn = lambda p: True  # a callable mask is not a schedule
    tx = adaptx.inject_hyperparams(factory, static_args="steps")(
        1, mask=mask_fn, nesterov=True, dtype=jnp.bfloat16
    )
    state = tx.init(jnp.zeros(1))
    assert set(state.hyperparams) == {"learning_rate", "momentum"}
    assert state.hyperparams["learning_rate"].dtype == jnp.float32  # an int becomes a float
    assert seen["steps"] == 3 and seen["mask"] is mask_fn and seen["nesterov"] is True
    assert seen["dtype"] is jnp.bfloat16
    with pytest.raises(ValueError, match="static_args"):
        adaptx.inject_hyperparams(factory, static_args=["nope"])


def test_float64_params_keep_float64_hyperparams(x64):
    params = jax.tree.map(lambda x: x.astype(jnp.float64), _params())
    plain_p, _ = _trajectory(adaptx.sgd(0.03, 0.9), 50, params)
    tx = adaptx.inject_hyperparams(adaptx.sgd)(0.03, 0.9)
    inj_p, inj_s = _trajectory(tx, 50, params)
    assert inj_s.hyperparams["learning_rate"].dtype == jnp.float64
    _assert_bits_equal(inj_p, plain_p)


def test_set_hyperparams_validates_and_reports():
    state = adaptx.inject_hyperparams(adaptx.sgd)(0.1).init(jnp.zeros(1))
    with pytest.raises(ValueError, match="learning_rate must be in"):
        adaptx.set_hyperparams(state, learning_rate=-1.0)
    with pytest.raises(KeyError, match="no run-time hyper-parameter named \\['b1'\\]"):
        adaptx.set_hyperparams(state, b1=0.9)
    with pytest.raises(ValueError, match="learning_rate must be a scalar"):
        adaptx.set_hyperparams(state, learning_rate=jnp.ones(2))
    assert float(state.hyperparams["learning_rate"]) == np.float32(0.1)  # not modified


def test_set_and_get_in_nested_states_and_parameter_groups():
    inj = adaptx.inject_hyperparams(adaptx.sgd)
    tx = adaptx.partition(
        {"a": inj(0.1), "b": adaptx.chain(adaptx.clip(1.0), inj(0.2))},
        {"w": "a", "b": "b"},
    )
    state = tx.init(_params())
    with pytest.raises(ValueError, match="exactly one InjectHyperparamsState, found 2"):
        adaptx.get_hyperparams(state)
    assert float(adaptx.get_hyperparams(state.inner_states["b"])["learning_rate"]) == np.float32(
        0.2
    )
    both = adaptx.set_hyperparams(state, learning_rate=0.5)
    for label in "ab":
        assert float(adaptx.get_hyperparams(both.inner_states[label])["learning_rate"]) == 0.5
    with pytest.raises(ValueError, match="found 0"):
        adaptx.get_hyperparams(adaptx.clip(1.0).init(_params()))


def test_set_hyperparams_inside_jit_with_traced_values():
    tx = adaptx.inject_hyperparams(adaptx.sgd)(0.1)

    @jax.jit
    def step(params, state, lr):
        state = adaptx.set_hyperparams(state, learning_rate=lr)
        u, state = tx.update(_grads(params, jnp.float32(0.0)), state, params)
        return adaptx.apply_updates(params, u), state

    params = _params()
    _, state = step(params, tx.init(params), jnp.float32(0.25))
    assert float(state.hyperparams["learning_rate"]) == 0.25


def test_construction_validates_concrete_values():
    with pytest.raises(ValueError, match="learning_rate must be in"):
        adaptx.inject_hyperparams(adaptx.scale_by_learning_rate)(learning_rate=-0.1)


@pytest.mark.parametrize(
    "plain, injected",
    [
        (lambda: adaptx.adam(1e-3), lambda: adaptx.inject_hyperparams(adaptx.adam)(1e-3)),
        (
            lambda: adaptx.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6),
            lambda: adaptx.inject_hyperparams(adaptx.adam)(3e-3, b1=0.8, b2=0.99, eps=1e-6),
        ),
        (
            lambda: adaptx.adamw(1e-3, weight_decay=0.1, mask=_matrices),
            lambda: adaptx.inject_hyperparams(adaptx.adamw)(1e-3, weight_decay=0.1, mask=_matrices),
        ),
        (
            lambda: adaptx.adam(adaptx.cosine_decay_schedule(1e-2, 200)),
            lambda: adaptx.inject_hyperparams(adaptx.adam)(adaptx.cosine_decay_schedule(1e-2, 200)),
        ),
    ],
    ids=["adam", "adam[b1,b2,eps]", "adamw[mask]", "adam[schedule]"],
)
def test_adam_bit_identical_to_plain_adam_over_200_steps(plain, injected):
    plain_p, plain_s = _trajectory(plain(), 200)
    inj_p, inj_s = _trajectory(injected(), 200)
    _assert_bits_equal(inj_p, plain_p)
    # The moments too (the first entry of the chain is scale_by_adam's state).
    _assert_bits_equal(inj_s.inner_state[0], plain_s[0])
    assert float(jnp.max(jnp.abs(plain_s[0].mu["w"]))) > 0 and plain_p["w"].dtype == jnp.float32


def _matrices(params):
    return jax.tree.map(lambda p: p.ndim == 2, params)


@pytest.mark.parametrize(
    "factory, kwargs, changes",
    [
        (
            adaptx.adamw,
            {"learning_rate": 1e-3, "weight_decay": 1e-4},
            ["learning_rate", "b1", "b2", "eps", "weight_decay"],
        ),
        (adaptx.sgd, {"learning_rate": 0.1, "momentum": 0.9}, ["learning_rate", "momentum"]),
    ],
    ids=["adamw", "sgd"],
)
def test_changing_hyperparameters_100_times_compiles_once(factory, kwargs, changes):
    tx = adaptx.inject_hyperparams(factory)(**kwargs)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        u, state = tx.update(_grads(params, jnp.float32(1.0)), state, params)
        return adaptx.apply_updates(params, u), state

    params = _params()
    state = tx.init(params)
    rng = np.random.default_rng(0)
    for i in range(100):
        new = {name: float(rng.uniform(0.01, 0.9)) for name in changes}
        if "eps" in new:
            new["eps"] = new["eps"] * 1e-6
        if i % 2:
            state = adaptx.set_hyperparams(state, **new)
        else:  # or optax style, by assigning arrays of the stored dtype into the dict
            for name, value in new.items():
                state.hyperparams[name] = jnp.asarray(value, jnp.float32)
        params, state = step(params, state)
        for name, value in new.items():
            np.testing.assert_allclose(state.hyperparams[name], value, rtol=1e-6)
    assert len(traces) == 1, f"traced {len(traces)} times"


def test_donating_the_state_leaves_the_callers_values_alive():
    lr = jnp.float32(0.1)
    tx = adaptx.inject_hyperparams(adaptx.sgd)(lr, momentum=0.9)
    step = jax.jit(lambda g, s: tx.update(g, s), donate_argnums=1)
    params = jnp.ones(2)
    for _ in range(2):  # the second init comes after a donation
        updates, _ = step(params, tx.init(params))
    np.testing.assert_allclose(updates, [-0.1, -0.1])
    assert float(lr) == np.float32(0.1)
