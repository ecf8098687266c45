"""Flat optimizer state: one vector per per-parameter buffer, for every leaf at once.

The fused optimizers (``adam``, ``adamw``, ``sgd`` with momentum on CPU, see
``_fuse.py``) keep their chain's state with every per-parameter buffer
(Adam's ``mu`` and ``nu``, a momentum ``trace``) stored as one flat float32
vector instead of one array per leaf. This module holds those state types
and the conversions to and from the per-leaf layout:

- ``FusedState``: the chain's state tuple, marking a fused state;
- ``FlatBuffer``: a flat vector that still reads like the params
  (``state[0].mu["w"]``);
- ``fused_state_to_tree`` / ``tree_to_fused_state``: to and from the
  per-leaf chain's state (the layout optax uses), e.g. for checkpoints.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._base import EmptyState, OptState, Params
from adaptx._signature import TreeSignature

_F32 = jnp.dtype(jnp.float32)


class FusedState(tuple):
    """State of a fused optimizer: its per-leaf chain's state, over flat buffers.

    A tuple with the entries of the chain's state (``state[0]`` is
    ``scale_by_adam``'s ``ScaleByAdamState`` for ``adam``, ``trace``'s
    ``TraceState`` for ``sgd``, ...), except that every per-parameter buffer
    (Adam's ``mu`` and ``nu``, a momentum ``trace``) is one 1-D float32 array
    holding all the parameters' entries end to end, in
    ``jax.tree.leaves(params)`` order. So ``state[0].mu`` reads as before, as
    a flat vector; ``fused_state_to_tree`` gives the per-leaf chain's state.

    A pytree node whose children are the tuple's entries (key paths
    ``[0]``, ``[1]``, ... as for the chain's tuple).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> state = adaptx.adam(1e-3).init({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})
      >>> type(state).__name__, type(state[0]).__name__, state[0].mu.flat.shape
      ('FusedState', 'ScaleByAdamState', (6,))
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"FusedState{tuple.__repr__(self)}"


jax.tree_util.register_pytree_with_keys(
    FusedState,
    lambda s: (tuple((jax.tree_util.SequenceKey(i), x) for i, x in enumerate(s)), None),
    lambda _, children: FusedState(children),
    lambda s: (tuple(s), None),
)


class Layout:
    """The params' tree structure and leaf shapes; hashed once (it is pytree aux data)."""

    __slots__ = ("_hash", "_signature", "shapes", "treedef")

    def __init__(self, treedef: Any, shapes: tuple) -> None:
        self.treedef, self.shapes = treedef, shapes
        self._hash = hash((treedef, shapes))
        self._signature: TreeSignature | None = None

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        # Short and deterministic: it appears in the state's tree structure (checkpoints).
        digest = hashlib.sha1(repr((str(self.treedef), self.shapes)).encode()).hexdigest()[:12]
        return f"Layout({len(self.shapes)} leaves, {digest})"

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, Layout)
            and self._hash == other._hash
            and self.treedef == other.treedef
            and self.shapes == other.shapes
        )

    @classmethod
    def of(cls, tree: Any) -> Layout:
        leaves, treedef = jax.tree.flatten(tree)
        return cls(treedef, tuple(tuple(jnp.shape(x)) for x in leaves))

    def like(self) -> Any:
        """The params as ``jax.ShapeDtypeStruct``s (float32)."""
        return jax.tree.unflatten(
            self.treedef, [jax.ShapeDtypeStruct(s, jnp.float32) for s in self.shapes]
        )

    def signature(self) -> TreeSignature:
        """The params' ``TreeSignature``: what a fused update checks the updates against.

        Built once per layout (every ``update`` checks against it).
        """
        if self._signature is None:
            self._signature = TreeSignature.of(self.like())
        return self._signature

    def flat_signature(self) -> TreeSignature:
        """The signature of the flat vector the chain's stateless stages were built for."""
        total = sum(int(np.prod(s)) for s in self.shapes)
        return TreeSignature.of(jax.ShapeDtypeStruct((total,), jnp.float32))


