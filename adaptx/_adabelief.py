"""AdaBelief (Zhuang et al., NeurIPS 2020): Adam with the variance of the gradient's surprise.

Dtypes follow the Adam family (``adaptx/_adam.py``): moments in ``mu_dtype``
/ ``nu_dtype``, arithmetic in float32 or wider, updates in the parameter's
dtype, complex parameters with a real second moment of ``|g - m|**2``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adam import (
    check_moment_hyperparams,
    check_moment_updates,
    divide,
    divide_or_zero,
    init_first_moment,
    init_second_moment,
    leaf_compute_dtype,
    times,
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
from adaptx._signature import check_state


class ScaleByBeliefState(NamedTuple):
    """State of ``scale_by_belief`` (optax's field names).

    Attributes:
      count: number of updates so far (int32, saturating).
      mu: first moment ``m``, ``mu_dtype``.
      nu: the "belief" ``s``, the moving average of ``|g - m|**2`` (plus
        ``eps_root`` each step), ``nu_dtype``, real.
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_belief(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdaBelief's direction (Zhuang et al., NeurIPS 2020, Algorithm 2).

    With ``g_t`` the incoming update and ``t = 1, 2, ...``::

        m_t     = b1 m_{t-1} + (1 - b1) g_t
        s_t     = b2 s_{t-1} + (1 - b2) |g_t - m_t|**2 + eps_root
        m_hat_t = m_t / (1 - b1**t)
        s_hat_t = s_t / (1 - b2**t)
        out_t   = m_hat_t / (sqrt(s_hat_t) + eps)

    Adam's second moment ``v`` (an average of ``g**2``) becomes ``s``, the
    average squared deviation of the gradient from its prediction ``m``: a
    gradient that agrees with the momentum gets a large step.

    **Where each eps goes.** Algorithm 2 uses one ``epsilon`` twice: added to
    ``s_t`` in its recurrence (so it is kept in the state and accumulates,
    up to ``eps / (1 - b2)``) and added to ``sqrt(s_hat_t)``. adaptx, like
    optax, names them ``eps_root`` (the recurrence's) and ``eps`` (outside
    the root); the paper's single ``epsilon`` is ``eps = eps_root``. The
    defaults ``1e-16`` are those of the authors' released code and of optax
    (``eps_root = 1e-16`` in the state is about ``1e-8`` once rooted, the
    usual Adam ``eps``). With ``eps = eps_root = 0`` a coordinate whose
    gradients have all been 0 gets a zero step (optax: 0/0 = NaN).

    ``nesterov=True`` (optax's option, not in the paper) replaces ``m_hat_t``
    by ``b1 m_t / (1 - b1**(t+1)) + (1 - b1) g_t / (1 - b1**t)``.

    =================================  ===================================  ===========
    adaptx                             optax 0.2.8                          torch 2.13
    =================================  ===================================  ===========
    ``scale_by_belief(b1, b2, eps,     ``scale_by_belief(b1, b2, eps,       no AdaBelief
    eps_root, nesterov=n)``            eps_root, nesterov=n)``
    ``mu_dtype``, ``nu_dtype``         no mapping
    =================================  ===================================  ===========

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief ``s``, in [0, 1).
      eps: added to ``sqrt(s_hat)``, >= 0.
      eps_root: added to ``s`` at every step (kept in the state), >= 0.
      nesterov: use Nesterov momentum.
      mu_dtype: dtype of ``m``; ``None`` = the parameter's.
      nu_dtype: dtype of ``s``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByBeliefState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_belief(eps=0.0, eps_root=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> out, state = tx.update(jnp.array([2.0, -1.0]), state)
      >>> out  # first step: m_hat = g, s_hat = (0.9 g)**2
      Array([ 1.111111, -1.111111], dtype=float32)

    References:
      Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan,
      "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020, https://arxiv.org/abs/2010.07468 (Algorithm 2).
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)

    def init_fn(params: Params) -> ScaleByBeliefState:
        return ScaleByBeliefState(
            count=jnp.zeros((), jnp.int32),
            mu=init_first_moment(params, mu_dtype),
            nu=init_second_moment(params, nu_dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_belief", state, ScaleByBeliefState)
        check_moment_updates("scale_by_belief", updates, state, mu_dtype, nu_dtype, params)
        count = safe_increment(state.count)
        mu = tree_update_moment(updates, state.mu, b1, 1)

        def belief(g, m, s):
            cdt = leaf_compute_dtype(g, m, s)
            b, er = hyperparam(b2, cdt), hyperparam(eps_root, cdt)
            surprise = abs_sq(widen(g, cdt) - widen(m, cdt))
            return (b * s.astype(cdt) + (1 - b) * surprise + er).astype(s.dtype)

        nu = jax.tree.map(belief, updates, mu, state.nu)

        @functools.cache
        def scalars(cdt):
            return (
                hyperparam(b1, cdt),
                one_minus_pow(b1, count, cdt),
                one_minus_pow(b1, safe_increment(count), cdt),
                one_minus_pow(b2, count, cdt),
                hyperparam(eps, cdt),
            )

        def direction(g, m, s):
            cdt = leaf_compute_dtype(g, m, s)
            b, c1, c1_next, c2, e = scalars(cdt)
            if nesterov:
                m_hat = times(divide(widen(m, cdt), c1_next), b) + times(
                    divide(widen(g, cdt), c1), 1 - b
                )
            else:
                m_hat = divide(widen(m, cdt), c1)
            return divide_or_zero(m_hat, jnp.sqrt(s.astype(cdt) / c2) + e).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByBeliefState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AdaBelief (Zhuang et al., NeurIPS 2020).

    ::

        chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov, ...),
              scale_by_learning_rate(learning_rate))

    ``learning_rate = 1e-3`` is the default of the authors' code.
    ``optax.adabelief(lr, b1, b2, eps, eps_root, nesterov=n)`` is the same
    optimizer; see ``scale_by_belief`` for the equations and the ``eps``
    placement.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, nesterov, mu_dtype, nu_dtype: as in ``scale_by_belief``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.adabelief(0.1, eps=0.0, eps_root=0.0)
      >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.11111112], dtype=float32)

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief
      in Observed Gradients", NeurIPS 2020, https://arxiv.org/abs/2010.07468
    """
    return chain(
        scale_by_belief(
            b1, b2, eps, eps_root, nesterov=nesterov, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        scale_by_learning_rate(learning_rate),
    )
