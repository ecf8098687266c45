"""The command line: ``python -m adaptx demo`` (also the ``adaptx`` console script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The ``adaptx`` argument parser, one sub-command per job."""
    from adaptx.demo._cli import DESCRIPTION, add_arguments

    parser = argparse.ArgumentParser(
        prog="adaptx", description="adaptx: composable gradient transformations for JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="reproduce the Adam paper's Figure 1 on scikit-learn's digits",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Example:
      >>> from adaptx.__main__ import main
      >>> main(["demo", "--help"])  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      SystemExit: 0
    """
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from adaptx.demo._cli import run

        return run(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects others


if __name__ == "__main__":
    sys.exit(main())
