"""Every registry entry on the 8 fake CPU devices: sharded ``jit``, ``pmap``, ``shard_map``.

One small regression model is trained for ``STEPS`` steps in four ways: on
one device (the reference), under sharded ``jit`` over a 4 x 2 mesh (the
parameters split over both axes, the batch over ``"data"``), and data
parallel with ``pmap`` and with ``shard_map`` (the batch split over 8
devices, gradients averaged). Each run must give the reference's parameters
and state up to float32 rounding. Under sharded ``jit`` the optimizer state
must also be sharded like the parameters (ZeRO style), scalar state
replicated, ``init`` must work from ``jax.ShapeDtypeStruct``s, and the
jitted step must not move data between host and devices.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import adaptx

from registry import REGISTRY, Entry, by_name

ENTRIES = [pytest.param(e, id=e.name) for e in REGISTRY]
ROOT = Path(__file__).resolve().parents[1]
AXES = ("data", "model")
N_DEV = 8
# Parameter name -> (shape, partition spec on the 4 x 2 mesh). The shapes all
# differ, so a state leaf is matched to its parameter by shape.
LAYOUT = {
    "w1": ((4, 8), P("model", "data")),
    "b1": ((8,), P("data")),
    "w2": ((8, 4), P("data", "model")),
    "b2": ((4,), P()),
    "scale": ((), P()),
}
BATCH = 64
STEPS = 20
LR = 0.01


def _problem():
    rng = np.random.default_rng(0)
    params = {
        name: (rng.normal(size=shape) / 2).astype(np.float32) for name, (shape, _) in LAYOUT.items()
    }
    params["scale"] = np.float32(1.0)
    x = rng.normal(size=(BATCH, 4)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=(4, 4))).astype(np.float32)
    return params, x, y


PARAMS, X, Y = _problem()


def _loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    out = (h @ params["w2"] + params["b2"][None, :]) * params["scale"]
    return jnp.mean(jnp.square(out - y))


def _optimizer(entry: Entry) -> adaptx.GradientTransformation:
    tx = entry.make(LR)
    return adaptx.chain(tx, adaptx.scale(-LR)) if entry.kind == "direction" else tx


def _constrain(x: jax.Array, spec: P) -> jax.Array:
    """``x`` resharded to ``spec`` on the current mesh (explicit or automatic axes)."""
    if jax.sharding.get_abstract_mesh().are_all_axes_explicit:
        return jax.sharding.reshard(x, spec)
    return jax.lax.with_sharding_constraint(x, spec)


def _step(tx, params, state, x, y, axis_name=None, average="grads", sharded=False):
    """One training step; with ``axis_name``, averaged over that axis.

    ``average="grads"`` is ``pmap``'s idiom: each replica differentiates its
    own loss and the gradients are ``pmean``-ed. Inside ``shard_map`` the
    gradient of a parameter replicated over the axis comes out already summed
    over it (the transpose of its implicit broadcast), so there the idiom is
    ``average="loss"``: differentiate the ``pmean`` of the loss.

    ``sharded=True`` is the FSDP idiom under sharded ``jit``: the model
    gathers the whole weights for its forward pass, and the gradients are
    given to the optimizer sharded like the parameters.
    """

    def loss(p):
        if sharded:
            p = jax.tree.map(lambda a: _constrain(a, P()), p)
        value = _loss(p, x, y)
        return jax.lax.pmean(value, axis_name) if axis_name and average == "loss" else value

    grads = jax.grad(loss)(params)
    if axis_name and average == "grads":
        grads = jax.lax.pmean(grads, axis_name)
    if sharded:
        grads = {k: _constrain(g, LAYOUT[k][1]) for k, g in grads.items()}
    updates, state = tx.update(grads, state, params)
    return adaptx.apply_updates(params, updates), state, updates


def _train(tx, axis_name=None, average="grads"):
    """``STEPS`` steps from ``tx.init``, in one ``lax.scan``."""

    def train(params, x, y):
        def body(carry, _):
            params, state, _ = _step(tx, *carry, x, y, axis_name, average)
            return (params, state), None

        (params, state), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=STEPS)
        return params, state

    return train


@functools.cache
def _one_device(name: str):
    """The reference: final params and state of ``STEPS`` steps on one device.

    Run op by op, without ``jit``: an independent execution path, and cheap,
    since every entry uses the same shapes and the compiled primitives are shared.
    """
    tx = _optimizer(by_name(name))
    params, x, y = jax.tree.map(jnp.asarray, (PARAMS, X, Y))
    state = tx.init(params)
    for _ in range(STEPS):
        params, state, _ = _step(tx, params, state, x, y)
    return jax.device_get((params, state))


def _assert_close(got, want, rtol: float = 2e-5) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(want)]
    for path, a, b in zip(paths, jax.tree.leaves(got), jax.tree.leaves(want)):
        where = jax.tree_util.keystr(path)
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        if np.issubdtype(a.dtype, np.inexact):
            # float32 rounding: sums over shards or replicas are taken in another order.
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol / 10, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


# --- sharded jit --------------------------------------------------------------


def _mesh(axis_type: str) -> jax.sharding.Mesh:
    kind = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}[axis_type]
    return jax.make_mesh((4, 2), AXES, axis_types=(kind, kind))


def _spec(spec: P, ndim: int) -> tuple:
    """``spec`` as a tuple with one entry per dimension."""
    return tuple(spec) + (None,) * (ndim - len(spec))


def _is_factored_statistic(path) -> bool:
    """A factored statistic (adafactor's ``v_row``, ``v_col``) is a parameter with one axis
    averaged out, sharded like the remaining axes: its shape may be another parameter's."""
    return any(getattr(k, "name", None) in ("v_row", "v_col") for k in path)


def _check_placement(tree, mesh, what: str) -> None:
    """Leaves shaped like a parameter are sharded like it; scalars are replicated."""
    by_shape = dict(LAYOUT.values())
    devices = set(mesh.devices.flat)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where = what + jax.tree_util.keystr(path)
        assert isinstance(leaf, jax.Array), f"{where} is a {type(leaf).__name__}, not an array"
        assert leaf.sharding.device_set == devices, f"{where} is on {leaf.sharding}"
        factored = _is_factored_statistic(path)
        if leaf.ndim == 0:
            assert leaf.sharding.is_fully_replicated, f"{where} is {leaf.sharding}"
        elif leaf.shape in by_shape and not factored:
            want = NamedSharding(mesh, by_shape[leaf.shape])
            assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (
                f"{where} {leaf.shape} is sharded {_spec(leaf.sharding.spec, leaf.ndim)}, "
                f"its parameter {_spec(want.spec, leaf.ndim)}"
            )


@pytest.mark.parametrize("entry", ENTRIES)
def test_sharded_jit_state_follows_params_and_matches_one_device(entry):
    # Automatic sharding (``AxisType.Auto``, the default of ``Mesh(...)``):
    # the compiler propagates shardings; compiled and run.
    tx = _optimizer(entry)
    mesh = _mesh("auto")
    shardings = {name: NamedSharding(mesh, spec) for name, (_, spec) in LAYOUT.items()}
    with jax.set_mesh(mesh):
        params = jax.device_put(PARAMS, shardings)
        x, y = jax.device_put((X, Y), NamedSharding(mesh, P("data")))
        state = jax.jit(tx.init)(params)
        _check_placement(state, mesh, "init state")
        step = jax.jit(functools.partial(_step, tx, sharded=True))
        # Everything is on the devices already: the step must not transfer anything.
        with jax.transfer_guard("disallow"):
            for _ in range(STEPS):
                params, state, updates = step(params, state, x, y)
        _check_placement(state, mesh, "state")
        _check_placement(params, mesh, "params")
        _check_placement(updates, mesh, "updates")
    _assert_close(jax.device_get((params, state)), _one_device(entry.name), entry.sharding_rtol)


def _check_specs(tree, what: str) -> None:
    """``_check_placement`` for abstract values under explicit sharding."""
    by_shape = dict(LAYOUT.values())
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where = what + jax.tree_util.keystr(path)
        got = _spec(leaf.sharding.spec, leaf.ndim) if leaf.sharding is not None else None
        if _is_factored_statistic(path):
            continue
        if leaf.ndim and leaf.shape in by_shape:
            assert got == _spec(by_shape[leaf.shape], leaf.ndim), f"{where}: {leaf.sharding}"
        else:
            assert got is None or all(s is None for s in got), f"{where}: {leaf.sharding}"


@pytest.mark.parametrize("entry", ENTRIES)
def test_explicit_sharding_init_from_shape_dtype_structs_and_step(entry):
    # Explicit sharding (``AxisType.Explicit``, the default of
    # ``jax.make_mesh``): shardings are part of the types, so tracing alone
    # checks them, and an operation whose result sharding would be ambiguous
    # (a ``cond`` whose branches disagree, say) fails here.
    tx = _optimizer(entry)
    mesh = _mesh("explicit")
    structs = {
        name: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(mesh, spec))
        for name, (shape, spec) in LAYOUT.items()
    }
    batch = NamedSharding(mesh, P("data"))
    x, y = (jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=batch) for a in (X, Y))
    with jax.set_mesh(mesh):
        state = jax.eval_shape(tx.init, structs)
        _check_specs(state, "init state")
        new_params, new_state, updates = jax.eval_shape(
            functools.partial(_step, tx, sharded=True), structs, state, x, y
        )
    _check_specs(new_state, "state")
    _check_specs(new_params, "params")
    _check_specs(updates, "updates")
    plain = jax.eval_shape(tx.init, PARAMS)
    assert jax.tree.structure(state) == jax.tree.structure(plain)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(plain)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)


def _callbacks(jaxpr) -> list[str]:
    """Primitives in ``jaxpr`` (and its sub-jaxprs) that call back to the host."""
    found = []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if "callback" in name or name in ("debug_print", "infeed", "outfeed"):
            found.append(name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _callbacks(sub)
    return found


@pytest.mark.parametrize("entry", ENTRIES)
def test_update_has_no_host_callback(entry):
    # On CPU the transfer guard cannot see device-to-host copies (the devices
    # are host memory); a host callback in the traced step is what would
    # synchronise on an accelerator, so look for one.
    tx = _optimizer(entry)
    state = jax.eval_shape(tx.init, PARAMS)
    jaxpr = jax.make_jaxpr(functools.partial(_step, tx))(PARAMS, state, X, Y)
    found = _callbacks(jaxpr.jaxpr)
    assert not found, f"the update step calls back to the host: {found}"


def test_zeros_like_without_mesh_context_follows_params():
    # Sharded params and plain ``jit``, no ``jax.set_mesh``: the compiler picks
    # output shardings, and state zeros must still come out sharded like params.
    mesh = _mesh("auto")
    shardings = {name: NamedSharding(mesh, spec) for name, (_, spec) in LAYOUT.items()}
    params = jax.device_put(PARAMS, shardings)
    zeros = jax.jit(lambda p: adaptx.tree_zeros_like(p, jnp.bfloat16))(params)
    for name, z in zeros.items():
        assert z.dtype == jnp.bfloat16
        if z.ndim:  # a scalar is left on one device, uncommitted, for jit to move freely
            assert z.sharding.is_equivalent_to(shardings[name], z.ndim), name
        np.testing.assert_array_equal(np.asarray(z, np.float32), 0.0)


def test_zeros_like_of_a_traced_array_has_no_tangent():
    # The zeros do not depend on x's values: differentiating through them must not
    # produce sqrt'(0) * 0 = NaN (an explicit zero tangent would, under jax.jvp).
    def f(x):
        return jnp.sum(jnp.sqrt(adaptx.tree_zeros_like(x)) * x)

    x = jnp.ones((4, 2))
    _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
    assert tangent == 0.0
    np.testing.assert_array_equal(jax.grad(f)(x), 0.0)


# --- data parallelism: pmap and shard_map ----------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_pmap_replicas_agree_and_match_one_device(entry):
    xs, ys = X.reshape(N_DEV, -1, 4), Y.reshape(N_DEV, -1, 4)
    train = jax.pmap(_train(_optimizer(entry), "batch"), axis_name="batch", in_axes=(None, 0, 0))
    params, state = jax.device_get(train(PARAMS, xs, ys))
    for leaf in jax.tree.leaves((params, state)):
        for replica in leaf[1:]:
            np.testing.assert_array_equal(replica, leaf[0], err_msg="replicas differ")
    _assert_close(
        jax.tree.map(lambda leaf: leaf[0], (params, state)),
        _one_device(entry.name),
        entry.sharding_rtol,
    )


@pytest.mark.parametrize("entry", ENTRIES)
def test_shard_map_data_parallel_matches_one_device(entry):
    mesh = jax.make_mesh((N_DEV,), ("batch",))
    # out_specs P(): shard_map checks that params and state are the same on
    # every device (no value that varies over the axis leaks into them).
    train = jax.jit(
        jax.shard_map(
            _train(_optimizer(entry), "batch", average="loss"),
            mesh=mesh,
            in_specs=(P(), P("batch"), P("batch")),
            out_specs=P(),
        )
    )
    with jax.set_mesh(mesh):
        got = train(PARAMS, *jax.device_put((X, Y), NamedSharding(mesh, P("batch"))))
    _assert_close(jax.device_get(got), _one_device(entry.name), entry.sharding_rtol)


# --- reductions over the whole tree -------------------------------------------


def _tree_and_norm():
    rng = np.random.default_rng(1)
    tree = {
        "a": rng.normal(size=(8, 4)).astype(np.float32),
        "b": rng.normal(size=(16,)).astype(np.float32),
    }
    norm = np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in tree.values()))
    return tree, norm


def test_global_norm_of_sharded_tree_is_global():
    tree, want = _tree_and_norm()
    specs = {"a": P("data", "model"), "b": P("model")}
    for axis_type in ("auto", "explicit"):
        mesh = _mesh(axis_type)
        with jax.set_mesh(mesh):
            sharded = jax.device_put(tree, {k: NamedSharding(mesh, s) for k, s in specs.items()})
            got = jax.jit(adaptx.global_norm)(sharded)
            assert got.sharding.is_fully_replicated
        np.testing.assert_allclose(got, want, rtol=1e-6)


MAX_NORM = 1.0


def _norm(tree, axis_name=None):
    return adaptx.global_norm(tree, axis_name=axis_name)[None]  # one value per device


def _clip(tree, axis_name=None):
    tx = adaptx.clip_by_global_norm(MAX_NORM, axis_name=axis_name)
    return tx.update(tree, tx.init(tree))[0]


def _want(reduce, tree, norm):
    """NumPy float64: what ``reduce`` gives for the whole tree (per device, for the norm)."""
    if reduce is _norm:
        return np.full(N_DEV, norm)
    return {k: v * (MAX_NORM / max(norm, MAX_NORM)) for k, v in tree.items()}


REDUCTIONS = [pytest.param(_norm, id="global_norm"), pytest.param(_clip, id="clip_by_global_norm")]


