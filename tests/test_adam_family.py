"""The Adam family against its papers, optax and torch.

Relative difference. Each run produces one update vector per step (``T``
steps, the whole parameter tree flattened). The difference of two runs is the
worst step's ``max_i |got_i - want_i| / max_i |want_i|``: the largest error of
the step measured against the step's largest reference value, so a
coordinate whose update is zero (the always-zero gradient) or tiny does not
turn rounding into a huge relative error, while an error anywhere in the
step counts.

Papers: ``references_adam.py`` (plain NumPy float64, written from the papers)
must agree within 1e-6 in float32 and 1e-12 in float64. adaptx rounds each
hyper-parameter to the compute dtype once (``hyperparam``) and uses that
value throughout, so the float32 comparison feeds the reference the
hyper-parameters as float32 holds them; the float64 one uses the exact values.
optax runs at test time; torch's numbers come from
``data/torch_adam_family.json`` (``data/generate_torch_adam_family.py``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import references_adam as R
from adam_runs import rel_diff, run

import adaptx

F32_TOL = 1e-6
F64_TOL = 1e-12
G = R.gradient_sequence()
G_NONZERO = G[:, 1:]  # for the paper's AdaMax (eps = 0): no coordinate starts at zero
TORCH = json.loads((Path(__file__).parent / "data" / "torch_adam_family.json").read_text())


# --- against the papers --------------------------------------------------------------------------

# id -> (adaptx factory, reference, keyword arguments for both, gradients).
PAPER_CASES = {
    "adam": (adaptx.scale_by_adam, R.adam, {}, G),
    "adam[b2=0.99,eps_root]": (adaptx.scale_by_adam, R.adam, dict(b2=0.99, eps_root=1e-6), G),
    "adam[b1_decay=0.9]": (adaptx.scale_by_adam, R.adam, dict(b1_decay=0.9), G),
    "adam[b1_decay=0.99,b1=0.95]": (adaptx.scale_by_adam, R.adam, dict(b1=0.95, b1_decay=0.99), G),
    "adamax": (adaptx.scale_by_adamax, R.adamax, {}, G),
    "adamax[eps=0]": (adaptx.scale_by_adamax, R.adamax, dict(eps=0.0), G_NONZERO),
    "nadam[schedule]": (adaptx.scale_by_nadam, R.nadam, dict(momentum_decay=4e-3), G),
    "nadam[psi=0.05]": (adaptx.scale_by_nadam, R.nadam, dict(momentum_decay=0.05), G),
    "nadam[constant]": (adaptx.scale_by_nadam, R.nadam, dict(momentum_decay=None), G),
    "amsgrad[max_raw]": (adaptx.scale_by_amsgrad, R.amsgrad, dict(variant="max_raw"), G),
    "amsgrad[max_corrected]": (
        adaptx.scale_by_amsgrad,
        R.amsgrad,
        dict(variant="max_corrected"),
        G,
    ),
    "amsgrad[paper]": (adaptx.scale_by_amsgrad, R.amsgrad, dict(variant="paper"), G),
    "radam[eps_before_bias_correction]": (
        adaptx.scale_by_radam,
        R.radam,
        dict(eps_before_bias_correction=True),
        G,
    ),
    "radam[nesterov]": (adaptx.scale_by_radam, R.radam, dict(nesterov=True), G),
}
for _b2 in (0.999, 0.9999, 0.99999):
    for _threshold in (4.0, 5.0):
        PAPER_CASES[f"radam[b2={_b2},threshold={_threshold:g}]"] = (
            adaptx.scale_by_radam,
            R.radam,
            dict(b2=_b2, threshold=_threshold),
            G,
        )


def _f32(value):
    return float(np.float32(value)) if isinstance(value, float) else value


def paper_diff(case: str, dtype) -> float:
    """adaptx against the paper's reference, float32 or float64 (x64 must be on)."""
    make, reference, kwargs, grads = PAPER_CASES[case]
    kwargs = {"b1": 0.9, "b2": 0.999, "eps": 1e-8, **kwargs}
    got = run(make(**kwargs), grads, np.zeros(grads.shape[1]), dtype)
    if dtype == jnp.float32:
        kwargs = {k: _f32(v) for k, v in kwargs.items()}
    return rel_diff(got, reference(grads, **kwargs))


@pytest.mark.parametrize("case", PAPER_CASES)
def test_matches_paper_float32(case):
    assert paper_diff(case, jnp.float32) <= F32_TOL


@pytest.mark.parametrize("case", PAPER_CASES)
def test_matches_paper_float64(case, x64):
    assert paper_diff(case, jnp.float64) <= F64_TOL


def test_radam_thresholds_and_decays_really_differ():
    # The RAdam cases above are not vacuous: threshold 4 rectifies at step 5, 5 at step 6.
    for b2 in (0.999, 0.9999, 0.99999):
        assert R.first_rectified_step(b2, 4.0) == 5
        assert R.first_rectified_step(b2, 5.0) == 6
        four, five = R.radam(G, b2=b2, threshold=4.0), R.radam(G, b2=b2, threshold=5.0)
        np.testing.assert_array_equal(four[:4], five[:4])
        assert rel_diff(four[4:5], five[4:5]) > 1e-2
    assert rel_diff(R.adam(G, b1_decay=0.9), R.adam(G)) > 1e-2


def _adamw_paper_chain(alpha, eta, weight_decay):
    # The chain the adamw docstring gives for the paper's form.
    return adaptx.chain(
        adaptx.scale_by_adam(0.9, 0.999, 1e-8),
        adaptx.scale(alpha),
        adaptx.add_decayed_weights(weight_decay),
        adaptx.scale_by_learning_rate(eta),
    )


PARAMS0 = np.array(TORCH["params0"])


def _eta(count):  # a schedule multiplier eta_t decaying linearly from 1 to 0.52, count = t - 1
    dtype = jnp.result_type(float)  # float32, or float64 under x64
    return 1.0 - jnp.asarray(count).astype(dtype) / (2 * R.T)


def _eta_np(t):
    return 1.0 - (t - 1) / (2 * R.T)


def adamw_paper_diff(dtype) -> tuple[float, float]:
    """(paper chain with a schedule multiplier, ``adamw`` with a constant lr) vs the paper."""
    alpha, wd = 0.05, 0.1
    ref = np.diff(R.adamw_paper(PARAMS0, G, alpha, _eta_np, weight_decay=wd), axis=0)
    got = run(_adamw_paper_chain(alpha, _eta, wd), G, PARAMS0, dtype)
    # adamw(lr, wd) is the paper's form with eta_t = lr, alpha = 1 and lambda = wd.
    lr = 0.01
    ref2 = np.diff(R.adamw_paper(PARAMS0, G, 1.0, lambda t: lr, weight_decay=wd), axis=0)
    got2 = run(adaptx.adamw(lr, weight_decay=wd), G, PARAMS0, dtype)
    return rel_diff(got, ref), rel_diff(got2, ref2)


def test_adamw_matches_paper_float32():
    assert max(adamw_paper_diff(jnp.float32)) <= F32_TOL


def test_adamw_matches_paper_float64(x64):
    assert max(adamw_paper_diff(jnp.float64)) <= F64_TOL


# --- against optax -------------------------------------------------------------------------------

TREE_GRADS = {"w": G, "b": -0.5 * G[:, 1:4]}
TREE_PARAMS = {"w": PARAMS0, "b": np.array([1.0, -2.0, 0.5])}
MASK = {"w": True, "b": False}

# id -> (adaptx, optax, hyper-parameters[, gradients, params]): the documented mappings. Each
# side is built from the same hyper-parameters. In the float32 runs optax gets them as float32
# arrays: from Python floats optax rounds b2 and 1 - b2 to float32 separately (their sum is not
# 1), a 1.3e-5 relative change of (1 - b2) = 1e-3 that moves its updates by ~1e-5; adaptx rounds
# each hyper-parameter once, so a Python float and a float32 array give it the same numbers.
OPTAX_CASES = {
    "scale_by_adam": (adaptx.scale_by_adam, optax.scale_by_adam, dict(b1=0.9, b2=0.999, eps=1e-8)),
    "scale_by_adam[eps_root]": (
        adaptx.scale_by_adam,
        optax.scale_by_adam,
        dict(b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-7),
    ),
    "adam": (adaptx.adam, optax.adam, dict(learning_rate=0.01, b1=0.9, b2=0.999, eps=1e-8)),
    "adam[nesterov]": (
        functools.partial(adaptx.adam, nesterov=True),
        functools.partial(optax.adam, nesterov=True),
        dict(learning_rate=0.01, b1=0.9, b2=0.999),
    ),
    "nadam[constant]": (
        functools.partial(adaptx.nadam, momentum_decay=None),
        optax.nadam,
        dict(learning_rate=0.01, b1=0.9, b2=0.999),
    ),
    "adam+L2": (
        lambda wd, **hp: adaptx.chain(adaptx.add_decayed_weights(wd), adaptx.adam(**hp)),
        lambda wd, **hp: optax.chain(optax.add_decayed_weights(wd), optax.adam(**hp)),
        dict(wd=0.1, learning_rate=0.01, b1=0.9, b2=0.999),
    ),
    "adamw": (adaptx.adamw, optax.adamw, dict(learning_rate=0.01, b2=0.999, weight_decay=0.1)),
    "adamw[default weight_decay]": (adaptx.adamw, optax.adamw, dict(learning_rate=0.01, b2=0.999)),
    "adamw[mask]": (
        functools.partial(adaptx.adamw, mask=MASK),
        functools.partial(optax.adamw, mask=MASK),
        dict(learning_rate=0.01, b2=0.999, weight_decay=0.1),
    ),
    "amsgrad[max_corrected]": (
        functools.partial(adaptx.amsgrad, variant="max_corrected"),
        optax.amsgrad,
        dict(learning_rate=0.01, b2=0.999),
    ),
    "scale_by_amsgrad[paper]": (
        functools.partial(adaptx.scale_by_amsgrad, variant="paper"),
        functools.partial(
            optax.scale_by_amsgrad, bias_correction_mu=False, bias_correction_nu=False
        ),
        dict(b1=0.9, b2=0.999),
    ),
    "adamax": (adaptx.adamax, optax.adamax, dict(learning_rate=0.02, b1=0.9, b2=0.999)),
    "scale_by_adamax[eps=0]": (
        adaptx.scale_by_adamax,
        optax.scale_by_adamax,
        dict(b1=0.9, b2=0.999, eps=0.0),
        G_NONZERO,
        PARAMS0[1:],
    ),
    "add_decayed_weights": (
        adaptx.add_decayed_weights,
        optax.add_decayed_weights,
        dict(weight_decay=0.3),
    ),
    "add_decayed_weights[mask]": (
        functools.partial(adaptx.add_decayed_weights, mask=MASK),
        functools.partial(optax.add_decayed_weights, mask=MASK),
        dict(weight_decay=0.3),
    ),
    "add_decayed_weights[mask fn]": (
        functools.partial(adaptx.add_decayed_weights, mask=lambda p: {"w": False, "b": True}),
        functools.partial(optax.add_decayed_weights, mask=lambda p: {"w": False, "b": True}),
        dict(weight_decay=0.3),
    ),
}
# RAdam: optax computes rho_t as written (see _peer_rho_error); compared separately below.
RADAM_OPTAX_CASES = {
    "radam": (adaptx.radam, optax.radam, dict(learning_rate=0.01, b2=0.999)),
    "radam[threshold=4]": (
        adaptx.radam,
        optax.radam,
        dict(learning_rate=0.01, b2=0.999, threshold=4.0),
    ),
    "radam[nesterov]": (
        functools.partial(adaptx.radam, nesterov=True),
        functools.partial(optax.radam, nesterov=True),
        dict(learning_rate=0.01, b2=0.999),
    ),
}


