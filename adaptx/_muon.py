"""Muon: momentum orthogonalised by Newton-Schulz (Jordan 2024; Liu et al. 2025).

``scale_by_muon`` orthogonalises the momentum of matrix parameters,
``scale_by_shape`` rescales the result by a factor of the matrix's shape, and
``muon`` routes matrices to them and every other parameter to AdamW.

The dimension numbers and the Newton-Schulz iteration are in
``_orthogonalize.py``, with how Muon treats conv kernels, fused projections,
scanned stacks and sharded matrices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adaptx._adam import init_first_moment, scale_by_adam, widen
from adaptx._adam_variants import scale_by_nadam
from adaptx._base import (
    EmptyState,
    GradientTransformation,
    Params,
    ScalarOrSchedule,
    check_stateless,
)
from adaptx._combine import chain
from adaptx._masking import partition
from adaptx._numerics import (
    compute_dtype,
    hyperparam,
    one_minus_pow,
    safe_increment,
)
from adaptx._orthogonalize import (
    NS_COEFFS,
    MuonDimensionNumbers,
    WeightDimNums,
    check_ns,
    coeff_rows,
    fan_in_out,
    is_spec,
    leaf_dims,
    matrix_layout,
    orthogonalize,
)
from adaptx._scale import scale_by_learning_rate
from adaptx._sharding import shard_like
from adaptx._signature import check_like, check_state
from adaptx._validate import (
    check_decay,
    check_dtype,
    check_learning_rate,
    check_nonnegative,
    check_positive,
)
from adaptx._weight_decay import add_decayed_weights


class MuonState(NamedTuple):
    """State of ``scale_by_muon`` (the fields and order of optax.contrib's ``MuonState``).

    Attributes:
      count: number of updates so far (int32, saturating).
      mu: the momentum, ``mu_dtype``.
      ns_coeffs: the Newton-Schulz coefficients, float32, ``(3,)`` or ``(steps, 3)``.
    """

    count: jax.Array
    mu: Any
    ns_coeffs: jax.Array


# --- scale_by_muon ---------------------------------------------------------------


def scale_by_muon(
    ns_coeffs: Sequence[float] | Sequence[Sequence[float]] = NS_COEFFS,
    ns_steps: int = 5,
    beta: float | jax.Array = 0.95,
    eps: float | jax.Array = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    ns_dtype: Any = None,
    weight_dimension_numbers: WeightDimNums = None,
) -> GradientTransformation:
    r"""Orthogonalises the momentum of matrix parameters by Newton-Schulz (Muon).

    With ``g_t`` the incoming update of a matrix and ``t = 1, 2, ...``::

        mu_t = beta mu_{t-1} + (1 - beta) g_t
        M_t  = beta mu_t + (1 - beta) g_t        # nesterov=True (default)
             = mu_t                              # nesterov=False
        X_0  = M_t / (||M_t||_F + eps)           # spectral norm <= 1
        X_k  = a X + (b A + c A^2) X,  A = X X^T # k = 1..ns_steps, (a, b, c) = ns_coeffs
        out  = X_{ns_steps}                      # ~ U V^T for M_t = U S V^T

    The quintic's coefficients ``(3.4445, -4.7750, 2.0315)`` (Jordan's)
    maximise its slope at 0 rather than converge: after 5 steps the singular
    values lie in about [0.7, 1.2] instead of all being 1, which costs nothing
    in training and makes 5 steps enough. Every leaf must be a matrix, or
    have ``weight_dimension_numbers`` that make it a stack of matrices (see
    the module docstring); the alias ``muon`` routes the rest to AdamW.

    **Momentum.** Jordan's reference code keeps ``mu`` as above and feeds
    ``beta mu_t + (1 - beta) g_t`` to the iteration; Liu et al. (Moonlight)
    keep ``B_t = beta B_{t-1} + g_t`` and feed ``beta B_t + g_t``, which is the
    same matrix times ``1 / (1 - beta)``, so the same direction after the
    normalisation. No bias correction is needed for the same reason: with
    ``bias_correction=True`` the two terms are divided by ``1 - beta**(t+1)``
    and ``1 - beta**t`` (optax's form), which changes the early directions
    when ``nesterov=True`` and only rescales (nothing) otherwise.

    **Sharded matrices.** Under sharded ``jit`` the iteration runs on the
    sharded momentum: with automatic mesh axes XLA inserts the collectives
    for the products, with explicit axes each matrix is gathered first; the
    result is sharded like the parameter and equals the single-device one up
    to float32 rounding (tested on 8 devices). Inside ``shard_map`` a device
    holds a block of each matrix, and orthogonalising a block is not
    orthogonalising the matrix: keep matrices whole there.

    **Precision.** The iteration runs in ``ns_dtype``: ``None`` (default)
    means float32, or float64 for float64 parameters; ``jnp.bfloat16`` is
    Jordan's choice on accelerators (bfloat16 matmuls), about 3 significant
    digits per entry, which the iteration tolerates. The momentum is kept in
    ``mu_dtype`` (default the parameter's) and the output comes back in the
    parameter's dtype. Matmuls use JAX's default precision
    (``jax_default_matmul_precision``; on TPU float32 matmuls default to
    bfloat16 passes).

    Defaults: ``beta = 0.95``, Nesterov, 5 steps, Jordan's coefficients (the
    blog's and Moonlight's). ``eps = 1e-8`` is optax's (Jordan adds 1e-7 to
    the norm; either is negligible against ``||M||_F``).

    ==================================  ============================================
    adaptx                              optax 0.2.8 (``optax.contrib``)
    ==================================  ============================================
    ``scale_by_muon(bias_correction=    ``scale_by_muon()`` (also ``ns_coeffs``,
    True)``                             ``ns_steps``, ``beta``, ``eps``,
                                        ``mu_dtype``, ``nesterov``,
                                        ``weight_dimension_numbers``)
    default (``bias_correction=False``)  no mapping for ``nesterov=True``; same
                                        direction for ``nesterov=False``
    ``ns_dtype``                        no mapping (optax runs in the momentum's
                                        dtype)
    no mapping                          ``adaptive``, ``preconditioning`` other
                                        than ``"frobenius"``
    ==================================  ============================================

    torch 2.13 has no Muon.

    Args:
      ns_coeffs: ``(a, b, c)`` for every step, or one row ``(a, b, c)`` per
        step (then ``ns_steps`` must equal the number of rows).
      ns_steps: number of Newton-Schulz steps, an integer >= 1.
      beta: momentum decay, in [0, 1).
      eps: added to the Frobenius norm before dividing by it, >= 0.
      mu_dtype: dtype of the momentum; ``None`` = the parameter's.
      nesterov: feed ``beta mu_t + (1 - beta) g_t`` rather than ``mu_t``.
      bias_correction: divide the momentum terms by ``1 - beta**t`` (optax).
      ns_dtype: dtype of the iteration; ``None`` = float32 (float64 for
        float64 parameters).
      weight_dimension_numbers: how each leaf is a (stack of) matrices:
        ``None`` (every leaf is a 2-D ``(fan_in, fan_out)`` matrix), a
        ``MuonDimensionNumbers`` for all leaves, a tree of them with the
        params' structure (or a prefix of it), or a callable
        ``params -> such a tree``.

    Returns:
      A ``GradientTransformation`` with state ``MuonState``.

    Raises:
      ValueError: for a hyper-parameter out of range, malformed ``ns_coeffs``,
        and from ``init``/``update`` for a leaf that is not a matrix.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_muon()
      >>> g = jnp.array([[3.0, 0.0], [0.0, 0.1]])  # singular values 3 and 0.1
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out.round(1)  # both pushed towards 1: the direction U V^T
      Array([[0.7, 0. ],
             [0. , 1.1]], dtype=float32)

    References:
      K. Jordan et al., "Muon: An optimizer for hidden layers in neural
      networks", blog post, 2024, https://kellerjordan.github.io/posts/muon/

      J. Liu et al., "Muon is Scalable for LLM Training", arXiv 2025,
      https://arxiv.org/abs/2502.16982
    """
    coeffs = check_ns(ns_coeffs, ns_steps)
    check_decay("beta", beta)
    check_nonnegative("eps", eps)
    check_dtype("mu_dtype", mu_dtype)
    check_dtype("ns_dtype", ns_dtype, complex_ok=False)

    def dims_of(tree: Any) -> list[MuonDimensionNumbers]:
        out = leaf_dims(weight_dimension_numbers, tree)
        for x, d in zip(jax.tree.leaves(tree), out):
            if d is None:
                raise ValueError(
                    f"scale_by_muon got a leaf of shape {jnp.shape(x)} whose dimension number "
                    "is None: every leaf it sees must be a matrix (mask the others out, or "
                    "use muon(), which sends them to AdamW)"
                )
            matrix_layout(jnp.shape(x), d)
        return out

    def init_fn(params: Params) -> MuonState:
        dims_of(params)
        return MuonState(
            count=jnp.zeros((), jnp.int32),
            mu=init_first_moment(params, mu_dtype),
            ns_coeffs=jnp.asarray(coeffs, jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_muon", state, MuonState)
        if mu_dtype is None:
            check_like("scale_by_muon", updates, state.mu, "exact", params)
        else:
            check_like("scale_by_muon", updates, state.mu, "kind", params)
        count = safe_increment(state.count)
        dims = dims_of(updates)
        rows = coeff_rows(state.ns_coeffs, ns_steps)

        @functools.cache
        def scalars(cdt):
            b = hyperparam(beta, cdt)
            if not bias_correction:
                return b, jnp.ones((), cdt), jnp.ones((), cdt)
            return b, one_minus_pow(beta, count, cdt), one_minus_pow(beta, count + 1, cdt)

        def step(g, m, d):
            cdt = compute_dtype(jnp.result_type(m))
            b, c_t, c_next = scalars(cdt)
            gw, mw = widen(g, cdt), widen(m, cdt)
            one = jnp.ones((), cdt)
            mu = b.astype(mw.dtype) * mw + (one - b).astype(mw.dtype) * gw
            if nesterov:
                direction = (b / c_next).astype(mw.dtype) * mu + ((one - b) / c_t).astype(
                    mw.dtype
                ) * gw
            else:
                direction = mu / c_t.astype(mw.dtype)
            ns = ns_dtype if ns_dtype is not None else compute_dtype(jnp.result_type(g))
            o = orthogonalize(direction, d, rows, eps, ns)
            return shard_like(g, o.astype(g.dtype)), shard_like(g, mu.astype(m.dtype))

        leaves, treedef = jax.tree.flatten(updates)
        pairs = [step(g, m, d) for g, m, d in zip(leaves, jax.tree.leaves(state.mu), dims)]
        out = jax.tree.unflatten(treedef, [p[0] for p in pairs])
        mu = jax.tree.unflatten(treedef, [p[1] for p in pairs])
        return out, MuonState(count=count, mu=mu, ns_coeffs=state.ns_coeffs)

    return GradientTransformation(init_fn, update_fn)


# --- scale_by_shape ----------------------------------------------------------------


def scale_by_shape(
    weight_dimension_numbers: WeightDimNums = None,
    consistent_rms: float | jax.Array | None = None,
) -> GradientTransformation:
    r"""Scales each matrix's update by a factor of its shape (Muon's learning-rate transfer).

    With ``fan_in x fan_out`` the matrix shape given by the dimension numbers::

        out = sqrt(max(1, fan_out / fan_in)) * u          # consistent_rms=None (Jordan)
        out = consistent_rms * sqrt(max(fan_in, fan_out)) * u   # Liu et al. (Moonlight)

    An orthogonal ``m x n`` matrix has RMS ``1 / sqrt(max(m, n))``, so
    Moonlight's factor gives every Muon update the RMS ``consistent_rms``;
    0.2 is about the RMS of an AdamW update, so AdamW's learning rate and
    weight decay carry over (Liu et al., Section 2.2). Jordan's factor only
    keeps wide-output matrices from taking smaller steps.

    The same arguments and factors as the ``scale_by_shape`` that
    ``optax.contrib.muon`` chains (optax 0.2.8 does not export it; the
    tests compare through ``muon``).

    Args:
      weight_dimension_numbers: as in ``scale_by_muon``.
      consistent_rms: ``None`` for Jordan's factor, or the target RMS (> 0).

    Returns:
      A stateless ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_shape(consistent_rms=0.2)
      >>> u = jnp.ones((4, 16))
      >>> tx.update(u, tx.init(u))[0][0, 0]  # 0.2 * sqrt(16)
      Array(0.8, dtype=float32)

    References:
      J. Liu et al., "Muon is Scalable for LLM Training", arXiv 2025,
      https://arxiv.org/abs/2502.16982
    """
    if consistent_rms is not None:
        check_positive("consistent_rms", consistent_rms)

    def factor(shape: tuple[int, ...], d: MuonDimensionNumbers) -> float:
        fan_in, fan_out = fan_in_out(shape, d)
        if consistent_rms is None:
            return math.sqrt(max(1.0, fan_out / fan_in))
        return math.sqrt(max(fan_in, fan_out))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_stateless("scale_by_shape", updates, state, params)
        leaves, treedef = jax.tree.flatten(updates)

        def scale(u, d):
            cdt = compute_dtype(u.dtype)
            f = hyperparam(factor(u.shape, d), cdt)
            if consistent_rms is not None:
                f = f * hyperparam(consistent_rms, cdt)
            return (widen(u, cdt) * f.astype(widen(u, cdt).dtype)).astype(u.dtype)

        dims = leaf_dims(weight_dimension_numbers, updates)
        return jax.tree.unflatten(treedef, [scale(u, d) for u, d in zip(leaves, dims)]), state

    return GradientTransformation(lambda params: EmptyState(), update_fn)


# --- muon -------------------------------------------------------------------------


def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Sequence[float] | Sequence[Sequence[float]] = NS_COEFFS,
    ns_steps: int = 5,
    beta: float | jax.Array = 0.95,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    nesterov: bool = True,
    bias_correction: bool = False,
    ns_dtype: Any = None,
    adam_b1: float | jax.Array = 0.9,
    adam_b2: float | jax.Array = 0.999,
    adam_eps_root: float | jax.Array = 0.0,
    adam_weight_decay: float | jax.Array = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: WeightDimNums = None,
    consistent_rms: float | jax.Array | None = 0.2,
) -> GradientTransformation:
    r"""Muon for matrices, AdamW for everything else (Jordan 2024; Liu et al. 2025).

    ::

        partition({
            "muon": chain(scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype, ...),
                          scale_by_shape(dims, consistent_rms),
                          add_decayed_weights(weight_decay, weight_decay_mask),
                          scale_by_learning_rate(learning_rate)),
            "adam": chain(scale_by_adam(adam_b1, adam_b2, eps, adam_eps_root, mu_dtype)
                          # scale_by_nadam(...) when nesterov=True
                          add_decayed_weights(adam_weight_decay),
                          scale_by_learning_rate(adam_learning_rate or learning_rate)),
        }, labels)

    so a matrix moves by ``-lr (0.2 sqrt(max(m, n)) O_t + weight_decay W)``
    (Moonlight's update, Liu et al. Eq. 4) with ``O_t`` the orthogonalised
    momentum of ``scale_by_muon``. **Routing:** by default every 2-D leaf is
    a matrix (``fan_in, fan_out``) and every other leaf (biases, norms'
    scales, scalars, conv kernels, stacked layers) goes to AdamW. Give
    ``muon_weight_dimension_numbers`` (a tree of ``MuonDimensionNumbers``
    with ``None`` for the AdamW leaves, a prefix of the params' tree, or a
    callable returning one) to route conv kernels, fused projections and
    scanned stacks to Muon, or to keep an embedding or output head on AdamW
    (Jordan and Liu et al. both do: they are not hidden layers).

    **Learning-rate transfer.** With the default ``consistent_rms=0.2``
    (Liu et al.) every Muon update has the RMS of an AdamW update, so one
    AdamW-tuned learning rate and weight decay serve both groups.
    ``consistent_rms=None`` is Jordan's ``sqrt(max(1, fan_out / fan_in))``,
    whose updates have RMS about ``1 / sqrt(fan_in)``; it needs a learning
    rate of its own (0.02 in Jordan's code) and ``adam_learning_rate`` for
    the rest.

    **Cost.** Five Newton-Schulz steps on an ``m x n`` matrix (``m <= n``)
    are ``5 (4 m^2 n + 2 m^3)`` flops (``30 m^3`` for a square one), against
    AdamW's ~10 per element. ``benchmarks/muon_cost.py`` times one jitted
    update of one float32 matrix on a 2-core CPU shared with other jobs:
    Muon costs about 4x AdamW's update at 64 x 64, 20x at 256 x 256 and
    80x to 160x at 1024 x 1024 (1 s per step, ~32 GFLOP); it runs 1.1x to 2.4x
    faster than ``optax.contrib.muon`` measured in the same run. Against the
    forward and backward passes over a batch of ``B`` tokens (``6 B m n``
    flops for that matrix) the overhead is ``~5 m / B`` for a square matrix:
    about 1% for ``m = 1024`` and half a million tokens per batch.

    ==============================================  ====================================
    adaptx                                          optax 0.2.8 (``optax.contrib``)
    ==============================================  ====================================
    ``muon(lr, consistent_rms=None,                 ``muon(lr)``
    bias_correction=True)``
    ``muon(lr, bias_correction=True)``              ``muon(lr, consistent_rms=0.2)``
    ``muon_weight_dimension_numbers``,              same names and meaning
    ``weight_decay(_mask)``, ``adam_*``,
    ``mu_dtype``, ``nesterov``
    ``ns_dtype``, ``nu_dtype``                      no mapping
    no mapping                                      ``adaptive``, ``preconditioning``,
                                                    ``ns_coeffs`` presets (strings)
    ==============================================  ====================================

    The state has optax's layout (``PartitionState`` of ``MaskedState``s,
    ``MuonState(count, mu, ns_coeffs)`` and ``ScaleByAdamState`` at the same
    chain positions), so its leaf paths are optax's. torch 2.13 has no Muon.

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov, bias_correction,
        ns_dtype: as in ``scale_by_muon``; ``eps``, ``mu_dtype`` and
        ``nesterov`` are also AdamW's.
      nu_dtype: dtype of AdamW's second moment; ``None`` = the parameter's
        (adaptx's own: optax's muon has none).
      weight_decay: decoupled weight decay of the Muon leaves, >= 0.
      weight_decay_mask: which Muon leaves to decay (see ``add_decayed_weights``).
      adam_b1, adam_b2, adam_eps_root: AdamW's hyper-parameters.
      adam_weight_decay: AdamW's decoupled weight decay, >= 0.
      adam_learning_rate: AdamW's learning rate; ``None`` = ``learning_rate``.
      muon_weight_dimension_numbers: which leaves are matrices and how (see
        above); ``None`` = the 2-D leaves, as ``(fan_in, fan_out)``.
      consistent_rms: Moonlight's target RMS (> 0), or ``None`` for Jordan's factor.

    With ``inject_hyperparams``, name ``ns_steps`` in ``static_args`` (it
    sets the number of iterations); the other numbers can be run-time values.

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params`` when a
      weight decay is on.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
      >>> tx = adaptx.muon(1e-3)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.ones(3)}
      >>> updates, state = tx.update(grads, state, params)
      >>> sorted(state.inner_states)  # the two parameter groups
      ['adam', 'muon']
      >>> float(jnp.sqrt(jnp.mean(updates["w"] ** 2)).round(5))  # ~ 0.2 lr
      0.00015

    References:
      K. Jordan et al., "Muon: An optimizer for hidden layers in neural
      networks", blog post, 2024, https://kellerjordan.github.io/posts/muon/

      J. Liu et al., "Muon is Scalable for LLM Training", arXiv 2025,
      https://arxiv.org/abs/2502.16982
    """
    check_learning_rate("learning_rate", learning_rate)
    if adam_learning_rate is None:
        adam_learning_rate = learning_rate
    check_learning_rate("adam_learning_rate", adam_learning_rate)
    check_nonnegative("weight_decay", weight_decay)
    check_nonnegative("adam_weight_decay", adam_weight_decay)
    check_decay("adam_b1", adam_b1)
    check_decay("adam_b2", adam_b2)
    check_nonnegative("adam_eps_root", adam_eps_root)
    dims = muon_weight_dimension_numbers

    def labels(params: Any) -> Any:
        if dims is None:
            return jax.tree.map(lambda x: "muon" if jnp.ndim(x) == 2 else "adam", params)
        spec = dims
        if callable(dims) and not isinstance(dims, MuonDimensionNumbers):
            spec = dims(params)
        try:
            return jax.tree.map(
                lambda d, sub: jax.tree.map(lambda _: "adam" if d is None else "muon", sub),
                spec,
                params,
                is_leaf=is_spec,
            )
        except ValueError as e:
            raise ValueError(
                "muon_weight_dimension_numbers must be a tree of MuonDimensionNumbers (None "
                "for AdamW leaves) with the params' structure or a prefix of it, or a "
                f"callable returning one: {e}"
            ) from e

    if nesterov:
        # A constant b1: ScaleByAdamState, optax's scale_by_adam(nesterov=True) layout.
        adam_direction = scale_by_nadam(
            adam_b1,
            adam_b2,
            eps,
            adam_eps_root,
            momentum_decay=None,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        )
    else:
        adam_direction = scale_by_adam(
            adam_b1, adam_b2, eps, adam_eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        )
    muon_dims = MuonDimensionNumbers() if dims is None else dims
    return partition(
        {
            "muon": chain(
                scale_by_muon(
                    ns_coeffs,
                    ns_steps,
                    beta,
                    eps,
                    mu_dtype,
                    nesterov=nesterov,
                    bias_correction=bias_correction,
                    ns_dtype=ns_dtype,
                    weight_dimension_numbers=muon_dims,
                ),
                scale_by_shape(muon_dims, consistent_rms),
                add_decayed_weights(weight_decay, weight_decay_mask),
                scale_by_learning_rate(learning_rate),
            ),
            "adam": chain(
                adam_direction,
                add_decayed_weights(adam_weight_decay),
                scale_by_learning_rate(adam_learning_rate),
            ),
        },
        labels,
    )
