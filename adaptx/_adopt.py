"""ADOPT (Taniguchi et al., NeurIPS 2024): Adam that normalises by the *previous* second moment.

Dtypes follow the Adam family (``adaptx/_adam.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adaptx._adam import (
    ScaleByAdamState,
    check_moment_hyperparams,
    check_moment_updates,
    divide_or_zero,
    init_adam_state,
    leaf_compute_dtype,
    times,
    widen,
)
from adaptx._base import GradientTransformation, ScalarOrSchedule
from adaptx._combine import chain
from adaptx._numerics import abs_sq, hyperparam, safe_increment
from adaptx._scale import scale_by_learning_rate
from adaptx._signature import check_state


def _quarter_root(t: jax.Array) -> jax.Array:
    return t**0.25


def _clip(x: jax.Array, c: jax.Array) -> jax.Array:
    """``x`` clipped to ``[-c, c]``; a complex ``x`` keeps its phase, its modulus is clipped."""
    if jnp.iscomplexobj(x):
        a = jnp.abs(x)
        big = a > c
        return jnp.where(big, x * (c / jnp.where(big, a, 1)).astype(x.dtype), x)
    return jnp.clip(x, -c, c)


def scale_by_adopt(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.9999,
    eps: float | jax.Array = 1e-6,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_root,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""ADOPT's direction (Taniguchi et al., NeurIPS 2024, Algorithm 1, with clipping).

    The first call only initialises the second moment and returns a zero
    direction: ``v_0 = |g_0|**2``, ``m_0 = 0``. Then, for ``t = 1, 2, ...``::

        m_t   = b1 m_{t-1} + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps), c_t)
        out_t = m_t
        v_t   = b2 v_{t-1} + (1 - b2) |g_t|**2

    Two changes from Adam: the gradient is normalised by the second moment
    of the *previous* steps (so ``g_t`` and its normaliser are independent),
    and before the momentum rather than after. The paper proves the optimal
    rate for any ``b2`` with this order. No bias correction is needed.
    ``clip(x, c)`` limits each coordinate to ``[-c, c]`` with ``c_t =
    clip_value_fn(t) = t**0.25`` (the paper's stabilised variant, default
    of the authors' code and optax); ``use_clipping=False`` is Algorithm 1
    without it. ``clip_value_fn`` gets ``t`` as a float array (under
    ``inject_hyperparams``, name it in ``static_args``: a callable is taken
    for a schedule otherwise). Complex updates: the modulus is clipped, the
    phase kept.

    Defaults ``b1 = 0.9``, ``b2 = 0.9999``, ``eps = 1e-6`` are the paper's.
    ``nesterov=True`` (optax's option, not in the paper) returns ``b1 m_t +
    (1 - b1) clip(...)``. With ``eps = 0``, a coordinate with ``v_{t-1} = 0``
    gets a zero normalised gradient rather than ``g / 0``.

    **optax's reference is wrong.** ``optax.contrib.adopt`` cites
    arXiv:2403.00855, which is another paper; ADOPT is arXiv:2411.02853.

    ==================================  =========================================  ===========
    adaptx                              optax 0.2.8 (``optax.contrib``)            torch 2.13
    ==================================  =========================================  ===========
    ``scale_by_adopt(b1, b2, eps,       ``scale_by_adopt(b1, b2, eps,              no ADOPT
    nesterov=n, use_clipping=c,         nesterov=n, use_clipping=c,
    clip_value_fn=f)``                  clip_value_fn=f)``
    ``mu_dtype=d``                      ``mu_dtype=d``
    ``nu_dtype``                        no mapping
    ==================================  =========================================  ===========

    Args:
      b1: decay of the momentum, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: the normaliser's floor, ``max(sqrt(v), eps)``, >= 0.
      nesterov: use Nesterov momentum.
      use_clipping: clip the normalised gradient to ``[-c_t, c_t]``.
      clip_value_fn: ``t -> c_t`` (default ``t**0.25``).
      mu_dtype: dtype of ``m``; ``None`` = the parameter's.
      nu_dtype: dtype of ``v``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdamState`` (as optax's).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_adopt()
      >>> state = tx.init(jnp.zeros(2))
      >>> out, state = tx.update(jnp.array([2.0, -4.0]), state)  # only v_0 = g**2
      >>> out  # 0 * g
      Array([ 0., -0.], dtype=float32)
      >>> out, state = tx.update(jnp.array([2.0, 4.0]), state)  # 0.1 * g / |g_0|
      >>> out
      Array([0.1, 0.1], dtype=float32)

    References:
      Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki,
      Iwasawa & Matsuo, "ADOPT: Modified Adam Can Converge with Any beta2
      with the Optimal Rate", NeurIPS 2024, https://arxiv.org/abs/2411.02853
    """
    check_moment_hyperparams(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if not callable(clip_value_fn):
        raise TypeError(f"clip_value_fn must be callable (t -> value), got {clip_value_fn!r}")

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_adopt", state, ScaleByAdamState)
        check_moment_updates("scale_by_adopt", updates, state, mu_dtype, nu_dtype, params)
        first = state.count == 0

        @functools.cache
        def scalars(cdt):
            t = jnp.asarray(state.count).astype(cdt)
            clip_value = jnp.asarray(clip_value_fn(t)).astype(cdt) if use_clipping else None
            return hyperparam(b1, cdt), hyperparam(b2, cdt), hyperparam(eps, cdt), clip_value

        def step(g, m, v):
            cdt = leaf_compute_dtype(g, m, v)
            b, bb, e, c = scalars(cdt)
            g_w = widen(g, cdt)
            v_old = v.astype(cdt)
            normed = divide_or_zero(g_w, jnp.maximum(jnp.sqrt(v_old), e))
            if c is not None:
                normed = _clip(normed, c)
            m_new = times(widen(m, cdt), b) + times(normed, 1 - b)
            out = times(m_new, b) + times(normed, 1 - b) if nesterov else m_new
            g2 = abs_sq(g_w)
            v_new = jnp.where(first, g2, bb * v_old + (1 - bb) * g2)
            m_new = jnp.where(first, widen(m, cdt), m_new)
            # The first step only measures v_0; its zero direction is 0 * g, so a
            # non-finite gradient still shows (0 * nan = 0 * inf = nan).
            out = jnp.where(first, times(g_w, jnp.zeros((), cdt)), out)
            return out.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        triples = jax.tree.map(step, updates, state.mu, state.nu)
        outer = jax.tree.structure(updates)
        if outer.num_leaves:
            out, mu, nu = jax.tree.transpose(outer, jax.tree.structure((0, 0, 0)), triples)
        else:  # no leaves (optax's tree.map_params placeholder): nothing to update
            out, mu, nu = updates, state.mu, state.nu
        return out, ScaleByAdamState(count=safe_increment(state.count), mu=mu, nu=nu)

    return GradientTransformation(init_adam_state(mu_dtype, nu_dtype), update_fn)


def adopt(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.9999,
    eps: float | jax.Array = 1e-6,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_root,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """ADOPT (Taniguchi et al., NeurIPS 2024).

    ::

        chain(scale_by_adopt(b1, b2, eps, ...), scale_by_learning_rate(learning_rate))

    ``learning_rate = 1e-3`` is the default of the authors' code. The first
    step leaves the parameters where they are (it only measures ``v_0``).
    ``optax.contrib.adopt(lr, b1, b2, eps, ...)`` is the same optimizer; see
    ``scale_by_adopt``.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, nesterov, use_clipping, clip_value_fn, mu_dtype, nu_dtype: as in
        ``scale_by_adopt``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.adopt(0.1)
      >>> state = tx.init(jnp.zeros(1))
      >>> _, state = tx.update(jnp.array([2.0]), state)
      >>> updates, _ = tx.update(jnp.array([2.0]), state)
      >>> updates
      Array([-0.01], dtype=float32)

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2
      with the Optimal Rate", NeurIPS 2024, https://arxiv.org/abs/2411.02853
    """
    return chain(
        scale_by_adopt(
            b1,
            b2,
            eps,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )
