"""Lookahead (Zhang et al., 2019): k fast steps forward, one slow step back."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from adaptx._base import (
    GradientTransformation,
    OptState,
    Params,
    accepts_extra_args,
    call_update,
)
from adaptx._combine import _check_transform
from adaptx._numerics import _widen, compute_dtype, hyperparam
from adaptx._signature import check_like, check_state
from adaptx._updates import apply_updates
from adaptx._validate import check_range


class LookaheadState(NamedTuple):
    """State of ``lookahead``.

    Attributes:
      fast_state: the fast optimizer's state.
      slow: the slow weights, with the params' structure and dtypes. Evaluate
        the model with these (the paper's output).
      steps_since_sync: int32, fast steps since the last synchronisation.
    """

    fast_state: OptState
    slow: Params
    steps_since_sync: jax.Array


def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: float | jax.Array,
    *,
    reset_state: bool = False,
) -> GradientTransformation:
    """Wraps a fast optimizer with Lookahead's slow weights.

    The params the training loop holds are the fast weights θ. Every step
    applies the fast optimizer; every ``sync_period``-th step also moves the
    slow weights φ toward the fast ones and restarts the fast weights there:

    - φ <- φ + alpha (θ_k - φ), with θ_k the fast weights after the k-th fast step;
    - θ <- φ.

    The returned update on a synchronisation step is ``φ_new - θ``; the slow
    weights are kept in the state as ``apply_updates(θ, φ_new - θ)``, so after
    ``apply_updates`` the params equal ``state.slow`` bit for bit (φ_new is
    off by at most one rounding of the parameter dtype).

    Unlike optax's ``lookahead``, the params are the ordinary parameter tree
    (no ``LookaheadParams`` pair) and the slow weights live in the state, so
    it drops into any training loop; read ``state.slow`` for evaluation.

    Args:
      fast_optimizer: the inner optimizer (returns updates to add).
      sync_period: k >= 1, fast steps per synchronisation.
      slow_step_size: alpha in [0, 1]; a number or a scalar array (traced values
        are not validated). alpha = 1 reduces to the fast optimizer.
      reset_state: re-initialise the fast optimizer's state after each
        synchronisation.

    Returns:
      A ``GradientTransformation`` with state ``LookaheadState``; ``update``
      needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.lookahead(adaptx.scale(-1.0), sync_period=2, slow_step_size=0.5)
      >>> params = jnp.zeros(1)
      >>> state = tx.init(params)
      >>> for _ in range(2):  # fast: 0 -> 1 -> 2; sync: slow = 0 + 0.5 * (2 - 0)
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = adaptx.apply_updates(params, updates)
      >>> params, state.slow
      (Array([1.], dtype=float32), Array([1.], dtype=float32))

    References:
      Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward, 1 step
      back", NeurIPS 2019. https://arxiv.org/abs/1907.08610
    """
    _check_transform(fast_optimizer, "lookahead's fast_optimizer")
    if not isinstance(sync_period, int) or isinstance(sync_period, bool) or sync_period < 1:
        raise ValueError(f"sync_period must be an integer >= 1, got {sync_period!r}")
    check_range("slow_step_size", slow_step_size, 0.0, 1.0)
    takes_extra = accepts_extra_args(fast_optimizer.update)

    def init_fn(params: Params) -> LookaheadState:
        return LookaheadState(
            fast_state=fast_optimizer.init(params),
            slow=jax.tree.map(jnp.copy, params),
            steps_since_sync=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state: LookaheadState, params=None, **extra_args):
        check_state("lookahead", state, LookaheadState)
        if params is None:
            raise ValueError("lookahead needs params: call update(updates, state, params)")
        check_like("lookahead", updates, state.slow, "exact", params)
        fast_updates, fast_state = call_update(
            fast_optimizer, updates, state.fast_state, params, extra_args, takes_extra=takes_extra
        )
        sync = state.steps_since_sync + 1 >= sync_period

        def step(u, p, s):
            cdt = compute_dtype(jnp.result_type(p))
            a = hyperparam(slow_step_size, cdt)
            wide = lambda x: _widen(jnp.asarray(x), cdt)
            fast = wide(p) + wide(u)
            slow = wide(s) + a.astype(wide(s).dtype) * (fast - wide(s))
            return jnp.where(sync, (slow - wide(p)).astype(u.dtype), u)

        out = jax.tree.map(step, fast_updates, params, state.slow)
        synced = apply_updates(params, out)
        slow = jax.tree.map(lambda n, s: jnp.where(sync, n, s), synced, state.slow)
        if reset_state:
            fresh = fast_optimizer.init(params)
            fast_state = jax.tree.map(lambda f, s: jnp.where(sync, f, s), fresh, fast_state)
        return out, LookaheadState(
            fast_state=fast_state,
            slow=slow,
            steps_since_sync=jnp.where(sync, jnp.zeros((), jnp.int32), state.steps_since_sync + 1),
        )

    return GradientTransformation(init_fn, update_fn)
