"""Robustness contract for every registry entry: tree checks, checkpoints, resume,
a saturated step counter, float16 on zero gradients.

Everything here runs eagerly on tiny trees (a few steps, no compilation) so the
whole file stays fast however many entries the registry grows to.
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx
from adaptx._numerics import INT32_MAX

from registry import REGISTRY, by_name

ENTRIES = [pytest.param(e, id=e.name) for e in REGISTRY]


def _params(dtype=jnp.float32):
    # Values exactly representable in bfloat16 and float16.
    return {
        "w": (jnp.arange(6, dtype=jnp.float32).reshape(3, 2) / 4 - 0.5).astype(dtype),
        "b": jnp.array([0.25, -1.0], jnp.float32).astype(dtype),
    }


def _grads(params, k):
    def f(x):
        flat = jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape)
        return (jnp.round(jnp.sin(flat * 1.3 + k) * 64) / 32).astype(x.dtype)

    return jax.tree.map(f, params)


def _run(tx, params, state, ks):
    """Applies ``tx`` for gradients ``_grads(params, k)``, k in ``ks``; returns params, state."""
    for k in ks:
        updates, state = tx.update(_grads(params, k), state, params)
        params = adaptx.apply_updates(params, updates)
    return params, state


@functools.cache
def _trajectory(name: str) -> tuple:
    """(params, state) before each of 6 steps of entry ``name`` and after the last.

    Computed once per entry and shared by the checkpoint, resume and counter
    tests: every step is eager, so the steps themselves are what they cost.
    """
    tx = by_name(name).make(0.1)
    params = _params()
    out = [(params, tx.init(params))]
    for k in range(6):
        out.append(_run(tx, *out[-1], [k]))
    return tuple(out)


def _bits(tree):
    """Every leaf as (dtype, shape, raw bytes): equality is bit-for-bit (NaNs included)."""
    return [
        (str(np.asarray(x).dtype), np.shape(x), np.asarray(x).tobytes())
        for x in jax.tree.leaves(tree)
    ]


# --- tree mismatches ------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda g: {**g, "w": g["w"].T}, r"\['w'\].*\n.*shape \(3, 2\).*\n.*shape \(2, 3\)"),
        (lambda g: {**g, "b": g["b"][:1]}, r"\['b'\].*\n.*shape \(2,\).*\n.*shape \(1,\)"),
        (lambda g: {"w": g["w"]}, r"missing \['b'\]"),
        (lambda g: {**g, "extra": g["b"]}, r"unexpected \['extra'\]"),
        (
            lambda g: {**g, "w": g["w"].astype(jnp.bfloat16)},
            r"\['w'\].*\n.*dtype float32.*\n.*dtype bfloat16",
        ),
    ],
    ids=["transposed", "shorter", "missing", "extra", "dtype"],
)
def test_update_rejects_a_tree_unlike_init(entry, bad, match):
    tx = entry.make(0.1)
    params = _params()
    state = tx.init(params)
    with pytest.raises(adaptx.TreeMismatchError, match=match):
        tx.update(bad(_grads(params, 0)), state, params)


# add_noise keeps a count and a PRNG key, nothing with the params' structure.
_NO_TREE_IN_STATE = {"add_noise"}
# Entries whose state keeps one flag per leaf: the structure is checked, not shapes.
_STRUCTURE_ONLY = {"zero_nans"}
# Entries whose state keeps a factored matrix's row and column statistics only: the
# transpose of a matrix has statistics of the same shapes (other mismatches are caught).
# adaptx.fused keeps flat buffers: without params, only the number of entries is checked.
_TRANSPOSE_BLIND = {"scale_by_factored_rms", "fused.adamw", "fused.sgd"}


def _keeps_a_tree(entry) -> bool:
    """Whether the state holds a tree with the params' structure to check against.

    Stateless transforms (and ``scale_by_schedule``, which keeps a count) hold
    none: without ``params`` in ``update`` they check nothing, as optax's.
    """
    state = jax.eval_shape(entry.make(0.1).init, _params())
    if entry.name in _NO_TREE_IN_STATE:
        return False
    return any(len(x.shape) > 0 for x in jax.tree.leaves(state)) or entry.name in _STRUCTURE_ONLY


@pytest.mark.parametrize(
    "entry",
    [e for e in ENTRIES if not e.values[0].needs_params and _keeps_a_tree(e.values[0])],
)
def test_update_without_params_checks_against_the_state(entry):
    tx = entry.make(0.1)
    state = tx.init(_params())
    grads = _grads(_params(), 0)
    if entry.name not in _STRUCTURE_ONLY | _TRANSPOSE_BLIND:
        with pytest.raises(adaptx.TreeMismatchError, match=r"\['w'\]"):
            tx.update({**grads, "w": grads["w"].T}, state)
    with pytest.raises(adaptx.TreeMismatchError, match="structure"):
        tx.update({"w": grads["w"]}, state)


class ForeignState(NamedTuple):
    """A state no adaptx transform makes."""

    foreign: dict


@pytest.mark.parametrize("entry", ENTRIES)
def test_update_names_a_wrong_state(entry):
    # None, or another optimizer's state, is a TypeError that says which state was
    # expected and which was given, not an error from deep inside JAX.
    tx = entry.make(0.1)
    params = _params()
    grads = _grads(params, 0)
    with pytest.raises(TypeError, match=r"update expected .*got None"):
        tx.update(grads, None, params)
    with pytest.raises(TypeError, match=r"update expected .*got ForeignState"):
        tx.update(grads, ForeignState(foreign=grads), params)


@pytest.mark.parametrize("entry", ENTRIES)
def test_tree_check_costs_nothing_after_tracing(entry):
    # The check is static: a jitted step holds no trace of it and does not recompile.
    tx = entry.make(0.1)
    params = _params()
    traces = []

    @jax.jit
    def step(p, s, k):
        traces.append(1)
        return tx.update(jax.tree.map(lambda x: x * k, _grads(p, 0)), s, p)

    state = tx.init(params)
    for k in range(3):
        _, state = step(params, state, jnp.float32(k))
    assert len(traces) == 1


# --- checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_checkpoint_round_trip_is_exact(entry, tmp_path):
    tx = entry.make(0.1)
    params = _params()
    _, state = _trajectory(entry.name)[2]
    path = adaptx.save_state(tmp_path / "state.npz", state)
    restored = adaptx.load_state(path, like=tx.init(params))
    assert jax.tree.structure(restored) == jax.tree.structure(state)  # NamedTuple types too
    assert _bits(restored) == _bits(state)


@pytest.mark.parametrize("entry", ENTRIES)
def test_resumed_training_is_bit_identical(entry, tmp_path):
    p0 = _params()
    # The uninterrupted run and its state after 3 steps (the same run, shared).
    trajectory = _trajectory(entry.name)
    p_straight, s_straight = trajectory[6]
    p_half, s_half = trajectory[3]
    adaptx.save_state(tmp_path / "opt.npz", s_half)
    np.savez(tmp_path / "params.npz", **{k: np.asarray(v) for k, v in p_half.items()})
    # A fresh process would rebuild the optimizer and its template state from scratch.
    tx2 = entry.make(0.1)
    s_loaded = adaptx.load_state(tmp_path / "opt.npz", like=tx2.init(p0))
    with np.load(tmp_path / "params.npz") as f:
        p_loaded = {k: jnp.asarray(f[k]) for k in f.files}
    p_resumed, s_resumed = _run(tx2, p_loaded, s_loaded, range(3, 6))

    assert _bits(p_resumed) == _bits(p_straight)
    assert _bits(s_resumed) == _bits(s_straight)


# --- numerics at the edges ------------------------------------------------------------------


# Monotone step counters (int32 scalars) by field name; counters that reset (a
# MultiSteps mini-step, lookahead's steps since sync) are left alone.
_COUNTERS = ("count", "gradient_step", "total_notfinite")
# Entries whose ``count`` is a window that restarts (reduce_on_plateau's, as optax's):
# only the finiteness of the updates is checked at the int32 maximum.
_WINDOW_COUNT = {"reduce_on_plateau"}


def _is_counter(path, x):
    last = path[-1] if path else None
    name = getattr(last, "name", None)
    return name in _COUNTERS and jnp.result_type(x) == jnp.int32 and jnp.ndim(x) == 0


def _counters(state):
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    return [(jax.tree_util.keystr(p), x) for p, x in flat if _is_counter(p, x)]


def _saturate(state):
    """Sets every monotone step counter of the state to INT32_MAX - 1."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.full((), INT32_MAX - 1, jnp.int32) if _is_counter(p, x) else x, state
    )


