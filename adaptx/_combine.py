"""Composition: ``chain`` and ``named_chain``."""

from __future__ import annotations

from typing import Any

from adaptx._base import (
    GradientTransformation,
    Params,
    Updates,
    accepts_extra_args,
    call_update,
)


def _check_transform(tx: Any, where: str) -> None:
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(
            f"{where} must be a GradientTransformation (an object with init and update), "
            f"got {type(tx).__name__}: {tx!r}"
        )


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Applies transforms one after the other.

    The state is a tuple with one entry per transform. Extra keyword arguments
    given to ``update`` reach every transform that accepts them; transforms
    that do not (optax's plain ``GradientTransformation``) are called without.
    So optax transforms can sit inside an adaptx chain and adaptx transforms
    inside ``optax.chain``.

    Args:
      *transforms: ``GradientTransformation``s (adaptx's or optax's).

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.chain(adaptx.scale(2.0), adaptx.scale(-0.25))
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> tx.update({"w": jnp.ones(2)}, state)[0]["w"]
      Array([-0.5, -0.5], dtype=float32)
    """
    for i, tx in enumerate(transforms):
        _check_transform(tx, f"chain argument {i}")
    takes_extra = tuple(accepts_extra_args(tx.update) for tx in transforms)

    def init_fn(params: Params) -> tuple:
        return tuple(tx.init(params) for tx in transforms)

    def update_fn(updates: Updates, state: tuple, params: Params | None = None, **extra_args):
        if not isinstance(state, (tuple, list)) or hasattr(state, "_fields"):
            got = "None" if state is None else type(state).__name__
            raise TypeError(
                f"chain of {len(transforms)} transforms: update expected the tuple of states "
                f"its init returns, got {got}. Pass the state from init "
                "(state = tx.init(params)) of this same optimizer."
            )
        if len(state) != len(transforms):
            raise ValueError(
                f"chain of {len(transforms)} transforms got a state with {len(state)} entries; "
                "was the state made by this chain's init?"
            )
        new_state = []
        for tx, s, te in zip(transforms, state, takes_extra):
            updates, s = call_update(tx, updates, s, params, extra_args, takes_extra=te)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)


def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Like ``chain``, but the state is a dict keyed by the given names.

    Args:
      *transforms: ``(name, transform)`` pairs; names must be unique.

    Returns:
      A ``GradientTransformation`` whose state maps each name to its transform's state.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.named_chain(("clip", adaptx.identity()), ("lr", adaptx.scale(-0.1)))
      >>> sorted(tx.init(jnp.zeros(1)))
      ['clip', 'lr']
    """
    names = [name for name, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain names must be unique, got {names}")
    for name, tx in transforms:
        if not isinstance(name, str):
            raise TypeError(f"named_chain names must be strings, got {name!r}")
        _check_transform(tx, f"named_chain entry {name!r}")
    takes_extra = {name: accepts_extra_args(tx.update) for name, tx in transforms}

    def init_fn(params: Params) -> dict:
        return {name: tx.init(params) for name, tx in transforms}

    def update_fn(updates: Updates, state: dict, params: Params | None = None, **extra_args):
        if not isinstance(state, dict) or set(state) != set(names):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise TypeError(
                f"named_chain {names}: update expected the dict of states its init returns, "
                f"got {got}. Pass the state from init (state = tx.init(params)) of this same "
                "optimizer."
            )
        new_state = {}
        for name, tx in transforms:
            updates, new_state[name] = call_update(
                tx, updates, state[name], params, extra_args, takes_extra=takes_extra[name]
            )
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)
