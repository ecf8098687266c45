"""What the main job shows: a progress bar, a table and a figure."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

import numpy as np

from adaptx.demo._train import Figure1


class Progress:
    """A dependency-free progress bar on a text stream.

    On a terminal the bar is redrawn in place; elsewhere (a CI log, a pipe) a
    line is written at every tenth of the way, so logs stay short.

    Args:
      total: the number of units of work.
      stream: where to write (standard error by default).
      width: the bar's width in characters.

    Example:
      >>> import io
      >>> from adaptx.demo import Progress
      >>> out = io.StringIO()
      >>> bar = Progress(4, stream=out, width=8)
      >>> for _ in range(4):
      ...     bar.update("adam")
      >>> bar.close()
      >>> out.getvalue().splitlines()[-1]
      '[########] 4/4 adam ...s'
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30):
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.done = 0
        self.start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._printed_tenths = -1
        self._label = ""

    def _line(self) -> str:
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        return f"[{bar}] {self.done}/{self.total} {self._label} {elapsed:.1f}s"

    def update(self, label: str = "", n: int = 1) -> None:
        """Records ``n`` more units done, with a label for what is running."""
        self.done = min(self.done + n, self.total)
        self._label = label
        if self._tty:
            self.stream.write("\r" + self._line() + "\033[K")
            self.stream.flush()
            return
        tenths = 10 * self.done // self.total
        if tenths > self._printed_tenths:
            self._printed_tenths = tenths
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Ends the bar's line."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def format_table(fig1: Figure1) -> str:
    """The final training objective of each optimizer next to the L-BFGS optimum.

    A Markdown table, one row per optimizer: the learning rate picked from the
    grid, the final objective (its float32 parameters evaluated in float64),
    the gap to the float64 optimum, and the wall time (compilation included).

    Args:
      fig1: the results of ``run_figure1``.

    Returns:
      The table, lines joined by newlines.

    Example:
      >>> from adaptx.demo import format_table, run_figure1
      >>> print(format_table(run_figure1(["adam"], learning_rates=[0.1], epochs=1)))
      | optimizer | best alpha | final objective | gap to optimum | time |
      |---|---|---|---|---|
      | Adam | 0.1 | ... | ... | ... s |
      | L-BFGS, float64 (optimum) | | 0.024136 | 0 | ... s |
    """
    lines = [
        "| optimizer | best alpha | final objective | gap to optimum | time |",
        "|---|---|---|---|---|",
    ]
    opt = fig1.optimum
    for r in fig1.results:
        final = fig1.final_objective(r)
        lr = r.learning_rates[r.best]
        label = r.spec.label + (" (decoupled decay)" if r.spec.decoupled_l2 else "")
        lines.append(
            f"| {label} | {lr:.3g} | {final:.6f} | {final - opt.value:.1e} | {r.seconds:.1f} s |"
        )
    lines.append(f"| L-BFGS, float64 (optimum) | | {opt.value:.6f} | 0 | {opt.seconds:.1f} s |")
    return "\n".join(lines)


def plot_figure1(fig1: Figure1, path: str | os.PathLike[str] | None = None, dpi: int = 80) -> Any:
    """Training curves of every optimizer, as in the paper's Figure 1.

    Left: the training objective per epoch, with the L-BFGS optimum dashed.
    Right: the gap to the optimum on a log scale. The paper's three optimizers
    (Adam, AdaGrad, SGD Nesterov) are drawn thicker.

    Args:
      fig1: the results of ``run_figure1``.
      path: where to write a PNG (its folder is created); ``None`` writes nothing.
      dpi: resolution of the PNG.

    Returns:
      The ``matplotlib.figure.Figure`` (no pyplot state is touched).

    Example:
      >>> import pathlib, tempfile
      >>> from adaptx.demo import plot_figure1, run_figure1
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.png"
      >>> _ = plot_figure1(run_figure1(["adam"], learning_rates=[0.1], epochs=1), path)
      >>> path.read_bytes()[:4]
      b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_obj, ax_gap = fig.subplots(1, 2)
    epochs = np.arange(fig1.epochs + 1)
    f_star = fig1.optimum.value
    for r in fig1.results:
        curve = r.curves[r.best].astype(np.float64)
        style = (
            {"lw": 2.2}
            if r.spec.in_paper
            else {"lw": 1.2, "ls": "--" if r.spec.decoupled_l2 else "-"}
        )
        label = f"{r.spec.label} (alpha={r.learning_rates[r.best]:.3g})"
        ax_obj.plot(epochs, curve, label=label, **style)
        ax_gap.plot(epochs[1:], np.maximum(curve[1:] - f_star, 1e-8), **style)
    ax_obj.axhline(f_star, color="k", ls=":", lw=1, label="L-BFGS optimum (float64)")
    ax_obj.set_ylim(0.0, min(0.5, float(np.nanmax([r.curves[r.best, 1] for r in fig1.results]))))
    ax_obj.set_xlabel("epochs (passes over the data)")
    ax_obj.set_ylabel("training objective")
    ax_obj.set_title("L2-regularised logistic regression, digits")
    ax_obj.legend(fontsize=7)
    ax_gap.set_yscale("log")
    ax_gap.set_xlabel("epochs (passes over the data)")
    ax_gap.set_ylabel("objective - optimum")
    ax_gap.set_title(f"minibatch {fig1.batch_size}, alpha/sqrt(t), best alpha of a grid")
    ax_gap.grid(True, which="major", alpha=0.3)
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig
