"""Fused optimizer steps: a flat state and one native pass over every leaf.

An optimizer built leaf by leaf costs XLA several operations per parameter
leaf: its compile time and its per-step overhead grow with the number of
leaves, and on CPU XLA runs Adam as three passes over memory. ``fuse`` wraps
such a chain (the aliases ``adam``, ``adamw`` and ``sgd`` with momentum do it
by default) so that, on CPU:

- its state is the chain's state with every per-parameter buffer kept as one
  flat float32 vector (``FusedState``, ``FlatBuffer`` in ``_flat.py``): two
  state arrays for Adam whatever the number of leaves;
- ``update`` is one native kernel call over all the leaves (the moments are
  updated in place), whatever their number;
- ``apply_updates(params, updates)`` given those very updates, in the same
  trace, turns the whole step into one in-place pass that reads the params,
  gradients and moments once and writes them once (a kernel call per 128
  leaves): the state ``update`` returned is pointed at that pass's moments
  (the same values), and the update's own pass and the updates themselves
  become dead code. The gradients of ``clip_by_global_norm`` just before are
  read unclipped and scaled on the fly.

**Numbers.** Those of the per-leaf chain (``unfused(tx)``), operation by
operation, with XLA's own rewrites of the per-leaf arithmetic under ``jit``
(a product of reciprocals for a quotient, ``p + lr * d`` contracted into one
fma) reproduced in the kernels: SGD with momentum and every moment are
bit-identical in a plain step; Adam's and AdamW's updates agree to within a
few units in the last place, because XLA rewrites the per-leaf Adam
differently depending on the rest of the graph, and so do the params of any
optimizer when ``apply_updates`` runs somewhere XLA does not contract (inside
a ``lax.cond`` branch, say). ``tests/test_flat.py`` proves each case.

**When it applies.** ``init`` decides, from the params: all float32, on one
CPU device, the kernels available (built at install time, or on first use
with the system C compiler), and settings the kernels cover (see
``adam_kernel`` and ``momentum_kernel``). Otherwise, and with
``unfused(tx)`` or ``ADAPTX_NATIVE=0``, the state and every step are the
per-leaf chain's. Params sharded over several devices (or on a GPU) get the
per-leaf path, decided at ``init`` from their shardings. An ``init`` traced
under ``jit`` or ``eval_shape`` cannot see where the params will live: it
fuses only in a process with a single device, a CPU, and no mesh in
context. To write partition specs for the per-leaf state, use ``unfused``.
A ``FusedState`` updated where the kernels cannot run (restored on a GPU
machine, say) goes through the same chain in pure JAX over the flat vector.

**Not supported on the fused path:** differentiating through ``update``
(the kernels have no derivative rule; use ``unfused(tx)``) and ``vmap``
over optimizer states (it runs, one call per batch entry).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from adaptx import _native
from adaptx._base import GradientTransformation, OptState, Params, call_update
from adaptx._flat import (
    FusedState,
    Layout,
    concat_leaves,
    find_layout,
    is_buffer,
    split_flat,
    unwrap_buffers,
    wrap_buffers,
)
from adaptx._numerics import hyperparam, one_minus_pow, safe_increment
from adaptx._scale import scale_by_learning_rate
from adaptx._signature import check_updates

_F32 = jnp.dtype(jnp.float32)


# --- kernels ---------------------------------------------------------------------------


def _lr_scalar(lr_tx: GradientTransformation, lr_state: OptState) -> tuple[jax.Array, OptState]:
    """The learning-rate stage's multiplier this step, and its new state.

    Probed by running the stage on a one-element vector of ones: the result is
    exactly the multiplier the stage applies to every update (``s * 1 == s``),
    for a number, an array or a schedule alike. The stage runs on its state's
    leaves (a schedule's count) in a state built for that one-element vector,
    so its tree checks pass.
    """
    ones = jnp.ones((1,), _F32)
    probe = jax.tree.structure(lr_tx.init(ones))
    out, new = lr_tx.update(ones, jax.tree.unflatten(probe, jax.tree.leaves(lr_state)))
    new_state = jax.tree.unflatten(jax.tree.structure(lr_state), jax.tree.leaves(new))
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

    name = "scale_by_adam"  # the stage whose tree checks it makes

    @property
    def needs_params(self) -> bool:
        return self.weight_decay is not None

    def step(self, state: tuple, grads: list, params: list | None, exact: bool, gscale):
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
                gscale,
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

        def single_pass(p_leaves):
            mu1, nu1, new_params = _native.adam_step(
                scalars, adam.mu, adam.nu, grads, p_leaves, decay=decay, exact_jit=exact
            )
            return (mu1, nu1), new_params

        new_state = (adam._replace(count=count, mu=mu, nu=nu), *middle, lr_state)
        return updates, new_state, apply, single_pass, (mu, nu)


@dataclasses.dataclass(frozen=True)
class _MomentumKernel:
    """``chain(trace(momentum, nesterov), lr)``: heavy-ball or Nesterov SGD."""

    momentum: Any
    nesterov: bool
    lr_tx: GradientTransformation

    needs_params = False
    name = "trace"  # the stage whose tree checks it makes

    def step(self, state: tuple, grads: list, params: list | None, exact: bool, gscale):
        trace_state, lr_state = state
        lr, lr_state = _lr_scalar(self.lr_tx, lr_state)
        scalars = jnp.stack([hyperparam(self.momentum, _F32), lr, gscale])
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

        def single_pass(p_leaves):
            buf1, new_params = _native.momentum_step(
                scalars,
                trace_state.trace,
                grads,
                p_leaves,
                nesterov=self.nesterov,
                exact_jit=exact,
            )
            return (buf1,), new_params

        new_state = (trace_state._replace(trace=buf), lr_state)
        return updates, new_state, apply, single_pass, (buf,)


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

    ``None`` (no fusion) for the settings the kernel does not cover: moment
    dtypes other than the parameters', ``b1_decay``, ``nesterov`` and a
    weight-decay ``mask``. The decision depends only on these static settings,
    never on hyper-parameter values, so a transform rebuilt with traced
    hyper-parameters (``inject_hyperparams``) decides as its ``init`` did.
    """
    if mu_dtype is not None or nu_dtype is not None or b1_decay is not None or nesterov:
        return None
    if mask is not None:
        return None
    return _AdamKernel(b1, b2, eps, eps_root, scale_by_learning_rate(learning_rate), weight_decay)


def momentum_kernel(
    learning_rate: Any, momentum: Any, *, nesterov: bool = False, accumulator_dtype: Any = None
) -> _MomentumKernel | None:
    """The fused kernel for ``sgd`` with momentum, or ``None`` (no momentum, or a buffer dtype)."""
    if momentum is None or accumulator_dtype is not None:
        return None
    return _MomentumKernel(momentum, nesterov, scale_by_learning_rate(learning_rate))


# --- the fused transformation -------------------------------------------------------------


_UNFUSED_ATTR = "_adaptx_unfused"


def _on_one_cpu_device(x: Any) -> bool:
    """Whether ``x`` lives on a single CPU device, as far as can be told.

    A concrete array or a ``ShapeDtypeStruct`` with a sharding says where it
    is. A traced value (``init`` under ``jit`` or ``eval_shape``) does not:
    it counts as on one CPU device only when the process has exactly one
    device, a CPU, and no mesh is in context, since with several devices the
    params may be sharded in ways the trace cannot see.
    """
    sharding = None if isinstance(x, jax.core.Tracer) else getattr(x, "sharding", None)
    if sharding is not None:
        devices = sharding.device_set
        return len(devices) == 1 and next(iter(devices)).platform == "cpu"
    if jax.default_backend() != "cpu" or jax.device_count() != 1:
        return False
    return jax.sharding.get_abstract_mesh().empty


def _uses_native(leaves: list) -> bool:
    """Whether these parameter leaves take the fused path (decided by ``init``)."""
    if not leaves:
        return False
    for x in leaves:
        if jnp.result_type(x) != _F32 or not _on_one_cpu_device(x):
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
        flat_state = inner.init(jnp.zeros((total,), _F32))
        return FusedState(wrap_buffers(flat_state, Layout.of(params), total))

    def update_fn(updates, state, params=None, **extra_args):
        if not isinstance(state, FusedState):
            return call_update(inner, updates, state, params, extra_args, takes_extra=True)
        layout = find_layout(state)
        if layout is None:
            raise ValueError(
                "this FusedState holds no flat buffers; make it with the optimizer's init"
            )
        # The per-leaf chain's tree check (TreeMismatchError). Once it passes, the
        # updates are float32 leaves of exactly the shapes the flat buffers hold.
        check_updates(kernel.name, updates, layout.signature(), params)
        leaves, treedef = jax.tree.flatten(updates)
        total = sum(int(jnp.size(x)) for x in leaves)
        flat_state = unwrap_buffers(tuple(state))
        p_leaves = None
        if kernel.needs_params and params is not None:
            p_leaves = jax.tree.leaves(params)
        if _native_now(leaves) and (p_leaves is not None or not kernel.needs_params):
            exact = _exact_jit(leaves, state, p_leaves)
            grads, gscale = _unscaled(leaves) if exact else (leaves, jnp.ones((), _F32))
            new_leaves, inner_state, apply, single_pass, flats = kernel.step(
                flat_state, grads, p_leaves, exact, gscale
            )
            new_state = FusedState(wrap_buffers(inner_state, layout, total))
            if exact:
                # Traced: apply_updates in the same trace recognises these updates and
                # makes the whole step one in-place pass (see _native.fused_apply).
                # (Eagerly the updates exist already, and remembering them would
                # keep this step's state alive as long as they live.)
                by_id = {
                    id(b.flat): b
                    for b in jax.tree.leaves(new_state, is_leaf=is_buffer)
                    if is_buffer(b)
                }
                buffers = tuple(by_id[id(f)] for f in flats if id(f) in by_id)
                _native.remember(
                    new_leaves,
                    _native.PendingUpdates(
                        apply,
                        len(new_leaves),
                        tuple(p_leaves) if kernel.needs_params else None,
                        single_pass if len(buffers) == len(flats) else None,
                        buffers,
                    ),
                )
            return jax.tree.unflatten(treedef, new_leaves), new_state
        # The same chain in pure JAX over the flat vector (kernels unavailable here).
        flat_params = None if p_leaves is None else concat_leaves(p_leaves)
        flat_updates, inner_state = call_update(
            inner, concat_leaves(leaves), flat_state, flat_params, extra_args, takes_extra=True
        )
        new_leaves = split_flat(flat_updates, layout.shapes)
        new_state = FusedState(wrap_buffers(inner_state, layout, total))
        return jax.tree.unflatten(treedef, new_leaves), new_state

    setattr(update_fn, _UNFUSED_ATTR, inner)
    return GradientTransformation(init_fn, update_fn)


def _unscaled(leaves: list) -> tuple[list, jax.Array]:
    """``(inputs, factor)`` if the leaves are ``clip_by_global_norm``'s outputs ``inputs * factor``.

    The kernels then scale the gradients as they read them (``g * factor``,
    the same multiplication), and the clipped copies are never materialised.
    Otherwise ``(leaves, 1)``: multiplying by one is exact.
    """
    record = _native.recognise(leaves, _native.ScaledLeaves)
    if record is not None and all(
        jnp.result_type(x) == _F32 and jnp.shape(x) == jnp.shape(y)
        for x, y in zip(record.inputs, leaves)
    ):
        return list(record.inputs), jnp.asarray(record.factor).astype(_F32)
    return leaves, jnp.ones((), _F32)


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
