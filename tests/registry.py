"""The one registry of public transforms and aliases.

Every entry here automatically gets the contract tests of ``test_contract.py``
(jit, no recompilation, tree structure, shapes and dtypes kept, state
structure stable, convergence on a parabola and on Rosenbrock). Adding an
optimizer to ``REGISTRY`` is all it takes.

``make(learning_rate)`` builds the transform. ``kind`` says how to test it:

- ``"optimizer"``: ``make(lr)`` returns updates to add to the params (descent);
- ``"direction"``: ``make(lr)`` returns a descent *direction* (like
  ``scale_by_adam``); the tests chain it with ``scale(-lr)``;
- ``"other"``: no convergence test (clipping alone, ``set_to_zero``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

import adaptx


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    make: Callable[[float], adaptx.GradientTransformation]
    kind: str = "optimizer"
    lr: float = 0.1  # learning rate for the parabola
    rosenbrock_lr: float = 1e-3
    rosenbrock_steps: int = 20000
    rosenbrock_tol: float = 5e-2  # distance to the optimum (1, 1)
    complex_ok: bool = False  # supports complex parameters
    needs_params: bool = False  # update() requires params
    # Shapes/dtypes of updates equal the params' (False for transforms whose
    # contract is different, which must then say why in a comment).
    keeps_dtype: bool = True

    def __str__(self) -> str:
        return self.name


def _sgd(lr):
    return adaptx.chain(adaptx.identity(), adaptx.scale_by_learning_rate(lr))


def _is_scalar(params):
    return jax.tree.map(lambda x: jnp.size(x) == 1, params)


def _is_vector(params):
    return jax.tree.map(lambda x: jnp.size(x) > 1, params)


def _size_labels(params):
    return jax.tree.map(lambda x: "vec" if jnp.size(x) > 1 else "scalar", params)


REGISTRY: list[Entry] = [
    # --- foundation -----------------------------------------------------------
    Entry("identity", lambda lr: adaptx.identity(), kind="direction", complex_ok=True),
    Entry("scale", lambda lr: adaptx.scale(-lr), complex_ok=True),
    Entry("scale_by_learning_rate", lambda lr: adaptx.scale_by_learning_rate(lr), complex_ok=True),
    Entry(
        "scale_by_learning_rate[schedule]",
        lambda lr: adaptx.scale_by_learning_rate(adaptx.exponential_decay(lr, 1000, 0.99)),
        complex_ok=True,
    ),
    Entry(
        "scale_by_schedule",
        lambda lr: adaptx.scale_by_schedule(adaptx.constant_schedule(1.0)),
        kind="direction",
        complex_ok=True,
    ),
    Entry("set_to_zero", lambda lr: adaptx.set_to_zero(), kind="other", complex_ok=True),
    Entry(
        "stateless",
        lambda lr: adaptx.stateless(lambda u, p: jax.tree.map(lambda g: -lr * g, u)),
        complex_ok=True,
    ),
    Entry("chain", _sgd, complex_ok=True),
    Entry(
        "named_chain",
        lambda lr: adaptx.named_chain(
            ("direction", adaptx.identity()), ("lr", adaptx.scale_by_learning_rate(lr))
        ),
        complex_ok=True,
    ),
    # --- seed optimizers ------------------------------------------------------
    # --- combinators and wrappers ---------------------------------------------
    # The inner optimizer is the foundation's SGD (``_sgd``); masks and labels
    # depend on leaf size so the contract's scalar "s" is masked out / frozen
    # while the parabola and Rosenbrock vectors are optimized.
    Entry(
        "masked",
        lambda lr: adaptx.masked(
            adaptx.scale_by_schedule(adaptx.constant_schedule(0.5)), _is_vector
        ),
        kind="direction",  # masked-out leaves keep the raw gradient: both descend
        complex_ok=True,
    ),
    Entry(
        "partition",
        lambda lr: adaptx.partition({"vec": _sgd(lr), "scalar": _sgd(lr / 2)}, _size_labels),
        complex_ok=True,
    ),
    Entry("freeze", lambda lr: adaptx.chain(adaptx.freeze(_is_scalar), _sgd(lr)), complex_ok=True),
    Entry("clip", lambda lr: adaptx.clip(1.0), kind="direction", complex_ok=True),
    Entry(
        "clip_by_global_norm",
        lambda lr: adaptx.clip_by_global_norm(1.0),
        kind="direction",
        complex_ok=True,
    ),
    Entry(
        "clip_by_block_rms",
        lambda lr: adaptx.clip_by_block_rms(1.0),
        kind="direction",
        complex_ok=True,
    ),
    Entry("apply_if_finite", lambda lr: adaptx.apply_if_finite(_sgd(lr), 3), complex_ok=True),
    Entry("zero_nans", lambda lr: adaptx.zero_nans(), kind="direction", complex_ok=True),
    # One inner step per two calls: twice the steps for the same Rosenbrock progress.
    Entry(
        "MultiSteps",
        lambda lr: adaptx.MultiSteps(_sgd(lr), 2),
        rosenbrock_steps=40000,
        complex_ok=True,
    ),
    Entry(
        "lookahead",
        lambda lr: adaptx.lookahead(_sgd(lr), sync_period=5, slow_step_size=0.5),
        rosenbrock_steps=40000,  # slow steps of 0.5: about half the progress per step
        needs_params=True,
        complex_ok=True,
    ),
    Entry(
        "inject_hyperparams",
        lambda lr: adaptx.inject_hyperparams(_sgd)(lr),
        complex_ok=True,
    ),
    Entry(
        "inject_hyperparams[schedule]",
        lambda lr: adaptx.inject_hyperparams(_sgd)(adaptx.exponential_decay(lr, 1000, 0.99)),
        complex_ok=True,
    ),
]


def by_name(name: str) -> Entry:
    for e in REGISTRY:
        if e.name == name:
            return e
    raise KeyError(name)
