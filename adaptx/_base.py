"""The core contract: gradient transformations and their states.

A gradient transformation is a pair of pure functions. ``init(params)`` builds
the optimizer state; ``update(updates, state, params=None, **extra_args)``
returns ``(new_updates, new_state)``. The names and signatures are optax's, so
adaptx and optax transforms compose with each other in either direction and
plug into consumers such as flax's ``TrainState`` unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

from adaptx._sharding import zeros_like
from adaptx._signature import TreeSignature, check_updates, signature_of

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


class _NoFields(NamedTuple):
    pass


class EmptyState(_NoFields):
    """The state of a transform that keeps none.

    A ``NamedTuple`` with no fields and no leaves, as optax's. It may carry
    the ``TreeSignature`` of the params it was initialised with
    (``EmptyState.of(params)``), which ``update`` checks the updates against.
    The signature is a static part of the tree structure: it has no leaves,
    is not a field (``EmptyState() == EmptyState.of(params)``) and survives
    ``jit``, ``pickle`` and ``jax.tree.map``. ``EmptyState()`` (and
    ``EmptyState.of(None)``) carries none and checks nothing.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> state = adaptx.EmptyState.of({"w": jnp.zeros(3)})
      >>> jax.tree.leaves(state), state == adaptx.EmptyState()
      ([], True)
      >>> state.signature.describe()
      ["['w']: (3,) float32"]
    """

    @classmethod
    def of(cls, params: Params) -> EmptyState:
        """An ``EmptyState`` recording the signature of ``params`` (none for ``None``)."""
        return cls._with(signature_of(params))

    @classmethod
    def _with(cls, signature: TreeSignature | None) -> EmptyState:
        state = cls()
        if signature is not None:
            state.__dict__["signature"] = signature
        return state

    @property
    def signature(self) -> TreeSignature | None:
        """The ``TreeSignature`` recorded by ``init``, or ``None``."""
        return self.__dict__.get("signature")


jax.tree_util.register_pytree_with_keys(
    EmptyState,
    lambda s: ((), s.signature),
    lambda signature, _: EmptyState._with(signature),
    lambda s: ((), s.signature),
)


def check_empty_state(where: str, updates: Updates, state: Any, params: Params | None) -> None:
    """``check_updates`` for a stateless transform: against the state's signature and params."""
    check_updates(where, updates, getattr(state, "signature", None), params)


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
      against the params ``init`` saw (see ``EmptyState``).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.identity()
      >>> tx.update(jnp.array([1.0, 2.0]), tx.init(None))[0]
      Array([1., 2.], dtype=float32)
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_empty_state("identity", updates, state, params)
        return updates, state

    return GradientTransformation(EmptyState.of, update_fn)


def stateless(
    f: Callable[[Updates, Params | None], Updates], *, name: str | None = None
) -> GradientTransformation:
    """Lifts ``f(updates, params) -> updates`` to a transform that keeps no state.

    Args:
      f: a pure function of the whole updates tree and the params (which may be
        ``None`` when the caller does not pass them).
      name: the transform's name in error messages (default ``stateless(f's name)``).

    Returns:
      A ``GradientTransformation`` whose state is ``EmptyState.of(params)``:
      ``update`` checks that the updates (and ``params``, when given) have the
      structure, shapes and dtypes ``init`` saw (``TreeMismatchError`` if not).

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
        check_empty_state(where, updates, state, params)
        return f(updates, params), state

    return GradientTransformation(EmptyState.of, update_fn)


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
