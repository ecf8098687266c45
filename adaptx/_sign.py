"""Sign-based optimizers: signSGD and Signum (Bernstein et al., 2018), Lion (Chen et al., 2023).

Each step moves every coordinate by the learning rate times the sign of a
(possibly averaged) gradient, so the step size does not depend on the
gradient's scale. Complex parameters: ``sign(z) = z / |z|`` (and 0 at 0), the
unit number with the gradient's phase, as ``jnp.sign`` computes it.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adam import init_first_moment, leaf_compute_dtype, times, widen
from adaptx._base import (
    GradientTransformation,
    Params,
    ScalarOrSchedule,
    check_stateless,
    init_empty_state,
)
from adaptx._combine import chain
from adaptx._numerics import hyperparam, safe_increment, tree_update_moment
from adaptx._scale import scale_by_learning_rate
from adaptx._sgd import ema
from adaptx._signature import check_like, check_state
from adaptx._validate import check_decay, check_dtype, check_positive
from adaptx._weight_decay import add_decayed_weights


def scale_by_sign() -> GradientTransformation:
    """Replaces every update by its sign, coordinate by coordinate.

    ``out = sign(g)``: +1, -1, or 0 where ``g = 0``; NaN stays NaN. For
    complex updates ``sign(g) = g / |g|``. Same as ``optax.scale_by_sign``.

    Returns:
      A stateless ``GradientTransformation`` (state ``EmptyState()``).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_sign()
      >>> tx.update(jnp.array([0.3, -2.0, 0.0]), tx.init(None))[0]
      Array([ 1., -1.,  0.], dtype=float32)

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
      Problems", ICML 2018, https://arxiv.org/abs/1802.04434
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless("scale_by_sign", updates, state, params)
        return jax.tree.map(jnp.sign, updates), state

    return GradientTransformation(init_empty_state, update_fn)


