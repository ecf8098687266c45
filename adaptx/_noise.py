"""Annealed Gaussian gradient noise (Neelakantan et al., 2015)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._base import GradientTransformation
from adaptx._numerics import _widen, compute_dtype, hyperparam, safe_increment
from adaptx._signature import check_state, check_updates
from adaptx._validate import check_nonnegative


class AddNoiseState(NamedTuple):
    """State of ``add_noise`` (optax's field names).

    Attributes:
      count: number of updates so far (int32, saturating).
      rng_key: the PRNG key of the next step, as raw key data (``uint32``,
        ``jax.random.key_data``), so the state saves and loads like any array
        (``save_state``); optax keeps a typed key here.
    """

    count: jax.Array
    rng_key: jax.Array


def _key_data_and_impl(key: Any) -> tuple[jax.Array, Any]:
    if key is None:
        raise TypeError(
            "add_noise needs a key: add_noise(eta, gamma, key=0) or key=jax.random.key(0) "
            "(optax falls back to 0 with a warning; a silent fixed seed is a bug in waiting)"
        )
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single PRNG key, got an array of shape {key.shape}")
        return jax.random.key_data(key), jax.random.key_impl(key)
    if isinstance(key, (float, np.floating)):
        raise ValueError(f"key must be an integer seed or a PRNG key, got {key!r}")
    if isinstance(key, (bool, np.bool_)) or not isinstance(
        key, (int, np.integer, np.ndarray, jax.Array)
    ):
        raise TypeError(f"key must be an integer seed or a PRNG key, got {key!r}")
    if isinstance(key, int) or (
        jnp.ndim(key) == 0 and jnp.issubdtype(jnp.result_type(key), jnp.integer)
    ):
        k = jax.random.key(key)
        return jax.random.key_data(k), jax.random.key_impl(k)
    if jnp.ndim(key) == 1 and jnp.result_type(key) == jnp.uint32:  # a raw jax.random.PRNGKey
        k = jax.random.wrap_key_data(jnp.asarray(key))
        return jax.random.key_data(k), jax.random.key_impl(k)
    raise TypeError(f"key must be an integer seed or a PRNG key, got {key!r}")


def add_noise(eta: float | jax.Array, gamma: float | jax.Array, key: Any) -> GradientTransformation:
    r"""Adds annealed Gaussian noise to the updates (Neelakantan et al., 2015).

    With ``t = 0`` on the first update (the paper's Eq. 1)::

        sigma_t**2 = eta / (1 + t)**gamma
        out_t      = g_t + N(0, sigma_t**2)          (independently per element)

    The paper's settings: ``eta`` in {0.01, 0.3, 1.0}, ``gamma = 0.55``.
    Noise is drawn per leaf from keys split off the state's key, exactly as
    optax does, so float32 leaves get optax's numbers bit for bit; it is
    drawn in float32 (or the leaf's wider or complex dtype) and the sum is
    rounded once to the update's dtype. Complex leaves get circular complex
    noise of variance ``sigma_t**2``.

    ========================================  ========================================
    optax 0.2.8                               adaptx
    ========================================  ========================================
    ``optax.add_noise(eta, gamma, key)``      ``add_noise(eta, gamma, key)``; the
                                              state's key is raw key data
    ``optax.add_noise(eta, gamma)``           ``add_noise(eta, gamma, 0)``: adaptx
                                              requires the key (optax warns, uses 0)
    ========================================  ========================================

    Args:
      eta: the noise variance at the first step, ``>= 0``.
      gamma: the decay exponent of the variance, ``>= 0``.
      key: an integer seed, a typed key (``jax.random.key``) or a raw one
        (``jax.random.PRNGKey``).

    Returns:
      A ``GradientTransformation`` with state ``AddNoiseState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.add_noise(0.01, 0.55, key=0)
      >>> state = tx.init(jnp.zeros(3))
      >>> out, state = tx.update(jnp.zeros(3), state)
      >>> out.shape, int(state.count), state.rng_key.dtype
      ((3,), 1, dtype('uint32'))

    References:
      Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens, "Adding
      Gradient Noise Improves Learning for Very Deep Networks", 2015,
      https://arxiv.org/abs/1511.06807
    """
    check_nonnegative("eta", eta)
    check_nonnegative("gamma", gamma)
    key_data, impl = _key_data_and_impl(key)

    def init_fn(params: Any) -> AddNoiseState:
        del params
        return AddNoiseState(count=jnp.zeros((), jnp.int32), rng_key=jnp.asarray(key_data))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("add_noise", state, AddNoiseState)
        check_updates("add_noise", updates, None, params)
        count = safe_increment(state.count)
        next_key, sample_key = jax.random.split(jax.random.wrap_key_data(state.rng_key, impl=impl))
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))

        def leaf(g, k):
            cdt = compute_dtype(g.dtype)
            std = jnp.sqrt(hyperparam(eta, cdt) / count.astype(cdt) ** hyperparam(gamma, cdt))
            wide = _widen(g, cdt)
            sharding = getattr(jax.typeof(g), "sharding", None)
            noise = jax.random.normal(k, g.shape, wide.dtype, out_sharding=sharding)
            return (wide + std.astype(wide.dtype) * noise).astype(g.dtype)

        out = [leaf(g, keys[i]) for i, g in enumerate(leaves)]
        return treedef.unflatten(out), AddNoiseState(count, jax.random.key_data(next_key))

    return GradientTransformation(init_fn, update_fn)
