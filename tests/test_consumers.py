"""Every consumer of an optax optimizer, run with adaptx's, over the whole registry.

Each test is parametrised over ``registry.REGISTRY`` (``"direction"`` entries are
chained with ``scale(-lr)``), so an optimizer added to the registry is covered
without touching this file. The model is a 2-layer MLP (4 -> 16 -> 2, 114
params) trained for three steps on one fixed batch.

What a consumer's result is compared with, within float32 rounding:

- for entries listed in ``OPTAX`` (the optax namesake with the same numbers),
  optax's plain ``init``/``update``/``apply_updates`` loop on the same params;
  ``test_plain_loop_matches_optax`` checks adaptx's own loop against it and
  ``test_state_paths_are_optax`` the state's leaf paths;
- for the others (adaptx's paper defaults where optax's differ, transforms
  optax lacks), adaptx's own plain loop.

Consumers over the whole registry (cheap, one small computation each):
``jax.eval_shape`` of ``init``, ``optax.tree.map_params`` / ``get`` / ``set``,
``vmap`` over a batch of states, orbax save and restore (one checkpoint for
the whole registry; optax's states restored into adaptx's and back where the
layouts are optax's), and params that hold tuples (as equinox models do).

Consumers over every optimizer alias (``ALIASES``: the "optimizer" entries
without a variant tag, less the combinators and wrappers), not every transform
variant, to keep the module's time down: flax NNX ``nnx.Optimizer`` (graph
mode under ``nnx.jit`` and tree mode), flax linen's ``TrainState``, equinox, and optax's wrappers
(``MultiSteps``, ``masked``, ``partition``, ``apply_if_finite``, ``lookahead``,
``flatten``, ``contrib.reduce_on_plateau``, ``contrib.schedule_free``). NNX
with a ``wrt`` filter, BatchNorm statistics and a custom ``nnx.Variable``, and
NNX sharded over 8 devices with ``optimizer_sharding``, exercise the model more
than the optimizer and run on a sample (``SAMPLE``). ``jax.grad`` / ``jax.jvp``
through ``update`` (in float64) run over the aliases optax has and the sample
(``GRAD``).

Only ``jax.numpy_dtype_promotion("standard")`` is relaxed here (an autouse
fixture): optax and flax are not written for strict promotion, and adaptx's
own strictness is tested elsewhere.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import linen, nnx
from flax.training import train_state

import adaptx

from registry import REGISTRY, Entry

STEPS = 3
RTOL, ATOL = 1e-5, 1e-5  # float32 rounding over three steps (sign-like steps amplify it)


@pytest.fixture(autouse=True)
def _standard_promotion():
    with jax.numpy_dtype_promotion("standard"):
        yield


# --- optax's namesakes ---------------------------------------------------------
# Registry entries whose optax namesake computes the same numbers (a direction for
# "direction" entries). Entries not listed are compared with adaptx's plain loop:
# adagrad and scale_by_rss (the paper's G_0 = 0 and eps outside the root; optax:
# 0.1 and inside), nadam and scale_by_nadam (Dozat's momentum schedule; optax: a
# constant b1), amsgrad and scale_by_amsgrad (torch's maximum of the raw second
# moment; optax: variant="max_corrected"), amsgrad[paper], scale_by_adam[b1_decay],
# zero_nans (also zeroes Inf) and lookahead (slow weights in the state; optax:
# LookaheadParams).


def _is_vector(params):
    return jax.tree.map(lambda x: jnp.size(x) > 1, params)


def _is_scalar(params):
    return jax.tree.map(lambda x: jnp.size(x) == 1, params)


def _size_labels(params):
    return jax.tree.map(lambda x: "vec" if jnp.size(x) > 1 else "scalar", params)


OPTAX = {
    "identity": lambda lr: optax.identity(),
    "scale": lambda lr: optax.scale(-lr),
    "scale_by_learning_rate": lambda lr: optax.scale_by_learning_rate(lr),
    "scale_by_learning_rate[schedule]": lambda lr: optax.scale_by_learning_rate(
        optax.exponential_decay(lr, 1000, 0.99)
    ),
    "scale_by_schedule": lambda lr: optax.scale_by_schedule(optax.constant_schedule(1.0)),
    "set_to_zero": lambda lr: optax.set_to_zero(),
    "stateless": lambda lr: optax.stateless(lambda u, p: jax.tree.map(lambda g: -lr * g, u)),
    "chain": lambda lr: optax.chain(optax.identity(), optax.scale_by_learning_rate(lr)),
    "named_chain": lambda lr: optax.named_chain(
        ("direction", optax.identity()), ("lr", optax.scale_by_learning_rate(lr))
    ),
    "sgd": lambda lr: optax.sgd(lr),
    "sgd[momentum]": lambda lr: optax.sgd(lr, 0.9),
    "sgd[nesterov]": lambda lr: optax.sgd(lr, 0.9, nesterov=True),
    "trace": lambda lr: optax.trace(0.9),
    "trace[nesterov,float32 accumulator]": lambda lr: optax.trace(
        0.9, nesterov=True, accumulator_dtype="float32"
    ),
    "ema": lambda lr: optax.ema(0.9),
    "ema[no debias]": lambda lr: optax.ema(0.9, debias=False),
    "adagrad[optax form]": lambda lr: optax.adagrad(lr, 0.1, 1e-7),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "rmsprop[torch: centered, momentum]": lambda lr: optax.rmsprop(
        lr, 0.99, eps_in_sqrt=False, centered=True, momentum=0.9
    ),
    "rmsprop[nesterov,bias_correction]": lambda lr: optax.rmsprop(
        lr, momentum=0.9, nesterov=True, bias_correction=True
    ),
    "scale_by_rms": lambda lr: optax.scale_by_rms(),
    "scale_by_stddev": lambda lr: optax.scale_by_stddev(),
    "adadelta": lambda lr: optax.adadelta(lr),
    "scale_by_adadelta": lambda lr: optax.scale_by_adadelta(),
    "adam": lambda lr: optax.adam(lr),
    "adam[nesterov]": lambda lr: optax.adam(lr, nesterov=True),
    "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-4),
    "adamax": lambda lr: optax.adamax(lr),
    "radam": lambda lr: optax.radam(lr),
    "scale_by_adam": lambda lr: optax.scale_by_adam(),
    "scale_by_adamax": lambda lr: optax.scale_by_adamax(),
    "scale_by_radam": lambda lr: optax.scale_by_radam(),
    "add_decayed_weights": lambda lr: optax.add_decayed_weights(1e-4),
    "masked": lambda lr: optax.masked(optax.scale_by_adam(), _is_vector),
    "partition": lambda lr: optax.partition(
        {"vec": optax.sgd(lr, 0.9), "scalar": optax.sgd(lr / 2)}, _size_labels
    ),
    "freeze": lambda lr: optax.chain(optax.transforms.freeze(_is_scalar), optax.sgd(lr, 0.9)),
    "clip": lambda lr: optax.clip(1.0),
    "clip_by_global_norm": lambda lr: optax.clip_by_global_norm(1.0),
    "clip_by_block_rms": lambda lr: optax.clip_by_block_rms(1.0),
    "apply_if_finite": lambda lr: optax.apply_if_finite(optax.sgd(lr, 0.9), 3),
    "MultiSteps": lambda lr: optax.MultiSteps(optax.sgd(lr, 0.9), 2).gradient_transformation(),
    "inject_hyperparams": lambda lr: optax.inject_hyperparams(optax.sgd)(lr, 0.9),
    # optax injects every callable argument as a schedule, the mask included.
    "inject_hyperparams[adamw]": lambda lr: optax.inject_hyperparams(
        optax.adamw, static_args=("mask",)
    )(lr, weight_decay=1e-4, mask=_is_vector),
    "inject_hyperparams[schedule]": lambda lr: optax.inject_hyperparams(optax.sgd)(
        optax.exponential_decay(lr, 1000, 0.99), 0.9
    ),
}

# Mapped entries whose state is not optax's (deliberate differences, documented in
# the README): no cross-library restore. Those in OTHER_PATHS keep other leaf paths;
# MultiSteps keeps optax's paths but other values (a sum) and no skip_state.
OTHER_PATHS = {"rmsprop[torch: centered, momentum]", "inject_hyperparams[schedule]"}
OTHER_STATE_LAYOUT = {
    "inject_hyperparams[adamw]": "optax's masked weight decay keeps a MaskedState (no "
    "leaves) where adaptx keeps an EmptyState: same leaf paths, other empty nodes, which "
    "orbax refuses to restore across",
    "inject_hyperparams[schedule]": "optax keeps a count per scheduled argument in "
    "hyperparams_states; adaptx reads schedules at the outer count",
    "rmsprop[torch: centered, momentum]": "torch's order: momentum before the learning rate",
    "MultiSteps": "acc_grads is a running sum (optax: a running mean); no skip_state field",
}


# One transform object per entry for the whole module, so that ``_loop`` compiles
# each step once (``jax.jit`` caches per function object).
@functools.cache
def _tx(entry: Entry) -> adaptx.GradientTransformation:
    tx = entry.make(entry.lr)
    if entry.kind == "direction":
        tx = adaptx.chain(tx, adaptx.scale(-entry.lr))
    return tx


@functools.cache
def _optax_tx(entry: Entry) -> optax.GradientTransformation | None:
    make = OPTAX.get(entry.name)
    if make is None:
        return None
    tx = make(entry.lr)
    if entry.kind == "direction":
        tx = optax.chain(tx, optax.scale(-entry.lr))
    return tx


ENTRIES = [pytest.param(e, id=e.name) for e in REGISTRY]
MAPPED = [pytest.param(e, id=e.name) for e in REGISTRY if e.name in OPTAX]
# Optimizer aliases: the registry's "optimizer" entries without a variant tag, less
# the combinators and wrappers (optax's wrappers and the contract tests cover those).
_NOT_ALIASES = {
    "scale", "scale_by_learning_rate", "stateless", "chain", "named_chain", "partition",
    "freeze", "apply_if_finite", "MultiSteps", "lookahead", "inject_hyperparams",
}  # fmt: skip
ALIASES = [
    pytest.param(e, id=e.name)
    for e in REGISTRY
    if e.kind == "optimizer" and "[" not in e.name and e.name not in _NOT_ALIASES
]
# The NNX set-ups that exercise the model more than the optimizer run on a sample.
SAMPLE = [p for p in ALIASES if p.values[0].name in ("sgd", "adam", "adafactor", "lion")]
# Meta-gradients (float64, the costliest consumer): the aliases optax has, the sample,
# and the learning-rate-free ones (their first step takes the square root of a zero
# moment, where a careless tangent is NaN). The fused layer keeps float32 state and
# refuses float64 params: tests/test_fused.py differentiates it in float32 against
# the per-leaf alias.
GRAD = [
    p
    for p in ALIASES
    if (p.values[0].name in OPTAX or p in SAMPLE or p.values[0].name in ("dadapt_adamw", "prodigy"))
    and not p.values[0].name.startswith("fused.")
]
_MLP_SHAPES = {
    "layer1": {
        "bias": jax.ShapeDtypeStruct((16,), jnp.float32),
        "kernel": jax.ShapeDtypeStruct((4, 16), jnp.float32),
    },
    "layer2": {
        "bias": jax.ShapeDtypeStruct((2,), jnp.float32),
        "kernel": jax.ShapeDtypeStruct((16, 2), jnp.float32),
    },
}
# Entries optax has whose state keeps the same leaf paths, and entries whose state
# has leaves at all (nothing to checkpoint otherwise).
SAME_LAYOUT = [p for p in MAPPED if p.values[0].name not in OTHER_PATHS]
STATEFUL = [
    p
    for p in ENTRIES
    if jax.tree.leaves(jax.eval_shape(p.values[0].make(p.values[0].lr).init, _MLP_SHAPES))
]


# Known failures (test, entry) -> reason: the test stops there as an expected failure.
KNOWN = {
    ("nnx_graph_and_tree", "soap"): "soap keeps per-leaf tuples (None for 1-d leaves) as "
    "state leaves: NNX wraps them in the params' Variables and cannot handle them",
    ("nnx_sharded", "adafactor"): "NNX copies a kernel's sharding metadata onto its factored "
    "(row/column) statistics, which that sharding does not divide",
}


def _known(test, entry):
    reason = KNOWN.get((test, entry.name))
    if reason:
        pytest.xfail(reason)


# --- the model, its loss and the reference loops --------------------------------
def _mlp_params():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    return {
        "layer1": {
            "bias": jax.random.normal(k2, (16,)) / 10,
            "kernel": jax.random.normal(k1, (4, 16)) / 2,
        },
        "layer2": {
            "bias": jax.random.normal(k4, (2,)) / 10,
            "kernel": jax.random.normal(k3, (16, 2)) / 4,
        },
    }


X = jax.random.normal(jax.random.key(1), (8, 4))
Y = jax.random.normal(jax.random.key(2), (8, 2))


def _mlp(p, x):
    h = jnp.tanh(x @ p["layer1"]["kernel"] + p["layer1"]["bias"][None, :])
    return h @ p["layer2"]["kernel"] + p["layer2"]["bias"][None, :]


def _loss(p, x=X, y=Y):
    return jnp.mean(jnp.square(_mlp(p, x) - y))


def _entry(name: str) -> Entry:
    return next(e for e in REGISTRY if e.name == name)


def _base(entry: Entry):
    """The reference transform and its ``apply_updates``: optax's namesake, else adaptx's."""
    otx = _optax_tx(entry)
    if otx is not None:
        return otx, optax.apply_updates
    return _tx(entry), adaptx.apply_updates


@functools.cache
def _compiled_step(tx, loss, apply):
    """One compiled step per transform, loss and ``apply``, shared by every ``_loop``.

    Compiled rather than eager: wrappers built on ``lax.cond`` (MultiSteps,
    apply_if_finite, reduce_on_plateau) would compile their branches again at
    every eager call.
    """

    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return apply(params, updates), state

    return jax.jit(step)


def _loop(tx, params, loss=_loss, steps=STEPS, apply=adaptx.apply_updates, state=None):
    state = tx.init(params) if state is None else state
    step = _compiled_step(tx, loss, apply)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


@functools.cache
def _reference(name: str):
    """Params after ``STEPS`` plain steps of the reference transform (``_base``)."""
    tx, apply = _base(_entry(name))
    return _loop(tx, _mlp_params(), apply=apply)[0]


def _close(got, want, what="", tol=1.0):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves), what
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_allclose(
            np.asarray(g), np.asarray(w), rtol=RTOL * tol, atol=ATOL * tol, err_msg=what
        )


def _paths(tree):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _layout(tree):
    return jax.tree.structure(tree), [
        (jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)
    ]


# --- optax's numbers and layout ---------------------------------------------------
@pytest.mark.parametrize("entry", MAPPED)
def test_plain_loop_matches_optax(entry):
    params, _ = _loop(_tx(entry), _mlp_params())
    _close(params, _reference(entry.name), entry.name)


@pytest.mark.parametrize("entry", [p for p in MAPPED if p.values[0].name in OTHER_PATHS])
def test_other_state_layouts_do_differ(entry):
    # Keeps OTHER_PATHS honest: an entry that gains optax's leaf paths leaves it.
    params = _mlp_params()
    ours, theirs = _tx(entry).init(params), _optax_tx(entry).init(params)
    assert _paths(ours) != _paths(theirs)


@pytest.mark.parametrize("entry", SAME_LAYOUT)
def test_state_paths_are_optax(entry):
    params = _mlp_params()
    ours, theirs = _tx(entry).init(params), _optax_tx(entry).init(params)
    assert _paths(ours) == _paths(theirs)
    assert _layout(ours)[1] == _layout(theirs)[1]


# --- cheap consumers, whole registry ------------------------------------------------
@pytest.mark.parametrize("entry", ENTRIES)
def test_eval_shape_and_tree_utilities(entry):
    tx, params = _tx(entry), _mlp_params()
    state = tx.init(params)
    structs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    assert _layout(jax.eval_shape(tx.init, params)) == _layout(state)
    assert _layout(jax.eval_shape(tx.init, structs)) == _layout(state)
    # map_params (init on a placeholder): what users call to derive state shardings.
    zeroed = optax.tree.map_params(tx, jnp.zeros_like, state)
    assert _layout(zeroed) == _layout(state)
    specs = optax.tree.map_params(
        tx,
        lambda p: jax.sharding.PartitionSpec(*[None] * p.ndim),
        state,
        transform_non_params=lambda _: jax.sharding.PartitionSpec(),
    )
    assert jax.tree.structure(specs) == jax.tree.structure(state)
    # get / set on the step counters the state keeps; the next update sees them.
    counts = optax.tree.get_all_with_path(state, "count")
    if len(counts) == 1:
        assert int(optax.tree.get(state, "count")) == 0
    if counts:
        bumped = optax.tree.set(state, count=jnp.asarray(7, jnp.int32))
        _, new = tx.update(jax.grad(_loss)(params), bumped, params)
        before = [int(c) for _, c in optax.tree.get_all_with_path(bumped, "count")]
        after = [int(c) for _, c in optax.tree.get_all_with_path(new, "count")]
        assert 7 in before  # optax's set replaces the outermost match only
        assert len(after) == len(before)


@pytest.mark.parametrize("entry", ENTRIES)
def test_vmap_over_a_batch_of_states(entry):
    tx = _tx(entry)
    batch = jax.tree.map(lambda x: jnp.stack([x, -x]), _mlp_params())
    got = jax.jit(jax.vmap(lambda p: _loop(tx, p)[0]))(batch)
    _close(jax.tree.map(lambda x: x[0], got), _reference(entry.name), entry.name)
    want, _ = _loop(tx, jax.tree.map(lambda x: x[1], batch))
    _close(jax.tree.map(lambda x: x[1], got), want, entry.name)


def _key(i):
    return f"e{i}"


@pytest.fixture(scope="module")
def orbax_restored(tmp_path_factory):
    """Every entry's state after one step, saved with orbax and restored three ways.

    One checkpoint for the whole registry (orbax's cost is per save, not per leaf):
    adaptx's states restored into ``tx.init(params)``; optax's states restored into
    adaptx's ``init``, and adaptx's into optax's, where the layouts are optax's.
    Entries whose state has no leaves (stateless transforms) have nothing to save.
    """
    with jax.numpy_dtype_promotion("standard"):
        return _orbax_round_trips(tmp_path_factory.mktemp("orbax"))


def _orbax_round_trips(path):
    ours, theirs, like_ours, ours_back = {}, {}, {}, {}
    for i, entry in enumerate(REGISTRY):
        tx, params = _tx(entry), _mlp_params()
        _, state = _loop(tx, params, steps=1)
        if not jax.tree.leaves(state):
            continue
        ours[_key(i)], like_ours[_key(i)] = state, tx.init(params)
        otx = _optax_tx(entry)
        if otx is not None and entry.name not in OTHER_STATE_LAYOUT:
            theirs[_key(i)] = _loop(otx, params, steps=1, apply=optax.apply_updates)[1]
            ours_back[_key(i)] = otx.init(params)
    into_optax = {k: ours_back.get(k, v) for k, v in like_ours.items()}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "adaptx", ours)
        ckptr.save(path / "optax", theirs)
        ckptr.wait_until_finished()
        restored = ckptr.restore(path / "adaptx", like_ours)
        optax_into_ours = ckptr.restore(path / "optax", {k: like_ours[k] for k in theirs})
        ours_into_optax = ckptr.restore(path / "adaptx", into_optax)
    return ours, theirs, restored, optax_into_ours, ours_into_optax


@pytest.mark.parametrize("entry", STATEFUL)
def test_orbax_restore_and_continue(entry, orbax_restored):
    ours, theirs, restored, optax_into_ours, ours_into_optax = orbax_restored
    k = _key(REGISTRY.index(entry))
    assert k in ours
    tx, params = _tx(entry), _mlp_params()
    p1 = adaptx.apply_updates(
        params, tx.update(jax.grad(_loss)(params), tx.init(params), params)[0]
    )
    assert jax.tree.structure(restored[k]) == jax.tree.structure(ours[k])
    _close(restored[k], ours[k])
    a, _ = _loop(tx, p1, steps=STEPS - 1, state=ours[k])
    b, _ = _loop(tx, p1, steps=STEPS - 1, state=restored[k])
    _close(a, b, "adaptx state restored by orbax")
    if k not in theirs:
        return
    # optax's state restored into adaptx's: training continues as with optax...
    otx = _optax_tx(entry)
    assert jax.tree.structure(optax_into_ours[k]) == jax.tree.structure(tx.init(params))
    want, _ = _loop(otx, p1, steps=STEPS - 1, apply=optax.apply_updates, state=theirs[k])
    got, _ = _loop(tx, p1, steps=STEPS - 1, state=optax_into_ours[k])
    _close(got, want, "optax state restored into adaptx")
    # ... and adaptx's into optax's.
    assert jax.tree.structure(ours_into_optax[k]) == jax.tree.structure(otx.init(params))
    got, _ = _loop(otx, p1, steps=STEPS - 1, apply=optax.apply_updates, state=ours_into_optax[k])
    _close(got, a, "adaptx state restored into optax")


@pytest.mark.parametrize("entry", GRAD)
def test_grad_and_jvp_through_update(entry, x64):
    """Meta-gradients through two updates: w.r.t. the learning rate and the initial params.

    In float64: in float32 the hyper-gradient of Adam-like steps is dominated by
    rounding (components with gradients near ``eps`` have derivatives near
    ``1 / eps``); optax's and adaptx's float32 values are equally far from the
    float64 value, and agree with each other to 1e-14 in float64.
    """

    def after(make, apply):
        def f(lr, params):
            tx = make(entry, lr)
            state = tx.init(params)
            for _ in range(2):
                updates, state = tx.update(jax.grad(_loss)(params), state, params)
                params = apply(params, updates)
            return _loss(params)

        return f

    ours = after(_tx_lr, adaptx.apply_updates)
    lr = jnp.asarray(entry.lr, jnp.float64)
    params = jax.tree.map(lambda x: x.astype(jnp.float64), _mlp_params())
    g_lr, g_params = jax.grad(ours, argnums=(0, 1))(lr, params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves((g_lr, g_params)))
    tangent = jax.tree.map(jnp.ones_like, params)
    _, t = jax.jvp(lambda p: ours(lr, p), (params,), (tangent,))
    dot = sum(jnp.sum(g * v) for g, v in zip(jax.tree.leaves(g_params), jax.tree.leaves(tangent)))
    np.testing.assert_allclose(t, dot, rtol=1e-8, atol=1e-10)
    if entry.name in OPTAX:
        want = jax.grad(after(_optax_tx_lr, optax.apply_updates), argnums=(0, 1))(lr, params)
        np.testing.assert_allclose(g_lr, want[0], rtol=1e-6, atol=1e-9)
        for g, w in zip(jax.tree.leaves(g_params), jax.tree.leaves(want[1])):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)


def _tx_lr(entry, lr):
    tx = entry.make(lr)
    return adaptx.chain(tx, adaptx.scale(-lr)) if entry.kind == "direction" else tx


def _optax_tx_lr(entry, lr):
    tx = OPTAX[entry.name](lr)
    return optax.chain(tx, optax.scale(-lr)) if entry.kind == "direction" else tx


# --- flax NNX -------------------------------------------------------------------------
def _init_from(value, **metadata):
    """An NNX initializer returning ``value`` (so every library starts from the same params)."""
    init = lambda key, shape, dtype=jnp.float32: value
    return nnx.with_metadata(init, **metadata) if metadata else init


class NnxMLP(nnx.Module):
    def __init__(self, params, *, batch_norm=False, sharding=None):
        meta = lambda spec: {} if sharding is None else sharding(spec)
        p1, p2 = params["layer1"], params["layer2"]
        self.layer1 = nnx.Linear(
            4,
            16,
            kernel_init=_init_from(p1["kernel"], **meta((None, "model"))),
            bias_init=_init_from(p1["bias"], **meta(("model",))),
            rngs=nnx.Rngs(0),
        )
        self.layer2 = nnx.Linear(
            16,
            2,
            kernel_init=_init_from(p2["kernel"], **meta(("model", None))),
            bias_init=_init_from(p2["bias"], **meta((None,))),
            rngs=nnx.Rngs(0),
        )
        self.norm = nnx.BatchNorm(16, rngs=nnx.Rngs(0)) if batch_norm else None
        self.calls = Counter(jnp.zeros((), jnp.int32)) if batch_norm else None

    def __call__(self, x):
        h = self.layer1(x)
        if self.norm is not None:
            h = self.norm(h)
            self.calls[...] += 1
        return self.layer2(jnp.tanh(h))


class Counter(nnx.Variable):
    """A non-parameter variable the model updates itself."""


def _nnx_loss(model):
    return jnp.mean(jnp.square(model(X) - Y))


def _nnx_params(model, wrt=nnx.Param):
    return nnx.to_pure_dict(nnx.state(model, wrt))


def _nnx_train(model, opt):
    """``STEPS`` graph-mode steps of ``opt`` on ``model`` under ``nnx.jit``."""

    @nnx.jit
    def step(model, opt):
        opt.update(model, nnx.grad(_nnx_loss)(model))

    for _ in range(STEPS):
        step(model, opt)


@pytest.mark.parametrize("entry", ALIASES)
def test_nnx_optimizer_graph_and_tree_mode(entry):
    """``nnx.Optimizer(model, tx, wrt=nnx.Param)``: graph mode under ``nnx.jit``, tree mode."""
    _known("nnx_graph_and_tree", entry)
    model = NnxMLP(_mlp_params())
    opt = nnx.Optimizer(model, _tx(entry), wrt=nnx.Param)
    _nnx_train(model, opt)
    _close(_nnx_params(model), _reference(entry.name), "graph mode")
    assert int(opt.step[...]) == STEPS

    model = NnxMLP(_mlp_params())
    opt = nnx.Optimizer(model, _tx(entry), wrt=nnx.Param, graph=False)
    for _ in range(STEPS):
        opt.update(model, nnx.grad(_nnx_loss, graph=False)(model))
    _close(_nnx_params(model), _reference(entry.name), "tree mode")


@pytest.mark.parametrize("entry", SAMPLE)
def test_nnx_wrt_filter_and_non_parameter_variables(entry):
    """Only ``layer2`` is optimised; BatchNorm statistics and a custom Variable stay the model's."""
    model = NnxMLP(_mlp_params(), batch_norm=True)
    wrt = nnx.All(nnx.Param, nnx.PathContains("layer2"))
    opt = nnx.Optimizer(model, _tx(entry), wrt=wrt)
    graphdef, trained, rest = nnx.split(model, wrt, ...)

    def loss(p):  # the same loss as a function of the trained params' pure dict
        state = jax.tree.map(lambda x: x, trained)
        nnx.replace_by_pure_dict(state, p)  # in place, on the copy
        return _nnx_loss(nnx.merge(graphdef, state, rest, copy=True))

    tx, apply = _base(entry)
    want, _ = _loop(tx, nnx.to_pure_dict(trained), loss=loss, apply=apply)
    layer1 = _nnx_params(model, nnx.PathContains("layer1"))
    for _ in range(STEPS):
        grads = nnx.grad(_nnx_loss, argnums=nnx.DiffState(0, wrt))(model)
        opt.update(model, grads)
    _close(_nnx_params(model, wrt), want, "wrt filter")
    _close(_nnx_params(model, nnx.PathContains("layer1")), layer1, "layer1 is not trained")
    assert int(model.calls[...]) == STEPS  # the model's own variables kept their updates
    assert float(jnp.abs(model.norm.mean[...]).sum()) > 0
    assert not any("norm" in p or "calls" in p or "layer1" in p for p in _paths(opt.opt_state))


@pytest.mark.parametrize("entry", SAMPLE)
def test_nnx_sharded_model_with_optimizer_sharding(entry):
    """A model sharded over 8 devices; ``optimizer_sharding`` places the state."""
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)

    def sharding(spec):
        opt_spec = tuple("data" if a is None and len(spec) > 1 else a for a in spec)
        return {"out_sharding": spec, "optimizer_sharding": opt_spec}

    _known("nnx_sharded", entry)
    with jax.set_mesh(mesh):
        model = NnxMLP(_mlp_params(), sharding=sharding)
        opt = nnx.Optimizer(model, _tx(entry), wrt=nnx.Param)
        for var in jax.tree.leaves(opt.opt_state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
            if var[...].shape == (4, 16):  # moments of layer1's kernel
                assert var[...].sharding.spec == jax.sharding.PartitionSpec("data", "model")
        _nnx_train(model, opt)
        # (with automatic axes the compiler chooses the outputs' shardings, as with optax)
    _close(_nnx_params(model), _reference(entry.name), "sharded")


# --- flax linen, equinox ----------------------------------------------------------------
class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        h = jnp.tanh(linen.Dense(16, name="layer1")(x))
        return linen.Dense(2, name="layer2")(h)


@pytest.mark.parametrize("entry", ALIASES)
def test_linen_train_state(entry):
    model = LinenMLP()
    state = train_state.TrainState.create(apply_fn=model.apply, params=_mlp_params(), tx=_tx(entry))

    @jax.jit
    def step(state):
        loss = lambda p: jnp.mean(jnp.square(state.apply_fn({"params": p}, X) - Y))
        return state.apply_gradients(grads=jax.grad(loss)(state.params))

    for _ in range(STEPS):
        state = step(state)
    _close(state.params, _reference(entry.name), "linen TrainState")


def _eqx_model():
    p = _mlp_params()
    model = eqx.nn.MLP(4, 2, 16, depth=1, activation=jnp.tanh, key=jax.random.key(0))
    layers = model.layers
    return (
        eqx.tree_at(
            lambda m: (m.layers[0].weight, m.layers[0].bias, m.layers[1].weight, m.layers[1].bias),
            model,
            (
                p["layer1"]["kernel"].T,
                p["layer1"]["bias"],
                p["layer2"]["kernel"].T,
                p["layer2"]["bias"],
            ),
        )
        if layers
        else model
    )


def _eqx_as_params(model):
    a, b = model.layers
    return {
        "layer1": {"bias": a.bias, "kernel": a.weight.T},
        "layer2": {"bias": b.bias, "kernel": b.weight.T},
    }


@pytest.mark.parametrize("entry", ALIASES)
def test_equinox(entry):
    """``eqx.filter`` / ``filter_jit`` / ``filter_grad``: trees with ``None`` leaves."""
    model, tx = _eqx_model(), _tx(entry)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_grad
    def grads(model):
        return jnp.mean(jnp.square(jax.vmap(model)(X) - Y))

    @eqx.filter_jit
    def step(model, opt_state):
        updates, opt_state = tx.update(grads(model), opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state

    for _ in range(STEPS):
        model, opt_state = step(model, opt_state)
    _close(_eqx_as_params(model), _reference(entry.name), "equinox")
    # eqx.partition's two halves: the optimizer sees only the arrays.
    params, static = eqx.partition(_eqx_model(), eqx.is_array)
    _, state = tx.update(grads(eqx.combine(params, static)), tx.init(params), params)
    assert jax.tree.structure(state) == jax.tree.structure(opt_state)


# --- optax's wrappers around adaptx -----------------------------------------------------
def _split_reference(entry, other):
    """``entry``'s reference transform on layer1, ``other(params, grads)`` on layer2."""
    tx, apply = _base(entry)
    params = _mlp_params()
    state = tx.init({"layer1": params["layer1"]})
    for _ in range(STEPS):
        g = jax.grad(_loss)(params)
        u, state = tx.update({"layer1": g["layer1"]}, state, {"layer1": params["layer1"]})
        params = {
            "layer1": apply(params["layer1"], u["layer1"]),
            "layer2": other(params["layer2"], g["layer2"]),
        }
    return params


def _by_layer(params, first, second):
    return {
        "layer1": jax.tree.map(lambda _: first, params["layer1"]),
        "layer2": jax.tree.map(lambda _: second, params["layer2"]),
    }


@pytest.mark.parametrize("entry", ALIASES)
def test_optax_wrappers(entry):
    """optax's wrappers, each around adaptx's transform, against the reference loop."""
    tx, params = _tx(entry), _mlp_params()
    ref = _reference(entry.name)
    # MultiSteps: two calls per step on the same batch = one plain step.
    got, _ = _loop(optax.MultiSteps(tx, 2), params, steps=2 * STEPS, apply=optax.apply_updates)
    _close(got, ref, "optax.MultiSteps")
    # apply_if_finite: a NaN step in the middle changes nothing.
    wrapped = optax.apply_if_finite(tx, 2)
    p, state = params, wrapped.init(params)
    update = jax.jit(wrapped.update)
    for i in range(STEPS + 1):
        g = jax.grad(_loss)(p)
        if i == 1:
            g = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), g)
        u, state = update(g, state, p)
        p = optax.apply_updates(p, u)
    _close(p, ref, "optax.apply_if_finite")
    # reduce_on_plateau after the optimizer: scale 1 until the loss plateaus.
    plateau = optax.chain(tx, optax.contrib.reduce_on_plateau(patience=10))
    p, state = params, plateau.init(params)
    update = jax.jit(plateau.update)
    for _ in range(STEPS):
        u, state = update(jax.grad(_loss)(p), state, p, value=_loss(p))
        p = optax.apply_updates(p, u)
    _close(p, ref, "optax.contrib.reduce_on_plateau")
    # masked: layer2's updates are the raw gradients.
    got, _ = _loop(
        optax.masked(tx, _by_layer(params, True, False)), params, apply=optax.apply_updates
    )
    # (layer2 ascends on its raw gradients, growing fast: rounding grows with it)
    want = _split_reference(entry, lambda p, g: jax.tree.map(jnp.add, p, g))
    _close(got, want, "optax.masked", tol=10)
    # partition: SGD on layer2.
    part = optax.partition({"a": tx, "b": optax.sgd(0.05)}, _by_layer(params, "a", "b"))
    got, _ = _loop(part, params, apply=optax.apply_updates)
    _close(
        got,
        _split_reference(entry, lambda p, g: jax.tree.map(lambda x, y: x - 0.05 * y, p, g)),
        "optax.partition",
    )


