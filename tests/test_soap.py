"""SOAP: the float64 reference from the paper, the Adam fallback, memory, jit, validation.

optax 0.2.8 and torch 2.13 have no SOAP, so the float64 NumPy implementation
of Vyas et al.'s Algorithms 3 and 4 (``references_matrix.soap``) is the proof.
Square gradients keep both Kronecker factors full rank from the first step,
so their eigenvectors are unique up to sign (which SOAP's output does not
depend on); a rank-deficient factor has a degenerate zero eigenvalue whose
eigenvectors any two eigensolvers may choose differently.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import references_matrix as ref

import adaptx

STEPS = 9
FREQ = 3  # refreshes at Adam steps 3 and 6


def _directions(tx, grads, dtype=jnp.float32):
    grads = jnp.asarray(grads, dtype)
    state = tx.init(grads[0])
    update = jax.jit(tx.update)
    out = []
    for g in grads:
        u, state = update(g, state)
        out.append(np.asarray(u, np.float64))
    return np.stack(out), state


@pytest.mark.parametrize("eigenbasis", ["qr", "eigh"])
def test_matches_the_float64_reference_in_float64(eigenbasis, x64):
    grads = ref.matrix_sequence(STEPS, 4, 4, seed=1)
    tx = adaptx.scale_by_soap(precondition_frequency=FREQ, eigenbasis=eigenbasis)
    got, _ = _directions(tx, grads, jnp.float64)
    want = ref.soap(grads, frequency=FREQ, eigenbasis=eigenbasis)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_matches_the_float64_reference_in_float32():
    grads = ref.matrix_sequence(STEPS, 4, 4, seed=2)
    tx = adaptx.scale_by_soap(0.9, 0.99, shampoo_beta=0.9, precondition_frequency=FREQ)
    got, _ = _directions(tx, grads)
    want = ref.soap(grads, 0.9, 0.99, shampoo_beta=0.9, frequency=FREQ)
    # float32 rotations; Adam's ratio amplifies the error of coordinates near 0.
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_axes_above_max_precond_dim_are_not_rotated(x64):
    grads = ref.matrix_sequence(STEPS, 3, 7, seed=3)
    tx = adaptx.scale_by_soap(precondition_frequency=FREQ, max_precond_dim=5)
    got, state = _directions(tx, grads, jnp.float64)
    assert state.factors[1] is None and state.factors[0].shape == (3, 3)
    want = ref.soap(grads, frequency=FREQ, rotate=(True, False))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_vectors_and_scalars_fall_back_to_adam(x64):
    rng = np.random.default_rng(4)
    grads = rng.normal(size=(STEPS, 5))
    tx = adaptx.scale_by_soap(precondition_frequency=FREQ)
    got, state = _directions(tx, grads, jnp.float64)
    assert state.factors == (None,) and state.eigenbases == (None,)
    np.testing.assert_allclose(got, ref.adam_lagged(grads), rtol=1e-12, atol=1e-14)
    got, _ = _directions(tx, grads[:, 0], jnp.float64)
    np.testing.assert_allclose(got, ref.adam_lagged(grads[:, :1])[:, 0], rtol=1e-12)


def test_eigenbases_stay_orthogonal_and_diagonalise_their_factors():
    grads = ref.matrix_sequence(2 + 2 * FREQ, 6, 6, seed=5)
    tx = adaptx.scale_by_soap(precondition_frequency=1, eigenbasis="eigh")
    _, state = _directions(tx, grads)
    for f, q in zip(state.factors, state.eigenbases):
        np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-5)
        d = np.asarray(q.T @ f @ q)
        off = d - np.diag(np.diag(d))
        assert np.max(np.abs(off)) < 1e-5 * np.max(np.abs(d))
        assert np.all(np.diff(np.diag(d)) <= 1e-6)  # decreasing eigenvalues


def test_higher_rank_tensor_gets_one_factor_per_axis():
    tx = adaptx.scale_by_soap(precondition_frequency=2, max_precond_dim=4)
    params = jnp.zeros((2, 3, 5))
    state = tx.init(params)
    assert [None if f is None else f.shape for f in state.factors] == [(2, 2), (3, 3), None]
    grads = ref.matrix_sequence(5, 2, 15, seed=6).reshape(5, 2, 3, 5)
    out, _ = _directions(tx, grads)
    assert np.all(np.isfinite(out)) and out.shape == (5, 2, 3, 5)


def test_first_call_builds_the_preconditioner_and_nan_propagates():
    tx = adaptx.scale_by_soap()
    update = jax.jit(tx.update)
    g = jnp.asarray(ref.matrix_sequence(1, 3, 3)[0], jnp.float32)
    state = tx.init(g)
    out, state = update(g, state)
    np.testing.assert_array_equal(out, 0.0)
    assert float(jnp.max(jnp.abs(state.factors[0]))) > 0
    bad = g.at[0, 0].set(jnp.nan)
    out, _ = update(bad, tx.init(g))
    assert bool(jnp.isnan(out[0, 0]))
    out, _ = update(bad, state)
    assert bool(jnp.all(jnp.isnan(out)))


def test_one_compiled_program_refreshes_under_scan_and_is_deterministic():
    # The refresh is a lax.switch on the traced count: a scan of 8 steps with a refresh
    # every 3 compiles once, and two runs are bit-identical.
    grads = jnp.asarray(ref.matrix_sequence(8, 4, 3, seed=7), jnp.float32)
    tx = adaptx.scale_by_soap(precondition_frequency=3)

    @jax.jit
    def run(gs):
        def body(state, g):
            u, state = tx.update(g, state)
            return state, u

        return jax.lax.scan(body, tx.init(gs[0]), gs)

    (s1, u1), (s2, u2) = run(grads), run(grads)
    np.testing.assert_array_equal(u1, u2)
    jax.tree.map(np.testing.assert_array_equal, s1, s2)
    assert run._cache_size() == 1


# --- memory ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, dtype, max_dim",
    [
        ((768,), jnp.float32, 10000),
        ((256, 256), jnp.float32, 10000),
        ((64, 512), jnp.bfloat16, 10000),
        ((3, 3, 16, 32), jnp.float32, 10000),
        ((50304, 768), jnp.float32, 10000),
        ((300, 40), jnp.float32, 100),
    ],
)
def test_state_memory_follows_the_documented_formula(shape, dtype, max_dim):
    tx = adaptx.scale_by_soap(max_precond_dim=max_dim)
    state = jax.eval_shape(tx.init, jax.ShapeDtypeStruct(shape, dtype))
    measured = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    n = int(np.prod(shape))
    factor_elems = sum(d * d for d in shape if len(shape) >= 2 and d <= max_dim)
    # mu and nu in the parameter's dtype; factors and bases in float32; an int32 count.
    formula = 2 * n * jnp.dtype(dtype).itemsize + 2 * 4 * factor_elems + 4
    assert measured == formula


def test_memory_figures_in_the_docstring():
    # The table of adaptx._soap's docstring, recomputed: SOAP / Adam state for (1024, 4096).
    tx = adaptx.scale_by_soap()
    state = jax.eval_shape(tx.init, jax.ShapeDtypeStruct((1024, 4096), jnp.float32))
    soap_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    assert soap_bytes - 4 == 168 * 2**20
    adam = jax.eval_shape(adaptx.scale_by_adam().init, jax.ShapeDtypeStruct((1024, 4096), "f4"))
    assert sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(adam)) - 4 == 32 * 2**20


# --- the alias and validation --------------------------------------------------------------


def test_soap_alias_adds_decoupled_weight_decay_and_the_learning_rate():
    lr, wd = 0.01, 0.1
    params = jnp.asarray(ref.matrix_sequence(1, 4, 4, seed=8)[0], jnp.float32)
    grads = ref.matrix_sequence(4, 4, 4, seed=9)
    dirs, _ = _directions(adaptx.scale_by_soap(), grads)
    tx = adaptx.soap(lr, weight_decay=wd)
    state = tx.init(params)
    for g, d in zip(grads, dirs):
        u, state = jax.jit(tx.update)(jnp.asarray(g, jnp.float32), state, params)
        np.testing.assert_allclose(u, -lr * (d + wd * np.asarray(params)), rtol=1e-5, atol=1e-8)


def test_soap_trains_a_small_least_squares_problem():
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
    w_true = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
    y = x @ w_true

    def loss(w):
        return jnp.mean(jnp.square(x @ w - y))

    tx = adaptx.soap(0.05, weight_decay=0.0)

    @jax.jit
    def step(w, state):
        u, state = tx.update(jax.grad(loss)(w), state, w)
        return adaptx.apply_updates(w, u), state

    w = jnp.zeros((8, 4))
    state = tx.init(w)
    start = float(loss(w))
    for _ in range(150):
        w, state = step(w, state)
    assert float(loss(w)) < 1e-2 * start


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: adaptx.scale_by_soap(b1=1.0), r"b1 must be in \[0.0, 1.0\), got 1.0"),
        (lambda: adaptx.scale_by_soap(b2=-0.1), r"b2 must be in"),
        (lambda: adaptx.scale_by_soap(eps=-1.0), r"eps must be in"),
        (lambda: adaptx.scale_by_soap(shampoo_beta=1.5), r"shampoo_beta must be in"),
        (
            lambda: adaptx.scale_by_soap(precondition_frequency=0),
            r"precondition_frequency must be an integer >= 1, got 0",
        ),
        (
            lambda: adaptx.scale_by_soap(max_precond_dim=2.5),
            r"max_precond_dim must be an integer >= 1, got float 2.5",
        ),
        (lambda: adaptx.scale_by_soap(eigenbasis="svd"), r"eigenbasis must be one of"),
        (lambda: adaptx.soap(-1.0), r"learning_rate must be in"),
        (lambda: adaptx.soap(weight_decay=-1.0), r"weight_decay must be in"),
        (
            lambda: adaptx.scale_by_soap().init(jnp.zeros((2, 2), jnp.complex64)),
            r"supports real parameters, got a complex64 leaf of shape \(2, 2\)",
        ),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_inject_hyperparams_is_bit_identical_with_integer_arguments_static():
    params = jnp.asarray(ref.matrix_sequence(1, 3, 3, seed=11)[0], jnp.float32)
    static = ("precondition_frequency", "max_precond_dim")
    injected = adaptx.inject_hyperparams(adaptx.soap, static_args=static)(0.01)
    plain = adaptx.soap(0.01)
    s1, s2 = injected.init(params), plain.init(params)
    for g in jnp.asarray(ref.matrix_sequence(3, 3, 3, seed=12), jnp.float32):
        u1, s1 = jax.jit(injected.update)(g, s1, params)
        u2, s2 = jax.jit(plain.update)(g, s2, params)
        np.testing.assert_array_equal(u1, u2)
