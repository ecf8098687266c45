"""adaptx.fused: Adam, AdamW and SGD as one pass over flat state, fast on CPU.

An explicit layer of its own: nothing else in adaptx imports it, and the
default optimizers (``adaptx.adam``, ...) stay the per-leaf chains. Use it
when the optimizer step matters (many parameter leaves, CPU training)::

    import adaptx.fused

    tx = adaptx.fused.adamw(1e-3, weight_decay=1e-4)   # the alias's signature
    state = tx.init(params)
    params, state = adaptx.fused.step(tx, grads, state, params, clip_norm=1.0)

``tx`` is an ordinary ``GradientTransformation`` (``tx.update`` works in any
chain or consumer); ``step`` is the single pass over params, gradients and
state, with gradient clipping by global norm as an explicit argument.

**State.** ``FusedAdamState(count, mu, nu)`` / ``FusedSgdState(count,
trace)``: a count and flat float32 vectors holding every parameter entry,
leaves end to end in ``jax.tree.leaves(params)`` order, each raveled in C
order. The layout is the same on every platform, device count and build;
``to_per_leaf`` and ``from_per_leaf`` convert to and from the per-leaf
alias's (optax-layout) state, so checkpoints move either way.

**Where it runs.** When the default backend is the CPU, ``update`` and
``step`` are one call of a native kernel through ``jax.ffi`` (built at
install time; ``kernel_info()`` says whether it loaded and which instruction
set it runs with). With another default backend (GPU, TPU), and when the
kernel is unavailable (warned once on CPU), the same maths runs in pure JAX
over the flat vector. Results agree with the per-leaf
aliases to a few float32 ulps (each operation is rounded as written; XLA
may contract the per-leaf chain into fused multiply-adds).

**Transformations.** ``update`` and ``step`` are pure and work under
``jit``, ``pmap`` and sharded ``jit``. ``jax.grad`` / ``jax.jvp`` go through
them with the derivative of the pure-JAX maths (``jax.custom_jvp``; the
primal values still come from the kernel). Under ``jax.vmap`` over states the
pure-JAX maths runs (the kernel handles one state per call).

**Sharding.** The flat buffers are not sharded: they are replicated, each
device holding the whole vector (ZeRO-style sharding of a flat vector would
not follow the params' own partitioning, and the kernel runs on one host
memory). This suits data parallelism with replicated params. Sharded params
work (under explicit sharding each leaf is gathered and the results are
resharded like it), but every device holds and updates the whole state: for
sharded params use the per-leaf aliases, whose state is sharded like them.

**Settings.** The aliases' signatures; settings outside one Adam or SGD loop
(moment dtypes, ``b1_decay``, Adam's ``nesterov``, a weight-decay ``mask``)
raise ``ValueError`` pointing at the per-leaf alias. Parameters may be
float32, bfloat16 or float16 (the arithmetic and the state are float32).
"""

from adaptx.fused._convert import from_per_leaf as from_per_leaf
from adaptx.fused._convert import to_per_leaf as to_per_leaf
from adaptx.fused._kernel import info as kernel_info
from adaptx.fused._optimizers import FusedAdamState as FusedAdamState
from adaptx.fused._optimizers import FusedSgdState as FusedSgdState
from adaptx.fused._optimizers import adam as adam
from adaptx.fused._optimizers import adamw as adamw
from adaptx.fused._optimizers import sgd as sgd
from adaptx.fused._optimizers import step as step

__all__ = [
    "FusedAdamState",
    "FusedSgdState",
    "adam",
    "adamw",
    "from_per_leaf",
    "kernel_info",
    "sgd",
    "step",
    "to_per_leaf",
]
