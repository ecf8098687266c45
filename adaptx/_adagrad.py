"""AdaGrad (Duchi, Hazan & Singer 2011): ``scale_by_rss`` and ``adagrad``.

Complex parameters: see ``_adaptive`` (the moment is ``|g|**2``; the update keeps
the phase of ``g``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from adaptx._adaptive import (
    _check_second_moment,
    _denominator,
    _divide,
    _tree_full_real,
)
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule, Updates
from adaptx._combine import chain
from adaptx._numerics import (
    _wide,
    abs_sq,
    compute_dtype,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._signature import check_state
from adaptx._validate import (
    check_dtype,
    check_nonnegative,
)


class ScaleByRssState(NamedTuple):
    """State of ``scale_by_rss``: the running sum of squared gradients ``G`` (real)."""

    sum_of_squares: Updates


def scale_by_rss(
    initial_accumulator_value: float | jax.Array = 0.0,
    eps: float | jax.Array = 1e-10,
    *,
    eps_in_sqrt: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdaGrad's scaling: divide by the root of the sum of all squared gradients so far.

    Per coordinate, with ``G_0 = initial_accumulator_value`` and ``delta = eps``::

        G_t = G_{t-1} + |g_t|**2
        out = g_t / (sqrt(G_t) + delta)          (default, Duchi et al. and torch)
        out = g_t / sqrt(G_t + delta)            (eps_in_sqrt=True, optax's form)

    Defaults ``G_0 = 0`` and ``delta`` outside the root follow the paper's
    diagonal algorithm (Figure 1: ``H_t = delta I + diag(G_t)^{1/2}``), with
    torch's ``delta = 1e-10``. A coordinate whose
    gradients have all been 0 gets update 0, also with ``eps = 0`` (no 0/0).
    For complex parameters ``G`` sums ``|g|**2`` (real) and the update keeps
    ``g``'s phase, as in optax; torch normalises the real and imaginary parts
    separately, so it differs there. The sum
    is kept in the parameters' dtype by default; for bfloat16 parameters it
    then stops growing once ``|g|**2`` falls below its rounding, as in optax:
    ``nu_dtype=jnp.float32`` keeps it in float32.

    Hyper-parameters are validated when concrete (``initial_accumulator_value
    >= 0``, ``eps >= 0``); traced values are not checked.

    Reproducing the peers (``lr`` a number or schedule):

    =============================================  ===============================================
    peer                                           adaptx
    =============================================  ===============================================
    ``optax.scale_by_rss(g0, e)``                  ``scale_by_rss(g0, e, eps_in_sqrt=True)``
    ``optax.adagrad(lr)`` (``g0=0.1, e=1e-7``)     ``adagrad(lr, 0.1, 1e-7, eps_in_sqrt=True)``
    ``optax.adagrad(lr, g0, e)``                   ``adagrad(lr, g0, e, eps_in_sqrt=True)``
    ``torch.optim.Adagrad(lr=lr, initial_``        ``adagrad(lr, g0, e)``
    ``accumulator_value=g0, eps=e)``
    ``torch.optim.Adagrad(..., lr_decay=k)``       ``adagrad(lambda count: lr / (1 + count * k),``
                                                   ``g0, e)``
    ``torch.optim.Adagrad(weight_decay=wd)``       ``add_decayed_weights(wd)`` chained first
    adaptx's default (``delta`` outside the root)  no optax setting (except ``delta = 0``)
    =============================================  ===============================================

    Args:
      initial_accumulator_value: ``G_0 >= 0``.
      eps: ``delta >= 0``, added to the denominator.
      eps_in_sqrt: add ``eps`` under the square root (optax) rather than outside it.
      nu_dtype: dtype of the sum; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByRssState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_rss(eps=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([3.0, 0.0]), state)  # 3 / sqrt(9); 0 stays 0
      >>> u, state = tx.update(jnp.array([4.0, 0.0]), state)  # 4 / sqrt(9 + 16)
      >>> u
      Array([0.8, 0. ], dtype=float32)

    References:
      Duchi, Hazan, Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 12, 2011,
      https://jmlr.org/papers/v12/duchi11a.html
    """
    check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    check_nonnegative("eps", eps)
    check_dtype("nu_dtype", nu_dtype)

    def init_fn(params: Params) -> ScaleByRssState:
        return ScaleByRssState(
            sum_of_squares=_tree_full_real(params, initial_accumulator_value, nu_dtype)
        )

    def accumulate(g: jax.Array, s: jax.Array) -> jax.Array:
        cdt = compute_dtype(s.dtype)
        return s.astype(cdt) + abs_sq(g.astype(_wide(g.dtype))).astype(cdt)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_rss", state, ScaleByRssState)
        _check_second_moment("scale_by_rss", updates, state.sum_of_squares, nu_dtype, params)
        wide = jax.tree.map(accumulate, updates, state.sum_of_squares)
        out = jax.tree.map(
            lambda g, s: _divide(g, _denominator(s, eps, eps_in_sqrt)), updates, wide
        )
        new = jax.tree.map(lambda w, s: w.astype(s.dtype), wide, state.sum_of_squares)
        return out, ScaleByRssState(sum_of_squares=new)

    return GradientTransformation(init_fn, update_fn)


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float | jax.Array = 0.0,
    eps: float | jax.Array = 1e-10,
    *,
    eps_in_sqrt: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdaGrad (Duchi, Hazan, Singer 2011), diagonal version.

    ``u_t = -lr_t * g_t / (sqrt(G_t) + eps)`` with ``G_t`` the running sum of
    squared gradients from ``initial_accumulator_value``::

        chain(scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
              scale_by_learning_rate(learning_rate))

    Defaults follow the paper and ``torch.optim.Adagrad`` (``G_0 = 0``, eps
    outside the root), not optax (``G_0 = 0.1``, ``eps = 1e-7`` inside the
    root): ``adagrad(lr, 0.1, 1e-7, eps_in_sqrt=True)`` is ``optax.adagrad(lr)``.
    The full table of settings that reproduce optax and torch is in
    ``scale_by_rss``.

    Args:
      learning_rate: a number, scalar array, or schedule ``count -> value``.
      initial_accumulator_value: ``G_0 >= 0``.
      eps: added to the denominator, ``>= 0``.
      eps_in_sqrt: add ``eps`` under the square root (optax's form).
      nu_dtype: dtype of the sum of squares; ``None`` = the parameters' (real part).

    Returns:
      A ``GradientTransformation`` (a ``chain``).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> f = lambda x: jnp.sum(x**2)
      >>> tx = adaptx.adagrad(1.0)
      >>> x = jnp.array([1.0, 2.0, 3.0])
      >>> state = tx.init(x)
      >>> for _ in range(20):
      ...     u, state = tx.update(jax.grad(f)(x), state, x)
      ...     x = adaptx.apply_updates(x, u)
      >>> bool(f(x) < 1e-2)
      True

    References:
      Duchi, Hazan, Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 12, 2011,
      https://jmlr.org/papers/v12/duchi11a.html
    """
    return chain(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )
