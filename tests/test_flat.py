"""The fused path (``adaptx._fuse``, native kernels) gives the per-leaf chain's numbers.

How close, and why:

- SGD with momentum (heavy ball and Nesterov): bit-identical, jitted and not.
- Adam and AdamW: the moments are bit-identical; the updates and the new
  params agree to within ``ADAM_ULP`` units in the last place. They cannot be
  bit-identical in general because the per-leaf path itself is not: XLA
  rewrites ``(m / c1) / (sqrt(v / c2) + eps)`` differently depending on the
  rest of the graph (``test_per_leaf_adam_depends_on_the_tree`` shows the
  same leaf getting different bits in a one-leaf and a two-leaf tree).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx
from adaptx import _fuse, _native

ADAM_ULP = 8  # measured: at most 5, mostly 0 to 2

# More leaves than one in-place call takes (_native.APPLY_CHUNK), every rank,
# a scalar and an empty leaf.
SHAPES = [(3, 4), (5,), (), (0,), (2, 2, 3), (257,)] + [(7,)] * 130 + [(16, 9)]
SMALL = [(3, 4), (5,), (), (0,), (2, 2, 3)]


def _params(shapes=SHAPES, seed=0):
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


def _run(tx, params, steps, jit, apply=True):
    """``steps`` steps; returns the params, the state and every step's updates."""

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return (adaptx.apply_updates(p, u) if apply else jax.tree.map(jnp.add, p, u)), s, u

    step = jax.jit(step) if jit else step
    state = tx.init(params)
    updates = []
    for k in range(steps):
        params, state, u = step(params, state, _grads(params, k))
        updates.append(u)
    return params, state, updates


def _ulp(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    scale = np.spacing(np.maximum(np.abs(a), np.abs(b)))
    return np.max(np.abs(a.astype(np.float64) - b) / scale, initial=0.0)


def _check(fused, unfused, exact, steps=0, what="", updates=()):
    """Bit-identical (``exact is True``) or close.

    Close: within ``ADAM_ULP`` ulp of the larger of the two values and of a
    floor; after ``steps`` steps, ``steps`` times as many. The floor is the
    size of what was summed: for params, the largest update of the run; for
    AdamW's updates, the weight-decay term ``lr * wd * |p|`` (up to 3e-3).
    ``updates``: the updates of the run, for the params' floor.
    """
    leaves_a, leaves_b = jax.tree.leaves(fused), jax.tree.leaves(unfused)
    floor = 3e-3 if exact == "decay" else 0.0
    floor = max([floor] + [float(np.max(np.abs(u), initial=0)) for u in jax.tree.leaves(updates)])
    for a, b in zip(leaves_a, leaves_b):
        a, b = np.asarray(a), np.asarray(b)
        if exact is True:
            np.testing.assert_array_equal(a, b, err_msg=what)
            continue
        scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), np.float32(floor))
        bound = max(steps, 1) * ADAM_ULP * np.spacing(scale.astype(np.float32))
        bad = np.abs(a.astype(np.float64) - b) > bound
        assert not bad.any(), f"{what}: {a[bad]} vs {b[bad]}, {_ulp(a[bad], b[bad])} ulp"


OPTIMIZERS = {
    "adam": (lambda: adaptx.adam(1e-2), False),
    "adam[schedule]": (lambda: adaptx.adam(adaptx.exponential_decay(1e-2, 2, 0.5)), False),
    "adam[array lr]": (lambda: adaptx.adam(jnp.asarray(3e-3)), False),
    "adam[eps_root]": (lambda: adaptx.adam(1e-2, eps_root=1e-6), False),
    "adamw": (lambda: adaptx.adamw(1e-2, weight_decay=0.1), "decay"),
    "sgd[momentum]": (lambda: adaptx.sgd(0.1, momentum=0.9), True),
    "sgd[nesterov]": (lambda: adaptx.sgd(0.1, momentum=0.9, nesterov=True), True),
    "sgd[momentum, schedule]": (
        lambda: adaptx.sgd(adaptx.linear_schedule(0.1, 0.01, 3), momentum=0.5),
        True,
    ),
}


def test_native_kernels_are_built():
    assert _native.available(), f"native kernels unavailable: {_native.load_error()}"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_matches_per_leaf_jitted(name):
    make, exact = OPTIMIZERS[name]
    params = _params()
    fused = _run(make(), params, 4, jit=True)
    assert isinstance(fused[1], adaptx.FusedState)
    per_leaf = _run(adaptx.unfused(make()), params, 4, jit=True)
    _check(fused[0], per_leaf[0], exact, steps=4, what="params", updates=per_leaf[2])
    _check(fused[2], per_leaf[2], exact, what="updates")
    # The moments are bit-identical for every optimizer.
    np.testing.assert_equal(
        jax.tree.map(np.asarray, adaptx.fused_state_to_tree(fused[1])),
        jax.tree.map(np.asarray, per_leaf[1]),
    )


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd[momentum]", "sgd[nesterov]"])
@pytest.mark.parametrize("apply", [True, False], ids=["apply_updates", "tree_add"])
def test_fused_matches_per_leaf_eager(name, apply):
    make, exact = OPTIMIZERS[name]
    params = _params(SMALL)
    fused = _run(make(), params, 3, jit=False, apply=apply)
    per_leaf = _run(adaptx.unfused(make()), params, 3, jit=False, apply=apply)
    # Op by op the kernels round as JAX does: momentum is bit-identical; Adam's
    # 0-d leaves are not (a scalar divided by a scalar is a true division, a
    # broadcast one a multiplication by the reciprocal).
    _check(fused[0], per_leaf[0], exact, steps=3, what="params", updates=per_leaf[2])
    _check(fused[2], per_leaf[2], exact, what="updates")


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd[nesterov]"])
def test_updates_used_directly_match(name):
    # Without adaptx.apply_updates the update kernel's own outputs are used,
    # and XLA no longer fuses the sum into the per-leaf update: both round
    # the updates before adding them, yet in different places.
    make, exact = OPTIMIZERS[name]
    exact = exact if exact is not True else False
    params = _params()
    fused = _run(make(), params, 3, jit=True, apply=False)
    per_leaf = _run(adaptx.unfused(make()), params, 3, jit=True, apply=False)
    _check(fused[2], per_leaf[2], exact, what="updates")
    _check(fused[0], per_leaf[0], exact, steps=3, what="params", updates=per_leaf[2])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd[nesterov]"])
def test_pure_jax_flat_path_matches(name, monkeypatch):
    # A FusedState updated where the kernels are unavailable (restored on a
    # GPU machine, say) takes the same chain in pure JAX over the flat vector.
    make, exact = OPTIMIZERS[name]
    params = _params(SMALL)
    tx = make()
    state = tx.init(params)
    assert isinstance(state, adaptx.FusedState)
    monkeypatch.setattr(_fuse, "_native_now", lambda leaves: False)

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return adaptx.apply_updates(p, u), s

    ref = adaptx.unfused(make())
    p1, s1, p2, s2 = params, state, params, ref.init(params)
    ref_updates = []
    for k in range(3):
        p1, s1 = step(p1, s1, _grads(params, k))
        u2, s2 = ref.update(_grads(params, k), s2, p2)
        p2 = adaptx.apply_updates(p2, u2)
        ref_updates.append(u2)
    # One flat leaf instead of many: XLA's rewrites of the chain may differ.
    exact = exact if exact is not True else False
    _check(p1, p2, exact, steps=3, what="params", updates=ref_updates)
    _check(adaptx.fused_state_to_tree(s1), s2, exact, steps=3, what="state")


def test_per_leaf_adam_depends_on_the_tree():
    # Why Adam is compared to within a few ulp: the per-leaf path gives the
    # same leaf different bits depending on the other leaves of the tree.
    tx = adaptx.unfused(adaptx.adam(1e-2))
    x = _params([(4096,)])["p000"]
    g = _grads({"x": x}, 0)["x"]

    def leaf_update(tree, grads):
        return jax.jit(tx.update)(grads, tx.init(tree), tree)[0]["x"]

    alone = leaf_update({"x": x}, {"x": g})
    with_neighbour = leaf_update({"x": x, "y": x[:5]}, {"x": g, "y": g[:5]})
    assert not np.array_equal(alone, with_neighbour)
    assert _ulp(alone, with_neighbour) <= ADAM_ULP


