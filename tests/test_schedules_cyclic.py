"""Warm-up, one-cycle, piecewise-interpolated and SGDR schedules: papers and optax."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptx

COUNTS = np.arange(0, 131)


def _values(schedule, counts=COUNTS):
    f = jax.jit(jax.vmap(schedule))
    return np.asarray(f(jnp.asarray(counts, jnp.int32)), np.float64)


CASES = {
    "warmup_constant": ("warmup_constant_schedule", (0.1, 2.0, 17), {}),
    "warmup_exponential_decay": (
        "warmup_exponential_decay_schedule",
        (0.0, 1.0, 10, 7, 0.8),
        {"transition_begin": 5, "staircase": True, "end_value": 0.2},
    ),
    "piecewise_linear": (
        "piecewise_interpolate_schedule",
        ("linear", 2.0, {10: 0.5, 40: 3.0, 41: 0.0}),
        {},
    ),
    "piecewise_cosine": (
        "piecewise_interpolate_schedule",
        ("cosine", 2.0, {0: 2.0, 25: 0.1, 90: 4.0}),
        {},
    ),
    "linear_onecycle": ("linear_onecycle_schedule", (100, 0.5), {}),
    "linear_onecycle_custom": ("linear_onecycle_schedule", (73, 2.0, 0.2, 0.6, 10.0, 100.0), {}),
    "cosine_onecycle": ("cosine_onecycle_schedule", (100, 0.5), {}),
    "cosine_onecycle_custom": ("cosine_onecycle_schedule", (61, 1.0, 0.4, 5.0, 50.0), {}),
    "sgdr": (
        "sgdr_schedule",
        (
            [
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=20),
                dict(
                    init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=40, end_value=0.05
                ),
                dict(init_value=0.2, peak_value=0.3, warmup_steps=10, decay_steps=50, exponent=2.0),
            ],
        ),
        {},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_optax(case):
    name, args, kwargs = CASES[case]
    ours = _values(getattr(adaptx, name)(*args, **kwargs))
    with jax.numpy_dtype_promotion("standard"):  # optax's schedules mix int and float
        theirs = _values(getattr(optax, name)(*args, **kwargs))
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=1e-7)


def sgdr_reference(t, cycles):
    """Loshchilov & Hutter, Eq. (5): eta_min + (eta_max - eta_min)(1 + cos(pi T_cur/T_i))/2."""
    start = 0
    for i, (eta_max, eta_min, length) in enumerate(cycles):
        if t < start + length or i == len(cycles) - 1:
            cur = min(t - start, length)
            return eta_min + (eta_max - eta_min) * (1 + math.cos(math.pi * cur / length)) / 2
        start += length


def test_sgdr_is_the_papers_equation_5_with_growing_cycles():
    # T_0 = 10, T_mult = 2: cycles of 10, 20, 40 steps.
    cycles = [(0.05, 1e-3, 10), (0.05, 1e-3, 20), (0.05, 1e-3, 40)]
    s = adaptx.sgdr_schedule(
        [
            dict(init_value=hi, peak_value=hi, warmup_steps=0, decay_steps=n, end_value=lo)
            for hi, lo, n in cycles
        ]
    )
    counts = np.arange(75)
    ref = np.array([sgdr_reference(int(t), cycles) for t in counts])
    np.testing.assert_allclose(_values(s, counts), ref, rtol=2e-6)
    restarts = [10, 30]
    np.testing.assert_allclose(_values(s, restarts), 0.05, rtol=1e-6)  # back to the peak


def onecycle_reference(t, total, peak, pct_start, pct_final, div, final_div):
    """Smith's three linear phases: a -> peak -> a -> a / final_div (a = peak / div)."""
    a = peak / div
    b1, b2 = int(pct_start * total), int(pct_final * total)
    if t < b1:
        return a + (peak - a) * t / b1
    if t < b2:
        return peak + (a - peak) * (t - b1) / (b2 - b1)
    if t < total:
        return a + (a / final_div - a) * (t - b2) / (total - b2)
    return a / final_div


def test_linear_onecycle_is_smiths_three_phases():
    s = adaptx.linear_onecycle_schedule(100, 0.5)
    ref = [onecycle_reference(int(t), 100, 0.5, 0.3, 0.85, 25.0, 1e4) for t in COUNTS]
    np.testing.assert_allclose(_values(s), ref, rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose([_values(s).max(), _values(s, [30])[0]], 0.5, rtol=1e-6)


def test_warmup_constant_with_no_warmup_is_the_peak_where_optax_stays_at_init():
    ours = _values(adaptx.warmup_constant_schedule(0.1, 1.0, 0), [0, 5])
    np.testing.assert_array_equal(ours, np.float32(1.0))
    with jax.numpy_dtype_promotion("standard"):
        theirs = _values(optax.warmup_constant_schedule(0.1, 1.0, 0), [0, 5])
    np.testing.assert_allclose(theirs, 0.1, rtol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: adaptx.piecewise_interpolate_schedule("cubic", 1.0), "interpolate_type must be"),
        (
            lambda: adaptx.piecewise_interpolate_schedule("linear", 1.0, {5: -1.0}),
            r"scale at boundary 5 must be in",
        ),
        (
            lambda: adaptx.piecewise_interpolate_schedule("linear", 1.0, {-5: 1.0}),
            "boundary must be an integer >= 0",
        ),
        (
            lambda: adaptx.linear_onecycle_schedule(0, 1.0),
            "transition_steps must be an integer >= 1",
        ),
        (
            lambda: adaptx.linear_onecycle_schedule(100, 1.0, pct_start=0.9),
            r"pct_final \(0.85\) must be >= pct_start",
        ),
        (lambda: adaptx.linear_onecycle_schedule(1, 1.0), "two phases would end at the same step"),
        (
            lambda: adaptx.cosine_onecycle_schedule(100, 1.0, div_factor=0.0),
            r"div_factor must be in \(0.0, inf\)",
        ),
        (
            lambda: adaptx.cosine_onecycle_schedule(100, 1.0, pct_start=1.0),
            r"pct_start must be in \[0.0, 1.0\)",
        ),
        (lambda: adaptx.sgdr_schedule([]), "at least one cycle"),
        (
            lambda: adaptx.sgdr_schedule(
                [dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=5)]
            ),
            "decay_steps must be an integer > warmup_steps",
        ),
        (
            lambda: adaptx.warmup_constant_schedule(0.0, float("nan"), 3),
            "peak_value must be a finite number",
        ),
        (
            lambda: adaptx.warmup_exponential_decay_schedule(0.0, 1.0, -1, 5, 0.5),
            "warmup_steps must be an integer >= 0",
        ),
    ],
)
def test_rejects_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
