"""Tree and numeric helpers shared by every transform.

Everything here works leaf by leaf over pytrees, keeps dtypes, and never
synchronises with the host, so it is safe inside ``jit``, ``pmap`` and
sharded ``jit``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._sharding import zeros_like

INT32_MAX = np.iinfo(np.int32).max


def is_concrete_number(x: Any) -> bool:
    """Whether ``x`` is a Python or NumPy number, or a concrete scalar array.

    Traced values (inside ``jit``) are not concrete; their value cannot be
    inspected without synchronising, so validation and host-side precomputation
    skip them.
    """
    if isinstance(x, (bool, int, float, np.number)):
        return True
    if isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer):
        return np.ndim(x) == 0
    return False


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype scalar hyper-parameter maths is done in for a given leaf dtype.

    float32, or the leaf's own real dtype when that is wider (float64 under
    ``jax_enable_x64``). bfloat16 and float16 leaves get float32: 1 - beta**t
    rounds to 0 or 1 in those formats.
    """
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        dtype = jnp.finfo(dtype).dtype
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits > 32:
        return dtype
    return jnp.dtype(jnp.float32)


def _wide(dtype: Any) -> np.dtype:
    """``compute_dtype`` for real dtypes; the matching complex dtype for complex ones."""
    dtype = jnp.dtype(dtype)
    real = compute_dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.dtype(jnp.complex128 if real.itemsize > 4 else jnp.complex64)
    return real


def tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros with the structure, shapes and shardings of ``tree``.

    Each zero leaf is placed like the matching leaf of ``tree``: an optimizer
    state built from sharded parameters is sharded like them (ZeRO style),
    also when ``init`` runs under ``jit`` and from ``jax.ShapeDtypeStruct``s
    that carry a sharding.

    Args:
      tree: a pytree of arrays (or ``jax.ShapeDtypeStruct``s).
      dtype: optional dtype for every leaf; ``None`` keeps each leaf's dtype.

    Returns:
      A pytree of zero arrays.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.tree_zeros_like({"a": jnp.ones(2, jnp.bfloat16)})["a"]
      Array([0, 0], dtype=bfloat16)
    """
    return jax.tree.map(lambda x: zeros_like(x, dtype), tree)


def tree_cast(tree: Any, dtype: Any) -> Any:
    """Casts every leaf of ``tree`` to ``dtype``; ``None`` returns ``tree`` unchanged."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|**2`` as a real array (``x * conj(x)`` for complex ``x``)."""
    if jnp.iscomplexobj(x):
        return jnp.square(x.real) + jnp.square(x.imag)
    return jnp.square(x)


def tree_map_unzip(n: int, f: Any, tree: Any, *rest: Any) -> tuple[Any, ...]:
    """``jax.tree.map(f, tree, *rest)`` for an ``f`` returning ``n`` values, as ``n`` trees.

    Each result tree has ``tree``'s structure. The unzipping goes through that
    structure, so a tree that holds tuples of its own (equinox's ``MLP.layers``)
    is not mistaken for a per-leaf result.
    """
    treedef = jax.tree.structure(tree)
    results = treedef.flatten_up_to(jax.tree.map(f, tree, *rest))
    return tuple(treedef.unflatten([r[i] for r in results]) for i in range(n))


def _map_moments(f: Any, updates: Any, moments: Any) -> Any:
    """``f(g, m)`` over the leaves; a ``None`` update (an equinox-filtered leaf) gives ``None``."""
    return jax.tree.map(
        lambda g, m: None if g is None else f(g, m),
        updates,
        moments,
        is_leaf=lambda x: x is None,
    )


def tree_update_moment(updates: Any, moments: Any, decay: Any, order: int) -> Any:
    """Exponential moving average of ``updates**order``, leaf by leaf.

    ``m <- decay * m + (1 - decay) * g**order``. The arithmetic is done in
    ``compute_dtype`` of the moment (float32 for bfloat16/float16 moments, so
    ``decay = 0.999`` does not round to 1) and the result is cast back to the
    moment's dtype. ``decay`` may be a Python float or an array; both take the
    same path (see ``hyperparam``).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.tree_update_moment(jnp.array([2.0]), jnp.array([1.0]), 0.5, 1)
      Array([1.5], dtype=float32)
    """

    def f(g, m):
        cdt = _wide(m.dtype)
        d = hyperparam(decay, jnp.finfo(cdt).dtype)
        d = d.astype(cdt)
        g = g.astype(cdt)
        return (d * m.astype(cdt) + (1 - d) * (g if order == 1 else g**order)).astype(m.dtype)

    return _map_moments(f, updates, moments)


