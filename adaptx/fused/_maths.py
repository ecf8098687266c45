"""The fused optimizers' arithmetic: one pure-JAX version, one native kernel, one entry point.

``fused(kind, native, cfg, scalars, flats, grads, params)`` runs one step of Adam
(``kind="adam"``) or SGD (``kind="sgd"``) over the gradient leaves and the
flat state buffers, and returns ``(new flat buffers, per-leaf results)``:
the updates, or with ``apply`` the params plus the updates.

- With ``native`` (the kernel is loaded and the process's default backend
  is the CPU) it is one native pass (``_kernel.call``); otherwise the same
  maths in pure JAX over the concatenated leaves. (The choice is made when
  tracing, not with ``jax.lax.platform_dependent``, which would lower the
  pure-JAX branch too and double the compile time of a CPU step.)
- Under ``jax.jvp`` / ``jax.grad`` the derivative is that of the pure-JAX
  maths (``jax.custom_jvp``); the primal values still come from the kernel.
- Under ``jax.vmap`` (a batch of states) the kernel is not used: the batched
  call runs the pure-JAX maths (``jax.custom_batching.custom_vmap``).

The operations are those of ``adaptx/csrc/kernels.c``, in the same order;
``scalars`` is laid out as its ``AdamScalars`` / ``SgdScalars`` (see
``ADAM_SCALARS`` and ``SGD_SCALARS``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptx.fused import _kernel

# The fields of the scalar vector, in the order of kernels.c's structs.
ADAM_SCALARS = (
    "b1",
    "one_minus_b1",
    "b2",
    "one_minus_b2",
    "inv_c1",
    "inv_c2",
    "eps",
    "eps_root",
    "weight_decay",
    "neg_lr",
    "gscale",
)
SGD_SCALARS = ("momentum", "neg_lr", "gscale")


def _concat(leaves: list) -> jax.Array:
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate([jnp.ravel(x) for x in leaves])


def _split(flat: jax.Array, like: list) -> list:
    out, start = [], 0
    for x in like:
        n = int(np.prod(np.shape(x)))
        out.append(jnp.reshape(flat[start : start + n], np.shape(x)))
        start += n
    return out


def _adam(s, m, v, g, p, decay: bool):
    """Adam (+ decoupled weight decay) on flat vectors: ``(m, v, update)``."""
    a = dict(zip(ADAM_SCALARS, s))
    g = g * a["gscale"]
    m = a["b1"] * m + a["one_minus_b1"] * g
    v = a["b2"] * v + a["one_minus_b2"] * (g * g)
    den = jnp.sqrt(v * a["inv_c2"] + a["eps_root"]) + a["eps"]
    nonzero = den != 0
    u = jnp.where(nonzero, (m * a["inv_c1"]) / jnp.where(nonzero, den, 1.0), 0.0)
    if decay:
        u = u + a["weight_decay"] * p
    return m, v, a["neg_lr"] * u


def _sgd(s, b, g, has_trace: bool, nesterov: bool):
    """SGD with heavy-ball or Nesterov momentum on flat vectors: ``(b, update)``."""
    a = dict(zip(SGD_SCALARS, s))
    g = g * a["gscale"]
    d = g
    if has_trace:
        b = a["momentum"] * b + g
        d = g + a["momentum"] * b if nesterov else b
    return b, a["neg_lr"] * d


def pure(kind: str, cfg: tuple, scalars, flats, grads, params):
    """The pure-JAX step: the leaves are concatenated, updated as flat vectors, split back."""
    apply = cfg[-1]
    s = [scalars[i] for i in range(scalars.shape[0])]
    g = _concat(grads)
    p = None if params is None else _concat(params)
    if kind == "adam":
        (decay, _) = cfg
        m, v, u = _adam(s, flats[0], flats[1], g, p, decay)
        new_flats = [m, v]
    else:
        (has_trace, nesterov, _) = cfg
        b, u = _sgd(s, flats[0], g, has_trace, nesterov)
        new_flats = [b]
    out = p + u if apply else u
    return new_flats, _split(out, grads)


def _native(kind: str, cfg: tuple, scalars, flats, grads, params):
    if kind == "adam":
        decay, apply = cfg
        attrs = {"decay": decay}
    else:
        has_trace, nesterov, apply = cfg
        attrs = {"has_trace": has_trace, "nesterov": nesterov}
    return _kernel.call(f"adaptx_{kind}", scalars, flats, grads, params, apply=apply, **attrs)


def _native_or_batched_pure(kind: str, cfg: tuple):
    """The kernel, whose ``vmap`` is the pure-JAX maths vmapped."""

    @jax.custom_batching.custom_vmap
    def f(scalars, flats, grads, params):
        return _native(kind, cfg, scalars, flats, grads, params)

    @f.def_vmap
    def rule(axis_size, in_batched, scalars, flats, grads, params):
        del axis_size
        in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
        out = jax.vmap(functools.partial(pure, kind, cfg), in_axes=in_axes)(
            scalars, flats, grads, params
        )
        return out, jax.tree.map(lambda _: True, out)

    return f


def _primal(kind: str, native: bool, cfg: tuple, scalars, flats, grads, params):
    if not grads or not native:
        return pure(kind, cfg, scalars, flats, grads, params)
    return _native_or_batched_pure(kind, cfg)(scalars, flats, grads, params)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def fused(kind: str, native: bool, cfg: tuple, scalars, flats, grads, params):
    """One step; see the module docstring.

    ``cfg``: ``(decay, apply)`` for Adam, ``(has_trace, nesterov, apply)`` for SGD.
    """
    return _primal(kind, native, cfg, scalars, flats, grads, params)


@fused.defjvp
def _fused_jvp(kind: str, native: bool, cfg: tuple, primals: Any, tangents: Any):
    out = _primal(kind, native, cfg, *primals)
    _, tangent_out = jax.jvp(functools.partial(pure, kind, cfg), primals, tangents)
    return out, tangent_out
