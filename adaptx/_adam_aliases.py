"""The Adam family as ready-made optimizers: each alias is one ``chain``.

The maths, defaults and peer mappings of each direction live with its
``scale_by_*`` transform; the learning-rate defaults here are the papers'.
"""

from __future__ import annotations

from typing import Any

import jax

from adaptx._adam import scale_by_adam, scale_by_adamax
from adaptx._adam_variants import AmsgradVariant, scale_by_amsgrad, scale_by_nadam
from adaptx._base import GradientTransformation, ScalarOrSchedule
from adaptx._combine import chain
from adaptx._radam import scale_by_radam
from adaptx._scale import scale_by_learning_rate
from adaptx._weight_decay import add_decayed_weights


def _adam_direction(b1, b2, eps, eps_root, mu_dtype, nu_dtype, b1_decay, nesterov):
    if nesterov:
        if b1_decay is not None:
            raise ValueError("nesterov=True does not combine with b1_decay; use one or the other")
        return scale_by_nadam(
            b1, b2, eps, eps_root, momentum_decay=None, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        )
    return scale_by_adam(
        b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype, b1_decay=b1_decay
    )


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    b1_decay: float | jax.Array | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam (Kingma & Ba, ICLR 2015).

    ::

        chain(scale_by_adam(b1, b2, eps, eps_root, ...), scale_by_learning_rate(learning_rate))

    With ``nesterov=True`` the first transform is
    ``scale_by_nadam(b1, b2, eps, eps_root, momentum_decay=None)`` (optax's
    ``adam(nesterov=True)``). Defaults are the paper's (``alpha = 0.001``).
    The paper's convergence setting (Theorem 4.1) is
    ``adam(inverse_sqrt_schedule(alpha), b1_decay=lam)``. Equations and dtype
    rules: ``scale_by_adam``.

    ==========================================  ========================  ==========================
    adaptx                                      optax 0.2.8               torch 2.13
    ==========================================  ========================  ==========================
    ``adam(lr, b1, b2, eps)``                   ``adam(lr, b1, b2,        ``Adam(p, lr, betas=(b1,
                                                eps)``                    b2), eps=eps)``
    ``adam(lr, nesterov=True)``                 ``adam(lr,                no exact mapping
                                                nesterov=True)``,
                                                ``nadam(lr)``
    ``chain(add_decayed_weights(wd),            ``chain(add_decayed_weights(wd),  ``Adam(p, lr,
    adam(lr))``                                 adam(lr))``               weight_decay=wd)`` (L2
                                                                          penalty)
    ==========================================  ========================  ==========================

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, mu_dtype, nu_dtype, b1_decay: as in ``scale_by_adam``.
      nesterov: use Nesterov momentum with a constant ``b1`` (not with ``b1_decay``).

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = jnp.array([1.0, -1.0])
      >>> tx = adaptx.adam(0.1)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     grads = jax.grad(lambda p: jnp.sum(p**2))(params)
      ...     updates, state = tx.update(grads, state, params)
      ...     params = adaptx.apply_updates(params, updates)
      >>> params.round(3)  # each step moves by about the learning rate
      Array([ 0.702, -0.702], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
      https://arxiv.org/abs/1412.6980
    """
    return chain(
        _adam_direction(b1, b2, eps, eps_root, mu_dtype, nu_dtype, b1_decay, nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 1e-4,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam with decoupled weight decay (AdamW, Loshchilov & Hutter, ICLR 2019).

    ::

        chain(scale_by_adam(b1, b2, eps, eps_root, ...),
              add_decayed_weights(weight_decay, mask),
              scale_by_learning_rate(learning_rate))

    so ``theta <- theta - lr_t (adam_t + weight_decay * theta)``: the decay is
    multiplied by the learning rate, as in optax and torch. (``nesterov=True``
    uses ``scale_by_nadam(..., momentum_decay=None)`` as the first transform.)

    **The paper's form.** Loshchilov & Hutter write ``theta <- theta - eta_t
    (alpha adam_t + lambda theta)``: the decay is scaled by the schedule
    multiplier ``eta_t`` only, not by ``alpha``. With ``eta`` a schedule of
    multipliers (``eta_t = 1`` for a constant schedule)::

        chain(scale_by_adam(b1, b2, eps),
              scale(alpha),
              add_decayed_weights(weight_decay),
              scale_by_learning_rate(eta))

    The two agree for a constant learning rate when the paper's ``lambda`` is
    ``lr * weight_decay``.

    **Default weight decay.** The paper leaves it open (it normalises it by
    the number of batch passes), so adaptx follows optax: ``1e-4``. torch's
    ``AdamW`` defaults to ``1e-2``: pass ``weight_decay=1e-2`` for its numbers.

    ==========================================  ========================  ==========================
    adaptx                                      optax 0.2.8               torch 2.13
    ==========================================  ========================  ==========================
    ``adamw(lr, b1, b2, eps,                    ``adamw(lr, b1, b2, eps,  ``AdamW(p, lr, betas=(b1,
    weight_decay=wd)``                          weight_decay=wd)``        b2), eps=eps,
                                                                          weight_decay=wd)``
    ``mask=m``                                  ``mask=m``                a parameter group with
                                                                          ``weight_decay=0``
    ==========================================  ========================  ==========================

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, mu_dtype, nu_dtype: as in ``scale_by_adam``.
      weight_decay: the decay rate, >= 0.
      mask: which parameters to decay (see ``add_decayed_weights``).
      nesterov: use Nesterov momentum with a constant ``b1``.

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.array([2.0]), "b": jnp.array([2.0])}
      >>> tx = adaptx.adamw(0.1, weight_decay=0.5, mask={"w": True, "b": False})
      >>> zero = {"w": jnp.zeros(1), "b": jnp.zeros(1)}
      >>> updates, _ = tx.update(zero, tx.init(params), params)
      >>> updates["w"], updates["b"]  # -0.1 * 0.5 * 2.0 on w only
      (Array([-0.1], dtype=float32), Array([0.], dtype=float32))

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      https://arxiv.org/abs/1711.05101
    """
    return chain(
        _adam_direction(b1, b2, eps, eps_root, mu_dtype, nu_dtype, None, nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    variant: AmsgradVariant = "max_raw",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AMSGrad (Reddi, Kale & Kumar, ICLR 2018).

    ::

        chain(scale_by_amsgrad(b1, b2, eps, eps_root, variant=variant, ...),
              scale_by_learning_rate(learning_rate))

    The default variant, a maximum over the raw second moment with Adam's
    bias corrections, is torch's ``Adam(amsgrad=True)``; ``variant="paper"``
    is Algorithm 2 and ``variant="max_corrected"`` optax's ``amsgrad``
    (details and the mapping table in ``scale_by_amsgrad``). The paper sets no
    default step size; adaptx uses Adam's 0.001 (as torch). The paper's
    analysis decays it as ``alpha / sqrt(t)``: pass
    ``inverse_sqrt_schedule(alpha)``.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, variant, mu_dtype, nu_dtype: as in ``scale_by_amsgrad``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.amsgrad(0.1)
      >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.1], dtype=float32)

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018,
      https://openreview.net/forum?id=ryQu7f-RZ
    """
    return chain(
        scale_by_amsgrad(
            b1, b2, eps, eps_root, variant=variant, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        scale_by_learning_rate(learning_rate),
    )


def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AdaMax (Kingma & Ba, ICLR 2015, Algorithm 2).

    ::

        chain(scale_by_adamax(b1, b2, eps, ...), scale_by_learning_rate(learning_rate))

    with the paper's defaults (``alpha = 0.002``). ``eps`` sits inside the
    maximum as in optax and torch; ``eps=0`` is the paper's Algorithm 2
    (see ``scale_by_adamax``). optax ``adamax(lr, b1, b2, eps)`` and torch
    ``Adamax(p, lr, betas=(b1, b2), eps=eps)`` are the same optimizer.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, mu_dtype, nu_dtype: as in ``scale_by_adamax``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.adamax()
      >>> updates, _ = tx.update(jnp.array([-5.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([0.002], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
      https://arxiv.org/abs/1412.6980
    """
    return chain(
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    momentum_decay: float | jax.Array | None = 4e-3,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """NAdam (Dozat, ICLR 2016 Workshop).

    ::

        chain(scale_by_nadam(b1, b2, eps, eps_root, momentum_decay=momentum_decay, ...),
              scale_by_learning_rate(learning_rate))

    The default is Dozat's momentum schedule, torch's ``NAdam(p, lr,
    betas=(b1, b2), eps=eps, momentum_decay=psi)``; ``momentum_decay=None``
    gives a constant ``b1``, optax's ``nadam(lr, b1, b2, eps)``. The default
    step size 0.002 is Dozat's (his Keras implementation's, and torch's).

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, momentum_decay, mu_dtype, nu_dtype: as in ``scale_by_nadam``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.nadam(momentum_decay=None)
      >>> updates, _ = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> updates
      Array([-0.002], dtype=float32)

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 Workshop,
      https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """
    return chain(
        scale_by_nadam(
            b1,
            b2,
            eps,
            eps_root,
            momentum_decay=momentum_decay,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )


def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
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
    """RAdam (Liu et al., ICLR 2020).

    ::

        chain(scale_by_radam(b1, b2, eps, eps_root, threshold, ...),
              scale_by_learning_rate(learning_rate))

    with the authors' code's defaults (``lr = 0.001``, threshold 5; the
    paper's Algorithm 2 uses 4). optax ``radam(lr, b1, b2, eps)`` agrees
    where its ``rho_t`` is accurate (``b2 <= 0.999``); torch ``RAdam(p, lr,
    betas=(b1, b2), eps=eps)`` is ``eps_before_bias_correction=True``. See
    ``scale_by_radam``.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, eps_root, threshold, eps_before_bias_correction, nesterov,
        mu_dtype, nu_dtype: as in ``scale_by_radam``.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.radam(0.1)
      >>> updates, _ = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> updates  # step 1: -lr * m_hat
      Array([-0.2], dtype=float32)

    References:
      Liu, Jiang, He, Chen, Liu, Gao & Han, "On the Variance of the Adaptive
      Learning Rate and Beyond", ICLR 2020, https://arxiv.org/abs/1908.03265
    """
    return chain(
        scale_by_radam(
            b1,
            b2,
            eps,
            eps_root,
            threshold,
            eps_before_bias_correction=eps_before_bias_correction,
            nesterov=nesterov,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )
