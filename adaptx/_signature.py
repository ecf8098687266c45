"""Tree checks: updates must have the structure, shapes and dtypes of the params.

optax checks none of this for stateless transforms (a gradient tree of
another structure or shape goes through silently, and a shape that
broadcasts changes the numbers), and stateful ones fail deep inside
``jax.tree.map`` with a message that names neither the leaf nor the
transform. adaptx checks in each stage's ``update``, against what that stage
already holds, so the error names the transform that saw the mismatch:

- ``check_state``: the state is the one this transform's ``init`` makes (not
  ``None``, not another optimizer's state);
- stateful transforms compare the updates with their moment trees
  (``check_like``), whose structure and shapes ``init`` made from the params;
- every transform compares the updates with ``params`` when ``update``
  receives them (``check_updates``).

A state records nothing else: its structure follows from the params' tree
structure, shapes and dtypes alone, so ``init`` on a placeholder, on
``jax.ShapeDtypeStruct``s or on flax ``nnx.Variable``s gives what optax's
namesake gives, and checkpoints and tree utilities see optax's layout.
Stateless transforms given no ``params`` check nothing (as optax). Under
``jit`` all of it happens at trace time: shapes and dtypes are static, so a
compiled step pays nothing. Inside ``shard_map`` (or ``pmap``), where each
device sees a block of every array, a state initialised outside on the whole
parameters accepts updates whose every dimension divides the recorded one;
moments and ``params`` passed in are blocks too and are compared exactly.

**Dtype policy.** The updates must have the parameters' dtypes. A float32
gradient for bfloat16 parameters raises (as does the reverse, which would
silently round every update to bfloat16): cast the gradients to the
parameters' dtypes, or keep float32 master parameters and cast them for the
forward pass; to keep the optimizer's state in float32 for low-precision
parameters use ``mu_dtype`` / ``nu_dtype`` (the moments' dtypes are the
state's business, not the gradients'). Where the state does not record the
parameters' precision (a moment in a user-chosen dtype) and ``update`` gets
no params, only real versus complex is checked.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# How a leaf's expected dtype is derived from a reference tree's leaf:
# "exact": that dtype; "precision": that real precision, real or complex (a real
# moment kept for a possibly complex parameter); "kind": any real floating dtype, or
# any complex one, as the leaf is (a moment in a user-chosen dtype); "any": any
# floating or complex dtype.
_MODES = ("exact", "precision", "kind", "any")
_REAL = "a real floating dtype"
_COMPLEX = "a complex dtype"
_INEXACT = "a floating or complex dtype"


class TreeMismatchError(ValueError):
    """An updates tree does not match the tree an optimizer was initialised with.

    A ``ValueError``: the message names the transform, the offending path,
    what was expected and what was given, and how to fix it.
    """


def _dtype(x: Any) -> np.dtype:
    d = getattr(x, "dtype", None)
    if d is None:
        d = jnp.result_type(x)
    return jax.dtypes.canonicalize_dtype(d)


def _complex_of(d: np.dtype) -> np.dtype:
    return jnp.dtype(jnp.complex128 if d.itemsize > 4 else jnp.complex64)


def _expect(d: np.dtype, mode: str) -> tuple[np.dtype, ...] | str:
    """What a leaf of dtype ``d`` (in the reference tree) allows, per ``mode``."""
    if mode == "exact":
        return (d,)
    is_complex = jnp.issubdtype(d, jnp.complexfloating)
    if mode == "precision":
        return (d,) if is_complex else (d, _complex_of(d))
    if mode == "kind":
        return _COMPLEX if is_complex else _REAL
    return _INEXACT


def _allows(expect: tuple[np.dtype, ...] | str, d: np.dtype) -> bool:
    if isinstance(expect, tuple):
        return d in expect
    if expect == _REAL:
        return bool(jnp.issubdtype(d, jnp.floating))
    if expect == _COMPLEX:
        return bool(jnp.issubdtype(d, jnp.complexfloating))
    return bool(jnp.issubdtype(d, jnp.inexact))


def _describe(expect: tuple[np.dtype, ...] | str) -> str:
    if isinstance(expect, tuple):
        return " or ".join(str(d) for d in expect)
    return expect


def _inside_manual_axes() -> bool:
    """Whether we are traced inside ``shard_map`` or ``pmap`` (manual mesh axes)."""
    try:
        return bool(jax.sharding.get_abstract_mesh().manual_axes)
    except Exception:  # an older JAX without abstract meshes: no relaxation
        return False


def _is_block(shape: tuple, whole: tuple) -> bool:
    """Whether ``shape`` can be one device's block of an array of shape ``whole``."""
    return len(shape) == len(whole) and all(b > 0 and w % b == 0 for b, w in zip(shape, whole))


