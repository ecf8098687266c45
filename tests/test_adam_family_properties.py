"""Properties of the Adam family: invariances, bounds, the papers' examples, peers' defects,
dtypes, complex parameters, validation and run-time hyper-parameters."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import references_adam as R
from adam_runs import rel_diff, run
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptx
from adaptx._radam import radam_rho

FEW = settings(max_examples=8, deadline=None, derandomize=True)
STEPS, N = 12, 4


def _sequence(seed: int, *, zeros: bool) -> np.ndarray:
    """A random ``(STEPS, N)`` float32 gradient sequence: magnitudes over 4 decades, random
    signs, and (with ``zeros``) some exact zeros and a spike."""
    rng = np.random.default_rng(seed)
    g = rng.choice([-1.0, 1.0], (STEPS, N)) * 10.0 ** rng.uniform(-2, 2, (STEPS, N))
    if zeros:
        g[rng.random((STEPS, N)) < 0.2] = 0.0
        g[rng.integers(STEPS), rng.integers(N)] *= 1e3
    return g.astype(np.float32)


@functools.cache
def _scan(tx: adaptx.GradientTransformation):
    """A jitted ``grads (T, N) -> updates (T, N)`` for ``tx`` (params zero, unchanged)."""

    def f(grads):
        params = jnp.zeros(grads.shape[1:], grads.dtype)

        def body(state, g):
            u, state = tx.update(g, state, params)
            return state, u

        return jax.lax.scan(body, tx.init(params), grads)[1]

    return jax.jit(f)


# --- invariances and bounds -----------------------------------------------------------------------

ADAM = adaptx.scale_by_adam()


@FEW
@given(st.integers(0, 2**16), st.floats(1e-2, 1e2))
def test_adam_update_is_invariant_to_gradient_scale(seed, c):
    g = np.abs(_sequence(seed, zeros=False)) * np.sign(_sequence(seed + 1, zeros=False))
    g = np.where(np.abs(g) < 1e-1, 1e-1, g).astype(np.float32)  # |g| >= 0.1: eps is negligible
    base = np.asarray(_scan(ADAM)(jnp.asarray(g)))
    scaled = np.asarray(_scan(ADAM)(jnp.asarray(g * np.float32(c))))
    # Invariant but for eps: |g| >= 0.1 c keeps sqrt(v_hat) >= 0.1 c sqrt(1 - b2) >= 0.003 c,
    # so eps = 1e-8 moves the step by at most eps / (0.003 c) relative (and float32 rounding).
    tol = 1e-5 + 1e-8 / (0.003 * min(c, 1.0))
    assert rel_diff(scaled, base) <= tol


ADAMAX = adaptx.scale_by_adamax()
ADAMAX_BOUND = (1 - 0.9) / (1 - 0.9 / 0.999)  # 1.0091: what bounds |out| exactly


@FEW
@given(st.integers(0, 2**16))
def test_adamax_step_is_bounded_by_the_learning_rate(seed):
    out = np.asarray(_scan(ADAMAX)(jnp.asarray(_sequence(seed, zeros=True))))
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out)) <= ADAMAX_BOUND * (1 + 1e-6)


def test_adamax_bound_is_tight_and_slightly_above_one():
    # The paper says |Delta_t| <= alpha. A gradient shrinking by b2 per step keeps every past
    # gradient in u_t and gets |out_t| -> (1 - b1) / (1 - b1 / b2) = 1.009 > 1.
    g = (0.999 ** np.arange(1, 201)).astype(np.float32)[:, None]
    out = np.asarray(_scan(adaptx.scale_by_adamax(eps=0.0))(jnp.asarray(g)))
    assert 1.009 < np.max(np.abs(out)) <= ADAMAX_BOUND * (1 + 1e-6)


def test_adamw_zero_gradient_shrinks_params_exactly_and_adam_l2_does_not(x64):
    lr, wd, steps = 0.01, 0.1, 20
    params0 = np.array([3.0, -0.5, 1e-3])
    zero = np.zeros((steps, 3))
    adamw = run(adaptx.adamw(lr, weight_decay=wd), zero, params0, jnp.float64)
    params = params0 + np.cumsum(adamw, axis=0)
    want = params0 * (1 - lr * wd) ** np.arange(1, steps + 1)[:, None]
    np.testing.assert_allclose(params, want, rtol=1e-13)
    # Adam + L2: the penalty's gradient wd * theta is normalised away: each step is about
    # lr * sign(theta), whatever theta's size.
    l2 = run(
        adaptx.chain(adaptx.add_decayed_weights(wd), adaptx.adam(lr)), zero, params0, jnp.float64
    )
    np.testing.assert_allclose(l2[0], -lr * np.sign(params0), rtol=1e-4)
    assert rel_diff(l2, adamw) > 0.5


def test_adamw_is_invariant_to_loss_scale_and_adam_l2_is_not(x64):
    params0 = np.array([0.5, -1.0, 2.0, 0.0, 1.5, -0.25])
    adamw = lambda: adaptx.adamw(0.01, weight_decay=0.1)
    adam_l2 = lambda: adaptx.chain(adaptx.add_decayed_weights(0.1), adaptx.adam(0.01))
    g = R.gradient_sequence()[:, :] + 0.05  # no zero coordinate: eps stays negligible
    for make, invariant in ((adamw, True), (adam_l2, False)):
        base = run(make(), g, params0, jnp.float64)
        scaled = run(make(), 1000.0 * g, params0, jnp.float64)
        assert (rel_diff(scaled, base) < 1e-6) == invariant


@FEW
@given(st.integers(0, 2**16), st.sampled_from([0.95, 0.999, 0.9999, 0.99999]))
def test_radam_first_steps_are_momentum_sgd_with_bias_correction(seed, b2):
    g = np.abs(_sequence(seed, zeros=False)) + 0.1
    g *= np.sign(_sequence(seed + 1, zeros=False))
    first = R.first_rectified_step(float(np.float32(b2)))
    assert first == 6
    out = np.asarray(_scan(adaptx.scale_by_radam(b2=b2))(jnp.asarray(g, jnp.float32)))
    m, m_hat = np.zeros(N), []
    for t in range(1, first + 1):
        m = 0.9 * m + 0.1 * g[t - 1]
        m_hat.append(m / (1 - 0.9**t))
    assert rel_diff(out[: first - 1], m_hat[:-1]) <= 1e-6
    assert rel_diff(out[first - 1 : first], m_hat[-1:]) > 1e-3


def test_b1_decay_bias_correction_keeps_m_hat_an_average():
    # With beta1_t = b1 lam**(t-1) the weights sum to 1 - prod(beta1_i): a constant gradient
    # gives m_hat = g exactly, so the step is g / (|g| + eps) at every t.
    g = jnp.full((30, 2), jnp.array([2.0, -0.5], jnp.float32))
    out = _scan(adaptx.scale_by_adam(b1=0.95, b1_decay=0.9))(g)
    np.testing.assert_allclose(out, np.sign(np.asarray(g)), rtol=1e-6)


# --- the papers' examples and the peers' defects -------------------------------------------------


def _online_on_interval(tx, steps: int) -> np.ndarray:
    """Reddi et al.'s Figure 1 problem: f_t(x) = 1010 x if t mod 101 = 1 else -10 x, on [-1, 1]."""

    def body(carry, t):
        x, state = carry
        g = jnp.where(t % 101 == 1, 1010.0, -10.0).astype(jnp.float32)[None]
        u, state = tx.update(g, state, x)
        x = jnp.clip(adaptx.apply_updates(x, u), -1.0, 1.0)  # projection onto [-1, 1]
        return (x, state), x[0]

    x0 = jnp.zeros(1, jnp.float32)
    run_ = jax.jit(lambda: jax.lax.scan(body, (x0, tx.init(x0)), jnp.arange(1, steps + 1))[1])
    return np.asarray(run_())


