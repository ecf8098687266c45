"""Fused optimizer steps: flat state and one native pass over every leaf.

An optimizer built leaf by leaf costs XLA a few operations per parameter
leaf, so its compile time and per-step overhead grow with the number of
leaves, and XLA on CPU runs Adam as three passes over memory. ``fuse`` wraps
such an optimizer (a ``chain`` the aliases build) so that, on CPU:

- its state is the same chain's state, but over *one flat float32 vector*
  holding every parameter end to end (``FusedState``): two state arrays for
  Adam instead of two per leaf;
- ``update`` is one native kernel call over all the leaves (moments updated
  in place), whatever their number;
- ``apply_updates(params, updates)`` with those updates is one more in-place
  pass over the parameters; the updates themselves are then never written
  to memory.

The numbers are the per-leaf chain's, bit for bit (``tests/test_flat.py``
checks every fused optimizer against its per-leaf chain, jitted and not).

When the fused path is not used (``init`` decides, from the parameters):
params that are not all float32, params sharded over several devices (or
placed on a non-CPU device), a hyper-parameter setting the kernel does not
cover, no C compiler to build the kernels, ``ADAPTX_NATIVE=0``, or
``unfused(tx)``. The state is then the per-leaf chain's and so is every
step. A ``FusedState`` used where the kernels are not available (restored on
a GPU machine, say) is updated by the same chain in pure JAX over the flat
vector, with the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx import _native
from adaptx._base import GradientTransformation, OptState, Params, call_update
from adaptx._numerics import hyperparam, is_concrete_number, one_minus_pow, safe_increment

_F32 = jnp.dtype(jnp.float32)


class FusedState(NamedTuple):
    """State of a fused optimizer: its per-leaf chain's state over one flat vector.

    Attributes:
      inner: the state the per-leaf chain would have, except that every
        per-parameter buffer (Adam's ``mu`` and ``nu``, a momentum ``trace``)
        is one 1-D float32 array holding all the parameters' entries end to
        end, in ``jax.tree.leaves(params)`` order. ``fused_state_to_tree``
        turns it into the per-leaf chain's state.
    """

    inner: OptState


# --- kernels ---------------------------------------------------------------------------


def _lr_scalar(lr_tx: GradientTransformation, lr_state: OptState) -> tuple[jax.Array, OptState]:
    """The learning-rate stage's multiplier this step, and its new state.

    Probed by running the stage on a one-element vector of ones: the result is
    exactly the multiplier the stage applies to every update (``s * 1 == s``),
    for a number, an array or a schedule alike.
    """
    out, new_state = lr_tx.update(jnp.ones((1,), _F32), lr_state)
    return jnp.reshape(out, ()).astype(_F32), new_state


def _exact_jit(*trees: Any) -> bool:
    """Whether we are being traced (jit): XLA then fuses and contracts the per-leaf maths."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


@dataclasses.dataclass(frozen=True)
class _AdamKernel:
    """``chain(scale_by_adam(b1, b2, eps, eps_root), [add_decayed_weights(wd)], lr)``."""

    b1: Any
    b2: Any
    eps: Any
    eps_root: Any
    lr_tx: GradientTransformation
    weight_decay: Any = None

    @property
    def needs_params(self) -> bool:
        return self.weight_decay is not None

    def step(self, state: tuple, grads: list, params: list | None, exact: bool):
        adam, *middle, lr_state = state
        count = safe_increment(adam.count)
        d1, d2 = hyperparam(self.b1, _F32), hyperparam(self.b2, _F32)
        r1 = 1 / one_minus_pow(self.b1, count, _F32)
        r2 = 1 / one_minus_pow(self.b2, count, _F32)
        lr, lr_state = _lr_scalar(self.lr_tx, lr_state)
        wd = hyperparam(0.0 if self.weight_decay is None else self.weight_decay, _F32)
        scalars = jnp.stack(
            [
                d1,
                1 - d1,
                d2,
                1 - d2,
                r1,
                r2,
                hyperparam(self.eps, _F32),
                hyperparam(self.eps_root, _F32),
                lr,
                wd,
            ]
        )
        mu, nu = _native.adam_moments(scalars, adam.mu, adam.nu, grads, exact_jit=exact)
        decay = self.weight_decay is not None
        updates = _native.adam_out(
            scalars, mu, nu, grads, params, apply=False, decay=decay, exact_jit=exact
        )

        def apply(p_leaves):
            return _native.adam_out(
                scalars, mu, nu, p_leaves, p_leaves, apply=True, decay=decay, exact_jit=exact
            )

        new_state = (adam._replace(count=count, mu=mu, nu=nu), *middle, lr_state)
        return updates, new_state, apply


@dataclasses.dataclass(frozen=True)
class _MomentumKernel:
    """``chain(trace(momentum, nesterov), lr)``: heavy-ball or Nesterov SGD."""

    momentum: Any
    nesterov: bool
    lr_tx: GradientTransformation

    needs_params = False

    def step(self, state: tuple, grads: list, params: list | None, exact: bool):
        trace_state, lr_state = state
        lr, lr_state = _lr_scalar(self.lr_tx, lr_state)
        scalars = jnp.stack([hyperparam(self.momentum, _F32), lr])
        buf = _native.momentum_buffer(scalars, trace_state.trace, grads, exact_jit=exact)
        updates = _native.momentum_out(
            scalars, buf, grads, grads, None, apply=False, nesterov=self.nesterov, exact_jit=exact
        )

        def apply(p_leaves):
            return _native.momentum_out(
                scalars,
                buf,
                p_leaves,
                grads,
                p_leaves,
                apply=True,
                nesterov=self.nesterov,
                exact_jit=exact,
            )

        return updates, (trace_state._replace(trace=buf), lr_state), apply


def adam_kernel(
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    learning_rate: Any,
    *,
    weight_decay: Any = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    b1_decay: Any = None,
    nesterov: bool = False,
    mask: Any = None,
) -> _AdamKernel | None:
    """The fused kernel for ``adam`` / ``adamw`` with these arguments, or ``None``.

    ``None`` (no fusion) for settings the kernel does not cover: moment dtypes
    other than the parameters', ``b1_decay``, ``nesterov``, a weight-decay
    ``mask``, and a non-zero ``eps_root`` (its purpose is differentiating
    through the update, which the native kernel does not support).
    """
    from adaptx._scale import scale_by_learning_rate

    if mu_dtype is not None or nu_dtype is not None or b1_decay is not None or nesterov:
        return None
    if mask is not None or not (is_concrete_number(eps_root) and float(eps_root) == 0.0):
        return None
    return _AdamKernel(b1, b2, eps, eps_root, scale_by_learning_rate(learning_rate), weight_decay)


def momentum_kernel(
    learning_rate: Any, momentum: Any, *, nesterov: bool = False, accumulator_dtype: Any = None
) -> _MomentumKernel | None:
    """The fused kernel for ``sgd`` with momentum, or ``None`` (no momentum, or a buffer dtype)."""
    from adaptx._scale import scale_by_learning_rate

    if momentum is None or accumulator_dtype is not None:
        return None
    return _MomentumKernel(momentum, nesterov, scale_by_learning_rate(learning_rate))


# --- the fused transformation -------------------------------------------------------------


_UNFUSED_ATTR = "_adaptx_unfused"


def _uses_native(leaves: list) -> bool:
    """Whether these parameter leaves take the fused path (decided by ``init``)."""
    if not leaves:
        return False
    for x in leaves:
        if jnp.result_type(x) != _F32:
            return False
        if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
            devices = x.sharding.device_set
            if len(devices) != 1 or next(iter(devices)).platform != "cpu":
                return False
        elif jax.default_backend() != "cpu":
            return False
    return _native.available()


def _native_now(leaves: list) -> bool:
    """Whether the kernels can run on these update leaves now (else: pure JAX, same numbers)."""
    for x in leaves:
        if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
            if any(d.platform != "cpu" for d in x.sharding.device_set):
                return False
        elif jax.default_backend() != "cpu":
            return False
    return _native.available()


def _concat(leaves: list) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in leaves]) if leaves else jnp.zeros((0,), _F32)


