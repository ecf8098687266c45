"""Schedules that go up and down: piecewise interpolation, one-cycle, warm restarts.

Every schedule takes the step count (0 on the first update) and returns a
float32 scalar; arguments are validated at construction and each function
takes optax's arguments in optax's order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import jax.numpy as jnp

from adaptx._base import Schedule
from adaptx._schedules import join_schedules, warmup_cosine_decay_schedule
from adaptx._validate import (
    check_integer,
    check_nonnegative,
    check_number,
    check_positive,
    check_range,
)

_INTERPOLATE = ("linear", "cosine")


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: float,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    r"""Interpolates between values that change by a factor at each boundary.

    With sorted boundaries ``b_1 < ... < b_n``, ``b_0 = 0``, values
    ``v_0 = init_value`` and ``v_k = v_{k-1} * scale_k``: on
    ``b_{k-1} <= count < b_k`` the schedule goes from ``v_{k-1}`` to ``v_k``
    with ``p = (count - b_{k-1}) / (b_k - b_{k-1})``, linearly
    (``v_{k-1} + p (v_k - v_{k-1})``) or along a half cosine
    (``v_k + (v_{k-1} - v_k) (1 + cos(pi p)) / 2``), and is ``v_n`` from
    ``b_n`` on. Same as optax's.

    Args:
      interpolate_type: ``"linear"`` or ``"cosine"``.
      init_value: ``v_0``.
      boundaries_and_scales: ``{boundary: scale}``, boundaries integers
        ``>= 0``, scales finite and ``>= 0``.

    Example:
      >>> import adaptx
      >>> s = adaptx.piecewise_interpolate_schedule("linear", 1.0, {4: 3.0})
      >>> [float(s(c)) for c in (0, 1, 4, 9)]
      [1.0, 1.5, 3.0, 3.0]
    """
    if interpolate_type not in _INTERPOLATE:
        raise ValueError(
            f"interpolate_type must be one of {_INTERPOLATE}, got {interpolate_type!r}"
        )
    check_number("init_value", init_value)
    items = sorted((boundaries_and_scales or {}).items())
    for b, s in items:
        check_integer("each boundary", b, 0)
        check_nonnegative(f"the scale at boundary {b}", s)
    bounds = [0] + [b for b, _ in items]
    values = [float(init_value)]
    for _, s in items:
        values.append(values[-1] * float(s))

    def interpolate(start, end, p):
        if interpolate_type == "linear":
            return start + p * (end - start)
        return end + (start - end) * (1 + jnp.cos(math.pi * p)) / 2

    def schedule(count):
        c = jnp.asarray(count).astype(jnp.float32)
        out = jnp.full((), values[-1], jnp.float32)
        for k in range(len(items), 0, -1):  # the first interval containing c wins
            lo, hi = bounds[k - 1], bounds[k]
            p = (c - lo) / max(hi - lo, 1)
            v = interpolate(jnp.float32(values[k - 1]), jnp.float32(values[k]), p)
            out = jnp.where((lo <= c) & (c < hi), v, out)
        return out.astype(jnp.float32)

    return schedule


def _check_onecycle(transition_steps, peak_value, div_factor, final_div_factor):
    check_integer("transition_steps", transition_steps, 1)
    check_number("peak_value", peak_value)
    check_positive("div_factor", div_factor)
    check_positive("final_div_factor", final_div_factor)


def _distinct(boundaries: dict, pairs: list[tuple[int, float]], transition_steps: int) -> dict:
    for b, s in pairs:
        if b in boundaries:
            raise ValueError(
                f"transition_steps={transition_steps} is too small for these percentages: two "
                f"phases would end at the same step {b}; use more steps"
            )
        boundaries[b] = s
    return boundaries


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""Smith's one-cycle policy with linear phases (Smith 2018; Smith & Topin 2019).

    Three linear phases over ``T = transition_steps`` steps, with
    ``a = peak_value / div_factor``: from ``a`` up to ``peak_value`` until
    step ``int(pct_start T)``, back down to ``a`` until ``int(pct_final T)``,
    then down to ``a / final_div_factor`` at ``T``, and constant after. Same
    as optax's (a ``piecewise_interpolate_schedule``).

    Args:
      transition_steps: ``T``, an integer ``>= 1``.
      peak_value: the largest value.
      pct_start: the fraction of ``T`` spent rising, in [0, 1].
      pct_final: the fraction of ``T`` at which the descent to ``a`` ends,
        in [pct_start, 1].
      div_factor: ``peak_value / a``, ``> 0``.
      final_div_factor: ``a`` over the last value, ``> 0``.

    Example:
      >>> import adaptx
      >>> s = adaptx.linear_onecycle_schedule(100, 1.0, div_factor=10.0)
      >>> [round(float(s(c)), 3) for c in (0, 30, 85, 100)]
      [0.1, 1.0, 0.1, 0.0]

    References:
      Smith, "A disciplined approach to neural network hyper-parameters: Part 1",
      2018, https://arxiv.org/abs/1803.09820; Smith & Topin, "Super-Convergence",
      2019, https://arxiv.org/abs/1708.07120
    """
    _check_onecycle(transition_steps, peak_value, div_factor, final_div_factor)
    check_range("pct_start", pct_start, 0.0, 1.0)
    check_range("pct_final", pct_final, 0.0, 1.0)
    if pct_final < pct_start:
        raise ValueError(f"pct_final ({pct_final}) must be >= pct_start ({pct_start})")
    boundaries = _distinct(
        {},
        [
            (int(pct_start * transition_steps), div_factor),
            (int(pct_final * transition_steps), 1.0 / div_factor),
            (transition_steps, 1.0 / final_div_factor),
        ],
        transition_steps,
    )
    return piecewise_interpolate_schedule("linear", peak_value / div_factor, boundaries)


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The one-cycle policy with cosine phases (Smith & Topin 2019; fastai, torch's default).

    With ``a = peak_value / div_factor``: a half cosine from ``a`` up to
    ``peak_value`` until step ``int(pct_start T)``, then a half cosine down
    to ``a / final_div_factor`` at ``T = transition_steps``, and constant
    after. Same as optax's. (torch's ``OneCycleLR(anneal_strategy="cos")``
    has the same shape but ends its phases one step earlier.)

    Args:
      transition_steps: ``T``, an integer ``>= 1``.
      peak_value: the largest value.
      pct_start: the fraction of ``T`` spent rising, in [0, 1).
      div_factor: ``peak_value / a``, ``> 0``.
      final_div_factor: ``a`` over the last value, ``> 0``.

    Example:
      >>> import adaptx
      >>> s = adaptx.cosine_onecycle_schedule(100, 1.0, div_factor=10.0)
      >>> [round(float(s(c)), 3) for c in (0, 15, 30, 100)]
      [0.1, 0.55, 1.0, 0.0]

    References:
      Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks
      Using Large Learning Rates", 2019, https://arxiv.org/abs/1708.07120
    """
    _check_onecycle(transition_steps, peak_value, div_factor, final_div_factor)
    check_range("pct_start", pct_start, 0.0, 1.0, high_open=True)
    boundaries = _distinct(
        {},
        [
            (int(pct_start * transition_steps), div_factor),
            (transition_steps, 1.0 / (div_factor * final_div_factor)),
        ],
        transition_steps,
    )
    return piecewise_interpolate_schedule("cosine", peak_value / div_factor, boundaries)


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, float]]) -> Schedule:
    r"""Cosine annealing with warm restarts, SGDR (Loshchilov & Hutter, ICLR 2017).

    One ``warmup_cosine_decay_schedule(**kwargs)`` per cycle, each restarted
    at count 0 when the previous one's ``decay_steps`` are over. Within a
    cycle of ``T_i = decay_steps`` steps without warm-up this is the paper's
    Eq. (5), ``eta = eta_min + (eta_max - eta_min) (1 + cos(pi T_cur / T_i)) / 2``
    with ``eta_max = peak_value``, ``eta_min = end_value``. The paper's
    growing cycles (``T_i = T_0 T_mult**i``) are a list of cycles with
    growing ``decay_steps``. Same as optax's.

    Args:
      cosine_kwargs: one dict per cycle, the keyword arguments of
        ``warmup_cosine_decay_schedule`` (``init_value``, ``peak_value``,
        ``warmup_steps``, ``decay_steps``, optionally ``end_value``, ``exponent``).

    Example:
      >>> import adaptx
      >>> cycle = dict(init_value=1.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
      >>> s = adaptx.sgdr_schedule([cycle, cycle])
      >>> [round(float(s(c)), 3) for c in (0, 5, 9, 10, 15)]
      [1.0, 0.5, 0.024, 1.0, 0.5]

    References:
      Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
      Restarts", ICLR 2017, https://arxiv.org/abs/1608.03983
    """
    cycles = list(cosine_kwargs)
    if not cycles:
        raise ValueError("sgdr_schedule needs at least one cycle (a dict of cosine kwargs)")
    schedules, boundaries, step = [], [], 0
    for i, kwargs in enumerate(cycles):
        if not isinstance(kwargs, Mapping):
            raise TypeError(
                f"cosine_kwargs[{i}] must be a dict of keyword arguments, got {kwargs!r}"
            )
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += kwargs["decay_steps"]
        boundaries.append(step)
    if len(schedules) == 1:
        return schedules[0]
    return join_schedules(schedules, boundaries[:-1])
