"""Schedule-Free learning (Defazio et al., NeurIPS 2024): a wrapper and its aliases."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adam import times, widen
from adaptx._base import (
    GradientTransformation,
    OptState,
    Params,
    ScalarOrSchedule,
    accepts_extra_args,
    call_update,
)
from adaptx._combine import _check_transform, chain
from adaptx._numerics import (
    compute_dtype,
    hyperparam,
    safe_increment,
    tree_map_unzip,
    widest_compute_dtype,
)
from adaptx._rmsprop import scale_by_rms
from adaptx._scale import scale_by_learning_rate
from adaptx._sgd import sgd
from adaptx._signature import check_like, check_state
from adaptx._validate import (
    check_decay,
    check_dtype,
    check_integer,
    check_learning_rate,
    check_nonnegative,
    check_range,
)
from adaptx._weight_decay import add_decayed_weights

_NEEDS_PARAMS = (
    "schedule_free needs the parameters (the point y_t where the gradient was taken): "
    "call tx.update(grads, state, params)"
)


class ScheduleFreeState(NamedTuple):
    """State of ``schedule_free`` (optax.contrib's field names and order).

    Attributes:
      b1: the interpolation ``beta1`` (a scalar, read by ``schedule_free_eval_params``).
      weight_sum: ``sum_i w_i`` of the averaging weights so far.
      step_count: the 1-based number of the *next* step (1 after ``init``), as
        in optax; the learning rate schedule is evaluated at it.
      max_lr: the largest learning rate seen so far, ``lr_max``.
      base_optimizer_state: the base optimizer's state.
      z: the base optimizer's iterate ``z_t``, in ``state_dtype`` (default the
        parameter's).

    ``b1``, ``weight_sum`` and ``max_lr`` are float32 (float64 for float64
    parameters); optax keeps them in the parameters' lowest dtype, which
    for bfloat16 parameters sums the weights in bfloat16.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: OptState
    z: Params


def _is_schedule_free_state(x: Any) -> bool:
    # adaptx's state, or optax.contrib's (same field names), found anywhere in a state tree.
    fields = getattr(type(x), "_fields", ())
    return isinstance(x, tuple) and {"b1", "z", "weight_sum", "base_optimizer_state"} <= set(fields)


def schedule_free_eval_params(state: OptState, params: Params) -> Params:
    r"""The parameters to evaluate a Schedule-Free model at: the average ``x_t``.

    Training holds ``y_t = (1 - b1) z_t + b1 x_t``; the state holds ``z_t``,
    so ``x_t = y_t + ((1 - b1) / b1) (y_t - z_t)``, computed in float32 (or
    float64) and returned in the parameters' dtypes.

    ``state`` may be the ``ScheduleFreeState`` itself or any optimizer state
    that contains exactly one (``MultiSteps``, ``chain``, ``inject_hyperparams``
    around it, or optax.contrib's ``ScheduleFreeState``): optax's version
    only accepts the bare state and raises ``AttributeError`` on an
    ``optax.MultiSteps`` state.

    Args:
      state: an optimizer state containing one Schedule-Free state.
      params: the training parameters ``y_t``.

    Returns:
      ``x_t``, with the structure and dtypes of ``params``.

    Raises:
      ValueError: if ``state`` holds no Schedule-Free state, or several.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.MultiSteps(adaptx.schedule_free_sgd(1.0, b1=0.5), every_k_schedule=1)
      >>> params = jnp.array([2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0]), state, params)
      >>> params = adaptx.apply_updates(params, updates)  # z = 1, x = 1 (c_1 = 1), y = 1
      >>> adaptx.schedule_free_eval_params(state, params)
      Array([1.], dtype=float32)
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=_is_schedule_free_state)
        if _is_schedule_free_state(s)
    ]
    if len(found) != 1:
        raise ValueError(
            "schedule_free_eval_params needs an optimizer state that contains exactly one "
            f"ScheduleFreeState (from schedule_free or its aliases), found {len(found)}"
        )
    sf = found[0]

    def f(y: Any, z: Any) -> jax.Array:
        y = jnp.asarray(y)
        cdt = compute_dtype(y.dtype)
        b1 = jnp.asarray(sf.b1).astype(cdt)
        wy, wz = widen(y, cdt), widen(jnp.asarray(z), cdt)
        return (wy + times(wy - wz, (1 - b1) / b1)).astype(y.dtype)

    return jax.tree.map(f, params, sf.z)


def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: float | jax.Array = 0.9,
    weight_lr_power: float | jax.Array = 2.0,
    state_dtype: Any = None,
    *,
    r: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Makes ``base_optimizer`` Schedule-Free: momentum by interpolation and averaging.

    With ``t = 1, 2, ...``, ``z_1 = x_1 = y_1 =`` the initial parameters, the
    training loop holding ``y_t``, ``Delta_t`` the base optimizer's update
    (its learning rate ``gamma_t`` included, e.g. ``-gamma_t g_t`` for SGD),
    and ``lr_t = learning_rate(t)`` (the same ``gamma_t``, for the weights)::

        z_{t+1}     = z_t + Delta_t(g_t at y_t)
        lr_max_t    = max(lr_1, ..., lr_t)
        w_t         = t**r * lr_max_t**weight_lr_power
        c_{t+1}     = w_t / (w_1 + ... + w_t)                     (0 while the sum is 0)
        x_{t+1}     = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
        y_{t+1}     = (1 - b1) z_{t+1} + b1 x_{t+1}

    Eliminating ``x``, the update returned is the reference implementation's
    form (no division by ``b1``)::

        y_{t+1} - y_t = c_{t+1} (z_t - y_t) + (1 - b1 (1 - c_{t+1})) Delta_t

    Evaluate the model at ``x_t``: ``schedule_free_eval_params(state, params)``.
    With ``b1 = 1`` the gradient is taken at the average (primal averaging);
    the paper's default is 0.9. The base optimizer must have no momentum of
    its own (use ``sgd(lr)`` or ``scale_by_rms``-based Adam with ``b1 = 0``,
    as the aliases do). Weighting by ``lr_max**2`` (``weight_lr_power = 2``)
    keeps the small warm-up steps from dominating the average (Section 6 of
    the paper); ``r > 0`` adds the polynomial weighting ``t**r`` of the
    reference implementation (its ``r``, default 0).

    **Gradient accumulation.** Put ``MultiSteps`` *outside*:
    ``MultiSteps(schedule_free(...), k)``, with adaptx's or optax's
    ``MultiSteps``. The wrapper then runs (or its state changes) only on the
    k-th mini-step, with the mean gradient, so its step count, weights and
    ``z`` advance once per optimizer step and the run equals the big-batch
    run; ``schedule_free_eval_params`` reads the state through the
    ``MultiSteps`` state. The other order, ``schedule_free(MultiSteps(base))``,
    is wrong in adaptx as in optax: the averaging moves ``y`` and counts a
    step on every mini-step, when the base optimizer returned zeros.

    Differences from ``optax.contrib.schedule_free`` (0.2.8), which has the
    same state paths: optax computes ``x_t = (y_t - (1 - b1) z_t) / b1`` and
    ``y_{t+1} - y_t`` from it (the same numbers up to rounding, but undefined
    for ``b1 = 0``, which both reject); its scalar state is in the
    parameters' lowest dtype (bfloat16 parameters sum the weights in
    bfloat16), adaptx's in float32 or wider; optax has no ``r``; adaptx
    validates the hyper-parameters and requires ``params``.

    Args:
      base_optimizer: the optimizer whose updates move ``z`` (no momentum).
      learning_rate: the base optimizer's learning rate ``gamma_t``, a number
        or a schedule of the 1-based step ``t`` (warm-up, no decay), used for
        the averaging weights only; the base optimizer applies its own.
      b1: the interpolation ``beta1`` in (0, 1].
      weight_lr_power: the power of ``lr_max`` in the weights, >= 0.
      state_dtype: dtype of ``z``; ``None`` = the parameter's. The base
        optimizer's update arrives in the parameter's dtype and is added to
        ``z`` in ``state_dtype``: a float32 ``z`` for bfloat16 parameters keeps
        small steps from being absorbed by a large ``z``.
      r: the power of ``t`` in the weights, >= 0.

    Returns:
      A ``GradientTransformation`` with state ``ScheduleFreeState``; its
      ``update`` needs ``params``.

    Raises:
      ValueError: for a hyper-parameter out of range (concrete values only).

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.schedule_free(adaptx.sgd(0.5), learning_rate=0.5, b1=0.5)
      >>> params = jnp.array([2.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0]), state, params)
      >>> updates  # z: 2 -> 1, c = 1 so x = 1, y = 0.5 * 1 + 0.5 * 1
      Array([-1.], dtype=float32)

    References:
      Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, "The Road Less
      Scheduled", NeurIPS 2024, https://arxiv.org/abs/2405.15682 (Section 2,
      Algorithm 1); reference implementation
      https://github.com/facebookresearch/schedule_free
    """
    _check_transform(base_optimizer, "schedule_free's base_optimizer")
    check_learning_rate("learning_rate", learning_rate)
    check_range("b1", b1, 0.0, 1.0, low_open=True)
    check_nonnegative("weight_lr_power", weight_lr_power)
    check_nonnegative("r", r)
    check_dtype("state_dtype", state_dtype)
    takes_extra = accepts_extra_args(base_optimizer.update)

    def init_fn(params: Params) -> ScheduleFreeState:
        sdt = widest_compute_dtype(params)

        def z0(p: Any) -> jax.Array:
            return jnp.array(p, dtype=state_dtype, copy=True)  # a distinct buffer (donation)

        return ScheduleFreeState(
            b1=hyperparam(b1, sdt),
            weight_sum=jnp.zeros((), sdt),
            step_count=jnp.ones((), jnp.int32),
            max_lr=jnp.zeros((), sdt),
            base_optimizer_state=base_optimizer.init(params),
            z=jax.tree.map(z0, params),
        )

    def update_fn(updates, state: ScheduleFreeState, params=None, **extra_args):
        check_state("schedule_free", state, ScheduleFreeState)
        if params is None:
            raise ValueError(_NEEDS_PARAMS)
        check_like(
            "schedule_free", updates, state.z, "exact" if state_dtype is None else "kind", params
        )
        sdt = state.weight_sum.dtype
        t = state.step_count
        lr = learning_rate(t) if callable(learning_rate) else learning_rate
        max_lr = jnp.maximum(state.max_lr, hyperparam(lr, sdt))
        weight = max_lr ** hyperparam(weight_lr_power, sdt)
        weight = weight * t.astype(sdt) ** hyperparam(r, sdt)
        weight_sum = state.weight_sum + weight
        zero = weight_sum == 0  # only a true zero is guarded: a NaN weight stays NaN
        c = jnp.where(zero, jnp.zeros((), sdt), weight / jnp.where(zero, 1, weight_sum))

        base_updates, base_state = call_update(
            base_optimizer,
            updates,
            state.base_optimizer_state,
            params,
            extra_args,
            takes_extra=takes_extra,
        )

        def step(d: Any, y: Any, z: Any) -> tuple[jax.Array, jax.Array]:
            y = jnp.asarray(y)
            cdt = compute_dtype(y.dtype)
            ck, bb = c.astype(cdt), hyperparam(b1, cdt)
            wd, wy, wz = widen(jnp.asarray(d), cdt), widen(y, cdt), widen(z, cdt)
            out = times(wz - wy, ck) + times(wd, 1 - bb * (1 - ck))
            return out.astype(y.dtype), (wz + wd).astype(z.dtype)

        out, z = tree_map_unzip(2, step, base_updates, params, state.z)
        return out, ScheduleFreeState(
            b1=state.b1,
            weight_sum=weight_sum,
            step_count=safe_increment(t),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )

    return GradientTransformation(init_fn, update_fn)


def _warmup(learning_rate: Any, warmup_steps: int | None, offset: int) -> Any:
    """``lr * min(1, (count + offset) / warmup_steps)``: the warm-up of the paper, 1-based."""
    if not warmup_steps:
        return learning_rate

    def schedule(count: jax.Array) -> jax.Array:
        dt = jnp.dtype(jnp.result_type(float))  # float32, float64 under jax_enable_x64
        t = (jnp.asarray(count) + offset).astype(dt)
        frac = jnp.minimum(t / warmup_steps, jnp.ones((), dt))
        return hyperparam(learning_rate, dt) * frac

    return schedule


def _check_alias(learning_rate: Any, warmup_steps: Any, weight_decay: Any) -> None:
    check_nonnegative("learning_rate", learning_rate)
    if warmup_steps is not None:
        check_integer("warmup_steps", warmup_steps, 0)
    if weight_decay is not None:
        check_nonnegative("weight_decay", weight_decay)


def schedule_free_sgd(
    learning_rate: float | jax.Array = 1.0,
    warmup_steps: int | None = None,
    b1: float | jax.Array = 0.9,
    weight_decay: float | jax.Array | None = None,
    weight_lr_power: float | jax.Array = 2.0,
    state_dtype: Any = None,
    *,
    r: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Schedule-Free SGD: ``schedule_free`` around plain SGD (with weight decay at ``y``).

    ``gamma_t = learning_rate * min(1, t / warmup_steps)`` and
    ``Delta_t = -gamma_t (g_t + weight_decay * y_t)``; see ``schedule_free``
    for the averaging. Builds::

        schedule_free(chain(add_decayed_weights(weight_decay), sgd(gamma)),
                      gamma, b1, weight_lr_power, state_dtype, r=r)

    (no ``add_decayed_weights`` when ``weight_decay`` is ``None``).
    Defaults are the reference implementation's ``SGDScheduleFree`` (lr 1.0,
    momentum 0.9, no warm-up) and optax's.

    ====================================  =============================================
    adaptx                                optax.contrib 0.2.8
    ====================================  =============================================
    ``schedule_free_sgd(lr, b1=b)``        ``schedule_free_sgd(lr, b1=b)`` (to rounding)
    ``warmup_steps=w``                     ``warmup_steps=w`` differs: optax's SGD steps
                                           use the warm-up one step late (its first step
                                           has ``gamma = 0``); the weights do not
    ====================================  =============================================

    torch 2.13 has no Schedule-Free optimizer.

    Args:
      learning_rate: the peak learning rate, >= 0.
      warmup_steps: linear warm-up length (``None`` or 0: none).
      b1: the interpolation ``beta1`` in (0, 1].
      weight_decay: decoupled weight decay at ``y``, >= 0, or ``None``.
      weight_lr_power: power of ``lr_max`` in the averaging weights.
      state_dtype: dtype of ``z``; ``None`` = the parameter's.
      r: power of ``t`` in the averaging weights.

    Returns:
      A ``GradientTransformation`` with state ``ScheduleFreeState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.schedule_free_sgd(0.1)
      >>> params = jnp.array([1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0]), state, params)
      >>> updates  # c = 1: y moves by (1 - 0.9 * 0) * (-0.1)
      Array([-0.1], dtype=float32)

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024,
      https://arxiv.org/abs/2405.15682
    """
    _check_alias(learning_rate, warmup_steps, weight_decay)
    base = sgd(_warmup(learning_rate, warmup_steps, 1))
    if weight_decay is not None:
        base = chain(add_decayed_weights(weight_decay), base)
    return schedule_free(
        base,
        _warmup(learning_rate, warmup_steps, 0),
        b1,
        weight_lr_power,
        state_dtype,
        r=r,
    )


def schedule_free_adamw(
    learning_rate: float | jax.Array = 0.0025,
    warmup_steps: int | None = None,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    weight_lr_power: float | jax.Array = 2.0,
    state_dtype: Any = None,
    *,
    r: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Schedule-Free AdamW (Defazio et al., Algorithm 1): ``schedule_free`` around RMSProp.

    With ``gamma_t = learning_rate * min(1, t / warmup_steps)``::

        v_t      = b2 v_{t-1} + (1 - b2) g_t**2
        Delta_t  = -gamma_t (g_t / (sqrt(v_t / (1 - b2**t)) + eps) + weight_decay * y_t)

    and ``schedule_free``'s interpolation and averaging with ``b1``. Builds::

        schedule_free(chain(scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
                            add_decayed_weights(weight_decay),
                            scale_by_learning_rate(gamma)),
                      gamma, b1, weight_lr_power, state_dtype, r=r)

    Defaults are the reference implementation's ``AdamWScheduleFree`` and
    optax's (lr 0.0025, betas (0.9, 0.999), eps 1e-8, no decay, power 2).

    **Bias correction.** The paper's Algorithm 1 folds Adam's correction
    into the step, ``gamma_t = gamma sqrt(1 - b2**t) min(1, t / T_warmup)``,
    ``z_{t+1} = z_t - gamma_t g_t / (sqrt(v_t) + eps)``, and weights the
    average by that ``gamma_t**2``. The reference implementation and optax
    divide ``v_t`` by ``1 - b2**t`` instead and weight by the warm-up
    learning rate alone; adaptx does the same (the two differ by ``eps``
    placement and in how much weight the first few hundred steps get).

    ====================================  =============================================
    adaptx                                optax.contrib 0.2.8
    ====================================  =============================================
    ``schedule_free_adamw(lr, ...)``       same arguments (to rounding)
    ``warmup_steps=w``                     differs: optax's Adam steps use the warm-up
                                           one step late (its first step has
                                           ``gamma = 0``); the weights do not
    ====================================  =============================================

    torch 2.13 has no Schedule-Free optimizer.

    Args:
      learning_rate: the peak learning rate, >= 0.
      warmup_steps: linear warm-up length (``None`` or 0: none).
      b1: the interpolation ``beta1`` in (0, 1].
      b2: decay of the second moment, in [0, 1).
      eps: added to ``sqrt(v_hat)``, >= 0.
      weight_decay: decoupled weight decay at ``y`` (scaled by ``gamma_t``), >= 0.
      weight_lr_power: power of ``lr_max`` in the averaging weights.
      state_dtype: dtype of ``z``; ``None`` = the parameter's.
      r: power of ``t`` in the averaging weights.

    Returns:
      A ``GradientTransformation`` with state ``ScheduleFreeState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.schedule_free_adamw(0.1, warmup_steps=10)
      >>> params = jnp.array([1.0, -1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([3.0, -0.5]), state, params)
      >>> updates  # first step: -gamma_1 sign(g), gamma_1 = 0.1 / 10
      Array([-0.01,  0.01], dtype=float32)

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024,
      https://arxiv.org/abs/2405.15682 (Algorithm 1)
    """
    _check_alias(learning_rate, warmup_steps, weight_decay)
    check_decay("b2", b2)  # before scale_by_rms, which would name it ``decay``
    base = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(_warmup(learning_rate, warmup_steps, 1)),
    )
    return schedule_free(
        base,
        _warmup(learning_rate, warmup_steps, 0),
        b1,
        weight_lr_power,
        state_dtype,
        r=r,
    )
