"""Placement: arrays made from nothing take the sharding of the array they mirror.

Optimizer state and some updates are fresh constants (zeros, a fill value)
with a parameter's shape. Inside ``jit`` with automatic sharding (a
``jax.sharding.Mesh`` whose axes are ``AxisType.Auto``, the default of
``Mesh(...)``), a traced parameter carries no sharding, and a constant has no
data dependence on it, so the compiler would replicate it on every device, or
leave it on one. Under explicit sharding, and outside ``jit``, ``jnp.full_like``
already keeps the sharding. The helpers here cover both: the first is what
makes an optimizer state sharded like the model (ZeRO style) whichever way the
user shards.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental.shard_alike import shard_alike


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> jax.Array:
    """``jnp.full_like(x, fill_value, dtype)``, placed and sharded like ``x``.

    ``x`` may be an array, a tracer or a ``jax.ShapeDtypeStruct`` (whose
    sharding, if any, is used). ``dtype=None`` keeps ``x``'s dtype.
    """
    z = jnp.full_like(x, fill_value, dtype=dtype or jnp.result_type(x))
    # ``shard_alike`` ties the two shardings together for the compiler's
    # sharding propagation; it generates no code and is a no-op on one device.
    if isinstance(x, jax.core.Tracer) and jnp.ndim(x) > 0:
        _, z = shard_alike(x, z)
        # ``z`` does not depend on ``x``'s values: without this, differentiating
        # through ``shard_alike`` gives ``z`` an explicit zero tangent (not JAX's
        # symbolic zero), and ``sqrt`` of a zero state then has tangent 0 * inf
        # = NaN under ``jax.jvp`` (D-Adaptation's first step).
        z = jax.lax.stop_gradient(z)
    return z


def zeros_like(x: Any, dtype: Any = None) -> jax.Array:
    """``jnp.zeros_like(x, dtype)``, placed and sharded like ``x`` (see ``full_like``)."""
    return full_like(x, 0, dtype)


def shard_like(x: Any, y: jax.Array) -> jax.Array:
    """``y`` (computed from ``x``, same shape) placed like ``x`` under automatic sharding.

    A result that went through matmuls or gathers (Newton-Schulz, a basis
    rotation) has no elementwise link to ``x`` that the compiler's sharding
    propagation would follow; ``shard_alike`` ties the two.
    """
    if isinstance(x, jax.core.Tracer) and jnp.ndim(x) > 0:
        _, y = shard_alike(x, y)
    return y


def gather_explicit(x: jax.Array) -> tuple[jax.Array, Any]:
    """``x`` replicated if an explicit mesh axis shards it, and its sharding to restore.

    Under explicit sharding a matmul that contracts a sharded axis has no
    defined output sharding; linear algebra on a whole matrix (Newton-Schulz,
    Gram matrices, eigenbases) and ``adaptx.fused``'s replicated flat buffers
    gather it first. Returns ``(x, None)`` when no explicit axis shards ``x``
    (automatic axes: the compiler decides). The shardings name their mesh, so
    no ``jax.set_mesh`` context is needed.
    """
    sharding = getattr(jax.typeof(x), "sharding", None)
    spec = getattr(sharding, "spec", None)
    if spec is None or all(s is None for s in spec):
        return x, None
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return jax.sharding.reshard(x, replicated), sharding


def restore_explicit(y: jax.Array, sharding: Any) -> jax.Array:
    """``y`` resharded as ``gather_explicit``'s input was; unchanged for ``None``."""
    return y if sharding is None else jax.sharding.reshard(y, sharding)
