"""Yogi (Zaheer et al., NeurIPS 2018): Adam with an additive second-moment update.

Dtypes follow the Adam family (``adaptx/_adam.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from adaptx._adam import (
    ScaleByAdamState,
    check_moment_hyperparams,
    check_moment_updates,
    divide,
    divide_or_zero,
    init_first_moment,
    init_second_moment,
    leaf_compute_dtype,
    widen,
)
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule
from adaptx._combine import chain
from adaptx._numerics import (
    abs_sq,
    hyperparam,
    one_minus_pow,
    safe_increment,
    tree_update_moment,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._sharding import full_like
from adaptx._signature import check_state
from adaptx._validate import check_nonnegative


def _fill(params: Params, zeros: Any, value: Any) -> Any:
    """A tree like ``zeros`` (dtypes) filled with ``value``, placed and sharded like ``params``."""
    return jax.tree.map(lambda p, z: full_like(p, value, z.dtype), params, zeros)


def scale_by_yogi(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-3,
    eps_root: float | jax.Array = 0.0,
    initial_accumulator_value: float | jax.Array = 1e-6,
    *,
    initial_mu_value: float | jax.Array = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Yogi's direction (Zaheer et al., NeurIPS 2018, Algorithm 2).

    With ``g_t`` the incoming update and ``t = 1, 2, ...``::

        m_t   = b1 m_{t-1} + (1 - b1) g_t
        v_t   = v_{t-1} - (1 - b2) sign(v_{t-1} - |g_t|**2) |g_t|**2
        out_t = (m_t / (1 - b1**t)) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    Adam's ``v_t - v_{t-1} = (1 - b2) (g_t**2 - v_{t-1})`` grows with
    ``v_{t-1}``; Yogi's change has the same sign but the size of ``g_t**2``
    only, so ``v`` (and the effective step) changes slowly. ``v`` stays
    non-negative. ``eps = 1e-3`` (much larger than Adam's) is the paper's
    recommendation; ``v_0 = initial_accumulator_value = 1e-6`` is optax's
    default (and TensorFlow Addons'). The bias corrections are Adam's, as in
    optax.

    **optax starts the momentum at 1e-6 too.** ``optax.scale_by_yogi`` fills
    *both* ``mu`` and ``nu`` with ``initial_accumulator_value``; the paper
    (and adaptx) start ``m_0 = 0``. ``initial_mu_value=1e-6`` reproduces
    optax: its first updates are off by ``1e-6 b1**t / (1 - b1**t)`` over
    ``sqrt(v_hat)``, visible where gradients are small.

    =====================================  ===================================  ===========
    adaptx                                 optax 0.2.8                          torch 2.13
    =====================================  ===================================  ===========
    ``scale_by_yogi(b1, b2, eps,           ``scale_by_yogi(b1, b2, eps,         no Yogi
    eps_root, v0, initial_mu_value=v0)``   eps_root, v0)``
    ``mu_dtype``, ``nu_dtype``             no mapping
    =====================================  ===================================  ===========

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: the second moment's rate, in [0, 1).
      eps: added to ``sqrt(v_hat)``, >= 0.
      eps_root: added to ``v_hat`` inside the root, >= 0.
      initial_accumulator_value: ``v_0``, >= 0.
      initial_mu_value: ``m_0``, >= 0 (0 in the paper; optax uses ``v_0``).
      mu_dtype: dtype of ``m``; ``None`` = the parameter's.
      nu_dtype: dtype of ``v``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdamState`` (as optax's).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_yogi(eps=0.0, initial_accumulator_value=0.0)
      >>> out, _ = tx.update(jnp.array([2.0, -0.5]), tx.init(jnp.zeros(2)))
      >>> out  # first step from v_0 = 0: v_1 = (1 - b2) g**2, as Adam
      Array([ 1., -1.], dtype=float32)

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex
      Optimization", NeurIPS 2018,
      https://papers.nips.cc/paper_files/paper/2018/hash/90365351ccc7437a1309dc64e4db32a3-Abstract.html
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    check_nonnegative("initial_mu_value", initial_mu_value)

    def init_fn(params: Params) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=jnp.zeros((), jnp.int32),
            mu=_fill(params, init_first_moment(params, mu_dtype), initial_mu_value),
            nu=_fill(params, init_second_moment(params, nu_dtype), initial_accumulator_value),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_yogi", state, ScaleByAdamState)
        check_moment_updates("scale_by_yogi", updates, state, mu_dtype, nu_dtype, params)
        count = safe_increment(state.count)
        mu = tree_update_moment(updates, state.mu, b1, 1)

        def second(g, v):
            cdt = leaf_compute_dtype(g, v)
            g2 = abs_sq(widen(g, cdt))
            w = v.astype(cdt)
            return (w - (1 - hyperparam(b2, cdt)) * jnp.sign(w - g2) * g2).astype(v.dtype)

        nu = jax.tree.map(second, updates, state.nu)

        @functools.cache
        def scalars(cdt):
            return (
                one_minus_pow(b1, count, cdt),
                one_minus_pow(b2, count, cdt),
                hyperparam(eps, cdt),
                hyperparam(eps_root, cdt),
            )

        def direction(g, m, v):
            cdt = leaf_compute_dtype(g, m, v)
            c1, c2, e, er = scalars(cdt)
            denom = jnp.sqrt(v.astype(cdt) / c2 + er) + e
            return divide_or_zero(divide(widen(m, cdt), c1), denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def yogi(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-3,
    *,
    eps_root: float | jax.Array = 0.0,
    initial_accumulator_value: float | jax.Array = 1e-6,
    initial_mu_value: float | jax.Array = 0.0,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Yogi (Zaheer et al., NeurIPS 2018).

    ::

        chain(scale_by_yogi(b1, b2, eps, eps_root, initial_accumulator_value, ...),
              scale_by_learning_rate(learning_rate))

    ``learning_rate = 1e-2`` is the paper's recommended default.
    ``optax.yogi(lr, b1, b2, eps)`` is ``yogi(lr, b1, b2, eps,
    initial_mu_value=1e-6)`` (optax also starts the momentum at ``1e-6``;
    see ``scale_by_yogi``).

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, initial_accumulator_value, initial_mu_value, mu_dtype,
        nu_dtype: as in ``scale_by_yogi``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.yogi(eps=0.0, initial_accumulator_value=0.0)
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.01], dtype=float32)

    References:
      Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018,
      https://papers.nips.cc/paper_files/paper/2018/hash/90365351ccc7437a1309dc64e4db32a3-Abstract.html
    """
    return chain(
        scale_by_yogi(
            b1,
            b2,
            eps,
            eps_root,
            initial_accumulator_value,
            initial_mu_value=initial_mu_value,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )
