"""The ``demo`` command: arguments and the run that prints the table and writes the PNG."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence

from adaptx.demo._report import Progress, format_table, plot_figure1
from adaptx.demo._train import DEFAULT_LEARNING_RATES, OPTIMIZERS, run_figure1

DESCRIPTION = """\
The Adam paper's Figure 1 (Kingma & Ba, ICLR 2015), on data that ships offline:
L2-regularised multinomial logistic regression on scikit-learn's digits,
minibatch 128, step size alpha/sqrt(t), each optimizer's alpha the best of a
grid. Prints the final training objective of every optimizer next to the
float64 optimum found by L-BFGS and writes a PNG of the training curves."""

_MISSING_EXTRA = (
    "the demo needs {missing}; install the demo extra: pip install 'adaptx[demo]' "
    "(or pip install -e '.[demo]' in a checkout)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the demo's options to ``parser``."""
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=list(OPTIMIZERS),
        default=list(OPTIMIZERS),
        metavar="NAME",
        help=f"optimizers to compare (default: all): {', '.join(OPTIMIZERS)}",
    )
    parser.add_argument("--epochs", type=int, default=45, help="passes over the data (45)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the minibatch order (0)")
    parser.add_argument(
        "--output", default="out/demo.png", help="where to write the PNG (out/demo.png)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="minibatch size (128)")
    parser.add_argument(
        "--l2", type=float, default=1e-4, help="L2 coefficient of the objective (1e-4)"
    )
    parser.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=list(DEFAULT_LEARNING_RATES),
        metavar="ALPHA",
        help="grid of initial step sizes; each optimizer keeps its best "
        "(default: 1e-3 to 31.6, half a decade apart)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs the demo with parsed ``args``; returns the exit status."""
    missing = [m for m in ("sklearn", "scipy", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        print("adaptx demo: " + _MISSING_EXTRA.format(missing=", ".join(missing)), file=sys.stderr)
        return 2
    start = time.perf_counter()
    print(
        f"{len(args.optimizers)} optimizers x {len(args.learning_rates)} learning rates x "
        f"{args.epochs} epochs, minibatch {args.batch_size}, l2 = {args.l2:g}, seed {args.seed}",
        flush=True,
    )
    bar = None if args.no_progress else Progress(len(args.optimizers) * args.epochs)
    fig1 = run_figure1(
        args.optimizers,
        learning_rates=args.learning_rates,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        l2=args.l2,
        on_epoch=None if bar is None else (lambda name, epoch: bar.update(name)),
    )
    if bar is not None:
        bar.close()
    print()
    print(format_table(fig1))
    print()
    opt = fig1.optimum
    print(
        f"L-BFGS optimum: {opt.value:.10f}, gradient norm {opt.grad_norm:.1e} "
        f"after {opt.iterations} iterations"
    )
    plot_figure1(fig1, args.output)
    print(f"wrote {args.output}")
    print(f"done in {time.perf_counter() - start:.1f} s (JAX compilation included)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``adaptx demo [options]`` as a function (``argv`` excludes the program name)."""
    parser = argparse.ArgumentParser(prog="adaptx demo", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
