"""Consumer-style usage (flax's ``TrainState`` pattern) with the tree checks and checkpoints.

flax is not a dependency; this is the same contract: the transform is a static field,
the optimizer state a pytree field, and a jitted ``apply_gradients`` calls
``tx.update(grads, opt_state, params)`` then ``apply_updates``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["step", "params", "opt_state"],
    meta_fields=["tx"],
)
@dataclasses.dataclass(frozen=True)
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    tx: Any

    @classmethod
    def create(cls, params, tx):
        return cls(jnp.zeros((), jnp.int32), params, tx.init(params), tx)

    def apply_gradients(self, grads):
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = adaptx.apply_updates(self.params, updates)
        return dataclasses.replace(self, step=self.step + 1, params=params, opt_state=opt_state)


PARAMS = {"dense": {"kernel": jnp.ones((3, 2)) / 3, "bias": jnp.zeros(2)}}


def _loss(params, x):
    y = x @ params["dense"]["kernel"] + params["dense"]["bias"][None, :]
    return jnp.sum(jnp.square(y - 1.0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: adaptx.adamw(0.05),
        lambda: adaptx.chain(adaptx.clip_by_global_norm(1.0), adaptx.sgd(0.1, 0.9)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), adaptx.adam(0.05)),
        lambda: adaptx.chain(adaptx.identity(), optax.adam(0.05)),
    ],
    ids=["adamw", "adaptx chain", "optax.chain(adaptx)", "adaptx.chain(optax)"],
)
def test_train_state_trains_checks_and_resumes(make, tmp_path):
    x = jnp.arange(12.0).reshape(4, 3) / 12
    traces = []

    @jax.jit
    def _train_step(state, x):
        traces.append(1)
        return state.apply_gradients(jax.grad(_loss)(state.params, x))

    state = TrainState.create(PARAMS, make())
    losses = []
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-clean
        for _ in range(6):
            state = _train_step(state, x)
            losses.append(float(_loss(state.params, x)))
        assert losses[-1] < losses[0]

        # Checkpoint the optimizer state, re-initialise, resume: identical.
        adaptx.save_state(tmp_path / "opt.npz", state.opt_state)
        fresh = TrainState.create(state.params, state.tx)
        resumed = dataclasses.replace(
            fresh,
            step=state.step,
            opt_state=adaptx.load_state(tmp_path / "opt.npz", like=fresh.opt_state),
        )
        a, b = _train_step(state, x), _train_step(resumed, x)
    # One trace for everything: a re-initialised state (its static tree signatures
    # included) hashes and compares equal to the first one's.
    assert len(traces) == 1
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)


def test_train_state_with_gradients_of_another_shape_raises_under_jit():
    state = TrainState.create(PARAMS, adaptx.adam(0.1))
    bad = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
    with pytest.raises(adaptx.TreeMismatchError, match=r"\['dense'\]\['kernel'\]"):
        jax.jit(TrainState.apply_gradients)(state, bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optax.masked(adaptx.adam(0.1), {"w": True, "b": False}),
        lambda: optax.inject_hyperparams(adaptx.adam)(learning_rate=0.1, b1=0.9),
        lambda: optax.MultiSteps(adaptx.adam(0.1), 2),
        lambda: optax.multi_transform(
            {"a": adaptx.adam(0.1), "s": adaptx.sgd(0.1)}, {"w": "a", "b": "s"}
        ),
        lambda: optax.apply_if_finite(adaptx.adam(0.1), 2),
    ],
    ids=["masked", "inject_hyperparams", "MultiSteps", "multi_transform", "apply_if_finite"],
)
def test_optax_wrappers_around_adaptx_transforms(make):
    # optax's wrappers hand the inner transform masked trees, traced hyper-parameters
    # and accumulated gradients: the tree checks accept all of them.
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = jax.tree.map(lambda x: x / 2, params)
    tx = make()
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(params)
        for _ in range(3):
            updates, state = jax.jit(tx.update)(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