def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al., ICML 2018, Algorithm 1 without momentum).

    ::

        x_{k+1} = x_k - lr_k * sign(g_k)

        chain(scale_by_sign(), scale_by_learning_rate(learning_rate))

    The paper fixes no step size, so ``learning_rate`` has no default.
    ``optax.sign_sgd(lr)`` is the same chain (same numbers, same state);
    torch 2.13 has no signSGD.

    Args:
      learning_rate: a number or a schedule ``count -> value``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.sign_sgd(0.1)
      >>> tx.update(jnp.array([5.0, -1e-3]), tx.init(jnp.zeros(2)))[0]
      Array([-0.1,  0.1], dtype=float32)

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
      Problems", ICML 2018, https://arxiv.org/abs/1802.04434
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule,
    beta: float | jax.Array = 0.9,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Signum: signSGD with momentum (Bernstein et al., ICML 2018, Algorithm 1).

    ::

        m_k     = beta * m_{k-1} + (1 - beta) * g_k       (m_0 = 0)
        x_{k+1} = x_k - lr_k * sign(m_k)

        chain(ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
              scale_by_sign(),
              scale_by_learning_rate(learning_rate))

    No bias correction: ``1 - beta**k > 0`` does not change a sign. The
    paper leaves ``beta`` to the user; ``0.9`` is optax's default.
    ``beta = 0`` is signSGD.

    =====================================  =======================================  ============
    adaptx                                 optax 0.2.8                              torch 2.13
    =====================================  =======================================  ============
    ``signum(lr, beta, accumulator_dtype)``  ``signum(lr, beta, accumulator_dtype)``  no Signum
    =====================================  =======================================  ============

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      beta: the momentum's decay, in [0, 1).
      accumulator_dtype: dtype of the momentum; ``None`` keeps the parameters'.

    Returns:
      A ``GradientTransformation`` (state ``(EmaState, EmptyState, ...)``, as optax's).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.signum(0.1)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([4.0]), state)   # m = 0.4
      >>> u, state = tx.update(jnp.array([-1.0]), state)  # m = 0.36 - 0.1 > 0
      >>> u
      Array([-0.1], dtype=float32)

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
      Problems", ICML 2018, https://arxiv.org/abs/1802.04434
    """
    check_decay("beta", beta)
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


# --- Lion ---------------------------------------------------------------------------------------


class ScaleByLionState(NamedTuple):
    """State of ``scale_by_lion`` (optax's field names).

    Attributes:
      count: number of updates so far (int32, saturating; Lion itself does not use it).
      mu: the momentum ``m``, ``mu_dtype``.
    """

    count: jax.Array
    mu: Any


LionMode = Literal["hard", "smooth", "refined"]


def _lion_sign(x: jax.Array, mode: str, smooth_beta: Any, cdt: Any) -> jax.Array:
    if mode == "hard":
        return jnp.sign(x)
    if mode == "smooth":
        return jnp.tanh(times(x, hyperparam(smooth_beta, cdt)))
    return jnp.where(jnp.abs(x) < 1, x, jnp.sign(x))  # refined


def scale_by_lion(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.99,
    *,
    mu_dtype: Any = None,
    mode: LionMode = "hard",
    smooth_beta: float | jax.Array = 1.0,
) -> GradientTransformation:
    r"""Lion's direction (Chen et al., NeurIPS 2023, Algorithm 2).

    With ``g_t`` the incoming update::

        c_t   = b1 m_{t-1} + (1 - b1) g_t         (interpolation, for the step)
        out_t = sign(c_t)
        m_t   = b2 m_{t-1} + (1 - b2) g_t         (m_0 = 0; the state)

    Two decays: the step mixes the old momentum with the new gradient using
    ``b1``, the momentum itself is updated with ``b2``. One state buffer,
    ``mu``, per parameter (Adam keeps two). Defaults ``b1 = 0.9``,
    ``b2 = 0.99`` are the paper's. ``mode`` is optax's: ``"smooth"`` uses
    ``tanh(smooth_beta * c_t)`` and ``"refined"`` keeps ``c_t`` where
    ``|c_t| < 1``; the paper's Lion is ``"hard"``.

    ================================  ======================================  ===========
    adaptx                            optax 0.2.8                             torch 2.13
    ================================  ======================================  ===========
    ``scale_by_lion(b1, b2,           ``scale_by_lion(b1, b2, mu_dtype=d)``   no Lion
    mu_dtype=d)``
    ``mode=m, smooth_beta=s``         ``mode=m, smooth_beta=s``
    ================================  ======================================  ===========

    Args:
      b1: interpolation between momentum and gradient for the step, in [0, 1).
      b2: decay of the momentum, in [0, 1).
      mu_dtype: dtype of the momentum; ``None`` = the parameter's.
      mode: ``"hard"`` (sign, the paper), ``"smooth"`` or ``"refined"``.
      smooth_beta: the ``tanh`` slope for ``mode="smooth"``, > 0.

    Returns:
      A ``GradientTransformation`` with state ``ScaleByLionState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_lion()
      >>> state = tx.init(jnp.zeros(2))
      >>> out, state = tx.update(jnp.array([0.2, -3.0]), state)
      >>> out, state.mu.round(4)
      (Array([ 1., -1.], dtype=float32), Array([ 0.002, -0.03 ], dtype=float32))

    References:
      Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le,
      "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023,
      https://arxiv.org/abs/2302.06675 (Algorithm 2).
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_dtype("mu_dtype", mu_dtype)
    check_positive("smooth_beta", smooth_beta)
    if mode not in ("hard", "smooth", "refined"):
        raise ValueError(f"mode must be 'hard', 'smooth' or 'refined', got {mode!r}")
    check_mode = "exact" if mu_dtype is None else "kind"

    def init_fn(params: Params) -> ScaleByLionState:
        return ScaleByLionState(
            count=jnp.zeros((), jnp.int32), mu=init_first_moment(params, mu_dtype)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_lion", state, ScaleByLionState)
        check_like("scale_by_lion", updates, state.mu, check_mode, params)

        def direction(g, m):
            cdt = leaf_compute_dtype(g, m)
            b = hyperparam(b1, cdt)
            c = times(widen(m, cdt), b) + times(widen(g, cdt), 1 - b)
            return _lion_sign(c, mode, smooth_beta, cdt).astype(g.dtype)

        out = jax.tree.map(direction, updates, state.mu)
        mu = tree_update_moment(updates, state.mu, b2, 1)
        return out, ScaleByLionState(count=safe_increment(state.count), mu=mu)

    return GradientTransformation(init_fn, update_fn)


def lion(
    learning_rate: ScalarOrSchedule,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.99,
    weight_decay: float | jax.Array = 1e-3,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Lion (Chen et al., NeurIPS 2023).

    ::

        theta_t = theta_{t-1} - lr_t (sign(b1 m_{t-1} + (1 - b1) g_t) + weight_decay theta_{t-1})

        chain(scale_by_lion(b1, b2, mu_dtype=mu_dtype),
              add_decayed_weights(weight_decay, mask),
              scale_by_learning_rate(learning_rate))

    The decay is multiplied by the learning rate ``lr_t``, as in the paper's
    Algorithm 2 (``eta_t`` there is the scheduled learning rate). The paper
    fixes no learning rate (it advises one 3 to 10 times smaller than
    AdamW's, with a weight decay 3 to 10 times larger, for the same
    ``lr * weight_decay``), so ``learning_rate`` has no default; the weight
    decay default ``1e-3`` is optax's.

    ===================================  ======================================  ===========
    adaptx                               optax 0.2.8                             torch 2.13
    ===================================  ======================================  ===========
    ``lion(lr, b1, b2, weight_decay=wd,  ``lion(lr, b1, b2, weight_decay=wd,     no Lion
    mask=m, mu_dtype=d)``                mask=m, mu_dtype=d)``
    ===================================  ======================================  ===========

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, mu_dtype: as in ``scale_by_lion``.
      weight_decay: the decoupled decay, >= 0.
      mask: which parameters to decay (see ``add_decayed_weights``).

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = jnp.array([2.0, -1.0])
      >>> tx = adaptx.lion(0.01, weight_decay=0.5)
      >>> updates, _ = tx.update(jnp.array([3.0, 0.0]), tx.init(params), params)
      >>> updates  # -0.01 * (sign(0.3, 0) + 0.5 * params)
      Array([-0.02 ,  0.005], dtype=float32)

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS
      2023, https://arxiv.org/abs/2302.06675
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
