"""The memory of SOAP's state against Adam's, measured from the state's structure.

``jax.eval_shape(tx.init, params)`` gives every state leaf's shape and dtype
without allocating anything; the bytes are summed over the leaves (the int32
step count included). Float32 parameters, default ``max_precond_dim``.

    python benchmarks/soap_memory.py

Not part of the test run.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax
import jax.numpy as jnp

import adaptx

SHAPES = [(768,), (256, 256), (1024, 1024), (1024, 4096), (3, 3, 256, 256), (50304, 768)]


def state_bytes(tx, shape):
    state = jax.eval_shape(tx.init, jax.ShapeDtypeStruct(shape, jnp.float32))
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def main():
    print("| shape | Adam | SOAP | SOAP / Adam |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        adam = state_bytes(adaptx.scale_by_adam(), shape)
        soap = state_bytes(adaptx.scale_by_soap(), shape)
        print(f"| {shape} | {_human(adam)} | {_human(soap)} | {soap / adam:.2f} |")


if __name__ == "__main__":
    main()
