"""Gradient accumulation over several mini-steps: ``MultiSteps``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    accepts_extra_args,
    call_update,
)
from adaptx._combine import _check_transform
from adaptx._numerics import _wide, safe_increment
from adaptx._sharding import zeros_like
from adaptx._signature import check_like, check_state


class MultiStepsState(NamedTuple):
    """State of ``MultiSteps`` (optax's field names).

    Attributes:
      mini_step: int32, mini-steps accumulated since the last inner step.
      gradient_step: int32, inner steps taken so far.
      inner_opt_state: the inner transform's state.
      acc_grads: the running *sum* of the mini-step gradients, in the
        accumulator dtype.
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: OptState
    acc_grads: Updates


def _acc_dtype(dtype: Any, accumulator_dtype: Any) -> Any:
    if accumulator_dtype is None:
        return _wide(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        wide = jnp.dtype(accumulator_dtype).itemsize > 4
        return jnp.dtype(jnp.complex128 if wide else jnp.complex64)
    return jnp.dtype(accumulator_dtype)


class MultiSteps(GradientTransformation):
    """Gradient accumulation: one inner step every ``every_k_schedule`` mini-steps.

    Each call adds the incoming gradient to an accumulator and returns zero
    updates, except every k-th call, which passes the mean (or the sum) of
    the k accumulated gradients to the inner transform and returns its
    updates. The inner transform only runs on those calls (``lax.cond``), and
    its state changes only then. With equal-sized mini-batches and a loss
    that averages over the batch, the mean of k mini-batch gradients is the
    gradient of the k-times larger batch, so ``MultiSteps(opt, k)`` over k
    mini-batches takes the same step as ``opt`` over their union (up to
    float rounding in summation order).

    The sum is accumulated in ``accumulator_dtype`` (by default float32 or
    the gradient's own dtype if wider; bfloat16 gradients are summed in
    float32) and divided by k once, in that dtype, before being cast back to
    the gradient's dtype.

    It is a ``GradientTransformation`` (use ``init`` and ``update``, or put it
    in ``chain``), with optax's ``has_updated`` and ``gradient_transformation``
    methods for code written against ``optax.MultiSteps``.

    Args:
      opt: the inner transform (usually a whole optimizer).
      every_k_schedule: k, an integer >= 1, or a schedule
        ``gradient_step -> k`` (int32) to change the effective batch size
        during training.
      use_grad_mean: pass the mean of the accumulated gradients (default) or,
        if ``False``, their sum.
      accumulator_dtype: dtype of the accumulator for real leaves (complex
        leaves use the complex dtype of the same precision); ``None`` for
        float32 or the leaf's dtype when wider.

    Returns:
      A ``GradientTransformation`` with state ``MultiStepsState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.MultiSteps(adaptx.scale(-1.0), every_k_schedule=2)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([1.0]), state)  # mini-step: zeros
      >>> u, bool(tx.has_updated(state))
      (Array([0.], dtype=float32), False)
      >>> u, state = tx.update(jnp.array([2.0]), state)  # inner step on the mean
      >>> u, bool(tx.has_updated(state))
      (Array([-1.5], dtype=float32), True)
    """

    __slots__ = ()

    def __new__(
        cls,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[jax.Array], Any],
        use_grad_mean: bool = True,
        *,
        accumulator_dtype: Any = None,
    ) -> MultiSteps:
        _check_transform(opt, "MultiSteps' opt")
        if callable(every_k_schedule):
            k_fn = every_k_schedule
        elif (
            isinstance(every_k_schedule, int)
            and not isinstance(every_k_schedule, bool)
            and every_k_schedule >= 1
        ):
            k_fn = lambda step: every_k_schedule
        else:
            raise ValueError(
                f"every_k_schedule must be an integer >= 1 or a schedule, got {every_k_schedule!r}"
            )
        takes_extra = accepts_extra_args(opt.update)

        def init_fn(params: Params) -> MultiStepsState:
            return MultiStepsState(
                mini_step=jnp.zeros((), jnp.int32),
                gradient_step=jnp.zeros((), jnp.int32),
                inner_opt_state=opt.init(params),
                acc_grads=jax.tree.map(
                    lambda p: zeros_like(p, _acc_dtype(jnp.result_type(p), accumulator_dtype)),
                    params,
                ),
            )

        def update_fn(updates, state: MultiStepsState, params=None, **extra_args):
            check_state("MultiSteps", state, MultiStepsState)
            check_like("MultiSteps", updates, state.acc_grads, "kind", params)
            k = jnp.asarray(k_fn(state.gradient_step)).astype(jnp.int32)
            acc = jax.tree.map(lambda a, g: a + g.astype(a.dtype), state.acc_grads, updates)
            emit = state.mini_step + 1 >= k

            def inner_step():
                def reduce(a, g):
                    if use_grad_mean:
                        a = a / k.astype(a.dtype)
                    return a.astype(jnp.result_type(g))

                grads = jax.tree.map(reduce, acc, updates)
                return call_update(
                    opt, grads, state.inner_opt_state, params, extra_args, takes_extra=takes_extra
                )

            def mini_step():
                shapes, _ = jax.eval_shape(inner_step)
                zeros = jax.tree.map(zeros_like, shapes)  # sharded like the inner step's
                return zeros, state.inner_opt_state

            new_updates, inner_state = jax.lax.cond(emit, inner_step, mini_step)
            return new_updates, MultiStepsState(
                mini_step=jnp.where(emit, jnp.zeros((), jnp.int32), state.mini_step + 1),
                gradient_step=jnp.where(
                    emit, safe_increment(state.gradient_step), state.gradient_step
                ),
                inner_opt_state=inner_state,
                acc_grads=jax.tree.map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc),
            )

        return super().__new__(cls, init_fn, update_fn)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """Whether the last ``update`` took an inner step (optax's method)."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """A plain ``GradientTransformation`` with the same ``init`` and ``update``."""
        return GradientTransformation(self.init, self.update)
