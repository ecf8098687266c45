"""Adafactor: the paper's algorithm (float64 NumPy reference), optax's and torch's settings."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from references_adafactor import Adafactor, paper_rho

import adaptx

TORCH = json.loads((Path(__file__).parent / "data" / "torch_adafactor.json").read_text())
SHAPES = {"w": (4, 6), "t": (2, 3, 5), "b": (5,), "s": ()}


def _problem(steps, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [
        {k: (rng.standard_normal(s) * (1 + t % 3)).astype(dtype) for k, s in SHAPES.items()}
        for t in range(steps)
    ]
    return p0, grads


def _run(tx, p0, grads, jit=jax.jit):
    params = jax.tree.map(jnp.asarray, p0)
    state = tx.init(params)
    step = jit(tx.update)
    out = []
    for g in grads:
        u, state = step(jax.tree.map(jnp.asarray, g), state, params)
        params = adaptx.apply_updates(params, u)
        out.append(params)
    return out, state


def _paths(state):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


def _max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --- the paper ----------------------------------------------------------------------------


PAPER_CASES = {
    "defaults": ({}, {}),
    "lr_momentum_decay": (
        {
            "learning_rate": 0.05,
            "momentum": 0.9,
            "dtype_momentum": None,
            "weight_decay_rate": 1e-2,
            "decay_rate": 0.5,
        },
        {"rho": lambda t: 0.05, "momentum": 0.9, "weight_decay": 1e-2, "c": 0.5},
    ),
    "no_clipping_no_param_scale": (
        {"clipping_threshold": None, "multiply_by_parameter_scale": False, "learning_rate": 0.1},
        {"d": None, "param_scale": False, "rho": lambda t: 0.1},
    ),
    "clip_2_unfactored": ({"clipping_threshold": 2.0, "factored": False}, {"d": 2.0}),
}


@pytest.mark.parametrize("case", list(PAPER_CASES))
def test_matches_the_paper_float64(case, x64, jit):
    ours_kw, ref_kw = PAPER_CASES[case]
    factored = ours_kw.get("factored", True)
    p0, grads = _problem(15 if jit is jax.jit else 3)  # eager steps are slow
    tx = adaptx.adafactor(min_dim_size_to_factor=2, **ours_kw)
    traj, _ = _run(tx, p0, grads, jit)
    ref_kw = {"rho": paper_rho, **ref_kw}
    axes = {"w": (0, 1), "t": (1, 2)} if factored else {}
    refs = {k: Adafactor(s, axes.get(k), **ref_kw) for k, s in SHAPES.items()}
    # The default relative step size is a float32 schedule (adaptx's schedules are float32):
    # its rounding (~3e-8 of a step) bounds the agreement, not the algorithm.
    tol = 1e-12 if "learning_rate" in ours_kw else 1e-8
    x = dict(p0)
    for t, g in enumerate(grads):
        x = {k: refs[k].step(x[k], g[k]) for k in SHAPES}
        for k in SHAPES:
            assert _max_rel(traj[t][k], x[k]) < tol, (case, t, k)


def test_first_step_is_rho_times_param_rms_along_the_sign():
    # The first estimate is G**2 itself, so G / sqrt(V) = sign(G) before clipping (RMS 1).
    params = {"w": jnp.full((3, 4), 2.0), "b": jnp.array([0.0, 0.0, 0.0])}
    grads = {"w": jnp.array([[1.0, -2.0, 3.0, -4.0]] * 3), "b": jnp.array([1.0, -5.0, 0.5])}
    tx = adaptx.adafactor(min_dim_size_to_factor=2)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["w"], -0.01 * 2.0 * np.sign(grads["w"]), rtol=1e-6)
    # A zero-initialised block moves by eps2 * rho = 1e-3 * 1e-2.
    np.testing.assert_allclose(u["b"], -1e-5 * np.sign(grads["b"]), rtol=1e-6)


def test_factored_state_is_sublinear():
    params = {"w": jnp.zeros((512, 1024)), "b": jnp.zeros(1024)}
    state = adaptx.scale_by_factored_rms().init(params)
    n = sum(x.size for x in jax.tree.leaves(state))
    assert n == 512 + 1024 + 1 + 1024 + 2 + 1  # rows, cols, placeholder; the vector; count
    assert n < 0.01 * 512 * 1024
    # Rank 3: the two largest axes are factored, the small one is kept.
    state = adaptx.scale_by_factored_rms().init(jnp.zeros((200, 8, 300)))
    assert (state.v_row.shape, state.v_col.shape, state.v.shape) == ((200, 8), (8, 300), (1,))


def test_factored_dims_rule():
    from adaptx._adafactor import factored_dims

    assert factored_dims((3, 4), True, 2) == (0, 1)
    assert factored_dims((4, 3), True, 2) == (1, 0)
    assert factored_dims((4, 3), True, 4) is None  # second largest below the minimum
    assert factored_dims((4, 3), False, 1) is None
    assert factored_dims((7,), True, 1) is None
    assert factored_dims((2, 9, 5), True, 1) == (2, 1)


# --- optax ----------------------------------------------------------------------------------


OPTAX_CASES = {
    "lr": dict(learning_rate=0.01, min_dim_size_to_factor=2),
    "momentum_weight_decay": dict(
        learning_rate=0.01, min_dim_size_to_factor=2, momentum=0.9, weight_decay_rate=1e-3
    ),
    "schedule_unclipped_unscaled": dict(
        learning_rate=optax.linear_schedule(0.1, 0.01, 10),
        min_dim_size_to_factor=2,
        clipping_threshold=None,
        multiply_by_parameter_scale=False,
    ),
    "unfactored_offset": dict(learning_rate=0.02, factored=False, decay_offset=3, eps=1e-20),
    "default_min_dim": dict(learning_rate=0.01, decay_rate=0.6),
}


@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_matches_optax_and_has_its_state_layout(case):
    kw = OPTAX_CASES[case]
    p0, grads = _problem(12, np.float32)
    ours, s_ours = _run(adaptx.adafactor(**kw), p0, grads)
    theirs, s_theirs = _run(optax.adafactor(**kw), p0, grads)
    assert _paths(s_ours) == _paths(s_theirs)
    assert jax.tree.map(jnp.shape, s_ours) == jax.tree.map(jnp.shape, s_theirs)
    for a, b in zip(jax.tree.leaves(ours[-1]), jax.tree.leaves(theirs[-1])):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)
    for a, b in zip(jax.tree.leaves(s_ours), jax.tree.leaves(s_theirs)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-30)


def test_optax_default_takes_no_learning_rate_adaptx_the_papers():
    # optax.adafactor() has learning_rate=None: rho_t = 1, a first step of RMS(params) per
    # block, 100x the paper's rho_1 = min(1e-2, 1) (adaptx's default).
    p0, grads = _problem(3, np.float32)
    theirs, _ = _run(optax.adafactor(), p0, grads)
    as_optax, _ = _run(adaptx.adafactor(learning_rate=1.0), p0, grads)
    for a, b in zip(jax.tree.leaves(as_optax[-1]), jax.tree.leaves(theirs[-1])):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)
    params, g = jax.tree.map(jnp.asarray, p0), jax.tree.map(jnp.asarray, grads[0])
    ours = adaptx.adafactor()
    theirs = optax.adafactor()
    u_ours, _ = jax.jit(ours.update)(g, ours.init(params), params)
    u_theirs, _ = jax.jit(theirs.update)(g, theirs.init(params), params)
    for a, b in zip(jax.tree.leaves(u_theirs), jax.tree.leaves(u_ours)):
        np.testing.assert_allclose(a, 100 * b, rtol=1e-5)


def test_scale_by_factored_rms_matches_optax_on_rank3():
    params = {"t": jnp.ones((6, 2, 5)), "u": jnp.ones((3, 7, 4))}
    rng = np.random.default_rng(3)
    ours = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2)
    theirs = optax.scale_by_factored_rms(min_dim_size_to_factor=2)
    so, st = ours.init(params), theirs.init(params)
    assert _paths(so) == _paths(st)
    assert jax.tree.map(jnp.shape, so) == jax.tree.map(jnp.shape, st)
    for _ in range(4):
        g = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params)
        uo, so = ours.update(g, so, params)
        ut, st = theirs.update(g, st, params)
        for a, b in zip(jax.tree.leaves(uo), jax.tree.leaves(ut)):
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_decay_rate_fn_and_step_offset_match_optax():
    # Zhai et al. (2021) cap the decay so the second moment keeps moving: a user schedule.
    def capped(step, rate):
        t = jnp.asarray(step, jnp.float32) + 1
        return jnp.minimum(1.0 - t ** (-rate), 0.5)  # binds from t = 3 (1 - 3**-0.8 = 0.58)

    params = {"w": jnp.ones((4, 6)), "b": jnp.ones(6)}
    kw = dict(min_dim_size_to_factor=2, decay_rate=0.8, step_offset=2, decay_rate_fn=capped)
    ours, theirs = adaptx.scale_by_factored_rms(**kw), optax.scale_by_factored_rms(**kw)
    so, st = ours.init(params), theirs.init(params)._replace(count=jnp.asarray(2, jnp.int32))
    so = so._replace(count=jnp.asarray(2, jnp.int32))
    rng = np.random.default_rng(6)
    for _ in range(6):
        g = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params)
        uo, so = ours.update(g, so, params)
        with jax.numpy_dtype_promotion("standard"):
            ut, st = theirs.update(g, st, params)
        for a, b in zip(jax.tree.leaves(uo), jax.tree.leaves(ut)):
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_complex_gradients_use_the_modulus():
    # optax's version fails on complex leaves under strict promotion; adaptx scales a
    # complex gradient by the statistics of |g|: same magnitudes as the real |g|, same phase.
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    tx = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2)
    uz, _ = tx.update(jnp.asarray(z, jnp.complex64), tx.init(jnp.zeros((3, 4), jnp.complex64)))
    ua, _ = tx.update(jnp.asarray(np.abs(z), jnp.float32), tx.init(jnp.zeros((3, 4))))
    np.testing.assert_allclose(np.abs(uz), ua, rtol=1e-6)
    np.testing.assert_allclose(np.angle(uz), np.angle(z), atol=1e-6)


# --- torch ----------------------------------------------------------------------------------


def _torch_case(name):
    case = TORCH["cases"][name]
    kw = case["kwargs"]
    lr = kw.get("lr", 1e-2)
    ours = {
        "min_dim_size_to_factor": 0,
        "decay_rate": -kw.get("beta2_decay", -0.8),
        "clipping_threshold": kw.get("d", 1.0),
    }
    if "weight_decay" in kw:
        ours["weight_decay_rate"] = lr * kw["weight_decay"]
    return lr, ours, case["params"]


@pytest.mark.parametrize("name", list(TORCH["cases"]))
def test_matches_torch_float64(name, x64):
    lr, ours, expected = _torch_case(name)
    p0 = {k: np.array(v) for k, v in TORCH["params0"].items()}
    grads = [{k: np.array(v) for k, v in g.items()} for g in TORCH["grads"]]
    # The relative step computed in float64, so the comparison measures the algorithm.
    exact = adaptx.adafactor(
        lambda c: jnp.minimum(lr, 1 / jnp.sqrt(c.astype(jnp.float64) + 1)), **ours
    )
    traj, _ = _run(exact, p0, grads)
    for t, want in enumerate(expected):
        for k in want:
            assert _max_rel(traj[t][k], np.array(want[k])) < 1e-12, (name, t, k)
    # The documented mapping, with adaptx's float32 schedule: float32 rounding of rho only.
    traj, _ = _run(adaptx.adafactor(adaptx.relative_step_size(lr), **ours), p0, grads)
    for k in expected[-1]:
        assert _max_rel(traj[-1][k], np.array(expected[-1][k])) < 1e-6


# --- dtypes ------------------------------------------------------------------------------


def test_bfloat16_params_keep_sane_state_and_bfloat16_updates():
    p32, grads = _problem(8, np.float32)
    p32 = {"w": p32["w"], "b": p32["b"]}
    grads = [{"w": g["w"], "b": g["b"]} for g in grads]
    to16 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), t)
    p16, g16 = to16(p32), [to16(g) for g in grads]
    for nu_dtype, want in [(None, jnp.bfloat16), (jnp.float32, jnp.float32)]:
        tx = adaptx.adafactor(learning_rate=0.05, min_dim_size_to_factor=2, nu_dtype=nu_dtype)
        state = tx.init(p16)
        ref_state = tx.init(jax.tree.map(lambda x: x.astype(jnp.float32), p16))
        params, ref = p16, jax.tree.map(lambda x: x.astype(jnp.float32), p16)
        for g in g16:
            u, state = tx.update(g, state, params)
            assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
            ru, ref_state = tx.update(
                jax.tree.map(lambda x: x.astype(jnp.float32), g), ref_state, ref
            )
            for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ru)):
                np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=3e-2, atol=2e-3)
            params = adaptx.apply_updates(params, u)
            ref = adaptx.apply_updates(ref, ru)
        fact = state[0]
        assert fact.v_row["w"].dtype == want and fact.v["b"].dtype == want
        for x in jax.tree.leaves(fact):
            if jnp.issubdtype(x.dtype, jnp.floating):
                assert bool(jnp.all(jnp.isfinite(x.astype(jnp.float32))))
        np.testing.assert_allclose(
            np.asarray(fact.v_row["w"], np.float32), ref_state[0].v_row["w"], rtol=2e-2
        )


def test_float16_zero_gradient_does_not_divide_zero_by_zero():
    # eps = 1e-30 underflows to 0 in float16; the update is computed before rounding the state.
    params = {"w": jnp.ones((3, 4), jnp.float16), "b": jnp.ones(3, jnp.float16)}
    tx = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2)
    state = tx.init(params)
    for _ in range(2):
        u, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        for x in jax.tree.leaves(u):
            assert x.dtype == jnp.float16 and bool(jnp.all(x == 0))


def test_dead_units_give_zero_steps_not_nan():
    # A zero row and a zero column (an input that is always 0, a dead ReLU unit): their
    # statistics are ~epsilon = 1e-30 and r * c underflows in float32; the step must be 0.
    g = np.random.default_rng(5).standard_normal((6, 8)).astype(np.float32)
    g[2, :] = 0.0
    g[:, 3] = 0.0
    params = jnp.ones((6, 8))
    ours = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2)
    theirs = optax.scale_by_factored_rms(min_dim_size_to_factor=2)
    out, _ = ours.update(jnp.asarray(g), ours.init(params), params)
    want, _ = theirs.update(jnp.asarray(g), theirs.init(params), params)
    assert bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_array_equal(np.asarray(out)[g == 0], 0.0)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    # With epsilon = 0 a zero statistic is a true zero: still a zero step, not 0/0.
    tx = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2, epsilon=0.0)
    out, _ = tx.update(jnp.asarray(g), tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(out)[g == 0], 0.0)
    v = adaptx.scale_by_factored_rms(epsilon=0.0)
    out, _ = v.update(jnp.zeros(3), v.init(jnp.zeros(3)))
    np.testing.assert_array_equal(out, 0.0)


def test_nan_gradient_gives_nan_update():
    tx = adaptx.adafactor(min_dim_size_to_factor=2)
    params = jnp.ones((3, 4))
    u, _ = tx.update(jnp.full((3, 4), jnp.nan), tx.init(params), params)
    assert bool(jnp.all(jnp.isnan(u)))


# --- validation and tree checks ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"decay_rate": 1.5}, r"decay_rate must be in \[0.0, 1.0\], got 1.5"),
        ({"decay_rate": -0.8}, r"decay_rate must be in"),
        ({"clipping_threshold": 0.0}, r"clipping_threshold must be in \(0.0, inf\), got 0.0"),
        ({"momentum": 1.0}, r"momentum must be in \[0.0, 1.0\), got 1.0"),
        ({"eps": -1e-30}, r"eps must be in"),
        ({"learning_rate": -0.1}, r"learning_rate must be in"),
        ({"weight_decay_rate": -1.0}, r"weight_decay_rate must be in"),
        ({"decay_offset": -2}, r"decay_offset must be in"),
        ({"min_dim_size_to_factor": 2.5}, r"min_dim_size_to_factor must be an integer"),
        ({"nu_dtype": jnp.int32}, r"nu_dtype must be a floating dtype"),
    ],
)
def test_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adaptx.adafactor(**kwargs)


def test_param_block_rms_needs_params():
    tx = adaptx.scale_by_param_block_rms()
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_factored_state_rejects_updates_of_another_shape_without_params():
    tx = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2)
    state = tx.init({"w": jnp.zeros((3, 4))})
    with pytest.raises(adaptx.TreeMismatchError, match=r"\['w'\] has shape \(5, 4\)"):
        tx.update({"w": jnp.zeros((5, 4))}, state)
