"""Guards against non-finite updates: ``apply_if_finite`` and ``zero_nans``.

Every other transform lets a non-finite gradient through: a NaN or an Inf in a
gradient element gives a non-finite update of that element (and, through the
moments, of its later updates), as in optax and torch, so a bad step shows in
the parameters and the loss. These two are the ways to act on it instead:
``apply_if_finite`` skips the whole step, ``zero_nans`` zeroes the bad
elements.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import GradientTransformation, OptState, Params, accepts_extra_args, call_update
from adaptx._combine import _check_transform
from adaptx._numerics import safe_increment
from adaptx._signature import check_state, check_structure, check_updates


class ApplyIfFiniteState(NamedTuple):
    """State of ``apply_if_finite``.

    Attributes:
      notfinite_count: int32, consecutive non-finite steps so far; 0 after a
        finite step and after the limit is reached.
      last_finite: bool, whether the last step was finite.
      total_notfinite: int32, all non-finite steps since ``init`` (never reset).
      inner_state: the inner transform's state.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: OptState


def _all_finite(tree: Any) -> jax.Array:
    ok = jnp.asarray(True)
    for x in jax.tree.leaves(tree):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            ok = jnp.logical_and(ok, jnp.all(jnp.isfinite(x)))
    return ok


def apply_if_finite(
    inner: GradientTransformation,
    max_consecutive_errors: int | None,
    *,
    on_limit: Literal["apply", "reset"] = "apply",
) -> GradientTransformation:
    """Skips steps whose updates contain a NaN or an Inf.

    Without it (or ``zero_nans``) a non-finite gradient is not hidden: every
    transform turns it into a non-finite update, as optax and torch do. Wrap
    the optimizer in ``apply_if_finite`` to skip such steps instead.

    A step is *non-finite* when the incoming updates or the inner transform's
    outputs hold a NaN or an Inf anywhere. Such a step is skipped: the inner
    state is returned exactly as it was and the returned updates are zeros
    (negative zeros, so ``apply_updates`` leaves every parameter bit for bit
    as it was, signed zeros included). The inner state is not itself
    inspected.

    What happens at the limit: after ``max_consecutive_errors`` skipped steps
    in a row, the next consecutive non-finite step triggers ``on_limit`` and
    the consecutive counter restarts at 0 (so the next
    ``max_consecutive_errors`` non-finite steps are skipped again):

    - ``"apply"``: that step is taken as computed, non-finite values included,
      so a run that has really diverged shows it in its parameters and loss
      instead of silently standing still (optax's choice, except that optax
      never restarts its counter and so applies every later non-finite step
      until a finite one comes).
    - ``"reset"``: that step is skipped too, and the inner state is
      re-initialised with ``inner.init(params)`` (or from the updates when
      ``params`` is not passed): useful when the optimizer's own state is what
      produces non-finite updates from finite gradients.

    With ``max_consecutive_errors=None`` non-finite steps are always skipped.

    Args:
      inner: the transform to guard.
      max_consecutive_errors: how many consecutive non-finite steps to skip
        before ``on_limit``; an integer ``>= 0``, or ``None`` for no limit.
      on_limit: ``"apply"`` or ``"reset"``, see above.

    Returns:
      A ``GradientTransformation`` with state ``ApplyIfFiniteState``; its
      counters say how many steps were skipped.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.apply_if_finite(adaptx.scale(-0.1), max_consecutive_errors=3)
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([1.0, jnp.nan]), state)
      >>> updates, int(state.total_notfinite)
      (Array([-0., -0.], dtype=float32), 1)
    """
    _check_transform(inner, "apply_if_finite's inner")
    if max_consecutive_errors is not None and (
        not isinstance(max_consecutive_errors, int)
        or isinstance(max_consecutive_errors, bool)
        or max_consecutive_errors < 0
    ):
        raise ValueError(
            "max_consecutive_errors must be an integer >= 0 or None, "
            f"got {max_consecutive_errors!r}"
        )
    if on_limit not in ("apply", "reset"):
        raise ValueError(f"on_limit must be 'apply' or 'reset', got {on_limit!r}")
    takes_extra = accepts_extra_args(inner.update)

    def init_fn(params: Params) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros((), jnp.int32),
            last_finite=jnp.asarray(True),
            total_notfinite=jnp.zeros((), jnp.int32),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state: ApplyIfFiniteState, params=None, **extra_args):
        check_state("apply_if_finite", state, ApplyIfFiniteState)
        check_updates("apply_if_finite", updates, None, params)
        new_updates, new_inner = call_update(
            inner, updates, state.inner_state, params, extra_args, takes_extra=takes_extra
        )
        finite = jnp.logical_and(_all_finite(updates), _all_finite(new_updates))
        count = jnp.where(finite, jnp.zeros((), jnp.int32), safe_increment(state.notfinite_count))
        if max_consecutive_errors is None:
            at_limit = jnp.asarray(False)
        else:
            at_limit = count > max_consecutive_errors
        take = finite
        kept_inner = state.inner_state
        if on_limit == "apply":
            take = jnp.logical_or(finite, at_limit)
        else:
            fresh = inner.init(updates if params is None else params)
            kept_inner = jax.tree.map(lambda f, s: jnp.where(at_limit, f, s), fresh, kept_inner)
        out = jax.tree.map(lambda u: jnp.where(take, u, -jnp.zeros_like(u)), new_updates)
        inner_state = jax.tree.map(lambda n, s: jnp.where(take, n, s), new_inner, kept_inner)
        return out, ApplyIfFiniteState(
            notfinite_count=jnp.where(at_limit, jnp.zeros((), jnp.int32), count),
            last_finite=finite,
            total_notfinite=jnp.where(
                finite, state.total_notfinite, safe_increment(state.total_notfinite)
            ),
            inner_state=inner_state,
        )

    return GradientTransformation(init_fn, update_fn)


