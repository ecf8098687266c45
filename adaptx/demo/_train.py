"""Training every optimizer on the logistic-regression problem, the paper's way.

Kingma & Ba's Figure 1 protocol: minibatches of 128, the step size decayed as
``alpha / sqrt(t)``, 45 passes over the data, and each optimizer's ``alpha``
picked from a grid (the paper: "searched over a dense grid ... reported using
the best hyperparameter setting"). Here the whole grid trains at once: the
learning rate is a run-time array, vmapped, and one epoch (a ``lax.scan`` over
minibatches) is one jitted call per optimizer.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import adaptx
from adaptx._base import GradientTransformation, ScalarOrSchedule
from adaptx.demo._problem import (
    Optimum,
    Params,
    Problem,
    data_loss,
    lbfgs_optimum,
    load_digits_problem,
    objective,
    objective_f64,
)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the comparison.

    Attributes:
      name: the key used on the command line (``adam``, ``sgd_nesterov``, ...).
      label: the name in tables and legends.
      make: ``make(learning_rate, l2) -> GradientTransformation``.
      decoupled_l2: the optimizer applies the L2 term itself as decoupled weight
        decay (AdamW): it gets the gradient of the data term only.
      in_paper: compared in the paper's Figure 1.
    """

    name: str
    label: str
    make: Callable[[ScalarOrSchedule, float], GradientTransformation]
    decoupled_l2: bool = False
    in_paper: bool = False


def _specs() -> dict[str, OptimizerSpec]:
    specs = [
        OptimizerSpec("adam", "Adam", lambda lr, l2: adaptx.adam(lr), in_paper=True),
        OptimizerSpec("adagrad", "AdaGrad", lambda lr, l2: adaptx.adagrad(lr), in_paper=True),
        OptimizerSpec(
            "sgd_nesterov",
            "SGD Nesterov",
            lambda lr, l2: adaptx.sgd(lr, momentum=0.9, nesterov=True),
            in_paper=True,
        ),
        OptimizerSpec("rmsprop", "RMSProp", lambda lr, l2: adaptx.rmsprop(lr)),
        OptimizerSpec("adamax", "AdaMax", lambda lr, l2: adaptx.adamax(lr)),
        OptimizerSpec("nadam", "NAdam", lambda lr, l2: adaptx.nadam(lr)),
        OptimizerSpec("amsgrad", "AMSGrad", lambda lr, l2: adaptx.amsgrad(lr)),
        OptimizerSpec(
            "adamw",
            "AdamW",
            lambda lr, l2: adaptx.adamw(lr, weight_decay=l2),
            decoupled_l2=True,
        ),
        OptimizerSpec("radam", "RAdam", lambda lr, l2: adaptx.radam(lr)),
    ]
    return {s.name: s for s in specs}


OPTIMIZERS: dict[str, OptimizerSpec] = _specs()
"""The optimizers of the main job, by command-line name, in the order they are plotted."""

DEFAULT_LEARNING_RATES: tuple[float, ...] = tuple(
    float(f"{v:.3g}") for v in 10.0 ** np.arange(-3.0, 1.75, 0.5)
)
"""The grid each optimizer's ``alpha`` is picked from: 1e-3 to 31.6, half a decade apart."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """One optimizer trained with every learning rate of a grid.

    Attributes:
      spec: the optimizer.
      learning_rates: the grid, ``(g,)``.
      curves: ``(g, epochs + 1)`` float32 objective after each epoch (index 0 is
        the starting point).
      params: the final parameters, leaves stacked over the grid.
      seconds: wall time, JAX compilation included.
    """

    spec: OptimizerSpec
    learning_rates: np.ndarray
    curves: np.ndarray
    params: Params
    seconds: float

    @property
    def best(self) -> int:
        """Index of the learning rate with the lowest final objective (NaN counts as worst)."""
        final = np.where(np.isfinite(self.curves[:, -1]), self.curves[:, -1], np.inf)
        return int(np.argmin(final))

    def best_params(self) -> Params:
        """The final parameters of the best learning rate."""
        i = self.best
        return jax.tree.map(lambda p: np.asarray(p[i]), self.params)


def _optimizer(spec: OptimizerSpec, lr: jax.Array, l2: jax.Array) -> GradientTransformation:
    """``spec``'s optimizer with step size ``lr / sqrt(t)`` (``lr`` a run-time array)."""
    return spec.make(adaptx.inverse_sqrt_schedule(lr), l2)


# Module-level jitted functions, so repeated runs (other seeds, other problems of
# the same shape) reuse the compilation: ``spec`` and ``batch_size`` are static.
@functools.partial(jax.jit, static_argnames=("spec",))
def _init_grid(spec: OptimizerSpec, lrs: jax.Array, params0: Params, l2: jax.Array):
    return jax.vmap(lambda lr: (params0, _optimizer(spec, lr, l2).init(params0)))(lrs)


@functools.partial(jax.jit, static_argnames=("spec", "batch_size"))
def _epoch(spec, batch_size, x, y, l2, lrs, params, states, key):
    """One pass over the data for every learning rate: a scan over minibatches, vmapped."""
    n_batches = x.shape[0] // batch_size

    def loss(p, xb, yb):
        # AdamW applies the L2 term itself, as decoupled weight decay.
        return data_loss(p, xb, yb) if spec.decoupled_l2 else objective(p, xb, yb, l2)

    def one_run(lr, params, state, batches):
        tx = _optimizer(spec, lr, l2)

        def step(carry, idx):
            p, s = carry
            grads = jax.grad(loss)(p, x[idx], y[idx])
            updates, s = tx.update(grads, s, p)
            return (adaptx.apply_updates(p, updates), s), None

        (params, state), _ = jax.lax.scan(step, (params, state), batches)
        return params, state, objective(params, x, y, l2)

    perm = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size]
    batches = perm.reshape(n_batches, batch_size)
    return jax.vmap(one_run, in_axes=(0, 0, 0, None))(lrs, params, states, batches)


