"""Learning-rate schedules: functions from the step count to a value.

Convention for every schedule here: the optimizer calls the schedule with the
number of updates made *before* the current one, so the **first update uses
``schedule(0)``**, the second ``schedule(1)``, and so on. Values are float32
scalars; every schedule works on traced counts (inside ``jit``).

Step arguments (``decay_steps``, ``transition_begin``, boundaries...) may be
any large Python integer, also past the int32 range of step counters: they
enter the arithmetic as floats, and a boundary a counter cannot reach is never
crossed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from adaptx._base import Schedule
from adaptx._validate import (
    check_integer,
    check_nonnegative,
    check_number,
    check_positive,
    check_range,
)


def _f32(count: jax.Array) -> jax.Array:
    return jnp.asarray(count).astype(jnp.float32)


def _reached(count: jax.Array, boundary: int) -> jax.Array:
    """``count >= boundary``, also for a boundary past the range of ``count``'s dtype.

    A Python integer too large for an int32 counter would overflow on its way
    into ``jax``; such a boundary is simply never reached.
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.integer):
        if boundary > jnp.iinfo(count.dtype).max:
            return jnp.zeros(count.shape, bool)
        return count >= jnp.asarray(boundary, count.dtype)
    return count >= float(boundary)


def constant_schedule(value: float) -> Schedule:
    """``schedule(count) = value`` for every step.

    Example:
      >>> import adaptx
      >>> float(adaptx.constant_schedule(0.1)(5))
      0.10000000149011612
    """
    check_number("value", value)
    return lambda count: jnp.full((), value, jnp.float32)


def inverse_sqrt_schedule(init_value: float) -> Schedule:
    """The Adam paper's decay ``alpha_t = alpha / sqrt(t)``, t counted from 1.

    The first update (count 0) uses ``init_value``, the second
    ``init_value / sqrt(2)``: ``schedule(count) = init_value / sqrt(count + 1)``.
    This is the step size of Kingma & Ba's convergence analysis (Section 4) and
    of their logistic-regression experiment (Section 6.1).

    Example:
      >>> import adaptx
      >>> float(adaptx.inverse_sqrt_schedule(1.0)(3))
      0.5
    """
    check_nonnegative("init_value", init_value)
    return lambda count: init_value / jnp.sqrt(_f32(count) + 1.0)


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """``init_value * decay_rate ** ((count - transition_begin) / transition_steps)``.

    Constant at ``init_value`` for ``count <= transition_begin``. With
    ``staircase`` the exponent is floored. ``end_value`` bounds the result
    (a floor when decaying, a ceiling when growing). Same as optax's.

    Example:
      >>> import adaptx
      >>> float(adaptx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)(20))
      0.25
    """
    check_number("init_value", init_value)
    check_integer("transition_steps", transition_steps, 1)
    check_integer("transition_begin", transition_begin, 0)
    check_positive("decay_rate", decay_rate)
    if end_value is not None:
        check_number("end_value", end_value)

    begin, steps = float(transition_begin), float(transition_steps)

    def schedule(count):
        c = _f32(count) - begin
        p = c / steps
        if staircase:
            p = jnp.floor(p)
        v = jnp.where(c <= 0, init_value, init_value * jnp.power(jnp.float32(decay_rate), p))
        if end_value is not None:
            v = jnp.maximum(v, end_value) if decay_rate < 1 else jnp.minimum(v, end_value)
        return v.astype(jnp.float32)

    return schedule


