"""RMSProp (Tieleman & Hinton 2012): ``scale_by_rms``, the centred
``scale_by_stddev`` and ``rmsprop`` (momentum, Nesterov, centring).

Complex parameters: see ``_adaptive``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adam import init_first_moment
from adaptx._adaptive import (
    _check_second_moment,
    _denominator,
    _divide,
    _tree_full_real,
)
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule, Updates, identity
from adaptx._combine import chain
from adaptx._numerics import (
    _wide,
    abs_sq,
    compute_dtype,
    one_minus_pow,
    safe_increment,
    tree_update_moment,
    tree_update_moment_per_elem_norm,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._sgd import check_nesterov, trace
from adaptx._signature import check_like, check_state
from adaptx._validate import (
    check_decay,
    check_dtype,
    check_momentum,
    check_nonnegative,
)

_RMSPROP_PEERS = """
    Reproducing the peers (``lr`` a number or schedule; torch's ``alpha`` is
    ``decay``):

    ======================================================  ========================================
    peer                                                    adaptx
    ======================================================  ========================================
    ``optax.scale_by_rms(d, e, s, eps_in_sqrt=i,``          ``scale_by_rms(d, e, s, eps_in_sqrt=i,``
    ``bias_correction=b)``                                  ``bias_correction=b)``
    ``optax.scale_by_stddev(...)``                          ``scale_by_stddev(...)`` (same keywords)
    ``optax.rmsprop(lr, d, e, s, i, c, m, n, b)``           ``rmsprop(lr, d, e, s, eps_in_sqrt=i,``
                                                            ``centered=c, momentum=m, nesterov=n,``
                                                            ``bias_correction=b)``
    ``torch.optim.RMSprop(lr=lr, alpha=d, eps=e,``          ``rmsprop(lr, d, e, eps_in_sqrt=False,``
    ``centered=c)``                                         ``centered=c)``
    ``torch.optim.RMSprop(..., momentum=m)``, ``m > 0``     ``rmsprop(lr, d, e, eps_in_sqrt=False,``
                                                            ``centered=c, momentum=m,``
                                                            ``lr_before_momentum=False)``
    ``torch.optim.RMSprop(weight_decay=wd)``                ``add_decayed_weights(wd)`` first
    ``initial_scale != 0``, ``bias_correction``, Nesterov   no torch setting
    ======================================================  ========================================

    optax's default is ``eps`` inside the root and ``decay = 0.9``; torch's is
    ``eps`` outside and ``alpha = 0.99``. ``optax.rmsprop(nesterov=True)``
    without momentum silently ignores Nesterov; adaptx raises.
