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
    # --- Adam family (adam-family) ---
    Entry("adam", lambda lr: adaptx.adam(lr), complex_ok=True),
    Entry("adam[nesterov]", lambda lr: adaptx.adam(lr, nesterov=True), complex_ok=True),
    Entry("adamw", lambda lr: adaptx.adamw(lr, weight_decay=1e-4), complex_ok=True),
    # AMSGrad keeps Rosenbrock's first, large gradient in v_max for good: its steps stay
    # small, so it needs 1e-2 where Adam gets there with 1e-3.
    Entry("amsgrad", lambda lr: adaptx.amsgrad(lr), rosenbrock_lr=1e-2, complex_ok=True),
    Entry(
        "amsgrad[paper]",
        lambda lr: adaptx.amsgrad(lr, variant="paper"),
        rosenbrock_lr=1e-2,
        complex_ok=True,
    ),
    Entry("adamax", lambda lr: adaptx.adamax(lr), complex_ok=True),
    Entry("nadam", lambda lr: adaptx.nadam(lr), complex_ok=True),
    Entry("radam", lambda lr: adaptx.radam(lr), complex_ok=True),
    Entry("scale_by_adam", lambda lr: adaptx.scale_by_adam(), kind="direction", complex_ok=True),
    Entry(
        "scale_by_adam[b1_decay]",
        lambda lr: adaptx.scale_by_adam(b1_decay=1 - 1e-4),
        kind="direction",
        complex_ok=True,
    ),
    Entry(
        "scale_by_adamax", lambda lr: adaptx.scale_by_adamax(), kind="direction", complex_ok=True
    ),
    Entry(
        "scale_by_amsgrad",
        lambda lr: adaptx.scale_by_amsgrad(),
        kind="direction",
        rosenbrock_lr=1e-2,
        complex_ok=True,
    ),
    Entry("scale_by_nadam", lambda lr: adaptx.scale_by_nadam(), kind="direction", complex_ok=True),
    Entry("scale_by_radam", lambda lr: adaptx.scale_by_radam(), kind="direction", complex_ok=True),
    Entry(
        "add_decayed_weights",
        lambda lr: adaptx.add_decayed_weights(1e-4),
        kind="direction",
        complex_ok=True,
        needs_params=True,
    ),
    # --- end Adam family ---
    # --- combinators and wrappers ---------------------------------------------
]


def by_name(name: str) -> Entry:
    for e in REGISTRY:
        if e.name == name:
            return e
    raise KeyError(name)
