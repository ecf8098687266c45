"""Clipping updates: element-wise, by global norm, and by block RMS.

The norms are accumulated in float32, or in the leaf's dtype when it is wider,
and the scale factor is applied in that precision before rounding back to the
leaf's dtype, so bfloat16 and float16 updates neither overflow nor lose their
small leaves. Every threshold may be a Python number or an array (possibly
traced, e.g. a run-time hyper-parameter); concrete values are validated.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptx._base import GradientTransformation, stateless
from adaptx._numerics import _widen, abs_sq, compute_dtype, hyperparam, widest_compute_dtype
from adaptx._validate import check_nonnegative, check_positive


def _scaled(x: jax.Array, factor: jax.Array) -> jax.Array:
    """``x * factor``, computed in ``compute_dtype`` of ``x`` and rounded once to ``x.dtype``."""
    wide = _widen(x, compute_dtype(x.dtype))
    return (wide * factor.astype(wide.dtype)).astype(x.dtype)


def clip(max_delta: float | jax.Array) -> GradientTransformation:
    """Clips every update element to ``[-max_delta, max_delta]``.

    Complex elements keep their phase: those with ``|u| > max_delta`` are
    scaled to modulus ``max_delta`` (optax's ``clip`` rejects complex updates).

    Args:
      max_delta: the largest absolute value of an element, ``>= 0``; a number
        or a scalar array (traced values are not validated).

    Returns:
      A stateless ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.clip(1.0)
      >>> tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(None))[0]
      Array([-1. ,  0.5,  1. ], dtype=float32)
    """
    check_nonnegative("max_delta", max_delta)

    def f(u: jax.Array) -> jax.Array:
        cdt = compute_dtype(u.dtype)
        m = hyperparam(max_delta, cdt)
        if jnp.iscomplexobj(u):
            a = jnp.abs(u).astype(cdt)
            factor = jnp.where(a > m, m / jnp.where(a > m, a, 1), 1)
            return _scaled(u, factor)
        m = m.astype(u.dtype)
        return jnp.clip(u, -m, m)

    return stateless(lambda updates, params: jax.tree.map(f, updates), name="clip")


def _sum_of_squares(tree: Any) -> jax.Array:
    dtype = widest_compute_dtype(tree)
    total = jnp.zeros((), dtype)
    for x in jax.tree.leaves(tree):
        total = total + jnp.sum(abs_sq(_widen(x, dtype)))
    return total


def clip_by_global_norm(
    max_norm: float | jax.Array, *, axis_name: str | None = None
) -> GradientTransformation:
    """Scales all updates together so that their global l2 norm is at most ``max_norm``.

    ``u <- u * max_norm / max(norm, max_norm)``, with ``norm`` the l2 norm of
    all leaves together: updates whose norm is below ``max_norm`` are returned
    unchanged (the factor is exactly 1). A NaN norm gives NaN updates; an
    infinite norm gives zeros (as in optax).

    Args:
      max_norm: the largest global norm, ``> 0``; a number or a scalar array.
      axis_name: inside ``shard_map`` or ``pmap`` over a named axis whose
        replicas each hold a *part* of the updates (model or tensor
        parallelism), sum the squared norm over that axis with
        ``jax.lax.psum`` so every replica clips by the same, global norm.
        Leave it ``None`` under plain or sharded ``jit``, where the sum is
        already global, and for data parallelism after the gradients have
        been averaged across replicas.

    Returns:
      A stateless ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.clip_by_global_norm(1.0)
      >>> u = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}  # norm 5
      >>> out, _ = tx.update(u, tx.init(None))
      >>> out["a"], out["b"]
      (Array([0.6], dtype=float32), Array([0.8], dtype=float32))

    References:
      Pascanu, Mikolov, Bengio, "On the difficulty of training recurrent
      neural networks", ICML 2013. https://arxiv.org/abs/1211.5063
    """
    check_positive("max_norm", max_norm)

    def f(updates: Any, params: Any) -> Any:
        del params
        sq = _sum_of_squares(updates)
        if axis_name is not None:
            sq = jax.lax.psum(sq, axis_name)
        norm = jnp.sqrt(sq)
        m = hyperparam(max_norm, norm.dtype)
        factor = m / jnp.maximum(norm, m)
        return jax.tree.map(lambda u: _scaled(u, factor), updates)

    return stateless(f, name="clip_by_global_norm")


def clip_by_block_rms(threshold: float | jax.Array) -> GradientTransformation:
    """Scales each leaf (block) so that its root mean square is at most ``threshold``.

    ``u <- u * threshold / max(rms(u), threshold)``, leaf by leaf, with
    ``rms(u) = sqrt(mean(|u|**2))``. A leaf is a weight vector or matrix, so
    each block is clipped on its own scale.

    Args:
      threshold: the largest RMS of a leaf, ``> 0``; a number or a scalar array.

    Returns:
      A stateless ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.clip_by_block_rms(1.0)
      >>> u = {"a": jnp.array([3.0, -3.0]), "b": jnp.array([0.5, 0.5])}
      >>> out, _ = tx.update(u, tx.init(None))
      >>> out["a"], out["b"]
      (Array([ 1., -1.], dtype=float32), Array([0.5, 0.5], dtype=float32))
    """
    check_positive("threshold", threshold)

    def f(u: jax.Array) -> jax.Array:
        cdt = compute_dtype(u.dtype)
        rms = jnp.sqrt(jnp.mean(abs_sq(_widen(u, cdt))))
        t = hyperparam(threshold, cdt)
        return _scaled(u, t / jnp.maximum(rms, t))

    return stateless(lambda updates, params: jax.tree.map(f, updates), name="clip_by_block_rms")
