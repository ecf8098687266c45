"""Schedule-Free, D-Adaptation and Prodigy against their papers and optax.contrib.

References: ``references_parameter_free.py`` (NumPy float64, from the
papers). Each run starts from the same point on a quadratic with a
diagonal Hessian plus a quartic term (so the gradient depends on the iterate
non-linearly) and records the parameters after every step; the difference
of two runs is the worst step's ``max |got - want| / max |want|``.
torch 2.13 has none of these optimizers (``torch.optim`` has no
Schedule-Free, D-Adaptation or Prodigy class), so there are no torch numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import references_parameter_free as R

import adaptx

A = np.array([0.5, 1.0, 2.0, 3.0, 0.2, 1.5])
C = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.25])
X1 = np.array([0.0, 0.5, -0.5, 1.0, 2.0, 0.0])
T = 40
# d is a running maximum of ratios of long weighted sums, and the steps are Adam-like
# (sign-like for small v): rounding differences grow along a run. float64 agrees to
# ~1e-8 over 40 steps; float32 (whose (1 - b2) is off by 5e-5) drifts to ~1e-2 and is
# compared over 15 steps. A wrong factor or order anywhere gives differences of 1e-2 and more.
T32 = 15
F64_LR_FREE = 1e-7
F32_LR_FREE = 2e-2


def np_grad(x):
    return A * (x - C) + 0.1 * (x - C) ** 3


def loss(p):
    a, c = jnp.asarray(A, p.dtype), jnp.asarray(C, p.dtype)
    return 0.5 * jnp.sum(a * (p - c) ** 2) + 0.025 * jnp.sum((p - c) ** 4)


def run(tx, steps=T, dtype=jnp.float32, eval_params=False, standard=False):
    """The parameters after each step (and ``x_t``); ``standard`` promotion for optax."""
    with jax.numpy_dtype_promotion("standard" if standard else "strict"):
        return _run(tx, steps, dtype, eval_params)


def _run(tx, steps, dtype, eval_params):
    params = jnp.asarray(X1, dtype)
    state = tx.init(params)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    ys, xs = [], []
    for _ in range(steps):
        u, state = step(params, state)
        params = adaptx.apply_updates(params, u)
        ys.append(np.asarray(params, np.float64))
        if eval_params:
            xs.append(np.asarray(adaptx.schedule_free_eval_params(state, params), np.float64))
    return (np.array(ys), np.array(xs)) if eval_params else np.array(ys)


@pytest.fixture
def standard_promotion():
    """optax is not clean under strict dtype promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def rel(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


SF_CASES = {
    "adamw": (
        lambda: adaptx.schedule_free_adamw(0.05),
        dict(adam=True, lr=0.05),
    ),
    "adamw[warmup,wd,b1=0.95,r=1]": (
        lambda: adaptx.schedule_free_adamw(
            0.05, warmup_steps=10, b1=0.95, weight_decay=0.01, r=1.0
        ),
        dict(adam=True, lr=0.05, warmup=10, b1=0.95, wd=0.01, r=1.0),
    ),
    "sgd": (lambda: adaptx.schedule_free_sgd(0.1), dict(adam=False, lr=0.1)),
    "sgd[warmup,wd,power=1]": (
        lambda: adaptx.schedule_free_sgd(0.1, warmup_steps=5, weight_decay=0.05, weight_lr_power=1),
        dict(adam=False, lr=0.1, warmup=5, wd=0.05, power=1.0),
    ),
}

DA_CASES = {
    "dadapt": (lambda: adaptx.dadapt_adamw(), R.dadapt_adam, {}),
    "dadapt[bc,wd]": (
        lambda: adaptx.dadapt_adamw(weight_decay=0.01, bias_correction=True),
        R.dadapt_adam,
        dict(wd=0.01, bc=True),
    ),
    "dadapt[schedule]": (
        lambda: adaptx.dadapt_adamw(_linear),
        R.dadapt_adam,
        dict(lr=lambda k: 1.0 - k / T),
    ),
    "prodigy": (lambda: adaptx.prodigy(), R.prodigy, {}),
    "prodigy[bc,wd,coef]": (
        lambda: adaptx.prodigy(weight_decay=0.01, estim_lr_coef=0.5, bias_correction=True),
        R.prodigy,
        dict(wd=0.01, coef=0.5, bc=True),
    ),
    "prodigy[safeguard,beta3,schedule]": (
        lambda: adaptx.prodigy(_linear, beta3=0.9, safeguard_warmup=True),
        R.prodigy,
        dict(lr=lambda k: 1.0 - k / T, beta3=0.9, safeguard=True),
    ),
}


@pytest.mark.parametrize("case", sorted(SF_CASES))
def test_schedule_free_matches_paper_float32(case):
    make, kw = SF_CASES[case]
    ys, xs = run(make(), eval_params=True)
    want_y, want_x = R.schedule_free(np_grad, X1, T, **kw)
    assert rel(ys, want_y) < 2e-5
    assert rel(xs, want_x) < 2e-5


@pytest.mark.parametrize("case", sorted(SF_CASES))
def test_schedule_free_matches_paper_float64(case, x64):
    make, kw = SF_CASES[case]
    ys, xs = run(make(), dtype=jnp.float64, eval_params=True)
    want_y, want_x = R.schedule_free(np_grad, X1, T, **kw)
    assert rel(ys, want_y) < 1e-12
    assert rel(xs, want_x) < 1e-12


@pytest.mark.parametrize("case", sorted(DA_CASES))
def test_lr_free_matches_paper_float32(case):
    make, ref, kw = DA_CASES[case]
    assert rel(run(make(), steps=T32), ref(np_grad, X1, T32, **kw)) < F32_LR_FREE


@pytest.mark.parametrize("case", sorted(DA_CASES))
def test_lr_free_matches_paper_float64(case, x64):
    make, ref, kw = DA_CASES[case]
    got = run(make(), dtype=jnp.float64)
    want = ref(np_grad, X1, T, **kw)
    assert rel(got, want) < F64_LR_FREE
    assert np.max(np.abs(want[-1] - X1)) > 0.02  # d grew: the run went somewhere


# --- optax.contrib ----------------------------------------------------------------------------


def _f(n):
    return jnp.asarray(n).astype(jnp.result_type(float))


def _linear(n):
    return 1.0 - _f(n) / T


OPTAX_SAME = {
    "schedule_free_adamw": (
        lambda: adaptx.schedule_free_adamw(0.05, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_adamw(0.05, weight_decay=0.01),
    ),
    "schedule_free_sgd": (
        lambda: adaptx.schedule_free_sgd(0.1, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_sgd(0.1, weight_decay=0.01),
    ),
    "dadapt_adamw[bias_correction]": (
        lambda: adaptx.dadapt_adamw(weight_decay=0.01, bias_correction=True),
        lambda: optax.contrib.dadapt_adamw(weight_decay=0.01),
    ),
    "prodigy[bias_correction]": (
        lambda: adaptx.prodigy(weight_decay=0.01, bias_correction=True),
        lambda: optax.contrib.prodigy(weight_decay=0.01),
    ),
    "prodigy[bias_correction,safeguard]": (
        lambda: adaptx.prodigy(safeguard_warmup=True, bias_correction=True),
        lambda: optax.contrib.prodigy(safeguard_warmup=True),
    ),
    # optax's warm-up reaches its Adam steps one step late (its base optimizer counts
    # from 0, its weights from 1): that exact setting, built from adaptx's pieces.
    "schedule_free[optax's warm-up]": (
        lambda: adaptx.schedule_free(
            adaptx.chain(
                adaptx.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),
                adaptx.add_decayed_weights(0.0),
                adaptx.scale_by_learning_rate(lambda n: 0.05 * jnp.minimum(1.0, _f(n) / 5)),
            ),
            lambda n: 0.05 * jnp.minimum(1.0, _f(n) / 5),
        ),
        lambda: optax.contrib.schedule_free_adamw(0.05, warmup_steps=5),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTAX_SAME))
def test_same_as_optax_contrib(case, x64):
    ours, theirs = OPTAX_SAME[case]
    got = run(ours(), dtype=jnp.float64)
    want = run(theirs(), dtype=jnp.float64, standard=True)
    # optax's warm-up schedule computes in float32 even under x64.
    assert rel(got, want) < (1e-7 if "warm-up" in case else 1e-12)


@pytest.mark.parametrize("case", sorted(OPTAX_SAME))
def test_same_as_optax_contrib_float32(case):
    ours, theirs = OPTAX_SAME[case]
    assert rel(run(ours()), run(theirs(), standard=True)) < 2e-4


OPTAX_DIFFERENT = {
    # adaptx's warm-up gives the first Adam step gamma_1 = lr / w, optax's gives 0.
    "schedule_free_adamw[warmup]": (
        lambda: adaptx.schedule_free_adamw(0.05, warmup_steps=5),
        lambda: optax.contrib.schedule_free_adamw(0.05, warmup_steps=5),
    ),
    # The authors' default leaves Adam's bias correction off; optax always applies it.
    "dadapt_adamw": (adaptx.dadapt_adamw, optax.contrib.dadapt_adamw),
    "prodigy": (adaptx.prodigy, optax.contrib.prodigy),
}


@pytest.mark.parametrize("case", sorted(OPTAX_DIFFERENT))
def test_documented_differences_from_optax(case):
    ours, theirs = OPTAX_DIFFERENT[case]
    assert rel(run(ours()), run(theirs(), standard=True)) > 1e-2


def test_warmup_first_step_moves_in_adaptx_not_in_optax(standard_promotion):
    params = jnp.asarray(X1, jnp.float32)
    g = jax.grad(loss)(params)
    ours = adaptx.schedule_free_adamw(0.05, warmup_steps=5)
    theirs = optax.contrib.schedule_free_adamw(0.05, warmup_steps=5)
    u_ours, _ = jax.jit(ours.update)(g, ours.init(params), params)
    u_theirs, _ = jax.jit(theirs.update)(g, theirs.init(params), params)
    np.testing.assert_allclose(u_ours, -0.01 * np.sign(g), rtol=1e-5)
    assert float(jnp.max(jnp.abs(u_theirs))) == 0.0


def _paths(state):
    return [p for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


PATH_CASES = {
    "schedule_free_adamw": (adaptx.schedule_free_adamw, optax.contrib.schedule_free_adamw, {}),
    "schedule_free_adamw[warmup]": (
        adaptx.schedule_free_adamw,
        optax.contrib.schedule_free_adamw,
        dict(warmup_steps=3),
    ),
    "schedule_free_sgd": (adaptx.schedule_free_sgd, optax.contrib.schedule_free_sgd, {}),
    "schedule_free_sgd[wd]": (
        adaptx.schedule_free_sgd,
        optax.contrib.schedule_free_sgd,
        dict(weight_decay=0.1),
    ),
    "dadapt_adamw": (adaptx.dadapt_adamw, optax.contrib.dadapt_adamw, {}),
    "prodigy": (adaptx.prodigy, optax.contrib.prodigy, {}),
}


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_state_paths_are_optax_contribs(case):
    ours, theirs, kw = PATH_CASES[case]
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    assert _paths(ours(**kw).init(params)) == _paths(theirs(**kw).init(params))


# --- initialisation from shapes alone ---------------------------------------------------------

SHAPES = {
    "w": jax.ShapeDtypeStruct((3, 2), jnp.float32),
    "b": jax.ShapeDtypeStruct((2,), jnp.bfloat16),
}


@pytest.mark.parametrize("make", [adaptx.prodigy, adaptx.dadapt_adamw, adaptx.schedule_free_adamw])
def test_init_under_eval_shape(make):
    tx = make()
    abstract = jax.eval_shape(tx.init, SHAPES)
    params = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}
    concrete = tx.init(params)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete), strict=True):
        assert (a.shape, a.dtype) == (c.shape, c.dtype)
    if hasattr(abstract, "estim_lr"):
        assert abstract.estim_lr.dtype == jnp.float32  # not the lowest params dtype (bfloat16)


@pytest.mark.parametrize("make", [adaptx.prodigy, adaptx.dadapt_adamw])
def test_state_does_not_depend_on_param_values(make):
    # A state built before the parameters are known (here from zeros) gives the same run
    # as one built from the parameters: x_0 is recorded on the first update.
    tx = make()
    params = jnp.asarray(X1, jnp.float32)
    from_zeros = tx.init(jnp.zeros_like(params))
    from_params = tx.init(params)
    assert all(
        bool(jnp.array_equal(a, b))
        for a, b in zip(jax.tree.leaves(from_zeros), jax.tree.leaves(from_params), strict=True)
    )
    ref = run(tx)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    p, s = params, from_zeros
    for _ in range(T):
        u, s = step(p, s)
        p = adaptx.apply_updates(p, u)
    np.testing.assert_allclose(np.asarray(p, np.float64), ref[-1], rtol=1e-6, atol=1e-6)


def test_optax_prodigy_depends_on_param_values_at_init(standard_promotion):
    # What adaptx avoids: optax's params0 is whatever init saw.
    tx = optax.contrib.prodigy()
    params = jnp.asarray(X1, jnp.float32)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    p1, s1 = params, tx.init(params)
    p2, s2 = params, tx.init(jnp.zeros_like(params))
    for _ in range(T):
        u1, s1 = step(p1, s1)
        u2, s2 = step(p2, s2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    assert float(jnp.max(jnp.abs(p1 - p2))) > 1e-3


# --- gradient accumulation ----------------------------------------------------------------------


def _batches(k):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(k, 4, 6)) for _ in range(6)]


def _batch_loss(p, xb):
    return jnp.mean((jnp.asarray(xb, p.dtype) @ p - 1.0) ** 2)


@pytest.mark.parametrize("wrapper", ["adaptx", "optax"])
def test_schedule_free_under_multisteps_equals_big_batch(wrapper, x64, standard_promotion):
    k = 3
    multi = adaptx.MultiSteps if wrapper == "adaptx" else optax.MultiSteps
    big_tx = adaptx.schedule_free_adamw(0.05, warmup_steps=2, weight_decay=0.01)
    acc_tx = multi(adaptx.schedule_free_adamw(0.05, warmup_steps=2, weight_decay=0.01), k)
    p_big = p_acc = jnp.asarray(X1, jnp.float64)
    s_big, s_acc = big_tx.init(p_big), acc_tx.init(p_acc)

    def stepper(tx):
        @jax.jit
        def step(p, s, xb):
            u, s = tx.update(jax.grad(_batch_loss)(p, xb), s, p)
            return adaptx.apply_updates(p, u), s

        return step

    big_step, acc_step = stepper(big_tx), stepper(acc_tx)
    for xb in _batches(k):
        p_big, s_big = big_step(p_big, s_big, xb.reshape(-1, 6))
        for j in range(k):
            p_acc, s_acc = acc_step(p_acc, s_acc, xb[j])
    # optax's MultiSteps keeps a running mean (rounded at every mini-step, ~1e-9 here);
    # adaptx's sums and divides once.
    tol = 1e-12 if wrapper == "adaptx" else 1e-7
    np.testing.assert_allclose(p_acc, p_big, rtol=0, atol=tol)
    eval_big = adaptx.schedule_free_eval_params(s_big, p_big)
    eval_acc = adaptx.schedule_free_eval_params(s_acc, p_acc)  # through the MultiSteps state
    np.testing.assert_allclose(eval_acc, eval_big, rtol=0, atol=tol)
    assert float(jnp.max(jnp.abs(eval_big - p_big))) > 1e-3  # x and y do differ


def test_optax_eval_params_cannot_read_a_multisteps_state(standard_promotion):
    tx = optax.MultiSteps(optax.contrib.schedule_free_sgd(0.1), 2)
    params = jnp.ones(3)
    with pytest.raises(AttributeError):
        optax.contrib.schedule_free_eval_params(tx.init(params), params)


def test_multisteps_inside_schedule_free_is_wrong():
    # The documented wrong order: the averaging runs on every mini-step.
    k = 2
    right = adaptx.MultiSteps(adaptx.schedule_free_sgd(0.1), k)
    wrong = adaptx.schedule_free(adaptx.MultiSteps(adaptx.sgd(0.1), k), 0.1)
    outs = []
    for tx in (right, wrong):
        outs.append(run(tx, steps=4 * k)[-1])
    assert np.max(np.abs(outs[0] - outs[1])) > 1e-2


def test_eval_params_needs_exactly_one_state():
    with pytest.raises(ValueError, match="exactly one ScheduleFreeState"):
        adaptx.schedule_free_eval_params(adaptx.adam(0.1).init(jnp.ones(2)), jnp.ones(2))


# --- numerics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    # schedule_free_adamw is left out until scale_by_rms's guarded division stops
    # turning a NaN denominator into a zero step (it does so today).
    [adaptx.prodigy, adaptx.dadapt_adamw, adaptx.schedule_free_sgd],
)
def test_nan_gradient_gives_nan_and_zero_gradient_gives_zero(make):
    tx = make()
    params = jnp.ones(3)
    u, state = tx.update(jnp.zeros(3), tx.init(params), params)
    assert bool(jnp.all(u == 0))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))
    u, _ = tx.update(jnp.array([1.0, jnp.nan, 1.0]), state, params)
    assert bool(jnp.isnan(u[1]))


@pytest.mark.parametrize("make", [adaptx.prodigy, adaptx.dadapt_adamw, adaptx.schedule_free_adamw])
def test_bfloat16_params_keep_dtype_and_float32_scalars(make):
    tx = make()
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    u, state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    assert u["a"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32
    scalars = [x for x in jax.tree.leaves(state) if x.ndim == 0 and x.dtype != jnp.int32]
    assert scalars and all(x.dtype == jnp.float32 for x in scalars)


# --- validation ---------------------------------------------------------------------------------

BAD = [
    (lambda: adaptx.schedule_free_adamw(b1=0.0), "b1 must be in"),
    (lambda: adaptx.schedule_free_adamw(b1=1.5), "b1 must be in"),
    (lambda: adaptx.schedule_free_adamw(b2=1.0), "b2 must be in"),
    (lambda: adaptx.schedule_free_sgd(-1.0), "learning_rate must be in"),
    (lambda: adaptx.schedule_free_sgd(warmup_steps=-1), "warmup_steps must be an integer"),
    (lambda: adaptx.schedule_free_sgd(weight_lr_power=-1.0), "weight_lr_power must be in"),
    (lambda: adaptx.schedule_free_sgd(r=float("nan")), "r must be in"),
    (lambda: adaptx.schedule_free(adaptx.sgd(1.0), 1.0, state_dtype="int32"), "state_dtype"),
    (lambda: adaptx.prodigy(betas=(0.9, 1.0)), r"betas\[1\] must be in"),
    (lambda: adaptx.prodigy(betas=0.9), "betas must be a pair"),
    (lambda: adaptx.prodigy(beta3=1.0), "beta3 must be in"),
    (lambda: adaptx.prodigy(estim_lr0=0.0), "estim_lr0 must be in"),
    (lambda: adaptx.prodigy(estim_lr_coef=-1.0), "estim_lr_coef must be in"),
    (lambda: adaptx.dadapt_adamw(eps=-1e-8), "eps must be in"),
    (lambda: adaptx.dadapt_adamw(weight_decay=-0.1), "weight_decay must be in"),
    (lambda: adaptx.dadapt_adamw(learning_rate=-1.0), "learning_rate must be in"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_hyperparameters_raise(i):
    make, match = BAD[i]
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "tx",
    [adaptx.prodigy(), adaptx.dadapt_adamw(), adaptx.schedule_free_sgd()],
    ids=["prodigy", "dadapt_adamw", "schedule_free_sgd"],
)
def test_update_without_params_raises(tx):
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_schedule_free_state_dtype_keeps_z_wide():
    tx = adaptx.schedule_free_adamw(0.1, state_dtype=jnp.float32)
    params = jnp.asarray(X1, jnp.bfloat16)
    state = tx.init(params)
    assert state.z.dtype == jnp.float32
    u, state = jax.jit(tx.update)(jnp.ones_like(params), state, params)
    assert u.dtype == jnp.bfloat16 and state.z.dtype == jnp.float32
    # z accumulates in float32 the base step, which arrives in the parameters' dtype:
    # -gamma * g / (|g| + eps) with g = 1, rounded to bfloat16 once.
    step = float(jnp.asarray(-0.1, jnp.bfloat16))
    z0 = np.asarray(params, np.float32)
    np.testing.assert_array_equal(np.asarray(state.z), z0 + np.float32(step))