def optax_diff(case: str, dtype, steps: int = R.T) -> float:
    ours, theirs, hp, *data = {**OPTAX_CASES, **RADAM_OPTAX_CASES}[case]
    grads, params = data if data else (TREE_GRADS, TREE_PARAMS)
    grads = jax.tree.map(lambda g: g[:steps], grads)
    got = run(ours(**hp), grads, params, dtype)
    their_hp = {k: jnp.asarray(v, dtype) if isinstance(v, float) else v for k, v in hp.items()}
    want = run(theirs(**their_hp), grads, params, dtype, standard=True)
    return rel_diff(got, want)


# optax computes 1 - b2**t as written in float32: with b2 = 0.999 the subtraction leaves
# ~5 digits (up to 8e-6 relative error in the correction, ~3e-6 in the updates; see
# test_optax_float32_bias_correction_is_the_difference). The float64 runs prove the mappings
# to 1e-12; float32 agrees to within optax's own rounding.
OPTAX_F32_TOL = 1e-5


@pytest.mark.parametrize("case", OPTAX_CASES)
def test_matches_optax_float32(case):
    assert optax_diff(case, jnp.float32) <= OPTAX_F32_TOL


def test_optax_float32_bias_correction_is_the_difference():
    hp = dict(b1=0.9, b2=0.999, eps=1e-8)
    ours = run(adaptx.scale_by_adam(**hp), G, np.zeros(6), jnp.float32)
    theirs = run(
        optax.scale_by_adam(**{k: jnp.float32(v) for k, v in hp.items()}),
        G,
        np.zeros(6),
        jnp.float32,
        standard=True,
    )
    reference = R.adam(G, **{k: _f32(v) for k, v in hp.items()})
    assert rel_diff(ours, reference) <= F32_TOL < rel_diff(theirs, reference) <= OPTAX_F32_TOL
    b2 = jnp.float32(0.999)
    for t in (2, 10, 25):
        exact = R.one_minus_pow(float(b2), t)
        assert abs(float(1 - b2 ** jnp.int32(t)) - exact) / exact > 1e-6  # optax's formula


@pytest.mark.parametrize("case", OPTAX_CASES)
def test_matches_optax_float64(case, x64):
    assert optax_diff(case, jnp.float64) <= F64_TOL


def _peer_rho_error(b2: float, power=pow, steps: int = R.T) -> float:
    """The relative error of r_t when rho_t is computed as written in float64 (optax, torch).

    ``rho_inf - 2 t b2**t / (1 - b2**t)`` subtracts two numbers of about
    ``2 / (1 - b2)``: the result loses ``log10(rho_inf)`` digits. ``power``
    computes ``b2**t`` as the peer does (Python's for torch).
    """
    rho_inf = 2 / (1 - b2) - 1

    def r(rho):
        return np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))

    errors = []
    for t in range(R.first_rectified_step(b2), steps + 1):
        b2t = power(b2, t)
        naive = rho_inf - 2 * t * b2t / (1 - b2t)
        exact = R.radam_rho(b2, t)
        errors.append(abs(r(naive) - r(exact)) / r(exact))
    return max(errors)


@pytest.mark.parametrize("case", RADAM_OPTAX_CASES)
def test_radam_matches_optax_up_to_its_rho(case, x64):
    # float64: equal up to the digits optax's own rho_t loses (~1e-11 at b2 = 0.999); optax
    # computes b2**t as a jnp power of an int32 count.
    optax_power = lambda b, t: float(jnp.asarray(b) ** jnp.asarray(t, jnp.int32))
    assert optax_diff(case, jnp.float64) <= F64_TOL + 2 * _peer_rho_error(0.999, optax_power)


