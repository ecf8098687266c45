"""Weight decay: adding ``weight_decay * params`` to the updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptx._base import (
    EmptyState,
    GradientTransformation,
    Params,
    check_stateless,
    is_mask_function,
)
from adaptx._numerics import _wide, compute_dtype, hyperparam
from adaptx._validate import check_fits_params, check_nonnegative

_NEEDS_PARAMS = (
    "add_decayed_weights needs the parameters: call tx.update(updates, state, params) "
    "(with params), not tx.update(updates, state)"
)


def _mask_leaf(keep: Any) -> bool:
    if isinstance(keep, jax.core.Tracer):
        raise TypeError(
            "add_decayed_weights mask leaves must be Python booleans (the mask is static "
            "structure), got a traced value; build the mask outside jit"
        )
    return bool(keep)


def add_decayed_weights(
    weight_decay: float | jax.Array = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    """Adds ``weight_decay * params`` to the updates.

    ``u <- u + weight_decay * params``, leaf by leaf. Placed before the
    learning rate in a chain (``scale_by_adam``, ``add_decayed_weights``,
    ``scale_by_learning_rate``) this is decoupled weight decay as in AdamW;
    placed before an adaptive transform it is an L2 penalty added to the
    gradient (torch's ``weight_decay`` on ``Adam``, ``SGD``, ...). The sum is
    formed in float32 (or the leaf's dtype when wider) and cast back to the
    update's dtype. Complex parameters are supported.

    Args:
      weight_decay: the decay rate, a non-negative number or a scalar array
        (validated when concrete; a traced value is not checked).
      mask: which parameters to decay. ``None`` decays all of them. Otherwise
        a pytree of booleans with the structure of the parameters (or a
        prefix of it: a boolean then covers a whole subtree), or a callable
        ``params -> such a pytree``. Leaves marked ``False`` pass through
        untouched. The booleans must be Python (or NumPy) booleans, not traced
        arrays.

    Returns:
      A stateless ``GradientTransformation`` whose ``update`` requires
      ``params`` (``ValueError`` if it is ``None``), unless ``weight_decay``
      is the number 0, when it passes the updates through.

    Raises:
      ValueError: for a negative or NaN ``weight_decay``, and from ``update``
        when ``params`` is ``None``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([4.0])}
      >>> tx = adaptx.add_decayed_weights(0.5, mask=lambda p: {"w": True, "b": False})
      >>> updates, _ = tx.update({"w": jnp.zeros(2), "b": jnp.ones(1)}, tx.init(params), params)
      >>> updates["w"], updates["b"]
      (Array([ 0.5, -1. ], dtype=float32), Array([1.], dtype=float32))

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      https://arxiv.org/abs/1711.05101
    """
    check_nonnegative("weight_decay", weight_decay)

    def decay(u: jax.Array, p: jax.Array) -> jax.Array:
        u = jnp.asarray(u)
        wide = _wide(u.dtype)
        wd = hyperparam(weight_decay, compute_dtype(u.dtype)).astype(wide)
        return (u.astype(wide) + wd * jnp.asarray(p).astype(wide)).astype(u.dtype)

    off = isinstance(weight_decay, (int, float)) and weight_decay == 0

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if off and params is None:
            check_stateless("add_decayed_weights", updates, state, None)
            return updates, state
        if params is None:
            raise ValueError(_NEEDS_PARAMS)
        check_stateless("add_decayed_weights", updates, state, params)
        if mask is None:
            return jax.tree.map(decay, updates, params), state
        keep = mask(params) if is_mask_function(mask) else mask

        def maybe(k: Any, u: Any, p: Any) -> Any:
            return jax.tree.map(decay, u, p) if _mask_leaf(k) else u

        return jax.tree.map(maybe, keep, updates, params), state

    def init_fn(params: Params) -> EmptyState:
        check_fits_params("weight_decay", weight_decay, params)
        return EmptyState()

    return GradientTransformation(init_fn, update_fn)
