"""``adaptx.fused.adam``, ``adamw`` and ``sgd``, and the single pass ``step``."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._adam import check_moment_hyperparams
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule, Updates
from adaptx._numerics import hyperparam, one_minus_pow, safe_increment
from adaptx._sgd import check_nesterov
from adaptx._sharding import gather_explicit, restore_explicit
from adaptx._signature import TreeMismatchError, check_state, check_updates
from adaptx._validate import (
    check_learning_rate,
    check_momentum,
    check_nonnegative,
    check_positive,
)
from adaptx.fused import _kernel, _maths

_F32 = jnp.float32


class FusedAdamState(NamedTuple):
    """State of ``adaptx.fused.adam`` and ``adaptx.fused.adamw``.

    Attributes:
      count: int32 scalar, the number of steps taken (saturating); also the
        step a learning-rate schedule is evaluated at.
      mu: float32 ``[n]``, the first moment of every parameter entry, leaves
        end to end in ``jax.tree.leaves(params)`` order, each raveled in C
        order (``n`` is the total number of entries).
      nu: float32 ``[n]``, the second moment, laid out as ``mu``.
    """

    count: jax.Array
    mu: jax.Array
    nu: jax.Array


class FusedSgdState(NamedTuple):
    """State of ``adaptx.fused.sgd``.

    Attributes:
      count: int32 scalar, the number of steps taken (the step a schedule is
        evaluated at).
      trace: float32 ``[n]``, the momentum buffer laid out as
        ``FusedAdamState.mu``; ``[0]`` (empty) without momentum.
    """

    count: jax.Array
    trace: jax.Array


def _total(tree: Any) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


def _check_real_floating(where: str, params: Any) -> None:
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        dtype = jnp.result_type(x)
        if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize > 4:
            raise TypeError(
                f"{where}: parameter {jax.tree_util.keystr(path)} is {dtype}; the fused "
                "optimizers keep float32 state and take float32, bfloat16 or float16 "
                "parameters. Use the per-leaf alias (adaptx.adam, ...) for other dtypes."
            )


def _unsupported(where: str, alias: str, **settings: Any) -> None:
    for name, value in settings.items():
        if (
            value is not None
            and value is not False
            and not (name.endswith("dtype") and jnp.dtype(value) == jnp.float32)
        ):
            raise ValueError(
                f"{where} does not support {name}={value!r} (its state is flat float32 "
                f"buffers and its kernel one Adam/SGD loop); use {alias}, the per-leaf alias "
                "with the same signature"
            )


@dataclasses.dataclass(frozen=True, eq=False)
class _Fused:
    """The ``update`` of a fused optimizer; ``step`` reads its settings to run the single pass."""

    name: str
    kind: str  # "adam" or "sgd"
    learning_rate: Any
    b1: Any = None
    b2: Any = None
    eps: Any = None
    eps_root: Any = None
    weight_decay: Any = None
    momentum: Any = None
    nesterov: bool = False

    def init(self, params: Params) -> FusedAdamState | FusedSgdState:
        _check_real_floating(self.name, params)
        n = _total(params)
        count = jnp.zeros((), jnp.int32)
        if self.kind == "adam":
            return FusedAdamState(count, jnp.zeros((n,), _F32), jnp.zeros((n,), _F32))
        return FusedSgdState(count, jnp.zeros((n if self.momentum is not None else 0,), _F32))

    def __call__(
        self, updates: Updates, state: Any, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, Any]:
        del extra_args
        return self.run(updates, state, params, apply=False, gscale=None)

    def _lr(self, count: jax.Array) -> jax.Array:
        lr = self.learning_rate
        return hyperparam(lr(count) if callable(lr) else lr, _F32)

    def scalars(self, count: jax.Array, gscale: jax.Array) -> jax.Array:
        """The kernel's scalar struct for the step after ``count`` steps (``_maths.*_SCALARS``)."""
        neg_lr = -self._lr(count)
        if self.kind == "sgd":
            mu = hyperparam(0.0 if self.momentum is None else self.momentum, _F32)
            return jnp.stack([mu, neg_lr, gscale])
        t = safe_increment(count)
        b1, b2 = hyperparam(self.b1, _F32), hyperparam(self.b2, _F32)
        wd = 0.0 if self.weight_decay is None else self.weight_decay
        return jnp.stack(
            [
                b1,
                1 - b1,
                b2,
                1 - b2,
                1 / one_minus_pow(self.b1, t, _F32),
                1 / one_minus_pow(self.b2, t, _F32),
                hyperparam(self.eps, _F32),
                hyperparam(self.eps_root, _F32),
                hyperparam(wd, _F32),
                neg_lr,
                gscale,
            ]
        )

    def run(self, grads: Updates, state: Any, params: Params | None, *, apply: bool, gscale):
        check_state(self.name, state, FusedAdamState if self.kind == "adam" else FusedSgdState)
        check_updates(self.name, grads, None, params)
        leaves, treedef = jax.tree.flatten(grads)
        flats = list(state[1:])
        if self.kind == "adam" or self.momentum is not None:
            want, got = int(np.shape(flats[0])[0]), _total(leaves)
            if want != got:
                raise TreeMismatchError(
                    f"{self.name}: the updates' structure and shapes do not fit the state: "
                    f"they have {got} entries in all but the state was built for {want}. "
                    "Pass updates with the params' structure and shapes (or re-run init)."
                )
        _check_real_floating(self.name, grads)
        decay = self.kind == "adam" and self.weight_decay is not None
        p_leaves = None
        if apply or decay:
            if params is None:
                raise ValueError(
                    f"{self.name} needs the parameters here: pass params "
                    "(tx.update(updates, state, params))"
                )
            p_leaves, p_specs = _gathered(jax.tree.leaves(params))
        if gscale is None:
            gscale = jnp.ones((), _F32)
        s = self.scalars(state.count, gscale)
        g32, g_specs = _gathered(leaves)
        if self.kind == "adam":
            cfg = (decay, apply)
        else:
            cfg = (self.momentum is not None, self.nesterov, apply)
        native = jax.default_backend() == "cpu" and _kernel.available()
        new_flats, out = _maths.fused(self.kind, native, cfg, s, flats, g32, p_leaves)
        like, specs = (jax.tree.leaves(params), p_specs) if apply else (leaves, g_specs)
        out = [
            restore_explicit(o.astype(jnp.result_type(x)), spec)
            for o, x, spec in zip(out, like, specs)
        ]
        new_state = type(state)(safe_increment(state.count), *new_flats)
        return jax.tree.unflatten(treedef, out), new_state


