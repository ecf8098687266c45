"""Stochastic gradient descent: the momentum trace, the moving average, and ``sgd``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import GradientTransformation, Params, ScalarOrSchedule, Updates, identity
from adaptx._combine import chain
from adaptx._numerics import (
    _wide,
    bias_correction,
    hyperparam,
    is_concrete_number,
    safe_increment,
    tree_cast,
    tree_update_moment,
    tree_zeros_like,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._signature import check_like, check_state
from adaptx._validate import check_decay, check_dtype, check_momentum


def _accumulator_dtype(dtype: Any) -> Any:
    """``None``, or ``dtype`` canonicalised (float64 becomes float32 without x64)."""
    check_dtype("accumulator_dtype", dtype)
    return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def _zeros_accumulator(params: Params, dtype: Any) -> Updates:
    """Zero buffers like ``params``, in ``dtype`` if given (complex params need a complex one)."""
    if dtype is not None and not jnp.issubdtype(dtype, jnp.complexfloating):
        for p in jax.tree.leaves(params):
            if jnp.iscomplexobj(p):
                raise ValueError(
                    f"accumulator_dtype={dtype} is real but a parameter is {jnp.result_type(p)}; "
                    "pass a complex accumulator_dtype (e.g. complex64) or None"
                )
    return tree_zeros_like(params, dtype)


def check_nesterov(momentum: Any, nesterov: bool) -> None:
    """Nesterov momentum needs a momentum: ``nesterov=True`` with none is an error.

    optax silently ignores ``nesterov=True`` when ``momentum`` is ``None``;
    ``torch.optim.SGD`` raises, as adaptx does (also for a concrete ``0``).
    """
    if not nesterov:
        return
    if momentum is None or (is_concrete_number(momentum) and float(momentum) == 0.0):
        raise ValueError(
            f"nesterov=True needs a positive momentum, got momentum={momentum!r}; "
            "pass momentum=0.9 (say) or nesterov=False"
        )


class TraceState(NamedTuple):
    """State of ``trace``: the momentum buffer ``b``, one leaf per parameter."""

    trace: Updates


def trace(
    decay: float | jax.Array,
    *,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Heavy-ball momentum: a decaying sum of past updates.

    With ``g_t`` the incoming update and ``mu = decay``::

        b_t = mu * b_{t-1} + g_t          (b_0 = 0)
        out = b_t                          (heavy ball)
        out = g_t + mu * b_t               (nesterov=True)

    This is momentum as optax and ``torch.optim.SGD`` (with ``dampening=0``)
    implement it, with the learning rate applied *after* the buffer (chain
    ``scale_by_learning_rate`` after ``trace``); Sutskever et al. (2013) write
    the same recursion with the learning rate inside the buffer, which is the
    same for a constant learning rate. The Nesterov form is the one of Bengio
    et al. (2013), Section 3.5, used by optax and torch: the look-ahead
    gradient is replaced by ``g_t + mu * b_t``.

    Arithmetic is done in float32, or wider for float64 leaves; complex
    updates keep a complex buffer (``mu`` is real). ``decay`` is validated
    when concrete (``0 <= decay <= 1``: above 1 the buffer grows
    exponentially; torch and optax accept it); a traced ``decay`` is not
    checked. ``update`` checks the updates against the buffer's structure and
    shapes and, without ``accumulator_dtype``, its dtype (see
    ``TreeSignature``).

    Reproducing the peers (``lr`` a number or schedule, ``mu > 0``):

    =======================================  =================================================
    peer                                     adaptx
    =======================================  =================================================
    ``optax.trace(mu, nesterov=n,``          ``trace(mu, nesterov=n, accumulator_dtype=d)``
    ``accumulator_dtype=d)``
    ``optax.sgd(lr, mu, nesterov=n)``        ``sgd(lr, mu, nesterov=n)``, which is
                                             ``chain(trace(mu, nesterov=n),``
                                             ``scale_by_learning_rate(lr))``
    ``optax.sgd(lr)``                        ``sgd(lr)``
    ``torch.optim.SGD(lr=lr, momentum=mu,``  ``sgd(lr, mu, nesterov=n)``
    ``nesterov=n)``
    ``torch.optim.SGD(lr=lr)``               ``sgd(lr)``
    ``torch.optim.SGD(dampening=d)``,        no mapping: torch's first step ignores the
    ``d != 0``                               dampening (``b_1 = g_1``); no adaptx transform
                                             does that
    ``torch.optim.SGD(weight_decay=wd)``     ``add_decayed_weights(wd)`` chained first
    =======================================  =================================================

    With ``accumulator_dtype`` the buffer is the same as optax's; adaptx
    returns the updates in the gradient's dtype, optax in the buffer's.

    A torch learning-rate scheduler maps to an adaptx schedule giving the
    same value at ``count = t - 1`` on step ``t``.

    Args:
      decay: the momentum ``mu`` in [0, 1] (a number or a scalar array).
      nesterov: output ``g_t + mu * b_t`` instead of ``b_t``.
      accumulator_dtype: dtype of the buffer; ``None`` keeps each parameter's dtype.

    Returns:
      A ``GradientTransformation`` with state ``TraceState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.trace(0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([1.0]), state)  # b = 1
      >>> u, state = tx.update(jnp.array([1.0]), state)  # b = 0.5 * 1 + 1
      >>> u
      Array([1.5], dtype=float32)

    References:
      Polyak, "Some methods of speeding up the convergence of iteration
      methods", USSR Computational Mathematics and Mathematical Physics, 1964,
      https://doi.org/10.1016/0041-5553(64)90137-5

      Sutskever, Martens, Dahl, Hinton, "On the importance of initialization
      and momentum in deep learning", ICML 2013,
      https://proceedings.mlr.press/v28/sutskever13.html

      Bengio, Boulanger-Lewandowski, Pascanu, "Advances in optimizing recurrent
      networks", ICASSP 2013, https://arxiv.org/abs/1212.0901
    """
    check_momentum("decay", decay)
    accumulator_dtype = _accumulator_dtype(accumulator_dtype)

    def init_fn(params: Params) -> TraceState:
        return TraceState(trace=_zeros_accumulator(params, accumulator_dtype))

    def mu_for(x: jax.Array) -> jax.Array:
        return hyperparam(decay, jnp.finfo(x.dtype).dtype).astype(x.dtype)

    def new_buffer(g: jax.Array, b: jax.Array) -> jax.Array:
        # In the wider of the two dtypes, at least float32 (complex stays complex).
        with jax.numpy_dtype_promotion("standard"):  # only to pick the wider dtype
            cdt = _wide(jnp.promote_types(g.dtype, b.dtype))
        b = b.astype(cdt)
        return mu_for(b) * b + g.astype(cdt)

    def output(g: jax.Array, b: jax.Array) -> jax.Array:
        out = g.astype(b.dtype) + mu_for(b) * b if nesterov else b
        return out.astype(g.dtype)

    mode = "exact" if accumulator_dtype is None else "kind"

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("trace", state, TraceState)
        check_like("trace", updates, state.trace, mode, params)
        wide = jax.tree.map(new_buffer, updates, state.trace)
        out = jax.tree.map(output, updates, wide)
        new = jax.tree.map(lambda w, b: w.astype(b.dtype), wide, state.trace)
        return out, TraceState(trace=new)

    return GradientTransformation(init_fn, update_fn)


