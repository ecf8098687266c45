"""Data-parallel training on 8 devices, with the optimizer state sharded like the model.

Run: python examples/data_parallel.py

No accelerator is needed: the script asks JAX for 8 CPU devices. On a
machine with 8 GPUs (or a TPU slice) the same code runs there; across
several hosts, call ``jax.distributed.initialize()`` first (see the README).

- A mesh with one axis, ``"data"``, over all devices.
- Each batch is split over ``"data"``: data parallelism.
- Each weight matrix is split over ``"data"`` too, and adaptx creates the
  AdamW moments with the sharding of their parameter, so every device stores
  an eighth of the parameters and of the optimizer state (ZeRO-3 / FSDP).
  XLA gathers the weights for the forward pass and reduce-scatters the
  gradients back to the parameters' sharding.
- The gradients are clipped by their global norm (computed over the whole,
  sharded arrays), then AdamW.
- The whole step is one jitted function that never waits on the host.
"""

import functools

import jax

jax.config.update("jax_num_cpu_devices", 8)  # before anything initialises a backend

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import adaptx  # noqa: E402

SIZES = (16, 256, 256, 1)
BATCH = 512
STEPS = 301


def init_mlp(key: jax.Array) -> dict:
    params = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        key, sub = jax.random.split(key)
        params[f"w{i}"] = jax.random.normal(sub, (n_in, n_out)) / np.sqrt(n_in)
        params[f"b{i}"] = jnp.zeros(n_out)
    return params


def mlp(params: dict, x: jax.Array) -> jax.Array:
    n = len(SIZES) - 1
    for i in range(n):
        x = x @ params[f"w{i}"] + params[f"b{i}"][None, :]
        if i < n - 1:
            x = jax.nn.gelu(x)
    return x[:, 0]


def loss_fn(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    # Gather each weight whole for the forward pass (FSDP); its gradient
    # comes back sharded like the parameter.
    full = jax.tree.map(lambda p: jax.lax.with_sharding_constraint(p, P()), params)
    return jnp.mean(jnp.square(mlp(full, x) - y))


def shard_spec(x: jax.Array, n: int) -> P:
    """Split the largest dimension divisible by ``n`` over "data"; replicate the rest."""
    dims = [d for d in np.argsort(x.shape)[::-1] if x.shape[d] % n == 0]
    if not dims:
        return P()
    spec = [None] * x.ndim
    spec[dims[0]] = "data"
    return P(*spec)


def main() -> None:
    n = jax.device_count()
    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    # A regression problem: fit a random "teacher" network of the same shape.
    rng = np.random.default_rng(0)
    data_x = rng.normal(size=(16 * BATCH, SIZES[0])).astype(np.float32)
    data_y = np.asarray(jax.jit(mlp)(init_mlp(jax.random.key(1)), data_x))

    # clip_by_global_norm sees the global norm of the sharded gradients: no
    # axis name is needed under sharded jit.
    tx = adaptx.chain(
        adaptx.clip_by_global_norm(1.0),
        adaptx.adamw(adaptx.warmup_cosine_decay_schedule(0.0, 3e-3, 20, STEPS), weight_decay=1e-4),
    )
    params = init_mlp(jax.random.key(0))
    shardings = jax.tree.map(lambda p: NamedSharding(mesh, shard_spec(p, n)), params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        grads = jax.lax.with_sharding_constraint(grads, shardings)
        updates, state = tx.update(grads, state, params)
        return adaptx.apply_updates(params, updates), state, loss

    with jax.set_mesh(mesh):
        params = jax.device_put(params, shardings)
        state = jax.jit(tx.init)(params)

        # Every state array with a parameter's shape (AdamW's two moments per
        # parameter) is sharded like that parameter.
        by_shape = {p.shape: p.sharding for p in jax.tree.leaves(params)}
        moments = [s for s in jax.tree.leaves(state) if s.ndim and s.shape in by_shape]
        assert moments and all(
            m.sharding.is_equivalent_to(by_shape[m.shape], m.ndim) for m in moments
        )
        w = params["w1"]
        held = w.addressable_shards[0].data.size / w.size
        print(
            f"{n} devices; optimizer state sharded like the params: {len(moments)} moment "
            f"arrays, each device holds {held:.3g} of w1 {w.shape} and of its moments"
        )

        data = NamedSharding(mesh, P("data"))
        losses = []
        for i in range(STEPS):
            rows = rng.integers(0, len(data_x), BATCH)
            x, y = jax.device_put((data_x[rows], data_y[rows]), data)
            params, state, loss = step(params, state, x, y)
            losses.append(loss)  # stays on the devices: no synchronisation
            if i % 50 == 0:
                print(f"step {i:4d}  loss {float(loss):.5f}")
        print(f"final loss {float(losses[-1]):.5f} (first {float(losses[0]):.5f})")


if __name__ == "__main__":
    main()