def _gathered(leaves: list) -> tuple[list, list]:
    """The leaves as float32, each gathered if an explicit mesh axis shards it, and their
    shardings (``None`` where nothing was gathered): the flat buffers are replicated,
    and the results are resharded like the leaves (``restore_explicit``)."""
    pairs = [gather_explicit(jnp.asarray(x)) for x in leaves]
    return [x.astype(_F32) for x, _ in pairs], [sharding for _, sharding in pairs]


def _transformation(fused: _Fused) -> GradientTransformation:
    return GradientTransformation(fused.init, fused)


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
    """``adaptx.adam`` with flat float32 state and a single-pass update.

    The maths of ``chain(scale_by_adam(b1, b2, eps, eps_root),
    scale_by_learning_rate(learning_rate))``, to a few float32 ulps, over
    every parameter entry at once: one native kernel call on CPU, the same
    maths in pure JAX elsewhere. State: ``FusedAdamState``.

    Args:
      learning_rate, b1, b2, eps, eps_root: as ``adaptx.adam``.
      mu_dtype, nu_dtype, b1_decay, nesterov: accepted for the signature;
        only their defaults (or ``float32`` moments) are supported, anything
        else raises ``ValueError`` (use ``adaptx.adam``).

    Returns:
      A ``GradientTransformation``; ``adaptx.fused.step`` runs it as one pass
      over params, gradients and state.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx.fused
      >>> params = jnp.array([1.0, -1.0])
      >>> tx = adaptx.fused.adam(0.1)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     grads = jax.grad(lambda p: jnp.sum(p**2))(params)
      ...     params, state = adaptx.fused.step(tx, grads, state, params)
      >>> params.round(3)
      Array([ 0.702, -0.702], dtype=float32)
    """
    check_learning_rate("learning_rate", learning_rate)
    check_moment_hyperparams(b1, b2, eps, eps_root)
    where = "adaptx.fused.adam"
    _unsupported(where, "adaptx.adam", mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    _unsupported(where, "adaptx.adam", b1_decay=b1_decay, nesterov=nesterov)
    return _transformation(_Fused(where, "adam", learning_rate, b1, b2, eps, eps_root))


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
    """``adaptx.adamw`` with flat float32 state and a single-pass update.

    The maths of ``chain(scale_by_adam(...), add_decayed_weights(weight_decay),
    scale_by_learning_rate(learning_rate))`` to a few float32 ulps. State:
    ``FusedAdamState``. ``update`` needs ``params``.

    Args:
      learning_rate, b1, b2, eps, eps_root, weight_decay: as ``adaptx.adamw``.
      mask, mu_dtype, nu_dtype, nesterov: accepted for the signature; only
        their defaults are supported, anything else raises ``ValueError``
        (use ``adaptx.adamw``).

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx.fused
      >>> params = {"w": jnp.array([2.0])}
      >>> tx = adaptx.fused.adamw(0.1, weight_decay=0.5)
      >>> updates, _ = tx.update({"w": jnp.zeros(1)}, tx.init(params), params)
      >>> updates["w"]  # -0.1 * 0.5 * 2.0
      Array([-0.1], dtype=float32)
    """
    check_learning_rate("learning_rate", learning_rate)
    check_moment_hyperparams(b1, b2, eps, eps_root)
    check_nonnegative("weight_decay", weight_decay)
    where = "adaptx.fused.adamw"
    _unsupported(where, "adaptx.adamw", mask=mask, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    _unsupported(where, "adaptx.adamw", nesterov=nesterov)
    fused = _Fused(where, "adam", learning_rate, b1, b2, eps, eps_root, weight_decay=weight_decay)
    return _transformation(fused)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | jax.Array | None = None,
    *,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """``adaptx.sgd`` with a flat float32 momentum buffer and a single-pass update.

    The maths of ``chain(trace(momentum, nesterov=nesterov),
    scale_by_learning_rate(learning_rate))`` (or plain SGD without momentum)
    to a few float32 ulps. State: ``FusedSgdState``.

    Args:
      learning_rate, momentum, nesterov: as ``adaptx.sgd``.
      accumulator_dtype: accepted for the signature; only ``None`` (or
        ``float32``) is supported.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx.fused
      >>> tx = adaptx.fused.sgd(0.1, momentum=0.9)
      >>> params = jnp.array([1.0])
      >>> params, state = adaptx.fused.step(tx, jnp.array([1.0]), tx.init(params), params)
      >>> params
      Array([0.9], dtype=float32)
    """
    check_learning_rate("learning_rate", learning_rate)
    if momentum is not None:
        check_momentum("momentum", momentum)
    check_nesterov(momentum, nesterov)
    _unsupported("adaptx.fused.sgd", "adaptx.sgd", accumulator_dtype=accumulator_dtype)
    fused = _Fused(
        "adaptx.fused.sgd", "sgd", learning_rate, momentum=momentum, nesterov=bool(nesterov)
    )
    return _transformation(fused)


def step(
    tx: GradientTransformation,
    grads: Updates,
    state: Any,
    params: Params,
    *,
    clip_norm: float | jax.Array | None = None,
) -> tuple[Params, Any]:
    """One optimizer step in one pass: ``(params + updates, new state)``.

    Reads the params, gradients and state once and writes the params and
    state once (on CPU, in place when the caller donates them under ``jit``).
    The same numbers, to a few float32 ulps, as::

        updates, state = tx.update(grads, state, params)   # after clipping, if any
        params = adaptx.apply_updates(params, updates)

    Args:
      tx: ``adaptx.fused.adam``, ``adamw`` or ``sgd``.
      grads: the gradients, with the params' structure.
      state: ``tx``'s state.
      params: the parameters.
      clip_norm: if given, the gradients are first scaled as
        ``adaptx.clip_by_global_norm(clip_norm)`` does (the scaling happens
        inside the pass; the clipped gradients are never written out).

    Returns:
      ``(new_params, new_state)``; each parameter keeps its dtype.

    Raises:
      TypeError: ``tx`` is not one of ``adaptx.fused``'s optimizers.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx.fused
      >>> tx = adaptx.fused.sgd(1.0)
      >>> params = {"a": jnp.array([1.0]), "b": jnp.array([1.0])}
      >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}  # norm 5
      >>> new, _ = adaptx.fused.step(tx, grads, tx.init(params), params, clip_norm=1.0)
      >>> new["a"], new["b"]
      (Array([0.4], dtype=float32), Array([0.2], dtype=float32))
    """
    fused = getattr(tx, "update", None)
    if not isinstance(fused, _Fused):
        raise TypeError(
            "adaptx.fused.step takes an optimizer of adaptx.fused (adam, adamw, sgd), got "
            f"{tx!r}; for other optimizers call tx.update and adaptx.apply_updates"
        )
    gscale = None
    if clip_norm is not None:
        check_positive("clip_norm", clip_norm)
        sq = sum(
            (jnp.sum(jnp.square(jnp.asarray(g).astype(_F32))) for g in jax.tree.leaves(grads)),
            jnp.zeros((), _F32),
        )
        norm = jnp.sqrt(sq)
        m = hyperparam(clip_norm, _F32)
        gscale = m / jnp.maximum(norm, m)
    return fused.run(grads, state, params, apply=True, gscale=gscale)
