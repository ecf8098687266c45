"""adaptx and optax transforms compose in either direction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx


def _params():
    return {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]], jnp.float32), "b": jnp.array([0.1, -0.3])}


def _grads(k):
    return {
        "w": jnp.array([[3.0, -4.0], [1.0, 2.0]], jnp.float32) * (k + 1),
        "b": jnp.array([0.5, -0.25], jnp.float32) / (k + 1),
    }


def _run(tx, steps=5, jit=jax.jit):
    params = _params()
    state = tx.init(params)
    update = jit(tx.update)
    for k in range(steps):
        updates, state = update(_grads(k), state, params)
        params = adaptx.apply_updates(params, updates)
    return params


@pytest.mark.parametrize(
    "make",
    [
        lambda: adaptx.chain(optax.clip_by_global_norm(1.0), adaptx.scale(-0.1)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), adaptx.scale(-0.1)),
        lambda: optax.chain(adaptx.identity(), optax.clip_by_global_norm(1.0), optax.scale(-0.1)),
        lambda: adaptx.chain(adaptx.identity(), optax.clip_by_global_norm(1.0), optax.scale(-0.1)),
    ],
    ids=[
        "adaptx.chain(optax,adaptx)",
        "optax.chain(optax,adaptx)",
        "optax.chain(adaptx,optax)",
        "adaptx.chain(adaptx,optax)",
    ],
)
def test_mixed_chains_match_all_optax(make, jit):
    reference = _run(optax.chain(optax.clip_by_global_norm(1.0), optax.scale(-0.1)), jit=jit)
    got = _run(make(), jit=jit)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, reference)


def test_adaptx_chain_passes_extra_args_only_where_accepted():
    seen = {}

    def init(params):
        return adaptx.EmptyState()

    def update(updates, state, params=None, **extra_args):
        seen.update(extra_args)
        return updates, state

    tx = adaptx.chain(optax.scale(2.0), adaptx.GradientTransformation(init, update))
    out, _ = tx.update(jnp.ones(2), tx.init(jnp.ones(2)), None, loss=jnp.float32(3.0))
    np.testing.assert_array_equal(out, 2 * jnp.ones(2))
    assert set(seen) == {"loss"}


def test_optax_chain_accepts_adaptx_transforms_with_extra_args():
    # optax.chain only forwards extra args to its own GradientTransformationExtraArgs
    # type, which adaptx cannot subclass without importing optax; an adaptx transform
    # inside optax.chain works, and the extra args are dropped for it (documented in
    # the README).
    tx = optax.chain(optax.scale(2.0), adaptx.scale(-1.0))
    out, _ = tx.update(jnp.ones(2), tx.init(jnp.ones(2)), None, value=1.0)
    np.testing.assert_array_equal(out, -2 * jnp.ones(2))


def test_named_chain_matches_optax_named_chain():
    ours = adaptx.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("lr", adaptx.scale(-0.1)))
    theirs = optax.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("lr", optax.scale(-0.1)))
    jax.tree.map(np.testing.assert_allclose, _run(ours), _run(theirs))


def test_optax_apply_updates_agrees():
    p, u = _params(), _grads(0)
    jax.tree.map(
        np.testing.assert_array_equal, adaptx.apply_updates(p, u), optax.apply_updates(p, u)
    )
