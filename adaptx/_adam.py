"""Adam and AdaMax (Kingma & Ba, ICLR 2015), and the helpers the Adam family shares.

The variants (AMSGrad, NAdam, RAdam) live in ``_adam_variants.py``, the
aliases (``adam``, ``adamw``, ...) in ``_adam_aliases.py``.

Dtypes, for every transform of the family:

- the first moment ``mu`` is kept in ``mu_dtype`` and the second moment
  ``nu`` in ``nu_dtype``; ``None`` (the default) means the parameter's dtype,
  as in optax. ``nu_dtype`` is adaptx's own (optax has none): bfloat16
  parameters with ``mu_dtype=nu_dtype=jnp.float32`` keep full-precision state;
- the arithmetic is done in float32, or float64 for float64 leaves (the
  moments' and the gradient's widest ``compute_dtype``), and every update is
  returned in the gradient's (= the parameter's) dtype;
- complex parameters: ``mu`` is complex (of ``mu_dtype``'s precision) and
  ``nu`` is the real moving average of ``|g|**2``, so the step is
  ``m_hat / (sqrt(v_hat) + eps)`` with a real, non-negative denominator.
  (torch treats a complex parameter as a pair of real ones, with one second
  moment per real and imaginary part; the two agree on real parameters.)
- a zero denominator (``eps = 0`` and a zero second moment, i.e. a
  coordinate whose gradients have all been 0) gives a zero step, not 0/0;
  float16 parameters give no NaN on a zero gradient (the arithmetic is in
  float32, where ``eps = 1e-8`` does not underflow; optax's float16 Adam
  returns NaN there).

Hyper-parameters are converted once per compute dtype with ``hyperparam``
and every derived quantity (``1 - b1``, ``1 - b1**t``) is computed from that
value with jnp operations, so a Python float and the same value given as an
array (a run-time hyper-parameter, possibly traced) give identical results.
Concrete values are validated at construction; traced values are not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._base import GradientTransformation, Params
from adaptx._numerics import (
    compute_dtype,
    hyperparam,
    log_decay,
    one_minus_pow,
    safe_increment,
    tree_update_infinity_moment,
    tree_update_moment,
    tree_update_moment_per_elem_norm,
)
from adaptx._sharding import zeros_like
from adaptx._signature import check_like, check_state
from adaptx._validate import check_decay, check_dtype, check_nonnegative, check_range

# --- helpers shared by the Adam family ----------------------------------------


def _canonical(dtype: Any) -> np.dtype | None:
    return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def _complex_of(real: np.dtype) -> np.dtype:
    return jnp.dtype(jnp.complex128 if jnp.dtype(real).itemsize > 4 else jnp.complex64)


def init_first_moment(params: Params, dtype: Any = None) -> Any:
    """Zeros for a first moment: ``dtype`` (default the leaf's), complex for complex leaves."""
    dtype = _canonical(dtype)

    def f(x: Any) -> jax.Array:
        leaf = jnp.dtype(jnp.result_type(x))
        d = leaf if dtype is None else dtype
        if jnp.issubdtype(leaf, jnp.complexfloating) and not jnp.issubdtype(d, jnp.complexfloating):
            d = _complex_of(d)
        return zeros_like(x, d)

    return jax.tree.map(f, params)


def init_second_moment(params: Params, dtype: Any = None) -> Any:
    """Zeros for a second (or infinity) moment: always real, ``dtype`` or the leaf's precision."""
    dtype = _canonical(dtype)

    def f(x: Any) -> jax.Array:
        d = jnp.dtype(jnp.result_type(x)) if dtype is None else dtype
        if jnp.issubdtype(d, jnp.complexfloating):
            d = jnp.finfo(d).dtype
        return zeros_like(x, d)

    return jax.tree.map(f, params)


def leaf_compute_dtype(*arrays: jax.Array) -> np.dtype:
    """The widest ``compute_dtype`` of the given arrays (float32 or float64)."""
    dtypes = [compute_dtype(jnp.result_type(a)) for a in arrays]
    return max(dtypes, key=lambda d: d.itemsize)


def widen(x: jax.Array, cdt: np.dtype) -> jax.Array:
    """``x`` cast to ``cdt``, or to its complex counterpart for a complex ``x``."""
    return x.astype(_complex_of(cdt) if jnp.iscomplexobj(x) else cdt)


def divide(x: jax.Array, d: jax.Array) -> jax.Array:
    """``x / d`` for a real ``d`` of ``x``'s (real) precision; ``x`` may be complex."""
    return x / d.astype(x.dtype)


def divide_or_zero(x: jax.Array, d: jax.Array) -> jax.Array:
    """``x / d``, and 0 where ``d == 0`` exactly (no 0/0, no x/0).

    A denominator ``sqrt(v) + eps`` is 0 only with ``eps = 0`` (or an ``eps``
    that underflows in a low-precision state) and ``v = 0``, i.e. for a
    coordinate whose gradients have been 0: its step is 0. Only a true zero is
    guarded: a NaN or infinite ``d`` (from a non-finite gradient) gives a
    non-finite quotient, so a bad gradient shows in the update, as in optax
    and torch, instead of freezing the coordinate silently. Both ``where``s
    keep the derivative through the guard finite too.
    """
    zero = d == 0
    q = divide(x, jnp.where(zero, jnp.ones((), d.dtype), d))
    return jnp.where(zero, jnp.zeros((), q.dtype), q)


def times(x: jax.Array, s: jax.Array) -> jax.Array:
    """``x * s`` for a real ``s`` of ``x``'s (real) precision; ``x`` may be complex."""
    return x * s.astype(x.dtype)


def check_moment_hyperparams(
    b1: Any, b2: Any, eps: Any, eps_root: Any = 0.0, *, mu_dtype: Any = None, nu_dtype: Any = None
) -> None:
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_nonnegative("eps", eps)
    check_nonnegative("eps_root", eps_root)
    check_dtype("mu_dtype", mu_dtype)
    check_dtype("nu_dtype", nu_dtype)


def check_moment_updates(
    where: str, updates: Any, state: Any, mu_dtype: Any, nu_dtype: Any, params: Any
) -> None:
    """The tree check of the Adam family, against ``state.mu`` / ``state.nu``.

    The parameters' dtype is exactly recorded by ``mu`` (default ``mu_dtype``)
    or, up to real/complex which ``mu`` tells, by ``nu`` (default ``nu_dtype``);
    with both chosen only real versus complex is checked (and ``params``, when given).
    """
    if mu_dtype is None:
        check_like(where, updates, state.mu, "exact", params)
    elif nu_dtype is None:
        check_like(where, updates, state.nu, "precision", params)
    else:
        check_like(where, updates, state.mu, "kind", params)


class ScaleByAdamState(NamedTuple):
    """State of ``scale_by_adam``, ``scale_by_adamax`` and ``scale_by_radam``.

    Attributes:
      count: number of updates so far (int32, saturating).
      mu: first moment, ``mu_dtype``.
      nu: second moment (the infinity moment for AdaMax), ``nu_dtype``, real.
    """

    count: jax.Array
    mu: Any
    nu: Any


def init_adam_state(mu_dtype: Any, nu_dtype: Any) -> Callable[[Params], ScaleByAdamState]:
    """The ``init`` of a transform whose state is ``ScaleByAdamState``."""

    def init_fn(params: Params) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=jnp.zeros((), jnp.int32),
            mu=init_first_moment(params, mu_dtype),
            nu=init_second_moment(params, nu_dtype),
        )

    return init_fn