"""


class ScaleByRmsState(NamedTuple):
    """State of ``scale_by_rms``: the average of ``|g|**2`` (real)."""

    nu: Updates


class ScaleByRmsWithCountState(NamedTuple):
    """State of ``scale_by_rms(bias_correction=True)``: also the update count (int32)."""

    count: jax.Array
    nu: Updates


def _check_rms(decay: Any, eps: Any, initial_scale: Any, mu_dtype: Any, nu_dtype: Any) -> None:
    check_decay("decay", decay)
    check_nonnegative("eps", eps)
    check_nonnegative("initial_scale", initial_scale)
    check_dtype("mu_dtype", mu_dtype)
    check_dtype("nu_dtype", nu_dtype)


def _rms_scale(g, nu, decay, eps, eps_in_sqrt, count=None, mu=None):
    """``g / denominator`` for RMSProp, centred when ``mu`` is given, in compute dtype.

    ``count`` is given with bias correction only.
    """
    cdt = compute_dtype(nu.dtype)
    n = nu.astype(cdt)
    c = None if count is None else one_minus_pow(decay, count, cdt)
    if c is not None:
        n = n / c
    if mu is not None:
        m = mu.astype(_wide(mu.dtype))
        if c is not None:
            m = m / c.astype(m.dtype)
        # Mathematically v - |m|**2 >= 0 (Cauchy-Schwarz); clamp the rounding below 0.
        n = jnp.maximum(n - abs_sq(m).astype(cdt), jnp.zeros((), cdt))
    return _divide(g, _denominator(n, eps, eps_in_sqrt))


def scale_by_rms(
    decay: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-8,
    initial_scale: float | jax.Array = 0.0,
    *,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""RMSProp's scaling: divide by the root of a moving average of squared gradients.

    Per coordinate, with ``rho = decay``, ``v_0 = initial_scale`` and ``t`` from 1::

        v_t = rho * v_{t-1} + (1 - rho) * |g_t|**2
        vh  = v_t / (1 - rho**t)  if bias_correction  else  v_t
        out = g_t / sqrt(vh + eps)        (eps_in_sqrt=True, the default)
        out = g_t / (sqrt(vh) + eps)      (eps_in_sqrt=False, torch's form)

    Hinton's lecture gives ``rho = 0.9`` and leaves the rest open, so the
    defaults are optax 0.2.8's (``decay=0.9, eps=1e-8, initial_scale=0,
    eps_in_sqrt=True``). TensorFlow 1 used ``initial_scale = 1``.
    ``bias_correction`` divides by ``1 - rho**t`` as Adam does (then
    ``eps_in_sqrt=False`` gives Adam with ``b1 = 0``). Arithmetic is in float32
    or wider. For complex parameters ``v`` averages ``|g|**2`` (real) and the
    update keeps ``g``'s phase, as in optax; torch normalises the real and
    imaginary parts separately, so it differs there.
    A coordinate whose gradients have all been 0 gets update 0 even with
    ``eps = 0``.

    Hyper-parameters are validated when concrete (``0 <= decay < 1``, ``eps
    >= 0``, ``initial_scale >= 0``); traced values are not checked.
    {peers}
    Args:
      decay: ``rho`` in [0, 1).
      eps: added to the denominator, ``>= 0``.
      initial_scale: ``v_0 >= 0``.
      eps_in_sqrt: add ``eps`` under the square root rather than outside it.
      bias_correction: divide ``v_t`` by ``1 - decay**t``.
      nu_dtype: dtype of ``v``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByRmsState``, or
      ``ScaleByRmsWithCountState`` with ``bias_correction`` (optax's layouts).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_rms(decay=0.75, eps=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([2.0, 0.0]), state)  # v = 0.25 * 4 = 1
      >>> u
      Array([2., 0.], dtype=float32)

    References:
      Hinton, Srivastava, Swersky, "Neural Networks for Machine Learning",
      Coursera, lecture 6e "rmsprop", 2012,
      https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf
    """
    _check_rms(decay, eps, initial_scale, None, nu_dtype)

    state_type = ScaleByRmsWithCountState if bias_correction else ScaleByRmsState

    def init_fn(params: Params) -> Any:
        nu = _tree_full_real(params, initial_scale, nu_dtype)
        if bias_correction:
            return ScaleByRmsWithCountState(count=jnp.zeros((), jnp.int32), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_rms", state, state_type)
        _check_second_moment("scale_by_rms", updates, state.nu, nu_dtype, params)
        nu = tree_update_moment_per_elem_norm(updates, state.nu, decay, 2)
        count = safe_increment(state.count) if bias_correction else None
        out = jax.tree.map(
            lambda g, n: _rms_scale(g, n, decay, eps, eps_in_sqrt, count),
            updates,
            nu,
        )
        if bias_correction:
            return out, ScaleByRmsWithCountState(count=count, nu=nu)
        return out, ScaleByRmsState(nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByStddevState(NamedTuple):
    """State of ``scale_by_stddev``: the averages of ``g`` and of ``|g|**2``."""

    mu: Updates
    nu: Updates


class ScaleByStddevWithCountState(NamedTuple):
    """State of ``scale_by_stddev(bias_correction=True)``: also the update count (int32)."""

    count: jax.Array
    mu: Updates
    nu: Updates


def scale_by_stddev(
    decay: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-8,
    initial_scale: float | jax.Array = 0.0,
    *,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Centred RMSProp's scaling: divide by a moving estimate of the gradient's std.

    As ``scale_by_rms``, with also a moving average of the gradient itself
    (``m_0 = 0``), and the variance in place of the second moment::

        m_t = rho * m_{t-1} + (1 - rho) * g_t
        v_t = rho * v_{t-1} + (1 - rho) * |g_t|**2
        mh, vh = m_t / (1 - rho**t), v_t / (1 - rho**t)  if bias_correction
        s_t = max(vh - |mh|**2, 0)
        out = g_t / sqrt(s_t + eps)       (eps_in_sqrt=True, the default)
        out = g_t / (sqrt(s_t) + eps)     (eps_in_sqrt=False, torch's form)

    The centred form is the one of Graves (2013), Section 4 (with ``eps``
    under the root there). ``v - |m|**2`` is never negative in exact
    arithmetic (Cauchy-Schwarz, for ``v_0 >= 0``); the clamp at 0 only
    removes rounding below 0, where optax and torch take the root of a
    negative number and return NaN; with ``eps = 0`` a variance
    estimate of 0 gives update 0. Defaults as ``scale_by_rms`` (optax 0.2.8's);
    for complex parameters ``m`` is complex and ``v`` averages ``|g|**2``
    (real), as in optax (torch treats real and imaginary parts separately).

    With ``bias_correction`` the variance estimate is exactly 0 at step 1 (one
    sample), so the first update is ``g / sqrt(eps)`` (``1e4 g`` with the
    default eps) and depends on rounding noise in ``vh - |mh|**2``: pick a
    larger ``eps`` (``1e-4`` to ``1``) with that flag.

    Hyper-parameters are validated when concrete (``0 <= decay < 1``, ``eps
    >= 0``, ``initial_scale >= 0``); traced values are not checked.
    {peers}
    Args:
      decay: ``rho`` in [0, 1).
      eps: added to the denominator, ``>= 0``.
      initial_scale: ``v_0 >= 0``.
      eps_in_sqrt: add ``eps`` under the square root rather than outside it.
      bias_correction: divide ``m_t`` and ``v_t`` by ``1 - decay**t``.
      mu_dtype: dtype of ``m`` (complex for complex parameters); ``None`` = the parameter's.
      nu_dtype: dtype of ``v``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByStddevState``, or
      ``ScaleByStddevWithCountState`` with ``bias_correction`` (optax's layouts).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_stddev(decay=0.5, eps=0.0)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([2.0]), state)  # m = 1, v = 2: std 1
      >>> u
      Array([2.], dtype=float32)

    References:
      Hinton, Srivastava, Swersky, "Neural Networks for Machine Learning",
      Coursera, lecture 6e "rmsprop", 2012,
      https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf

      Graves, "Generating Sequences With Recurrent Neural Networks", arXiv
      2013, https://arxiv.org/abs/1308.0850
    """
    _check_rms(decay, eps, initial_scale, mu_dtype, nu_dtype)

    state_type = ScaleByStddevWithCountState if bias_correction else ScaleByStddevState

    def init_fn(params: Params) -> Any:
        mu = init_first_moment(params, mu_dtype)
        nu = _tree_full_real(params, initial_scale, nu_dtype)
        if bias_correction:
            return ScaleByStddevWithCountState(count=jnp.zeros((), jnp.int32), mu=mu, nu=nu)
        return ScaleByStddevState(mu=mu, nu=nu)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_stddev", state, state_type)
        if mu_dtype is None:
            check_like("scale_by_stddev", updates, state.mu, "exact", params)
        else:
            _check_second_moment("scale_by_stddev", updates, state.nu, nu_dtype, params)
        mu = tree_update_moment(updates, state.mu, decay, 1)
        nu = tree_update_moment_per_elem_norm(updates, state.nu, decay, 2)
        count = safe_increment(state.count) if bias_correction else None
        out = jax.tree.map(
            lambda g, m, n: _rms_scale(g, n, decay, eps, eps_in_sqrt, count, m),
            updates,
            mu,
            nu,
        )
        if bias_correction:
            return out, ScaleByStddevWithCountState(count=count, mu=mu, nu=nu)
        return out, ScaleByStddevState(mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


# One table for both docstrings (absent under ``python -OO``).
for _f in (scale_by_rms, scale_by_stddev):
    if _f.__doc__:
        _f.__doc__ = _f.__doc__.replace("{peers}", _RMSPROP_PEERS)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-8,
    initial_scale: float | jax.Array = 0.0,
    *,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | jax.Array | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    lr_before_momentum: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""RMSProp (Hinton 2012), optionally centred (Graves 2013) and with momentum.

    The chain, with ``scaling = scale_by_stddev(...)`` if ``centered`` else
    ``scale_by_rms(...)`` and ``mom = trace(momentum, nesterov=nesterov)`` (or
    ``identity()`` when ``momentum`` is ``None``)::

        chain(scaling, scale_by_learning_rate(learning_rate), mom)  # lr_before_momentum=True
        chain(scaling, mom, scale_by_learning_rate(learning_rate))  # lr_before_momentum=False

    Where the momentum sits: optax (and TensorFlow) feed the momentum buffer
    with learning-rate-scaled steps, ``b_t = mu b_{t-1} + lr_t g_t / den_t``,
    ``u_t = -b_t``; torch feeds it unscaled ones and scales its output,
    ``b_t = mu b_{t-1} + g_t / den_t``, ``u_t = -lr_t b_t``. With a constant
    learning rate the two are the same; under a schedule they differ (a
    learning-rate drop takes effect at once in torch's form, gradually in
    optax's). The default is optax's (``lr_before_momentum=True``): the
    lecture leaves the choice open, Graves (2013, Section 4), where RMSProp
    with momentum is first written down, puts the learning rate inside the
    buffer, and following optax gives optax users the same numbers.
    ``lr_before_momentum=False`` gives torch's form.

    Defaults follow optax 0.2.8 (``decay=0.9``, ``eps=1e-8`` inside the root,
    ``initial_scale=0``); torch's RMSprop is ``rmsprop(lr, 0.99, 1e-8,
    eps_in_sqrt=False, lr_before_momentum=False)``. The full table is in
    ``scale_by_rms``. ``nesterov=True`` without a momentum (``None`` or 0)
    raises ``ValueError``; ``momentum`` must be ``>= 0``.

    Args:
      learning_rate: a number, scalar array, or schedule ``count -> value``.
      decay: ``rho`` in [0, 1), the decay of the squared-gradient average.
      eps: added to the denominator, ``>= 0``.
      initial_scale: initial value of the squared-gradient average, ``>= 0``.
      eps_in_sqrt: add ``eps`` under the square root (optax) or outside (torch).
      centered: divide by the standard deviation rather than the root mean square.
      momentum: ``None`` (no momentum) or ``mu >= 0``.
      nesterov: Nesterov momentum (needs ``momentum``).
      bias_correction: bias-correct the moving averages by ``1 - decay**t``.
      lr_before_momentum: scale by the learning rate before the momentum buffer
        (optax, default) or after it (torch).
      mu_dtype: dtype of the first-moment buffers (the centred mean and the
        momentum); ``None`` = the parameters'.
      nu_dtype: dtype of the squared-gradient average; ``None`` = the parameters' (real part).

    Returns:
      A ``GradientTransformation`` (a ``chain``).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> f = lambda x: jnp.sum(x**2)
      >>> tx = adaptx.rmsprop(0.01, momentum=0.9, lr_before_momentum=False)
      >>> x = jnp.array([1.0, 2.0, 3.0])
      >>> state = tx.init(x)
      >>> for _ in range(300):
      ...     u, state = tx.update(jax.grad(f)(x), state, x)
      ...     x = adaptx.apply_updates(x, u)
      >>> bool(f(x) < 1e-2)
      True

    References:
      Hinton, Srivastava, Swersky, "Neural Networks for Machine Learning",
      Coursera, lecture 6e "rmsprop", 2012,
      https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf

      Graves, "Generating Sequences With Recurrent Neural Networks", arXiv
      2013, https://arxiv.org/abs/1308.0850
    """
    if momentum is not None:
        check_momentum("momentum", momentum)
    check_nesterov(momentum, nesterov)
    check_dtype("mu_dtype", mu_dtype)
    kwargs = dict(eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction, nu_dtype=nu_dtype)
    if centered:
        scaling = scale_by_stddev(decay, eps, initial_scale, mu_dtype=mu_dtype, **kwargs)
    else:
        scaling = scale_by_rms(decay, eps, initial_scale, **kwargs)
    mom = (
        trace(momentum, nesterov=nesterov, accumulator_dtype=mu_dtype)
        if momentum is not None
        else identity()
    )
    lr = scale_by_learning_rate(learning_rate)
    return chain(scaling, lr, mom) if lr_before_momentum else chain(scaling, mom, lr)