def _assert_tree_close(got, want, what: str) -> None:
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-6, err_msg=f"{what}[{k}]")


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_tree_reduction_with_axis_name_under_shard_map(reduce):
    # Each device holds a different piece of every leaf (split over both mesh
    # axes): with the axis names it must reduce over the whole tree.
    tree, norm = _tree_and_norm()
    mesh = _mesh("auto")
    specs = {"a": P("data", "model"), "b": P(AXES)}
    out_specs = P(AXES) if reduce is _norm else specs
    want = _want(reduce, tree, norm)
    with jax.set_mesh(mesh):
        sharded = jax.device_put(tree, {k: NamedSharding(mesh, s) for k, s in specs.items()})
        for axis_name in (AXES, None):
            f = jax.shard_map(
                functools.partial(reduce, axis_name=axis_name),
                mesh=mesh,
                in_specs=(specs,),
                out_specs=out_specs,
                check_vma=False,
            )
            got = jax.device_get(jax.jit(f)(sharded))
            if axis_name is None:  # the test can tell: each device sees its piece only
                assert not np.allclose(jax.tree.leaves(got)[0], jax.tree.leaves(want)[0])
            elif reduce is _norm:
                np.testing.assert_allclose(got, want, rtol=1e-6)
            else:
                _assert_tree_close(got, want, "clipped")


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_tree_reduction_with_axis_name_under_pmap(reduce):
    tree, norm = _tree_and_norm()
    pieces = {k: v.reshape(N_DEV, -1) for k, v in tree.items()}
    got = jax.pmap(functools.partial(reduce, axis_name="i"), axis_name="i")(pieces)
    want = _want(reduce, tree, norm)
    if reduce is _norm:
        np.testing.assert_allclose(np.asarray(got).ravel(), want, rtol=1e-6)
    else:
        _assert_tree_close(
            {k: np.asarray(v).reshape(tree[k].shape) for k, v in got.items()}, want, "clipped"
        )


# --- the example ----------------------------------------------------------------


def test_example_trains_data_parallel():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "data_parallel.py")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "optimizer state sharded like the params" in out.stdout, out.stdout
    final, first = (
        float(v) for v in re.search(r"final loss (\S+) \(first (\S+)\)", out.stdout).groups()
    )
    assert final < first / 20, out.stdout