def _split(flat: jax.Array, like: list) -> list:
    out, start = [], 0
    for x in like:
        n = int(jnp.size(x))
        out.append(jnp.reshape(flat[start : start + n], jnp.shape(x)))
        start += n
    return out


def fuse(inner: GradientTransformation, kernel: Any) -> GradientTransformation:
    """``inner`` with a flat state and a native update on CPU; ``inner`` if ``kernel`` is None.

    Args:
      inner: the per-leaf chain (``adam``'s, ``sgd``'s, ...).
      kernel: its fused kernel (``adam_kernel(...)``, ``momentum_kernel(...)``),
        built from the same hyper-parameters; ``None`` for no fusion.

    Returns:
      A ``GradientTransformation`` with the same numbers as ``inner``.
    """
    if kernel is None:
        return inner

    def init_fn(params: Params) -> OptState:
        leaves = jax.tree.leaves(params)
        if not _uses_native(leaves):
            return inner.init(params)
        total = sum(int(jnp.size(x)) for x in leaves)
        return FusedState(inner=inner.init(jnp.zeros((total,), _F32)))

    def update_fn(updates, state, params=None, **extra_args):
        if not isinstance(state, FusedState):
            return call_update(inner, updates, state, params, extra_args, takes_extra=True)
        leaves, treedef = jax.tree.flatten(updates)
        _check_layout(leaves, state)
        p_leaves = None
        if kernel.needs_params and params is not None:
            p_leaves = jax.tree.leaves(params)
        if _native_now(leaves) and (p_leaves is not None or not kernel.needs_params):
            exact = _exact_jit(leaves, state, p_leaves)
            new_leaves, inner_state, apply = kernel.step(state.inner, leaves, p_leaves, exact)
            _native.remember(
                new_leaves,
                _native.PendingUpdates(
                    apply, len(new_leaves), tuple(p_leaves) if kernel.needs_params else None
                ),
            )
        else:  # same chain, pure JAX, over the flat vector
            flat_params = None if p_leaves is None else _concat(p_leaves)
            flat_updates, inner_state = call_update(
                inner, _concat(leaves), state.inner, flat_params, extra_args, takes_extra=True
            )
            new_leaves = _split(flat_updates, leaves)
        return jax.tree.unflatten(treedef, new_leaves), FusedState(inner=inner_state)

    setattr(update_fn, _UNFUSED_ATTR, inner)
    return GradientTransformation(init_fn, update_fn)