class FlatBuffer:
    """A per-parameter buffer of a fused optimizer: one flat vector for all the leaves.

    ``flat`` is a 1-D float32 array holding the buffer's entries for every
    parameter leaf end to end (in ``jax.tree.leaves(params)`` order). Index it
    like the params to read one leaf's entries (``state[0].mu["w"]`` or
    ``state[0].mu["layer"]["w"]``, a reshaped copy), or call ``tree()`` for
    the whole params-like tree; when the params are a single array, index
    the buffer as that array. ``np.asarray(buffer)`` gives the values (the
    single array's shape, else flat). A pytree node with the single child
    ``flat``.

    Attributes:
      flat: the 1-D array.
      layout: the params' tree structure and leaf shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> tx = adaptx.adam(0.1)
      >>> _, state = tx.update(params, tx.init(params), params)
      >>> state[0].mu["w"]  # (1 - 0.9) * 1.0
      Array([[0.1..., 0.1...],
             [0.1..., 0.1...]], dtype=float32)
    """

    __slots__ = ("flat", "layout")

    def __init__(self, flat: jax.Array, layout: Layout) -> None:
        self.flat = flat
        self.layout = layout

    def tree(self) -> Any:
        """The buffer as a tree with the params' structure and shapes."""
        return jax.tree.unflatten(self.layout.treedef, split_flat(self.flat, self.layout.shapes))

    def __getitem__(self, key: Any) -> Any:
        if self.layout.treedef.num_nodes == 1:  # params is one array: index that array
            return self.tree()[key]
        n = len(self.layout.shapes)
        index = jax.tree.unflatten(self.layout.treedef, list(range(n)))[key]
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in self.layout.shapes])

        def leaf(i: int) -> jax.Array:
            return jnp.reshape(self.flat[offsets[i] : offsets[i + 1]], self.layout.shapes[i])

        return jax.tree.map(leaf, index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The buffer as params is one array, else the flat vector."""
        del copy
        value = self.tree() if self.layout.treedef.num_nodes == 1 else self.flat
        return np.asarray(value, dtype=dtype)

    def __repr__(self) -> str:
        return f"FlatBuffer({self.flat!r})"

    def __eq__(self, other: object) -> bool:  # as a NamedTuple of (flat,) compares
        return isinstance(other, FlatBuffer) and (self.layout, self.flat) == (
            other.layout,
            other.flat,
        )

    __hash__ = None  # type: ignore[assignment]


jax.tree_util.register_pytree_with_keys(
    FlatBuffer,
    lambda b: (((jax.tree_util.GetAttrKey("flat"), b.flat),), b.layout),
    lambda layout, children: FlatBuffer(children[0], layout),
    lambda b: ((b.flat,), b.layout),
)


def is_buffer(x: Any) -> bool:
    return isinstance(x, FlatBuffer)


def unwrap_buffers(state: Any) -> Any:
    """The state with every ``FlatBuffer`` replaced by its flat array."""
    return jax.tree.map(lambda x: x.flat if is_buffer(x) else x, state, is_leaf=is_buffer)


def wrap_buffers(state: Any, layout: Layout, total: int) -> Any:
    """The state with every flat per-parameter array (1-D, ``total`` long) in a ``FlatBuffer``."""

    def wrap(x: Any) -> Any:
        if is_buffer(x):
            return x
        if jnp.ndim(x) == 1 and jnp.size(x) == total:
            return FlatBuffer(x, layout)
        return x

    return jax.tree.map(wrap, state, is_leaf=is_buffer)


def concat_leaves(leaves: list) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in leaves]) if leaves else jnp.zeros((0,), _F32)


def split_flat(flat: jax.Array, shapes: Any) -> list:
    """``flat`` cut into consecutive pieces of the given shapes."""
    out, start = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(jnp.reshape(flat[start : start + n], shape))
        start += n
    return out


def resign(state: Any, old: TreeSignature, new: Any) -> Any:
    """``state`` with every ``EmptyState`` that records ``old`` recording ``new``'s signature."""

    def f(x: Any) -> Any:
        if isinstance(x, EmptyState) and x.signature == old:
            return EmptyState.of(new)
        return x

    return jax.tree.map(f, state, is_leaf=lambda x: isinstance(x, EmptyState))


def find_layout(state: Any) -> Layout | None:
    """The layout of the first ``FlatBuffer`` in ``state`` (``None`` if there is none)."""
    for x in jax.tree.leaves(state, is_leaf=is_buffer):
        if is_buffer(x):
            return x.layout
    return None


def fused_state_to_tree(state: OptState) -> OptState:
    """The per-leaf chain's state equivalent to a fused one (other states unchanged).

    Every ``FlatBuffer`` becomes a tree with the params' structure and shapes
    and every ``FusedState`` the plain tuple of its chain:
    ``fused_state_to_tree(adaptx.adam(lr).init(params))`` is exactly
    ``adaptx.unfused(adaptx.adam(lr)).init(params)``, the layout optax uses
    too. For checkpoints that any adaptx (or optax) optimizer state can read;
    ``tree_to_fused_state`` goes back.

    Args:
      state: an optimizer state, fused or not, possibly nested in others.

    Returns:
      The state with per-leaf buffers.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"a": jnp.ones(2), "b": jnp.ones((3, 1))}
      >>> state = adaptx.sgd(0.1, momentum=0.9).init(params)
      >>> state[0].trace.flat.shape  # one flat buffer
      (5,)
      >>> jax.tree.map(jnp.shape, adaptx.fused_state_to_tree(state)[0].trace)
      {'a': (2,), 'b': (3, 1)}
    """

    def convert(x: Any) -> Any:
        if is_buffer(x):
            return x.tree()
        if isinstance(x, FusedState):
            layout = find_layout(x)
            inner = tuple(jax.tree.map(convert, tuple(x), is_leaf=_is_fused_or_buffer))
            if layout is None:
                return inner
            return resign(inner, layout.flat_signature(), layout.like())
        return x

    return jax.tree.map(convert, state, is_leaf=_is_fused_or_buffer)


def _is_fused_or_buffer(x: Any) -> bool:
    return isinstance(x, FusedState) or is_buffer(x)


def tree_to_fused_state(state: OptState, params: Params) -> FusedState:
    """The inverse of ``fused_state_to_tree`` for one fused optimizer's state.

    Args:
      state: the per-leaf chain's state (the structure of
        ``adaptx.unfused(tx).init(params)``), e.g. restored from a checkpoint.
      params: params with the structure and shapes of those the state is for.

    Returns:
      The ``FusedState`` the fused ``tx`` would have, with the same values.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(3)}
      >>> tx = adaptx.sgd(0.1, momentum=0.9)
      >>> per_leaf = adaptx.unfused(tx).init(params)
      >>> adaptx.tree_to_fused_state(per_leaf, params)[0].trace.flat.shape
      (5,)
    """
    layout = Layout.of(params)
    total = sum(int(np.prod(shape)) for shape in layout.shapes)

    def params_like(x: Any) -> bool:
        try:
            leaves, treedef = jax.tree.flatten(x)
        except TypeError:
            return False
        if treedef != layout.treedef or len(leaves) != len(layout.shapes):
            return False
        return all(tuple(jnp.shape(y)) == s for y, s in zip(leaves, layout.shapes))

    def join(x: Any) -> Any:
        if params_like(x):
            flat = concat_leaves(jax.tree.leaves(x)).astype(_F32)
            return FlatBuffer(flat, layout)
        return x

    joined = jax.tree.map(join, tuple(state), is_leaf=params_like)
    flat = resign(joined, layout.signature(), jax.ShapeDtypeStruct((total,), jnp.float32))
    return FusedState(wrap_buffers(flat, layout, total))


def init_like(tx: Any, params: Params, state: OptState) -> OptState:
    """``tx.init(params)`` in the layout of ``state``, an earlier state of the same ``tx``.

    For transforms that re-initialise an inner optimizer inside ``update``
    (``apply_if_finite``'s reset, ``lookahead``'s ``reset_state``) and then
    select between the fresh and the current state. A fused optimizer decides
    its layout at ``init`` from where the params live; an ``init`` traced under
    ``jit`` in a process with several devices cannot see that and gives the
    per-leaf layout, while the state being replaced may be fused (made by an
    eager ``init``), or the other way round. The values are the same either
    way; only the layout is converted.
    """
    fresh = tx.init(params)
    if jax.tree.structure(fresh) == jax.tree.structure(state):
        return fresh
    is_fused = lambda x: isinstance(x, FusedState)
    if not any(is_fused(x) for x in jax.tree.leaves(state, is_leaf=is_fused)):
        return fused_state_to_tree(fresh)

    def convert(old: Any, new: Any) -> Any:
        if is_fused(old) and not is_fused(new):
            layout = find_layout(old)
            if layout is not None:
                return tree_to_fused_state(new, layout.like())
        return new

    return jax.tree.map(convert, state, fresh, is_leaf=is_fused)