@pytest.mark.parametrize("entry", ENTRIES)
def test_step_counter_saturates_and_updates_stay_finite(entry):
    tx = entry.make(0.1)
    params = _params()
    _, state = _trajectory(entry.name)[2]  # non-trivial moments first
    state = _saturate(state)
    for k in range(3):
        updates, state = tx.update(_grads(params, k), state, params)
        for u in jax.tree.leaves(updates):
            assert bool(jnp.all(jnp.isfinite(u))), f"non-finite update at the int32 maximum: {u}"
    if entry.name in _WINDOW_COUNT:
        return
    for path, c in _counters(state):
        assert INT32_MAX - 1 <= int(c) <= INT32_MAX, (path, c)  # never wraps
        if path.endswith(".count"):  # incremented at every update: saturated
            assert int(c) == INT32_MAX, (path, c)


@pytest.mark.parametrize("entry", ENTRIES)
def test_float16_zero_gradient_gives_no_nan(entry):
    # optax's Adam returns NaN here: eps = 1e-8 underflows to 0 in float16 and 0 / 0.
    tx = entry.make(0.1)
    params = _params(jnp.float16)
    state = tx.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    for grads in [zero, zero, _grads(params, 1), zero]:
        updates, state = tx.update(grads, state, params)
        for u in jax.tree.leaves(updates):
            assert u.dtype == jnp.float16
            assert bool(jnp.all(jnp.isfinite(u))), f"non-finite float16 update {u}"
        params = adaptx.apply_updates(params, updates)
    for x in jax.tree.leaves(state):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(x))), "non-finite state"