class EmaState(NamedTuple):
    """State of ``ema``: the update count (int32) and the moving average."""

    count: jax.Array
    ema: Updates


def ema(
    decay: float | jax.Array,
    *,
    debias: bool = True,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Exponential moving average of the updates, bias-corrected by default.

    With ``beta = decay`` and ``t`` counted from 1::

        m_t = beta * m_{t-1} + (1 - beta) * g_t      (m_0 = 0)
        out = m_t / (1 - beta**t)                     (debias=True, the default)
        out = m_t                                     (debias=False)

    The bias correction is the one of Kingma & Ba (2015), Section 3: it makes
    the average of a constant input equal to that input from the first step.
    ``1 - beta**t`` is computed with ``expm1`` in float32 or wider, so it is
    accurate for ``beta`` close to 1. Compare ``trace``, which sums without
    the ``(1 - beta)`` factor. Complex updates give a complex average.

    ``decay`` is validated when concrete (``0 <= decay < 1``); a traced value
    is not checked.

    Reproducing the peers:

    ==================================================  ===========================================
    peer                                                adaptx
    ==================================================  ===========================================
    ``optax.ema(b, debias=d, accumulator_dtype=dt)``    ``ema(b, debias=d, accumulator_dtype=dt)``
    ``torch.optim.SGD(momentum=b, dampening=b)``        no mapping: torch's first step is
                                                        ``b_1 = g_1``, not ``(1 - b) g_1``
    any other torch optimizer                           no counterpart (torch has no EMA transform)
    ==================================================  ===========================================

    Args:
      decay: the decay rate ``beta`` in [0, 1).
      debias: divide by ``1 - beta**t``.
      accumulator_dtype: dtype of the average; ``None`` keeps each parameter's dtype.

    Returns:
      A ``GradientTransformation`` with state ``EmaState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.ema(0.9)
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.array([2.0]), state)  # m = 0.2, debiased: 0.2 / 0.1
      >>> u
      Array([2.], dtype=float32)

    References:
      Kingma, Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
      Section 3 (initialisation bias correction), https://arxiv.org/abs/1412.6980
    """
    check_decay("decay", decay)
    accumulator_dtype = _accumulator_dtype(accumulator_dtype)

    def init_fn(params: Params) -> EmaState:
        return EmaState(
            count=jnp.zeros((), jnp.int32), ema=_zeros_accumulator(params, accumulator_dtype)
        )

    mode = "exact" if accumulator_dtype is None else "kind"

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("ema", state, EmaState)
        check_like("ema", updates, state.ema, mode, params)
        new_ema = tree_update_moment(updates, state.ema, decay, 1)
        count = safe_increment(state.count)
        out = bias_correction(new_ema, decay, count) if debias else new_ema
        out = jax.tree.map(lambda o, g: o.astype(g.dtype), out, updates)
        return out, EmaState(count=count, ema=tree_cast(new_ema, accumulator_dtype))

    return GradientTransformation(init_fn, update_fn)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | jax.Array | None = None,
    *,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    ``u_t = -lr_t * g_t``; with momentum ``mu`` the direction is ``trace``'s
    buffer ``b_t = mu * b_{t-1} + g_t`` (or ``g_t + mu * b_t`` for Nesterov),
    scaled by the learning rate after the buffer, as optax and torch do::

        chain(trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
              if momentum is not None else identity(),
              scale_by_learning_rate(learning_rate))

    Same numbers as ``optax.sgd`` and ``torch.optim.SGD`` (``dampening=0``)
    with the same arguments; see ``trace`` for the table. Unlike optax,
    ``nesterov=True`` without a momentum (``None`` or ``0``) raises
    ``ValueError``, as torch does; ``momentum`` must be in [0, 1] and the
    learning rate non-negative (checked when concrete; traced values and
    schedules after their first value are not).

    Args:
      learning_rate: a number, scalar array, or schedule ``count -> value``.
      momentum: ``None`` for plain SGD, or the momentum ``mu`` in [0, 1].
      nesterov: use Nesterov momentum (needs ``momentum``).
      accumulator_dtype: dtype of the momentum buffer; ``None`` keeps the parameters'.

    Returns:
      A ``GradientTransformation`` (a ``chain``).

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> f = lambda x: jnp.sum(x**2)
      >>> tx = adaptx.sgd(0.1, momentum=0.9, nesterov=True)
      >>> x = jnp.array([1.0, 2.0, 3.0])
      >>> state = tx.init(x)
      >>> for _ in range(50):
      ...     u, state = tx.update(jax.grad(f)(x), state, x)
      ...     x = adaptx.apply_updates(x, u)
      >>> bool(f(x) < 1e-3)
      True

    References:
      Robbins, Monro, "A Stochastic Approximation Method", The Annals of
      Mathematical Statistics, 1951, https://doi.org/10.1214/aoms/1177729586

      Sutskever, Martens, Dahl, Hinton, "On the importance of initialization
      and momentum in deep learning", ICML 2013,
      https://proceedings.mlr.press/v28/sutskever13.html
    """
    if momentum is not None:
        check_momentum("momentum", momentum)
    check_nesterov(momentum, nesterov)
    return chain(
        trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
        if momentum is not None
        else identity(),
        scale_by_learning_rate(learning_rate),
    )