def test_amsgrad_counterexample_of_reddi_et_al():
    # b1 = 0.9, b2 = 0.99, alpha_t = alpha / sqrt(t). The optimum is x = -1 (the average
    # gradient is +10/101); Adam is driven to +1, AMSGrad heads to -1.
    lr = adaptx.inverse_sqrt_schedule(1.0)
    steps = 101 * 100
    adam = _online_on_interval(adaptx.adam(lr, b1=0.9, b2=0.99), steps)
    ams = _online_on_interval(adaptx.amsgrad(lr, b1=0.9, b2=0.99), steps)
    paper = _online_on_interval(adaptx.amsgrad(lr, b1=0.9, b2=0.99, variant="paper"), steps)
    last = slice(-101, None)
    assert adam[last].mean() > 0.9 and adam[-1] == 1.0
    assert ams[last].mean() < -0.7 and paper[last].mean() < -0.5
    assert ams[last].mean() < ams[steps // 2 : steps // 2 + 101].mean()  # still heading down


def _first_rectified(out: np.ndarray, g: np.ndarray, b1: float = 0.9) -> int:
    """The first step whose RAdam output is not the momentum step m_hat."""
    m = np.zeros(g.shape[1])
    for t, (o, gt) in enumerate(zip(out, g), start=1):
        m = b1 * m + (1 - b1) * gt
        if not np.allclose(o, m / (1 - b1**t), rtol=1e-4, atol=0):
            return t
    raise AssertionError("never rectified")


@pytest.mark.parametrize("b2, optax_first", [(0.999, 6), (0.9999, 2), (0.99999, 1)])
def test_radam_first_rectifies_at_step_6_and_optax_earlier(b2, optax_first):
    g = R.gradient_sequence()[:10]
    assert R.first_rectified_step(b2) == 6  # exact rho_t, threshold 5
    ours = run(adaptx.scale_by_radam(b2=b2), g, np.zeros(6), jnp.float32)
    assert _first_rectified(ours, g) == 6
    with jax.enable_x64(True):
        ours64 = run(adaptx.scale_by_radam(b2=b2), g, np.zeros(6), jnp.float64)
    assert _first_rectified(ours64, g) == 6
    # optax 0.2.8 computes rho_t in float32 as written: rho_2 = 6.3 at b2 = 0.9999, and
    # rho_1 > 5 at b2 = 0.99999, so it rectifies from step 2 and step 1.
    theirs = run(optax.scale_by_radam(b2=b2), g, np.zeros(6), jnp.float32, standard=True)
    assert _first_rectified(theirs, g) == optax_first


@pytest.mark.parametrize("b2", [0.0, 0.3, 0.6, 0.9, 0.99, 0.999, 0.9999, 0.99999])
def test_radam_rho_is_accurate(b2, jit):
    counts = [1, 2, 3, 4, 5, 6, 7, 10, 30, 100, 1000]
    for dtype, tol in ((jnp.float32, 1e-6), (jnp.float64, 1e-14)):
        with jax.enable_x64(dtype == jnp.float64):
            f = jit(jax.vmap(lambda c: radam_rho(b2, c, dtype)))
            got = np.asarray(f(jnp.asarray(counts, jnp.int32)), np.float64)
        b = float(np.float32(b2)) if dtype == jnp.float32 else b2
        want = np.array([R.radam_rho(b, t) for t in counts])
        np.testing.assert_allclose(got, want, rtol=tol)
    big = radam_rho(b2, jnp.asarray(2**31 - 1, jnp.int32))
    np.testing.assert_allclose(big, 2 / (1 - np.float32(b2)) - 1, rtol=1e-6)  # rho_inf


# --- dtypes and complex parameters ----------------------------------------------------------------

TRANSFORMS = {
    "scale_by_adam": adaptx.scale_by_adam,
    "scale_by_adam[b1_decay]": functools.partial(adaptx.scale_by_adam, b1_decay=0.99),
    "scale_by_adamax": adaptx.scale_by_adamax,
    "scale_by_amsgrad": adaptx.scale_by_amsgrad,
    "scale_by_nadam": adaptx.scale_by_nadam,
    "scale_by_radam": adaptx.scale_by_radam,
}
MOMENT_FIELDS = ("mu", "nu", "nu_max")


@pytest.mark.parametrize("name", TRANSFORMS)
def test_bf16_params_with_float32_state(name):
    g = R.gradient_sequence()[:8]
    make = TRANSFORMS[name]
    tx = make(mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    params = jnp.zeros(6, jnp.bfloat16)
    state = tx.init(params)
    for f in MOMENT_FIELDS:
        if hasattr(state, f):
            assert getattr(state, f).dtype == jnp.float32
    got = run(tx, g, np.zeros(6), jnp.bfloat16)  # asserts updates come out in bfloat16
    want = run(make(), g.astype(jnp.bfloat16).astype(np.float32), np.zeros(6), jnp.float32)
    assert rel_diff(got, want) < 1e-2  # the bfloat16 rounding of the output
    default = make().init(params)
    assert all(getattr(default, f).dtype == jnp.bfloat16 for f in ("mu", "nu"))


def test_float16_params_zero_gradient_stays_finite():
    # optax's float16 Adam gives NaN here (eps = 1e-8 underflows in float16); adaptx computes
    # in float32 and rounds the result once.
    out = run(adaptx.adam(1e-3), np.zeros((3, 2)), np.ones(2), jnp.float16)
    assert np.all(out == 0)


def test_nadam_product_is_float32_or_wider(x64):
    assert adaptx.scale_by_nadam().init(jnp.zeros(2, jnp.bfloat16)).mu_product.dtype == jnp.float32
    assert adaptx.scale_by_nadam().init(jnp.zeros(2, jnp.float64)).mu_product.dtype == jnp.float64


def test_adam_complex_matches_complex_reference():
    rng = np.random.default_rng(0)
    g = (rng.normal(size=(10, 3)) + 1j * rng.normal(size=(10, 3))).astype(np.complex64)
    g[:, 0] = 0
    m, v, want = np.zeros(3, complex), np.zeros(3), []
    for t, gt in enumerate(g.astype(complex), start=1):
        m = 0.9 * m + 0.1 * gt
        v = 0.999 * v + 0.001 * np.abs(gt) ** 2  # real: the second moment of |g|
        want.append(m / (1 - 0.9**t) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8))
    tx = adaptx.scale_by_adam()
    state = tx.init(jnp.zeros(3, jnp.complex64))
    assert state.mu.dtype == jnp.complex64 and state.nu.dtype == jnp.float32
    low = adaptx.scale_by_adam(mu_dtype=jnp.bfloat16, nu_dtype=jnp.complex64)
    low_state = low.init(jnp.zeros(3, jnp.complex64))  # a real mu_dtype means its complex kin
    assert low_state.mu.dtype == jnp.complex64 and low_state.nu.dtype == jnp.float32
    got = []
    for gt in g:
        u, state = tx.update(jnp.asarray(gt), state)
        got.append(np.asarray(u))
    want = np.array(want)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_complex_with_zero_imaginary_part_equals_real(name):
    g = R.gradient_sequence()[:10].astype(np.float32)
    real = np.asarray(_scan(TRANSFORMS[name]())(jnp.asarray(g)))
    cplx = np.asarray(_scan(TRANSFORMS[name]())(jnp.asarray(g, jnp.complex64)))
    np.testing.assert_allclose(cplx.real, real, rtol=1e-6, atol=1e-7)
    assert np.all(cplx.imag == 0)


# --- validation, run-time hyper-parameters, weight decay ------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: adaptx.scale_by_adam(b1=1.0), r"b1 must be in \[0.0, 1.0\), got 1.0"),
        (lambda: adaptx.adam(b2=-0.1), "b2 must be in"),
        (lambda: adaptx.adam(learning_rate=-1.0), "learning_rate"),
        (lambda: adaptx.scale_by_adam(eps=-1e-8), "eps must be in"),
        (lambda: adaptx.scale_by_adam(eps_root=float("nan")), "eps_root"),
        (lambda: adaptx.scale_by_adam(b1_decay=0.0), r"b1_decay must be in \(0.0, 1.0\]"),
        (lambda: adaptx.scale_by_adamax(b2=1.5), "b2"),
        (lambda: adaptx.scale_by_amsgrad(variant="torch"), "variant must be one of"),
        (lambda: adaptx.scale_by_nadam(momentum_decay=-1.0), "momentum_decay"),
        (lambda: adaptx.scale_by_radam(threshold=3.0), r"threshold must be in \[4.0, inf\)"),
        (lambda: adaptx.adamw(weight_decay=-1e-4), "weight_decay"),
        (lambda: adaptx.adam(nesterov=True, b1_decay=0.9), "nesterov"),
    ],
)
def test_invalid_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