def update_moments(updates: Any, state: Any, b1: Any, b2: Any) -> tuple[jax.Array, Any, Any]:
    """The incremented count and Adam's two moving averages, from ``state.count/mu/nu``."""
    return (
        safe_increment(state.count),
        tree_update_moment(updates, state.mu, b1, 1),
        tree_update_moment_per_elem_norm(updates, state.nu, b2, 2),
    )


def _first_moment_decay(b1: Any, b1_decay: Any, count: jax.Array, dtype: Any) -> jax.Array:
    """``beta1_t = b1 * b1_decay**(t - 1)`` (Theorem 4.1), or ``b1`` when ``b1_decay`` is None."""
    b = hyperparam(b1, dtype)
    if b1_decay is None:
        return b
    t = jnp.asarray(count).astype(dtype)
    return b * jnp.exp((t - 1) * log_decay(hyperparam(b1_decay, dtype)))


def _first_moment_correction(b1: Any, b1_decay: Any, count: jax.Array, dtype: Any) -> jax.Array:
    """``1 - prod_{i<=t} beta1_i``: the sum of the weights the EMA gives the gradients.

    ``1 - b1**t`` for a constant ``b1``; with ``beta1_i = b1 * lam**(i - 1)``
    the product is ``b1**t * lam**(t (t - 1) / 2)``, computed as
    ``-expm1(t log b1 + t (t - 1) / 2 log lam)``.
    """
    if b1_decay is None:
        return one_minus_pow(b1, count, dtype)
    t = jnp.asarray(count).astype(dtype)
    log_prod = t * log_decay(hyperparam(b1, dtype)) + (t * (t - 1) / 2) * log_decay(
        hyperparam(b1_decay, dtype)
    )
    return -jnp.expm1(log_prod)


