"""Newton-Schulz orthogonalisation of (stacks of) matrices, for Muon.

**Which axes form the matrix.** A ``MuonDimensionNumbers(reduction_axis,
output_axis)`` names the axes of a parameter that play the part of the rows
(the input, contracted with the activations: ``fan_in``) and of the columns
(``fan_out``) of the matrix in ``y = x @ W``; several axes on one side are
flattened together, and every other axis is a batch axis: each index along
it is a separate matrix, orthogonalised on its own. So:

- a dense kernel ``(d_in, d_out)``: ``MuonDimensionNumbers(0, 1)`` (the default);
- a conv kernel ``(h, w, c_in, c_out)``: ``MuonDimensionNumbers((0, 1, 2), 3)``;
- a fused attention projection ``(d, 3, heads, head_dim)`` (q, k and v kept
  apart): ``MuonDimensionNumbers(0, (2, 3))``, axis 1 being a batch axis;
- layers stacked for ``lax.scan``, ``(layers, d_in, d_out)``:
  ``MuonDimensionNumbers(1, 2)``, one matrix per layer.

**Sharded matrices.** Under sharded ``jit`` with automatic axes the
Newton-Schulz matmuls run on the sharded momentum as they are: XLA's
partitioner inserts the collectives (all-gathers and reductions of the
``X X^T`` products), and the result comes back sharded like the parameter.
With explicit mesh axes a product whose contracted axis is sharded has no
defined output sharding, so each matrix is first gathered (replicated), the
iteration runs on the whole matrix, and the result is resharded like the
parameter. Either way the numbers are the single-device ones up to float32
rounding (the tests check this on 8 devices). Inside ``shard_map`` each
device holds a block: orthogonalising a block is not orthogonalising the
matrix, so give ``shard_map`` whole matrices (data parallelism) or gather
them first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._adam import widen
from adaptx._masking import MaskedNode
from adaptx._numerics import compute_dtype, hyperparam
from adaptx._sharding import gather_explicit, restore_explicit
from adaptx._validate import check_integer

NS_COEFFS = (3.4445, -4.7750, 2.0315)
"""Jordan's quintic Newton-Schulz coefficients ``(a, b, c)``."""


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a parameter are the rows and which the columns of its matrix.

    Attributes:
      reduction_axis: the axis (or axes) contracted with the input, ``fan_in``.
      output_axis: the axis (or axes) of the output, ``fan_out``.

    Every other axis is a batch axis: one matrix per index, orthogonalised
    on its own. Several axes on one side are flattened together. Negative
    axes count from the end. The same type and fields as
    ``optax.contrib.MuonDimensionNumbers``. Typical layouts:

    - a dense kernel ``(d_in, d_out)``: ``MuonDimensionNumbers(0, 1)`` (the default);
    - a conv kernel ``(h, w, c_in, c_out)``: ``MuonDimensionNumbers((0, 1, 2), 3)``;
    - a fused attention projection ``(d, 3, heads, head_dim)`` (q, k and v
      orthogonalised apart): ``MuonDimensionNumbers(0, (2, 3))``;
    - layers stacked for ``lax.scan``, ``(layers, d_in, d_out)``:
      ``MuonDimensionNumbers(1, 2)``, one matrix per layer.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"conv": jnp.zeros((3, 3, 8, 16)), "bias": jnp.zeros(16)}
      >>> dims = {"conv": adaptx.MuonDimensionNumbers((0, 1, 2), 3), "bias": None}
      >>> tx = adaptx.muon(1e-3, muon_weight_dimension_numbers=dims)  # bias: AdamW
      >>> state = tx.init(params)
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


WeightDimNums = Any
"""``None``, a ``MuonDimensionNumbers``, a tree of them (``None`` leaves: not a
matrix; a prefix of the params' tree is allowed), or a callable ``params -> tree``."""


# --- dimension numbers ------------------------------------------------------------


class _Spec:
    """A leaf's resolved dimension numbers (an opaque pytree leaf)."""

    __slots__ = ("dims",)

    def __init__(self, dims: MuonDimensionNumbers | None):
        self.dims = dims


def is_spec(x: Any) -> bool:
    return x is None or isinstance(x, (MuonDimensionNumbers, MaskedNode))


def leaf_dims(spec: WeightDimNums, tree: Any) -> list[MuonDimensionNumbers | None]:
    """The dimension numbers of every leaf of ``tree``, in leaf order.

    ``spec=None`` gives the default ``MuonDimensionNumbers()`` to every leaf;
    a callable is called with ``tree``; a single ``MuonDimensionNumbers``
    applies to every leaf; a tree may be a prefix of ``tree`` (its leaves,
    ``None`` included, cover whole subtrees).
    """
    if spec is None:
        return [MuonDimensionNumbers()] * len(jax.tree.leaves(tree))
    if callable(spec) and not isinstance(spec, MuonDimensionNumbers):
        spec = spec(tree)
    try:
        boxed = jax.tree.map(
            lambda s, sub: jax.tree.map(lambda _: _Spec(s), sub), spec, tree, is_leaf=is_spec
        )
    except ValueError as e:
        raise ValueError(
            "weight_dimension_numbers must be a MuonDimensionNumbers, or a tree of them "
            "(None for leaves that are not matrices) with the structure of the params or a "
            f"prefix of it, or a callable returning one: {e}"
        ) from e
    return [b.dims for b in jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, _Spec))]


