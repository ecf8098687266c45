"""Shared pieces of the per-coordinate adaptive optimizers (``_adagrad``, ``_rmsprop``,
``_adadelta``): real accumulators, their tree checks and the guarded division.

Complex parameters: every second moment here accumulates ``|g|**2 = g * conj(g)``
(a real, non-negative array), and the update ``g / (denominator)`` keeps the
phase of ``g``. optax does the same. torch instead views a complex tensor as
pairs of reals (``torch.view_as_real``) and normalises the real and imaginary
parts separately, so torch and adaptx differ on complex parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from adaptx._base import Params, Updates
from adaptx._numerics import (
    _wide,
    compute_dtype,
    hyperparam,
)
from adaptx._sharding import full_like
from adaptx._signature import check_like


def _real(dtype: Any) -> Any:
    """The real dtype of a (possibly complex) floating dtype."""
    return jnp.finfo(dtype).dtype


def _tree_full_real(params: Params, value: Any, dtype: Any = None) -> Updates:
    """A real accumulator per parameter (real even for complex ones), filled with ``value``.

    In ``dtype`` if given (``nu_dtype``), else in the parameter's real precision.
    """

    def f(p: jax.Array) -> jax.Array:
        d = _real(jnp.result_type(p) if dtype is None else jax.dtypes.canonicalize_dtype(dtype))
        return full_like(p, hyperparam(value, compute_dtype(d)).astype(d), d)

    return jax.tree.map(f, params)


def _check_second_moment(where: str, updates: Any, nu: Any, nu_dtype: Any, params: Any) -> None:
    """The tree check against a real second moment (its precision, unless ``nu_dtype`` chose it)."""
    check_like(where, updates, nu, "precision" if nu_dtype is None else "any", params)


def _denominator(n: jax.Array, eps: Any, eps_in_sqrt: bool) -> jax.Array:
    """``sqrt(n + eps)`` or ``sqrt(n) + eps``, in ``n``'s (real, compute) dtype."""
    e = hyperparam(eps, n.dtype)
    return jnp.sqrt(n + e) if eps_in_sqrt else jnp.sqrt(n) + e


def _divide(g: jax.Array, denom: jax.Array) -> jax.Array:
    """``g / denom`` in the compute dtype, 0 where ``denom == 0``; returned in ``g``'s dtype.

    With ``eps = 0``, ``denom`` is 0 when the accumulator is: for a gradient
    that has been 0 so far (its update is 0, not 0/0), or for a centred
    variance estimate of exactly 0. The guard keeps derivatives through it
    finite too. Only a true zero is guarded: a NaN or infinite accumulator
    (from a non-finite gradient) gives a non-finite update, as in optax and
    torch.
    """
    gw = g.astype(_wide(g.dtype))
    zero = denom == 0
    safe = jnp.where(zero, jnp.ones((), denom.dtype), denom).astype(gw.dtype)
    return jnp.where(zero, jnp.zeros((), gw.dtype), gw / safe).astype(g.dtype)