# --- mixed precision: bfloat16 params, float32 state ---------------------------------------

_DTYPE_KWARGS = ("mu_dtype", "nu_dtype", "accumulator_dtype")
_REQUIRED = {"learning_rate": 0.1, "decay": 0.9}
# Settings under which a factory's state-dtype keyword is used at all.
_EXTRA = {"sgd": {"momentum": 0.9}, "rmsprop": {"centered": True, "momentum": 0.9}}
# Factories whose later buffer (rmsprop's momentum) is fed by an earlier stage's
# output, which comes in the params' dtype.
_FED = {"rmsprop"}
# Factories that accept only matrices (this test's params include a vector): their
# state dtypes are covered by their own tests (tests/test_muon.py).
_MATRICES_ONLY = {"scale_by_muon"}


def _state_dtype_factories():
    """Every public factory with a state-dtype keyword (new ones are picked up)."""
    names = []
    for name in sorted(adaptx.__dict__):
        f = getattr(adaptx, name)
        if (
            name not in _MATRICES_ONLY
            and inspect.isfunction(f)
            and any(k in inspect.signature(f).parameters for k in _DTYPE_KWARGS)
        ):
            names.append(name)
    return names


def _build(name, dtype):
    f = getattr(adaptx, name)
    kwargs = dict(_EXTRA.get(name, {}))
    for k, p in inspect.signature(f).parameters.items():
        if k in _DTYPE_KWARGS:
            kwargs[k] = dtype
        elif p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD:
            assert k in _REQUIRED, f"add a valid value for {name}({k}=...) to _REQUIRED"
            kwargs[k] = _REQUIRED[k]
    return f(**kwargs)