def _paths(treedef: Any) -> list[str]:
    """``keystr`` of every leaf of ``treedef``, in leaf order."""
    dummy = jax.tree.unflatten(treedef, [0] * treedef.num_leaves)
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(dummy)[0]]


class TreeSignature:
    """The tree structure, leaf shapes and allowed leaf dtypes of a pytree.

    Hashable and comparable; ``check`` raises ``TreeMismatchError`` naming the
    first leaf of another tree that does not match. States never hold one.

    Args:
      treedef: the tree structure.
      shapes: one shape per leaf.
      expects: one entry per leaf, a tuple of allowed dtypes or a description
        of the allowed kind.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> sig = adaptx.TreeSignature.of({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3, jnp.bfloat16)})
      >>> sig.describe()
      ["['b']: (3,) bfloat16", "['w']: (2, 3) float32"]
    """

    __slots__ = ("_hash", "expects", "shapes", "treedef")

    def __init__(self, treedef: Any, shapes: tuple, expects: tuple) -> None:
        self.treedef = treedef
        self.shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        self.expects = tuple(expects)
        self._hash = hash((self.treedef, self.shapes, self.expects))

    @classmethod
    def of(cls, tree: Any, mode: str = "exact") -> TreeSignature:
        """The signature of ``tree`` (arrays, tracers or ``jax.ShapeDtypeStruct``s).

        Args:
          tree: a pytree.
          mode: how strictly the dtypes are recorded: ``"exact"`` (the leaves'
            dtypes), ``"precision"`` (a real leaf allows its complex
            counterpart too), ``"kind"`` (real or complex only) or ``"any"``.

        Returns:
          A ``TreeSignature``.
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        leaves, treedef = jax.tree.flatten(tree)
        return cls(
            treedef,
            tuple(jnp.shape(x) for x in leaves),
            tuple(_expect(_dtype(x), mode) for x in leaves),
        )

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, TreeSignature) or self._hash != other._hash:
            return False
        return (self.treedef, self.shapes, self.expects) == (
            other.treedef,
            other.shapes,
            other.expects,
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        digest = hashlib.sha1(repr((str(self.treedef), self.shapes, self.expects)).encode())
        n = self.treedef.num_leaves
        return f"TreeSignature({n} leaves, {digest.hexdigest()[:12]})"

    def describe(self) -> list[str]:
        """One line per leaf: path, shape, allowed dtype(s)."""
        return [
            f"{p}: {s} {_describe(e)}"
            for p, s, e in zip(_paths(self.treedef), self.shapes, self.expects)
        ]

    def check(self, where: str, tree: Any, what: str = "updates") -> None:
        """Raises ``TreeMismatchError`` unless ``tree`` matches this signature.

        Args:
          where: the transform's name, for the message.
          tree: the pytree to check.
          what: what ``tree`` is, for the message.
        """
        leaves, treedef = jax.tree.flatten(tree)
        if treedef != self.treedef:
            raise TreeMismatchError(_structure_message(where, what, self.treedef, treedef))
        manual = None
        for i, x in enumerate(leaves):
            shape, dtype = jnp.shape(x), _dtype(x)
            ok = shape == self.shapes[i]
            if not ok:  # inside shard_map a leaf may be one device's block of the whole
                manual = _inside_manual_axes() if manual is None else manual
                ok = manual and _is_block(shape, self.shapes[i])
            if not ok or not _allows(self.expects[i], dtype):
                raise TreeMismatchError(_leaf_message(where, what, self, i, shape, dtype))


def _structure_message(where: str, what: str, expected: Any, got: Any) -> str:
    want, have = _paths(expected), _paths(got)
    missing = [p for p in want if p not in set(have)]
    extra = [p for p in have if p not in set(want)]
    detail = []
    if missing:
        detail.append(f"missing {_some(missing)}")
    if extra:
        detail.append(f"unexpected {_some(extra)}")
    if not detail:
        detail.append("same leaf paths, different container types")
    return (
        f"{where}: the {what} tree has a different structure from the parameters the "
        f"optimizer was initialised with ({'; '.join(detail)}).\n"
        f"  expected: {expected}\n  got:      {got}\n"
        "Pass updates with the parameters' structure, or re-initialise the optimizer "
        "with init(params) for the new parameters."
    )


def _some(paths: list[str], n: int = 5) -> str:
    shown = ", ".join(paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")


def _leaf_message(
    where: str, what: str, sig: TreeSignature, i: int, shape: tuple, dtype: np.dtype
) -> str:
    path = _paths(sig.treedef)[i] or "(the root)"
    want = f"shape {sig.shapes[i]}, dtype {_describe(sig.expects[i])}"
    got = f"shape {tuple(shape)}, dtype {dtype}"
    if tuple(shape) != sig.shapes[i]:
        fix = (
            "A different shape would broadcast or fail inside the maths; pass updates "
            "with the parameters' shapes, or re-initialise the optimizer for new parameters."
        )
    else:
        fix = (
            "Cast the updates to the parameters' dtypes, e.g. "
            "jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params); to keep the "
            "optimizer's state in a wider dtype than low-precision parameters, use "
            "mu_dtype / nu_dtype instead."
        )
    return (
        f"{where}: {what} leaf {path} does not match what the optimizer was initialised "
        f"with.\n  expected: {want}\n  got:      {got}\n{fix}"
    )


def check_updates(
    where: str,
    updates: Any,
    expected: TreeSignature | None,
    params: Any = None,
) -> None:
    """The one tree check every transform's ``update`` runs.

    Args:
      where: the transform's name, for the message.
      updates: the incoming updates.
      expected: what the state was built for (``None``: not known).
      params: the ``params`` given to ``update`` (or ``None``); when given, the
        updates must match them exactly (structure, shapes, dtypes).

    Raises:
      TreeMismatchError: on the first mismatch, naming the path and both sides.
    """
    if expected is not None:
        expected.check(where, updates)
    if params is not None:
        TreeSignature.of(params).check(where, updates)


def check_like(
    where: str, updates: Any, reference: Any, mode: str = "exact", params: Any = None
) -> None:
    """``check_updates`` against a tree the state keeps (a moment), with a dtype ``mode``.

    Args:
      where: the transform's name, for the message.
      updates: the incoming updates.
      reference: a tree with the parameters' structure and shapes (e.g. a moment).
      mode: how its dtypes constrain the updates' (see ``TreeSignature.of``).
      params: the ``params`` given to ``update``, or ``None``.
    """
    check_updates(where, updates, TreeSignature.of(reference, mode), params)


def check_structure(where: str, updates: Any, reference: Any, params: Any = None) -> None:
    """``check_updates`` against only the tree structure of ``reference``.

    For states that keep one small entry per leaf (a flag, a norm) rather than
    a params-shaped array: the structure is checked against the state, shapes
    and dtypes against ``params`` when given.
    """
    treedef = jax.tree.structure(reference)
    got = jax.tree.structure(updates)
    if got != treedef:
        raise TreeMismatchError(_structure_message(where, "updates", treedef, got))
    check_updates(where, updates, None, params)


def check_state(where: str, state: Any, expected: type) -> None:
    """Raises ``TypeError`` unless ``state`` has the fields of ``expected`` (a NamedTuple type).

    Fields, not the type, are compared, so a peer's state of the same layout
    (optax's namesake, or one rebuilt by a checkpoint library) is accepted.

    Args:
      where: the transform's name, for the message.
      state: the state ``update`` received.
      expected: the NamedTuple type this transform's ``init`` returns.
    """
    fields = getattr(state, "_fields", None)
    if fields == expected._fields and isinstance(state, tuple):
        return
    if state is None:
        got = "None"
    elif fields is None:
        got = f"a {type(state).__name__}"
    else:
        got = f"{type(state).__name__}({', '.join(fields)})"
    want = f"{expected.__name__}({', '.join(expected._fields)})"
    raise TypeError(
        f"{where}: update expected the state this transform's init returns, {want}, "
        f"but got {got}. Pass the state from init (state = tx.init(params)) of this same "
        "optimizer, as returned by its previous update; a state made by another optimizer "
        "does not fit."
    )
