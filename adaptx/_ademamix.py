"""AdEMAMix (Pagliardini, Ablin & Grangier, ICLR 2025): Adam plus a slow momentum.

Dtypes follow the Adam family (``adaptx/_adam.py``). The paper's warm-up
schedulers for ``alpha`` and ``b3`` are here too.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adam import (
    check_moment_hyperparams,
    divide,
    divide_or_zero,
    init_first_moment,
    init_second_moment,
    leaf_compute_dtype,
    times,
    widen,
)
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule, Schedule
from adaptx._combine import chain
from adaptx._numerics import (
    hyperparam,
    log_decay,
    one_minus_pow,
    safe_increment,
    tree_update_moment,
    tree_update_moment_per_elem_norm,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._signature import check_like, check_state
from adaptx._validate import (
    check_decay,
    check_integer,
    check_nonnegative,
    check_range,
    check_schedule_start,
)
from adaptx._weight_decay import add_decayed_weights


class ScaleByAdemamixState(NamedTuple):
    """State of ``scale_by_ademamix`` (optax's field names).

    Attributes:
      count: number of updates so far (int32, saturating); drives the bias corrections.
      count_m2: the same count, passed to the ``b3`` and ``alpha`` schedules.
      m1: the fast momentum (decay ``b1``), ``mu_dtype``.
      m2: the slow momentum (decay ``b3``), ``mu_dtype``.
      nu: the second moment, ``nu_dtype``, real.
    """

    count: jax.Array
    count_m2: jax.Array
    m1: Any
    m2: Any
    nu: Any


def _value(x: Any, count: jax.Array) -> Any:
    return x(count) if callable(x) else x


def scale_by_ademamix(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdEMAMix's direction (Pagliardini, Ablin & Grangier, ICLR 2025, Algorithm 1).

    With ``g_t`` the incoming update, ``t = 1, 2, ...``, and ``b3_t``,
    ``alpha_t`` the values of ``b3`` and ``alpha`` (numbers, or schedules
    evaluated at ``count = t - 1``)::

        m1_t  = b1 m1_{t-1} + (1 - b1) g_t             (fast momentum)
        m2_t  = b3_t m2_{t-1} + (1 - b3_t) g_t         (slow momentum, no bias correction)
        v_t   = b2 v_{t-1} + (1 - b2) |g_t|**2
        out_t = (m1_t / (1 - b1**t) + alpha_t m2_t) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    The slow momentum (half-life about 7000 steps for ``b3 = 0.9999``)
    keeps gradients that are thousands of steps old; ``m2`` is not
    bias-corrected, so its weight grows as it fills. The paper warms
    ``alpha`` and ``b3`` up over ``T_{alpha,b3}`` steps (usually the whole
    run) to avoid early instabilities: pass
    ``alpha=ademamix_alpha_schedule(alpha, T)`` and
    ``b3=ademamix_b3_schedule(b3, T, b1)``.

    Defaults ``b1 = 0.9``, ``b2 = 0.999``, ``b3 = 0.9999``, ``eps = 1e-8``
    are the paper's; it recommends ``alpha`` in [4, 10] and adaptx uses
    optax's ``ademamix`` default 5 (optax's own ``scale_by_ademamix``
    defaults to 6, a different number for the same algorithm).

    ==================================  ===================================  ==============
    adaptx                              optax 0.2.8 (``optax.contrib``)      torch 2.13
    ==================================  ===================================  ==============
    ``scale_by_ademamix(b1, b2, b3,     ``scale_by_ademamix(b1, b2, b3,      no AdEMAMix
    alpha, eps, eps_root)``             alpha, eps, eps_root)``
    ``mu_dtype=d, nu_dtype=d``          ``mu_dtype=d`` (optax keeps ``nu``
                                        in ``d`` too: same state dtypes)
    ==================================  ===================================  ==============

    Args:
      b1: decay of the fast momentum, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      b3: decay of the slow momentum, in [0, 1), or a schedule ``count -> b3_t``.
      alpha: weight of the slow momentum, >= 0, or a schedule ``count -> alpha_t``.
      eps: added to ``sqrt(v_hat)``, >= 0.
      eps_root: added to ``v_hat`` inside the root, >= 0.
      mu_dtype: dtype of ``m1`` and ``m2``; ``None`` = the parameter's.
      nu_dtype: dtype of ``v``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdemamixState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_ademamix(b3=0.5, alpha=2.0, eps=0.0)
      >>> out, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> out  # (g + alpha (1 - b3) g) / |g| = 1 + 2 * 0.5
      Array([2.], dtype=float32)

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", ICLR 2025, https://arxiv.org/abs/2409.03137 (Algorithm 1).
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if callable(b3):
        check_schedule_start("b3", b3, 0.0)
    else:
        check_decay("b3", b3)
    if callable(alpha):
        check_schedule_start("alpha", alpha, 0.0)
    else:
        check_nonnegative("alpha", alpha)
    mode = "exact" if mu_dtype is None else "kind"

    def init_fn(params: Params) -> ScaleByAdemamixState:
        return ScaleByAdemamixState(
            count=jnp.zeros((), jnp.int32),
            count_m2=jnp.zeros((), jnp.int32),
            m1=init_first_moment(params, mu_dtype),
            m2=init_first_moment(params, mu_dtype),
            nu=init_second_moment(params, nu_dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_ademamix", state, ScaleByAdemamixState)
        check_like("scale_by_ademamix", updates, state.m1, mode, params)
        b3_t = _value(b3, state.count_m2)
        alpha_t = _value(alpha, state.count_m2)
        count = safe_increment(state.count)
        m1 = tree_update_moment(updates, state.m1, b1, 1)
        m2 = tree_update_moment(updates, state.m2, b3_t, 1)
        nu = tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)

        @functools.cache
        def scalars(cdt):
            return (
                one_minus_pow(b1, count, cdt),
                one_minus_pow(b2, count, cdt),
                hyperparam(alpha_t, cdt),
                hyperparam(eps, cdt),
                hyperparam(eps_root, cdt),
            )

        def direction(g, fast, slow, v):
            cdt = leaf_compute_dtype(g, fast, slow, v)
            c1, c2, a, e, er = scalars(cdt)
            num = divide(widen(fast, cdt), c1) + times(widen(slow, cdt), a)
            return divide_or_zero(num, jnp.sqrt(v.astype(cdt) / c2 + er) + e).astype(g.dtype)

        out = jax.tree.map(direction, updates, m1, m2, nu)
        return out, ScaleByAdemamixState(
            count=count, count_m2=safe_increment(state.count_m2), m1=m1, m2=m2, nu=nu
        )

    return GradientTransformation(init_fn, update_fn)


def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AdEMAMix (Pagliardini, Ablin & Grangier, ICLR 2025).

    ::

        theta_t = theta_{t-1} - lr_t (ademamix_t + weight_decay theta_{t-1})

        chain(scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, ...),
              add_decayed_weights(weight_decay, mask),
              scale_by_learning_rate(learning_rate))

    As in the paper's Algorithm 1 the decay is multiplied by the learning
    rate. The paper fixes no learning rate (it uses AdamW's for each model),
    so ``learning_rate`` has no default; ``weight_decay = 0`` is optax's.
    With the paper's warm-up over ``T`` steps::

        ademamix(lr, b3=ademamix_b3_schedule(0.9999, T, 0.9),
                 alpha=ademamix_alpha_schedule(5.0, T))

    ``optax.contrib.ademamix`` with the same arguments is the same optimizer
    (see ``scale_by_ademamix``); torch 2.13 has none.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, b3, alpha, eps, eps_root, mu_dtype, nu_dtype: as in ``scale_by_ademamix``.
      weight_decay: the decoupled decay, >= 0.
      mask: which parameters to decay (see ``add_decayed_weights``).

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.ademamix(0.1, alpha=0.0)  # alpha = 0: Adam
      >>> params = jnp.zeros(1)
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(params), params)
      >>> updates
      Array([-0.1], dtype=float32)

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", ICLR 2025, https://arxiv.org/abs/2409.03137
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# --- the paper's warm-up schedulers -------------------------------------------------------------


def ademamix_alpha_schedule(alpha: float, warmup_steps: int) -> Schedule:
    """The paper's ``alpha`` warm-up: ``alpha_t = min(t alpha / T, alpha)``.

    ``t = count + 1`` (the schedule gets the 0-based count, as every adaptx
    schedule), ``T = warmup_steps``: linear from ``alpha / T`` at the first
    step to ``alpha`` at step ``T``, constant after.

    Args:
      alpha: the final weight, >= 0.
      warmup_steps: ``T_{alpha,b3}``, an integer >= 1.

    Returns:
      A schedule ``count -> alpha_t`` (float32).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> f = adaptx.ademamix_alpha_schedule(8.0, 4)
      >>> [float(f(jnp.int32(c))) for c in range(5)]
      [2.0, 4.0, 6.0, 8.0, 8.0]

    References:
      Pagliardini, Ablin & Grangier, ICLR 2025, https://arxiv.org/abs/2409.03137
      (Section 3, schedulers).
    """
    check_nonnegative("alpha", alpha)
    check_integer("warmup_steps", warmup_steps, 1)

    def schedule(count: jax.Array) -> jax.Array:
        dtype = jnp.result_type(float)
        t = jnp.asarray(count).astype(dtype) + 1
        a = hyperparam(alpha, dtype)
        return jnp.minimum(t * a / warmup_steps, a)

    return schedule


def ademamix_b3_schedule(b3: float, warmup_steps: int, b_start: float = 0.9) -> Schedule:
    r"""The paper's ``b3`` warm-up, linear in the momentum's half-life.

    With ``t = count + 1`` and ``T = warmup_steps``::

        b3_t = min(exp(log(b_start) log(b3) / ((1 - t/T) log(b3) + (t/T) log(b_start))), b3)

    This is the ``beta`` whose half-life ``log(0.5) / log(beta)`` moves
    linearly (in ``1 / log(beta)``) from ``b_start``'s to ``b3``'s over ``T``
    steps: a linear schedule of ``b3`` itself would stay near ``b_start``'s
    short memory until the very end. The paper uses ``b_start = b1``.

    Args:
      b3: the final decay, in (0, 1).
      warmup_steps: ``T_{alpha,b3}``, an integer >= 1.
      b_start: the decay at ``t = 0``, in (0, 1); the paper's ``b1``.

    Returns:
      A schedule ``count -> b3_t`` (float32).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> f = adaptx.ademamix_b3_schedule(0.9999, 100, 0.9)
      >>> [round(float(f(jnp.int32(c))), 6) for c in (0, 49, 99, 500)]
      [0.990899, 0.9998, 0.9999, 0.9999]

    References:
      Pagliardini, Ablin & Grangier, ICLR 2025, https://arxiv.org/abs/2409.03137
      (Section 3, schedulers).
    """
    check_range("b3", b3, 0.0, 1.0, low_open=True, high_open=True)
    check_range("b_start", b_start, 0.0, 1.0, low_open=True, high_open=True)
    check_integer("warmup_steps", warmup_steps, 1)

    def schedule(count: jax.Array) -> jax.Array:
        dtype = jnp.result_type(float)
        t = jnp.asarray(count).astype(dtype) + 1
        end, start = hyperparam(b3, dtype), hyperparam(b_start, dtype)
        log_end, log_start = log_decay(end), log_decay(start)
        a = jnp.minimum(t / warmup_steps, 1)
        log_b = log_start * log_end / ((1 - a) * log_end + a * log_start)
        return jnp.minimum(jnp.exp(log_b), end)

    return schedule
