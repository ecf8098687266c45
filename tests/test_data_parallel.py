"""Data parallelism over the 8 fake CPU devices with ``pmap`` and ``shard_map``.

Each device gets an eighth of the batch and averages the gradients with
``pmean``; after ``STEPS`` steps every replica must hold the same parameters,
equal to a single-device run on the whole batch. Tree reductions given an
axis name (``global_norm``) must give the global value on every device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import adaptx

from registry import REGISTRY, Entry, by_name

ENTRIES = [pytest.param(e, id=e.name) for e in REGISTRY]
N_DEV = 8
STEPS = 20
LR = 0.01
BATCH = 64


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 4)).astype(np.float32)
    y = np.tanh(x @ np.array([0.5, -1.0, 2.0, 0.25])).astype(np.float32)
    params = {
        "w1": (rng.normal(size=(4, 8)) / 2).astype(np.float32),
        "b1": np.zeros(8, np.float32),
        "w2": (rng.normal(size=(8,)) / 3).astype(np.float32),
        "b2": np.zeros((), np.float32),
    }
    return params, x, y


PARAMS, X, Y = _problem()


def _loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return jnp.mean(jnp.square(h @ params["w2"] + params["b2"] - y))


def _optimizer(entry: Entry) -> adaptx.GradientTransformation:
    tx = entry.make(LR)
    return adaptx.chain(tx, adaptx.scale(-LR)) if entry.kind == "direction" else tx


def _train(tx, axis_name=None, *, average="grads"):
    """``STEPS`` steps from ``tx.init``, averaging over ``axis_name`` if given.

    ``average="grads"`` is ``pmap``'s idiom: each replica differentiates its
    own loss and the gradients are ``pmean``-ed. Inside ``shard_map`` the
    gradient of a parameter replicated over the axis comes out already summed
    over it (the transpose of its implicit broadcast), so there the idiom is
    ``average="loss"``: differentiate the ``pmean`` of the loss.
    """

    def loss(params, x, y):
        value = _loss(params, x, y)
        return jax.lax.pmean(value, axis_name) if average == "loss" and axis_name else value

    def train(params, x, y):
        def body(carry, _):
            params, state = carry
            grads = jax.grad(loss)(params, x, y)
            if average == "grads" and axis_name:
                grads = jax.lax.pmean(grads, axis_name)
            updates, state = tx.update(grads, state, params)
            return (adaptx.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=STEPS)
        return params, state

    return train


@functools.cache
def _one_device(name: str):
    return jax.device_get(jax.jit(_train(_optimizer(by_name(name))))(PARAMS, X, Y))


def _assert_close(got, want) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for path, a, b in zip(
        (p for p, _ in jax.tree_util.tree_leaves_with_path(want)),
        jax.tree.leaves(got),
        jax.tree.leaves(want),
    ):
        where = jax.tree_util.keystr(path)
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        if np.issubdtype(a.dtype, np.inexact):
            # pmean sums the shards' means in another order than the full-batch mean.
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("entry", ENTRIES)
def test_pmap_replicas_agree_and_match_one_device(entry):
    xs, ys = X.reshape(N_DEV, -1, 4), Y.reshape(N_DEV, -1)
    train = jax.pmap(_train(_optimizer(entry), "batch"), axis_name="batch", in_axes=(None, 0, 0))
    params, state = jax.device_get(train(PARAMS, xs, ys))
    for leaf in jax.tree.leaves((params, state)):
        for replica in leaf[1:]:
            np.testing.assert_array_equal(replica, leaf[0], err_msg="replicas differ")
    _assert_close(jax.tree.map(lambda leaf: leaf[0], (params, state)), _one_device(entry.name))


@pytest.mark.parametrize("entry", ENTRIES)
def test_shard_map_data_parallel_matches_one_device(entry):
    mesh = jax.make_mesh((N_DEV,), ("batch",))
    # out_specs P(): shard_map checks that params and state are the same on
    # every device (no axis-varying value leaks into them).
    train = jax.jit(
        jax.shard_map(
            _train(_optimizer(entry), "batch", average="loss"),
            mesh=mesh,
            in_specs=(P(), P("batch"), P("batch")),
            out_specs=P(),
        )
    )
    with jax.set_mesh(mesh):
        batch = NamedSharding(mesh, P("batch"))
        got = train(PARAMS, jax.device_put(X, batch), jax.device_put(Y, batch))
    _assert_close(jax.device_get(got), _one_device(entry.name))


def _tree_and_norm():
    rng = np.random.default_rng(1)
    tree = {
        "a": rng.normal(size=(8, 4)).astype(np.float32),
        "b": rng.normal(size=(16,)).astype(np.float32),
    }
    norm = np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in tree.values()))
    return tree, norm


def test_global_norm_with_axis_name_under_shard_map():
    tree, want = _tree_and_norm()
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    specs = {"a": P("data", "model"), "b": P(("data", "model"))}
    axes = ("data", "model")

    def norms(t):
        # Global with the axis names, the local piece's norm without.
        both = jnp.stack([adaptx.global_norm(t, axis_name=axes), adaptx.global_norm(t)])
        return both.reshape(1, 2)

    f = jax.jit(
        jax.shard_map(norms, mesh=mesh, in_specs=(specs,), out_specs=P(axes), check_vma=False)
    )
    with jax.set_mesh(mesh):
        got = np.asarray(
            f(jax.device_put(tree, {k: NamedSharding(mesh, s) for k, s in specs.items()}))
        )
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-6)
    assert np.all(got[:, 1] < want * 0.9), "without axis_name each device sees its piece only"


def test_global_norm_with_axis_name_under_pmap():
    tree, want = _tree_and_norm()
    pieces = jax.tree.map(lambda v: v.reshape(N_DEV, -1), tree)
    got = jax.pmap(lambda t: adaptx.global_norm(t, axis_name="i"), axis_name="i")(pieces)
    np.testing.assert_allclose(np.asarray(got), np.full(N_DEV, want), rtol=1e-6)