def polynomial_schedule(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial interpolation from ``init_value`` to ``end_value``.

    ``v = (init - end) * (1 - s / transition_steps) ** power + end`` with
    ``s = clip(count - transition_begin, 0, transition_steps)``: ``init_value``
    at ``count <= transition_begin`` and ``end_value`` from
    ``count = transition_begin + transition_steps`` on.

    Example:
      >>> import adaptx
      >>> float(adaptx.polynomial_schedule(1.0, 0.0, power=2, transition_steps=4)(2))
      0.25
    """
    check_number("init_value", init_value)
    check_number("end_value", end_value)
    check_number("power", power)
    check_integer("transition_steps", transition_steps, 1)
    check_integer("transition_begin", transition_begin, 0)

    begin, steps = float(transition_begin), float(transition_steps)

    def schedule(count):
        s = jnp.clip(_f32(count) - begin, 0.0, steps)
        frac = 1 - s / steps
        return ((init_value - end_value) * frac**power + end_value).astype(jnp.float32)

    return schedule


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Linear interpolation: ``polynomial_schedule`` with ``power=1``.

    Example:
      >>> import adaptx
      >>> float(adaptx.linear_schedule(0.0, 1.0, transition_steps=4)(1))
      0.25
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """Cosine decay (Loshchilov & Hutter, SGDR, ICLR 2017) from ``init_value``.

    ``v = init_value * ((1 - alpha) * c ** exponent + alpha)`` with
    ``c = (1 + cos(pi * min(count, decay_steps) / decay_steps)) / 2``; it
    reaches ``alpha * init_value`` at ``count = decay_steps`` and stays there.

    Example:
      >>> import adaptx
      >>> float(adaptx.cosine_decay_schedule(1.0, decay_steps=10)(5))
      0.5
    """
    check_number("init_value", init_value)
    check_integer("decay_steps", decay_steps, 1)
    check_range("alpha", alpha, 0.0, 1.0)
    check_positive("exponent", exponent)

    steps = float(decay_steps)

    def schedule(count):
        c = jnp.minimum(_f32(count), steps)
        cosine = 0.5 * (1 + jnp.cos(math.pi * c / steps))
        return (init_value * ((1 - alpha) * cosine**exponent + alpha)).astype(jnp.float32)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules[i]`` from ``boundaries[i - 1]`` on, each restarted at count 0.

    Args:
      schedules: n schedules.
      boundaries: n - 1 increasing step counts.

    Example:
      >>> import adaptx
      >>> s = adaptx.join_schedules(
      ...     [adaptx.constant_schedule(1.0), adaptx.linear_schedule(1.0, 0.0, 10)], [5])
      >>> float(s(4)), float(s(5)), float(s(10))
      (1.0, 1.0, 0.5)
    """
    schedules = list(schedules)
    boundaries = list(boundaries)
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            f"join_schedules needs one more schedule than boundaries, got "
            f"{len(schedules)} schedules and {len(boundaries)} boundaries"
        )
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(f"schedules[{i}] must be callable (count -> value), got {s!r}")
    for b in boundaries:
        check_integer("each boundary", b, 0)
    if any(b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])):
        raise ValueError(f"boundaries must be strictly increasing, got {boundaries}")

    def schedule(count):
        count = jnp.asarray(count)
        out = schedules[0](count)
        for boundary, s in zip(boundaries, schedules[1:]):
            if jnp.issubdtype(count.dtype, jnp.integer) and boundary > jnp.iinfo(count.dtype).max:
                break  # a counter of this dtype never gets there
            out = jnp.where(_reached(count, boundary), s(count - boundary), out)
        return jnp.asarray(out).astype(jnp.float32)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the warm-up too (as in optax): the value is
    ``peak_value`` at ``count = warmup_steps`` and ``end_value`` from
    ``count = decay_steps`` on. After the warm-up, with ``s`` the steps since
    its end and ``c = (1 + cos(pi * min(s, decay_steps - warmup_steps) /
    (decay_steps - warmup_steps))) / 2``, the value is
    ``end_value + (peak_value - end_value) * c ** exponent``: optax's
    ``peak_value * ((1 - a) * c ** exponent + a)`` with ``a = end_value /
    peak_value``, but defined for every ``end_value``, also with
    ``peak_value = 0`` (where optax stays at 0 instead of reaching
    ``end_value``).

    Example:
      >>> import adaptx
      >>> s = adaptx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=12)
      >>> float(s(1)), float(s(2)), float(s(12))
      (0.5, 1.0, 0.0)
    """
    check_number("init_value", init_value)
    check_number("peak_value", peak_value)
    check_number("end_value", end_value)
    check_integer("warmup_steps", warmup_steps, 0)
    if not isinstance(decay_steps, int) or decay_steps <= warmup_steps:
        raise ValueError(
            f"decay_steps must be an integer > warmup_steps ({warmup_steps}), got {decay_steps!r}"
        )
    check_positive("exponent", exponent)
    steps = float(decay_steps - warmup_steps)

    def decay(count):
        c = jnp.minimum(_f32(count), steps)
        cosine = 0.5 * (1 + jnp.cos(math.pi * c / steps))
        return (end_value + (peak_value - end_value) * cosine**exponent).astype(jnp.float32)

    if warmup_steps == 0:
        return decay
    warm = linear_schedule(init_value, peak_value, warmup_steps)
    return join_schedules([warm, decay], [warmup_steps])


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """``init_value`` multiplied by ``scale`` for every ``boundary <= count``.

    Example:
      >>> import adaptx
      >>> s = adaptx.piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.5})
      >>> [float(s(c)) for c in range(5)]
      [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    check_number("init_value", init_value)
    items = sorted((boundaries_and_scales or {}).items())
    for b, s in items:
        if not isinstance(b, int) or b < 0:
            raise ValueError(f"boundaries must be non-negative integers, got {b!r}")
        check_nonnegative(f"scale at boundary {b}", s)

    def schedule(count):
        count = jnp.asarray(count)
        v = jnp.full((), init_value, jnp.float32)
        for b, s in items:
            v = jnp.where(_reached(count, b), v * s, v)
        return v

    return schedule


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant.

    ``peak_value`` from ``count = warmup_steps`` on. Same as optax's, except
    for ``warmup_steps = 0``: adaptx is then constant at ``peak_value``;
    optax's linear schedule with no steps stays at ``init_value`` forever.

    Example:
      >>> import adaptx
      >>> s = adaptx.warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
      >>> [float(s(c)) for c in (0, 2, 4, 100)]
      [0.0, 0.5, 1.0, 1.0]
    """
    check_number("init_value", init_value)
    check_number("peak_value", peak_value)
    check_integer("warmup_steps", warmup_steps, 0)
    if warmup_steps == 0:
        return constant_schedule(peak_value)
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then ``exponential_decay`` from it.

    The decay restarts its count at ``warmup_steps``:
    ``schedule(warmup_steps + c) = exponential_decay(peak_value, transition_steps,
    decay_rate, transition_begin, staircase, end_value)(c)``. Same as optax's.

    Example:
      >>> import adaptx
      >>> s = adaptx.warmup_exponential_decay_schedule(0.0, 1.0, 2, 10, 0.5)
      >>> [float(s(c)) for c in (0, 1, 2, 12)]
      [0.0, 0.5, 1.0, 0.5]
    """
    check_number("init_value", init_value)
    check_number("peak_value", peak_value)
    check_integer("warmup_steps", warmup_steps, 0)
    decay = exponential_decay(
        peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
    )
    if warmup_steps == 0:
        return decay
    warm = linear_schedule(init_value, peak_value, warmup_steps)
    return join_schedules([warm, decay], [warmup_steps])
