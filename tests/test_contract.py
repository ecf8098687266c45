"""The contract every registry entry must honour (see ``registry.py``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx

from registry import REGISTRY, Entry, by_name

ENTRIES = [pytest.param(e, id=e.name) for e in REGISTRY]
CONVERGING = [pytest.param(e, id=e.name) for e in REGISTRY if e.kind != "other"]


def _params(dtype=jnp.float32):
    return {
        "w": jnp.arange(6, dtype=jnp.float32).reshape(3, 2).astype(dtype) / 4 - 0.5,
        "b": jnp.array([0.25, -1.0], jnp.float32).astype(dtype),
        "s": jnp.asarray(1.5, jnp.float32).astype(dtype),
    }


def _grads(params, k=1):
    # Deterministic, different per step, with an always-zero coordinate.
    def f(x):
        flat = jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape)
        g = jnp.sin(flat * 1.3 + k) * (1.0 + k / 4)
        if x.ndim == 2:
            g = g.at[0, 0].set(0.0)
        return g.astype(x.dtype)

    return jax.tree.map(f, params)


def _optimizer(entry: Entry, lr: float) -> adaptx.GradientTransformation:
    tx = entry.make(lr)
    if entry.kind == "direction":
        tx = adaptx.chain(tx, adaptx.scale(-lr))
    return tx


def _sds(tree):
    return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), tree)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
def test_init_update_jit_and_tree_kept(entry, dtype, jit):
    tx = entry.make(0.1)
    params = _params(dtype)
    state = jit(tx.init)(params)
    updates, new_state = jit(tx.update)(_grads(params), state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    if entry.keeps_dtype:
        assert _sds(updates) == _sds(params), "update shapes/dtypes differ from the params'"
    # State structure, shapes and dtypes do not change across steps.
    updates2, state2 = jit(tx.update)(_grads(params, 2), new_state, params)
    assert jax.tree.structure(state2) == jax.tree.structure(state)
    assert _sds(state2) == _sds(state)
    assert _sds(new_state) == _sds(state)
    for leaf in jax.tree.leaves(updates2):
        assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32)))), "non-finite update"


@pytest.mark.parametrize("entry", ENTRIES)
def test_update_ignores_unknown_extra_args(entry):
    tx = entry.make(0.1)
    params = _params()
    state = tx.init(params)
    out1, _ = tx.update(_grads(params), state, params)
    out2, _ = tx.update(_grads(params), state, params, some_unknown_extra_arg=3.0)
    jax.tree.map(np.testing.assert_array_equal, out1, out2)


@pytest.mark.parametrize("entry", ENTRIES)
def test_second_jitted_step_does_not_recompile(entry):
    tx = _optimizer(entry, 0.1)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = tx.update(_grads(params), state, params)
        return adaptx.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    for _ in range(3):
        params, state = step(params, state)
    assert len(traces) == 1, f"step was traced {len(traces)} times"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.values[0].complex_ok])
def test_complex_params(entry):
    tx = entry.make(0.1)
    params = {"z": jnp.array([1.0 + 2.0j, -0.5j], jnp.complex64)}
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(
        {"z": jnp.array([0.5 - 1.0j, 2.0j], jnp.complex64)}, state, params
    )
    assert updates["z"].dtype == jnp.complex64
    assert bool(jnp.all(jnp.isfinite(updates["z"])))


def _parabola(x):
    return jnp.sum(jnp.square(x - jnp.array([0.5, -2.0, 1.0], jnp.float32)))


def _rosenbrock(x):
    return jnp.square(1.0 - x[0]) + 100.0 * jnp.square(x[1] - jnp.square(x[0]))


def _descend(tx, loss, x, steps):
    def body(carry, _):
        x, state = carry
        g = jax.grad(loss)(x)
        u, state = tx.update(g, state, x)
        return (adaptx.apply_updates(x, u), state), None

    return jax.lax.scan(body, (x, tx.init(x)), None, length=steps)[0][0]


@functools.cache
def _converged(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Where entry ``name`` ends on the parabola (1000 steps) and on Rosenbrock.

    Both runs are one compiled program, shared by the two convergence tests:
    compiling, not running, is what these tiny problems cost.
    """
    entry = by_name(name)

    def both(x_parabola, x_rosenbrock):
        return (
            _descend(_optimizer(entry, entry.lr), _parabola, x_parabola, 1000),
            _descend(
                _optimizer(entry, entry.rosenbrock_lr),
                _rosenbrock,
                x_rosenbrock,
                entry.rosenbrock_steps,
            ),
        )

    x0 = (jnp.zeros(3, jnp.float32), jnp.array([-1.2, 1.0], jnp.float32))
    return jax.device_get(jax.jit(both)(*x0))


@pytest.mark.parametrize("entry", CONVERGING)
def test_converges_on_parabola(entry):
    x, _ = _converged(entry.name)
    np.testing.assert_allclose(x, [0.5, -2.0, 1.0], atol=1e-2)


@pytest.mark.parametrize("entry", CONVERGING)
def test_converges_on_rosenbrock(entry):
    _, x = _converged(entry.name)
    dist = float(np.linalg.norm(x - np.ones(2, np.float32)))
    assert dist < entry.rosenbrock_tol, f"ended at {x}, {dist:.3g} from the optimum"