@pytest.mark.parametrize("case", RADAM_OPTAX_CASES)
def test_radam_matches_optax_float32_before_rectification(case):
    # float32: optax's rho_t is off by ~1e-4 even at b2 = 0.999 (1e-3 to 1e-2 on the
    # rectified steps), so only the momentum steps (t <= 4 or 5) can agree to 1e-6.
    assert optax_diff(case, jnp.float32, steps=4) <= F32_TOL


# --- against torch (stored numbers) --------------------------------------------------------------

# torch case -> adaptx optimizer: the mappings documented in the docstrings.
TORCH_MAPPING = {
    "Adam": lambda: adaptx.adam(1e-2),
    "Adam_b2_0.99_eps_1e-6": lambda: adaptx.adam(1e-2, b2=0.99, eps=1e-6),
    "Adam_L2": lambda: adaptx.chain(adaptx.add_decayed_weights(0.1), adaptx.adam(1e-2)),
    "AdamW": lambda: adaptx.adamw(1e-2, weight_decay=0.1),
    "Adam_amsgrad": lambda: adaptx.amsgrad(1e-2),
    "Adamax": lambda: adaptx.adamax(2e-2),
    "Adamax_eps_0": lambda: adaptx.adamax(2e-2, eps=0.0),
    "NAdam": lambda: adaptx.nadam(2e-2),
    "NAdam_psi_0.05": lambda: adaptx.nadam(2e-2, momentum_decay=0.05),
    "RAdam": lambda: adaptx.radam(1e-2, eps_before_bias_correction=True),
    "RAdam_b2_0.9999": lambda: adaptx.radam(1e-2, b2=0.9999, eps_before_bias_correction=True),
    "RAdam_b2_0.99999": lambda: adaptx.radam(1e-2, b2=0.99999, eps_before_bias_correction=True),
}


def torch_diff(case: str) -> float:
    """adaptx (float64) against torch's stored float64 trajectory, per-step updates."""
    data = TORCH["cases"][case]
    trajectory = np.array(data["params"])
    grads = G_NONZERO if data["grads"] == "nonzero" else G
    got = run(TORCH_MAPPING[case](), grads, trajectory[0], jnp.float64)
    return rel_diff(got, np.diff(trajectory, axis=0))


def test_torch_data_covers_every_mapping():
    assert set(TORCH["cases"]) == set(TORCH_MAPPING)


def torch_tolerance(case: str) -> float:
    # torch's RAdam computes rho_t as written, in float64: it loses log10(rho_inf) digits
    # (r_t off by 3e-12, 3e-10, 3e-8 at b2 = 0.999, 0.9999, 0.99999). adaptx's rho_t is exact
    # to 1e-15 (test_radam_rho_is_accurate), so the difference is torch's.
    if TORCH["cases"][case]["optimizer"] == "RAdam":
        betas = TORCH["cases"][case]["kwargs"].get("betas", [0.9, 0.999])
        return F64_TOL + 2 * _peer_rho_error(betas[1])
    return F64_TOL


@pytest.mark.parametrize("case", TORCH_MAPPING)
def test_matches_torch_float64(case, x64):
    assert torch_diff(case) <= torch_tolerance(case)


def test_radam_default_differs_from_torch_only_by_eps_placement(x64):
    data = TORCH["cases"]["RAdam"]
    torch_updates = np.diff(np.array(data["params"]), axis=0)
    ours = run(adaptx.radam(1e-2), G, PARAMS0, jnp.float64)
    # Identical for the five momentum steps, then eps / sqrt(1 - b2**t) vs eps: visible on
    # the small (1e-3) coordinate, where eps / sqrt(1 - b2**6) = 1.3e-7 is 1e-4 of sqrt(v_hat).
    assert rel_diff(ours[:5], torch_updates[:5]) <= F64_TOL
    assert 1e-8 < rel_diff(ours, torch_updates) < 1e-3
