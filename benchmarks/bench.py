"""Optimizer step benchmark: adaptx against optax and torch.optim on the same trees.

Times one optimizer step *including applying the update* (``params <-
params + updates``), jitted with the params and the state donated, on trees
of the same total size and more and more leaves:

- ``1 leaf``: one float32 leaf of 16M entries;
- ``1000 leaves`` of 16K, ``10000 leaves`` of 1.6K;
- ``transformer``: about 200 leaves of mixed shapes (embeddings, attention,
  MLP, layer norms), the same total.

For Adam, AdamW behind ``clip_by_global_norm(1.0)``, and SGD with momentum
0.9. Contenders: ``adaptx.fused`` (``adaptx.fused.step``, the single pass,
clipping as its ``clip_norm`` argument), adaptx's default per-leaf alias
(``adaptx.adam``, ...), optax, a jitted identity over the same arguments (the
floor every jitted step pays), and torch.optim with ``foreach=True`` and
``fused=True`` (in a separate interpreter given by ``--torch-python``, when
torch is there; ``--torch-device cuda`` on a GPU machine).

The report starts with the CPU model and the instruction set the fused
kernel runs with (``adaptx.fused.kernel_info()``), and ends with the
performance targets, each marked met or missed.

Measured: step time (median, min and max over interleaved rounds: each round
runs one step of every contender, so machine load hits them alike), compile
time (trace + lower + compile of the jitted step), memory (XLA's account of
the step: arguments + temporaries + outputs not aliased to an argument; for
torch, the bytes of params, grads and optimizer state), and the machine's
memory bandwidth with a plain C loop of the same access pattern (7 streams:
read p, g, m, v, write p, m, v), measured in the same run. The roofline of a
step is its minimal memory traffic at that bandwidth (Adam 7 streams of 4
bytes per parameter, AdamW + clip 8, SGD with momentum 5).

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/bench.py --quick          # a few minutes
    PYTHONPATH=. python benchmarks/bench.py                  # the full table
    PYTHONPATH=. python benchmarks/bench.py --torch-python /path/to/python-with-torch
    PYTHONPATH=. python benchmarks/bench.py --opts adam --trees 1 1000 10000 --rounds 7

Writes ``benchmarks/results/latest.md``, ``latest.json`` and ``scaling.png``
(step and compile time against the number of leaves). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

import adaptx
import adaptx.fused

HERE = os.path.dirname(os.path.abspath(__file__))
TOTAL = 1 << 24  # 16.8M float32 parameters
STREAMS = {"adam": 7, "adamw_clip": 8, "sgd_momentum": 5}
TITLES = {
    "adam": "Adam",
    "adamw_clip": "clip_by_global_norm(1.0) + AdamW",
    "sgd_momentum": "SGD, momentum 0.9",
}


# --- trees ------------------------------------------------------------------------------


def transformer_shapes(total: int) -> list[tuple[int, ...]]:
    """~200 leaves: token and position embeddings, 16 blocks of attention + MLP + 2 norms."""
    d = 256 if total >= 1 << 22 else 64
    ff, layers = 4 * d, 16
    block = [
        (d, 3 * d),
        (3 * d,),
        (d, d),
        (d,),
        (d, ff),
        (ff,),
        (ff, d),
        (d,),
        (d,),
        (d,),
        (d,),
        (d,),
    ]
    shapes = [(512, d)] + block * layers + [(d,), (d,)]
    used = sum(int(np.prod(s)) for s in shapes)
    vocab = max(1, (total - used) // d)
    return [(vocab, d), *shapes]


def tree_shapes(name: str, total: int) -> list[tuple[int, ...]]:
    if name == "transformer":
        return transformer_shapes(total)
    n = int(name)
    return [(total // n,)] * n


def make_tree(shapes, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray((rng.standard_normal(s) * scale).astype(np.float32)) for s in shapes]


# --- contenders ---------------------------------------------------------------------------


def adaptx_tx(opt: str):
    """adaptx's default optimizer (the per-leaf chain)."""
    if opt == "adam":
        return adaptx.adam(1e-3)
    if opt == "adamw_clip":
        return adaptx.chain(adaptx.clip_by_global_norm(1.0), adaptx.adamw(1e-3, weight_decay=1e-4))
    return adaptx.sgd(1e-2, momentum=0.9)


