"""Whole training step of a small transformer language model: optax vs adaptx vs adaptx.fused.

A flax NNX decoder-only transformer (token and position embeddings, pre-norm
blocks of causal self-attention and an MLP, a final norm and an output
projection), a few million float32 parameters. One jitted training step
(forward, backward and the Adam step, params and optimizer state donated) for:

- ``optax``: ``optax.adam`` + ``optax.apply_updates``;
- ``adaptx``: ``adaptx.adam`` + ``adaptx.apply_updates`` (the per-leaf chain);
- ``adaptx.fused``: ``adaptx.fused.step(adaptx.fused.adam(...), ...)``;
- ``no optimizer``: forward and backward only (the gradients are returned),
  so the optimizer's share of a step is the difference.

Interleaved rounds (each round times one step of every contender), medians.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/train_step.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import adaptx
import adaptx.fused

HERE = os.path.dirname(os.path.abspath(__file__))


class Block(nnx.Module):
    def __init__(self, d: int, heads: int, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, 4 * d, rngs=rngs)
        self.down = nnx.Linear(4 * d, d, rngs=rngs)

    def __call__(self, x, mask):
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))


class LM(nnx.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, seq: int, rngs: nnx.Rngs):
        self.tok = nnx.Embed(vocab, d, rngs=rngs)
        self.pos = nnx.Embed(seq, d, rngs=rngs)
        self.blocks = nnx.List([Block(d, heads, rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(d, rngs=rngs)
        self.out = nnx.Linear(d, vocab, rngs=rngs)

    def __call__(self, tokens):
        seq = tokens.shape[1]
        x = self.tok(tokens) + self.pos(jnp.arange(seq))[None]
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.out(self.norm(x))


def build(args):
    model = LM(args.vocab, args.d, args.layers, args.heads, args.seq, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def loss_fn(graphdef, params, rest, tokens):
    logits = nnx.merge(graphdef, params, rest)(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def make_steps(graphdef, rest, lr):
    grad = jax.value_and_grad(lambda p, t: loss_fn(graphdef, p, rest, t))

    def per_leaf(tx, apply):
        def step(params, state, tokens):
            loss, g = grad(params, tokens)
            u, state = tx.update(g, state, params)
            return apply(params, u), state, loss

        return tx, step

    fused_tx = adaptx.fused.adam(lr)

    def fused(params, state, tokens):
        loss, g = grad(params, tokens)
        params, state = adaptx.fused.step(fused_tx, g, state, params)
        return params, state, loss

    def none(params, state, tokens):
        loss, g = grad(params, tokens)
        return g, state, loss

    return {
        "optax": per_leaf(optax.adam(lr), optax.apply_updates),
        "adaptx": per_leaf(adaptx.adam(lr), adaptx.apply_updates),
        "adaptx.fused": (fused_tx, fused),
        "no optimizer": (adaptx.identity(), none),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=129)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 20)

    graphdef, params0, rest = build(args)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params0))
    n_leaves = len(jax.tree.leaves(params0))
    tokens = jax.random.randint(jax.random.key(1), (args.batch, args.seq), 0, args.vocab)
    contenders = {}
    for name, (tx, step) in make_steps(graphdef, rest, 1e-3).items():
        params = jax.tree.map(jnp.copy, params0)
        state = tx.init(params)
        t0 = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, tokens).compile()
        compile_s = time.perf_counter() - t0
        params, state, _ = compiled(params, state, tokens)  # warm-up
        if name == "no optimizer":
            params = jax.tree.map(jnp.copy, params0)
        contenders[name] = {"fn": compiled, "p": params, "s": state, "t": [], "c": compile_s}
        print(f"{name}: compiled in {compile_s:.1f} s", flush=True)
    loads = [os.getloadavg()[0]]
    names = list(contenders)
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            c = contenders[name]
            t0 = time.perf_counter()
            p, s, loss = c["fn"](c["p"], c["s"], tokens)
            jax.block_until_ready((p, s, loss))
            c["t"].append(time.perf_counter() - t0)
            if name == "no optimizer":  # it returned the gradients, not params
                p = jax.tree.map(jnp.copy, params0)
            c["p"], c["s"] = p, s
        loads.append(os.getloadavg()[0])
    med = {n: statistics.median(c["t"]) for n, c in contenders.items()}
    base = med["no optimizer"]
    info = adaptx.fused.kernel_info()
    lines = [
        f"Flax NNX transformer LM: {n_params / 1e6:.1f}M float32 parameters in {n_leaves} "
        f"leaves (vocab {args.vocab}, d {args.d}, {args.layers} layers, {args.heads} heads), "
        f"batch {args.batch} x {args.seq - 1} tokens. {platform.machine()}, {os.cpu_count()} "
        f"cores, jax {jax.__version__} ({jax.default_backend()}), adaptx.fused kernel: "
        f"{info['isa'] if info['kernel'] else 'unavailable'}; load average "
        f"{min(loads):.1f}-{max(loads):.1f}; {rounds} interleaved rounds.",
        "",
        "| implementation | step ms: median (min-max) | vs optax | optimizer share | compile s |",
        "|---|---|---|---|---|",
    ]
    for name, c in contenders.items():
        share = max(med[name] - base, 0.0) / med[name]
        share = "-" if name == "no optimizer" else f"{100 * share:.0f}%"
        lines.append(
            f"| {name} | {1e3 * med[name]:.1f} ({1e3 * min(c['t']):.1f}-{1e3 * max(c['t']):.1f}) "
            f"| {med[name] / med['optax']:.2f}x | {share} | {c['c']:.1f} |"
        )
    md = "\n".join(lines)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "train_step.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(args.out, "train_step.json"), "w") as f:
        json.dump({n: {"times": c["t"], "compile_s": c["c"]} for n, c in contenders.items()}, f)


if __name__ == "__main__":
    main()
