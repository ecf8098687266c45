"""Bad input across the public API: each gets a clear exception, never a NaN or a silent
wrong result.

``CASES`` lists concrete bad inputs with the exception type and the message each must
give; ``test_every_numeric_argument_rejects_nan`` sweeps every public factory (new ones
included) with NaN in each numeric argument. What optax 0.2.8 does with the same inputs
is in the README's robustness table.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import pytest

import adaptx

NAN, INF = float("nan"), float("inf")
P = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
G = {"w": jnp.full((3, 2), 0.5), "b": jnp.full((2,), -0.5)}


def _step(tx, grads=G, params=P, *, with_params=True):
    state = tx.init(params)
    return tx.update(grads, state, params if with_params else None)


# (id, thunk, exception type, regex the message must match)
CASES = [
    # --- learning rates ---------------------------------------------------------------
    (
        "lr negative",
        lambda: adaptx.adam(-1e-3),
        ValueError,
        r"learning_rate must be in \[0.0, inf\), got -0.001",
    ),
    ("lr nan", lambda: adaptx.sgd(NAN), ValueError, r"learning_rate must be in .*got nan"),
    ("lr inf", lambda: adaptx.adam(INF), ValueError, r"learning_rate must be in .*got inf"),
    (
        "lr string",
        lambda: adaptx.sgd("0.1"),
        TypeError,
        r"learning_rate must be a number or a scalar array, got str",
    ),
    (
        "lr bool",
        lambda: adaptx.adam(True),
        TypeError,
        r"learning_rate must be a number, got the boolean",
    ),
    (
        "lr None",
        lambda: adaptx.adagrad(None),
        TypeError,
        r"learning_rate must be a number.*NoneType",
    ),
    (
        "lr vector",
        lambda: adaptx.sgd(jnp.array([0.1, 0.2])),
        ValueError,
        r"learning_rate must be a scalar, got an array of shape \(2,\)",
    ),
    (
        "lr schedule negative",
        lambda: adaptx.adam(adaptx.constant_schedule(-0.1)),
        ValueError,
        r"learning_rate schedule must give finite values >= 0.0, got -0.1",
    ),
    (
        "lr schedule nan",
        lambda: adaptx.rmsprop(lambda count: jnp.float32(NAN)),
        ValueError,
        r"learning_rate schedule must give finite values >= 0.0, got nan at step 0",
    ),
    (
        "lr schedule non-scalar",
        lambda: adaptx.sgd(lambda count: jnp.ones(3)),
        ValueError,
        r"learning_rate schedule must return a scalar, got shape \(3,\)",
    ),
    # --- moment decays and epsilons -----------------------------------------------------
    ("b1 = 1", lambda: adaptx.adam(b1=1.0), ValueError, r"b1 must be in \[0.0, 1.0\), got 1.0"),
    ("b1 > 1", lambda: adaptx.nadam(b1=1.5), ValueError, r"b1 must be in \[0.0, 1.0\), got 1.5"),
    ("b2 negative", lambda: adaptx.amsgrad(b2=-0.1), ValueError, r"b2 must be in \[0.0, 1.0\)"),
    ("b1 complex", lambda: adaptx.adam(b1=0.9 + 0.1j), ValueError, r"b1 must be real"),
    (
        "b1 vector",
        lambda: adaptx.scale_by_adam(b1=jnp.array([0.9, 0.99])),
        ValueError,
        r"b1 must be a scalar, got an array of shape \(2,\)",
    ),
    (
        "eps negative",
        lambda: adaptx.adam(eps=-1e-8),
        ValueError,
        r"eps must be in \[0.0, inf\), got -1e-08",
    ),
    ("eps nan", lambda: adaptx.adamax(eps=NAN), ValueError, r"eps must be in .*got nan"),
    ("eps_root negative", lambda: adaptx.radam(eps_root=-1.0), ValueError, r"eps_root must be in"),
    (
        "adadelta eps = 0",
        lambda: adaptx.adadelta(eps=0.0),
        ValueError,
        r"eps must be in \(0.0, inf\)",
    ),
    (
        "adadelta rho = 1",
        lambda: adaptx.adadelta(rho=1.0),
        ValueError,
        r"rho must be in \[0.0, 1.0\)",
    ),
    (
        "rmsprop decay = 2",
        lambda: adaptx.rmsprop(0.1, decay=2.0),
        ValueError,
        r"decay must be in \[0.0, 1.0\)",
    ),
    (
        "rmsprop initial_scale negative",
        lambda: adaptx.rmsprop(0.1, initial_scale=-1.0),
        ValueError,
        r"initial_scale must be in \[0.0, inf\)",
    ),
    (
        "adagrad negative accumulator",
        lambda: adaptx.adagrad(0.1, -0.1),
        ValueError,
        r"initial_accumulator_value must be in \[0.0, inf\), got -0.1",
    ),
    (
        "ema decay = 1",
        lambda: adaptx.ema(1.0),
        ValueError,
        r"decay must be in \[0.0, 1.0\), got 1.0",
    ),
    (
        "b1_decay = 0",
        lambda: adaptx.adam(b1_decay=0.0),
        ValueError,
        r"b1_decay must be in \(0.0, 1.0\]",
    ),
    (
        "nadam momentum_decay negative",
        lambda: adaptx.nadam(momentum_decay=-1.0),
        ValueError,
        r"momentum_decay must be in \[0.0, inf\)",
    ),
    (
        "radam threshold < 4",
        lambda: adaptx.radam(threshold=3.0),
        ValueError,
        r"threshold must be in \[4.0, inf\), got 3.0",
    ),
    (
        "amsgrad unknown variant",
        lambda: adaptx.amsgrad(variant="max"),
        ValueError,
        r"variant must be one of \('max_raw', 'max_corrected', 'paper'\), got 'max'",
    ),
    (
        "nesterov with b1_decay",
        lambda: adaptx.adam(nesterov=True, b1_decay=0.99),
        ValueError,
        r"nesterov=True does not combine with b1_decay",
    ),
    # --- momentum and weight decay ----------------------------------------------------
    (
        "momentum negative",
        lambda: adaptx.sgd(0.1, -0.9),
        ValueError,
        r"momentum must be in \[0.0, 1.0\], got -0.9",
    ),
    (
        "momentum > 1",
        lambda: adaptx.sgd(0.1, 1.5),
        ValueError,
        r"momentum must be in \[0.0, 1.0\], got 1.5",
    ),
    (
        "nesterov without momentum",
        lambda: adaptx.sgd(0.1, nesterov=True),
        ValueError,
        r"nesterov=True needs a positive momentum, got momentum=None",
    ),
    (
        "nesterov with momentum 0",
        lambda: adaptx.rmsprop(0.1, momentum=0.0, nesterov=True),
        ValueError,
        r"nesterov=True needs a positive momentum, got momentum=0.0",
    ),
    (
        "trace decay negative",
        lambda: adaptx.trace(-0.5),
        ValueError,
        r"decay must be in \[0.0, 1.0\], got -0.5",
    ),
    (
        "weight decay negative",
        lambda: adaptx.adamw(weight_decay=-1e-4),
        ValueError,
        r"weight_decay must be in \[0.0, inf\), got -0.0001",
    ),
    (
        "weight decay without params",
        lambda: _step(adaptx.add_decayed_weights(1e-4), with_params=False),
        ValueError,
        r"add_decayed_weights needs the parameters",
    ),
    # --- state dtypes ---------------------------------------------------------------------
    (
        "mu_dtype integer",
        lambda: adaptx.adam(mu_dtype=jnp.int32),
        ValueError,
        r"mu_dtype must be a floating or complex dtype .* got int32",
    ),
    (
        "nu_dtype integer",
        lambda: adaptx.rmsprop(0.1, nu_dtype="int8"),
        ValueError,
        r"nu_dtype must be a floating or complex dtype .* got int8",
    ),
    (
        "nu_dtype not a dtype",
        lambda: adaptx.adam(nu_dtype="float33"),
        ValueError,
        r"nu_dtype must be a dtype or None, got 'float33'",
    ),
    (
        "accumulator_dtype integer",
        lambda: adaptx.trace(0.9, accumulator_dtype=jnp.int32),
        ValueError,
        r"accumulator_dtype must be a floating or complex dtype",
    ),
    (
        "real accumulator for complex params",
        lambda: adaptx.sgd(0.1, 0.9, accumulator_dtype=jnp.float32).init(
            jnp.zeros(2, jnp.complex64)
        ),
        ValueError,
        r"accumulator_dtype=float32 is real but a parameter is complex64",
    ),
    # --- scaling, schedules, helpers ----------------------------------------------------------
    (
        "scale nan",
        lambda: adaptx.scale(NAN),
        ValueError,
        r"step_size must be a finite number, got nan",
    ),
    (
        "scale_by_schedule not callable",
        lambda: adaptx.scale_by_schedule(0.1),
        TypeError,
        r"step_size_fn must be callable",
    ),
    (
        "exponential_decay transition_steps = 0",
        lambda: adaptx.exponential_decay(0.1, 0, 0.5),
        ValueError,
        r"transition_steps must be an integer >= 1, got 0",
    ),
    (
        "exponential_decay transition_steps float",
        lambda: adaptx.exponential_decay(0.1, 10.5, 0.5),
        ValueError,
        r"transition_steps must be an integer >= 1, got float 10.5",
    ),
    (
        "exponential_decay decay_rate = 0",
        lambda: adaptx.exponential_decay(0.1, 10, 0.0),
        ValueError,
        r"decay_rate must be in \(0.0, inf\), got 0.0",
    ),
    (
        "cosine decay_steps = 0",
        lambda: adaptx.cosine_decay_schedule(0.1, 0),
        ValueError,
        r"decay_steps must be an integer >= 1, got 0",
    ),
    (
        "cosine alpha > 1",
        lambda: adaptx.cosine_decay_schedule(0.1, 10, alpha=2.0),
        ValueError,
        r"alpha must be in \[0.0, 1.0\], got 2.0",
    ),
    (
        "warmup longer than decay",
        lambda: adaptx.warmup_cosine_decay_schedule(0.0, 1.0, 10, 5),
        ValueError,
        r"decay_steps must be an integer > warmup_steps \(10\), got 5",
    ),
    (
        "schedule init_value nan",
        lambda: adaptx.linear_schedule(NAN, 0.0, 10),
        ValueError,
        r"init_value must be a finite number, got nan",
    ),
    (
        "piecewise negative scale",
        lambda: adaptx.piecewise_constant_schedule(0.1, {5: -1.0}),
        ValueError,
        r"scale at boundary 5 must be in \[0.0, inf\), got -1.0",
    ),
    (
        "join_schedules boundaries decreasing",
        lambda: adaptx.join_schedules([adaptx.constant_schedule(1.0)] * 3, [10, 5]),
        ValueError,
        r"boundaries must be strictly increasing, got \[10, 5\]",
    ),
    (
        "join_schedules wrong count",
        lambda: adaptx.join_schedules([adaptx.constant_schedule(1.0)], [5]),
        ValueError,
        r"one more schedule than boundaries",
    ),
    (
        "incremental_update step_size > 1",
        lambda: adaptx.incremental_update(jnp.ones(2), jnp.zeros(2), 1.5),
        ValueError,
        r"step_size must be in \[0.0, 1.0\], got 1.5",
    ),
    (
        "chain of a non-transform",
        lambda: adaptx.chain(adaptx.scale(1.0), "adam"),
        TypeError,
        r"chain argument 1 must be a GradientTransformation .* got str",
    ),
    (
        "named_chain duplicate names",
        lambda: adaptx.named_chain(("a", adaptx.identity()), ("a", adaptx.identity())),
        ValueError,
        r"named_chain names must be unique",
    ),
    (
        "chain state of another chain",
        lambda: adaptx.chain(adaptx.identity(), adaptx.scale(1.0)).update(
            G, (adaptx.EmptyState(),)
        ),
        ValueError,
        r"chain of 2 transforms got a state with 1 entries",
    ),
    # --- combinators and wrappers ---------------------------------------------------
    (
        "clip_by_global_norm 0",
        lambda: adaptx.clip_by_global_norm(0.0),
        ValueError,
        r"max_norm must be in \(0.0, inf\), got 0.0",
    ),
    (
        "clip negative",
        lambda: adaptx.clip(-1.0),
        ValueError,
        r"max_delta must be in \[0.0, inf\), got -1.0",
    ),
    (
        "clip_by_block_rms 0",
        lambda: adaptx.clip_by_block_rms(0.0),
        ValueError,
        r"threshold must be in \(0.0, inf\), got 0.0",
    ),
    (
        "MultiSteps every_k 0",
        lambda: adaptx.MultiSteps(adaptx.sgd(0.1), 0),
        ValueError,
        r"every_k_schedule must be an integer >= 1 or a schedule, got 0",
    ),
    (
        "lookahead slow_step_size > 1",
        lambda: adaptx.lookahead(adaptx.sgd(0.1), 5, 1.5),
        ValueError,
        r"slow_step_size must be in \[0.0, 1.0\], got 1.5",
    ),
    (
        "lookahead sync_period 0",
        lambda: adaptx.lookahead(adaptx.sgd(0.1), 0, 0.5),
        ValueError,
        r"sync_period must be an integer >= 1, got 0",
    ),
    (
        "apply_if_finite negative limit",
        lambda: adaptx.apply_if_finite(adaptx.sgd(0.1), -1),
        ValueError,
        r"max_consecutive_errors must be an integer >= 0 or None",
    ),
    (
        "partition label without transform",
        lambda: adaptx.partition({"a": adaptx.sgd(0.1)}, {"w": "a", "b": "c"}).init(P),
        ValueError,
        r"partition: labels \['c'\] have no transform",
    ),
    (
        "masked: mask of another structure",
        lambda: adaptx.masked(adaptx.sgd(0.1), {"w": True, "x": False}).init(P),
        ValueError,
        r"mask must have the structure of the params",
    ),
    (
        "run-time momentum > 1",
        lambda: adaptx.set_hyperparams(
            adaptx.inject_hyperparams(adaptx.sgd)(0.1, 0.9).init(P), momentum=1.5
        ),
        ValueError,
        r"momentum must be in \[0.0, 1.0\], got 1.5",
    ),
    (
        "injected b1 = 1",
        lambda: adaptx.inject_hyperparams(adaptx.adam)(b1=1.0),
        ValueError,
        r"b1 must be in \[0.0, 1.0\), got 1.0",
    ),
    (
        "update: MultiSteps, transposed leaf",
        lambda: _step(adaptx.MultiSteps(adaptx.adam(), 2), {**G, "w": G["w"].T}, with_params=False),
        adaptx.TreeMismatchError,
        r"MultiSteps: updates leaf \['w'\]",
    ),
    # --- trees: update ----------------------------------------------------------------------
    (
        "update: transposed leaf",
        lambda: _step(adaptx.adam(), {**G, "w": G["w"].T}),
        adaptx.TreeMismatchError,
        r"scale_by_adam: updates leaf \['w'\].*\n  expected: shape \(3, 2\), dtype float32\n"
        r"  got:      shape \(2, 3\), dtype float32",
    ),
    (
        "update: broadcastable leaf (optax broadcasts silently)",
        lambda: _step(adaptx.adam(), {**G, "b": G["b"][:1]}),
        adaptx.TreeMismatchError,
        r"\['b'\].*\n  expected: shape \(2,\).*\n  got:      shape \(1,\)",
    ),
    (
        "update: the state of another optimizer",
        lambda: adaptx.adam(0.1).update(G, adaptx.sgd(0.1, 0.9).init(P), P),
        TypeError,
        r"scale_by_adam: update expected the state this transform's init returns, "
        r"ScaleByAdamState\(count, mu, nu\), but got TraceState\(trace\)",
    ),
    (
        "update: state None (chain)",
        lambda: adaptx.sgd(0.1).update(G, None, P),
        TypeError,
        r"chain of 2 transforms: update expected the tuple of states its init returns, got None",
    ),
    (
        "update: state None (single transform)",
        lambda: adaptx.scale_by_adam().update(G, None, P),
        TypeError,
        r"scale_by_adam: .* but got None\. Pass the state from init",
    ),
    (
        "update: a state made for other params",
        lambda: adaptx.adam(0.1).update(G, adaptx.adam(0.1).init({"v": jnp.ones(2)}), P),
        adaptx.TreeMismatchError,
        r"(?s)scale_by_adam: the updates tree has a different structure .*re-initialise",
    ),
    (
        "update: stateless, missing key (optax accepts)",
        lambda: _step(adaptx.sgd(0.1), {"w": G["w"]}),
        adaptx.TreeMismatchError,
        r"identity: the updates tree has a different structure .*missing \['b'\]",
    ),
    (
        "update: stateless, other structure (optax accepts)",
        lambda: _step(adaptx.scale(-0.1), [1.0, 2.0]),
        adaptx.TreeMismatchError,
        r"scale: the updates tree has a different structure",
    ),
    (
        "update: bfloat16 grads for float32 params",
        lambda: _step(adaptx.adam(), jax.tree.map(lambda g: g.astype(jnp.bfloat16), G)),
        adaptx.TreeMismatchError,
        r"expected: shape \(2,\), dtype float32\n  got:      shape \(2,\), dtype bfloat16\n"
        r"Cast the updates to the parameters' dtypes",
    ),
    (
        "update: float32 grads for bfloat16 params, float32 state",
        lambda: _step(
            adaptx.adam(mu_dtype=jnp.float32, nu_dtype=jnp.float32),
            G,
            jax.tree.map(lambda p: p.astype(jnp.bfloat16), P),
        ),
        adaptx.TreeMismatchError,
        r"expected: shape \(2,\), dtype bfloat16",
    ),
    (
        "update: complex grads for real params (stateless)",
        lambda: _step(adaptx.scale(1.0), jax.tree.map(lambda g: g.astype(jnp.complex64), G)),
        adaptx.TreeMismatchError,
        r"dtype float32\n  got: .* dtype complex64",
    ),
    (
        "update: params of another shape than updates",
        lambda: adaptx.add_decayed_weights(0.1).update(
            G, adaptx.EmptyState(), {**P, "b": jnp.ones(3)}
        ),
        adaptx.TreeMismatchError,
        r"add_decayed_weights: updates leaf \['b'\]",
    ),
    # --- trees: apply_updates -------------------------------------------------------------------
    (
        "apply_updates: broadcasting update (optax grows the param)",
        lambda: adaptx.apply_updates({"b": jnp.ones(1)}, {"b": jnp.ones(3)}),
        adaptx.TreeMismatchError,
        r"apply_updates: update \['b'\] has shape \(3,\) but its parameter has shape \(1,\)",
    ),
    (
        "apply_updates: complex update to real param (optax drops the imaginary part)",
        lambda: adaptx.apply_updates({"b": jnp.ones(2)}, {"b": jnp.full(2, 1j, jnp.complex64)}),
        adaptx.TreeMismatchError,
        r"update \['b'\] is complex64 but its parameter is real",
    ),
    (
        "apply_updates: missing key",
        lambda: adaptx.apply_updates(P, {"w": G["w"]}),
        adaptx.TreeMismatchError,
        r"apply_updates: the updates tree has a different structure",
    ),
    # --- hyper-parameters that overflow the params' dtype (caught at init) -------------
    (
        "lr overflows float32",
        lambda: adaptx.sgd(1e40).init(P),
        ValueError,
        r"learning_rate=1e\+40 overflows the params' dtype float32 \(largest finite value 3.4",
    ),
    (
        "lr overflows float16",
        lambda: adaptx.adam(1e5).init({"h": jnp.ones(2, jnp.float16)}),
        ValueError,
        r"learning_rate=100000.0 overflows the params' dtype float16",
    ),
    (
        "lr schedule overflows float16 at step 0",
        lambda: adaptx.sgd(adaptx.constant_schedule(1e5)).init({"h": jnp.ones(2, jnp.float16)}),
        ValueError,
        r"learning_rate \(a schedule giving 100000.0 at step 0\) overflows .* float16",
    ),
    (
        "scale overflows float32",
        lambda: adaptx.scale(-1e39).init(P),
        ValueError,
        r"step_size=-1e\+39 overflows the params' dtype float32",
    ),
    (
        "weight_decay overflows float32",
        lambda: adaptx.adamw(1e-3, weight_decay=1e39).init(P),
        ValueError,
        r"weight_decay=1e\+39 overflows the params' dtype float32",
    ),
    (
        "injected lr overflows its float32 array",
        lambda: adaptx.inject_hyperparams(adaptx.sgd)(1e40),
        ValueError,
        r"learning_rate=1e\+40 overflows the hyper-parameters' \(float32 arrays\) dtype float32",
    ),
]


@pytest.mark.parametrize("thunk, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(thunk, exc, match):
    with pytest.raises(exc, match=match):
        thunk()


def test_at_least_forty_distinct_bad_inputs():
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids) >= 40


def test_tree_mismatch_is_reported_at_trace_time_under_jit():
    tx = adaptx.adam()
    state = tx.init(P)
    with pytest.raises(adaptx.TreeMismatchError, match=r"\['b'\]"):
        jax.jit(tx.update)({**G, "b": G["b"][:1]}, state, P)


def test_an_overflowing_lr_is_fine_for_wider_params_and_unchecked_when_traced():
    with jax.enable_x64(True):
        adaptx.sgd(1e40).init({"w": jnp.ones(2, jnp.float64)})
    # Traced under jit: not inspected (its value is unknown at trace time).
    jax.jit(lambda lr: adaptx.sgd(lr).init(P))(jnp.float32(1.0))


def test_traced_hyperparameters_are_not_checked_but_their_shape_is():
    # A traced value cannot be inspected: documented, not checked; its shape can.
    jax.jit(lambda lr: adaptx.sgd(lr).update(G, adaptx.sgd(0.1).init(P))[0])(jnp.float32(-1.0))
    with pytest.raises(ValueError, match=r"b1 must be a scalar, got an array of shape \(2,\)"):
        jax.jit(lambda b1: adaptx.scale_by_adam(b1=b1))(jnp.array([0.9, 0.99]))


# --- every numeric argument of every public factory rejects NaN ------------------------------

# Valid values for required arguments, so that each factory can be built.
_VALID = {
    "learning_rate": 0.1,
    "decay": 0.9,
    "step_size": 0.5,
    "value": 1.0,
    "init_value": 1.0,
    "end_value": 0.0,
    "peak_value": 1.0,
    "power": 1.0,
    "transition_steps": 10,
    "decay_rate": 0.5,
    "decay_steps": 10,
    "warmup_steps": 2,
    "max_norm": 1.0,
    "max_delta": 1.0,
    "threshold": 1.0,
    "every_k_schedule": 2,
    "sync_period": 2,
    "slow_step_size": 0.5,
    "alpha": 5.0,  # ademamix_alpha_schedule
    "b3": 0.999,  # ademamix_b3_schedule
    "clipping": 0.1,
    "eta": 0.01,
    "gamma": 0.55,
    "key": 0,
    "interpolate_type": "linear",
}
_TRANSFORM_ARGS = {
    "inner",
    "opt",
    "fast_optimizer",
    "inner_factory",
    "transform",
    "base_optimizer",
}
_NUMERIC_OPTIONAL = {"momentum", "b1_decay", "end_value", "momentum_decay", "learning_rate"}


def _factories():
    out = []
    for name in sorted(adaptx.__dict__):
        f = getattr(adaptx, name)
        if name.startswith("_") or not inspect.isfunction(f):
            continue
        ret = str(inspect.signature(f).return_annotation)
        if ret.endswith(("GradientTransformation", "Schedule")):
            out.append(name)
    return out


def _numeric_args(f):
    names = []
    for k, p in inspect.signature(f).parameters.items():
        d = p.default
        if isinstance(d, bool):
            continue
        if isinstance(d, (int, float)) or k in _NUMERIC_OPTIONAL or k in _VALID:
            names.append(k)
    return names


def _call(f, **override):
    kwargs = {}
    for k, p in inspect.signature(f).parameters.items():
        if p.default is not inspect.Parameter.empty or p.kind is p.VAR_POSITIONAL:
            continue
        if k in _TRANSFORM_ARGS:
            kwargs[k] = adaptx.sgd(0.1)
        else:
            kwargs[k] = _VALID[k]
    kwargs.update(override)
    return f(**kwargs)


_SWEEP = [
    pytest.param(name, arg, id=f"{name}({arg}=nan)")
    for name in _factories()
    for arg in _numeric_args(getattr(adaptx, name))
]


def test_the_sweep_covers_the_api():
    names = {p.values[0] for p in _SWEEP}
    assert {"adam", "sgd", "rmsprop", "scale", "exponential_decay", "scale_by_radam"} <= names
    assert len(_SWEEP) >= 80


@pytest.mark.parametrize("name, arg", _SWEEP)
def test_every_numeric_argument_rejects_nan(name, arg):
    f = getattr(adaptx, name)
    _call(f)  # the valid baseline builds
    with pytest.raises(ValueError, match=rf"\b{arg}\b.*nan"):
        _call(f, **{arg: NAN})


def test_nan_is_never_silently_accepted_by_a_range_check():
    # The helpers treat NaN as out of every range, and infinities as out of unbounded ones.
    from adaptx._validate import check_range

    for low, high in [(0.0, 1.0), (0.0, None), (None, 1.0), (None, None)]:
        with pytest.raises(ValueError):
            check_range("x", NAN, low, high)
    with pytest.raises(ValueError):
        check_range("x", INF, 0.0, None)
    check_range("x", INF, 0.0, None, allow_inf=True)
    assert math.isinf(INF)