def fused_step(opt: str):
    """``adaptx.fused``'s single pass for ``opt``: ``step(p, g, s) -> (p, s)`` and its ``tx``."""
    if opt == "adam":
        tx, clip = adaptx.fused.adam(1e-3), None
    elif opt == "adamw_clip":
        tx, clip = adaptx.fused.adamw(1e-3, weight_decay=1e-4), 1.0
    else:
        tx, clip = adaptx.fused.sgd(1e-2, momentum=0.9), None
    return tx, lambda p, g, s: adaptx.fused.step(tx, g, s, p, clip_norm=clip)


def optax_tx(opt: str):
    import optax

    if opt == "adam":
        return optax.adam(1e-3)
    if opt == "adamw_clip":
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))
    return optax.sgd(1e-2, momentum=0.9)


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)
    compile_s: float | None = None
    memory: int | None = None
    note: str = ""

    def med(self):
        return statistics.median(self.times) if self.times else float("nan")


class JaxContender:
    def __init__(self, name, tx, apply, params, grads, step=None):
        self.result = Result(name)
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict-clean; harmless here
            state = tx.init(params)

            if step is None:

                def step(p, g, s):
                    u, s = tx.update(g, s, p)
                    return apply(p, u), s

            t0 = time.perf_counter()
            self.step = jax.jit(step, donate_argnums=(0, 2)).lower(params, grads, state).compile()
            self.result.compile_s = time.perf_counter() - t0
        m = self.step.memory_analysis()
        if m is not None:
            self.result.memory = (
                m.argument_size_in_bytes
                + m.temp_size_in_bytes
                + m.output_size_in_bytes
                - m.alias_size_in_bytes
            )
        self.params, self.grads, self.state = params, grads, state
        self.run(timed=False)  # warm-up

    def run(self, timed=True):
        t0 = time.perf_counter()
        self.params, self.state = self.step(self.params, self.grads, self.state)
        jax.block_until_ready((self.params, self.state))
        if timed:
            self.result.times.append(time.perf_counter() - t0)

    def close(self):
        self.params = self.state = self.step = None


class FloorContender:
    """The least any jitted step over this tree pays: params and grads in, params out.

    A jitted identity over the donated params (grads passed, unused): the cost
    of moving every leaf across the jit boundary, which no optimizer avoids.
    """

    def __init__(self, params, grads):
        self.result = Result("jit floor (identity)")
        t0 = time.perf_counter()
        self.step = (
            jax.jit(lambda p, g: p, donate_argnums=0, keep_unused=True)
            .lower(params, grads)
            .compile()
        )
        self.result.compile_s = time.perf_counter() - t0
        self.params, self.grads = params, grads
        self.run(timed=False)

    def run(self, timed=True):
        t0 = time.perf_counter()
        self.params = self.step(self.params, self.grads)
        jax.block_until_ready(self.params)
        if timed:
            self.result.times.append(time.perf_counter() - t0)

    def close(self):
        self.params = self.step = None


