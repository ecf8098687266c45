"""Every combinator composed with adaptx's Adam and SGD inside ``chain``, against optax.

Each case builds the same pipeline from adaptx pieces and from optax's
namesakes, runs a few steps on a small tree (jitted and not), and compares the
parameters. Where the semantics differ on purpose (lookahead keeps the slow
weights in the state), the comparison says what corresponds to what.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx

NAN = float("nan")


def _params():
    return {
        "w": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]),
        "b": jnp.array([0.1, -0.3, 0.7]),
    }


def _grads(params, k):
    g = jax.tree.map(lambda p: jnp.cos(2.0 * p + k) * (1.0 + k) + 0.5 * p, params)
    return g


def _mask(params):
    return jax.tree.map(lambda p: p.ndim == 2, params)


def _labels(params):
    return jax.tree.map(lambda p: "matrix" if p.ndim == 2 else "vector", params)


def _run(tx, jit, steps=6, nan_at=None, standard=False):
    params = _params()
    state = tx.init(params)
    update = jit(tx.update)
    for k in range(steps):
        g = _grads(params, float(k))
        if k == nan_at:
            g = {"w": g["w"].at[0, 0].set(NAN), "b": g["b"]}
        if standard:
            with jax.numpy_dtype_promotion("standard"):  # optax is not strict-clean
                u, state = update(g, state, params)
        else:
            u, state = update(g, state, params)
        params = adaptx.apply_updates(params, u)
    return params


CASES = {
    "clip+adam": (
        lambda: adaptx.chain(adaptx.clip(0.5), adaptx.adam(0.05)),
        lambda: optax.chain(optax.clip(0.5), optax.adam(0.05)),
        {},
    ),
    "clip_by_global_norm+adam": (
        lambda: adaptx.chain(adaptx.clip_by_global_norm(1.0), adaptx.adam(0.05)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)),
        {},
    ),
    "clip_by_block_rms+sgd": (
        lambda: adaptx.chain(adaptx.clip_by_block_rms(0.5), adaptx.sgd(0.1, 0.9)),
        lambda: optax.chain(optax.clip_by_block_rms(0.5), optax.sgd(0.1, 0.9)),
        {},
    ),
    "masked(adam)+sgd": (
        lambda: adaptx.chain(adaptx.masked(adaptx.adam(0.05), _mask), adaptx.sgd(0.1)),
        lambda: optax.chain(optax.masked(optax.adam(0.05), _mask), optax.sgd(0.1)),
        {},
    ),
    "partition(adam, sgd)": (
        lambda: adaptx.partition(
            {"matrix": adaptx.adam(0.05), "vector": adaptx.sgd(0.1, 0.9)}, _labels
        ),
        lambda: optax.partition(
            {"matrix": optax.adam(0.05), "vector": optax.sgd(0.1, 0.9)}, _labels
        ),
        {},
    ),
    "freeze+adam": (
        lambda: adaptx.chain(adaptx.adam(0.05), adaptx.freeze(_mask)),
        lambda: optax.chain(optax.adam(0.05), optax.freeze(_mask)),
        {},
    ),
    "apply_if_finite(clip+adam)": (
        lambda: adaptx.apply_if_finite(
            adaptx.chain(adaptx.clip_by_global_norm(1.0), adaptx.adam(0.05)), 3
        ),
        lambda: optax.apply_if_finite(
            optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)), 3
        ),
        {"nan_at": 2},
    ),
    "zero_nans+sgd": (
        lambda: adaptx.chain(adaptx.zero_nans(), adaptx.sgd(0.1, 0.9)),
        lambda: optax.chain(optax.zero_nans(), optax.sgd(0.1, 0.9)),
        {"nan_at": 2},
    ),
    "MultiSteps(clip+adam)": (
        lambda: adaptx.MultiSteps(adaptx.chain(adaptx.clip(0.5), adaptx.adam(0.05)), 3),
        lambda: optax.MultiSteps(optax.chain(optax.clip(0.5), optax.adam(0.05)), 3),
        {},
    ),
    "inject_hyperparams(adam)": (
        lambda: adaptx.inject_hyperparams(adaptx.adam)(0.05, b1=0.8),
        lambda: optax.inject_hyperparams(optax.adam)(0.05, b1=0.8),
        {},
    ),
    "inject_hyperparams(sgd) in chain": (
        lambda: adaptx.chain(
            adaptx.clip(0.5), adaptx.inject_hyperparams(adaptx.sgd)(0.1, momentum=0.9)
        ),
        lambda: optax.chain(optax.clip(0.5), optax.inject_hyperparams(optax.sgd)(0.1, 0.9)),
        {},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_optax_composition(name, jit):
    ours, theirs, kw = CASES[name]
    got = _run(ours(), jit, **kw)
    want = _run(theirs(), jax.jit, standard=True, **kw)  # the reference: always jitted
    for leaf in jax.tree.leaves(got):
        assert np.all(np.isfinite(leaf)), "a non-finite value reached the parameters"
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)


def test_lookahead_adam_matches_optax(jit):
    ours = adaptx.lookahead(adaptx.chain(adaptx.clip(0.5), adaptx.adam(0.05)), 3, 0.5)
    theirs = optax.lookahead(optax.chain(optax.clip(0.5), optax.adam(0.05)), 3, 0.5)
    params = _params()
    lp = optax.LookaheadParams.init_synced(_params())
    s1, s2 = ours.init(params), theirs.init(lp)
    u1, u2 = jit(ours.update), jax.jit(theirs.update)
    for k in range(7):
        u, s1 = u1(_grads(params, float(k)), s1, params)
        params = adaptx.apply_updates(params, u)
        with jax.numpy_dtype_promotion("standard"):
            lu, s2 = u2(_grads(lp.fast, float(k)), s2, lp)
            lp = optax.apply_updates(lp, lu)
        # Our params are optax's fast weights; our state.slow is optax's slow weights.
        close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
        jax.tree.map(close, params, lp.fast)
        jax.tree.map(close, s1.slow, lp.slow)
