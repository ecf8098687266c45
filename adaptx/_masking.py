"""Masks and parameter groups: ``masked``, ``partition`` and ``freeze``.

A mask is a pytree of Python booleans with the structure of the parameters,
or a prefix of it (a boolean at an inner node applies to its whole subtree),
or a callable that returns such a tree. Masks are static: they decide which
leaves an inner transform sees, so they are resolved while tracing, never from
array values.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from adaptx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    accepts_extra_args,
    call_update,
    is_mask_function,
    set_to_zero,
)
from adaptx._combine import _check_transform
from adaptx._signature import check_state, check_updates

MaskOrFn = Any
"""A pytree of booleans (the params' structure or a prefix of it), or a callable returning one."""


class MaskedNode(NamedTuple):
    """Stands in for a masked-out leaf in the tree an inner transform sees.

    It has no children, so ``jax.tree.map`` skips it and the inner transform
    keeps no state for that leaf.
    """


class MaskedState(NamedTuple):
    """State of ``masked``: the inner transform's state over the masked-in leaves only."""

    inner_state: OptState


class PartitionState(NamedTuple):
    """State of ``partition``: one ``MaskedState`` per label, keyed by label."""

    inner_states: dict[Hashable, OptState]


def _static_bool(x: Any) -> bool | None:
    """``x`` as a Python bool if it is a concrete boolean, else ``None``."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer):
        if np.ndim(x) == 0 and np.asarray(x).dtype == np.bool_:
            return bool(x)
    return None


def _resolve(mask_or_fn: Any, tree: Any) -> Any:
    """Calls ``mask_or_fn`` on ``tree`` if it is a function; returns the resulting tree."""
    return mask_or_fn(tree) if is_mask_function(mask_or_fn) else mask_or_fn


def has_no_leaves(params: Params) -> bool:
    """Whether ``params`` is a tree without leaves, like optax's params placeholder.

    optax's ``tree.map_params`` calls ``init`` on an empty placeholder pytree
    to find where the state holds params-shaped trees. A mask for real
    params cannot describe it, so ``init`` passes such a tree to the inner
    transform unmasked (there is nothing to mask).
    """
    return not jax.tree.leaves(params)


def resolve_mask(mask: MaskOrFn, tree: Any) -> Any:
    """The mask for ``tree`` as a pytree of Python bools, validated.

    Raises:
      TypeError: a mask leaf is not a concrete boolean (e.g. a traced array).
    """
    m = _resolve(mask, tree)
    out = []
    for leaf in jax.tree.leaves(m):
        b = _static_bool(leaf)
        if b is None:
            raise TypeError(
                "mask leaves must be Python booleans (or concrete boolean scalars), got "
                f"{leaf!r}. A mask decides statically which leaves the inner transform "
                "sees; it cannot depend on traced values."
            )
        out.append(b)
    return jax.tree.unflatten(jax.tree.structure(m), out)


def _prefix_map(f: Callable[..., Any], mask: Any, *trees: Any, what: str = "mask") -> Any:
    try:
        return jax.tree.map(f, mask, *trees)
    except ValueError as e:
        raise ValueError(
            f"{what} must have the structure of the params, or be a prefix of it "
            f"(mask: {jax.tree.structure(mask)}, tree: {jax.tree.structure(trees[0])}): {e}"
        ) from e


def mask_tree(tree: Any, mask: Any) -> Any:
    """Replaces the masked-out subtrees of ``tree`` by ``MaskedNode()``."""
    return _prefix_map(lambda m, x: x if m else MaskedNode(), mask, tree)


def masked(inner: GradientTransformation, mask: MaskOrFn) -> GradientTransformation:
    """Applies ``inner`` to the masked-in leaves; the others pass through untouched.

    The inner transform sees a tree in which masked-out leaves are replaced by
    ``MaskedNode()``, so it keeps no state for them. Masked-out updates are
    returned exactly as they came in (the same arrays).

    Args:
      inner: the transform to apply where the mask is ``True``.
      mask: a pytree of booleans with the structure of the params, or a prefix
        of it (``True`` applies ``inner`` to a whole subtree), or a callable
        returning one. The callable is called with the params in ``init``, and
        in ``update`` with the params when they are passed, else with the
        updates; it must depend only on the tree's structure and shapes.

    Returns:
      A ``GradientTransformation`` with state ``MaskedState``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> not_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
      >>> tx = adaptx.masked(adaptx.scale(0.5), not_bias)
      >>> updates, _ = tx.update(params, tx.init(params), params)
      >>> updates["w"][0], updates["b"]
      (Array([0.5, 0.5], dtype=float32), Array([1., 1.], dtype=float32))
    """
    _check_transform(inner, "masked's inner")
    takes_extra = accepts_extra_args(inner.update)

    def init_fn(params: Params) -> MaskedState:
        if has_no_leaves(params):
            return MaskedState(inner_state=inner.init(params))
        m = resolve_mask(mask, params)
        return MaskedState(inner_state=inner.init(mask_tree(params, m)))

    def update_fn(updates: Updates, state: MaskedState, params: Params | None = None, **extra_args):
        check_state("masked", state, MaskedState)
        check_updates("masked", updates, None, params)
        m = resolve_mask(mask, updates if params is None else params)
        inner_params = None if params is None else mask_tree(params, m)
        inner_updates = mask_tree(updates, m)
        new, inner_state = call_update(
            inner,
            inner_updates,
            state.inner_state,
            inner_params,
            extra_args,
            takes_extra=takes_extra,
        )
        updates = _prefix_map(lambda b, n, u: n if b else u, m, new, updates)
        return updates, MaskedState(inner_state=inner_state)

    return GradientTransformation(init_fn, update_fn)


def partition(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Any,
) -> GradientTransformation:
    """Parameter groups: a different transform for each labelled group of leaves.

    optax calls this ``partition`` (formerly ``multi_transform``); torch.optim
    calls the groups ``param_groups``. Each transform sees only its own leaves
    (the others are ``MaskedNode()`` to it) and keeps state only for them, so
    the groups can have different optimizers, learning rates and schedules.

    Args:
      transforms: a mapping from label to transform.
      param_labels: a pytree of labels with the structure of the params (or a
        prefix of it), or a callable returning one; called like ``masked``'s
        mask. Every label must be a key of ``transforms``.

    Returns:
      A ``GradientTransformation`` with state ``PartitionState``. Run-time
      hyper-parameters of one group are reached through
      ``state.inner_states[label]``.

    Raises:
      ValueError: a leaf's label has no transform.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
      >>> tx = adaptx.partition(
      ...     {"weights": adaptx.scale(-0.1), "biases": adaptx.scale(-0.01)},
      ...     {"w": "weights", "b": "biases"},
      ... )
      >>> updates, _ = tx.update(params, tx.init(params), params)
      >>> updates["w"], updates["b"]
      (Array([-0.1, -0.1], dtype=float32), Array([-0.01, -0.01], dtype=float32))
    """
    transforms = dict(transforms)
    if not transforms:
        raise ValueError("partition needs at least one transform, got an empty mapping")
    for label, tx in transforms.items():
        _check_transform(tx, f"partition transform {label!r}")

    def labels_for(tree: Any) -> Any:
        labels = _resolve(param_labels, tree)
        unknown = {label for label in jax.tree.leaves(labels) if label not in transforms}
        if unknown:
            raise ValueError(
                f"partition: labels [{', '.join(sorted(map(repr, unknown)))}] have no "
                f"transform; transforms are given for [{', '.join(sorted(map(repr, transforms)))}]"
            )
        return labels

    def group(labels: Any, label: Hashable) -> GradientTransformation:
        mask = jax.tree.map(lambda x: x == label, labels)
        return masked(transforms[label], mask)

    def init_fn(params: Params) -> PartitionState:
        if has_no_leaves(params):
            return PartitionState({k: MaskedState(tx.init(params)) for k, tx in transforms.items()})
        labels = labels_for(params)
        return PartitionState({k: group(labels, k).init(params) for k in transforms})

    def update_fn(updates, state: PartitionState, params=None, **extra_args):
        check_state("partition", state, PartitionState)
        check_updates("partition", updates, None, params)
        labels = labels_for(updates if params is None else params)
        inner_states = {}
        for k in transforms:
            updates, inner_states[k] = group(labels, k).update(
                updates, state.inner_states[k], params, **extra_args
            )
        return updates, PartitionState(inner_states)

    return GradientTransformation(init_fn, update_fn)


def freeze(mask: MaskOrFn) -> GradientTransformation:
    """Sets the updates of the masked-in (frozen) leaves to zero.

    ``freeze(mask)`` is ``masked(set_to_zero(), mask)``. It zeroes what reaches
    it; placed after a stateful optimizer in a ``chain``, that optimizer still
    keeps (and updates) state for the frozen leaves. To keep no state at all
    for them, give them a label of their own in ``partition`` with
    ``set_to_zero()``.

    Args:
      mask: ``True`` for the leaves to freeze; a pytree of booleans (or a
        prefix, or a single bool), or a callable returning one.

    Returns:
      A ``GradientTransformation`` with state ``MaskedState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"embed": jnp.ones(2), "head": jnp.ones(2)}
      >>> tx = adaptx.chain(adaptx.scale(-0.1), adaptx.freeze({"embed": True, "head": False}))
      >>> updates, _ = tx.update(params, tx.init(params), params)
      >>> updates["embed"], updates["head"]
      (Array([0., 0.], dtype=float32), Array([-0.1, -0.1], dtype=float32))
    """
    return masked(set_to_zero(), mask)
