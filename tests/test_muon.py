"""Muon: the float64 reference, optax.contrib's muon, routing, shape scaling, sharding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
import references_matrix as ref
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import adaptx

STEPS = 6


def _directions(tx, grads, dtype=jnp.float32):
    """The outputs of ``tx`` (jitted) for a ``(T, ...)`` gradient sequence."""
    grads = jnp.asarray(grads, dtype)
    state = tx.init(grads[0])
    update = jax.jit(tx.update)
    out = []
    for g in grads:
        u, state = update(g, state)
        out.append(np.asarray(u, np.float64))
    return np.stack(out)


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((4, 6), {}),
        ((7, 3), {"nesterov": False}),
        ((4, 6), {"bias_correction": True}),
        ((7, 3), {"beta": 0.5, "ns_steps": 3}),
    ],
    ids=["wide-default", "tall-heavy-ball", "wide-bias-corrected", "tall-beta-steps"],
)
def test_scale_by_muon_matches_the_float64_reference(shape, kwargs):
    grads = ref.matrix_sequence(STEPS, *shape)
    want = ref.muon(
        grads,
        beta=kwargs.get("beta", 0.95),
        nesterov=kwargs.get("nesterov", True),
        bias_correction=kwargs.get("bias_correction", False),
        steps=kwargs.get("ns_steps", 5),
    )
    got = _directions(adaptx.scale_by_muon(**kwargs), grads)
    # float32 matmuls in five quintic steps: ~1e-6 relative to entries of order 0.3.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_scale_by_muon_float64_matches_the_reference_to_rounding(x64):
    grads = ref.matrix_sequence(STEPS, 5, 3)
    got = _directions(adaptx.scale_by_muon(), grads, jnp.float64)
    # The state keeps the coefficients in float32 (as optax's does): 3.4445 is then
    # 3.44449996948..., a 1e-8 relative change that moves the output by ~1e-7.
    coeffs = np.asarray(ref.JORDAN, np.float32).astype(np.float64)
    np.testing.assert_allclose(got, ref.muon(grads, coeffs=coeffs), rtol=1e-11, atol=1e-12)


def test_newton_schulz_orthogonalises():
    # Jordan's quintic leaves the singular values in about [0.7, 1.2] (not 1): a claim
    # of the blog post; the classic cubic (1.5, -0.5, 0) converges to U V^T.
    g = ref.matrix_sequence(1, 16, 8, seed=3)[0]
    out = _directions(adaptx.scale_by_muon(nesterov=False), g[None])[0]
    s = np.linalg.svd(out, compute_uv=False)
    assert 0.6 < s.min() and s.max() < 1.25, s
    cubic = adaptx.scale_by_muon(ns_coeffs=(1.5, -0.5, 0.0), ns_steps=40, nesterov=False)
    u, _, vt = np.linalg.svd(g, full_matrices=False)
    np.testing.assert_allclose(_directions(cubic, g[None])[0], u @ vt, atol=1e-4)


def test_per_step_coefficient_rows():
    rows = ((4.0, -6.0, 2.9), (3.4, -4.7, 2.0), (3.0, -3.2, 1.2))
    grads = ref.matrix_sequence(3, 4, 5)
    got = _directions(adaptx.scale_by_muon(ns_coeffs=rows, ns_steps=3), grads)
    np.testing.assert_allclose(got, ref.muon(grads, coeffs=rows, steps=3), rtol=1e-4, atol=2e-5)


def test_bfloat16_newton_schulz_is_close_to_float32():
    grads = ref.matrix_sequence(3, 8, 8)
    f32 = _directions(adaptx.scale_by_muon(), grads)
    bf16 = _directions(adaptx.scale_by_muon(ns_dtype=jnp.bfloat16), grads)
    assert np.max(np.abs(bf16 - f32)) < 0.1  # bfloat16 keeps ~3 digits
    assert np.max(np.abs(bf16 - f32)) > 0  # and it did run in bfloat16


# --- the alias: shape scaling, weight decay, routing -------------------------------


def _tree_grads(params, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [
        jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
        for _ in range(steps)
    ]


def _run(tx, params, grads):
    state = tx.init(params)
    update = jax.jit(tx.update)
    outs = []
    for g in grads:
        u, state = update(g, state, params)
        outs.append(u)
    return outs, state


PARAMS = {
    "dense": jnp.ones((4, 6), jnp.float32) / 4,
    "bias": jnp.zeros(6, jnp.float32),
    "conv": jnp.ones((3, 3, 2, 5), jnp.float32) / 8,
    "scale": jnp.ones((), jnp.float32),
}


@pytest.mark.parametrize("rms", [0.2, None], ids=["moonlight", "jordan"])
def test_matrix_update_is_scaled_orthogonal_momentum_plus_decay(rms):
    lr, wd = 0.01, 0.1
    grads = _tree_grads(PARAMS, STEPS)
    outs, _ = _run(adaptx.muon(lr, weight_decay=wd, consistent_rms=rms), PARAMS, grads)
    dirs = ref.muon(np.stack([np.asarray(g["dense"], np.float64) for g in grads]))
    scale = ref.moonlight_scale(4, 6) if rms else ref.jordan_scale(4, 6)
    w = np.asarray(PARAMS["dense"], np.float64)
    for u, d in zip(outs, dirs):
        np.testing.assert_allclose(u["dense"], -lr * (scale * d + wd * w), rtol=1e-4, atol=1e-7)


def test_moonlight_scaling_gives_updates_the_rms_of_adamw():
    # Liu et al.: a full-rank m x n orthogonal update has RMS 1/sqrt(max(m, n)); times
    # 0.2 sqrt(max(m, n)) every matrix's update has RMS ~0.2 lr whatever its shape.
    params = {"a": jnp.zeros((32, 8)), "b": jnp.zeros((16, 64))}
    outs, _ = _run(adaptx.muon(1.0), params, _tree_grads(params, 1))
    for u in outs[0].values():
        assert 0.15 < float(jnp.sqrt(jnp.mean(u**2))) < 0.21


def test_default_routing_sends_matrices_to_muon_and_the_rest_to_adamw():
    tx = adaptx.muon(0.1)
    state = tx.init(PARAMS)
    muon_mu = state.inner_states["muon"].inner_state[0].mu
    adam_mu = state.inner_states["adam"].inner_state[0].mu
    assert [k for k, v in muon_mu.items() if not isinstance(v, adaptx.MaskedNode)] == ["dense"]
    assert sorted(k for k, v in adam_mu.items() if not isinstance(v, adaptx.MaskedNode)) == [
        "bias",
        "conv",
        "scale",
    ]


def test_dimension_numbers_route_conv_kernels_stacked_layers_and_fused_projections():
    dn = adaptx.MuonDimensionNumbers
    params = {
        "conv": jnp.zeros((3, 3, 2, 5)),  # h, w, c_in, c_out
        "stack": jnp.zeros((3, 4, 6)),  # layers, d_in, d_out (lax.scan)
        "qkv": jnp.zeros((4, 3, 2, 3)),  # d, (q, k, v), heads, head_dim
        "bias": jnp.zeros(6),
    }
    dims = {
        "conv": dn((0, 1, 2), 3),
        "stack": dn(1, 2),
        "qkv": dn(0, (2, 3)),
        "bias": None,
    }
    grads = _tree_grads(params, 2, seed=4)
    tx = adaptx.muon(1.0, consistent_rms=None, muon_weight_dimension_numbers=dims)
    outs, _ = _run(tx, params, grads)
    g = jax.tree.map(lambda *x: np.stack([np.asarray(a, np.float64) for a in x]), *grads)
    # conv: one (18, 5) matrix: sqrt(max(1, 5 / 18)) = 1
    conv = ref.muon(g["conv"].reshape(2, 18, 5)).reshape(2, 3, 3, 2, 5)
    # stack: one (4, 6) matrix per layer, scale sqrt(6 / 4)
    stack = np.stack([ref.muon(g["stack"][:, i]) for i in range(3)], axis=1) * np.sqrt(1.5)
    # qkv: three (4, 6) matrices, one per q, k, v
    qkv = np.stack(
        [ref.muon(g["qkv"][:, :, j].reshape(2, 4, 6)).reshape(2, 4, 2, 3) for j in range(3)],
        axis=2,
    ) * np.sqrt(1.5)
    for k, want in [("conv", conv), ("stack", stack), ("qkv", qkv)]:
        got = np.stack([np.asarray(o[k]) for o in outs])
        np.testing.assert_allclose(got, -want, rtol=1e-4, atol=2e-5, err_msg=k)
    # The None leaf went to AdamW: its first step is -lr * sign(g) (Nesterov form).
    adam = -(0.9 * 0.1 / (1 - 0.81) + 1) * np.sign(np.asarray(grads[0]["bias"]))
    np.testing.assert_allclose(outs[0]["bias"], adam, rtol=1e-5)
    # A callable labelling function does the same.
    tx2 = adaptx.muon(
        1.0,
        consistent_rms=None,
        muon_weight_dimension_numbers=lambda p: {k: dims[k] for k in p},
    )
    outs2, _ = _run(tx2, params, grads)
    jax.tree.map(np.testing.assert_array_equal, outs, outs2)


# --- optax.contrib.muon ----------------------------------------------------------------


def _optax_run(tx, params, grads):
    # optax's muon mixes a float beta with an int32 count (beta ** count): it needs
    # standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(params)
        update = jax.jit(tx.update)
        outs = []
        for g in grads:
            u, state = update(g, state, params)
            outs.append(u)
    return outs, state


# The optax comparisons run in float64, where the two implementations must agree to
# float64 rounding (in float32 the Newton-Schulz iteration amplifies rounding to 1e-5,
# and how much depends on the compiler). adaptx keeps the coefficients in its state
# in float32 (optax's layout), so optax is given the same float32-rounded values.
OPTAX_NS_COEFFS = tuple(float(np.float32(c)) for c in (3.4445, -4.7750, 2.0315))


def _float64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def _assert_float64_close(got, want):
    for a, b in zip(got, want):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-13), a, b)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda: adaptx.muon(0.02, consistent_rms=None, bias_correction=True),
            lambda: optax.contrib.muon(0.02, ns_coeffs=OPTAX_NS_COEFFS),
        ),
        (
            lambda: adaptx.muon(
                0.02, bias_correction=True, weight_decay=0.1, adam_weight_decay=0.01
            ),
            lambda: optax.contrib.muon(
                0.02,
                ns_coeffs=OPTAX_NS_COEFFS,
                consistent_rms=0.2,
                weight_decay=0.1,
                adam_weight_decay=0.01,
            ),
        ),
        (
            lambda: adaptx.muon(
                optax.linear_schedule(0.02, 0.0, 10),
                nesterov=False,
                consistent_rms=None,
                bias_correction=True,
            ),
            lambda: optax.contrib.muon(
                optax.linear_schedule(0.02, 0.0, 10), ns_coeffs=OPTAX_NS_COEFFS, nesterov=False
            ),
        ),
    ],
    ids=["optax-default", "moonlight-decay", "heavy-ball-schedule"],
)
def test_matches_optax_contrib_muon_with_the_mapped_settings(ours, theirs, x64):
    params = {"dense": PARAMS["dense"], "bias": PARAMS["bias"], "scale": PARAMS["scale"]}
    params = _float64(params)
    grads = [_float64(g) for g in _tree_grads(params, STEPS, seed=1)]
    got, state = _run(ours(), params, grads)
    want, ostate = _optax_run(theirs(), params, grads)
    _assert_float64_close(got, want)
    # The same state layout: leaf paths, shapes and values.
    paths = lambda s: [
        (jax.tree_util.keystr(p), np.shape(x))
        for p, x in jax.tree_util.tree_flatten_with_path(s)[0]
    ]
    assert paths(state) == paths(ostate)


def test_default_differs_from_optax_only_by_the_nesterov_bias_correction():
    # optax divides the Nesterov terms by 1 - beta**(t+1) and 1 - beta**t; Jordan's and
    # Moonlight's code do not, which weighs the fresh gradient more in the first steps.
    params = {"dense": PARAMS["dense"]}
    grads = _tree_grads(params, 3, seed=2)
    ours, _ = _run(adaptx.muon(0.02, consistent_rms=None), params, grads)
    theirs, _ = _optax_run(optax.contrib.muon(0.02), params, grads)
    gap = float(jnp.max(jnp.abs(ours[1]["dense"] - theirs[1]["dense"])))
    assert gap > 1e-4, gap  # visible at step 2...
    ours_nb, _ = _run(adaptx.muon(0.02, consistent_rms=None, nesterov=False), params, grads)
    theirs_nb, _ = _optax_run(optax.contrib.muon(0.02, nesterov=False), params, grads)
    for a, b in zip(ours_nb, theirs_nb):  # ...and absent without Nesterov (scale-free)
        np.testing.assert_allclose(a["dense"], b["dense"], rtol=2e-5, atol=1e-8)


# --- sharded matrices ------------------------------------------------------------------


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
def test_sharded_newton_schulz_equals_one_device(axis_type):
    kind = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}[axis_type]
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(kind, kind))
    params = {"w": jnp.asarray(ref.matrix_sequence(1, 32, 16, seed=5)[0], jnp.float32)}
    grads = [{"w": jnp.asarray(g, jnp.float32)} for g in ref.matrix_sequence(3, 32, 16, seed=6)]
    tx = adaptx.muon(0.01, weight_decay=0.1)
    want, _ = _run(tx, params, grads)
    spec = {"w": NamedSharding(mesh, P("data", "model"))}
    with jax.set_mesh(mesh):
        p = jax.device_put(params, spec)
        state = jax.jit(tx.init)(p)
        update = jax.jit(tx.update)
        for g, w in zip(grads, want):
            u, state = update(jax.device_put(g, spec), state, p)
            assert u["w"].sharding.is_equivalent_to(spec["w"], 2)
            np.testing.assert_allclose(u["w"], w["w"], rtol=1e-5, atol=1e-8)


# --- contract details -------------------------------------------------------------------


def test_nan_gradient_gives_nan_update_and_zero_gradient_gives_zero():
    tx = adaptx.scale_by_muon()
    g = jnp.ones((3, 4)).at[0, 0].set(jnp.nan)
    update = jax.jit(tx.update)
    out, _ = update(g, tx.init(g))
    assert bool(jnp.all(jnp.isnan(out)))
    out, _ = update(jnp.zeros((3, 4)), tx.init(g))
    np.testing.assert_array_equal(out, 0.0)


def test_state_from_shapes_alone():
    tx = adaptx.muon(0.1)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), PARAMS)
    abstract = jax.eval_shape(tx.init, shapes)
    concrete = tx.init(PARAMS)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: adaptx.scale_by_muon(ns_steps=0), r"ns_steps must be an integer >= 1, got 0"),
        (lambda: adaptx.scale_by_muon(ns_coeffs=(1.0, 2.0)), r"ns_coeffs must have shape \(3,\)"),
        (
            lambda: adaptx.scale_by_muon(ns_coeffs=((1.0, 2.0, 3.0),) * 2),
            r"2 rows, but ns_steps=5; pass ns_steps=2",
        ),
        (lambda: adaptx.scale_by_muon(ns_coeffs=(1.0, np.nan, 0.0)), r"ns_coeffs must be finite"),
        (lambda: adaptx.scale_by_muon(beta=1.0), r"beta must be in \[0.0, 1.0\), got 1.0"),
        (lambda: adaptx.scale_by_muon(eps=-1.0), r"eps must be in"),
        (lambda: adaptx.scale_by_muon(ns_dtype=jnp.int32), r"ns_dtype must be a floating"),
        (lambda: adaptx.muon(0.1, consistent_rms=0.0), r"consistent_rms must be in \(0.0, inf\)"),
        (lambda: adaptx.muon(-0.1), r"learning_rate must be in"),
        (lambda: adaptx.muon(0.1, adam_weight_decay=-1.0), r"adam_weight_decay must be in"),
        (lambda: adaptx.scale_by_muon().init(jnp.zeros(3)), r"shape \(3,\) has rank 1 < 2"),
        (
            lambda: adaptx.scale_by_muon(
                weight_dimension_numbers=adaptx.MuonDimensionNumbers(0, 0)
            ).init(jnp.zeros((2, 2))),
            r"name an axis twice",
        ),
        (
            lambda: adaptx.scale_by_muon(
                weight_dimension_numbers=adaptx.MuonDimensionNumbers(0, 3)
            ).init(jnp.zeros((2, 2))),
            r"output_axis=3 is out of range for a 2-D parameter",
        ),
        (
            lambda: adaptx.muon(
                0.1, muon_weight_dimension_numbers={"a": adaptx.MuonDimensionNumbers()}
            ).init({"b": jnp.zeros((2, 2))}),
            r"muon_weight_dimension_numbers must be a tree",
        ),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bfloat16_params_with_float32_momentum():
    g32 = jnp.asarray(ref.matrix_sequence(3, 4, 6), jnp.float32).astype(jnp.bfloat16)
    tx = adaptx.scale_by_muon(mu_dtype=jnp.float32)
    s16, s32 = tx.init(g32[0]), tx.init(g32[0].astype(jnp.float32))
    update = jax.jit(tx.update)
    for g in g32:
        u16, s16 = update(g, s16)
        u32, s32 = update(g.astype(jnp.float32), s32)
        assert u16.dtype == jnp.bfloat16 and s16.mu.dtype == jnp.float32
        np.testing.assert_array_equal(s16.mu, s32.mu)
        np.testing.assert_allclose(np.asarray(u16, np.float32), u32, rtol=2**-7, atol=2**-8)


def test_scale_by_muon_matches_optax_scale_by_muon_with_dimension_numbers(x64):
    # optax.contrib.scale_by_muon is bias-corrected; conv kernels through dimension numbers.
    params = _float64({"dense": PARAMS["dense"], "conv": PARAMS["conv"]})
    grads = [_float64(g) for g in _tree_grads(params, 4, seed=3)]
    ours = adaptx.scale_by_muon(
        bias_correction=True,
        weight_dimension_numbers={
            "dense": adaptx.MuonDimensionNumbers(),
            "conv": adaptx.MuonDimensionNumbers((0, 1, 2), 3),
        },
    )
    odn = optax.contrib.MuonDimensionNumbers
    theirs = optax.contrib.scale_by_muon(
        ns_coeffs=OPTAX_NS_COEFFS,
        weight_dimension_numbers={"dense": odn(), "conv": odn((0, 1, 2), 3)},
    )
    got, _ = _run(ours, params, grads)
    want, _ = _optax_run(theirs, params, grads)
    _assert_float64_close(got, want)


def test_inject_hyperparams_is_bit_identical_with_ns_steps_static():
    params = {"dense": PARAMS["dense"], "bias": PARAMS["bias"]}
    grads = _tree_grads(params, 2, seed=5)
    injected = adaptx.inject_hyperparams(adaptx.muon, static_args="ns_steps")(0.02)
    got, _ = _run(injected, params, grads)
    want, _ = _run(adaptx.muon(0.02), params, grads)
    for a, b in zip(got, want):
        jax.tree.map(np.testing.assert_array_equal, a, b)
