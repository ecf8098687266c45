"""Property-based tests (hypothesis) over random valid hyper-parameters, shapes, dtypes
and gradients: updates are finite for finite inputs, dtypes and shapes are kept, and
Adam-type updates are invariant to rescaling the gradient.

Deterministic (``derandomize=True``) and small (25 examples) so CI stays fast; every
example runs eagerly on a tiny tree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptx

PROFILE = settings(max_examples=25, deadline=None, derandomize=True)

unit = st.floats(0.0, 1.0)
lr = st.floats(0.0, 1.0)
decay = st.floats(0.0, 0.999)
beta2 = st.floats(0.0, 0.99999)
eps = st.one_of(st.just(0.0), st.floats(1e-12, 1e-3))
eps_pos = st.floats(1e-10, 1e-3)
momentum = st.one_of(st.none(), st.floats(0.0, 0.99))


def _adam_kw(draw):
    return dict(b1=draw(decay), b2=draw(beta2), eps=draw(eps), eps_root=draw(eps))


# name -> (hypothesis data -> transform): each draws every hyper-parameter in its valid range.
FACTORIES = {
    "sgd": lambda d: (lambda m: adaptx.sgd(d(lr), m, nesterov=bool(m) and d(st.booleans())))(
        d(momentum)
    ),
    "adagrad": lambda d: adaptx.adagrad(d(lr), d(unit), d(eps), eps_in_sqrt=d(st.booleans())),
    "rmsprop": lambda d: (
        lambda m: adaptx.rmsprop(
            d(lr),
            d(decay),
            d(eps),
            d(unit),
            eps_in_sqrt=d(st.booleans()),
            centered=d(st.booleans()),
            momentum=m,
            nesterov=bool(m) and d(st.booleans()),
            bias_correction=d(st.booleans()),
            lr_before_momentum=d(st.booleans()),
        )
    )(d(momentum)),
    "adadelta": lambda d: adaptx.adadelta(d(lr), d(decay), d(eps_pos)),
    "adam": lambda d: adaptx.adam(d(lr), **_adam_kw(d), nesterov=d(st.booleans())),
    "adamw": lambda d: adaptx.adamw(d(lr), **_adam_kw(d), weight_decay=d(unit)),
    "adamax": lambda d: adaptx.adamax(d(lr), d(decay), d(beta2), d(eps)),
    "amsgrad": lambda d: adaptx.amsgrad(
        d(lr), **_adam_kw(d), variant=d(st.sampled_from(["max_raw", "paper", "max_corrected"]))
    ),
    "nadam": lambda d: adaptx.nadam(
        d(lr), **_adam_kw(d), momentum_decay=d(st.one_of(st.none(), st.floats(0.0, 1.0)))
    ),
    "radam": lambda d: adaptx.radam(d(lr), **_adam_kw(d), threshold=d(st.floats(4.0, 10.0))),
    "trace": lambda d: adaptx.trace(d(st.floats(0.0, 1.0))),
    "ema": lambda d: adaptx.ema(d(decay), debias=d(st.booleans())),
    "clip_by_global_norm": lambda d: adaptx.chain(
        adaptx.clip_by_global_norm(d(st.floats(1e-3, 1e3))), adaptx.sgd(d(lr))
    ),
}

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
# float16 gradients stay below 2**7 so that g**2 fits a float16 second moment.
dtypes = st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16])


def _gradients(rng, shape, dtype, steps):
    top = 2 if dtype == jnp.float16 else 4
    g = rng.choice([-1.0, 1.0], (steps, *shape)) * 10.0 ** rng.uniform(-4, top, (steps, *shape))
    g[rng.random(g.shape) < 0.25] = 0.0  # exact zeros, including whole zero steps
    g[0] = 0.0
    return jnp.asarray(g, jnp.float32).astype(dtype)


@PROFILE
@given(
    name=st.sampled_from(sorted(FACTORIES)),
    shape=shapes,
    dtype=dtypes,
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_updates_are_finite_and_keep_dtype_and_shape(name, shape, dtype, seed, data):
    tx = FACTORIES[name](data.draw)
    rng = np.random.default_rng(seed)
    params = {
        "a": jnp.asarray(rng.normal(size=shape), jnp.float32).astype(dtype),
        "b": jnp.ones(2, dtype),
    }
    state = tx.init(params)
    treedef = jax.tree.structure(state)
    dtypes_before = [x.dtype for x in jax.tree.leaves(state)]
    ga, gb = _gradients(rng, shape, dtype, 5), _gradients(rng, (2,), dtype, 5)
    for t in range(5):
        grads = {"a": ga[t], "b": gb[t]}
        updates, state = tx.update(grads, state, params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert u.dtype == p.dtype and u.shape == p.shape
            assert bool(jnp.all(jnp.isfinite(u))), f"{name}: non-finite update {u}"
        params = adaptx.apply_updates(params, updates)
    assert jax.tree.structure(state) == treedef
    assert [x.dtype for x in jax.tree.leaves(state)] == dtypes_before


SCALE_INVARIANT = {
    "scale_by_adam": lambda d: adaptx.scale_by_adam(d(decay), d(beta2), 0.0),
    "scale_by_adamax": lambda d: adaptx.scale_by_adamax(d(decay), d(beta2), 0.0),
    "scale_by_amsgrad": lambda d: adaptx.scale_by_amsgrad(
        d(decay), d(beta2), 0.0, variant=d(st.sampled_from(["max_raw", "paper", "max_corrected"]))
    ),
    "scale_by_nadam": lambda d: adaptx.scale_by_nadam(
        d(decay), d(beta2), 0.0, momentum_decay=d(st.one_of(st.none(), st.floats(0.0, 1.0)))
    ),
}


@PROFILE
@given(
    name=st.sampled_from(sorted(SCALE_INVARIANT)),
    shape=shapes,
    exponent=st.integers(-20, 20),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_adam_type_updates_are_invariant_to_gradient_rescaling(name, shape, exponent, seed, data):
    # With eps = 0 and a power-of-two factor c, every moment scales exactly (m by c,
    # v by c**2, sqrt(v) by c) in floating point: the updates must be bit-identical.
    tx = SCALE_INVARIANT[name](data.draw)
    rng = np.random.default_rng(seed)
    g = np.asarray(_gradients(rng, shape, jnp.float32, 6))
    c = np.float32(2.0**exponent)
    params = jnp.zeros(shape, jnp.float32)
    s1, s2 = tx.init(params), tx.init(params)
    for t in range(6):
        u1, s1 = tx.update(jnp.asarray(g[t]), s1)
        u2, s2 = tx.update(jnp.asarray(g[t] * c), s2)
        np.testing.assert_array_equal(u1, u2)


@PROFILE
@given(
    shape=shapes,
    factor=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
    b1=decay,
    b2=st.floats(0.5, 0.9999),
)
def test_adam_is_invariant_to_any_positive_rescaling_up_to_eps(shape, factor, seed, b1, b2):
    # Any positive factor: equal up to rounding while |g| >> eps.
    tx = adaptx.scale_by_adam(b1, b2, 1e-12)
    rng = np.random.default_rng(seed)
    g = np.abs(rng.normal(size=(6, *shape))) + 0.1
    g *= rng.choice([-1.0, 1.0], g.shape)
    params = jnp.zeros(shape, jnp.float32)
    s1, s2 = tx.init(params), tx.init(params)
    for t in range(6):
        u1, s1 = tx.update(jnp.asarray(g[t], jnp.float32), s1)
        u2, s2 = tx.update(jnp.asarray(g[t] * factor, jnp.float32), s2)
        np.testing.assert_allclose(u1, u2, rtol=2e-5, atol=1e-6)