def tree_update_moment_per_elem_norm(updates: Any, moments: Any, decay: Any, order: int) -> Any:
    """Exponential moving average of ``|updates|**order``, leaf by leaf.

    For complex leaves the modulus is used, so a second moment of a complex
    gradient is real and non-negative (``|g|**2 = g * conj(g)``); the moment
    keeps the dtype it was created with.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.tree_update_moment_per_elem_norm(jnp.array([-3.0]), jnp.array([1.0]), 0.5, 2)
      Array([5.], dtype=float32)
    """

    def f(g, m):
        cdt = compute_dtype(m.dtype)
        # Square g in the compute dtype (a bfloat16 g**2 would lose 8 bits of the moment).
        g = _widen(g, max(cdt, compute_dtype(g.dtype), key=lambda d: d.itemsize))
        n = abs_sq(g) if order == 2 else jnp.abs(g) ** order
        n = n.astype(cdt)
        d = hyperparam(decay, cdt)
        return (d * m.astype(cdt) + (1 - d) * n).astype(m.dtype)

    return _map_moments(f, updates, moments)


def tree_update_infinity_moment(updates: Any, moments: Any, decay: Any, eps: Any) -> Any:
    """The infinity-norm moment of AdaMax: ``u <- max(decay * u, |g| + eps)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> g, u = jnp.array([-3.0, 0.1]), jnp.array([1.0, 1.0])
      >>> adaptx.tree_update_infinity_moment(g, u, 0.5, 0.0)
      Array([3. , 0.5], dtype=float32)
    """

    def f(g, u):
        cdt = compute_dtype(u.dtype)
        a = jnp.abs(g).astype(cdt)
        d, e = hyperparam(decay, cdt), hyperparam(eps, cdt)
        return jnp.maximum(d * u.astype(cdt), a + e).astype(u.dtype)

    return _map_moments(f, updates, moments)


def hyperparam(value: Any, dtype: Any = jnp.float32) -> jax.Array:
    """A numeric hyper-parameter as a scalar array of ``dtype``, for per-step maths.

    Every transform converts its hyper-parameters with this *once*, then derives
    everything else (``1 - b1``, bias corrections) from the array with jnp
    operations in ``dtype``. A Python float and the same value given as a
    float32 array (a run-time hyper-parameter, possibly traced) therefore go
    through exactly the same arithmetic and give bit-identical results. Derived
    quantities are never precomputed in Python float64, which would make the
    two paths differ.

    Example:
      >>> import jax.numpy as jnp
      >>> from adaptx._numerics import hyperparam
      >>> hyperparam(0.9)
      Array(0.9, dtype=float32)
    """
    return jnp.asarray(value).astype(dtype)


def log_decay(decay: jax.Array) -> jax.Array:
    """``log(decay)`` accurate for a decay close to 1.

    For ``decay >= 0.75`` the difference ``decay - 1`` is exact in floating
    point (Sterbenz), and ``log1p`` of it keeps full relative precision where
    ``log(decay)`` would cancel. Below 0.75 ``log(decay)`` is accurate, and
    XLA's float64 ``log1p`` on CPU is not (up to ~120 ulps for arguments in
    [-0.5, -0.3]). ``decay = 0`` gives ``-inf``.
    """
    return jnp.where(decay >= 0.75, jnp.log1p(decay - 1), jnp.log(decay))


