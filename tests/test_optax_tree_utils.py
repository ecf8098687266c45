"""optax's state utilities on every registry entry: ``tree.map_params``, ``tree.get``, ``tree.set``.

Users call ``optax.tree.map_params`` to derive shardings or partition specs
for an optimizer's state: it runs ``init`` on an empty placeholder pytree and
maps a function over the subtrees of the state where the placeholder landed.
That works only if a state's structure follows from the params' structure
alone (``init`` on a tree without leaves must work, and put the params-shaped
subtrees where ``init`` on the real params puts them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

from registry import REGISTRY

PARAMS = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.full((2,), 0.5, jnp.float32)}
GRADS = {"w": jnp.full((3, 2), 0.25, jnp.float32), "b": jnp.array([1.0, -2.0], jnp.float32)}


@pytest.mark.parametrize("entry", REGISTRY, ids=str)
def test_map_params_get_and_set(entry):
    tx = entry.make(entry.lr)
    state = tx.init(PARAMS)

    # map_params: the same structure back, and what it hands to the function
    # at each placeholder position is a tree with the params' keys (a moment,
    # or a factored or masked one), never anything else.
    is_params_tree = lambda x: isinstance(x, dict) and set(x) == set(PARAMS)
    marked = optax.tree.map_params(
        tx,
        lambda x: "P" if is_params_tree(x) else "not a params tree",
        state,
        transform_non_params=lambda x: "-",
        is_leaf=is_params_tree,
    )
    assert "not a params tree" not in jax.tree.leaves(marked)
    # The sharding use case: a function of each params leaf.
    abstract = optax.tree.map_params(tx, lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)

    # get and set, by a state field name that occurs once.
    names = {
        k.name
        for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]
        for k in path
        if isinstance(k, jax.tree_util.GetAttrKey)
    }
    unique = sorted(
        n
        for n in names
        if len(optax.tree_utils.tree_get_all_with_path(state, n)) == 1
        and isinstance(optax.tree.get(state, n), jax.Array)
    )
    for name in unique:
        value = optax.tree.get(state, name)
        changed = optax.tree.set(state, **{name: jnp.zeros_like(value)})
        assert jax.tree.structure(changed) == jax.tree.structure(state)
        assert jnp.all(optax.tree.get(changed, name) == jnp.zeros_like(value))
        if name == "count" or "count" in name:  # the state still drives an update
            updates, _ = tx.update(GRADS, changed, PARAMS)
            assert jax.tree.structure(updates) == jax.tree.structure(GRADS)
