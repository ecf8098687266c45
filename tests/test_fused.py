"""adaptx.fused: the per-leaf aliases' numbers from flat state, kernel and pure JAX alike.

Tolerance: every entry within ``ULP`` float32 units in the last place of
the per-leaf alias's, measured on the scale of its leaf (the leaf's largest
magnitude, and at least the learning rate for updates). The kernel rounds
each operation as written and multiplies by the bias corrections'
reciprocals; XLA contracts the jitted per-leaf chain into fused
multiply-adds and divides. Op by op (eager) the two agree to 2 ulps; jitted,
a contraction inside a moving average that nearly cancels can move an entry
near zero by many of its own ulps, but not by more than a few ulps of its
leaf's scale. Bit identity is not expected.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx
import adaptx.fused
from adaptx.fused import _kernel, _maths

ULP = 8
# The native kernel runs when the default backend is the CPU; elsewhere (a GPU
# run of this file) the pure-JAX path is what these tests check.
on_cpu = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU kernel")

# More leaves than one in-place call takes (_kernel.APPLY_CHUNK), every rank,
# a scalar and an empty leaf.
SHAPES = [(3, 4), (5,), (), (0,), (2, 2, 3), (257,)] + [(7,)] * 130 + [(16, 9)]
SMALL = [(3, 4), (5,), (), (0,), (2, 2, 3)]

CASES = {
    "adam": (lambda: adaptx.fused.adam(1e-2), lambda: adaptx.adam(1e-2)),
    "adamw": (
        lambda: adaptx.fused.adamw(1e-2, weight_decay=0.1),
        lambda: adaptx.adamw(1e-2, weight_decay=0.1),
    ),
    "adam_schedule": (
        lambda: adaptx.fused.adam(adaptx.exponential_decay(1e-2, 1, 0.5), eps_root=1e-8),
        lambda: adaptx.adam(adaptx.exponential_decay(1e-2, 1, 0.5), eps_root=1e-8),
    ),
    "sgd": (lambda: adaptx.fused.sgd(1e-2), lambda: adaptx.sgd(1e-2)),
    "momentum": (lambda: adaptx.fused.sgd(1e-2, 0.9), lambda: adaptx.sgd(1e-2, 0.9)),
    "nesterov": (
        lambda: adaptx.fused.sgd(1e-2, 0.9, nesterov=True),
        lambda: adaptx.sgd(1e-2, 0.9, nesterov=True),
    ),
}


def _params(shapes=SMALL, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"p{i:03d}": jnp.asarray(rng.standard_normal(s).astype(np.float32))
        for i, s in enumerate(shapes)
    }


def _grads(params, k):
    rng = np.random.default_rng(100 + k)
    return jax.tree.map(
        lambda x: jnp.asarray((rng.standard_normal(np.shape(x)) * (1 + k)).astype(np.float32)),
        params,
    )


def _assert_ulp(got, want, floor=0.0, what=""):
    for path, a, b in zip(
        [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(want)],
        jax.tree.leaves(got),
        jax.tree.leaves(want),
    ):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert a.shape == b.shape, (what, path)
        if b.size == 0:
            continue
        scale = np.spacing(np.maximum(np.max(np.abs(b)), np.float32(floor)))
        err = np.max(np.abs(a.astype(np.float64) - b) / scale)
        assert err <= ULP, f"{what}{path}: {err:.1f} ulp"


def _run_update(tx, params, steps, jit):
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params)
    out = []
    for k in range(steps):
        u, state = update(_grads(params, k), state, params)
        params = jax.tree.map(jnp.add, params, u)
        out.append(u)
    return params, state, out


@on_cpu
def test_kernel_is_built():
    info = adaptx.fused.kernel_info()
    assert info["kernel"], info["error"]
    assert info["isa"] in ("avx512f", "avx2", "x86-64", "generic")


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("name", CASES)
def test_update_matches_per_leaf_alias(name, jit):
    fused, per_leaf = (make() for make in CASES[name])
    params = _params(SMALL)
    p1, s1, u1 = _run_update(fused, params, 3, jit)
    p2, s2, u2 = _run_update(per_leaf, params, 3, jit)
    for k, (a, b) in enumerate(zip(u1, u2)):
        _assert_ulp(a, b, floor=1e-2, what=f"step {k} updates ")
    _assert_ulp(p1, p2, floor=1e-2, what="params ")
    _assert_ulp(adaptx.fused.to_per_leaf(s1, s2), s2, what="state ")


@pytest.mark.parametrize("name", ["adamw", "nesterov"])
def test_step_matches_update_then_apply(name):
    # Many leaves: the in-place pass runs in several kernel calls.
    fused, per_leaf = (make() for make in CASES[name])
    params = _params(SHAPES)
    chain = adaptx.chain(adaptx.clip_by_global_norm(5.0), per_leaf)

    @jax.jit
    def ours(p, s, g):
        return adaptx.fused.step(fused, g, s, p, clip_norm=5.0)

    @jax.jit
    def theirs(p, s, g):
        u, s = chain.update(g, s, p)
        return adaptx.apply_updates(p, u), s

    p1, s1, p2, s2 = params, fused.init(params), params, chain.init(params)
    for k in range(3):
        p1, s1 = ours(p1, s1, _grads(params, k))
        p2, s2 = theirs(p2, s2, _grads(params, k))
    _assert_ulp(p1, p2, floor=1e-2, what="params ")
    _assert_ulp(adaptx.fused.to_per_leaf(s1, s2[1]), s2[1], what="state ")


@pytest.mark.parametrize("name", ["adamw", "nesterov"])
def test_pure_jax_path_matches_kernel(name, monkeypatch):
    fused = CASES[name][0]()
    params = _params(SMALL)
    p1, s1, _ = _run_update(fused, params, 3, jit=True)
    monkeypatch.setattr(_kernel, "available", lambda: False)
    fused = CASES[name][0]()  # a new transform: jit's trace cache knows the first one
    jaxpr = jax.make_jaxpr(fused.update)(params, fused.init(params), params)
    assert "ffi_call" not in str(jaxpr)
    p2, s2, _ = _run_update(fused, params, 3, jit=True)
    _assert_ulp(p1, p2, floor=1e-2)
    _assert_ulp(s1, s2)


@on_cpu
def test_missing_kernel_warns_once_and_runs_pure_jax(monkeypatch):
    _kernel._warn_unavailable.cache_clear()
    monkeypatch.setattr(_kernel, "load", lambda: (None, "simulated: no library"))
    tx, ref = adaptx.fused.adam(1e-2), adaptx.adam(1e-2)
    params = _params(SMALL)
    with pytest.warns(RuntimeWarning, match="simulated: no library"):
        u, _ = tx.update(params, tx.init(params), params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        u, _ = tx.update(params, tx.init(params), params)  # once only
    _assert_ulp(u, ref.update(params, ref.init(params), params)[0])
    _kernel._warn_unavailable.cache_clear()


@pytest.mark.parametrize("name", ["adamw", "nesterov"])
def test_grad_and_jvp_through_update_match_per_leaf_alias(name):
    fused, per_leaf = (make() for make in CASES[name])
    params = _params([(3, 4), (5,)])
    grads = _grads(params, 1)

    def loss(tx):
        def f(g, p):
            state = tx.init(p)
            for _ in range(2):
                u, state = tx.update(g, state, p)
                p = jax.tree.map(jnp.add, p, u)
            return sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(p))

        return f

    for argnums in (0, 1):
        a = jax.jit(jax.grad(loss(fused), argnums))(grads, params)
        b = jax.jit(jax.grad(loss(per_leaf), argnums))(grads, params)
        np.testing.assert_allclose(
            np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)]),
            np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)]),
            rtol=1e-4,
            atol=1e-6,
        )
    # (A tangent in the gradients alone is nearly 0 for Adam, whose first
    # steps are invariant to the gradients' scale: move the params too.)
    tangent = _grads(params, 2)
    _, ta = jax.jvp(loss(fused), (grads, params), (tangent, tangent))
    _, tb = jax.jvp(loss(per_leaf), (grads, params), (tangent, tangent))
    assert abs(float(tb)) > 1e-2
    np.testing.assert_allclose(ta, tb, rtol=1e-4)


def test_grad_through_step_with_respect_to_learning_rate():
    params = _params([(3, 4), (5,)])
    grads = _grads(params, 0)

    def f(lr):
        tx = adaptx.fused.adam(lr)
        p, _ = adaptx.fused.step(tx, grads, tx.init(params), params)
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(p))

    def g(lr):
        tx = adaptx.adam(lr)
        u, _ = tx.update(grads, tx.init(params), params)
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(adaptx.apply_updates(params, u)))

    np.testing.assert_allclose(jax.grad(f)(0.1), jax.grad(g)(0.1), rtol=1e-5)


def test_vmap_over_states_matches_a_loop():
    tx = adaptx.fused.adamw(1e-2, weight_decay=0.1)
    params = _params(SMALL)
    batch = [_grads(params, k) for k in range(3)]
    states = [tx.init(params) for _ in batch]
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
    u, s = jax.jit(jax.vmap(lambda g, s: tx.update(g, s, params)))(stack(batch), stack(states))
    for i, g in enumerate(batch):
        ui, si = tx.update(g, states[i], params)
        _assert_ulp(jax.tree.map(lambda x: x[i], u), ui)
        _assert_ulp(jax.tree.map(lambda x: x[i], s), si)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_sharded_jit_and_pmap_match_one_device():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    tx = adaptx.fused.adam(1e-2)
    params = {"w": jnp.arange(32.0).reshape(8, 4) / 32, "b": jnp.ones(8)}
    grads = jax.tree.map(lambda x: jnp.cos(x) + 0.5, params)
    want = adaptx.fused.step(tx, grads, tx.init(params), params)

    mesh = jax.make_mesh((8,), ("data",))
    shard = lambda x: jax.device_put(x, NamedSharding(mesh, P("data")))
    got = jax.jit(lambda g, s, p: adaptx.fused.step(tx, g, s, p))(
        jax.tree.map(shard, grads), tx.init(params), jax.tree.map(shard, params)
    )
    _assert_ulp(got, want)

    rep = lambda t: jax.tree.map(lambda x: jnp.stack([x] * 2), t)
    got = jax.pmap(lambda g, s, p: adaptx.fused.step(tx, g, s, p), devices=jax.devices()[:2])(
        rep(grads), rep(tx.init(params)), rep(params)
    )
    _assert_ulp(jax.tree.map(lambda x: x[1], got), want)


def test_state_layout_and_converters_round_trip():
    params = _params(SMALL)
    tx = adaptx.fused.adam(1e-2)
    state = tx.init(params)
    assert isinstance(state, adaptx.fused.FusedAdamState)
    n = sum(int(np.prod(s)) for s in SMALL)
    assert state.mu.shape == state.nu.shape == (n,) and state.mu.dtype == jnp.float32
    _, state = tx.update(_grads(params, 0), state, params)
    # Layout: leaves end to end in jax.tree.leaves order, raveled.
    per_leaf = adaptx.fused.to_per_leaf(state, adaptx.adam(1e-2).init(params))
    np.testing.assert_array_equal(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(per_leaf[0].mu)]), state.mu
    )
    assert int(per_leaf[0].count) == 1
    back = adaptx.fused.from_per_leaf(per_leaf)
    jax.tree.map(np.testing.assert_array_equal, back, state)
    # optax's state has the same leaf paths: it converts both ways too.
    like = optax.adam(1e-2).init(params)
    moved = adaptx.fused.to_per_leaf(state, like)
    assert jax.tree.structure(moved) == jax.tree.structure(like)
    jax.tree.map(np.testing.assert_array_equal, adaptx.fused.from_per_leaf(moved), state)


def test_switching_mid_run_continues_the_same_trajectory():
    params = _params(SMALL)
    fused, per_leaf = adaptx.fused.sgd(0.1, 0.9), adaptx.sgd(0.1, 0.9)
    _, s, _ = _run_update(per_leaf, params, 2, jit=False)
    u1, _ = fused.update(_grads(params, 2), adaptx.fused.from_per_leaf(s), params)
    u2, _ = per_leaf.update(_grads(params, 2), s, params)
    _assert_ulp(u1, u2)


def test_init_on_empty_trees_and_under_eval_shape():
    for make in (adaptx.fused.adam, adaptx.fused.sgd):
        tx = make(0.1)
        state = tx.init({})
        assert jax.tree.leaves(tx.update({}, state, {})[0]) == []
        shape = jax.eval_shape(tx.init, _params(SMALL))
        assert jax.tree.structure(shape) == jax.tree.structure(tx.init(_params(SMALL)))


def test_errors_name_the_problem():
    params = _params(SMALL)
    tx = adaptx.fused.adam(0.1)
    with pytest.raises(adaptx.TreeMismatchError, match="entries"):
        tx.update({"a": jnp.ones(3)}, tx.init(params))
    with pytest.raises(ValueError, match="mu_dtype"):
        adaptx.fused.adam(mu_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="mask"):
        adaptx.fused.adamw(mask={"w": True})
    with pytest.raises(ValueError, match="b1 must be"):
        adaptx.fused.adam(b1=1.5)
    with pytest.raises(TypeError, match=r"adaptx\.fused"):
        adaptx.fused.step(adaptx.adam(0.1), params, adaptx.adam(0.1).init(params), params)
    with pytest.raises(TypeError, match="float32"):
        adaptx.fused.adam().init({"i": jnp.ones(2, jnp.int32)})
    with pytest.raises(ValueError, match="needs the parameters"):
        adaptx.fused.adamw().update(params, adaptx.fused.adamw().init(params))


def test_kernel_and_pure_scalars_have_one_layout():
    # The scalar vector is laid out as kernels.c's structs.
    src = Path(_kernel._CSRC, "kernels.c").read_text()
    adam = src[src.index("typedef struct {") : src.index("} AdamScalars;")]
    fields = [
        w.strip(" ,;")
        for line in adam.splitlines()[1:]
        for w in line.split("/*")[0].replace("float", "").split(",")
        if w.strip(" ,;")
    ]
    assert tuple(fields) == _maths.ADAM_SCALARS
