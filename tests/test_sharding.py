"""Every registry entry under sharded ``jit`` over a 2D mesh of the 8 fake CPU devices.

The optimizer state must be sharded like the parameters it belongs to (ZeRO
style), scalar state replicated, nothing pinned to one device; ``init`` must
work from ``jax.ShapeDtypeStruct``s; the sharded run must give the
single-device numbers; and the jitted step must not move data between host
and device.
"""

from __future__ import annotations

import functools

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
AXES = ("data", "model")
# Parameter name -> (shape, partition spec). The shapes are all different, so a
# state leaf is matched to its parameter by shape; sizes divide the 4 x 2 mesh.
LAYOUT = {
    "w": ((8, 4), P("data", "model")),
    "v": ((4, 8), P("model", "data")),
    "b": ((12,), P("data")),
    "r": ((3,), P()),
    "s": ((), P()),
}
STEPS = 3
LR = 0.01


def _mesh(axis_type: str) -> jax.sharding.Mesh:
    kind = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}[axis_type]
    return jax.make_mesh((4, 2), AXES, axis_types=(kind, kind))


def _values(seed: float) -> dict[str, np.ndarray]:
    out = {}
    for i, (name, (shape, _)) in enumerate(LAYOUT.items()):
        x = np.sin(np.arange(np.prod(shape), dtype=np.float64) * 0.7 + i + seed)
        out[name] = (x * (1.0 + seed / 4)).reshape(shape).astype(np.float32)
    out["w"][0, 0] = 0.0  # a coordinate whose value is exactly zero
    return out


PARAMS = _values(0.0)
GRADS = [_values(k) for k in range(1, STEPS + 1)]


def _optimizer(entry: Entry) -> adaptx.GradientTransformation:
    tx = entry.make(LR)
    return adaptx.chain(tx, adaptx.scale(-LR)) if entry.kind == "direction" else tx


def _step(tx, params, state, grads):
    updates, state = tx.update(grads, state, params)
    return adaptx.apply_updates(params, updates), state, updates


@functools.cache
def _one_device(name: str):
    """Final params, state and updates of ``STEPS`` jitted steps on one device."""
    tx = _optimizer(by_name(name))

    @jax.jit
    def run(params, grads):
        state = tx.init(params)
        updates = None
        for g in grads:
            params, state, updates = _step(tx, params, state, g)
        return params, state, updates

    return jax.device_get(run(PARAMS, GRADS))


def _spec(spec: P, ndim: int) -> tuple:
    """``spec`` as a tuple with one entry per dimension."""
    return tuple(spec) + (None,) * (ndim - len(spec))


def _check_placement(tree, mesh, what: str) -> None:
    """Leaves shaped like a parameter are sharded like it; scalars are replicated."""
    by_shape = {shape: spec for shape, spec in LAYOUT.values()}
    devices = set(mesh.devices.flat)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where = what + jax.tree_util.keystr(path)
        assert isinstance(leaf, jax.Array), f"{where} is a {type(leaf).__name__}, not an array"
        assert leaf.sharding.device_set == devices, f"{where} is on {leaf.sharding}"
        if leaf.ndim == 0:
            assert leaf.sharding.is_fully_replicated, f"{where} is {leaf.sharding}"
        elif leaf.shape in by_shape:
            want = NamedSharding(mesh, by_shape[leaf.shape])
            assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (
                f"{where} {leaf.shape} is sharded {_spec(leaf.sharding.spec, leaf.ndim)}, "
                f"its parameter {_spec(want.spec, leaf.ndim)}"
            )


def _assert_close(got, want, what: str) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    for path, a, b in zip(
        (p for p, _ in jax.tree_util.tree_leaves_with_path(want)),
        jax.tree.leaves(got),
        jax.tree.leaves(want),
    ):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, what + jax.tree_util.keystr(path)
        if np.issubdtype(a.dtype, np.inexact):
            # float32 rounding: sums may be taken in another order across shards.
            np.testing.assert_allclose(
                a, b, rtol=2e-6, atol=1e-7, err_msg=what + jax.tree_util.keystr(path)
            )
        else:
            np.testing.assert_array_equal(a, b, err_msg=what + jax.tree_util.keystr(path))


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_sharded_jit_state_follows_params_and_matches_one_device(entry, axis_type):
    tx = _optimizer(entry)
    mesh = _mesh(axis_type)
    shardings = {name: NamedSharding(mesh, spec) for name, (_, spec) in LAYOUT.items()}
    with jax.set_mesh(mesh):
        params = jax.device_put(PARAMS, shardings)
        grads = [jax.device_put(g, shardings) for g in GRADS]
        state = jax.jit(tx.init)(params)
        _check_placement(state, mesh, "init state")
        step = jax.jit(functools.partial(_step, tx))
        # Everything is on the devices already: the step must not transfer anything.
        with jax.transfer_guard("disallow"):
            for g in grads:
                params, state, updates = step(params, state, g)
        _check_placement(state, mesh, "state")
        _check_placement(params, mesh, "params")
        _check_placement(updates, mesh, "updates")
    want = _one_device(entry.name)
    _assert_close((params, state, updates), want, "sharded vs one device: ")


@pytest.mark.parametrize("entry", ENTRIES)
def test_init_from_shape_dtype_structs(entry):
    tx = _optimizer(entry)
    mesh = _mesh("explicit")
    structs = {
        name: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(mesh, spec))
        for name, (shape, spec) in LAYOUT.items()
    }
    with jax.set_mesh(mesh):
        abstract = jax.eval_shape(tx.init, structs)
    _, state, _ = _one_device(entry.name)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    by_shape = {shape: spec for shape, spec in LAYOUT.values()}
    for path, a, b in zip(
        (p for p, _ in jax.tree_util.tree_leaves_with_path(state)),
        jax.tree.leaves(abstract),
        jax.tree.leaves(state),
    ):
        where = jax.tree_util.keystr(path)
        assert (a.shape, a.dtype) == (np.shape(b), np.asarray(b).dtype), where
        if a.ndim and a.shape in by_shape:
            want = _spec(by_shape[a.shape], a.ndim)
            assert _spec(a.sharding.spec, a.ndim) == want, f"{where}: {a.sharding}"
        elif a.sharding is not None:
            assert all(s is None for s in a.sharding.spec), f"{where}: {a.sharding}"


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
    jaxpr = jax.make_jaxpr(functools.partial(_step, tx))(PARAMS, state, GRADS[0])
    found = _callbacks(jaxpr.jaxpr)
    assert not found, f"the update step calls back to the host: {found}"


def test_global_norm_of_sharded_tree_is_global():
    tree = {k: v for k, v in GRADS[0].items()}
    want = np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in tree.values()))
    for axis_type in ("auto", "explicit"):
        mesh = _mesh(axis_type)
        shardings = {name: NamedSharding(mesh, spec) for name, (_, spec) in LAYOUT.items()}
        with jax.set_mesh(mesh):
            got = jax.jit(adaptx.global_norm)(jax.device_put(tree, shardings))
            assert got.sharding.is_fully_replicated
        np.testing.assert_allclose(got, want, rtol=1e-6)


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
