"""Clipping updates: element-wise, by global norm, by block RMS, and unit-wise (AGC).

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

from adaptx._base import GradientTransformation, check_stateless, init_empty_state, stateless
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


def _unit_axes(shape: tuple[int, ...], axis: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """The axes a unit-wise norm sums over (the fan-in of each output unit)."""
    ndim = len(shape)
    if axis is not None:
        return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))
    if sum(n != 1 for n in shape) <= 1:  # scalars and vectors (also (1, n), (n, 1)): one unit
        return tuple(range(ndim))
    if ndim in (2, 3):  # dense (in, out) and multi-head dense kernels
        return (0,)
    if ndim in (4, 5):  # conv kernels (h, w, in, out) and (d, h, w, in, out)
        return tuple(range(ndim - 1))
    raise ValueError(
        f"adaptive_grad_clip: no default unit for a leaf of shape {shape}; pass axis= "
        "(the axes of one unit's fan-in)"
    )


def adaptive_grad_clip(
    clipping: float | jax.Array,
    eps: float | jax.Array = 1e-3,
    axis: int | tuple[int, ...] | None = None,
) -> GradientTransformation:
    r"""Adaptive gradient clipping (Brock et al., ICML 2021), unit-wise.

    For each unit ``i`` (an output neuron or channel: a slice of a leaf, its
    fan-in) of gradient ``G`` and parameters ``W`` (Eq. 3 of the paper)::

        G_i <- lambda * max(||W_i||, eps) / ||G_i|| * G_i   if ||G_i|| / max(||W_i||, eps) > lambda
        G_i <- G_i                                           otherwise

    with ``lambda = clipping`` and Frobenius norms. Units, as the paper's
    NFNet code and optax, for flax/haiku layouts: a scalar or vector (or a
    leaf with one non-unit axis) is one unit; a ``(in, out)`` or
    ``(in, heads, out)`` kernel has one unit per slice along axis 0's
    complement (norms over axis 0); convolution kernels ``(h, w, in, out)``
    and ``(d, h, w, in, out)`` have one unit per output channel; ``axis``
    overrides (the axes one norm sums over). Norms are computed in float32 or
    wider; a NaN in a unit's gradient makes that unit's update NaN (as
    optax). The paper uses ``eps = 1e-3`` and
    ``lambda`` from 0.01 to 0.16 depending on the batch size.

    ==============================================  ==============================
    optax 0.2.8                                     adaptx
    ==============================================  ==============================
    ``optax.adaptive_grad_clip(clipping, eps,       same arguments
    axis)``
    ==============================================  ==============================

    Args:
      clipping: ``lambda``, the largest ratio of a unit's gradient norm to its
        parameter norm, ``>= 0``.
      eps: the smallest parameter norm (so zero-initialised units can move), ``>= 0``.
      axis: an axis or tuple of axes to sum each unit's norm over; ``None``
        infers them from the rank as above.

    Returns:
      A stateless ``GradientTransformation`` whose ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.adaptive_grad_clip(0.1)
      >>> params = {"w": jnp.array([[3.0, 0.0], [4.0, 0.0]])}  # unit norms 5 and 0 (-> eps)
      >>> grads = {"w": jnp.array([[6.0, 1.0], [8.0, 0.0]])}  # unit norms 10 and 1
      >>> out, _ = tx.update(grads, tx.init(params), params)
      >>> out["w"]  # clipped to 0.1 * 5 = 0.5 and 0.1 * 1e-3
      Array([[3.0e-01, 1.0e-04],
             [4.0e-01, 0.0e+00]], dtype=float32)

    References:
      Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image
      Recognition Without Normalization", ICML 2021,
      https://arxiv.org/abs/2102.06171 (Section 4.1)
    """
    check_nonnegative("clipping", clipping)
    check_nonnegative("eps", eps)
    if axis is not None:
        axes = (axis,) if isinstance(axis, int) else axis
        if not isinstance(axes, tuple) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in axes
        ):
            raise TypeError(f"axis must be None, an integer or a tuple of integers, got {axis!r}")

    def leaf(g: jax.Array, p: jax.Array) -> jax.Array:
        cdt = compute_dtype(g.dtype)
        axes = _unit_axes(tuple(g.shape), axis)
        g_norm = jnp.sqrt(jnp.sum(abs_sq(_widen(g, cdt)), axis=axes, keepdims=True))
        p_norm = jnp.sqrt(jnp.sum(abs_sq(_widen(p, cdt)), axis=axes, keepdims=True))
        max_norm = hyperparam(clipping, cdt) * jnp.maximum(p_norm, hyperparam(eps, cdt))
        # Units within the bound keep factor 1 (also a zero gradient: 0 <= max_norm). A NaN
        # norm fails the test and its factor max_norm / NaN makes the whole unit NaN.
        within = g_norm <= max_norm
        factor = jnp.where(within, 1, max_norm / jnp.where(within, 1, g_norm))
        return _scaled(g, factor)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "adaptive_grad_clip needs the parameters: call tx.update(updates, state, "
                "params) (with params), not tx.update(updates, state)"
            )
        check_stateless("adaptive_grad_clip", updates, state, params)
        return jax.tree.map(leaf, updates, params), state

    return GradientTransformation(init_empty_state, update_fn)