class TorchContender:
    def __init__(self, python, name, shapes, opt, impl, threads, device="cpu"):
        self.result = Result(name)
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "torch_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        reply = self._ask(
            {
                "cmd": "setup",
                "shapes": [list(s) for s in shapes],
                "opt": opt,
                "impl": impl,
                "threads": threads,
                "device": device,
            }
        )
        self.result.memory = reply["bytes"]
        self._ask({"cmd": "step", "n": 1})  # warm-up

    def _ask(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("torch worker died")
        return json.loads(line)

    def run(self, timed=True):
        t = self._ask({"cmd": "step", "n": 1})["times"][0]
        if timed:
            self.result.times.append(t)
        # torch's OpenMP threads spin for a while after a step; let them go to
        # sleep before the next contender runs (not timed).
        time.sleep(0.05)

    def close(self):
        try:
            self._ask({"cmd": "quit"})
        except (RuntimeError, BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=30)


# --- machine ------------------------------------------------------------------------------


def bandwidth_gbs(n: int, threads: int) -> tuple[float, str]:
    """Best GB/s of the 7-stream C loop (``stream7.c``); NumPy if there is no C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc:
        with tempfile.TemporaryDirectory() as d:
            exe = os.path.join(d, "stream7")
            subprocess.run(
                [cc, "-O3", "-pthread", os.path.join(HERE, "stream7.c"), "-o", exe], check=True
            )
            out = subprocess.run(
                [exe, str(n), "15", str(threads)], check=True, capture_output=True, text=True
            ).stdout
            return float(out), f"C loop, {threads} threads"
    p, g, m, v = (np.zeros(n, np.float32) for _ in range(4))
    best = 1e9
    for _ in range(10):
        t0 = time.perf_counter()
        np.add(m, g, out=m)
        np.add(v, g, out=v)
        np.add(p, m, out=p)
        best = min(best, time.perf_counter() - t0)
    # NumPy makes three passes (9 streams) where the C loop makes one (7).
    return 9 * 4 * n / best / 1e9, "NumPy, 3 passes"


def load() -> float:
    return os.getloadavg()[0]


# --- the run --------------------------------------------------------------------------------


def run_config(opt, tree, args, bw, loads):
    shapes = tree_shapes(tree, args.total)
    n_params = sum(int(np.prod(s)) for s in shapes)
    grads = make_tree(shapes, 1, 1e-3)
    contenders: list = []
    skipped: list[str] = []

    def add(name, make):
        loads.append(load())
        try:
            contenders.append(make())
        except Exception as e:  # keep the table going; say why in the notes
            skipped.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")

    n_leaves = len(shapes)

    def fused():
        tx, step = fused_step(opt)
        return JaxContender("adaptx.fused", tx, None, make_tree(shapes, 0), grads, step)

    add("adaptx.fused", fused)
    if n_leaves < 10000 or opt in args.optax_10000 or args.slow:
        add(
            "adaptx",
            lambda: JaxContender(
                "adaptx", adaptx_tx(opt), adaptx.apply_updates, make_tree(shapes, 0), grads
            ),
        )
        import optax

        add(
            "optax",
            lambda: JaxContender(
                "optax", optax_tx(opt), optax.apply_updates, make_tree(shapes, 0), grads
            ),
        )
    else:
        skipped.append(
            "adaptx and optax (per-leaf): not run at 10000 leaves for this optimizer "
            "(compile takes minutes); --optax-10000 or --slow runs them"
        )
    if args.floor:
        add("jit floor", lambda: FloorContender(make_tree(shapes, 0), grads))
    if args.torch_python:
        for impl in ("foreach", "fused"):
            add(
                f"torch {impl}",
                lambda impl=impl: TorchContender(
                    args.torch_python,
                    f"torch {impl}",
                    shapes,
                    opt,
                    impl,
                    args.threads,
                    args.torch_device,
                ),
            )
    # The harness keeps every contender's trees alive at once; freeze them out of the
    # cyclic GC so that collections (each step creates one array object per leaf)
    # cost what they would in a process running one optimizer.
    gc.collect()
    gc.freeze()
    for i in range(args.rounds):
        for c in contenders[i % len(contenders) :] + contenders[: i % len(contenders)]:
            c.run()  # each round starts with the next contender: no fixed neighbours
        loads.append(load())
    gc.unfreeze()
    results = [c.result for c in contenders]
    for c in contenders:
        c.close()
    gc.collect()
    roofline = STREAMS[opt] * 4 * n_params / (bw * 1e9)
    return {
        "opt": opt,
        "tree": tree,
        "n_leaves": n_leaves,
        "n_params": n_params,
        "roofline_s": roofline,
        "results": results,
        "skipped": skipped,
    }


def fmt_ms(x):
    return f"{1e3 * x:.1f}" if x == x else "-"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def kernel_note() -> str:
    info = adaptx.fused.kernel_info()
    if info["kernel"]:
        return f"adaptx.fused kernel: {info['isa']}"
    return f"adaptx.fused kernel: unavailable ({info['error']}), pure-JAX path"


TARGETS = [
    # (what, tree, contender, against, measure, limit)
    ("adaptx.fused.adam step at 1000 leaves", "1000", "adaptx.fused", "optax", "step", 0.6),
    ("adaptx.fused.adam step at one 16M leaf", "1", "adaptx.fused", "optax", "step", 0.75),
    ("adaptx.fused.adam compile at 1000 leaves", "1000", "adaptx.fused", "optax", "compile", 0.2),
    (
        "adaptx.fused.adam compile at 10000 leaves",
        "10000",
        "adaptx.fused",
        "jit floor (identity)",
        "compile",
        1.5,
    ),
    ("default adaptx.adam step at 1 leaf", "1", "adaptx", "optax", "step", 1.1),
    ("default adaptx.adam step at 1000 leaves", "1000", "adaptx", "optax", "step", 1.1),
    ("default adaptx.adam step at 10000 leaves", "10000", "adaptx", "optax", "step", 1.1),
]


def targets(configs) -> list[str]:
    """Issue 13's targets for Adam, each with the measured ratio and met / missed."""
    lines = ["| target | measured | limit | |", "|---|---|---|---|"]
    for what, tree, name, against, measure, limit in TARGETS:
        cfg = next((c for c in configs if c["opt"] == "adam" and c["tree"] == tree), None)
        by = {r.name: r for r in cfg["results"]} if cfg else {}
        a, b = by.get(name), by.get(against)
        if a is None or b is None or (measure == "step" and not (a.times and b.times)):
            lines.append(f"| {what} | not measured | {limit}x {against} | |")
            continue
        if measure == "step":
            ratio = a.med() / b.med()
        else:
            ratio = a.compile_s / b.compile_s
        verdict = "met" if ratio <= limit else "missed"
        lines.append(f"| {what} | {ratio:.2f}x {against} | {limit}x | {verdict} |")
    return lines


def table(configs, bw, bw_how, loads, args) -> str:
    lines = []
    lines.append(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; {kernel_note()}; "
        f"jax {jax.__version__} ({jax.default_backend()}); bandwidth {bw:.1f} GB/s ({bw_how}); "
        f"load average (1 min) during the run {min(loads):.1f}-{max(loads):.1f}; "
        f"{args.rounds} interleaved rounds; {args.total / 1e6:.1f}M float32 parameters."
    )
    lines.append("")
    for opt in args.opts:
        lines.append(
            f"**{TITLES[opt]}** (roofline: {STREAMS[opt]} streams of 4 bytes per parameter)"
        )
        lines.append("")
        lines.append(
            "| tree | implementation | step ms: median (min-max) | vs optax | vs torch fused | "
            "roofline | compile s | memory MiB |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for cfg in (c for c in configs if c["opt"] == opt):
            by = {r.name: r for r in cfg["results"]}
            ox, tf = by.get("optax"), by.get("torch fused")
            tree = "transformer" if cfg["tree"] == "transformer" else cfg["tree"]
            tree = (
                f"{tree} ({cfg['n_leaves']} leaves)"
                if cfg["tree"] == "transformer"
                else (
                    f"{cfg['n_leaves']} leaf"
                    if cfg["n_leaves"] == 1
                    else f"{cfg['n_leaves']} leaves"
                )
            )
            for r in cfg["results"]:
                med = r.med()
                vs_o = f"{med / ox.med():.2f}x" if ox and ox.times else "-"
                vs_t = f"{med / tf.med():.2f}x" if tf and tf.times else "-"
                roof = (
                    "-"
                    if r.name.startswith("jit floor")
                    else f"{100 * cfg['roofline_s'] / med:.0f}%"
                )
                comp = f"{r.compile_s:.2f}" if r.compile_s is not None else "-"
                mem = f"{r.memory / 2**20:.0f}" if r.memory else "-"
                rng = f"{fmt_ms(med)} ({fmt_ms(min(r.times))}-{fmt_ms(max(r.times))})"
                lines.append(
                    f"| {tree} | {r.name} | {rng} | {vs_o} | {vs_t} | {roof} | {comp} | {mem} |"
                )
            for s in cfg["skipped"]:
                lines.append(f"| {tree} | ({s}) | | | | | | |")
        lines.append("")
    if "adam" in args.opts:
        lines.append("**Targets** (Adam; ratios from this run)")
        lines.append("")
        lines += targets(configs)
        lines.append("")
    return "\n".join(lines)


def plot(configs, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for cfgs_opt in ("adam",):
        cfgs = sorted(
            (c for c in configs if c["opt"] == cfgs_opt and c["tree"] != "transformer"),
            key=lambda c: c["n_leaves"],
        )
        names = sorted({r.name for c in cfgs for r in c["results"]})
        for name in names:
            xs, ys, cs = [], [], []
            for c in cfgs:
                for r in c["results"]:
                    if r.name == name and r.times:
                        xs.append(c["n_leaves"])
                        ys.append(1e3 * r.med())
                        cs.append(r.compile_s)
            axes[0].plot(xs, ys, "o-", label=name)
            if all(v is not None for v in cs) and cs:
                axes[1].plot(xs, cs, "o-", label=name)
        if cfgs:
            axes[0].plot(
                [c["n_leaves"] for c in cfgs],
                [1e3 * c["roofline_s"] for c in cfgs],
                "k--",
                label="roofline",
            )
    for ax, title in zip(axes, ["Adam step time (ms)", "compile time of the jitted step (s)"]):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of leaves (same total size)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write(configs, bw, bw_how, loads, args) -> str:
    """Writes ``latest.md`` and ``latest.json`` under ``args.out``; returns the table."""
    md = table(configs, bw, bw_how, loads, args)
    if args.skip:
        md += f"\nNot run (--skip): {', '.join(args.skip)}.\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md + "\n")
    results = [
        {
            **{k: v for k, v in c.items() if k != "results"},
            "results": [r.__dict__ for r in c["results"]],
        }
        for c in configs
    ]
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(
            {"bandwidth_gbs": bw, "loads": loads, "quick": args.quick, "configs": results},
            f,
            indent=1,
        )
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="1M parameters, 5 rounds, no optax at 10000 leaves"
    )
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--opts", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    ap.add_argument("--trees", nargs="+", default=["1", "1000", "10000", "transformer"])
    ap.add_argument(
        "--torch-python",
        default=os.environ.get("ADAPTX_TORCH_PYTHON"),
        help="a Python interpreter with torch installed",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--optax-10000",
        nargs="*",
        default=["adam"],
        help="optimizers for which optax and adaptx's per-leaf alias run at 10000 leaves "
        "(minutes of compile each)",
    )
    ap.add_argument(
        "--torch-device",
        default="cpu",
        help="torch's device: cpu, or cuda (its fused Adam is then the peer on a GPU)",
    )
    ap.add_argument("--slow", action="store_true", help="run every contender at every size")
    ap.add_argument(
        "--skip",
        nargs="*",
        default=["adamw_clip@10000"],
        help="OPT@TREE configurations not to run (default: clip + AdamW at 10000 leaves, whose "
        "per-leaf clip_by_global_norm alone takes over 15 minutes and 10 GB to compile)",
    )
    ap.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time a jitted identity over the same tree (the boundary cost)",
    )
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    args.total = (1 << 20) if args.quick else TOTAL
    if args.rounds is None:
        args.rounds = 5 if args.quick else 15
    if args.quick and "--optax-10000" not in (argv or sys.argv):
        args.optax_10000 = []
    if (
        args.torch_python
        and not shutil.which(args.torch_python)
        and not os.path.exists(args.torch_python)
    ):
        print(f"no interpreter {args.torch_python}; torch skipped", file=sys.stderr)
        args.torch_python = None

    loads = [load()]
    bw, bw_how = bandwidth_gbs(args.total, args.threads)
    print(f"bandwidth {bw:.1f} GB/s ({bw_how}), load {loads[0]:.1f}", flush=True)
    configs = []
    trees = sorted(args.trees, key=lambda t: (t == "transformer", int(t) if t.isdigit() else 0))
    for tree in trees:
        for opt in args.opts:
            if f"{opt}@{tree}" in args.skip:
                print(f"skipped {opt} {tree} (--skip)", flush=True)
                continue
            t0 = time.perf_counter()
            cfg = run_config(opt, tree, args, bw, loads)
            configs.append(cfg)
            summary = ", ".join(f"{r.name} {fmt_ms(r.med())} ms" for r in cfg["results"])
            print(f"[{time.perf_counter() - t0:5.0f}s] {opt} {tree}: {summary}", flush=True)
            write(configs, bw, bw_how, loads, args)  # partial results survive an interrupted run
    bw_end, _ = bandwidth_gbs(args.total, args.threads)
    print(f"bandwidth at the end {bw_end:.1f} GB/s", flush=True)
    bw = max(bw, bw_end)
    print(write(configs, bw, bw_how, loads, args))
    p = plot(configs, os.path.join(args.out, "scaling.png"))
    if p:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
