"""Adafactor (Shazeer & Stern, ICML 2018): factored second moments, relative step sizes.

``scale_by_factored_rms`` divides the gradient by the root of a second-moment
estimate that, for a matrix, is rebuilt from its row and column averages
(``O(n + m)`` memory instead of ``O(n m)``); ``scale_by_param_block_rms``
multiplies by the parameters' RMS (the paper's relative step size); the alias
``adafactor`` chains them with update clipping, the learning rate, optional
momentum and weight decay, in optax's order.

Dtypes: the statistics are kept in ``nu_dtype`` (default: the parameter's
real dtype, as optax); the arithmetic is done in float32 (float64 for float64
leaves) and each update is returned in the gradient's dtype. The update of a
step is computed from the statistics *before* they are rounded to
``nu_dtype``, so float16 statistics that underflow (``eps = 1e-30`` is 0 in
float16) never give 0/0. For bfloat16 parameters a long run is better served
by ``nu_dtype=jnp.float32``: with the decay ``1 - t**-0.8`` close to 1, a
bfloat16 statistic stops moving once ``(1 - decay)`` is below its 2**-8
resolution; the factored statistics cost ``O(n + m)`` in any dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._adam import leaf_compute_dtype, widen
from adaptx._base import (
    GradientTransformation,
    Params,
    ScalarOrSchedule,
    check_stateless,
    init_empty_state,
)
from adaptx._clipping import clip_by_block_rms
from adaptx._combine import chain
from adaptx._numerics import abs_sq, compute_dtype, hyperparam, safe_increment, tree_map_unzip
from adaptx._scale import scale, scale_by_learning_rate
from adaptx._sgd import ema
from adaptx._sharding import zeros_like
from adaptx._signature import TreeMismatchError, check_like, check_state, check_structure
from adaptx._validate import (
    check_decay,
    check_dtype,
    check_integer,
    check_nonnegative,
    check_positive,
    check_range,
)
from adaptx._weight_decay import add_decayed_weights

_NEEDS_PARAMS = (
    "{} needs the parameters: call tx.update(updates, state, params) (with params), "
    "not tx.update(updates, state)"
)


class FactoredState(NamedTuple):
    """State of ``scale_by_factored_rms`` (optax's field names and layout).

    Every field but ``count`` is a tree with the parameters' structure. For a
    factored leaf, ``v_row`` and ``v_col`` hold the moving averages of the
    squared gradient averaged over its largest and its second-largest axis
    (the leaf's shape without that axis) and ``v`` a ``(1,)`` placeholder; for
    other leaves ``v`` holds the full moving average and ``v_row``, ``v_col``
    are ``(1,)`` placeholders.

    Attributes:
      count: number of updates so far (int32, saturating).
      v_row: per leaf, the average over the largest axis, or a placeholder.
      v_col: per leaf, the average over the second-largest axis, or a placeholder.
      v: per leaf, the unfactored second moment, or a placeholder.
    """

    count: jax.Array
    v_row: Any
    v_col: Any
    v: Any


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """The two axes a leaf's statistics are factored over, or ``None``.

    ``(second largest, largest)`` axis of ``shape`` (ties as ``numpy.argsort``
    orders them), when ``factored``, the leaf has at least 2 dimensions and
    the second largest is ``>= min_dim_size_to_factor``: optax's rule. For a
    matrix that is its two axes; a higher-rank leaf is factored over its two
    largest axes and averaged over neither of the others.
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    small, large = int(order[-2]), int(order[-1])
    if shape[small] < min_dim_size_to_factor:
        return None
    return small, large


def _without(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(n for i, n in enumerate(shape) if i != axis)


def _real(dtype: Any) -> np.dtype:
    dtype = jnp.dtype(dtype)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def _rsqrt_or_zero(x: jax.Array) -> jax.Array:
    """``1 / sqrt(x)``, and 0 where ``x == 0`` exactly (all gradients 0 with ``epsilon = 0``).

    Only true zeros are guarded: a NaN statistic gives a NaN factor.
    """
    zero = x == 0
    return jnp.where(zero, jnp.zeros((), x.dtype), jax.lax.rsqrt(jnp.where(zero, 1, x)))


def _paper_decay(step: jax.Array, exponent: Any, dtype: Any) -> jax.Array:
    """``1 - t**(-exponent)`` with ``t = step + 1``: the paper's ``beta2_hat_t``."""
    t = jnp.asarray(step).astype(dtype) + 1
    return -jnp.expm1(-hyperparam(exponent, dtype) * jnp.log(t))


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float | jax.Array = 0.8,
    step_offset: int | jax.Array = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float | jax.Array = 1e-30,
    decay_rate_fn: Callable[[jax.Array, Any], jax.Array] | None = None,
    *,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Divides updates by the root of Adafactor's (factored) second moment.

    With ``G_t`` the incoming update of a leaf, ``t = count - step_offset + 1``
    and the paper's decay ``beta2_t = 1 - t**(-decay_rate)`` (Section 7.2;
    ``beta2_1 = 0``, so the first estimate is the first squared gradient)::

        S_t   = |G_t|**2 + epsilon                         (elementwise)
        # factored leaf (a matrix, n x m; for rank > 2 its two largest axes):
        R_t   = beta2_t R_{t-1} + (1 - beta2_t) mean_over_columns(S_t)
        C_t   = beta2_t C_{t-1} + (1 - beta2_t) mean_over_rows(S_t)
        V_t   = R_t C_t^T / mean(R_t)                      (Algorithm 4)
        # other leaves (vectors, scalars, small matrices):
        V_t   = beta2_t V_{t-1} + (1 - beta2_t) S_t        (Algorithm 2)
        out_t = G_t / sqrt(V_t)

    The paper's ``R C / (1^T R)`` uses row and column *sums*; with means (as
    here and in optax and torch) the same ``V_t`` comes out. A leaf is
    factored when ``factored`` is true, it has two or more dimensions and its
    second-largest one is at least ``min_dim_size_to_factor``
    (``factored_dims``). Complex gradients use ``|G|**2`` and real statistics.

    Defaults are the paper's (``decay_rate = 0.8``, ``epsilon = 1e-30``) and
    optax's (``min_dim_size_to_factor = 128``).

    ===============================  =====================================  ==================
    adaptx                           optax 0.2.8                            torch 2.13
    ===============================  =====================================  ==================
    ``scale_by_factored_rms(...)``   ``scale_by_factored_rms(...)``, same   part of
                                     arguments; optax computes ``beta2_t``  ``Adafactor``: see
                                     in float32 and keeps ``v`` in the      ``adafactor``
                                     param dtype (adaptx: ``nu_dtype``)
    ===============================  =====================================  ==================

    Args:
      factored: factor the statistics of leaves with two or more dimensions.
      decay_rate: the exponent ``c`` of ``beta2_t = 1 - t**(-c)``, in [0, 1].
      step_offset: subtracted from the step count in the decay (for fine-tuning
        from step ``step_offset``), an integer ``>= 0``.
      min_dim_size_to_factor: factor a leaf only if its second-largest
        dimension is at least this, an integer ``>= 0``.
      epsilon: added to the squared gradient (the paper's ``epsilon_1``), ``>= 0``.
      decay_rate_fn: ``f(step, decay_rate) -> beta2`` with ``step = count -
        step_offset`` (0 on the first update), as optax's; ``None`` is the
        paper's schedule, computed in float32 or wider.
      nu_dtype: dtype of the statistics; ``None`` = the parameter's (real) dtype.

    Returns:
      A ``GradientTransformation`` with state ``FactoredState``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_factored_rms(min_dim_size_to_factor=2)
      >>> params = jnp.zeros((2, 3))
      >>> state = tx.init(params)
      >>> [x.shape for x in (state.v_row, state.v_col, state.v)]  # 2 + 3 numbers, not 6
      [(2,), (3,), (1,)]
      >>> out, state = tx.update(jnp.ones((2, 3)), state, params)
      >>> out
      Array([[1., 1., 1.],
             [1., 1., 1.]], dtype=float32)

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
      Memory Cost", ICML 2018, https://arxiv.org/abs/1804.04235 (Algorithms 2
      and 4, Section 7.2).
    """
    check_range("decay_rate", decay_rate, 0.0, 1.0)
    check_nonnegative("step_offset", step_offset)
    check_integer("min_dim_size_to_factor", min_dim_size_to_factor, 0)
    check_nonnegative("epsilon", epsilon)
    check_dtype("nu_dtype", nu_dtype, complex_ok=False)
    if decay_rate_fn is not None and not callable(decay_rate_fn):
        raise TypeError(f"decay_rate_fn must be callable or None, got {decay_rate_fn!r}")
    nu = None if nu_dtype is None else jnp.dtype(nu_dtype)

    def dims(shape):
        return factored_dims(tuple(shape), factored, min_dim_size_to_factor)

    def init_fn(params: Params) -> FactoredState:
        def leaf(x):
            shape, d = tuple(jnp.shape(x)), nu or _real(jnp.result_type(x))
            placeholder = jnp.zeros((1,), d)
            fd = dims(shape)
            if fd is None:
                return (placeholder, placeholder, zeros_like(x, d))
            small, large = fd
            # Summing zeros placed like x gives statistics sharded like x's remaining axes
            # (under jit the compiler folds it to a constant; eagerly it is one temporary).
            z = zeros_like(x, d)
            return (jnp.sum(z, axis=large), jnp.sum(z, axis=small), placeholder)

        return FactoredState(jnp.zeros((), jnp.int32), *tree_map_unzip(3, leaf, params))

    def check(updates, state, params):
        where = "scale_by_factored_rms"
        check_state(where, state, FactoredState)
        check_structure(where, updates, state.v, params)
        treedef = jax.tree.structure(updates)
        rows, cols, vs = (treedef.flatten_up_to(t) for t in (state.v_row, state.v_col, state.v))
        reference = []
        for (path, g), r, c, v in zip(
            jax.tree_util.tree_flatten_with_path(updates)[0], rows, cols, vs
        ):
            shape = tuple(jnp.shape(g))
            fd = dims(shape)
            if fd is None:
                reference.append(v)
                continue
            want = (_without(shape, fd[1]), _without(shape, fd[0]))
            if (tuple(jnp.shape(r)), tuple(jnp.shape(c))) != want:
                raise TreeMismatchError(
                    f"{where}: updates{jax.tree_util.keystr(path)} has shape {shape}, whose "
                    f"row and column statistics have shapes {want}, but the state holds "
                    f"{(tuple(jnp.shape(r)), tuple(jnp.shape(c)))}: it was initialised for "
                    "other parameters; call init on the parameters you update"
                )
            reference.append(jax.ShapeDtypeStruct(shape, r.dtype))
        mode = "precision" if nu is None else "kind"
        check_like(where, updates, treedef.unflatten(reference), mode, params)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check(updates, state, params)
        step = state.count - jnp.asarray(step_offset).astype(jnp.int32)

        def leaf(g, r, c, v):
            cdt = leaf_compute_dtype(g, r, c, v)
            if decay_rate_fn is None:
                b = _paper_decay(step, decay_rate, cdt)
            else:
                b = jnp.asarray(decay_rate_fn(step, decay_rate)).astype(cdt)
            s = abs_sq(widen(g, cdt)).astype(cdt) + hyperparam(epsilon, cdt)
            gw = widen(g, cdt)
            fd = dims(jnp.shape(g))
            if fd is None:
                v_new = b * v.astype(cdt) + (1 - b) * s
                out = gw * _rsqrt_or_zero(v_new).astype(gw.dtype)
                return out.astype(g.dtype), r, c, v_new.astype(v.dtype)
            small, large = fd
            r_new = b * r.astype(cdt) + (1 - b) * jnp.mean(s, axis=large)
            c_new = b * c.astype(cdt) + (1 - b) * jnp.mean(s, axis=small)
            # r_new lacks the largest axis: the smaller one sits one place earlier if after it.
            r_axis = small - 1 if small > large else small
            r_norm = r_new / jnp.mean(r_new, axis=r_axis, keepdims=True)
            # G / sqrt(r c) as G * r**-1/2 * c**-1/2: for a dead unit (a zero row and a zero
            # column, statistics ~ epsilon) the product r c underflows to 0 in float32.
            row = jnp.expand_dims(_rsqrt_or_zero(r_norm), large).astype(gw.dtype)
            col = jnp.expand_dims(_rsqrt_or_zero(c_new), small).astype(gw.dtype)
            out = gw * row * col
            return out.astype(g.dtype), r_new.astype(r.dtype), c_new.astype(c.dtype), v

        out, *stats = tree_map_unzip(4, leaf, updates, state.v_row, state.v_col, state.v)
        return out, FactoredState(safe_increment(state.count), *stats)

    return GradientTransformation(init_fn, update_fn)


def scale_by_param_block_rms(min_scale: float | jax.Array = 1e-3) -> GradientTransformation:
    """Multiplies each leaf's update by ``max(min_scale, rms(param))``.

    Adafactor's relative step size (Section 8, Algorithm 4, line 2 of the
    update: ``alpha_t = max(epsilon_2, RMS(X_{t-1})) rho_t``): a block (a
    weight vector or matrix, one leaf) moves in proportion to its own scale;
    ``min_scale`` (the paper's ``epsilon_2 = 1e-3``) lets zero-initialised
    blocks move. The RMS is computed in float32 or wider. Same as optax's.

    Args:
      min_scale: the smallest factor, ``>= 0``.

    Returns:
      A stateless ``GradientTransformation`` whose ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_param_block_rms()
      >>> params = {"w": jnp.array([3.0, -3.0]), "b": jnp.zeros(2)}
      >>> out, _ = tx.update({"w": jnp.ones(2), "b": jnp.ones(2)}, tx.init(params), params)
      >>> out["w"], out["b"]
      (Array([3., 3.], dtype=float32), Array([0.001, 0.001], dtype=float32))

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
      Memory Cost", ICML 2018, https://arxiv.org/abs/1804.04235
    """
    check_nonnegative("min_scale", min_scale)

    def leaf(u, p):
        cdt = compute_dtype(jnp.result_type(p))
        rms = jnp.sqrt(jnp.mean(abs_sq(widen(p, cdt)).astype(cdt)))
        factor = jnp.maximum(rms, hyperparam(min_scale, cdt))
        uw = widen(u, cdt)
        return (uw * factor.astype(uw.dtype)).astype(u.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(_NEEDS_PARAMS.format("scale_by_param_block_rms"))
        check_stateless("scale_by_param_block_rms", updates, state, params)
        return jax.tree.map(leaf, updates, params), state

    return GradientTransformation(init_empty_state, update_fn)


def relative_step_size(max_rate: float = 1e-2) -> Callable[[jax.Array], jax.Array]:
    """The paper's relative step size ``rho_t = min(max_rate, 1 / sqrt(t))``, t from 1.

    Adafactor's default learning rate (Section 8: ``rho_t = min(1e-2, 1/sqrt(t))``),
    and torch's ``Adafactor(lr=max_rate)``. ``count`` is 0 on the first update.

    Example:
      >>> import adaptx
      >>> s = adaptx.relative_step_size()
      >>> float(s(0)), round(float(s(20_000 - 1)), 6)
      (0.009999999776482582, 0.007071)
    """
    check_positive("max_rate", max_rate)

    def schedule(count):
        t = jnp.asarray(count).astype(jnp.float32) + 1
        return jnp.minimum(jnp.float32(max_rate), jax.lax.rsqrt(t))

    return schedule


def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float | jax.Array = 0.8,
    decay_offset: int | jax.Array = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | jax.Array | None = 1.0,
    momentum: float | jax.Array | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
    *,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Adafactor (Shazeer & Stern, ICML 2018): factored second moments, relative steps.

    The chain, in optax's order (each stage is omitted when its argument is
    ``None`` / ``False``)::

        U_t = G_t / sqrt(V_t)                        scale_by_factored_rms
        U_t = U_t / max(1, RMS(U_t) / d)             clip_by_block_rms(d)   (update clipping)
        U_t = rho_t U_t                              learning rate
        U_t = max(1e-3, RMS(X_{t-1})) U_t            scale_by_param_block_rms
        M_t = b1 M_{t-1} + (1 - b1) U_t, U_t = M_t   ema(momentum, debias=False)
        U_t = U_t + w X_{t-1}                        add_decayed_weights(w)
        X_t = X_{t-1} - U_t

    with ``d = clipping_threshold`` (the paper's ``d = 1``, Section 6),
    ``rho_t`` the learning rate, and ``V_t`` factored for matrices (see
    ``scale_by_factored_rms``). Per block the step is therefore
    ``alpha_t = max(epsilon_2, RMS(X)) rho_t``, the paper's relative step size.

    **Defaults.** The paper's (Algorithm 4 with Section 8's relative step):
    ``learning_rate=None`` is ``relative_step_size()``, i.e.
    ``rho_t = min(1e-2, 1 / sqrt(t))``, decay exponent 0.8, ``d = 1``,
    ``epsilon_1 = 1e-30``, ``epsilon_2 = 1e-3``, no momentum. **optax
    deviates:** its ``learning_rate=None`` applies no learning rate at all
    (``rho_t = 1``: every block moves by its own RMS per step, 100 times the
    paper's first step); adaptx's ``learning_rate=1.0`` is that.

    ===========================================  ===========================================
    optax 0.2.8 / torch 2.13                     adaptx
    ===========================================  ===========================================
    ``optax.adafactor()``                        ``adafactor(learning_rate=1.0)`` (numbers;
                                                 its state has one more chain entry)
    ``optax.adafactor(lr, **kw)`` (lr given)     ``adafactor(lr, **kw)``: same numbers,
                                                 same state layout
    ``torch.optim.Adafactor(lr=L)`` (defaults:   ``adafactor(relative_step_size(L),
    ``beta2_decay=-0.8, eps=(None, 1e-3),        min_dim_size_to_factor=0)`` (float64
    d=1.0``)                                     agree to ~1e-15 on leaves whose last two
                                                 axes are the largest two)
    torch ``beta2_decay=-c``, ``d=D``            ``decay_rate=c``, ``clipping_threshold=D``
    torch ``weight_decay=w``                     ``weight_decay_rate=L * w``
    ===========================================  ===========================================

    torch differences: it factors every tensor of rank >= 2 over its *last*
    two axes (adaptx and optax: the two largest, and only from
    ``min_dim_size_to_factor``); its ``eps1`` (default the dtype's machine
    epsilon) bounds the estimate from below (``max(V, eps1**2)``) instead of
    being added to ``G**2``, which differs only for gradients below ~1e-7;
    its momentum-free update has no ``momentum``/``dtype_momentum``.

    Args:
      learning_rate: ``rho_t``, a number or schedule; ``None`` is the
        paper's ``relative_step_size()``.
      min_dim_size_to_factor: see ``scale_by_factored_rms``.
      decay_rate: exponent ``c`` of ``beta2_t = 1 - t**(-c)``, in [0, 1].
      decay_offset: step offset of that decay (fine-tuning), ``>= 0``.
      multiply_by_parameter_scale: scale each block's step by ``max(1e-3, RMS(params))``.
      clipping_threshold: ``d`` of the update clipping, ``> 0``, or ``None`` for none.
      momentum: ``b1`` of a (not bias-corrected) moving average of the
        updates, in [0, 1), or ``None`` for none (the paper's default).
      dtype_momentum: dtype of the momentum buffer.
      weight_decay_rate: ``w``, added as ``w * params`` after the learning
        rate (not scaled by it, as optax), ``>= 0``, or ``None``.
      eps: ``epsilon_1``, added to the squared gradients.
      factored: factor the statistics of matrices (``False``: Adam-like
        full second moments).
      weight_decay_mask: mask of the weight decay (see ``add_decayed_weights``).
      nu_dtype: dtype of the second-moment statistics; ``None`` = the params'.

    Returns:
      A ``GradientTransformation`` (a ``chain``) whose ``update`` requires
      ``params`` when ``multiply_by_parameter_scale`` or a weight decay is on.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> tx = adaptx.adafactor()
      >>> state = tx.init(params)
      >>> g = jax.grad(lambda p: jnp.sum(p**2))(params)
      >>> updates, state = tx.update(g, state, params)
      >>> updates  # -1e-2 * RMS(params) * g / |g|
      Array([-0.0216025, -0.0216025, -0.0216025], dtype=float32)

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
      Memory Cost", ICML 2018, https://arxiv.org/abs/1804.04235
    """
    check_nonnegative("decay_offset", decay_offset)
    check_nonnegative("eps", eps)
    if clipping_threshold is not None:
        check_positive("clipping_threshold", clipping_threshold)
    if momentum is not None:
        check_decay("momentum", momentum)
    check_dtype("dtype_momentum", dtype_momentum)
    if weight_decay_rate is not None:
        if callable(weight_decay_rate):
            raise TypeError(
                "weight_decay_rate must be a number (adaptx's add_decayed_weights takes no "
                f"schedule), got {weight_decay_rate!r}"
            )
        check_nonnegative("weight_decay_rate", weight_decay_rate)
    if learning_rate is None:
        learning_rate = relative_step_size()
    txs = [
        scale_by_factored_rms(
            factored, decay_rate, decay_offset, min_dim_size_to_factor, eps, nu_dtype=nu_dtype
        )
    ]
    if clipping_threshold is not None:
        txs.append(clip_by_block_rms(clipping_threshold))
    txs.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        txs.append(scale_by_param_block_rms())
    if momentum is not None:
        txs.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        txs.append(add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
    txs.append(scale(-1.0))
    return chain(*txs)
