"""Running a transform over a fixed gradient sequence, and comparing two runs.

Shared by the Adam-family tests; ``rel_diff`` is the relative difference
defined in ``test_adam_family.py``'s module docstring.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptx


def rel_diff(got, want) -> float:
    """The worst step's ``max_i |got - want| / max_i |want|`` over two ``(T, n)`` runs.

    A step whose reference is all zeros counts its absolute difference.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    num = np.max(np.abs(got - want), axis=1)
    den = np.max(np.abs(want), axis=1)
    return float(np.max(np.where(den > 0, num / np.where(den > 0, den, 1.0), num)))


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def run(tx, grads, params0, dtype, *, standard=False):
    """Runs ``tx`` eagerly over a gradient sequence; params follow ``apply_updates``.

    ``grads`` is a ``(T, ...)`` array or a tree of them, ``params0`` a matching
    tree. Returns the ``(T, n)`` updates, flattened, as float64. ``standard``
    wraps the run in standard dtype promotion (for optax, which is not
    strict-clean).
    """
    cast = functools.partial(jax.tree.map, lambda x: jnp.asarray(x, dtype))
    params = cast(params0)
    apply = optax.apply_updates if standard else adaptx.apply_updates
    out = []
    with jax.numpy_dtype_promotion("standard" if standard else "strict"):
        state = tx.init(params)
        for t in range(len(jax.tree.leaves(grads)[0])):
            g = cast(jax.tree.map(lambda x: x[t], grads))
            updates, state = tx.update(g, state, params)
            assert jax.tree.map(jnp.result_type, updates) == jax.tree.map(jnp.result_type, g)
            out.append(_flat(updates))
            params = apply(params, updates)
    return np.array(out)
