"""Layer-wise trust ratios: ``scale_by_trust_ratio``, LARS (2017) and LAMB (2020), by You et al.

A "layer" is a leaf of the parameter tree: each leaf's update is rescaled so
that its norm is proportional to the norm of the leaf's parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptx._adam import leaf_compute_dtype, scale_by_adam, times, widen
from adaptx._base import (
    GradientTransformation,
    ScalarOrSchedule,
    check_stateless,
    init_empty_state,
)
from adaptx._combine import chain
from adaptx._masking import masked
from adaptx._numerics import abs_sq, hyperparam
from adaptx._scale import scale_by_learning_rate
from adaptx._sgd import check_nesterov, trace
from adaptx._validate import check_momentum, check_nonnegative
from adaptx._weight_decay import add_decayed_weights

_NEEDS_PARAMS = (
    "scale_by_trust_ratio needs the parameters: call tx.update(updates, state, params) "
    "(with params), not tx.update(updates, state)"
)


def _norm(x: jax.Array, cdt: Any) -> jax.Array:
    return jnp.sqrt(jnp.sum(abs_sq(widen(x, cdt))))


def scale_by_trust_ratio(
    min_norm: float | jax.Array = 0.0,
    trust_coefficient: float | jax.Array = 1.0,
    eps: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Rescales each leaf's update by its trust ratio ``||p|| / ||u||``.

    For each leaf, with ``p`` its parameters and ``u`` its incoming update::

        ratio = trust_coefficient * max(||p||, min_norm) / (max(||u||, min_norm) + eps)
        out   = ratio * u                     (ratio = 1 where ||p|| or ||u|| is 0)

    so ``||out|| = trust_coefficient * ||p||``: the step of every layer is
    the same fraction of the layer's size, whatever the scale of its
    gradient. Norms are Frobenius norms of the whole leaf, in float32 or
    wider. Same numbers as ``optax.scale_by_trust_ratio(min_norm,
    trust_coefficient, eps)``.

    **Zero norms.** Where ``||p|| = 0`` (a zero-initialised bias, say) the
    papers' ratio is 0 and such a layer would never move; like optax, adaptx
    uses a ratio of 1 there (and where ``||u|| = 0``), so it takes a plain
    step until it is nonzero. A NaN norm gives a NaN update.

    Args:
      min_norm: a floor for both norms, >= 0 (0: no floor).
      trust_coefficient: the multiplier ``eta`` of the ratio, >= 0 (LARS's
        "trust coefficient", 0.001 in the LARS paper).
      eps: added to the update's norm, >= 0.

    Returns:
      A stateless ``GradientTransformation`` (state ``EmptyState()``) whose
      ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.zeros(2)}
      >>> grads = {"w": jnp.array([0.0, 0.5]), "b": jnp.array([1.0, 0.0])}
      >>> tx = adaptx.scale_by_trust_ratio()
      >>> out, _ = tx.update(grads, tx.init(params), params)
      >>> out["w"], out["b"]  # ||w|| / ||g_w|| = 10; b is zero: ratio 1
      (Array([0., 5.], dtype=float32), Array([1., 0.], dtype=float32))

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional
      Networks", 2017, https://arxiv.org/abs/1708.03888 (Section 4, LARS);
      You et al., "Large Batch Optimization for Deep Learning: Training BERT
      in 76 minutes", ICLR 2020, https://arxiv.org/abs/1904.00962 (LAMB).
    """
    check_nonnegative("min_norm", min_norm)
    check_nonnegative("trust_coefficient", trust_coefficient)
    check_nonnegative("eps", eps)

    def scale_leaf(u: jax.Array, p: jax.Array) -> jax.Array:
        cdt = leaf_compute_dtype(u, p)
        floor = hyperparam(min_norm, cdt)
        p_norm = jnp.maximum(_norm(p, cdt), floor)
        u_norm = jnp.maximum(_norm(u, cdt), floor)
        ratio = hyperparam(trust_coefficient, cdt) * p_norm / (u_norm + hyperparam(eps, cdt))
        zero = (p_norm == 0) | (u_norm == 0)
        ratio = jnp.where(zero, jnp.ones((), cdt), ratio)
        return times(widen(u, cdt), ratio).astype(u.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(_NEEDS_PARAMS)
        check_stateless("scale_by_trust_ratio", updates, state, params)
        return jax.tree.map(scale_leaf, updates, params), state

    return GradientTransformation(init_empty_state, update_fn)


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: float | jax.Array = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: float | jax.Array = 0.001,
    eps: float | jax.Array = 0.0,
    trust_ratio_mask: Any = True,
    momentum: float | jax.Array = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: SGD with momentum and layer-wise trust ratios (You, Gitman & Ginsburg, 2017).

    ::

        chain(add_decayed_weights(weight_decay, weight_decay_mask),
              masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
                     trust_ratio_mask),
              scale_by_learning_rate(learning_rate),
              trace(momentum, nesterov=nesterov))

    per layer (leaf) ``w``, with ``d = g + weight_decay * w``::

        lambda = trust_coefficient * ||w|| / (||d|| + eps)
        v_t    = momentum * v_{t-1} + lr_t * lambda * d
        w_t    = w_{t-1} - v_t

    The learning rate is applied before the momentum, as in the paper's
    Algorithm 1. Defaults: the paper's trust coefficient ``0.001`` and
    momentum ``0.9``; the paper fixes no learning rate (it uses a
    polynomial decay, ``polynomial_schedule(lr, 0, 2, T)``) and no weight
    decay (``5e-4`` for AlexNet), so ``learning_rate`` has no default and
    ``weight_decay = 0`` is optax's.

    **Where optax (and adaptx) differ from the paper.** The paper's local
    rate is ``eta ||w|| / (||g|| + weight_decay ||w||)``, the norms of the
    gradient and of the decay taken separately; optax divides by the norm
    of their sum, ``||g + weight_decay * w||``, which is never larger (the
    triangle inequality), so with weight decay its steps are larger than the
    paper's. adaptx keeps optax's form (same state, same numbers); with
    ``weight_decay = 0``, the default, the two are the same. And where
    ``||w|| = 0`` the paper's rate is 0 (the layer never moves); optax and
    adaptx use a ratio of 1 (see ``scale_by_trust_ratio``).

    ===================================  ======================================  ===========
    adaptx                               optax 0.2.8                             torch 2.13
    ===================================  ======================================  ===========
    ``lars(lr, weight_decay, ...)``      ``lars(lr, weight_decay, ...)``, the    no LARS
    (every argument)                     same arguments
    ===================================  ======================================  ===========

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      weight_decay: added to the gradient before the trust ratio, >= 0.
      weight_decay_mask: which leaves to decay (``True``: all; a tree, a prefix
        or a callable, as in ``add_decayed_weights``).
      trust_coefficient: ``eta``, >= 0.
      eps: added to the update's norm in the ratio, >= 0.
      trust_ratio_mask: which leaves get a trust ratio (the others plain SGD);
        excluding biases and normalisation parameters is common practice.
      momentum: the heavy-ball momentum, in [0, 1].
      nesterov: use Nesterov momentum.

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = jnp.array([3.0, 4.0])
      >>> tx = adaptx.lars(1.0, trust_coefficient=0.1)
      >>> updates, _ = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
      >>> updates  # -lr * 0.1 * ||w|| / ||g|| * g: a step of 0.1 * ||w|| = 0.5
      Array([ 0. , -0.5], dtype=float32)

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional
      Networks", 2017, https://arxiv.org/abs/1708.03888 (Algorithm 1).
    """
    check_momentum("momentum", momentum)
    check_nesterov(momentum, nesterov)
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        masked(
            scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
            trust_ratio_mask,
        ),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov=nesterov),
    )


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-6,
    eps_root: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""LAMB: Adam with layer-wise trust ratios (You et al., ICLR 2020, Algorithm 2).

    ::

        chain(scale_by_adam(b1, b2, eps, eps_root, ...),
              add_decayed_weights(weight_decay, mask),
              scale_by_trust_ratio(),
              scale_by_learning_rate(learning_rate))

    per layer (leaf) ``x``, with Adam's bias-corrected ratio ``r_t``::

        x_{t+1} = x_t - lr_t * phi(||x_t||) / ||r_t + weight_decay x_t|| * (r_t + weight_decay x_t)

    with ``phi`` the identity (the paper's experiments). Defaults
    ``b1 = 0.9``, ``b2 = 0.999``, ``eps = 1e-6`` are the paper's; it fixes
    no learning rate, and its ``weight_decay`` (0.01 for BERT) is a
    per-task choice: adaptx follows optax (``0``).

    **Where optax (and adaptx) differ from the paper.** A leaf with
    ``||x|| = 0`` (biases and normalisation offsets are usually initialised
    to zero) has ``phi(0) = 0`` in the paper, so it never moves; optax and
    adaptx give it a trust ratio of 1 (a plain Adam step) until it is
    nonzero. The paper's clipped ``phi(z) = min(max(z, gamma_l), gamma_u)``
    is not offered (neither is it in optax).

    ===================================  ======================================  ===========
    adaptx                               optax 0.2.8                             torch 2.13
    ===================================  ======================================  ===========
    ``lamb(lr, b1, b2, eps, eps_root,    ``lamb(lr, b1, b2, eps, eps_root,       no LAMB
    weight_decay, mask)``                weight_decay, mask)``
    ``mu_dtype``, ``nu_dtype``           no mapping
    ===================================  ======================================  ===========

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, mu_dtype, nu_dtype: as in ``scale_by_adam``.
      weight_decay: added to Adam's ratio before the trust ratio, >= 0.
      mask: which leaves to decay (see ``add_decayed_weights``).

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = jnp.array([3.0, 4.0])
      >>> tx = adaptx.lamb(0.1)
      >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
      >>> updates.round(6)  # Adam's first step (1, 1), rescaled to norm lr * ||x|| = 0.5
      Array([-0.353553, -0.353553], dtype=float32)

    References:
      You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer &
      Hsieh, "Large Batch Optimization for Deep Learning: Training BERT in 76
      minutes", ICLR 2020, https://arxiv.org/abs/1904.00962 (Algorithm 2).
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )
