"""Learning-rate-free Adam: D-Adaptation (ICML 2023) and Prodigy (ICML 2024).

Both estimate ``d``, the distance from the initial point to a solution, from
the gradients seen so far, and use ``d`` times the (schedule) learning rate as
Adam's step size, so ``learning_rate = 1`` (or a schedule starting at 1)
needs no tuning.

Their states are initialised from the parameters' shapes and dtypes alone:
``jax.eval_shape(tx.init, params)`` and ``init`` on placeholder parameters
give the real initial state. Prodigy needs the initial point ``x_0``; adaptx
records it on the first ``update`` (``params0`` starts at zeros and is set to
the ``params`` passed to the first update). optax.contrib's ``prodigy`` keeps
``params0 = params`` from ``init``: a state built before the parameters are
loaded (from shapes, placeholders, or zeros) measures distances from the
wrong point for the whole run, and ``params0`` aliases the parameters' own
buffers.

The scalars ``estim_lr`` (``d``) and ``numerator_weighted`` are float32 (float64
for float64 parameters); optax keeps them in the parameters' lowest dtype
(bfloat16 for a model with any bfloat16 leaf). Real parameters only.

Sharding: the inner products and the l1 norm are sums over every parameter;
under sharded ``jit`` they are global (no axis name needed) but reduced in
another order than on one device, and ``d``, a running maximum of their
ratio, carries the float32 rounding into every later step. Measured on the
test suite's small model after its sharded steps: Prodigy within 2e-3
relative of the one-device run, D-Adaptation (whose numerator is a sum of
signed products that nearly cancel in the first steps) up to 5% on single
coordinates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import GradientTransformation, Params, ScalarOrSchedule
from adaptx._numerics import (
    compute_dtype,
    hyperparam,
    one_minus_pow,
    safe_increment,
    tree_map_unzip,
    widest_compute_dtype,
)
from adaptx._sharding import zeros_like
from adaptx._signature import check_like, check_state
from adaptx._validate import check_decay, check_learning_rate, check_nonnegative, check_positive

_NEEDS_PARAMS = "{} needs the parameters: call tx.update(grads, state, params)"


def _check_common(learning_rate, betas, eps, estim_lr0, weight_decay) -> tuple[Any, Any]:
    check_learning_rate("learning_rate", learning_rate)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")
    check_decay("betas[0]", betas[0])
    check_decay("betas[1]", betas[1])
    check_nonnegative("eps", eps)
    check_positive("estim_lr0", estim_lr0)
    check_nonnegative("weight_decay", weight_decay)
    return betas[0], betas[1]


def _zeros(params: Params) -> Any:
    return jax.tree.map(zeros_like, params)


def _scalar_dtype(tree: Any) -> Any:
    return widest_compute_dtype(tree)


def _tree_sum(values: list[jax.Array], dtype: Any) -> jax.Array:
    return sum(values, jnp.zeros((), dtype))


def _step_scalars(learning_rate, b1, b2, count, d, bias_correction, sdt):
    """``(gamma_k, bc_k, dlr_k = d_k gamma_k bc_k)`` for the 0-based ``count``."""
    gamma = hyperparam(learning_rate(count) if callable(learning_rate) else learning_rate, sdt)
    if bias_correction:
        k1 = count + 1
        bc = jnp.sqrt(one_minus_pow(b2, k1, sdt)) / one_minus_pow(b1, k1, sdt)
    else:
        bc = jnp.ones((), sdt)
    return gamma, bc, d * gamma * bc


def _ratio_or_zero(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den``, 0 where ``den`` is exactly 0 (all gradients so far 0); NaN stays NaN."""
    zero = den == 0
    return jnp.where(zero, jnp.zeros((), num.dtype), num / jnp.where(zero, 1, den))


# --- D-Adaptation ----------------------------------------------------------------------


class DAdaptAdamWState(NamedTuple):
    """State of ``scale_by_dadapt_adamw`` and ``dadapt_adamw`` (optax.contrib's fields).

    Attributes:
      exp_avg: ``m``, the moving average of ``dlr_k g_k``.
      exp_avg_sq: ``v``, the moving average of ``g_k**2``.
      grad_sum: ``s``, the moving average of ``dlr_k g_k`` with decay ``sqrt(b2)``.
      estim_lr: ``d_k``, the distance estimate (float32 or wider).
      numerator_weighted: the numerator of ``d_hat`` (float32 or wider).
      count: int32 updates so far.
    """

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


def _dadapt(name, learning_rate, betas, eps, estim_lr0, weight_decay, bias_correction, sign):
    b1, b2 = _check_common(learning_rate, betas, eps, estim_lr0, weight_decay)

    def init_fn(params: Params) -> DAdaptAdamWState:
        sdt = _scalar_dtype(params)
        return DAdaptAdamWState(
            exp_avg=_zeros(params),
            exp_avg_sq=_zeros(params),
            grad_sum=_zeros(params),
            estim_lr=hyperparam(estim_lr0, sdt),
            numerator_weighted=jnp.zeros((), sdt),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state: DAdaptAdamWState, params=None, **extra_args):
        del extra_args
        check_state(name, state, DAdaptAdamWState)
        if params is None:
            raise ValueError(_NEEDS_PARAMS.format(name))
        check_like(name, updates, state.exp_avg, "exact", params)
        sdt = state.estim_lr.dtype
        d = state.estim_lr
        _, _, dlr = _step_scalars(learning_rate, b1, b2, state.count, d, bias_correction, sdt)
        sb2 = jnp.sqrt(hyperparam(b2, sdt))

        def moments(g, m, v, s):
            cdt = compute_dtype(jnp.result_type(g))
            wg = g.astype(cdt)
            e, c1, c2 = hyperparam(eps, cdt), hyperparam(b1, cdt), hyperparam(b2, cdt)
            q, lr_ = sb2.astype(cdt), dlr.astype(cdt)
            # <g_k, s_{k-1} / (sqrt(v_{k-1}) + eps)>, with the moments before this step.
            acc = jnp.sum(wg * s.astype(cdt) / (jnp.sqrt(v.astype(cdt)) + e)).astype(sdt)
            m = c1 * m.astype(cdt) + (1 - c1) * lr_ * wg
            v = c2 * v.astype(cdt) + (1 - c2) * wg * wg
            s = q * s.astype(cdt) + (1 - q) * lr_ * wg
            return acc, m.astype(g.dtype), v.astype(g.dtype), s.astype(g.dtype)

        accs, m, v, s = tree_map_unzip(
            4, moments, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum
        )
        acc = _tree_sum(jax.tree.leaves(accs), sdt)
        s_l1 = _tree_sum([jnp.sum(jnp.abs(x.astype(sdt))) for x in jax.tree.leaves(s)], sdt)
        num = sb2 * state.numerator_weighted + (1 - sb2) * dlr * acc
        d_new = jnp.maximum(d, _ratio_or_zero(num, (1 - sb2) * s_l1))

        def direction(g, m_, v_, p):
            cdt = compute_dtype(jnp.result_type(g))
            out = m_.astype(cdt) / (jnp.sqrt(v_.astype(cdt)) + hyperparam(eps, cdt))
            out = out + hyperparam(weight_decay, cdt) * dlr.astype(cdt) * p.astype(cdt)
            return (sign * out).astype(g.dtype)

        out = jax.tree.map(direction, updates, m, v, params)
        return out, DAdaptAdamWState(m, v, s, d_new, num, safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


_DADAPT_DOC = r"""

    With ``k = 0, 1, ...`` (``count``), ``gamma_k = learning_rate(k)`` (or the
    constant), ``d_0 = estim_lr0`` and ``q = sqrt(b2)``::

        bc_k    = sqrt(1 - b2**(k+1)) / (1 - b1**(k+1))   if bias_correction else 1
        dlr_k   = d_k gamma_k bc_k
        r_k     = q r_{k-1} + (1 - q) dlr_k <g_k, s_{k-1} / (sqrt(v_{k-1}) + eps)>
        m_k     = b1 m_{k-1} + (1 - b1) dlr_k g_k
        v_k     = b2 v_{k-1} + (1 - b2) g_k**2
        s_k     = q s_{k-1} + (1 - q) dlr_k g_k
        d_{k+1} = max(d_k, r_k / ((1 - q) ||s_k||_1))            (d_k while s_k = 0)
        step    = m_k / (sqrt(v_k) + eps) + weight_decay dlr_k x_k

    This is the paper's Adam variant as the authors' ``DAdaptAdam`` runs it
    (``decouple=True``, ``growth_rate=inf``, ``d_coef=1``). The learning rate
    is a multiplier on the estimated step: keep it 1, or a schedule that
    starts at 1 (a warm-up then linear or cosine decay is what the paper
    recommends). Defaults are the authors' and optax's, except
    ``bias_correction``, which the authors' code leaves off by default and
    optax.contrib always applies.

    ====================================  =============================================
    adaptx                                optax.contrib 0.2.8
    ====================================  =============================================
    ``dadapt_adamw(lr, betas, eps,``       ``dadapt_adamw(lr, betas, eps, estim_lr0,``
    ``estim_lr0, weight_decay,``           ``weight_decay)`` (float32 rounding)
    ``bias_correction=True)``
    default (``bias_correction=False``)    no mapping
    ====================================  =============================================

    torch 2.13 has no D-Adaptation optimizer. Unlike optax's, the state's
    scalars are float32 or wider (optax: the parameters' lowest dtype),
    hyper-parameters are validated, and a first step with an all-zero
    gradient leaves ``d`` unchanged instead of making it NaN (0/0); a NaN
    gradient still gives NaN.
"""


def scale_by_dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float | jax.Array = 1e-8,
    estim_lr0: float | jax.Array = 1e-6,
    weight_decay: float | jax.Array = 0.0,
    *,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""D-Adapted AdamW's step as a direction to subtract (``dadapt_adamw`` negates it)."""
    return _dadapt(
        "scale_by_dadapt_adamw",
        learning_rate,
        betas,
        eps,
        estim_lr0,
        weight_decay,
        bias_correction,
        1,
    )


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float | jax.Array = 1e-8,
    estim_lr0: float | jax.Array = 1e-6,
    weight_decay: float | jax.Array = 0.0,
    *,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""AdamW with D-Adaptation: a learning-rate-free AdamW.

    Returns ``-step`` (updates to add), with the same state as
    ``scale_by_dadapt_adamw``, which returns ``+step``.
    """
    return _dadapt(
        "dadapt_adamw", learning_rate, betas, eps, estim_lr0, weight_decay, bias_correction, -1
    )


_DADAPT_TAIL = r"""
    Args:
      learning_rate: the multiplier ``gamma_k`` of the estimated step size, a
        number >= 0 or a schedule of the 0-based count (1.0 by default).
      betas: ``(b1, b2)``, each in [0, 1).
      eps: added to ``sqrt(v)``, >= 0.
      estim_lr0: ``d_0 > 0``, the initial (under-)estimate of the distance.
      weight_decay: decoupled weight decay, scaled by ``dlr_k``, >= 0.
      bias_correction: multiply the step by Adam's ``sqrt(1 - b2**(k+1)) /
        (1 - b1**(k+1))`` (optax's behaviour).

    Returns:
      A ``GradientTransformation`` with state ``DAdaptAdamWState``; its
      ``update`` needs ``params``.

    Raises:
      ValueError: for a hyper-parameter out of range (concrete values only).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.dadapt_adamw()
      >>> shapes = {"w": jax.ShapeDtypeStruct((3, 2), jnp.float32)}
      >>> jax.eval_shape(tx.init, shapes).estim_lr  # from shapes alone
      ShapeDtypeStruct(shape=(), dtype=float32)

    References:
      Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation",
      ICML 2023, https://arxiv.org/abs/2301.07733; the authors' code,
      https://github.com/facebookresearch/dadaptation
"""

scale_by_dadapt_adamw.__doc__ = (scale_by_dadapt_adamw.__doc__ or "") + _DADAPT_DOC + _DADAPT_TAIL
dadapt_adamw.__doc__ = (dadapt_adamw.__doc__ or "") + _DADAPT_DOC + _DADAPT_TAIL


# --- Prodigy -----------------------------------------------------------------------------


class ProdigyState(NamedTuple):
    """State of ``scale_by_prodigy`` and ``prodigy`` (optax.contrib's fields).

    Attributes:
      exp_avg: ``m``, the moving average of ``d_k g_k``.
      exp_avg_sq: ``v``, the moving average of ``d_k**2 g_k**2``.
      grad_sum: ``s``, the weighted sum of past gradients (decay ``beta3``).
      params0: ``x_0``, zeros after ``init``, the parameters of the first
        ``update`` from then on.
      estim_lr: ``d_k`` (float32 or wider).
      numerator_weighted: ``r_k`` (float32 or wider).
      count: int32 updates so far.
    """

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    params0: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


def _prodigy(
    name,
    learning_rate,
    betas,
    beta3,
    eps,
    estim_lr0,
    estim_lr_coef,
    weight_decay,
    safeguard_warmup,
    bias_correction,
    sign,
):
    b1, b2 = _check_common(learning_rate, betas, eps, estim_lr0, weight_decay)
    if beta3 is not None:
        check_decay("beta3", beta3)
    check_nonnegative("estim_lr_coef", estim_lr_coef)

    def init_fn(params: Params) -> ProdigyState:
        sdt = _scalar_dtype(params)
        return ProdigyState(
            exp_avg=_zeros(params),
            exp_avg_sq=_zeros(params),
            grad_sum=_zeros(params),
            params0=_zeros(params),
            estim_lr=hyperparam(estim_lr0, sdt),
            numerator_weighted=jnp.zeros((), sdt),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state: ProdigyState, params=None, **extra_args):
        del extra_args
        check_state(name, state, ProdigyState)
        if params is None:
            raise ValueError(_NEEDS_PARAMS.format(name))
        check_like(name, updates, state.exp_avg, "exact", params)
        sdt = state.estim_lr.dtype
        d = state.estim_lr
        _, _, dlr = _step_scalars(learning_rate, b1, b2, state.count, d, bias_correction, sdt)
        b3 = jnp.sqrt(hyperparam(b2, sdt)) if beta3 is None else hyperparam(beta3, sdt)
        d0 = hyperparam(estim_lr0, sdt)
        first = state.count == 0
        s_scale = (d / d0) * (d if safeguard_warmup else dlr)
        r_scale = (d / d0) * dlr

        def moments(g, p, x0, m, v, s):
            cdt = compute_dtype(jnp.result_type(g))
            wg, wp = g.astype(cdt), p.astype(cdt)
            x0 = jnp.where(first, wp, x0.astype(cdt))  # x_0 recorded on the first update
            c1, c2, dd = hyperparam(b1, cdt), hyperparam(b2, cdt), d.astype(cdt)
            dot = jnp.sum(wg * (x0 - wp)).astype(sdt)
            m = c1 * m.astype(cdt) + (1 - c1) * dd * wg
            v = c2 * v.astype(cdt) + (1 - c2) * (dd * wg) ** 2
            s = b3.astype(cdt) * s.astype(cdt) + s_scale.astype(cdt) * wg
            dt = jnp.result_type(g)
            return dot, x0.astype(dt), m.astype(dt), v.astype(dt), s.astype(dt)

        dots, x0, m, v, s = tree_map_unzip(
            5,
            moments,
            updates,
            params,
            state.params0,
            state.exp_avg,
            state.exp_avg_sq,
            state.grad_sum,
        )
        dot = _tree_sum(jax.tree.leaves(dots), sdt)
        s_l1 = _tree_sum([jnp.sum(jnp.abs(x.astype(sdt))) for x in jax.tree.leaves(s)], sdt)
        num = b3 * state.numerator_weighted + r_scale * dot
        d_hat = hyperparam(estim_lr_coef, sdt) * _ratio_or_zero(num, s_l1)
        d_new = jnp.maximum(d, d_hat)

        def direction(g, m_, v_, p):
            cdt = compute_dtype(jnp.result_type(g))
            den = jnp.sqrt(v_.astype(cdt)) + d_new.astype(cdt) * hyperparam(eps, cdt)
            out = m_.astype(cdt) / den + hyperparam(weight_decay, cdt) * p.astype(cdt)
            return (sign * dlr.astype(cdt) * out).astype(g.dtype)

        out = jax.tree.map(direction, updates, m, v, params)
        return out, ProdigyState(m, v, s, x0, d_new, num, safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


_PRODIGY_DOC = r"""

    With ``k = 0, 1, ...`` (``count``), ``gamma_k = learning_rate(k)``,
    ``d_0 = estim_lr0``, ``x_0`` the parameters of the first update and
    ``beta3 = sqrt(b2)`` unless given::

        bc_k    = sqrt(1 - b2**(k+1)) / (1 - b1**(k+1))   if bias_correction else 1
        dlr_k   = d_k gamma_k bc_k
        m_k     = b1 m_{k-1} + (1 - b1) d_k g_k
        v_k     = b2 v_{k-1} + (1 - b2) d_k**2 g_k**2
        s_k     = beta3 s_{k-1} + (d_k / d_0) dlr_k g_k     (d_k instead of dlr_k with
                                                           safeguard_warmup)
        r_k     = beta3 r_{k-1} + (d_k / d_0) dlr_k <g_k, x_0 - x_k>
        d_{k+1} = max(d_k, estim_lr_coef r_k / ||s_k||_1)         (d_k while s_k = 0)
        step    = dlr_k (m_k / (sqrt(v_k) + d_{k+1} eps) + weight_decay x_k)

    The paper (Algorithm 4, Adam version) writes ``r`` and ``s`` with the
    factor ``(1 - sqrt(b2)) gamma_k d_k**2``; the authors' code and optax
    scale both by ``gamma_k d_k**2 bc_k / d_0`` instead, which leaves
    ``r_k / ||s_k||_1`` unchanged (for ``beta3 = sqrt(b2)``); and they put
    ``d_{k+1}`` (the paper: ``d_k``) next to ``eps``, as adaptx does. The
    learning rate is a multiplier on the estimated step: keep it 1, or a
    schedule that starts at 1. Defaults are the authors' (``prodigyopt``) and
    optax's, except ``bias_correction``: the authors' code leaves it off by
    default, optax.contrib always applies it.

    ====================================  =============================================
    adaptx                                optax.contrib 0.2.8
    ====================================  =============================================
    ``prodigy(lr, betas, beta3, eps,``     ``prodigy(lr, betas, beta3, eps, estim_lr0,``
    ``estim_lr0, estim_lr_coef,``          ``estim_lr_coef, weight_decay,``
    ``weight_decay, safeguard_warmup,``    ``safeguard_warmup)`` (float32 rounding)
    ``bias_correction=True)``
    default (``bias_correction=False``)    no mapping
    ====================================  =============================================

    torch 2.13 has no Prodigy. **Initialisation from shapes.** optax's
    ``init`` stores ``params0 = params``; adaptx's stores zeros and records
    ``x_0`` on the first update, so ``init`` reads no parameter values (the
    same numbers as optax when ``init`` and the first update see the same
    parameters). Unlike optax's, the scalars are float32 or wider,
    hyper-parameters are validated, and a first step with an all-zero
    gradient leaves ``d`` unchanged instead of making it NaN (0/0); a NaN
    gradient still gives NaN.

    Args:
      learning_rate: the multiplier ``gamma_k`` of the estimated step size, a
        number >= 0 or a schedule of the 0-based count (1.0 by default).
      betas: ``(b1, b2)``, each in [0, 1).
      beta3: decay of ``r`` and ``s`` in [0, 1); ``None`` = ``sqrt(b2)``.
      eps: added to ``sqrt(v)`` (times ``d``), >= 0.
      estim_lr0: ``d_0 > 0``, the initial (under-)estimate of the distance.
      estim_lr_coef: multiplies every estimate ``d_hat``, >= 0.
      weight_decay: decoupled weight decay, scaled by ``dlr_k``, >= 0.
      safeguard_warmup: leave ``gamma_k`` out of ``s`` (for warm-up schedules).
      bias_correction: Adam's ``sqrt(1 - b2**(k+1)) / (1 - b1**(k+1))`` in
        ``dlr_k`` (optax's behaviour).

    Returns:
      A ``GradientTransformation`` with state ``ProdigyState``; its
      ``update`` needs ``params``.

    Raises:
      ValueError: for a hyper-parameter out of range (concrete values only).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.prodigy()
      >>> shapes = {"w": jax.ShapeDtypeStruct((3, 2), jnp.float32)}
      >>> jax.eval_shape(tx.init, shapes).params0["w"]  # no parameter value read
      ShapeDtypeStruct(shape=(3, 2), dtype=float32)

    References:
      Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
      Parameter-Free Learner", ICML 2024, https://arxiv.org/abs/2306.06101;
      the authors' code, https://github.com/konstmish/prodigy
"""


def scale_by_prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    estim_lr0: float | jax.Array = 1e-6,
    estim_lr_coef: float | jax.Array = 1.0,
    weight_decay: float | jax.Array = 0.0,
    safeguard_warmup: bool = False,
    *,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Prodigy's step as a direction to subtract (``prodigy`` negates it)."""
    return _prodigy(
        "scale_by_prodigy",
        learning_rate,
        betas,
        beta3,
        eps,
        estim_lr0,
        estim_lr_coef,
        weight_decay,
        safeguard_warmup,
        bias_correction,
        1,
    )


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    estim_lr0: float | jax.Array = 1e-6,
    estim_lr_coef: float | jax.Array = 1.0,
    weight_decay: float | jax.Array = 0.0,
    safeguard_warmup: bool = False,
    *,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Prodigy: a learning-rate-free AdamW that adapts ``d`` faster than D-Adaptation.

    Returns ``-step`` (updates to add), with the same state as
    ``scale_by_prodigy``, which returns ``+step``.
    """
    return _prodigy(
        "prodigy",
        learning_rate,
        betas,
        beta3,
        eps,
        estim_lr0,
        estim_lr_coef,
        weight_decay,
        safeguard_warmup,
        bias_correction,
        -1,
    )


scale_by_prodigy.__doc__ = (scale_by_prodigy.__doc__ or "") + _PRODIGY_DOC
prodigy.__doc__ = (prodigy.__doc__ or "") + _PRODIGY_DOC
