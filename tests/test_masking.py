"""masked, partition and freeze: exact values, state kept only where masked in, optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx


def _params():
    return {
        "dense": {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.25, -1.0])},
        "norm": jnp.array([2.0, -4.0]),
    }


def _grads(k=0):
    return {
        "dense": {"w": jnp.array([[4.0, -2.0], [1.0, 8.0]]) * (k + 1), "b": jnp.array([2.0, 6.0])},
        "norm": jnp.array([-1.0, 0.5]) / (k + 1),
    }


def _counting(factor):
    """A stateful stand-in: multiplies by factor and counts the leaves it holds state for."""

    def init(params):
        return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.float32), params)

    def update(updates, state, params=None, **extra_args):
        state = jax.tree.map(lambda s, u: s + u, state, updates)
        return jax.tree.map(lambda u: factor * u, updates), state

    return adaptx.GradientTransformation(init, update)


def _is_matrix(tree):
    return jax.tree.map(lambda x: jnp.ndim(x) == 2, tree)


@pytest.mark.parametrize("mask_kind", ["tree", "callable"])
def test_masked_exact_values_and_untouched_leaves(mask_kind, jit):
    mask = {"dense": {"w": True, "b": False}, "norm": False} if mask_kind == "tree" else _is_matrix
    tx = adaptx.masked(_counting(-0.5), mask)
    params, grads = _params(), _grads()
    state = jit(tx.init)(params)
    updates, state = jit(tx.update)(grads, state, params)
    np.testing.assert_array_equal(updates["dense"]["w"], [[-2.0, 1.0], [-0.5, -4.0]])
    # Masked-out leaves come back exactly as they went in.
    np.testing.assert_array_equal(updates["dense"]["b"], grads["dense"]["b"])
    np.testing.assert_array_equal(updates["norm"], grads["norm"])
    # The inner state holds the masked-in leaf only.
    assert len(jax.tree.leaves(state.inner_state)) == 1
    np.testing.assert_array_equal(state.inner_state["dense"]["w"], grads["dense"]["w"])
    assert isinstance(state.inner_state["norm"], adaptx.MaskedNode)


def test_masked_prefix_mask_and_single_bool():
    params, grads = _params(), _grads()
    tx = adaptx.masked(adaptx.scale(2.0), {"dense": True, "norm": False})
    out, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(out["dense"]["b"], [4.0, 12.0])
    np.testing.assert_array_equal(out["norm"], grads["norm"])
    tx = adaptx.masked(adaptx.scale(2.0), False)
    out, _ = tx.update(grads, tx.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, out, grads)


def test_masked_callable_gets_params_or_updates():
    seen = []

    def mask(tree):
        seen.append(tree)
        return _is_matrix(tree)

    tx = adaptx.masked(adaptx.scale(2.0), mask)
    params, grads = _params(), _grads()
    state = tx.init(params)
    tx.update(grads, state, params)
    tx.update(grads, state)  # no params: the mask is computed from the updates
    assert seen[0] is params and seen[1] is params and seen[2] is grads


def test_masked_rejects_traced_or_mismatched_masks():
    params = _params()
    tx = adaptx.masked(adaptx.scale(2.0), jax.tree.map(lambda x: jnp.ones((), bool), params))
    tx.init(params)  # concrete boolean scalars are fine
    with pytest.raises(TypeError, match="mask leaves must be Python booleans"):
        jax.jit(adaptx.masked(adaptx.scale(2.0), lambda p: _traced_mask(p)).init)(params)
    with pytest.raises(ValueError, match="mask must have the structure of the params"):
        adaptx.masked(adaptx.scale(2.0), {"other": True}).init(params)


def _traced_mask(p):
    return jax.tree.map(lambda x: jnp.sum(x) > 0, p)


def test_partition_exact_values_state_per_group_and_labels(jit):
    labels = {"dense": {"w": "matrix", "b": "vector"}, "norm": "vector"}
    tx = adaptx.partition({"matrix": _counting(-0.1), "vector": adaptx.scale(-0.01)}, labels)
    params, grads = _params(), _grads()
    state = jit(tx.init)(params)
    updates, state = jit(tx.update)(grads, state, params)
    np.testing.assert_allclose(updates["dense"]["w"], -0.1 * np.asarray(grads["dense"]["w"]))
    np.testing.assert_allclose(updates["dense"]["b"], [-0.02, -0.06])
    np.testing.assert_allclose(updates["norm"], [0.01, -0.005])
    assert set(state.inner_states) == {"matrix", "vector"}
    assert len(jax.tree.leaves(state.inner_states["matrix"])) == 1


def test_partition_unknown_label_is_an_error():
    tx = adaptx.partition({"a": adaptx.scale(1.0)}, lambda p: jax.tree.map(lambda x: "b", p))
    with pytest.raises(ValueError, match=r"labels \['b'\] have no transform"):
        tx.init(_params())


def test_freeze_zeroes_frozen_leaves_only():
    params, grads = _params(), _grads()
    tx = adaptx.chain(adaptx.scale(-1.0), adaptx.freeze({"dense": True, "norm": False}))
    out, _ = tx.update(grads, tx.init(params), params)
    for leaf in jax.tree.leaves(out["dense"]):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
    np.testing.assert_array_equal(out["norm"], -np.asarray(grads["norm"]))
    mask = {"dense": True, "norm": False}
    ours, theirs = adaptx.freeze(mask), optax.freeze(mask)
    with jax.numpy_dtype_promotion("standard"):
        ref, _ = theirs.update(grads, theirs.init(params), params)
    got, _ = ours.update(grads, ours.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, got, ref)


@pytest.mark.parametrize(
    "make",
    [
        lambda: adaptx.masked(adaptx.trace(0.9), {"dense": True, "norm": False}),
        lambda: adaptx.masked(adaptx.trace(0.9), lambda p: {"dense": True, "norm": False}),
        lambda: adaptx.partition(
            {"a": adaptx.adam(0.1), "b": adaptx.sgd(0.1, momentum=0.9)},
            {"dense": "a", "norm": "b"},
        ),
        lambda: adaptx.freeze({"dense": {"w": True, "b": False}, "norm": False}),
        lambda: adaptx.chain(adaptx.freeze({"dense": True, "norm": False}), adaptx.adam(0.1)),
    ],
    ids=["masked", "masked_fn", "partition", "freeze", "chain_freeze_adam"],
)
def test_optax_tree_utilities_see_the_params_trees_of_masked_states(make):
    # optax.tree.map_params calls init on an empty placeholder pytree, which no
    # mask for the real params describes.
    tx = make()
    params = _params()
    state = tx.init(params)
    halves = optax.tree.map_params(tx, lambda x: x / 2, state)
    assert jax.tree.structure(halves) == jax.tree.structure(state)
    # The same params-shaped subtrees as optax's namesake sees.
    shapes = optax.tree.map_params(tx, lambda x: "p", jax.tree.map(jnp.shape, state))
    assert "p" in jax.tree.leaves(shapes) or not jax.tree.leaves(state)


def test_a_callable_pytree_mask_is_a_tree_not_a_function():
    # An equinox Module with __call__ is callable and a pytree; as a mask it is
    # the tree of its fields (optax issue 913). Calling it would fail here.
    eqx = pytest.importorskip("equinox")

    class Linear(eqx.Module):
        w: object
        b: object

        def __call__(self, x):
            return self.w @ x + self.b

    params = Linear(jnp.array([[1.0, 2.0]]), jnp.array([3.0]))
    mask = Linear(True, False)
    assert callable(mask)
    grads = Linear(jnp.array([[1.0, -1.0]]), jnp.array([5.0]))
    cases = [
        # masked: w scaled, b untouched
        (adaptx.masked(adaptx.scale(-0.5), mask), [[-0.5, 0.5]], [5.0]),
        # freeze b after scaling everything
        (
            adaptx.chain(adaptx.scale(-0.5), adaptx.freeze(Linear(False, True))),
            [[-0.5, 0.5]],
            [0.0],
        ),
        # decay w only: w + 1.0 * params.w
        (adaptx.add_decayed_weights(1.0, mask=mask), [[2.0, 1.0]], [5.0]),
        # partition: w by -0.5, b by 2
        (
            adaptx.partition({"x": adaptx.scale(-0.5), "y": adaptx.scale(2.0)}, Linear("x", "y")),
            [[-0.5, 0.5]],
            [10.0],
        ),
    ]
    for tx, w, b in cases:
        updates, _ = tx.update(grads, tx.init(params), params)
        assert isinstance(updates, Linear)
        np.testing.assert_array_equal(updates.w, w)
        np.testing.assert_array_equal(updates.b, b)


def test_masks_given_as_functions_are_still_called():
    import functools

    params = _params()
    calls = []

    def mask_fn(p, value):
        calls.append(jax.tree.structure(p))
        return jax.tree.map(lambda _: value, p)

    for mask in (
        functools.partial(mask_fn, value=True),
        jax.tree_util.Partial(mask_fn, value=True),
    ):
        tx = adaptx.masked(adaptx.scale(2.0), mask)
        updates, _ = tx.update(params, tx.init(params), params)
        np.testing.assert_array_equal(updates["norm"], 2 * params["norm"])
    assert len(calls) == 4