# --- Adam ---------------------------------------------------------------------


def scale_by_adam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    b1_decay: float | jax.Array | None = None,
) -> GradientTransformation:
    r"""Scales updates by Adam's bias-corrected moment ratio (Kingma & Ba, Algorithm 1).

    With ``g_t`` the incoming update and ``t = 1, 2, ...``::

        m_t     = beta1_t m_{t-1} + (1 - beta1_t) g_t
        v_t     = b2 v_{t-1} + (1 - b2) |g_t|**2
        m_hat_t = m_t / (1 - prod_{i=1..t} beta1_i)      # = m_t / (1 - b1**t)
        v_hat_t = v_t / (1 - b2**t)
        out_t   = m_hat_t / (sqrt(v_hat_t + eps_root) + eps)

    ``eps`` is outside the root, after bias correction, as in the paper's
    Algorithm 1. ``beta1_t = b1`` unless ``b1_decay`` is given. The output is
    a direction: chain with ``scale_by_learning_rate`` (``adaptx.adam`` does).

    **Decaying first moment (Theorem 4.1).** The convergence theorem assumes
    ``beta1_t = b1 * lam**(t - 1)`` with ``lam`` in (0, 1) and a step size
    ``alpha / sqrt(t)`` (``inverse_sqrt_schedule``). ``b1_decay=lam`` gives
    it. Bias correction with a varying ``beta1_t``: the EMA gives the
    gradients weights that sum to ``1 - prod_i beta1_i``, so adaptx divides
    by exactly that (``1 - b1**t * lam**(t (t-1) / 2)``), which keeps
    ``m_hat`` a weighted *average* of past gradients (unbiased for a
    stationary gradient) and equals Algorithm 1's ``1 - b1**t`` when
    ``lam = 1``. (Dividing by ``1 - b1**t`` instead, Algorithm 1's formula
    taken literally, would over-correct and overshoot the gradient.)

    Defaults ``b1 = 0.9``, ``b2 = 0.999``, ``eps = 1e-8`` are the paper's.

    ==========================  ================================  ==================================
    adaptx                      optax 0.2.8                       torch 2.13
    ==========================  ================================  ==================================
    default                     ``scale_by_adam(b1, b2, eps)``    ``Adam(betas=(b1, b2), eps=eps)``
                                                                  (the whole optimizer: ``adam``)
    ``eps_root=r``              ``eps_root=r``                    no mapping
    ``mu_dtype=d``              ``mu_dtype=d``                    no mapping
    ``nu_dtype=d``              no mapping                        no mapping
    ``b1_decay=lam``            no mapping                        no mapping
    ==========================  ================================  ==================================

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to ``sqrt(v_hat)``, >= 0.
      eps_root: added to ``v_hat`` inside the root, >= 0 (for differentiating
        through the update).
      mu_dtype: dtype of the first moment; ``None`` = the parameter's.
      nu_dtype: dtype of the second moment; ``None`` = the parameter's (real part).
      b1_decay: ``lam`` in (0, 1] for ``beta1_t = b1 * lam**(t - 1)``; ``None``
        (the default) keeps ``b1`` constant.

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdamState``.

    Raises:
      ValueError: for a concrete hyper-parameter out of range (traced values
        are not checked).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_adam()
      >>> params = jnp.array([1.0, -2.0, 3.0])
      >>> state = tx.init(params)
      >>> out, state = tx.update(jnp.array([0.5, -4.0, 0.0]), state, params)
      >>> out.round(4)  # first step: g / |g|, and 0 where g = 0
      Array([ 1., -1.,  0.], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
      https://arxiv.org/abs/1412.6980 (Algorithm 1; Section 4, Theorem 4.1).
    """
    check_moment_hyperparams(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if b1_decay is not None:
        check_range("b1_decay", b1_decay, 0.0, 1.0, low_open=True)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_adam", state, ScaleByAdamState)
        check_moment_updates("scale_by_adam", updates, state, mu_dtype, nu_dtype, params)
        if b1_decay is None:
            count, mu, nu = update_moments(updates, state, b1, b2)
        else:
            count = safe_increment(state.count)
            nu = tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
            mu = jax.tree.map(
                lambda g, m: tree_update_moment(
                    g, m, _first_moment_decay(b1, b1_decay, count, compute_dtype(m.dtype)), 1
                ),
                updates,
                state.mu,
            )

        @functools.cache
        def scalars(cdt):
            return (
                _first_moment_correction(b1, b1_decay, count, cdt),
                one_minus_pow(b2, count, cdt),
                hyperparam(eps, cdt),
                hyperparam(eps_root, cdt),
            )

        def direction(g, m, v):
            cdt = leaf_compute_dtype(g, m, v)
            c1, c2, e, er = scalars(cdt)
            m_hat = divide(widen(m, cdt), c1)
            denom = jnp.sqrt(v.astype(cdt) / c2 + er) + e
            return divide_or_zero(m_hat, denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_adam_state(mu_dtype, nu_dtype), update_fn)


# --- AdaMax -------------------------------------------------------------------


def scale_by_adamax(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Scales updates by AdaMax's ratio to an infinity-norm moment (Kingma & Ba, Algorithm 2).

    ::

        m_t   = b1 m_{t-1} + (1 - b1) g_t
        u_t   = max(b2 u_{t-1}, |g_t| + eps)
        out_t = m_t / ((1 - b1**t) u_t)

    ``u`` needs no bias correction. **eps placement:** the paper has no
    ``eps`` (``u_t = max(b2 u_{t-1}, |g_t|)``) and divides 0 by 0 on a
    coordinate whose gradient is zero from the start. adaptx puts ``eps``
    inside the maximum by default, as optax and torch do, so such a
    coordinate gets a zero step; ``eps=0`` is Algorithm 2, except that a
    coordinate with ``u_t = 0`` (all its gradients 0 so far, so ``m_t = 0``)
    gets a zero step rather than 0/0. The same guard keeps float16
    parameters finite: there ``eps = 1e-8`` underflows to 0 in ``u`` (optax
    returns NaN on a zero gradient).

    **Step bound.** The paper states ``|Delta_t| <= alpha``. What holds
    exactly is ``|out_t| <= (1 - b1) / (1 - b1 / b2)`` for ``b1 < b2``
    (1.009 with the defaults): a gradient that shrinks by ``b2`` per step can
    make the step exceed ``alpha`` by up to that factor.

    Defaults ``b1 = 0.9``, ``b2 = 0.999`` are the paper's (its learning rate,
    0.002, is ``adaptx.adamax``'s).

    ==========================  ================================  ==================================
    adaptx                      optax 0.2.8                       torch 2.13
    ==========================  ================================  ==================================
    default                     ``scale_by_adamax(b1, b2, eps)``  ``Adamax(betas=(b1, b2),
                                                                  eps=eps)`` (the whole optimizer:
                                                                  ``adamax``)
    ``eps=0`` (Algorithm 2)     ``eps=0``                         ``eps=0``
    ``mu_dtype``, ``nu_dtype``  no mapping                        no mapping
    ==========================  ================================  ==================================

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the infinity moment, in [0, 1).
      eps: added to ``|g|`` inside the maximum, >= 0.
      mu_dtype: dtype of the first moment; ``None`` = the parameter's.
      nu_dtype: dtype of the infinity moment ``u``; ``None`` = the parameter's (real part).

    Returns:
      A ``GradientTransformation`` with state ``ScaleByAdamState`` (``nu`` is ``u``).

    Raises:
      ValueError: for a concrete hyper-parameter out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_adamax()
      >>> state = tx.init(jnp.zeros(2))
      >>> out, state = tx.update(jnp.array([2.0, 0.0]), state)
      >>> out.round(4)  # m_hat / u = 2 / (2 + eps); 0 / eps
      Array([1., 0.], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
      https://arxiv.org/abs/1412.6980 (Section 7.1, Algorithm 2).
    """
    check_moment_hyperparams(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_adamax", state, ScaleByAdamState)
        check_moment_updates("scale_by_adamax", updates, state, mu_dtype, nu_dtype, params)
        count = safe_increment(state.count)
        mu = tree_update_moment(updates, state.mu, b1, 1)
        nu = tree_update_infinity_moment(updates, state.nu, b2, eps)
        correction = functools.cache(lambda cdt: one_minus_pow(b1, count, cdt))

        def direction(g, m, u):
            cdt = leaf_compute_dtype(g, m, u)
            # u = 0 only where every |g| + eps so far was 0 (eps = 0, or eps underflowing
            # to 0 in a float16 u): m is 0 there too, and the step is 0, not 0/0.
            denom = correction(cdt) * u.astype(cdt)
            return divide_or_zero(widen(m, cdt), denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, nu)
        return out, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_adam_state(mu_dtype, nu_dtype), update_fn)
