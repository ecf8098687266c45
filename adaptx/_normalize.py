"""Reshaping the update: gradient centralization and normalization by the update's norm.

Both are stateless; sums and norms are accumulated in float32 (or the leaf's
dtype when wider) and the result is rounded once to the update's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from adaptx._base import GradientTransformation, check_stateless, init_empty_state
from adaptx._numerics import _widen, compute_dtype, global_norm, hyperparam
from adaptx._validate import check_nonnegative, check_number


def centralize(*, output_axis: int = 0) -> GradientTransformation:
    r"""Gradient centralization (Yong et al., ECCV 2020): zero-mean gradients per output unit.

    For a weight leaf ``W`` (two or more dimensions) with its output units
    (neurons, channels) along ``output_axis``, each unit's gradient loses its
    mean over the unit's fan-in (all the other axes), Eq. (4) of the paper::

        Phi_GC(g_i) = g_i - mean(g_i)          for each output unit i

    i.e. the update is projected onto the hyperplane ``sum(g_i) = 0`` per
    unit. Vectors and scalars (biases, norms' scales) pass unchanged: the
    paper centralizes convolution and fully-connected weights only.

    **Layout.** The default ``output_axis=0`` is optax's ``centralize()`` and
    the authors' (PyTorch) code: output units lead (torch ``Linear`` weights
    are ``(out, in)``, convolutions ``(out, in, h, w)``). Flax and Haiku put
    them last (``Dense`` kernels ``(in, out)``, ``Conv`` ``(h, w, in, out)``):
    pass ``output_axis=-1`` there to centralize per output unit as the paper
    does; optax's (and the default's) centralization of such a kernel is
    per *input* unit instead.

    ==============================  ==============================
    optax 0.2.8                     adaptx
    ==============================  ==============================
    ``optax.centralize()``          ``centralize()``
    ==============================  ==============================

    Args:
      output_axis: the axis of the output units, keyword-only; the mean is
        over every other axis.

    Returns:
      A stateless ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.centralize()
      >>> g = {"w": jnp.array([[1.0, 3.0], [0.0, 4.0]]), "b": jnp.array([1.0, 3.0])}
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out["w"], out["b"]
      (Array([[-1.,  1.],
             [-2.,  2.]], dtype=float32), Array([1., 3.], dtype=float32))

    References:
      Yong, Huang, Hua & Zhang, "Gradient Centralization: A New Optimization
      Technique for Deep Neural Networks", ECCV 2020,
      https://arxiv.org/abs/2004.01461
    """
    if isinstance(output_axis, bool) or not isinstance(output_axis, int):
        raise ValueError(f"output_axis must be an integer axis, got {output_axis!r}")

    def leaf(g: jax.Array) -> jax.Array:
        if g.ndim < 2:
            return g
        if not -g.ndim <= output_axis < g.ndim:
            raise ValueError(
                f"centralize: output_axis={output_axis} is out of range for a leaf of shape "
                f"{g.shape}"
            )
        keep = output_axis % g.ndim
        axes = tuple(i for i in range(g.ndim) if i != keep)
        wide = _widen(g, compute_dtype(g.dtype))
        return (wide - jnp.mean(wide, axis=axes, keepdims=True)).astype(g.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless("centralize", updates, state, params)
        return jax.tree.map(leaf, updates), state

    return GradientTransformation(init_empty_state, update_fn)


def normalize_by_update_norm(
    scale_factor: float | jax.Array = 1.0, eps: float | jax.Array = 1e-6
) -> GradientTransformation:
    r"""Divides the updates by their global l2 norm (normalized gradient descent).

    ::

        out = scale_factor * u / (||u|| + eps)

    with ``||u||`` the norm of all leaves together (``global_norm``), so the
    output has norm ``scale_factor`` (up to ``eps``) whatever the gradient's
    scale. Chained before a learning rate this is normalized gradient descent
    (Nesterov 1984; Hazan, Levy & Shalev-Shwartz, NeurIPS 2015). With
    ``eps = 0`` an all-zero update stays zero (no 0/0); a NaN stays NaN.

    ======================================================  ==============================
    optax 0.2.8                                             adaptx
    ======================================================  ==============================
    ``optax.normalize_by_update_norm(scale_factor, eps)``   same arguments
    ======================================================  ==============================

    Args:
      scale_factor: the norm of the output, a finite number (negative flips it).
      eps: added to the norm, ``>= 0``.

    Returns:
      A stateless ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.normalize_by_update_norm(eps=0.0)
      >>> u = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
      >>> out, _ = tx.update(u, tx.init(u))
      >>> out["a"], out["b"]
      (Array([0.6], dtype=float32), Array([0.8], dtype=float32))

    References:
      Hazan, Levy & Shalev-Shwartz, "Beyond Convexity: Stochastic
      Quasi-Convex Optimization", NeurIPS 2015, https://arxiv.org/abs/1507.02030
    """
    check_number("scale_factor", scale_factor)
    check_nonnegative("eps", eps)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless("normalize_by_update_norm", updates, state, params)
        norm = global_norm(updates)
        d = norm + hyperparam(eps, norm.dtype)
        factor = hyperparam(scale_factor, norm.dtype) / jnp.where(d == 0, 1, d)
        factor = jnp.where(d == 0, jnp.zeros((), d.dtype), factor)

        def leaf(u):
            wide = _widen(u, factor.dtype)
            return (wide * factor.astype(wide.dtype)).astype(u.dtype)

        return jax.tree.map(leaf, updates), state

    return GradientTransformation(init_empty_state, update_fn)
