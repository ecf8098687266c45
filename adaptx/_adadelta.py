"""AdaDelta (Zeiler 2012): ``scale_by_adadelta`` and ``adadelta``.

Complex parameters: see ``_adaptive``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adaptive import (
    _check_second_moment,
    _tree_full_real,
)
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule, Updates
from adaptx._combine import chain
from adaptx._numerics import (
    _wide,
    compute_dtype,
    hyperparam,
    tree_update_moment_per_elem_norm,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._signature import check_state
from adaptx._validate import (
    check_decay,
    check_dtype,
    check_positive,
)
from adaptx._weight_decay import add_decayed_weights


class ScaleByAdaDeltaState(NamedTuple):
    """State of ``scale_by_adadelta``: the averages ``E[|g|**2]`` and ``E[|dx|**2]`` (real)."""

    e_g: Updates
    e_x: Updates


def scale_by_adadelta(
    rho: float | jax.Array = 0.9, eps: float | jax.Array = 1e-6, *, nu_dtype: Any = None
) -> GradientTransformation:
    r"""AdaDelta's direction: a ratio of RMS of past steps to RMS of gradients.

    Zeiler's Algorithm 1, per coordinate (``E[.]_0 = 0``)::

        E[g^2]_t  = rho * E[g^2]_{t-1} + (1 - rho) * |g_t|**2
        dx_t      = sqrt(E[dx^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) * g_t
        E[dx^2]_t = rho * E[dx^2]_{t-1} + (1 - rho) * |dx_t|**2
        out       = dx_t

    ``out`` is the descent *direction* (the paper's step is ``-dx_t``), and
    ``E[dx^2]`` accumulates it before any learning rate, as in optax and
    torch; ``adadelta`` chains the learning rate after. Defaults are the
    paper's (``rho = 0.9`` and ``eps = 1e-6`` from its MNIST experiments,
    Section 4). ``eps > 0`` is required: with ``eps = 0`` the step is 0
    forever. For complex parameters both averages are of ``|.|**2`` (real),
    as in optax; torch treats real and imaginary parts separately.

    Hyper-parameters are validated when concrete (``0 <= rho < 1``, ``eps >
    0``); traced values are not checked.

    Reproducing the peers (``lr`` a number or schedule):

    ================================================  ===========================================
    peer                                              adaptx
    ================================================  ===========================================
    ``optax.scale_by_adadelta(r, e)``                 ``scale_by_adadelta(r, e)``
    ``optax.adadelta(lr, r, e)``, ``lr`` not None     ``adadelta(lr, r, e)``
    ``optax.adadelta(None, r, e)`` (its default)      ``scale_by_adadelta(r, e)``: gradient
                                                      *ascent*, optax 0.2.8 never flips the sign
    ``optax.adadelta(..., weight_decay=wd)``          ``add_decayed_weights(wd)`` chained first
    ``torch.optim.Adadelta(lr=lr, rho=r, eps=e)``     ``adadelta(lr, r, e)``
    ``torch.optim.Adadelta(weight_decay=wd)``         ``add_decayed_weights(wd)`` chained first
    ================================================  ===========================================

    Args:
      rho: decay rate of both averages, in [0, 1).
      eps: added under both roots, ``> 0``.
      weight_decay: L2 coefficient ``>= 0`` added to the gradient.
      weight_decay_mask: which parameters to decay (see ``add_decayed_weights``).
      nu_dtype: dtype of both averages; ``None`` = the
        parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdaDeltaState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_adadelta(rho=0.5, eps=1.0)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([4.0]), state)  # sqrt(0 + 1) / sqrt(8 + 1) * 4
      >>> u
      Array([1.3333334], dtype=float32)

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv 2012,
      https://arxiv.org/abs/1212.5701
    """
    check_decay("rho", rho)
    check_positive("eps", eps)
    check_dtype("nu_dtype", nu_dtype)

    def init_fn(params: Params) -> ScaleByAdaDeltaState:
        return ScaleByAdaDeltaState(
            e_g=_tree_full_real(params, 0.0, nu_dtype), e_x=_tree_full_real(params, 0.0, nu_dtype)
        )

    def step(g: jax.Array, e_g: jax.Array, e_x: jax.Array) -> jax.Array:
        cdt = compute_dtype(e_g.dtype)
        e = hyperparam(eps, cdt)
        ratio = jnp.sqrt(e_x.astype(cdt) + e) / jnp.sqrt(e_g.astype(cdt) + e)
        gw = g.astype(_wide(g.dtype))
        return gw * ratio.astype(gw.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_adadelta", state, ScaleByAdaDeltaState)
        _check_second_moment("scale_by_adadelta", updates, state.e_g, nu_dtype, params)
        e_g = tree_update_moment_per_elem_norm(updates, state.e_g, rho, 2)
        dx = jax.tree.map(step, updates, e_g, state.e_x)
        e_x = tree_update_moment_per_elem_norm(dx, state.e_x, rho, 2)
        out = jax.tree.map(lambda d, g: d.astype(g.dtype), dx, updates)
        return out, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init_fn, update_fn)


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-6,
    weight_decay: float | jax.Array = 0.0,
    weight_decay_mask: Any = None,
    *,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""AdaDelta (Zeiler 2012): ``u_t = -lr_t * dx_t`` with ``dx_t`` from ``scale_by_adadelta``.

    The chain (optax's, so the state has optax's layout)::

        chain(add_decayed_weights(weight_decay, weight_decay_mask),
              scale_by_adadelta(rho, eps),
              scale_by_learning_rate(learning_rate))

    The weight decay is an L2 term added to the gradient before AdaDelta
    (torch's ``weight_decay``); with the default 0 ``update`` needs no params.

    The paper has no learning rate (``lr = 1``, the default, as in torch).
    With its defaults this *descends*; ``optax.adadelta()`` with its default
    ``learning_rate=None`` performs gradient ascent in optax 0.2.8. The table
    of settings that reproduce optax and torch is in ``scale_by_adadelta``.

    Args:
      learning_rate: a number, scalar array, or schedule ``count -> value``.
      rho: decay rate of both averages, in [0, 1).
      eps: added under both roots, ``> 0``.
      weight_decay: L2 coefficient ``>= 0`` added to the gradient.
      weight_decay_mask: which parameters to decay (see ``add_decayed_weights``).
      nu_dtype: dtype of both averages; ``None`` = the parameters' (real part).

    Returns:
      A ``GradientTransformation`` (a ``chain``).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> f = lambda x: jnp.sum(x**2)
      >>> tx = adaptx.adadelta()
      >>> x = jnp.array([1.0, 2.0, 3.0])
      >>> state = tx.init(x)
      >>> for _ in range(100):
      ...     u, state = tx.update(jax.grad(f)(x), state, x)
      ...     x = adaptx.apply_updates(x, u)
      >>> bool(f(x) < 14.0)
      True

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv 2012,
      https://arxiv.org/abs/1212.5701
    """
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )
