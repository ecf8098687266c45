"""Sign-based (signSGD, Signum, Lion), Adam variants (AdaBelief, Yogi, ADOPT, AdEMAMix) and
layer-wise (LAMB, LARS) optimizers against their papers and optax.

Papers: ``references_extra.py`` (NumPy float64, written from the papers), within 1e-6 in
float32 and 1e-12 in float64 (``rel_diff`` as in ``test_adam_family.py``). optax runs at
test time with the settings each docstring's table gives, and must agree within 1e-12 in
float64. Where optax departs from a paper, a test below shows it. torch 2.13 has none of
these optimizers (its ``torch.optim`` has Adafactor and Muon, neither of them here), so
there are no stored torch numbers.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
import references_adam as RA
import references_extra as R
from adam_runs import rel_diff, run

import adaptx

F32_TOL = 1e-6
F64_TOL = 1e-12
T = 10  # steps: enough for the moments, the clip value and the warm-ups to move
G = RA.gradient_sequence(T)
P0 = np.array([0.5, -1.0, 2.0, 0.25, -0.75, 1.5])


def _f32(value):
    return float(np.float32(value)) if isinstance(value, float) else value


# --- against the papers --------------------------------------------------------------------------

# id -> (adaptx direction factory, reference, keyword arguments for both)
PAPER_CASES = {
    "sign_sgd": (adaptx.scale_by_sign, R.sign_sgd, {}),
    "lion": (adaptx.scale_by_lion, R.lion, {}),
    "lion[b1=0.5,b2=0.9]": (adaptx.scale_by_lion, R.lion, dict(b1=0.5, b2=0.9)),
    "adabelief": (adaptx.scale_by_belief, R.adabelief, {}),
    "adabelief[eps=1e-8,eps_root=1e-10]": (
        adaptx.scale_by_belief,
        R.adabelief,
        dict(eps=1e-8, eps_root=1e-10),
    ),
    "yogi": (adaptx.scale_by_yogi, R.yogi, {}),
    "yogi[v0=0,eps=1e-8]": (
        lambda v0, **kw: adaptx.scale_by_yogi(initial_accumulator_value=v0, **kw),
        R.yogi,
        dict(v0=0.0, eps=1e-8),
    ),
    "adopt": (adaptx.scale_by_adopt, R.adopt, {}),
    "adopt[no clipping,b2=0.99]": (
        lambda clipping, **kw: adaptx.scale_by_adopt(use_clipping=clipping, **kw),
        R.adopt,
        dict(clipping=False, b2=0.99),
    ),
    "ademamix": (adaptx.scale_by_ademamix, R.ademamix, {}),
    "ademamix[warm-up]": (
        lambda warmup, b1=0.9, b3=0.9999, alpha=5.0, **kw: adaptx.scale_by_ademamix(
            b1,
            b3=adaptx.ademamix_b3_schedule(b3, warmup, b1),
            alpha=adaptx.ademamix_alpha_schedule(alpha, warmup),
            **kw,
        ),
        R.ademamix,
        dict(warmup=6, b3=0.999, alpha=8.0),
    ),
}


def paper_diff(case: str, dtype) -> float:
    make, reference, kwargs = PAPER_CASES[case]
    got = run(make(**kwargs), G, P0, dtype)
    if dtype == jnp.float32:  # the reference gets every hyper-parameter as float32 holds it
        defaults = {
            k: p.default
            for k, p in inspect.signature(reference).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        kwargs = {k: _f32(v) for k, v in {**defaults, **kwargs}.items()}
    return rel_diff(got, reference(G, **kwargs))


@pytest.mark.parametrize("case", PAPER_CASES)
def test_matches_paper_float32(case):
    assert paper_diff(case, jnp.float32) <= F32_TOL


@pytest.mark.parametrize("case", PAPER_CASES)
def test_matches_paper_float64(case, x64):
    assert paper_diff(case, jnp.float64) <= F64_TOL


def test_signum_matches_paper(x64):
    for beta in (0.9, 0.5):
        got = run(adaptx.signum(1.0, beta), G, P0, jnp.float64)
        np.testing.assert_array_equal(got, -R.signum(G, beta))


# The layer-wise references follow the params: a tree {"b", "w"} (sorted, as flattened).
LAYERS = {"b": np.array([1.0, -2.0, 0.5]), "w": P0}
LAYER_GRADS = {"b": -0.5 * G[:, 1:4], "w": G}


def _layer_args():
    return [LAYERS[k] for k in sorted(LAYERS)], [LAYER_GRADS[k] for k in sorted(LAYERS)]


def test_lamb_matches_paper(x64):
    layers, grads = _layer_args()
    for wd in (0.0, 0.1):
        got = run(adaptx.lamb(0.01, weight_decay=wd), LAYER_GRADS, LAYERS, jnp.float64)
        assert rel_diff(got, R.lamb(layers, grads, 0.01, weight_decay=wd)) <= F64_TOL


def test_lars_matches_paper_without_weight_decay(x64):
    layers, grads = _layer_args()
    got = run(adaptx.lars(0.5), LAYER_GRADS, LAYERS, jnp.float64)
    assert rel_diff(got, R.lars(layers, grads, 0.5)) <= F64_TOL


def test_layerwise_float32_matches_paper():
    layers, grads = _layer_args()
    got = run(adaptx.lamb(0.01, weight_decay=0.1), LAYER_GRADS, LAYERS, jnp.float32)
    assert rel_diff(got, R.lamb(layers, grads, 0.01, weight_decay=0.1)) <= 1e-5
    got = run(adaptx.lars(0.5), LAYER_GRADS, LAYERS, jnp.float32)
    assert rel_diff(got, R.lars(layers, grads, 0.5)) <= 1e-5


def test_ademamix_schedules_are_the_papers():
    # float32 schedules against the formulas fed float32's b3 and b_start.
    b3, b_start = _f32(0.9999), _f32(0.9)
    for t in (1, 2, 7, 100, 101, 5000):
        count = jnp.int32(t - 1)
        a = adaptx.ademamix_alpha_schedule(8.0, 100)(count)
        b = adaptx.ademamix_b3_schedule(0.9999, 100, 0.9)(count)
        assert float(a) == pytest.approx(R.ademamix_alpha(t, 8.0, 100), rel=1e-6)
        assert float(b) == pytest.approx(R.ademamix_b3(t, b3, 100, b_start), rel=1e-6)


def test_ademamix_b3_warm_up_is_linear_in_the_half_life(x64):
    # The reason for the scheduler's form: 1 / log(b3_t), proportional to the half-life,
    # grows linearly in t (a linear b3_t would keep a short memory until the very end).
    f = adaptx.ademamix_b3_schedule(0.9999, 50, 0.9)
    inv = np.array([1 / np.log(float(f(jnp.int32(c)))) for c in range(50)])
    steps = np.diff(inv)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)
    assert float(f(jnp.int32(49))) == pytest.approx(0.9999, abs=1e-12)


# --- against optax -------------------------------------------------------------------------------

TREE_GRADS = LAYER_GRADS
TREE_PARAMS = LAYERS
MASK = {"w": True, "b": False}

# id -> (adaptx, optax, hyper-parameters): the mappings in the docstrings' tables.
OPTAX_CASES = {
    "sign_sgd": (adaptx.sign_sgd, optax.sign_sgd, dict(learning_rate=0.01)),
    "signum": (adaptx.signum, optax.signum, dict(learning_rate=0.01, beta=0.8)),
    "lion": (adaptx.lion, optax.lion, dict(learning_rate=0.01, b1=0.9, b2=0.99)),
    "lion[mask,weight_decay]": (
        functools.partial(adaptx.lion, mask=MASK),
        functools.partial(optax.lion, mask=MASK),
        dict(learning_rate=0.01, weight_decay=0.3),
    ),
    "scale_by_lion[smooth]": (
        functools.partial(adaptx.scale_by_lion, mode="smooth"),
        functools.partial(optax.scale_by_lion, mode="smooth"),
        dict(smooth_beta=3.0),
    ),
    "scale_by_lion[refined]": (
        functools.partial(adaptx.scale_by_lion, mode="refined"),
        functools.partial(optax.scale_by_lion, mode="refined"),
        dict(b1=0.5),
    ),
    "adabelief": (adaptx.adabelief, optax.adabelief, dict(learning_rate=0.01)),
    "adabelief[nesterov]": (
        functools.partial(adaptx.adabelief, nesterov=True),
        functools.partial(optax.adabelief, nesterov=True),
        dict(learning_rate=0.01, eps=1e-8, eps_root=1e-12),
    ),
    "yogi[initial_mu_value]": (
        functools.partial(adaptx.yogi, initial_mu_value=1e-6),
        optax.yogi,
        dict(learning_rate=0.01, b2=0.99),
    ),
    "scale_by_yogi[initial_mu_value,eps_root]": (
        lambda v0, **kw: adaptx.scale_by_yogi(
            initial_accumulator_value=v0, initial_mu_value=v0, **kw
        ),
        lambda v0, **kw: optax.scale_by_yogi(initial_accumulator_value=v0, **kw),
        dict(v0=1e-2, eps_root=1e-6),
    ),
    "adopt": (adaptx.adopt, optax.contrib.adopt, dict(learning_rate=0.01)),
    "adopt[nesterov]": (
        functools.partial(adaptx.adopt, nesterov=True),
        functools.partial(optax.contrib.adopt, nesterov=True),
        dict(learning_rate=0.01, b2=0.99),
    ),
    "adopt[no clipping]": (
        functools.partial(adaptx.adopt, use_clipping=False),
        functools.partial(optax.contrib.adopt, use_clipping=False),
        dict(learning_rate=0.01),
    ),
    "ademamix": (
        adaptx.ademamix,
        optax.contrib.ademamix,
        dict(learning_rate=0.01, weight_decay=0.1, eps_root=1e-9),
    ),
    "ademamix[mask,schedules]": (
        lambda **kw: adaptx.ademamix(
            b3=adaptx.ademamix_b3_schedule(0.999, 8),
            alpha=adaptx.ademamix_alpha_schedule(6.0, 8),
            mask=MASK,
            **kw,
        ),
        lambda **kw: optax.contrib.ademamix(
            b3=adaptx.ademamix_b3_schedule(0.999, 8),
            alpha=adaptx.ademamix_alpha_schedule(6.0, 8),
            mask=MASK,
            **kw,
        ),
        dict(learning_rate=0.01, weight_decay=0.1),
    ),
    "lamb": (adaptx.lamb, optax.lamb, dict(learning_rate=0.01, weight_decay=0.1)),
    "lamb[mask]": (
        functools.partial(adaptx.lamb, mask=MASK),
        functools.partial(optax.lamb, mask=MASK),
        dict(learning_rate=0.01, weight_decay=0.1, eps_root=1e-8),
    ),
    "lars": (adaptx.lars, optax.lars, dict(learning_rate=0.5, weight_decay=0.1)),
    "lars[masks,nesterov]": (
        functools.partial(adaptx.lars, weight_decay_mask=MASK, trust_ratio_mask=MASK),
        functools.partial(optax.lars, weight_decay_mask=MASK, trust_ratio_mask=MASK),
        dict(learning_rate=0.5, weight_decay=0.1, eps=1e-3, momentum=0.8, nesterov=True),
    ),
    "scale_by_trust_ratio": (
        adaptx.scale_by_trust_ratio,
        optax.scale_by_trust_ratio,
        dict(min_norm=1.5, trust_coefficient=0.3, eps=1e-2),
    ),
}


def optax_diff(case: str, dtype) -> float:
    ours, theirs, hp = OPTAX_CASES[case]
    got = run(ours(**hp), TREE_GRADS, TREE_PARAMS, dtype)
    their_hp = {k: jnp.asarray(v, dtype) if isinstance(v, float) else v for k, v in hp.items()}
    want = run(theirs(**their_hp), TREE_GRADS, TREE_PARAMS, dtype, standard=True)
    return rel_diff(got, want)


@pytest.mark.parametrize("case", OPTAX_CASES)
def test_matches_optax_float64(case, x64):
    assert optax_diff(case, jnp.float64) <= F64_TOL


@pytest.mark.parametrize("case", ["lion", "adabelief", "adopt", "lamb", "lars"])
def test_matches_optax_float32(case):
    # optax computes 1 - b**t as written in float32, up to 8e-6 off at b2 = 0.999 (see
    # test_adam_family.py); AdaBelief's small belief s (the variance of the surprise g - m)
    # magnifies it to 1.0e-5. The float64 runs prove the mappings to 1e-12.
    assert optax_diff(case, jnp.float32) <= 2e-5


# Pairs whose states must have exactly optax's leaf paths, shapes and dtypes.
STATE_PAIRS = {
    "scale_by_sign": (adaptx.scale_by_sign(), optax.scale_by_sign()),
    "sign_sgd": (adaptx.sign_sgd(0.1), optax.sign_sgd(0.1)),
    "signum": (adaptx.signum(0.1), optax.signum(0.1)),
    "scale_by_lion": (adaptx.scale_by_lion(), optax.scale_by_lion()),
    "lion": (adaptx.lion(0.1), optax.lion(0.1)),
    "lion[schedule]": (
        adaptx.lion(adaptx.cosine_decay_schedule(0.1, 10)),
        optax.lion(optax.cosine_decay_schedule(0.1, 10)),
    ),
    "scale_by_belief": (adaptx.scale_by_belief(), optax.scale_by_belief()),
    "adabelief": (adaptx.adabelief(0.1), optax.adabelief(0.1)),
    "scale_by_yogi": (adaptx.scale_by_yogi(), optax.scale_by_yogi()),
    "yogi": (adaptx.yogi(0.1), optax.yogi(0.1)),
    "scale_by_adopt": (adaptx.scale_by_adopt(), optax.contrib.scale_by_adopt()),
    "adopt": (adaptx.adopt(0.1), optax.contrib.adopt(0.1)),
    "scale_by_ademamix": (adaptx.scale_by_ademamix(), optax.contrib.scale_by_ademamix()),
    "ademamix": (adaptx.ademamix(0.1), optax.contrib.ademamix(0.1)),
    "scale_by_trust_ratio": (adaptx.scale_by_trust_ratio(), optax.scale_by_trust_ratio()),
    "lamb": (adaptx.lamb(0.1, mask=MASK), optax.lamb(0.1, mask=MASK)),
    "lars": (adaptx.lars(0.1, trust_ratio_mask=MASK), optax.lars(0.1, trust_ratio_mask=MASK)),
}


def _leaf_paths(state):
    return [
        (jax.tree_util.keystr(path), jnp.shape(x), jnp.result_type(x))
        for path, x in jax.tree_util.tree_flatten_with_path(state)[0]
    ]


@pytest.mark.parametrize("name", STATE_PAIRS)
def test_state_leaf_paths_are_optaxs(name):
    ours, theirs = STATE_PAIRS[name]
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    assert _leaf_paths(ours.init(params)) == _leaf_paths(theirs.init(params))


# --- where optax departs from the papers ---------------------------------------------------------


def test_yogi_optax_starts_the_momentum_at_its_accumulator_value(x64):
    # The paper's m_0 = 0; optax fills mu with initial_accumulator_value (1e-6) too.
    params = jnp.zeros(6)
    assert float(jnp.max(optax.scale_by_yogi().init(params).mu)) == 1e-6
    assert float(jnp.max(adaptx.scale_by_yogi().init(params).mu)) == 0.0
    reference = R.yogi(G)
    ours = run(adaptx.scale_by_yogi(), G, P0, jnp.float64)
    theirs = run(optax.scale_by_yogi(), G, P0, jnp.float64, standard=True)
    assert rel_diff(ours, reference) <= F64_TOL
    # Visible on the small (1e-3) coordinate, where sqrt(v_hat) + eps is about 2e-3.
    assert rel_diff(theirs, reference) > 1e-4
    assert rel_diff(theirs, R.yogi(G, m0=1e-6)) <= F64_TOL


def test_adabelief_without_eps_gives_no_nan_on_a_zero_gradient():
    # With eps = eps_root = 0 a coordinate whose gradients are all 0 is 0/0 in optax.
    g = jnp.array([0.0, 1.0])
    ours, _ = adaptx.scale_by_belief(eps=0.0, eps_root=0.0).update(
        g, adaptx.scale_by_belief(eps=0.0, eps_root=0.0).init(g)
    )
    tx = optax.scale_by_belief(eps=0.0, eps_root=0.0)
    with jax.numpy_dtype_promotion("standard"):
        theirs, _ = tx.update(g, tx.init(g))
    assert float(ours[0]) == 0.0 and bool(jnp.isnan(theirs[0]))
    assert float(ours[1]) == pytest.approx(float(theirs[1]), rel=1e-4)


def test_adopt_optax_cites_another_paper():
    # optax.contrib.adopt's reference is arXiv:2403.00855; ADOPT is arXiv:2411.02853.
    assert "2403.00855" in optax.contrib.adopt.__doc__
    assert "2411.02853" not in optax.contrib.adopt.__doc__
    assert "2411.02853" in adaptx.adopt.__doc__ and "2411.02853" in adaptx.scale_by_adopt.__doc__


def test_ademamix_optax_defaults_and_second_moment_dtype():
    # optax's scale_by_ademamix defaults to alpha = 6, its ademamix alias to 5; adaptx: 5 both.
    alpha = inspect.signature(optax.contrib.scale_by_ademamix).parameters["alpha"].default
    assert alpha == 6.0
    assert inspect.signature(optax.contrib.ademamix).parameters["alpha"].default == 5.0
    assert inspect.signature(adaptx.scale_by_ademamix).parameters["alpha"].default == 5.0
    # optax keeps the second moment in mu_dtype; adaptx in nu_dtype (default: the params').
    p = jnp.ones(3)
    assert optax.contrib.scale_by_ademamix(mu_dtype=jnp.bfloat16).init(p).nu.dtype == jnp.bfloat16
    assert adaptx.scale_by_ademamix(mu_dtype=jnp.bfloat16).init(p).nu.dtype == jnp.float32
    # The docstring's mapping: mu_dtype=d, nu_dtype=d has optax's mu_dtype=d state.
    ours = adaptx.scale_by_ademamix(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16).init(p)
    assert _leaf_paths(ours) == _leaf_paths(
        optax.contrib.scale_by_ademamix(mu_dtype=jnp.bfloat16).init(p)
    )


def test_lamb_zero_layer_moves_unlike_the_paper(x64):
    # phi(||x||) = 0 for a zero layer in the paper (it never moves); optax and adaptx use a
    # trust ratio of 1 there: a plain Adam step.
    params = {"b": np.zeros(3), "w": P0}
    ours = run(adaptx.lamb(0.01), LAYER_GRADS, params, jnp.float64)
    theirs = run(optax.lamb(0.01), LAYER_GRADS, params, jnp.float64, standard=True)
    paper = R.lamb([params["b"], params["w"]], [LAYER_GRADS["b"], LAYER_GRADS["w"]], 0.01)
    assert rel_diff(ours, theirs) <= F64_TOL
    np.testing.assert_array_equal(paper[:, :3], 0.0)
    np.testing.assert_allclose(np.abs(ours[0, :3]), 0.01, rtol=1e-4)  # Adam's first step
    assert rel_diff(ours[:, 3:], paper[:, 3:]) <= 1e-2  # the other layer barely notices


def test_lars_weight_decay_norm_differs_from_the_paper(x64):
    # The paper divides by ||g|| + wd ||w||, optax (and adaptx) by ||g + wd w||, which is
    # never larger: with weight decay their steps are larger than the paper's.
    layers, grads = _layer_args()
    ours = run(adaptx.lars(0.5, weight_decay=0.1), LAYER_GRADS, LAYERS, jnp.float64)
    theirs = run(optax.lars(0.5, weight_decay=0.1), LAYER_GRADS, LAYERS, jnp.float64, standard=True)
    paper = R.lars(layers, grads, 0.5, weight_decay=0.1)
    assert rel_diff(ours, theirs) <= F64_TOL
    assert rel_diff(ours, paper) > 1e-2
    assert np.abs(ours[0]).sum() > np.abs(paper[0]).sum()


def test_lion_keeps_one_buffer():
    params = {"w": jnp.ones((64, 32)), "b": jnp.ones(32)}
    n = sum(p.size for p in jax.tree.leaves(params))

    def state_size(tx):
        return sum(x.size for x in jax.tree.leaves(tx.init(params)))

    assert state_size(adaptx.lion(1e-4)) == n + 1  # mu, and the step count
    assert state_size(adaptx.adam(1e-3)) >= 2 * n


# --- hyper-parameter validation ------------------------------------------------------------------

BAD = [
    (lambda: adaptx.lion(0.1, b1=1.0), r"b1 must be in \[0.0, 1.0\), got 1.0"),
    (lambda: adaptx.scale_by_lion(mode="soft"), r"mode must be 'hard', 'smooth' or 'refined'"),
    (lambda: adaptx.scale_by_lion(mode="smooth", smooth_beta=0.0), r"smooth_beta must be in"),
    (lambda: adaptx.signum(0.1, beta=1.5), r"beta must be in \[0.0, 1.0\), got 1.5"),
    (lambda: adaptx.sign_sgd(-0.1), r"learning_rate must be in \[0.0, inf\)"),
    (lambda: adaptx.adabelief(eps_root=-1e-16), r"eps_root must be in \[0.0, inf\)"),
    (lambda: adaptx.yogi(initial_accumulator_value=-1.0), r"initial_accumulator_value must be"),
    (lambda: adaptx.yogi(b2=1.0), r"b2 must be in \[0.0, 1.0\)"),
    (lambda: adaptx.adopt(eps=-1.0), r"eps must be in \[0.0, inf\)"),
    (lambda: adaptx.ademamix(0.1, b3=1.0), r"b3 must be in \[0.0, 1.0\), got 1.0"),
    (lambda: adaptx.ademamix(0.1, alpha=-1.0), r"alpha must be in \[0.0, inf\)"),
    (lambda: adaptx.ademamix(0.1, b3=lambda c: jnp.float32(-0.5)), r"b3 schedule must give"),
    (lambda: adaptx.ademamix_b3_schedule(0.999, 10, b_start=0.0), r"b_start must be in \(0.0"),
    (lambda: adaptx.ademamix_alpha_schedule(5.0, 0), r"warmup_steps must be an integer >= 1"),
    (lambda: adaptx.lamb(0.1, b1=-0.1), r"b1 must be in \[0.0, 1.0\)"),
    (lambda: adaptx.lars(0.1, momentum=1.5), r"momentum must be in \[0.0, 1.0\]"),
    (lambda: adaptx.lars(0.1, momentum=0.0, nesterov=True), r"nesterov=True needs a positive"),
    (lambda: adaptx.scale_by_trust_ratio(min_norm=-1.0), r"min_norm must be in \[0.0, inf\)"),
    (lambda: adaptx.scale_by_trust_ratio(trust_coefficient=float("nan")), r"trust_coefficient"),
]


@pytest.mark.parametrize("build, match", BAD)
def test_bad_hyperparameters_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_adopt_clip_value_fn_must_be_callable():
    with pytest.raises(TypeError, match="clip_value_fn must be callable"):
        adaptx.adopt(clip_value_fn=0.25)


def test_trust_ratio_needs_params():
    tx = adaptx.scale_by_trust_ratio()
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_nan_gradient_gives_nan_updates():
    # (test_nonfinite.py checks every registry row; this covers the first ADOPT step too.)
    params = {"w": jnp.ones(3)}
    g = {"w": jnp.array([jnp.nan, 1.0, 1.0])}
    for tx in (adaptx.lion(0.1), adaptx.lamb(0.1), adaptx.adabelief(), adaptx.adopt()):
        u, _ = tx.update(g, tx.init(params), params)
        assert bool(jnp.isnan(u["w"][0])), tx


# --- the papers' defining properties -------------------------------------------------------------


def test_sign_steps_have_length_lr():
    # signSGD, Signum and Lion (without decay) move every coordinate by exactly lr.
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    grads = jax.tree.map(
        lambda p: jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape) + 0.5), params
    )
    for tx in (adaptx.sign_sgd(0.01), adaptx.signum(0.01), adaptx.lion(0.01, weight_decay=0.0)):
        state = tx.init(params)
        for _ in range(3):
            updates, state = tx.update(grads, state, params)
            for u in jax.tree.leaves(updates):
                np.testing.assert_allclose(np.abs(u), 0.01, rtol=1e-6)


def test_trust_ratio_step_is_lr_times_the_layer_norm():
    # LAMB and LARS (first step, no momentum yet): each layer moves by lr * eta * ||layer||,
    # whatever the scale of its gradient.
    params = {"w": jnp.full((4, 3), 2.0), "b": jnp.array([0.5, -1.0, 3.0])}
    grads = {"w": jnp.full((4, 3), 1e-4), "b": jnp.array([30.0, -2.0, 0.1])}
    for tx, factor in ((adaptx.lamb(0.01), 0.01), (adaptx.lars(0.5), 0.5 * 0.001)):
        updates, _ = tx.update(grads, tx.init(params), params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            assert float(jnp.linalg.norm(u)) == pytest.approx(
                factor * float(jnp.linalg.norm(p)), rel=1e-5
            )
