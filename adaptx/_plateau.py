"""Reduce the learning rate when a monitored value (the loss) stops improving."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import GradientTransformation
from adaptx._numerics import _widen, safe_increment, widest_compute_dtype
from adaptx._signature import check_state, check_updates
from adaptx._validate import check_integer, check_nonnegative, check_range

_NEEDS_VALUE = (
    "reduce_on_plateau needs the monitored value: call "
    "tx.update(updates, state, params, value=loss) (through chain too)"
)


class ReduceLROnPlateauState(NamedTuple):
    """State of ``reduce_on_plateau`` (optax's field names and order).

    Attributes:
      scale: the factor the updates are multiplied by (starts at 1).
      best_value: the best (lowest) window average so far (starts at +inf).
      plateau_count: windows without improvement since the last improvement
        or reduction (int32).
      cooldown_count: windows left before plateaus count again (int32).
      count: values accumulated in the current window (int32).
      avg_value: the running mean of the current window.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradientTransformation:
    r"""Multiplies the updates by a scale that drops by ``factor`` when the loss plateaus.

    ``update(updates, state, params, value=loss)`` takes the monitored value
    as the keyword ``value`` (``chain`` passes it through). Values are
    averaged over windows of ``accumulation_size`` calls; at the end of each
    window, with ``a`` its average and ``best`` the best average so far::

        improved = a < (1 - rtol) * best - atol        (then best = a)
        plateau  = 0 if improved else plateau + 1
        in cooldown (cooldown_count > 0): cooldown_count -= 1, plateau = 0
        otherwise, if plateau == patience:
            scale = max(scale * factor, min_scale); plateau = 0;
            cooldown_count = cooldown

    Place it after the learning rate, or anywhere in a chain of linear
    stages: ``chain(adam(lr), reduce_on_plateau())``. The state is plain
    arrays (floats in float32, or float64 for float64 params), so it
    survives ``save_state`` / ``load_state`` and ``jit``. A NaN value never
    counts as an improvement.

    ==============================================  ====================================
    peer                                            adaptx
    ==============================================  ====================================
    ``optax.contrib.reduce_on_plateau(...)``        same arguments, same numbers and
                                                    state layout
    ``torch.optim.lr_scheduler.ReduceLROnPlateau(   ``reduce_on_plateau(factor=f,
    factor=f, patience=p, threshold=r,              patience=p + 1, rtol=r,
    cooldown=c)`` (mode "min", threshold_mode       cooldown=c)``: torch reduces after
    "rel", called once per window)                  more than ``p`` bad epochs
    ==============================================  ====================================

    Args:
      factor: the reduction factor, in [0, 1].
      patience: windows without improvement before a reduction, an integer ``>= 1``.
      rtol: relative improvement required, in [0, 1).
      atol: absolute improvement required, ``>= 0``.
      cooldown: windows to wait after a reduction before counting plateaus
        again, an integer ``>= 0``.
      accumulation_size: calls averaged into one window, an integer ``>= 1``
        (1 for a validation loss; more for noisy minibatch losses).
      min_scale: the scale never drops below this, in [0, 1].

    Returns:
      A ``GradientTransformation`` with state ``ReduceLROnPlateauState``
      whose ``update`` requires ``value=``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.reduce_on_plateau(factor=0.5, patience=2)
      >>> state = tx.init(jnp.zeros(1))
      >>> for loss in [3.0, 2.0, 2.0, 2.0]:  # two windows without improvement
      ...     u, state = tx.update(jnp.ones(1), state, value=loss)
      >>> u, state.scale
      (Array([0.5], dtype=float32), Array(0.5, dtype=float32))
    """
    check_range("factor", factor, 0.0, 1.0)
    check_integer("patience", patience, 1)
    check_range("rtol", rtol, 0.0, 1.0, high_open=True)
    check_nonnegative("atol", atol)
    check_integer("cooldown", cooldown, 0)
    check_integer("accumulation_size", accumulation_size, 1)
    check_range("min_scale", min_scale, 0.0, 1.0)

    def init_fn(params: Any) -> ReduceLROnPlateauState:
        dt = widest_compute_dtype(params)
        i32 = lambda: jnp.zeros((), jnp.int32)
        return ReduceLROnPlateauState(
            scale=jnp.ones((), dt),
            best_value=jnp.full((), jnp.inf, dt),
            plateau_count=i32(),
            cooldown_count=i32(),
            count=i32(),
            avg_value=jnp.zeros((), dt),
        )

    def end_of_window(s: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        dt = s.best_value.dtype
        a = s.avg_value
        improved = a < (1 - jnp.asarray(rtol, dt)) * s.best_value - jnp.asarray(atol, dt)
        best = jnp.where(improved, a, s.best_value)
        plateau = jnp.where(improved, 0, safe_increment(s.plateau_count))
        cooling = s.cooldown_count > 0
        reduce = jnp.logical_and(~cooling, plateau == patience)
        scale = jnp.where(reduce, s.scale * jnp.asarray(factor, dt), s.scale)
        scale = jnp.where(cooling, s.scale, jnp.maximum(scale, jnp.asarray(min_scale, dt)))
        return ReduceLROnPlateauState(
            scale=scale,
            best_value=best,
            plateau_count=jnp.where(cooling | reduce, 0, plateau).astype(jnp.int32),
            cooldown_count=jnp.where(
                cooling, s.cooldown_count - 1, jnp.where(reduce, cooldown, 0)
            ).astype(jnp.int32),
            count=jnp.zeros((), jnp.int32),
            avg_value=jnp.zeros((), dt),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        if value is None:
            raise TypeError(_NEEDS_VALUE)
        if jnp.ndim(value) != 0:
            raise ValueError(f"value must be a scalar (the loss), got shape {jnp.shape(value)}")
        check_state("reduce_on_plateau", state, ReduceLROnPlateauState)
        check_updates("reduce_on_plateau", updates, None, params)
        dt = state.avg_value.dtype
        count = safe_increment(state.count)
        avg = (state.count.astype(dt) * state.avg_value + jnp.asarray(value).astype(dt)) / (
            count.astype(dt)
        )
        s = state._replace(count=count, avg_value=avg)
        done = end_of_window(s)
        full = count >= accumulation_size
        new_state = jax.tree.map(lambda a, b: jnp.where(full, a, b), done, s)

        def leaf(u):
            wide = _widen(u, dt)
            return (wide * new_state.scale.astype(wide.dtype)).astype(u.dtype)

        return jax.tree.map(leaf, updates), new_state

    return GradientTransformation(init_fn, update_fn)
