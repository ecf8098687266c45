"""Scaling updates by a constant, a schedule, or a learning rate."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    Schedule,
    check_stateless,
)
from adaptx._numerics import safe_increment
from adaptx._signature import check_state, check_updates
from adaptx._validate import (
    check_fits_params,
    check_learning_rate,
    check_number,
    check_schedule_start,
)


def _mul(x: jax.Array, s: Any) -> jax.Array:
    if isinstance(s, (int, float)):
        return s * x
    return jnp.asarray(s).astype(x.dtype) * x


def scale(step_size: float | jax.Array) -> GradientTransformation:
    """Multiplies every update by ``step_size``.

    Args:
      step_size: a finite Python number or a scalar array (possibly traced;
        a traced value is not checked). A Python number is weakly typed and
        keeps each leaf's dtype; an array is cast to each leaf's dtype.

    Returns:
      A stateless ``GradientTransformation`` (state ``EmptyState()``; ``update``
      checks the updates' structure, shapes and dtypes against ``params``).

    Raises:
      ValueError: for a NaN or infinite ``step_size``, or a non-scalar array;
        from ``init``, for a ``step_size`` beyond the largest finite number of
        the params' dtype (``1e40`` on float32 params).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale(-0.1)
      >>> tx.update(jnp.array([1.0, 2.0]), tx.init(None))[0]
      Array([-0.1, -0.2], dtype=float32)
    """
    check_number("step_size", step_size)
    return _scale(step_size, "step_size", step_size)


def _scale(factor: Any, name: str, given: Any) -> GradientTransformation:
    """``scale(factor)``; ``init`` checks ``given`` (the user's ``name``) fits the params."""

    def init_fn(params: Any) -> EmptyState:
        check_fits_params(name, given, params)
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless("scale", updates, state, params)
        return jax.tree.map(lambda g: _mul(g, factor), updates), state

    return GradientTransformation(init_fn, update_fn)


class ScaleByScheduleState(NamedTuple):
    """State of ``scale_by_schedule``: the number of updates so far (int32)."""

    count: jax.Array


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """Multiplies the updates by ``step_size_fn(count)``.

    ``count`` is 0 on the first update, 1 on the second, and so on; it
    saturates at the int32 maximum. The schedule's first value is checked at
    construction (a finite scalar) when it can be computed eagerly.

    The state keeps only the count, so ``update`` checks the updates' tree
    against ``params`` when it gets them.

    Args:
      step_size_fn: a schedule, ``count -> scalar``.

    Returns:
      A ``GradientTransformation`` with state ``ScaleByScheduleState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_schedule(adaptx.inverse_sqrt_schedule(1.0))
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.ones(1), state)  # count 0: 1 / sqrt(1)
      >>> u, state = tx.update(jnp.ones(1), state)  # count 1: 1 / sqrt(2)
      >>> u
      Array([0.70710677], dtype=float32)
    """
    if not callable(step_size_fn):
        raise TypeError(f"step_size_fn must be callable (count -> value), got {step_size_fn!r}")
    check_schedule_start("step_size_fn", step_size_fn)
    return _scale_by_schedule(step_size_fn, "step_size_fn", step_size_fn)


def _scale_by_schedule(fn: Schedule, name: str, given: Schedule) -> GradientTransformation:
    """``scale_by_schedule(fn)``; ``init`` checks ``given(0)`` (the user's ``name``) fits."""

    def init_fn(params: Any) -> ScaleByScheduleState:
        check_fits_params(name, given, params)
        return ScaleByScheduleState(count=jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_schedule", state, ScaleByScheduleState)
        check_updates("scale_by_schedule", updates, None, params)
        step = fn(state.count)
        updates = jax.tree.map(lambda g: jnp.asarray(step).astype(g.dtype) * g, updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiplies the updates by the learning rate, negated by default.

    Optimizers produce directions to *add* to the parameters, so a descent
    step multiplies by ``-learning_rate``.

    Args:
      learning_rate: a finite non-negative number, a scalar array, or a
        schedule ``count -> value`` (count 0 on the first update). Checked
        when concrete; a schedule's first value is checked, not its later
        ones; a traced value is not checked.
      flip_sign: multiply by ``-learning_rate`` (the default) rather than ``learning_rate``.

    Raises:
      ValueError: for a negative, NaN or infinite ``learning_rate``; from
        ``init``, for one (a schedule: its value at step 0) beyond the largest
        finite number of the params' dtype (``sgd(1e40)`` on float32 params).

    Returns:
      A ``GradientTransformation``: stateless for a number, with a step count
      for a schedule.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_learning_rate(0.1)
      >>> tx.update(jnp.array([1.0]), tx.init(None))[0]
      Array([-0.1], dtype=float32)
    """
    check_learning_rate("learning_rate", learning_rate)
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        lr_fn = learning_rate
        return _scale_by_schedule(lambda count: sign * lr_fn(count), "learning_rate", lr_fn)
    return _scale(sign * learning_rate, "learning_rate", learning_rate)