@pytest.mark.parametrize("entry", ALIASES)
def test_optax_flatten_lookahead_schedule_free(entry):
    tx, params = _tx(entry), _mlp_params()
    base, apply = _base(entry)
    # flatten: the transform sees one vector.
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    want, _ = _loop(base, flat, loss=lambda v: _loss(unravel(v)), apply=apply)
    got, _ = _loop(optax.flatten(tx), params, apply=optax.apply_updates)
    _close(got, unravel(want), "optax.flatten")
    # lookahead (sync every 2 steps, slow step 0.5), against its definition.
    fast = slow = params
    state = base.init(params)
    for k in range(1, STEPS + 1):
        u, state = base.update(jax.grad(_loss)(fast), state, fast)
        fast = apply(fast, u)
        if k % 2 == 0:
            slow = jax.tree.map(lambda s, f: s + 0.5 * (f - s), slow, fast)
            fast = slow
    la = optax.lookahead(tx, sync_period=2, slow_step_size=0.5)
    lp, state = optax.LookaheadParams.init_synced(params), None
    state = la.init(lp)
    for _ in range(STEPS):
        u, state = la.update(jax.grad(_loss)(lp.fast), state, lp)
        lp = optax.apply_updates(lp, u)
    _close(lp.fast, fast, "optax.lookahead: fast")
    _close(lp.slow, slow, "optax.lookahead: slow")
    # schedule_free around the optimizer, against schedule_free around the reference.
    want, _ = _loop(optax.contrib.schedule_free(base, 0.1), params, apply=optax.apply_updates)
    got, _ = _loop(optax.contrib.schedule_free(tx, 0.1), params, apply=optax.apply_updates)
    _close(got, want, "optax.contrib.schedule_free")