def train(
    problem: Problem,
    spec: OptimizerSpec,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    *,
    epochs: int = 45,
    batch_size: int = 128,
    seed: int = 0,
    on_epoch: Callable[[int], None] | None = None,
) -> TrainResult:
    """Trains ``spec``'s optimizer with every learning rate of the grid at once.

    Each learning rate ``alpha`` is decayed as ``alpha / sqrt(t)``
    (``adaptx.inverse_sqrt_schedule``). Minibatches are drawn without
    replacement from a fresh permutation every epoch (the last partial batch is
    dropped); the permutations depend only on ``seed`` and the epoch, so every
    optimizer and learning rate sees the same minibatches.

    Args:
      problem: the problem.
      spec: the optimizer.
      learning_rates: the grid of initial step sizes ``alpha``.
      epochs: passes over the data.
      batch_size: minibatch size.
      seed: seeds the minibatch order.
      on_epoch: called with the epoch number (from 1) after each epoch.

    Returns:
      A ``TrainResult``.

    Example:
      >>> from adaptx.demo import OPTIMIZERS, load_digits_problem, train
      >>> problem = load_digits_problem()
      >>> result = train(problem, OPTIMIZERS["adam"], [0.01, 0.1], epochs=2)
      >>> result.curves.shape, bool(result.curves[1, -1] < result.curves[1, 0])
      ((2, 3), True)
    """
    if batch_size > problem.x.shape[0]:
        raise ValueError(f"batch_size must be at most {problem.x.shape[0]}, got {batch_size}")
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
    l2 = jnp.asarray(problem.l2, jnp.float32)
    params0 = problem.init_params()
    start = time.perf_counter()
    lrs = jnp.asarray(learning_rates, jnp.float32)
    params, states = _init_grid(spec, lrs, params0, l2)
    first = float(objective(params0, x, y, l2))
    curves = [np.full(lrs.shape, first, np.float32)]
    key = jax.random.key(seed)
    for e in range(1, epochs + 1):
        params, states, values = _epoch(
            spec, batch_size, x, y, l2, lrs, params, states, jax.random.fold_in(key, e)
        )
        curves.append(np.asarray(values))
        if on_epoch is not None:
            on_epoch(e)
    return TrainResult(
        spec=spec,
        learning_rates=np.asarray(learning_rates, np.float64),
        curves=np.stack(curves, axis=1),
        params=params,
        seconds=time.perf_counter() - start,
    )


@dataclasses.dataclass(frozen=True)
class Figure1:
    """The main job's results: every optimizer against the float64 optimum.

    Attributes:
      problem: the problem.
      optimum: the L-BFGS optimum.
      results: one ``TrainResult`` per optimizer, in order.
      epochs, batch_size, seed: the settings.
      seconds: total wall time, JAX compilation and L-BFGS included.
    """

    problem: Problem
    optimum: Optimum
    results: list[TrainResult]
    epochs: int
    batch_size: int
    seed: int
    seconds: float

    def final_objective(self, result: TrainResult) -> float:
        """The objective at ``result``'s best final params, evaluated in float64."""
        return objective_f64(self.problem, result.best_params())[0]


def run_figure1(
    optimizers: Sequence[str] = tuple(OPTIMIZERS),
    *,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    epochs: int = 45,
    batch_size: int = 128,
    seed: int = 0,
    l2: float = 1e-4,
    on_epoch: Callable[[str, int], None] | None = None,
) -> Figure1:
    """The Adam paper's Figure 1 analogue: trains each optimizer, solves with L-BFGS.

    Args:
      optimizers: names from ``OPTIMIZERS``.
      learning_rates: the grid each optimizer's ``alpha`` is picked from.
      epochs: passes over the data.
      batch_size: minibatch size.
      seed: seeds the minibatch order.
      l2: the L2 coefficient.
      on_epoch: called with ``(optimizer name, epoch)`` after each epoch.

    Returns:
      A ``Figure1``.

    Example:
      >>> from adaptx.demo import run_figure1
      >>> fig1 = run_figure1(["adam", "sgd_nesterov"], learning_rates=[0.1], epochs=2)
      >>> [r.spec.label for r in fig1.results]
      ['Adam', 'SGD Nesterov']
      >>> all(fig1.final_objective(r) > fig1.optimum.value for r in fig1.results)
      True
    """
    unknown = [name for name in optimizers if name not in OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {list(OPTIMIZERS)}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    start = time.perf_counter()
    problem = load_digits_problem(l2)
    optimum = lbfgs_optimum(problem)
    results = []
    for name in optimizers:
        callback = None if on_epoch is None else (lambda e, name=name: on_epoch(name, e))
        results.append(
            train(
                problem,
                OPTIMIZERS[name],
                learning_rates,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                on_epoch=callback,
            )
        )
    return Figure1(
        problem=problem,
        optimum=optimum,
        results=results,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        seconds=time.perf_counter() - start,
    )
