"""Validation of hyper-parameters at construction time.

Only concrete numbers are checked: a traced value (inside ``jit``) or a
schedule cannot be inspected without synchronising with the host, so those
pass through unchecked (a schedule's first value is checked where the caller
asks for it). Every error names the argument, the value and the allowed range.
"""

from __future__ import annotations

import math
from typing import Any

from adaptx._numerics import is_concrete_number


def _value(x: Any) -> float | None:
    if callable(x) or not is_concrete_number(x):
        return None
    return float(x)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raises ``ValueError`` unless ``low <= value <= high`` (with open ends as asked).

    NaN is always rejected. Non-concrete values (tracers, schedules) are skipped.
    """
    v = _value(value)
    if v is None:
        return
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = math.isnan(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """``value >= 0`` (and not NaN)."""
    check_range(name, value, 0.0, None)


def check_positive(name: str, value: Any) -> None:
    """``value > 0`` (and not NaN)."""
    check_range(name, value, 0.0, None, low_open=True)


def check_decay(name: str, value: Any) -> None:
    """A decay rate or beta: ``0 <= value < 1``."""
    check_range(name, value, 0.0, 1.0, high_open=True)


def check_learning_rate(name: str, value: Any) -> None:
    """A learning rate: a non-negative number, or a schedule whose first value is."""
    if callable(value):
        try:
            import jax.numpy as jnp

            first = value(jnp.zeros((), jnp.int32))
        except Exception:  # a schedule we cannot cheaply evaluate is not checked
            return
        if is_concrete_number(first):
            v = float(first)
            if math.isnan(v) or v < 0:
                raise ValueError(
                    f"{name} schedule must give non-negative values, got {v!r} at step 0"
                )
        return
    check_nonnegative(name, value)