def _check_layout(leaves: list, state: FusedState) -> None:
    sizes = {int(jnp.size(x)) for x in jax.tree.leaves(state.inner) if jnp.ndim(x) == 1}
    total = sum(int(jnp.size(x)) for x in leaves)
    bad = sorted({str(jnp.result_type(x)) for x in leaves if jnp.result_type(x) != _F32})
    if bad or sizes != {total}:
        made = " or ".join(str(n) for n in sorted(sizes))
        raise ValueError(
            f"this fused optimizer's state was made for float32 params with {made} entries "
            f"in all, but got updates with {total} entries"
            + (f" and dtypes {bad}" if bad else "")
            + "; init the optimizer on params with the same leaves as the updates"
        )


def unfused(tx: GradientTransformation) -> GradientTransformation:
    """The per-leaf version of a fused optimizer (``tx`` itself if it is not fused).

    Use it to opt out of the fused path: its state is the per-leaf chain's
    (one buffer per leaf, as optax keeps it) and every step runs in JAX.

    Args:
      tx: an optimizer, e.g. ``adaptx.adam(1e-3)``.

    Returns:
      A ``GradientTransformation`` with the same numbers.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.unfused(adaptx.sgd(0.1, momentum=0.9))
      >>> type(tx.init({"w": jnp.zeros(2)})[0]).__name__
      'TraceState'
    """
    return getattr(tx.update, _UNFUSED_ATTR, tx)


def fused_state_to_tree(state: OptState, params: Params) -> OptState:
    """The per-leaf chain's state equivalent to a ``FusedState`` (others unchanged).

    Every flat buffer is split into a tree with the structure and shapes of
    ``params``: ``fused_state_to_tree(state, params)[0].mu`` of a fused
    ``adam`` is ``mu`` as the per-leaf ``adam`` (and optax) keep it. Useful
    to inspect the moments or to write a checkpoint that ``unfused(tx)``
    (or optax) can read; ``tree_to_fused_state`` goes back.

    Args:
      state: a state of a fused optimizer (or anything else, returned as is).
      params: the params the optimizer was initialised with (or their shapes).

    Returns:
      The state, with ``FusedState(inner)`` replaced by ``inner`` whose flat
      buffers are params-like trees.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(3)}
      >>> tx = adaptx.sgd(0.1, momentum=0.9)
      >>> state = tx.init(params)
      >>> tree = adaptx.fused_state_to_tree(state, params)
      >>> jax.tree.map(jnp.shape, tree[0].trace)
      {'a': (2,), 'b': (3,)}
    """
    leaves, treedef = jax.tree.flatten(params)
    total = sum(int(jnp.size(x)) for x in leaves)

    def split(x):
        if jnp.ndim(x) == 1 and jnp.size(x) == total:
            return jax.tree.unflatten(treedef, _split(x, leaves))
        return x

    def convert(s):
        return jax.tree.map(split, s.inner) if isinstance(s, FusedState) else s

    return jax.tree.map(convert, state, is_leaf=lambda s: isinstance(s, FusedState))


def tree_to_fused_state(state: OptState, params: Params) -> FusedState:
    """The inverse of ``fused_state_to_tree``: a per-leaf chain state made flat.

    Args:
      state: the per-leaf chain's state (``unfused(tx).init(params)``'s structure).
      params: params with the structure and shapes of those the state is for.

    Returns:
      A ``FusedState`` for the fused optimizer.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(3)}
      >>> tx = adaptx.sgd(0.1, momentum=0.9)
      >>> per_leaf = adaptx.unfused(tx).init(params)
      >>> adaptx.tree_to_fused_state(per_leaf, params).inner[0].trace.shape
      (5,)
    """
    leaves, treedef = jax.tree.flatten(params)
    shapes = [jnp.shape(x) for x in leaves]

    def params_like(x) -> bool:
        try:
            sub, sub_def = jax.tree.flatten(x)
        except TypeError:
            return False
        return sub_def == treedef and [jnp.shape(y) for y in sub] == shapes

    def join(x):
        if params_like(x):
            return _concat(jax.tree.leaves(x)).astype(_F32)
        return x

    return FusedState(inner=jax.tree.map(join, state, is_leaf=params_like))