class ZeroNansState(NamedTuple):
    """State of ``zero_nans``: per leaf, whether the last update had an element it zeroed.

    One field, optax's layout.

    Attributes:
      found_nan: a tree of bool scalars with the updates' structure: a NaN, or
        with ``include_inf`` (the default) a NaN or an Inf, was zeroed.
    """

    found_nan: Any


def zero_nans(*, include_inf: bool = True) -> GradientTransformation:
    """Replaces NaN (and, by default, +-Inf) update elements by zero.

    Without it (or ``apply_if_finite``) a non-finite gradient is not hidden:
    every transform turns it into a non-finite update, as optax and torch do.
    Put ``zero_nans()`` first in a ``chain`` to clean the gradients before the
    optimizer's moments see them (a NaN that reached a moment stays there).

    The state records, per leaf, whether the last update held an element it
    zeroed (``found_nan``: a NaN, or an Inf with ``include_inf``), so a
    training loop can log it; it is not used otherwise. optax's
    ``zero_nans`` leaves Inf in place (``include_inf=False`` does the same):
    an Inf that reaches the parameters makes them Inf, and NaN at the next
    step, so zeroing only NaN rarely helps.

    Args:
      include_inf: also zero ``+inf`` and ``-inf`` elements.

    Returns:
      A ``GradientTransformation`` with state ``ZeroNansState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.zero_nans()
      >>> u, state = tx.update(jnp.array([1.0, jnp.nan, -jnp.inf]), tx.init(jnp.zeros(3)))
      >>> u, bool(state.found_nan)
      (Array([1., 0., 0.], dtype=float32), True)
    """

    def init_fn(params: Params) -> ZeroNansState:
        return ZeroNansState(found_nan=jax.tree.map(lambda x: jnp.asarray(False), params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("zero_nans", state, ZeroNansState)
        check_structure("zero_nans", updates, state.found_nan, params)
        is_bad = (lambda u: ~jnp.isfinite(u)) if include_inf else jnp.isnan
        found = jax.tree.map(lambda u: jnp.any(is_bad(u)), updates)
        updates = jax.tree.map(lambda u: jnp.where(is_bad(u), jnp.zeros_like(u), u), updates)
        return updates, ZeroNansState(found_nan=found)

    return GradientTransformation(init_fn, update_fn)
