"""RAdam (Liu et al., ICLR 2020): Adam with a rectified adaptive learning rate.

Dtype rules, complex support and hyper-parameter numerics are those of
``_adam.py`` (see its module docstring).
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
    init_adam_state,
    leaf_compute_dtype,
    times,
    update_moments,
    widen,
)
from adaptx._base import GradientTransformation
from adaptx._numerics import (
    hyperparam,
    log_decay,
    one_minus_pow,
    safe_increment,
)
from adaptx._signature import check_state
from adaptx._validate import check_range

# --- rho_t --------------------------------------------------------------------

# B_2k / (2k)!: (x/2) coth(x/2) = 1 + sum_k _BERNOULLI[k-1] x**(2k) (|x| < 2 pi).
_BERNOULLI = (
    1 / 12,
    -1 / 720,
    1 / 30240,
    -1 / 1209600,
    1 / 47900160,
    -691 / 1307674368000,
    1 / 74724249600,
)
_SERIES_MAX = 0.5  # use the series for t * log(1/b2) <= 0.5 (truncation < 1e-17 relative)


def _coth_series_minus_one(x: jax.Array) -> jax.Array:
    """``(x/2) coth(x/2) - 1`` for ``|x| <= 0.5``, without cancellation."""
    y = x * x
    acc = jnp.zeros_like(y)
    for c in reversed(_BERNOULLI):
        acc = (acc + c) * y
    return acc


def radam_rho(b2: Any, count: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """RAdam's ``rho_t = rho_inf - 2 t b2**t / (1 - b2**t)``, accurate for ``b2`` near 1.

    Computed as written the two terms, each about ``2 / (1 - b2)``, cancel
    (in float32 with ``b2 = 0.99999`` nothing is left of ``rho_t ~ t``).
    With ``a = -log(b2)`` and ``D(x) = (x/2) coth(x/2) - 1``, an exact
    rewriting is ``rho_t = t - (2/a) (D(t a) - D(a))``; for ``t a <= 0.5``
    ``D`` is evaluated by its Bernoulli series, which has no cancellation.
    For ``t a > 0.5`` the direct form ``2/(1-b2) - 1 - 2t/expm1(t a)`` loses
    at most a few bits. ``b2`` is rounded to ``dtype`` once (``hyperparam``)
    and the result is accurate for that value (a few ulps).

    Args:
      b2: the second-moment decay, in [0, 1); a number or a scalar array.
      count: the step count ``t >= 1`` (an integer array).
      dtype: the floating dtype to compute in.

    Returns:
      A scalar array of ``dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> [round(float(adaptx.radam_rho(0.99999, jnp.asarray(t))), 5) for t in (5, 6)]
      [4.99996, 5.99994]
    """
    d = hyperparam(b2, dtype)
    t = jnp.asarray(count).astype(dtype)
    a = -log_decay(d)
    x = t * a
    series = t - (2 / a) * (_coth_series_minus_one(x) - _coth_series_minus_one(a))
    direct = (2 / (1 - d) - 1) - 2 * t / jnp.expm1(x)
    return jnp.where(x <= _SERIES_MAX, series, direct)


def scale_by_radam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    threshold: float | jax.Array = 5.0,
    *,
    eps_before_bias_correction: bool = False,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Scales updates by Rectified Adam (RAdam, Liu et al.).

    With ``m_hat``, ``v_hat`` Adam's bias-corrected moments, ``rho_inf =
    2 / (1 - b2) - 1`` and ``rho_t = rho_inf - 2 t b2**t / (1 - b2**t)``::

        if rho_t > threshold:
            r_t   = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            out_t = r_t m_hat_t / (sqrt(v_hat_t + eps_root) + eps)
        else:
            out_t = m_hat_t                  # momentum SGD with bias correction

    ``rho_t`` is computed without cancellation (``radam_rho``), so it is
    right for ``b2`` up to 0.99999 in float32: ``rho_t`` is a little below
    ``t`` for ``b2`` near 1 and the first rectified step is step 6 with the
    threshold 5, whatever ``b2``. (optax 0.2.8 computes ``rho_t`` in float32
    as written and rectifies from step 2 with ``b2 = 0.9999`` and from step 1
    with ``b2 = 0.99999``.)

    **Threshold.** The paper's Algorithm 2 uses 4 (``threshold=4.0``); the
    authors' code, torch and optax use 5, the default here.

    **eps placement.** The paper has no ``eps`` (``0 * inf`` on a zero
    coordinate). adaptx adds it as Adam does, ``sqrt(v_hat) + eps``, which is
    optax's placement and makes RAdam's rectified step Adam's step times
    ``r_t``. torch instead computes ``sqrt(1 - b2**t) / (sqrt(v_t) + eps)``,
    i.e. ``sqrt(v_hat) + eps / sqrt(1 - b2**t)``:
    ``eps_before_bias_correction=True`` reproduces it.

    ``nesterov=True`` replaces ``m_hat_t`` by
    ``b1 m_t / (1 - b1**(t+1)) + (1 - b1) g_t / (1 - b1**t)`` (optax's
    ``nesterov``). Defaults ``b1 = 0.9``, ``b2 = 0.999``, ``eps = 1e-8`` are
    the authors' code's.

    ==============================  ================================  ==============================
    adaptx                          optax 0.2.8                       torch 2.13
    ==============================  ================================  ==============================
    default                         ``scale_by_radam(b1, b2, eps)``,  no mapping (eps placement)
                                    where its ``rho_t`` is right (b2
                                    <= 0.999)
    ``eps_before_bias_correction``  no mapping                        ``RAdam(betas=(b1, b2),
                                                                      eps=eps)`` (the whole
                                                                      optimizer: ``radam``)
    ``threshold=x``                 ``threshold=x``                   5 only
    ``nesterov=True``               ``nesterov=True``                 no mapping
    ``eps_root``, ``mu_dtype``      same names                        no mapping
    ``nu_dtype``                    no mapping                        no mapping
    ==============================  ================================  ==============================

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      threshold: rectify when ``rho_t > threshold``; at least 4 (``r_t`` is
        undefined below).
      eps_before_bias_correction: torch's ``eps`` placement (above).
      nesterov: use the Nesterov first-moment estimate.
      mu_dtype: dtype of the first moment; ``None`` = the parameter's.
      nu_dtype: dtype of the second moment; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdamState``.

    Raises:
      ValueError: for a concrete hyper-parameter out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_radam()
      >>> state = tx.init(jnp.zeros(1))
      >>> out, state = tx.update(jnp.array([3.0]), state)
      >>> out  # not rectified yet: the bias-corrected momentum
      Array([3.], dtype=float32)

    References:
      Liu, Jiang, He, Chen, Liu, Gao & Han, "On the Variance of the Adaptive
      Learning Rate and Beyond", ICLR 2020, https://arxiv.org/abs/1908.03265
      (Algorithm 2).
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    check_range("threshold", threshold, 4.0, None)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_radam", state, ScaleByAdamState)
        check_moment_updates("scale_by_radam", updates, state, mu_dtype, nu_dtype, params)
        count, mu, nu = update_moments(updates, state, b1, b2)

        @functools.cache
        def scalars(cdt):
            rho = radam_rho(b2, count, cdt)
            d = hyperparam(b2, cdt)
            rho_inf = 2 / (1 - d) - 1
            r = jnp.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            c1 = one_minus_pow(b1, count, cdt)
            c2 = one_minus_pow(b2, count, cdt)
            e = hyperparam(eps, cdt)
            if eps_before_bias_correction:
                e = e / jnp.sqrt(c2)
            b = hyperparam(b1, cdt)
            c1_next = one_minus_pow(b1, safe_increment(count), cdt)
            er = hyperparam(eps_root, cdt)
            return rho > hyperparam(threshold, cdt), r, b, c1, c1_next, c2, e, er

        def direction(g, m, v):
            cdt = leaf_compute_dtype(g, m, v)
            rectify, r, b, c1, c1_next, c2, e, er = scalars(cdt)
            if nesterov:
                m_hat = times(widen(m, cdt), b / c1_next) + times(widen(g, cdt), (1 - b) / c1)
            else:
                m_hat = divide(widen(m, cdt), c1)
            denom = jnp.sqrt(v.astype(cdt) / c2 + er) + e
            rectified = times(divide_or_zero(m_hat, denom), r)
            return jnp.where(rectify, rectified, m_hat).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_adam_state(mu_dtype, nu_dtype), update_fn)
