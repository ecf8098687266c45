"""Variants of Adam: AMSGrad and NAdam (RAdam is in ``_radam.py``).

Dtype rules, complex support and hyper-parameter numerics are those of
``_adam.py`` (see its module docstring).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._adam import (
    ScaleByAdamState,
    check_moment_hyperparams,
    check_moment_updates,
    divide,
    divide_or_zero,
    init_adam_state,
    init_first_moment,
    init_second_moment,
    leaf_compute_dtype,
    times,
    update_moments,
    widen,
)
from adaptx._base import GradientTransformation, Params
from adaptx._numerics import (
    compute_dtype,
    hyperparam,
    one_minus_pow,
    safe_increment,
)
from adaptx._signature import check_state
from adaptx._validate import check_nonnegative

# --- AMSGrad ------------------------------------------------------------------

AmsgradVariant = Literal["max_raw", "max_corrected", "paper"]
_AMSGRAD_VARIANTS = ("max_raw", "max_corrected", "paper")


class ScaleByAmsgradState(NamedTuple):
    """State of ``scale_by_amsgrad``.

    Attributes:
      count: number of updates so far (int32, saturating).
      mu: first moment, ``mu_dtype``.
      nu: second moment, ``nu_dtype``, real.
      nu_max: running maximum of the second moment (raw, or bias-corrected for
        ``variant="max_corrected"``), ``nu_dtype``.
    """

    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any


def scale_by_amsgrad(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    variant: AmsgradVariant = "max_raw",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Scales updates like Adam with a non-decreasing second moment (AMSGrad).

    ``m_t``, ``v_t`` as in Adam (``scale_by_adam``); ``c1 = 1 - b1**t``,
    ``c2 = 1 - b2**t``. Three variants, one state type:

    - ``variant="max_raw"`` (default; torch ``Adam(amsgrad=True)``)::

          v_max_t = max(v_max_{t-1}, v_t)
          out_t   = (m_t / c1) / (sqrt(v_max_t / c2 + eps_root) + eps)

    - ``variant="paper"`` (Reddi, Kale & Kumar, Algorithm 2: no bias
      correction at all; ``eps=0`` is the paper exactly, but then a
      coordinate with a zero gradient from the start gives 0/0)::

          v_max_t = max(v_max_{t-1}, v_t)
          out_t   = m_t / (sqrt(v_max_t + eps_root) + eps)

    - ``variant="max_corrected"`` (optax ``amsgrad``: the maximum is over the
      bias-corrected ``v_t / c2``, so the large early values of ``v_hat``
      stay locked in)::

          v_max_t = max(v_max_{t-1}, v_t / c2)
          out_t   = (m_t / c1) / (sqrt(v_max_t + eps_root) + eps)

    The default keeps Adam's bias correction (so the first steps are Adam's)
    while the maximum runs over the quantity the paper's analysis uses, the
    raw ``v_t``. The paper's experiments decay the step as ``alpha / sqrt(t)``
    (``inverse_sqrt_schedule``); the defaults ``b1 = 0.9``, ``b2 = 0.999`` are
    Adam's, as in the paper's experiments.

    ===========================  ====================================  =============================
    adaptx                       optax 0.2.8                           torch 2.13
    ===========================  ====================================  =============================
    ``variant="max_raw"``        no mapping (1.6e-2 apart after 10     ``Adam(amsgrad=True)`` (the
                                 steps)                                whole optimizer: ``amsgrad``)
    ``variant="max_corrected"``  ``scale_by_amsgrad(b1, b2, eps,       no mapping
                                 eps_root)``
    ``variant="paper"``          ``scale_by_amsgrad(...,               no mapping
                                 bias_correction_mu=False,
                                 bias_correction_nu=False)``
    ``mu_dtype=d``               ``mu_dtype=d``                        no mapping
    ``nu_dtype=d``               no mapping                            no mapping
    ===========================  ====================================  =============================

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      variant: ``"max_raw"``, ``"paper"`` or ``"max_corrected"`` (above).
      mu_dtype: dtype of the first moment; ``None`` = the parameter's.
      nu_dtype: dtype of ``nu`` and ``nu_max``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAmsgradState``.

    Raises:
      ValueError: for an unknown ``variant`` or a concrete hyper-parameter out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_amsgrad(b2=0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> out, state = tx.update(jnp.array([4.0]), state)
      >>> out, state = tx.update(jnp.array([0.0]), state)  # v halves, v_max stays
      >>> state.nu, state.nu_max
      (Array([4.], dtype=float32), Array([8.], dtype=float32))

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018,
      https://openreview.net/forum?id=ryQu7f-RZ (Algorithm 2).
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if variant not in _AMSGRAD_VARIANTS:
        raise ValueError(f"variant must be one of {_AMSGRAD_VARIANTS}, got {variant!r}")

    def init_fn(params: Params) -> ScaleByAmsgradState:
        nu = init_second_moment(params, nu_dtype)
        return ScaleByAmsgradState(
            count=jnp.zeros((), jnp.int32),
            mu=init_first_moment(params, mu_dtype),
            nu=nu,
            nu_max=nu,
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_amsgrad", state, ScaleByAmsgradState)
        check_moment_updates("scale_by_amsgrad", updates, state, mu_dtype, nu_dtype, params)
        count, mu, nu = update_moments(updates, state, b1, b2)

        @functools.cache
        def scalars(cdt):
            return (
                one_minus_pow(b1, count, cdt),
                one_minus_pow(b2, count, cdt),
                hyperparam(eps, cdt),
                hyperparam(eps_root, cdt),
            )

        def new_max(v, v_max):
            cdt = compute_dtype(v.dtype)
            v = v.astype(cdt)
            if variant == "max_corrected":
                v = v / scalars(cdt)[1]
            return jnp.maximum(v_max.astype(cdt), v).astype(v_max.dtype)

        nu_max = jax.tree.map(new_max, nu, state.nu_max)

        def direction(g, m, v_max):
            cdt = leaf_compute_dtype(g, m, v_max)
            c1, c2, e, er = scalars(cdt)
            m_hat = widen(m, cdt)
            v_hat = v_max.astype(cdt)
            if variant != "paper":
                m_hat = divide(m_hat, c1)
            if variant == "max_raw":
                v_hat = v_hat / c2
            return divide_or_zero(m_hat, jnp.sqrt(v_hat + er) + e).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu_max)
        return out, ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init_fn, update_fn)


# --- NAdam --------------------------------------------------------------------


class ScaleByNadamState(NamedTuple):
    """State of ``scale_by_nadam``.

    Attributes:
      count: number of updates so far (int32, saturating).
      mu: first moment, ``mu_dtype``.
      nu: second moment, ``nu_dtype``, real.
      mu_product: ``prod_{i<=t} mu_i``, the product of the momentum schedule,
        a float32 scalar (float64 when a parameter is float64).
    """

    count: jax.Array
    mu: Any
    nu: Any
    mu_product: jax.Array


def _product_dtype(params: Params) -> np.dtype:
    dtypes = [compute_dtype(jnp.result_type(x)) for x in jax.tree.leaves(params)]
    return max(dtypes, key=lambda d: d.itemsize, default=jnp.dtype(jnp.float32))


def _dozat_momentum(b1: Any, psi: Any, t: jax.Array, dtype: Any) -> jax.Array:
    """``mu_t = b1 (1 - 0.5 * 0.96**(t psi))`` in ``dtype`` (``t`` a float array)."""
    log_096 = jnp.log(jnp.asarray(0.96, dtype))
    return hyperparam(b1, dtype) * (1 - 0.5 * jnp.exp(t * hyperparam(psi, dtype) * log_096))


def scale_by_nadam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    momentum_decay: float | jax.Array | None = 4e-3,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Scales updates by Adam with Nesterov momentum (NAdam, Dozat 2016).

    With the momentum schedule ``mu_t = b1 (1 - 0.5 * 0.96**(t psi))``,
    ``psi = momentum_decay``, and ``P_t = prod_{i=1..t} mu_i``::

        m_t   = b1 m_{t-1} + (1 - b1) g_t
        v_t   = b2 v_{t-1} + (1 - b2) |g_t|**2
        m_bar = (1 - mu_t) g_t / (1 - P_t) + mu_{t+1} m_t / (1 - P_t mu_{t+1})
        out_t = m_bar / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    The moving average ``m_t`` uses the constant ``b1`` and the schedule
    enters through the Nesterov weights and the products, as in Dozat's
    reference implementation (Keras) and torch ``NAdam``. ``P_t`` is kept in
    the state in float32 (float64 for float64 parameters); with the schedule
    ``1 - P_t >= 0.5``, so it never cancels.

    ``momentum_decay=None`` gives the constant ``mu_t = b1`` (optax's
    ``nadam``, ``= optax.adam(nesterov=True)``):
    ``m_bar = (1 - b1) g_t / (1 - b1**t) + b1 m_t / (1 - b1**(t+1))``, with
    both corrections computed by ``one_minus_pow`` (accurate for ``b1`` near 1).

    The paper's Algorithm 2 also multiplies ``v_hat`` by ``b2``; like optax,
    torch and Keras, adaptx does not. Defaults ``b1 = 0.9``, ``b2 = 0.999``,
    ``eps = 1e-8``, ``psi = 0.004`` are Dozat's (and torch's).

    ========================  ==================================  ==================================
    adaptx                    optax 0.2.8                         torch 2.13
    ========================  ==================================  ==================================
    default (schedule)        no mapping (2.4e-2 apart after 10   ``NAdam(betas=(b1, b2), eps=eps,
                              steps)                              momentum_decay=psi)`` (the whole
                                                                  optimizer: ``nadam``)
    ``momentum_decay=None``   ``scale_by_adam(b1, b2, eps,        no exact mapping (a huge
                              nesterov=True)``                    ``momentum_decay`` comes close)
    ``eps_root=r``            ``eps_root=r``                      no mapping
    ``mu_dtype=d``            ``mu_dtype=d``                      no mapping
    ``nu_dtype=d``            no mapping                          no mapping
    ========================  ==================================  ==================================

    Args:
      b1: decay of the first moment and scale of the momentum schedule, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      momentum_decay: ``psi >= 0`` of the schedule; ``None`` for a constant ``b1``.
      mu_dtype: dtype of the first moment; ``None`` = the parameter's.
      nu_dtype: dtype of the second moment; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByNadamState``; with
      ``momentum_decay=None``, ``ScaleByAdamState`` (optax's layout: there is
      no schedule product to keep).

    Raises:
      ValueError: for a concrete hyper-parameter out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_nadam()
      >>> state = tx.init(jnp.zeros(2))
      >>> out, state = tx.update(jnp.array([3.0, 0.0]), state)
      >>> out.round(4)  # g/|g| plus the Nesterov look-ahead mu_2 m_1 / (1 - mu_1 mu_2) / |g|
      Array([1.0565, 0.    ], dtype=float32)
      >>> state.mu_product.round(6)  # mu_1 = 0.9 * (1 - 0.5 * 0.96**0.004)
      Array(0.450073, dtype=float32)

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 Workshop,
      https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if momentum_decay is not None:
        check_nonnegative("momentum_decay", momentum_decay)

    constant = momentum_decay is None
    state_type = ScaleByAdamState if constant else ScaleByNadamState

    def init_fn(params: Params) -> Any:
        if constant:  # optax's layout: nothing to keep beyond Adam's moments
            return init_adam_state(mu_dtype, nu_dtype)(params)
        return ScaleByNadamState(
            count=jnp.zeros((), jnp.int32),
            mu=init_first_moment(params, mu_dtype),
            nu=init_second_moment(params, nu_dtype),
            mu_product=jnp.ones((), _product_dtype(params)),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_nadam", state, state_type)
        check_moment_updates("scale_by_nadam", updates, state, mu_dtype, nu_dtype, params)
        count, mu, nu = update_moments(updates, state, b1, b2)
        if not constant:
            pdt = state.mu_product.dtype
            t = count.astype(pdt)
            mu_t = _dozat_momentum(b1, momentum_decay, t, pdt)
            mu_next = _dozat_momentum(b1, momentum_decay, t + 1, pdt)
            product = state.mu_product * mu_t

        @functools.cache
        def scalars(cdt):
            if constant:
                b = hyperparam(b1, cdt)
                w_g = (1 - b) / one_minus_pow(b1, count, cdt)
                w_m = b / one_minus_pow(b1, safe_increment(count), cdt)
            else:
                w_g = (1 - mu_t).astype(cdt) / (1 - product).astype(cdt)
                w_m = mu_next.astype(cdt) / (1 - product * mu_next).astype(cdt)
            return (
                w_g,
                w_m,
                one_minus_pow(b2, count, cdt),
                hyperparam(eps, cdt),
                hyperparam(eps_root, cdt),
            )

        def direction(g, m, v):
            cdt = leaf_compute_dtype(g, m, v)
            w_g, w_m, c2, e, er = scalars(cdt)
            m_bar = times(widen(g, cdt), w_g) + times(widen(m, cdt), w_m)
            denom = jnp.sqrt(v.astype(cdt) / c2 + er) + e
            return divide_or_zero(m_bar, denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        if constant:
            return out, ScaleByAdamState(count=count, mu=mu, nu=nu)
        return out, ScaleByNadamState(count=count, mu=mu, nu=nu, mu_product=product)

    return GradientTransformation(init_fn, update_fn)