RUNTIME = {
    "scale_by_adam": (adaptx.scale_by_adam, dict(b1=0.9, b2=0.99, eps=1e-6, b1_decay=0.95)),
    "scale_by_adamax": (adaptx.scale_by_adamax, dict(b1=0.8, b2=0.99, eps=1e-3)),
    "scale_by_amsgrad": (adaptx.scale_by_amsgrad, dict(b1=0.8, b2=0.99, eps_root=1e-9)),
    "scale_by_nadam": (adaptx.scale_by_nadam, dict(b1=0.9, b2=0.99, momentum_decay=0.05)),
    "scale_by_radam": (adaptx.scale_by_radam, dict(b1=0.9, b2=0.99, threshold=4.5)),
    "adamw": (adaptx.adamw, dict(learning_rate=0.01, b2=0.99, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", RUNTIME)
def test_runtime_hyperparameters_are_bit_identical_to_python_floats(name):
    make, hp = RUNTIME[name]
    g = jnp.asarray(R.gradient_sequence()[:8], jnp.float32)
    params = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32)

    def steps(hp):
        tx = make(**hp)
        return jax.lax.scan(lambda s, gt: tx.update(gt, s, params)[::-1], tx.init(params), g)[1]

    python = jax.jit(lambda: steps(hp))()
    arrays = jax.jit(steps)({k: jnp.float32(v) for k, v in hp.items()})  # traced
    np.testing.assert_array_equal(python, arrays)


def test_add_decayed_weights_needs_params():
    tx = adaptx.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    with pytest.raises(ValueError, match="needs the parameters"):
        adaptx.adamw().update(jnp.ones(2), adaptx.adamw().init(jnp.ones(2)))


def test_add_decayed_weights_mask_prefix_and_passthrough(jit):
    params = {"dense": {"w": jnp.ones(2), "b": jnp.ones(1)}, "norm": jnp.full(3, 2.0, jnp.bfloat16)}
    updates = {"dense": {"w": jnp.zeros(2), "b": jnp.zeros(1)}, "norm": jnp.ones(3, jnp.bfloat16)}
    tx = adaptx.add_decayed_weights(0.5, mask={"dense": True, "norm": False})  # a prefix
    out, _ = jit(tx.update)(updates, tx.init(params), params)
    np.testing.assert_array_equal(out["dense"]["w"], [0.5, 0.5])
    np.testing.assert_array_equal(out["dense"]["b"], [0.5])
    assert out["norm"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["norm"], updates["norm"])


def test_add_decayed_weights_rejects_a_traced_mask():
    tx = adaptx.add_decayed_weights(0.5, mask=lambda p: jnp.asarray(p > 0))
    with pytest.raises(TypeError, match="Python booleans"):
        jax.jit(tx.update)(jnp.ones(()), tx.init(jnp.ones(())), jnp.ones(()))
