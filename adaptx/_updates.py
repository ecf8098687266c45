"""Applying updates to parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptx._base import Params, Updates
from adaptx._signature import TreeMismatchError
from adaptx._validate import check_range


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, leaf by leaf, keeping each parameter's dtype.

    The sum is formed in the wider of the two dtypes and rounded once to the
    parameter's dtype, so float32 updates to bfloat16 parameters are not first
    rounded to bfloat16. ``None`` updates leave the parameter as it is.

    Nothing is silently lost: a tree of another structure, an update whose
    shape differs from its parameter's (which would broadcast, changing the
    parameter's shape or spreading one value over many entries), and a complex
    update to a real parameter (which would drop the imaginary part) raise
    ``TreeMismatchError`` (a ``ValueError``) naming the leaf. Under ``jit``
    the checks run at trace time.

    Args:
      params: a pytree of arrays.
      updates: a pytree with the same structure (leaves may be ``None``).

    Returns:
      The new parameters, each with its original dtype.

    Raises:
      TreeMismatchError: for a structure, shape or real/complex mismatch.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.apply_updates({"w": jnp.ones(2)}, {"w": jnp.array([0.5, -1.0])})["w"]
      Array([1.5, 0. ], dtype=float32)
    """
    try:
        paths_p, treedef = jax.tree_util.tree_flatten_with_path(params)
        flat_u = treedef.flatten_up_to(updates)
    except (ValueError, TypeError) as e:
        raise TreeMismatchError(
            "apply_updates: the updates tree has a different structure from the params.\n"
            f"  params:  {jax.tree.structure(params)}\n"
            f"  updates: {jax.tree.structure(updates, is_leaf=lambda x: x is None)}\n"
            f"({e})"
        ) from None

    def f(path: Any, p: Any, u: Any) -> Any:
        if u is None:
            return p
        p = jnp.asarray(p)
        u = jnp.asarray(u)
        if u.shape != p.shape:
            raise TreeMismatchError(
                f"apply_updates: update {jax.tree_util.keystr(path)} has shape {u.shape} but "
                f"its parameter has shape {p.shape}; adding them would broadcast. Pass "
                "updates with the parameters' shapes."
            )
        if jnp.iscomplexobj(u) and not jnp.iscomplexobj(p):
            raise TreeMismatchError(
                f"apply_updates: update {jax.tree_util.keystr(path)} is {u.dtype} but its "
                f"parameter is real ({p.dtype}); the imaginary part would be dropped."
            )
        with jax.numpy_dtype_promotion("standard"):  # explicit here, whatever the user's mode
            wide = jnp.promote_types(p.dtype, u.dtype)
        return (p.astype(wide) + u.astype(wide)).astype(p.dtype)

    leaves = [f(path, p, u) for (path, p), u in zip(paths_p, flat_u)]
    return jax.tree.unflatten(treedef, leaves)


def incremental_update(new_tensors: Any, old_tensors: Any, step_size: Any) -> Any:
    """Polyak averaging: ``step_size * new + (1 - step_size) * old``, leaf by leaf.

    Args:
      new_tensors: the latest values (e.g. online network parameters).
      old_tensors: the running average (e.g. target network parameters).
      step_size: in [0, 1]; 1 copies ``new_tensors`` (checked when
        concrete; a traced value is not).

    Returns:
      The updated average, with ``old_tensors``' dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.incremental_update(jnp.array([1.0]), jnp.array([0.0]), 0.25)
      Array([0.25], dtype=float32)
    """
    check_range("step_size", step_size, 0.0, 1.0)

    def f(new: Any, old: Any) -> Any:
        old = jnp.asarray(old)
        s = (
            step_size
            if isinstance(step_size, (int, float))
            else jnp.asarray(step_size).astype(old.dtype)
        )
        return (s * jnp.asarray(new).astype(old.dtype) + (1 - s) * old).astype(old.dtype)

    return jax.tree.map(f, new_tensors, old_tensors)
