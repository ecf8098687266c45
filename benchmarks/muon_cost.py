"""The cost of Muon's orthogonalisation per step, against AdamW, for a few matrix sizes.

One jitted ``update`` of a single ``m x n`` float32 matrix, timed (median of
``--repeats`` calls, after a warm-up call that compiles): adaptx's ``adamw``,
adaptx's ``muon`` (five Newton-Schulz steps, float32) and, as the peer,
``optax.contrib.muon`` with the same settings, measured in the same run.
The ratio is Muon's time over AdamW's. Also printed: the Newton-Schulz
flops, ``steps (4 m^2 n + 2 m^3)`` for ``m <= n``.

    python benchmarks/muon_cost.py [--sizes 64x64 256x256 ...] [--repeats 20]

Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import adaptx


def _time(tx, shape, repeats):
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)}
    grads = jax.tree.map(lambda x: x * 0.5 + 0.1, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    jax.block_until_ready(update(grads, state, params))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(update(grads, state, params))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["64x64", "256x256", "256x1024", "1024x1024"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores")
    print("| matrix | NS GFLOP | adamw | muon | muon / adamw | optax muon |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        m, n = (int(x) for x in size.split("x"))
        small, large = min(m, n), max(m, n)
        gflop = 5 * (4 * small**2 * large + 2 * small**3) / 1e9
        adamw = _time(adaptx.adamw(1e-3), (m, n), args.repeats)
        muon = _time(adaptx.muon(1e-3), (m, n), args.repeats)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes float and int32
            peer = _time(optax.contrib.muon(1e-3, consistent_rms=0.2), (m, n), args.repeats)
        print(
            f"| {m} x {n} | {gflop:.3g} | {adamw * 1e3:.3g} ms | {muon * 1e3:.3g} ms "
            f"| {muon / adamw:.1f}x | {peer * 1e3:.3g} ms |"
        )


if __name__ == "__main__":
    main()
