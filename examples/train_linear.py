"""Fits a noisy linear model with an adaptx chain and prints the loss.

Run: python examples/train_linear.py
"""

import jax
import jax.numpy as jnp

import adaptx


def main() -> None:
    key_x, key_w, key_n = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key_x, (512, 8))
    w_true = jax.random.normal(key_w, (8,))
    y = x @ w_true + 0.01 * jax.random.normal(key_n, (512,))

    def loss(params):
        return jnp.mean(jnp.square(x @ params["w"] + params["b"] - y))

    tx = adaptx.chain(
        adaptx.identity(),
        adaptx.scale_by_learning_rate(adaptx.cosine_decay_schedule(0.1, 200)),
    )
    params = {"w": jnp.zeros(8), "b": jnp.zeros(())}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return adaptx.apply_updates(params, updates), state, value

    for i in range(201):
        params, state, value = step(params, state)
        if i % 50 == 0:
            print(f"step {i:4d}  loss {float(value):.6f}")


if __name__ == "__main__":
    main()