def test_state_dtype_factories_are_found():
    found = set(_state_dtype_factories())
    assert {"adam", "sgd", "rmsprop", "adagrad", "adadelta", "scale_by_stddev"} <= found


@pytest.mark.parametrize("name", _state_dtype_factories())
def test_bfloat16_params_with_float32_state(name):
    tx = _build(name, jnp.float32)
    p16, p32 = _params(jnp.bfloat16), _params(jnp.float32)
    s16, s32 = tx.init(p16), tx.init(p32)
    for k in range(3):
        u16, s16 = tx.update(_grads(p16, k), s16, p16)
        u32, s32 = tx.update(_grads(p32, k), s32, p32)
        # Updates come in the params' dtype: the float32 ones, rounded. Each stage of a
        # chain returns the params' dtype, so a chain rounds once per stage (and a
        # momentum buffer fed by a bfloat16 stage sums those roundings): a few
        # bfloat16 ulps of the largest update.
        assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(u16))
        for a, b in zip(jax.tree.leaves(u16), jax.tree.leaves(u32)):
            tol = 2**-6 * float(jnp.max(jnp.abs(b)))
            np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=2**-7, atol=tol)
    # The state is float32 throughout and holds exactly what float32 params give
    # (up to the rounding of a bfloat16 stage feeding a later buffer, for _FED).
    for x in jax.tree.leaves(s16):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            assert x.dtype == jnp.float32, f"state leaf in {x.dtype}"
    if name not in _FED:
        assert _bits(s16) == _bits(s32)
    for a, b in zip(jax.tree.leaves(s16), jax.tree.leaves(s32)):
        tol = 2**-6 * float(jnp.max(jnp.abs(b))) if jnp.size(b) else 0.0
        np.testing.assert_allclose(a, b, rtol=2**-7, atol=tol)


# --- shard_map: a state initialised on the whole params, updated on blocks --------------


def test_state_initialised_outside_shard_map_checks_blocks_inside():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((4,), ("model",), devices=jax.devices()[:4])
    params = {"w": jnp.arange(32.0).reshape(8, 4) / 32, "b": jnp.ones(8)}
    specs = {"w": P("model"), "b": P("model")}
    adam = adaptx.adam(0.1)
    tx = adaptx.chain(adaptx.clip_by_global_norm(1.0, axis_name="model"), adam)
    # init on the whole params: the EmptyStates record the whole shapes.
    state_specs = (P(), (adaptx.ScaleByAdamState(P(), specs, specs), P()))

    def put(tree, spec_tree):
        return jax.tree.map(
            lambda sp, sub: jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, sp)), sub),
            spec_tree,
            tree,
            is_leaf=lambda z: isinstance(z, P),
        )

    def run(g_specs, grads):
        f = jax.shard_map(
            lambda s, g: tx.update(g, s),
            mesh=mesh,
            in_specs=(state_specs, g_specs),
            out_specs=(specs, state_specs),
            check_vma=False,
        )
        return jax.jit(f)(put(tx.init(params), state_specs), put(grads, g_specs))

    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = run(specs, grads)  # each device sees (2, 4) and (2,) blocks
    whole = adaptx.chain(adaptx.clip_by_global_norm(1.0), adaptx.adam(0.1))
    want, _ = whole.update(grads, whole.init(params), params)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # A block that cannot come from the recorded shape is still refused.
    with pytest.raises(adaptx.TreeMismatchError, match=r"\['w'\]"):
        run({"w": P(None, "model"), "b": P("model")}, {"w": jnp.ones((3, 4)), "b": jnp.ones(8)})