def _axes(axis: Sequence[int] | int, ndim: int, what: str) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axes:
        raise ValueError(f"MuonDimensionNumbers.{what} names no axis")
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"MuonDimensionNumbers.{what}={axis!r} is out of range for a {ndim}-D parameter"
            )
    return tuple(int(a) % ndim for a in axes)


def matrix_layout(shape: tuple[int, ...], dims: MuonDimensionNumbers) -> tuple:
    """``(perm, (batch, fan_in, fan_out))``: the transpose and reshape to a stack of matrices."""
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(
            f"Muon orthogonalises matrices: a parameter of shape {shape} has rank {ndim} < 2. "
            "Route it to another optimizer (muon() sends it to AdamW unless told otherwise)."
        )
    red = _axes(dims.reduction_axis, ndim, "reduction_axis")
    out = _axes(dims.output_axis, ndim, "output_axis")
    if set(red) & set(out) or len(set(red)) < len(red) or len(set(out)) < len(out):
        raise ValueError(
            f"MuonDimensionNumbers {dims} name an axis twice for a parameter of shape {shape}"
        )
    batch = tuple(a for a in range(ndim) if a not in red and a not in out)
    size = lambda axes: math.prod(shape[a] for a in axes)
    return batch + red + out, (size(batch), size(red), size(out))


def fan_in_out(shape: tuple[int, ...], dims: MuonDimensionNumbers) -> tuple[int, int]:
    _, (_, fan_in, fan_out) = matrix_layout(shape, dims)
    return fan_in, fan_out


# --- Newton-Schulz ------------------------------------------------------------------


def _quintic_step(x: jax.Array, row: jax.Array) -> tuple[jax.Array, None]:
    """One step ``X <- a X + (b A + c A A) X``, ``A = X X^H``, for ``row = (a, b, c)``.

    The matmuls run in ``x``'s dtype (bfloat16 if asked); the coefficients are
    applied in ``row``'s (float32 or wider), so bfloat16 does not round 3.4445
    to 3.4375. A module-level function: an eager ``lax.scan`` over it is
    traced and compiled once, not at every call.
    """
    a, b, c = row[0], row[1], row[2]
    cdt = row.dtype
    gram = x @ jnp.swapaxes(x.conj(), -1, -2)
    poly = (b * widen(gram, cdt) + c * widen(gram @ gram, cdt)).astype(x.dtype)
    return (a * widen(x, cdt) + widen(poly @ x, cdt)).astype(x.dtype), None


def newton_schulz(x: jax.Array, coeffs: jax.Array, eps: jax.Array) -> jax.Array:
    """The quintic Newton-Schulz iteration on a stack of matrices ``(batch, m, n)``.

    ``X_0 = M / (||M||_F + eps)``, then for each row ``(a, b, c)`` of the
    ``(steps, 3)`` table ``coeffs`` (a ``lax.scan``: compiled once whatever the
    number of steps): ``A = X X^H``, ``X <- a X + (b A + c A A) X``. Runs on the
    wide side (``X^T`` when ``m > n``, so ``A`` is the smaller Gram matrix),
    in ``x``'s dtype.
    """
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    cdt = jnp.dtype(eps.dtype)
    norm = jnp.sqrt(jnp.sum(jnp.square(jnp.abs(x).astype(cdt)), axis=(-2, -1), keepdims=True))
    x = x / (norm + eps).astype(x.dtype)

    x, _ = jax.lax.scan(_quintic_step, x, coeffs.astype(cdt))
    return jnp.swapaxes(x, -1, -2) if tall else x


def orthogonalize(
    x: jax.Array, dims: MuonDimensionNumbers, coeffs: jax.Array, eps: Any, dtype: Any
) -> jax.Array:
    """``newton_schulz`` on each matrix of ``x`` (laid out by ``dims``), in ``dtype``."""
    perm, flat = matrix_layout(x.shape, dims)
    x, spec = gather_explicit(x)
    m = jnp.transpose(x, perm).reshape(flat)
    m = widen(m, jnp.dtype(dtype))
    cdt = compute_dtype(m.dtype)
    o = newton_schulz(m, jnp.asarray(coeffs).astype(cdt), hyperparam(eps, cdt))
    inv = np.argsort(perm)
    o = o.reshape(tuple(x.shape[p] for p in perm)).transpose(inv)
    return restore_explicit(o, spec)


def coeff_rows(ns_coeffs: jax.Array, ns_steps: int) -> jax.Array:
    """The ``(steps, 3)`` table of coefficients, one row per Newton-Schulz step."""
    if ns_coeffs.ndim == 1:
        return jnp.broadcast_to(ns_coeffs, (ns_steps, 3))
    return ns_coeffs


def check_ns(ns_coeffs: Any, ns_steps: Any) -> np.ndarray:
    check_integer("ns_steps", ns_steps, 1)
    try:
        c = np.asarray(ns_coeffs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"ns_coeffs must be numbers (a, b, c), got {ns_coeffs!r}") from e
    if c.ndim not in (1, 2) or c.shape[-1] != 3:
        raise ValueError(
            f"ns_coeffs must have shape (3,) or (steps, 3), got shape {c.shape}: {ns_coeffs!r}"
        )
    if not np.all(np.isfinite(c)):
        raise ValueError(f"ns_coeffs must be finite numbers, got {ns_coeffs!r}")
    if c.ndim == 2 and c.shape[0] != ns_steps:
        raise ValueError(
            f"ns_coeffs has one row per step: {c.shape[0]} rows, but ns_steps={ns_steps}; "
            f"pass ns_steps={c.shape[0]}"
        )
    return c