def one_minus_pow(decay: Any, count: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """``1 - decay**count`` computed accurately in ``dtype``.

    Computed as ``-expm1(count * log(decay))`` with ``log_decay``, so it keeps
    its relative precision when ``decay`` is close to 1 (``decay = 0.99999``,
    small ``count``), where ``1 - decay**count`` cancels. ``decay`` is first
    rounded to ``dtype`` by ``hyperparam`` and the result is exact for that
    rounded value, consistently with the moment updates that use the same
    rounded decay.

    Args:
      decay: a number in [0, 1), or an array.
      count: the step count, an integer array (>= 1 for a finite result).
      dtype: the floating dtype to compute in.

    Returns:
      A scalar array of ``dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> from adaptx._numerics import one_minus_pow
      >>> float(one_minus_pow(0.5, jnp.asarray(3)))
      0.875
    """
    d = hyperparam(decay, dtype)
    t = jnp.asarray(count).astype(dtype)
    # decay == 0 gives log = -inf and -expm1(-inf) = 1, the right answer for t >= 1.
    return -jnp.expm1(t * log_decay(d))


def bias_correction(moment: Any, decay: Any, count: jax.Array) -> Any:
    """Divides each leaf of ``moment`` by ``1 - decay**count``.

    The correction factor is computed in float32 (or the leaf's dtype when it is
    wider) with ``one_minus_pow``, and only then cast to the moment's dtype: in
    bfloat16, ``1 - 0.999**t`` would round to 0 or 1.

    Args:
      moment: a pytree of moments.
      decay: the moment's decay rate (Python float or array).
      count: the step count after incrementing (1 on the first update).

    Returns:
      The bias-corrected moments, same dtypes as ``moment``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.bias_correction(jnp.array([0.1]), 0.9, jnp.asarray(1, jnp.int32))
      Array([1.], dtype=float32)
    """

    def f(m):
        c = one_minus_pow(decay, count, compute_dtype(m.dtype))
        return m / c.astype(m.dtype)

    return jax.tree.map(f, moment)


def _widen(x: jax.Array, real_dtype: Any) -> jax.Array:
    """Casts ``x`` to ``real_dtype`` (or its complex counterpart for complex ``x``)."""
    if jnp.iscomplexobj(x):
        return x.astype(jnp.complex128 if jnp.dtype(real_dtype).itemsize > 4 else jnp.complex64)
    return x.astype(real_dtype)


def widest_compute_dtype(tree: Any) -> np.dtype:
    """The widest ``compute_dtype`` over the leaves of ``tree`` (float32 for none).

    Chosen by size rather than ``jnp.promote_types``, which raises for
    float32 and float64 under strict dtype promotion.
    """
    dtype = jnp.dtype(jnp.float32)
    for x in jax.tree.leaves(tree):
        cdt = compute_dtype(jnp.result_type(x))
        if cdt.itemsize > dtype.itemsize:
            dtype = cdt
    return dtype


def global_norm(tree: Any, *, axis_name: str | tuple[str, ...] | None = None) -> jax.Array:
    """The l2 norm of all leaves of ``tree`` together.

    Squares are summed in float32, or the widest leaf dtype if wider, so that
    float16 trees do not overflow and bfloat16 ones do not lose the small leaves.
    Under sharded ``jit`` the sum is over the whole, global arrays: no axis
    name is needed.

    Args:
      tree: a pytree of arrays.
      axis_name: inside ``shard_map`` or ``pmap``, the mapped axis (or tuple of
        axes) over which the leaves are *split*, each device holding a
        different piece (model or ZeRO-style parallelism): the squared sums
        are ``psum``-ed over it, so every device gets the norm of the whole
        tree. Leave it ``None`` for leaves that every device holds whole
        (data parallelism after a ``pmean``): summing copies would count each
        one once per device.

    Returns:
      A scalar array of float32 (or wider).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])})
      Array(5., dtype=float32)

      Split over a mapped axis, each device sees its own piece:

      >>> import jax
      >>> x = jnp.array([[3.0], [4.0]])
      >>> jax.vmap(lambda v: adaptx.global_norm(v, axis_name="i"), axis_name="i")(x)
      Array([5., 5.], dtype=float32)
    """
    leaves = jax.tree.leaves(tree)
    dtype = widest_compute_dtype(leaves)
    total = sum((jnp.sum(abs_sq(_widen(x, dtype))) for x in leaves), jnp.zeros((), dtype))
    if axis_name is not None:
        total = jax.lax.psum(total, axis_name)
    return jnp.sqrt(total)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the largest value of ``count``'s dtype.

    Step counters are int32 (2**31 - 1 at most); any integer or floating dtype
    works and keeps its dtype. A counter that wrapped to a negative number
    would turn bias corrections and schedules into garbage; this one stays at
    its dtype's maximum instead.

    Raises:
      ValueError: ``count`` is not an integer or floating array (a boolean or
        a complex number is no counter).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> adaptx.safe_increment(jnp.asarray(2**31 - 1, jnp.int32))
      Array(2147483647, dtype=int32)
      >>> adaptx.safe_increment(jnp.asarray(3, jnp.int8))
      Array(4, dtype=int8)
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.integer):
        top = jnp.iinfo(count.dtype).max
    elif jnp.issubdtype(count.dtype, jnp.floating):
        top = jnp.finfo(count.dtype).max
    else:
        raise ValueError(
            f"safe_increment needs an integer or floating counter, got dtype {count.dtype}"
        )
    top = jnp.asarray(top, count.dtype)
    return jnp.where(count < top, count + jnp.ones((), count.dtype), top)