# --- the README's snippets ---------------------------------------------------------------
def _readme_snippets():
    """The python blocks of the README's "Switching from optax" section."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("\n## Switching from optax\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_the_three_snippets():
    snippets = _readme_snippets()
    assert len(snippets) == 3
    assert [("nnx" in s, "linen" in s, "eqx" in s) for s in snippets] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]


@pytest.mark.parametrize("index", range(3), ids=["nnx", "linen", "equinox"])
def test_readme_snippet_runs(index):
    namespace: dict = {}
    exec(compile(_readme_snippets()[index], f"README snippet {index}", "exec"), namespace)


@pytest.mark.parametrize("entry", ENTRIES)
def test_params_holding_tuples(entry):
    """Models hold tuples (equinox's ``MLP.layers``): they are tree nodes, never results."""
    params = {f"t{n}": tuple(jnp.full((2, 3), 0.5 + i) for i in range(n)) for n in (2, 3, 4)}
    as_dicts = {k: {str(i): x for i, x in enumerate(v)} for k, v in params.items()}
    tx = _tx(entry)
    grads = jax.tree.map(lambda x: x / 4 - 1, params)
    updates, state = tx.update(grads, tx.init(params), params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert _layout(tx.update(updates, state, params)[1]) == _layout(state)
    grads = jax.tree.map(lambda x: x / 4 - 1, as_dicts)
    want, _ = tx.update(grads, tx.init(as_dicts), as_dicts)
    _close(updates, want, "the same params in dicts")
