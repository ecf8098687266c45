"""Converting between a fused state and the per-leaf alias's (optax-layout) state."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptx.fused._optimizers import FusedAdamState, FusedSgdState


def _fields(node: Any) -> tuple:
    return getattr(type(node), "_fields", ()) if isinstance(node, tuple) else ()


def _split_like(flat: jax.Array, like: Any) -> Any:
    leaves, treedef = jax.tree.flatten(like)
    out, start = [], 0
    for x in leaves:
        n = int(np.prod(np.shape(x)))
        piece = jnp.reshape(jnp.asarray(flat)[start : start + n], np.shape(x))
        out.append(piece.astype(jnp.result_type(x)))
        start += n
    if start != np.shape(flat)[0]:
        raise ValueError(
            f"the fused state holds {np.shape(flat)[0]} entries but the per-leaf state has "
            f"{start}; build `like` from the same params"
        )
    return jax.tree.unflatten(treedef, out)


def _concat(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate([jnp.ravel(jnp.asarray(x)).astype(jnp.float32) for x in leaves])


def to_per_leaf(state: FusedAdamState | FusedSgdState, like: Any) -> Any:
    """The per-leaf optimizer state holding a fused state's values.

    ``like`` gives the structure: the state of the per-leaf alias with the same
    settings, e.g. ``adaptx.adam(lr).init(params)`` (or its
    ``jax.eval_shape``), or optax's ``optax.adam(lr).init(params)``, whose
    leaf paths are the same. Its moments (``mu``, ``nu``, ``trace``) get the
    flat buffers cut into the params' shapes and cast to their dtypes, and
    every step count (``ScaleByAdamState.count``, a schedule's
    ``ScaleByScheduleState.count``) gets ``state.count``. For checkpoints
    that the per-leaf alias (or optax) restores, or to switch back.

    Args:
      state: a ``FusedAdamState`` or ``FusedSgdState``.
      like: the per-leaf state to fill (its values are not read).

    Returns:
      ``like`` with the values of ``state``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx, adaptx.fused
      >>> params = {"a": jnp.ones(2), "b": jnp.ones((1, 2))}
      >>> tx = adaptx.fused.sgd(0.1, momentum=0.9)
      >>> _, state = tx.update(params, tx.init(params))
      >>> per_leaf = adaptx.fused.to_per_leaf(state, adaptx.sgd(0.1, 0.9).init(params))
      >>> per_leaf[0].trace["b"]
      Array([[1., 1.]], dtype=float32)
    """

    def fill(node: Any) -> Any:
        fields = _fields(node)
        if isinstance(state, FusedAdamState) and {"count", "mu", "nu"} <= set(fields):
            return node._replace(
                count=jnp.asarray(state.count, jnp.int32),
                mu=_split_like(state.mu, node.mu),
                nu=_split_like(state.nu, node.nu),
            )
        if isinstance(state, FusedSgdState) and "trace" in fields:
            return node._replace(trace=_split_like(state.trace, node.trace))
        if fields == ("count",):
            return node._replace(count=jnp.asarray(state.count, jnp.int32))
        if fields:
            return node._replace(**{f: fill(getattr(node, f)) for f in fields})
        if type(node) in (tuple, list):
            return type(node)(fill(x) for x in node)
        return node  # an empty state, or anything else: kept

    return fill(like)


def from_per_leaf(state: Any) -> FusedAdamState | FusedSgdState:
    """The fused state holding a per-leaf alias's (or optax's) state values.

    The inverse of ``to_per_leaf``: the state of ``adaptx.adam``/``adamw``
    (or optax's) gives a ``FusedAdamState``, that of ``adaptx.sgd`` a
    ``FusedSgdState``. The moments are concatenated in their leaves' order
    (the params' ``jax.tree.leaves`` order) as float32; the count is Adam's,
    else a schedule's, else 0.

    Args:
      state: the per-leaf state, e.g. restored from a checkpoint.

    Returns:
      The state of the matching ``adaptx.fused`` optimizer.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx, adaptx.fused
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(3)}
      >>> adaptx.fused.from_per_leaf(adaptx.adam(1e-3).init(params)).mu.shape
      (5,)
    """
    found: dict[str, Any] = {}

    def visit(node: Any) -> None:
        fields = _fields(node)
        if {"count", "mu", "nu"} <= set(fields):
            found.setdefault("adam", node)
        elif "trace" in fields:
            found.setdefault("trace", node)
        elif fields == ("count",):
            found.setdefault("count", node.count)
        elif fields:
            for f in fields:
                visit(getattr(node, f))
        elif type(node) in (tuple, list):
            for x in node:
                visit(x)

    visit(state)
    if "adam" in found:
        adam = found["adam"]
        count = jnp.asarray(adam.count, jnp.int32)
        return FusedAdamState(count, _concat(adam.mu), _concat(adam.nu))
    count = jnp.asarray(found.get("count", 0), jnp.int32)
    trace = _concat(found["trace"].trace) if "trace" in found else jnp.zeros((0,), jnp.float32)
    return FusedSgdState(count, trace)
