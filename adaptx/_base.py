"""The core contract: gradient transformations and their states.

A gradient transformation is a pair of pure functions. ``init(params)`` builds
the optimizer state; ``update(updates, state, params=None, **extra_args)``
returns ``(new_updates, new_state)``. The names and signatures are optax's, so
adaptx and optax transforms compose with each other in either direction and
plug into consumers such as flax's ``TrainState`` unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

from adaptx._sharding import zeros_like
from adaptx._signature import check_state, check_updates

Params = Any
"""A pytree of arrays: the model's parameters."""
Updates = Any
"""A pytree of arrays with the structure of the parameters."""
OptState = Any
"""A pytree (usually a NamedTuple, or a tuple of them) holding optimizer state."""
Schedule = Callable[[jax.Array], jax.Array]
"""A function from the step count (an int32 scalar, 0 on the first update) to a value."""
ScalarOrSchedule = float | jax.Array | Schedule
"""A hyper-parameter that is either a number or a schedule."""


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(NamedTuple):
    """A pure ``(init, update)`` pair.

    Attributes:
      init: ``init(params) -> state``.
      update: ``update(updates, state, params=None, **extra_args) -> (updates, state)``.
        Extra keyword arguments a transform does not use are accepted and ignored.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale(-0.5)
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> updates["w"]
      Array([-0.5, -0.5], dtype=float32)
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a transform that keeps none: a ``NamedTuple`` with no fields, as optax's.

    It has no leaves and records nothing about the params, so its tree
    structure is the same whatever the params (a placeholder, ``nnx.Param``
    variables, ``ShapeDtypeStruct``s): optax's tree utilities, flax NNX and
    checkpoint libraries see the structure optax's ``EmptyState`` has.
    Stateless transforms check their updates against ``params`` when
    ``update`` receives them.

    Example:
      >>> import jax
      >>> import adaptx
      >>> jax.tree.leaves(adaptx.EmptyState())
      []
    """


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a stateless transform: ``EmptyState()``, whatever the params."""
    del params
    return EmptyState()


def check_stateless(where: str, updates: Updates, state: Any, params: Params | None) -> None:
    """A stateless transform's ``update`` checks: its state, and the updates against params."""
    check_state(where, state, EmptyState)
    check_updates(where, updates, None, params)


def accepts_extra_args(update: Callable[..., Any]) -> bool:
    """Whether ``update`` takes arbitrary keyword arguments (``**extra_args``).

    optax's plain ``GradientTransformation`` updates take exactly
    ``(updates, state, params=None)``; adaptx's and optax's
    ``GradientTransformationExtraArgs`` take ``**extra_args`` too. Combinators
    use this to pass extra arguments only where they are accepted.
    """
    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):  # builtins, C callables: be conservative
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def is_mask_function(mask_or_fn: Any) -> bool:
    """Whether a mask (or labels) argument is a function to call, not a tree to use.

    A callable that is also a pytree of data, such as an equinox ``Module``
    with a ``__call__`` whose fields are the mask's booleans, is a tree: it is
    called only when it has no leaves or one of its leaves is itself callable
    (a plain function is its own single leaf). ``functools.partial`` objects
    are pytrees whose leaves are their arguments; they are always functions.
    """
    if isinstance(mask_or_fn, functools.partial):
        return True
    if not callable(mask_or_fn):
        return False
    leaves = jax.tree.leaves(mask_or_fn)
    return not leaves or any(callable(leaf) for leaf in leaves)


def call_update(
    tx: GradientTransformation,
    updates: Updates,
    state: OptState,
    params: Params | None,
    extra_args: dict[str, Any],
    *,
    takes_extra: bool | None = None,
) -> tuple[Updates, OptState]:
    """Calls ``tx.update``, passing ``extra_args`` only if it accepts them."""
    if takes_extra is None:
        takes_extra = accepts_extra_args(tx.update)
    if takes_extra:
        return tx.update(updates, state, params, **extra_args)
    return tx.update(updates, state, params)


def identity() -> GradientTransformation:
    """The transform that returns its updates unchanged.

    Returns:
      A stateless ``GradientTransformation``; ``update`` checks the updates
      against ``params`` when it gets them.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.identity()
      >>> tx.update(jnp.array([1.0, 2.0]), tx.init(None))[0]
      Array([1., 2.], dtype=float32)
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless("identity", updates, state, params)
        return updates, state

    return GradientTransformation(init_empty_state, update_fn)


def stateless(
    f: Callable[[Updates, Params | None], Updates], *, name: str | None = None
) -> GradientTransformation:
    """Lifts ``f(updates, params) -> updates`` to a transform that keeps no state.

    Args:
      f: a pure function of the whole updates tree and the params (which may be
        ``None`` when the caller does not pass them).
      name: the transform's name in error messages (default ``stateless(f's name)``).

    Returns:
      A ``GradientTransformation`` whose state is ``EmptyState()``: ``update``
      checks that the updates have the structure, shapes and dtypes of
      ``params`` when it gets them (``TreeMismatchError`` if not).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> double = adaptx.stateless(lambda u, p: jax.tree.map(lambda x: 2 * x, u))
      >>> double.update({"w": jnp.ones(2)}, double.init(None))[0]["w"]
      Array([2., 2.], dtype=float32)
    """

    where = name or f"stateless({getattr(f, '__name__', type(f).__name__)})"

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless(where, updates, state, params)
        return f(updates, params), state

    return GradientTransformation(init_empty_state, update_fn)


def set_to_zero() -> GradientTransformation:
    """The transform that replaces every update by zeros of the same shape and dtype.

    Useful inside ``partition`` to freeze a group of parameters. The zeros are
    sharded like the updates, also under ``jit`` with automatic sharding.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.set_to_zero()
      >>> tx.update(jnp.array([1.0, 2.0]), tx.init(None))[0]
      Array([0., 0.], dtype=float32)
    """
    return stateless(lambda updates, params: jax.tree.map(zeros_like, updates), name="set_to_zero")