# --- when the fused path is (not) taken ------------------------------------------------------


def test_fused_state_is_flat():
    params = _params(SMALL)
    state = adaptx.adam(1e-3).init(params)
    assert isinstance(state, adaptx.FusedState)
    adam_state = state[0]
    total = sum(np.size(x) for x in params.values())
    assert adam_state.mu.flat.shape == adam_state.nu.flat.shape == (total,)
    assert isinstance(adam_state.mu, adaptx.FlatBuffer)
    assert adam_state.count.dtype == jnp.int32


@pytest.mark.parametrize(
    "params",
    [
        {"w": jnp.ones(3, jnp.bfloat16)},
        {"w": jnp.ones(3), "b": jnp.ones(2, jnp.bfloat16)},
        {"z": jnp.ones(3, jnp.complex64)},
        {},
    ],
    ids=["bf16", "mixed", "complex", "empty"],
)
def test_not_fused_for_other_dtypes(params):
    for tx in (adaptx.adam(1e-3), adaptx.sgd(0.1, momentum=0.9)):
        state = tx.init(params)
        assert not isinstance(state, adaptx.FusedState)
        assert jax.tree.structure(state) == jax.tree.structure(adaptx.unfused(tx).init(params))


@pytest.mark.parametrize(
    "make",
    [
        lambda: adaptx.adam(1e-3, mu_dtype=jnp.bfloat16),
        lambda: adaptx.adam(1e-3, nesterov=True),
        lambda: adaptx.adamw(1e-3, mask={"w": True, "b": False}),
        lambda: adaptx.sgd(0.1),
        lambda: adaptx.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.float32),
    ],
    ids=["mu_dtype", "nadam", "mask", "no momentum", "accumulator_dtype"],
)
def test_settings_the_kernels_do_not_cover_stay_per_leaf(make):
    tx = make()
    assert adaptx.unfused(tx) is tx
    assert not isinstance(tx.init({"w": jnp.ones(3), "b": jnp.ones(2)}), adaptx.FusedState)


