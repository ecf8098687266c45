"""Validation of hyper-parameters at construction time.

Only concrete numbers are checked against their range: a traced value (inside
``jit``) cannot be inspected without synchronising with the host, so it passes
through unchecked, except for its shape, which is known at trace time (a
hyper-parameter must be a scalar). A schedule's first value is checked where
the caller asks for it (``check_learning_rate``); later values are not.

Every error names the argument, the value and the allowed range, or the type
that was expected. Non-numbers (strings, ``None``, booleans) raise
``TypeError``; numbers out of range, NaN, infinities (unless allowed), complex
numbers and non-scalar arrays raise ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from adaptx._numerics import is_concrete_number


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic, jax.Array)) or hasattr(x, "__jax_array__")


def _value(name: str, x: Any) -> float | None:
    """``x`` as a Python float, or ``None`` when it cannot be inspected (tracer, schedule).

    Raises for what is never a valid numeric hyper-parameter, traced or not.
    """
    if callable(x) and not _is_array(x):
        return None
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got the boolean {x!r}")
    if not (isinstance(x, (int, float, complex)) or _is_array(x)):
        raise TypeError(f"{name} must be a number or a scalar array, got {type(x).__name__}: {x!r}")
    shape = np.shape(x)
    if shape != ():
        raise ValueError(f"{name} must be a scalar, got an array of shape {shape}")
    dtype = np.result_type(x) if not isinstance(x, jax.Array) else x.dtype
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got {x!r}")
    if np.issubdtype(dtype, np.bool_):
        raise TypeError(f"{name} must be a number, got the boolean {x!r}")
    if not is_concrete_number(x):  # traced: shape and dtype checked, value unknown
        return None
    return float(x)


def _show(value: Any, v: float) -> str:
    """The value for a message: as given for Python numbers, as a float for arrays."""
    return repr(value) if isinstance(value, (int, float)) else repr(v)


def check_number(name: str, value: Any) -> None:
    """A finite real scalar (any sign); schedules and traced values pass.

    Example:
      >>> from adaptx._validate import check_number
      >>> check_number("step_size", float("nan"))
      Traceback (most recent call last):
      ...
      ValueError: step_size must be a finite number, got nan
    """
    v = _value(name, value)
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {_show(value, v)}")


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> None:
    """Raises ``ValueError`` unless ``low <= value <= high`` (with open ends as asked).

    NaN is always rejected, and so are infinities unless ``allow_inf``.
    Non-concrete values (tracers, schedules) are skipped; a non-scalar or a
    non-number raises whatever its value.

    Example:
      >>> from adaptx._validate import check_range
      >>> check_range("b1", 1.5, 0.0, 1.0, high_open=True)
      Traceback (most recent call last):
      ...
      ValueError: b1 must be in [0.0, 1.0), got 1.5
    """
    v = _value(name, value)
    if v is None:
        return
    lo = "(" if low_open or (low is None and not allow_inf) else "["
    hi = ")" if high_open or (high is None and not allow_inf) else "]"
    allowed = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = math.isnan(v) or (math.isinf(v) and not allow_inf)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        raise ValueError(f"{name} must be in {allowed}, got {_show(value, v)}")


def check_nonnegative(name: str, value: Any) -> None:
    """``value >= 0``, finite (not NaN, not inf)."""
    check_range(name, value, 0.0, None)


def check_positive(name: str, value: Any) -> None:
    """``value > 0``, finite (not NaN, not inf)."""
    check_range(name, value, 0.0, None, low_open=True)


def check_decay(name: str, value: Any) -> None:
    """A decay rate or beta: ``0 <= value < 1``."""
    check_range(name, value, 0.0, 1.0, high_open=True)


def check_momentum(name: str, momentum: Any) -> None:
    """A heavy-ball momentum: ``0 <= momentum <= 1`` (1 is a plain running sum)."""
    check_range(name, momentum, 0.0, 1.0)


def check_integer(name: str, value: Any, minimum: int) -> None:
    """A Python (or NumPy) integer ``>= minimum``; booleans and floats are rejected.

    Example:
      >>> from adaptx._validate import check_integer
      >>> check_integer("transition_steps", 0, 1)
      Traceback (most recent call last):
      ...
      ValueError: transition_steps must be an integer >= 1, got 0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def schedule_start(schedule: Any) -> Any:
    """``schedule(0)`` computed eagerly, or ``None`` when it cannot be (it raises).

    Any exception means "cannot be checked": a schedule that needs more than a
    count, or one that closes over traced values.
    """
    import jax.numpy as jnp

    try:
        return schedule(jnp.zeros((), jnp.int32))
    except Exception:  # a schedule we cannot cheaply evaluate is not checked
        return None


def check_schedule_start(name: str, schedule: Any, low: float | None = None) -> None:
    """Checks a schedule's first value (``schedule(0)``): a finite scalar, ``>= low`` if given.

    A schedule that cannot be evaluated eagerly at construction (it raises,
    or needs more than a count) is not checked; its later values never are.
    """
    first = schedule_start(schedule)
    if first is None:
        return
    if np.shape(first) != ():
        raise ValueError(
            f"{name} schedule must return a scalar, got shape {np.shape(first)} at step 0"
        )
    if not is_concrete_number(first):
        return
    v = float(first)
    if math.isnan(v) or math.isinf(v) or (low is not None and v < low):
        rng = "finite values" if low is None else f"finite values >= {low}"
        raise ValueError(f"{name} schedule must give {rng}, got {v!r} at step 0")


def check_fits_params(name: str, value: Any, params: Any, *, what: str = "the params'") -> None:
    """A hyper-parameter that multiplies the updates must be finite in the params' dtypes.

    Called by ``init`` (the first time the params' dtypes are known): a factor
    larger than the largest finite number of a leaf's dtype (``sgd(1e40)``
    on float32 params, ``scale(1e5)`` on float16 ones) would turn every update
    into an infinity. Only concrete values are checked: a number, a concrete
    scalar array, or a schedule's value at step 0 (computed here, eagerly; a
    schedule that cannot be is skipped); a traced value is not. Leaves that
    are not floating (or complex) are skipped, and so is a tree with none.

    Example:
      >>> import jax.numpy as jnp
      >>> from adaptx._validate import check_fits_params
      >>> check_fits_params("learning_rate", 1e40, {"w": jnp.zeros(2)})
      Traceback (most recent call last):
      ...
      ValueError: learning_rate=1e+40 overflows the params' dtype float32 (largest finite ...
    """
    import jax.numpy as jnp

    leaves = jax.tree.leaves(params)
    if not leaves:
        return
    given = value
    if callable(value) and not _is_array(value):
        value = schedule_start(value)
        if value is None or np.shape(value) != ():
            return
    if not is_concrete_number(value):
        return
    v = abs(float(value))
    if math.isnan(v) or math.isinf(v):
        return  # construction rejects these with its own message
    seen = set()
    for x in leaves:
        dtype = jnp.dtype(getattr(x, "dtype", None) or np.result_type(x))
        if dtype in seen or not jnp.issubdtype(dtype, jnp.inexact):
            continue
        seen.add(dtype)
        big = float(jnp.finfo(dtype).max)
        if v > big:
            if isinstance(given, (int, float)):
                shown = f"{name}={given!r}"
            elif callable(given) and not _is_array(given):
                shown = f"{name} (a schedule giving {float(value)!r} at step 0)"
            else:
                shown = f"{name}={float(value)!r}"
            raise ValueError(
                f"{shown} overflows {what} dtype {dtype} "
                f"(largest finite value {big:.4g}): every update would be infinite; "
                f"use a smaller {name} or wider params"
            )


def check_learning_rate(name: str, value: Any) -> None:
    """A learning rate: a finite non-negative number, or a schedule whose first value is."""
    if callable(value) and not _is_array(value):
        check_schedule_start(name, value, 0.0)
        return
    check_nonnegative(name, value)


def check_dtype(name: str, dtype: Any, *, complex_ok: bool = True) -> None:
    """``None``, or a floating dtype (complex too if ``complex_ok``); else ``ValueError``.

    Example:
      >>> from adaptx._validate import check_dtype
      >>> check_dtype("nu_dtype", "int32", complex_ok=False)
      Traceback (most recent call last):
      ...
      ValueError: nu_dtype must be a floating dtype (float32, bfloat16, ...) or None, got int32
    """
    if dtype is None:
        return
    import jax.numpy as jnp

    try:
        d = jnp.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"{name} must be a dtype or None, got {dtype!r}") from e
    kinds = "floating or complex" if complex_ok else "floating"
    ok = jnp.issubdtype(d, jnp.floating) or (complex_ok and jnp.issubdtype(d, jnp.complexfloating))
    if not ok:
        raise ValueError(
            f"{name} must be a {kinds} dtype (float32, bfloat16, ...) or None, got {d}"
        )