def test_sharded_params_fall_back_to_per_leaf():
    mesh = jax.make_mesh((8,), ("d",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    params = {"w": jax.device_put(jnp.arange(16.0), sharding)}
    tx = adaptx.adam(1e-2)
    state = tx.init(params)
    assert not isinstance(state, adaptx.FusedState)
    grads = {"w": jax.device_put(jnp.ones(16), sharding)}
    u, state = jax.jit(tx.update)(grads, state, params)
    np.testing.assert_allclose(u["w"], -1e-2 * np.ones(16), rtol=1e-5)


def test_disabled_native_kernels_fall_back_to_per_leaf(monkeypatch):
    monkeypatch.setattr(_native, "available", lambda: False)
    assert not isinstance(adaptx.adam(1e-3).init({"w": jnp.ones(3)}), adaptx.FusedState)


def test_unfused_of_anything_else_is_itself():
    tx = adaptx.scale(0.5)
    assert adaptx.unfused(tx) is tx


# --- the state ---------------------------------------------------------------------------------


def test_state_round_trip_and_checkpoint_portability():
    params = _params(SMALL)
    tx = adaptx.adamw(1e-2, weight_decay=0.1)
    ref = adaptx.unfused(tx)
    # Two per-leaf steps, then convert the state and continue fused.
    p, s = params, ref.init(params)
    for k in range(2):
        u, s = ref.update(_grads(params, k), s, p)
        p = adaptx.apply_updates(p, u)
    fused_state = adaptx.tree_to_fused_state(s, params)
    assert isinstance(fused_state, adaptx.FusedState)
    back = adaptx.fused_state_to_tree(fused_state)
    np.testing.assert_equal(jax.tree.map(np.asarray, back), jax.tree.map(np.asarray, s))
    p1, p2, s1, s2 = p, p, fused_state, s
    ref_updates = []
    for k in range(2, 4):
        u1, s1 = jax.jit(tx.update)(_grads(params, k), s1, p1)
        p1 = adaptx.apply_updates(p1, u1)
        u2, s2 = jax.jit(ref.update)(_grads(params, k), s2, p2)
        p2 = adaptx.apply_updates(p2, u2)
        ref_updates.append(u2)
    _check(p1, p2, "decay", steps=2, what="params", updates=ref_updates)
    _check(adaptx.fused_state_to_tree(s1), s2, exact=True)


def test_state_for_other_params_is_an_error():
    tx = adaptx.adam(1e-3)
    state = tx.init({"w": jnp.ones(3)})
    # The same check, and error, as the per-leaf chain's.
    with pytest.raises(adaptx.TreeMismatchError, match=r"scale_by_adam: updates leaf \['w'\]"):
        tx.update({"w": jnp.ones(5)}, state)
    with pytest.raises(adaptx.TreeMismatchError, match="scale_by_adam"):
        tx.update({"v": jnp.ones(3)}, state)


# --- apply_updates recognises fused updates, and only those ------------------------------------


def test_modified_updates_are_added_leaf_by_leaf():
    params = _params(SMALL)
    tx = adaptx.sgd(0.1, momentum=0.9)

    @jax.jit
    def step(p, s, g):
        u, _ = tx.update(g, s, p)
        assert _native.recognise(jax.tree.leaves(u)) is not None
        halved = jax.tree.map(lambda x: x * 0.5, u)
        assert _native.recognise(jax.tree.leaves(halved)) is None
        return adaptx.apply_updates(p, halved), jax.tree.map(jnp.add, p, halved)

    out, ref = step(params, tx.init(params), _grads(params, 0))
    jax.tree.map(np.testing.assert_array_equal, out, ref)


def test_eager_updates_are_not_remembered():
    # Eagerly the updates exist already; remembering them would keep the
    # step's state alive as long as the caller keeps the updates.
    params = _params(SMALL)
    tx = adaptx.adam(1e-2)
    u, _ = tx.update(_grads(params, 0), tx.init(params), params)
    assert _native.recognise(jax.tree.leaves(u)) is None


def test_weight_decay_updates_applied_to_other_params():
    # AdamW's updates depend on the params they were computed from; applied to
    # other params, apply_updates must add them, not recompute them.
    params = _params(SMALL)
    tx = adaptx.adamw(1e-2, weight_decay=0.5)

    @jax.jit
    def step(p, s, g):
        u, _ = tx.update(g, s, p)
        other = jax.tree.map(lambda x: x + 1.0, p)
        return adaptx.apply_updates(other, u), jax.tree.map(jnp.add, other, u)

    out, ref = step(params, tx.init(params), _grads(params, 0))
    jax.tree.map(np.testing.assert_array_equal, out, ref)


def test_compiled_step_size_does_not_grow_with_the_leaves():
    # The point of the fused path: a handful of operations whatever the tree.
    def ops(n):
        params = {f"p{i}": jnp.ones(3) for i in range(n)}
        tx = adaptx.adam(1e-3)

        def step(p, s, g):
            u, s = tx.update(g, s, p)
            return adaptx.apply_updates(p, u), s

        hlo = jax.jit(step).lower(params, tx.init(params), params).compile().as_text()
        entry = hlo[hlo.index("ENTRY") :]
        return len(re.findall(r" (?:fusion|custom-call)\(", entry))

    small, large = ops(10), ops(300)
    assert large <= small + 3, (small, large)  # only more in-place calls of 128 leaves


# --- reading the state, wrappers -----------------------------------------------------------


def test_flat_buffers_read_like_the_params():
    params = {
        "layer": {"w": jnp.ones((2, 3)), "b": jnp.ones(3)},
        "out": [jnp.ones(4), jnp.ones(())],
    }
    grads = jax.tree.map(lambda x: x * 0.5, params)
    tx = adaptx.adam(1e-2)
    _, state = tx.update(grads, tx.init(params), params)
    _, ref = adaptx.unfused(tx).update(grads, adaptx.unfused(tx).init(params), params)
    mu = state[0].mu
    np.testing.assert_array_equal(mu["layer"]["w"], ref[0].mu["layer"]["w"])
    np.testing.assert_array_equal(mu["out"][1], ref[0].mu["out"][1])
    jax.tree.map(np.testing.assert_array_equal, mu["layer"], ref[0].mu["layer"])
    jax.tree.map(np.testing.assert_array_equal, mu.tree(), ref[0].mu)
    assert int(state[0].count) == 1
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert paths == ["[0].count", "[0].mu.flat", "[0].nu.flat"]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_masked_and_injected_adam(fused):
    params = _params(SMALL)
    mask = jax.tree.map(lambda x: np.ndim(x) == 2, params)
    per = (lambda t: t) if fused else adaptx.unfused
    txs = {
        "masked": adaptx.masked(per(adaptx.adam(1e-2)), mask),
        "injected": adaptx.inject_hyperparams(adaptx.adam)(1e-2),
    }
    refs = {
        "masked": adaptx.masked(adaptx.unfused(adaptx.adam(1e-2)), mask),
        "injected": adaptx.unfused(adaptx.adam(1e-2)),
    }
    for name, tx in txs.items():
        p, s, u = _run(tx, params, 3, jit=True)
        inner = s.inner_state
        assert isinstance(inner, adaptx.FusedState) == (fused or name == "injected"), name
        rp, _, ru = _run(refs[name], params, 3, jit=True)
        _check(u, ru, False, what=f"{name} updates")
        _check(p, rp, False, steps=3, what=f"{name} params", updates=ru)


@pytest.mark.parametrize("name", ["adamw", "sgd[nesterov]"])
def test_clip_then_fused_reads_the_unclipped_gradients(name):
    # clip_by_global_norm's outputs are recognised: the kernels read the raw
    # gradients and scale them on the fly, with the same multiplication. (Not
    # bit-identical: with g * factor inlined, XLA may contract either product
    # of mu * b + g * factor.)
    make, exact = OPTIMIZERS[name]
    exact = exact if exact is not True else False
    params = _params()
    tx = adaptx.chain(adaptx.clip_by_global_norm(1.0), make())
    ref = adaptx.chain(adaptx.clip_by_global_norm(1.0), adaptx.unfused(make()))
    fused = _run(tx, params, 3, jit=True)
    per_leaf = _run(ref, params, 3, jit=True)
    # Nesterov's g + mu * b cancels: compare to the size of the updates.
    _check(fused[2], per_leaf[2], exact, what="updates", updates=per_leaf[2])
    _check(fused[0], per_leaf[0], exact, steps=3, what="params", updates=per_leaf[2])
    fused_state = adaptx.fused_state_to_tree(fused[1][1])
    _check(fused_state, per_leaf[1][1], exact, steps=3, what="state")

    def fusions(tx):
        def step(p, s, g):
            u, s = tx.update(g, s, p)
            return adaptx.apply_updates(p, u), s

        hlo = jax.jit(step).lower(params, tx.init(params), params).compile().as_text()
        return len(re.findall(r" fusion\(", hlo[hlo.index("ENTRY") :]))

    # What is left per leaf is the norm's sum of squares, no scaled copy.
    assert fusions(tx) <= len(params) + 8 < fusions(ref)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd[nesterov]"])
def test_single_pass_step_when_the_state_is_also_used_elsewhere(name):
    # apply_updates makes the step one pass and points the returned state at
    # that pass's buffers; a copy of the state taken before must hold the same
    # values (then both the update's and apply's passes run).
    make, exact = OPTIMIZERS[name]
    params = _params(SMALL)
    tx = make()

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        copy = jax.tree.map(lambda x: x * 1, s)
        return adaptx.apply_updates(p, u), s, copy

    p, s, copy = step(params, tx.init(params), _grads(params, 0))
    jax.tree.map(np.testing.assert_array_equal, s, copy)
    ref_p, ref_s, ref_u = _run(adaptx.unfused(make()), params, 1, jit=True)
    _check(p, ref_p, exact, steps=1, what="params", updates=ref_u)
    np.testing.assert_equal(
        jax.tree.map(np.asarray, adaptx.fused_state_to_tree(s)),
        jax.tree.map(np.asarray, ref_s),
    )


@pytest.mark.parametrize("name", ["adam", "sgd[momentum]"])
def test_apply_updates_inside_a_cond_branch(name):
    # A step skipped on non-finite gradients: apply_updates runs inside a
    # lax.cond branch on updates made outside it. The single pass would point
    # the outer state at buffers of the branch's trace; it must not be taken.
    make, exact = OPTIMIZERS[name]
    params = _params(SMALL)

    def run(tx):
        @jax.jit
        def step(p, s, g):
            u, s = tx.update(g, s, p)
            ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
            return jax.lax.cond(ok, lambda: adaptx.apply_updates(p, u), lambda: p), s

        p, s = params, tx.init(params)
        for k in range(3):
            p, s = step(p, s, _grads(params, k))
        return p, adaptx.fused_state_to_tree(s)

    (p, s), (ref_p, ref_s) = run(make()), run(adaptx.unfused(make()))
    assert isinstance(make().init(params), adaptx.FusedState)
    # Within a few ulp, not bit-identical even for SGD: across the branch XLA
    # does not contract the per-leaf ``p + lr * b`` into one fma, the kernel does.
    _check(p, ref_p, False, steps=3, what="params", updates=jax.tree.map(jnp.ones_like, p))
    _check(s, ref_s, exact, steps=3, what="state")


@pytest.mark.parametrize("jit", [False, True])
def test_zero_denominator_gives_a_zero_step(jit):
    # eps = 0 and coordinates whose gradients have all been 0: the per-leaf
    # Adam steps by 0 there (divide_or_zero), and so must the kernel, not 0/0.
    params = {"w": jnp.ones(4), "b": jnp.ones(3)}
    grads = {"w": jnp.asarray([0.0, 1.0, 0.0, -2.0]), "b": jnp.zeros(3)}
    makers = {
        "adam": lambda: adaptx.adam(0.1, eps=0.0),
        "adamw": lambda: adaptx.adamw(0.1, eps=0.0),
    }
    for name, make in makers.items():
        out = []
        for tx in (make(), adaptx.unfused(make())):
            update = jax.jit(tx.update) if jit else tx.update
            state = tx.init(params)
            for _ in range(2):
                u, state = update(grads, state, params)
            out.append(u)
        fused, ref = out
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(fused))
        _check(fused, ref, "decay", what="updates")
        if name == "adam":
            np.testing.assert_array_equal(fused["b"], np.zeros(3, np.float32))
            np.testing.assert_array_equal(fused["w"][np.asarray([0, 2])], np.zeros(2, np.float32))


@pytest.mark.parametrize("wrap", ["apply_if_finite", "lookahead"])
def test_reinitialising_wrappers_keep_the_fused_layout(wrap):
    # Both re-initialise the inner optimizer inside a jitted update. In this
    # process (several devices) a traced init gives the per-leaf layout; the
    # state, initialised eagerly, is fused: the fresh state is converted.
    params = _params(SMALL)

    def make(inner):
        if wrap == "apply_if_finite":
            return adaptx.apply_if_finite(inner, max_consecutive_errors=0, on_limit="reset")
        return adaptx.lookahead(inner, sync_period=2, slow_step_size=0.5, reset_state=True)

    def run(tx):
        p, s = params, tx.init(params)
        for k in range(4):
            g = _grads(params, k)
            if k == 1:
                g = jax.tree.map(lambda x: x * jnp.nan, g)
            u, s = jax.jit(tx.update)(g, s, p)
            p = adaptx.apply_updates(p, u)
        return p, s

    (p, s), (ref_p, ref_s) = (
        run(make(adaptx.adam(1e-2))),
        run(make(adaptx.unfused(adaptx.adam(1e-2)))),
    )
    assert any(
        isinstance(x, adaptx.FusedState)
        for x in jax.tree.leaves(s, is_leaf=lambda x: isinstance(x, adaptx.FusedState))
    )
    _check(p, ref_p, False, steps=4, what="params", updates=jax.tree.map(jnp.ones_like, p))
    _check(adaptx.fused_state_to_tree(s), ref_s, False, steps=4, what="state")
