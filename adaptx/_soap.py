"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al., ICLR 2025).

**State memory.** For a leaf of shape ``(d_1, ..., d_k)`` with ``N`` elements,
whose axes ``P`` are preconditioned (``k >= 2`` and ``d_i <=
max_precond_dim``), the state holds ``mu`` and ``nu`` (``N`` elements each,
in ``mu_dtype`` / ``nu_dtype``) and, per preconditioned axis, a factor and
an eigenbasis of ``d_i x d_i`` elements in float32 (float64 for float64
parameters)::

    bytes = N (size(mu_dtype) + size(nu_dtype)) + 2 * size(float32) * sum_{i in P} d_i**2

plus 4 bytes for the step count. Adam keeps the first term. Measured with
``jax.eval_shape(tx.init, params)`` (``benchmarks/soap_memory.py``;
``tests/test_soap.py`` asserts the formula), float32 parameters:

=====================  ===========  ============  =====
shape                  Adam         SOAP          ratio
=====================  ===========  ============  =====
``(768,)``             6.0 KiB      6.0 KiB       1.00
``(256, 256)``         512 KiB      1.5 MiB       3.00
``(1024, 1024)``       8.0 MiB      24.0 MiB      3.00
``(1024, 4096)``       32.0 MiB     168.0 MiB     5.25
``(3, 3, 256, 256)``   4.5 MiB      5.5 MiB       1.22
``(50304, 768)``       294.8 MiB    299.3 MiB     1.02
=====================  ===========  ============  =====

(The conv kernel's two 3-long axes and two 256-long axes each get a
factor; the last shape is a GPT-2 embedding, whose vocabulary axis exceeds
``max_precond_dim = 10000`` and is left unrotated.) A square ``n x n``
matrix costs 3x Adam; an ``m x n`` one ``1 + (m**2 + n**2) / (m n)``
times.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._adam import (
    check_moment_hyperparams,
    check_moment_updates,
    init_first_moment,
    init_second_moment,
    leaf_compute_dtype,
)
from adaptx._base import GradientTransformation, Params, ScalarOrSchedule
from adaptx._combine import chain
from adaptx._numerics import compute_dtype, hyperparam, one_minus_pow, safe_increment
from adaptx._scale import scale_by_learning_rate
from adaptx._sharding import gather_explicit, restore_explicit, shard_like
from adaptx._signature import check_state
from adaptx._validate import check_decay, check_integer, check_learning_rate, check_nonnegative
from adaptx._weight_decay import add_decayed_weights

_EIGENBASES = ("qr", "eigh")


class ScaleBySoapState(NamedTuple):
    """State of ``scale_by_soap``.

    Attributes:
      count: number of updates so far (int32, saturating); the Adam step is
        ``count - 1`` (the first update only builds the preconditioner).
      mu: first moment, in the eigenbasis, ``mu_dtype``.
      nu: second moment, in the eigenbasis, ``nu_dtype``.
      factors: per leaf, a tuple with one entry per axis: the Kronecker
        factor ``L_i`` (the moving average of ``G_(i) G_(i)^T``, ``d_i x d_i``),
        or ``None`` for an axis that is not preconditioned.
      eigenbases: per leaf, the matching tuple of eigenbases ``Q_i`` (orthogonal,
        columns sorted by decreasing eigenvalue), or ``None``.
    """

    count: jax.Array
    mu: Any
    nu: Any
    factors: Any
    eigenbases: Any


def preconditioned_axes(shape: tuple[int, ...], max_precond_dim: int) -> tuple[bool, ...]:
    """The axes SOAP rotates: those ``<= max_precond_dim`` of a leaf of rank >= 2."""
    return tuple(len(shape) >= 2 and d <= max_precond_dim for d in shape)


def _rotate(x: jax.Array, bases: tuple, back: bool) -> jax.Array:
    """``x`` times ``Q_i^T`` (``back=False``) or ``Q_i`` (``back=True``) along each rotated axis."""
    for i, q in enumerate(bases):
        if q is not None:
            x = jnp.moveaxis(jnp.tensordot(x, q, axes=([i], [1 if back else 0])), -1, i)
    return x


def _gram(g: jax.Array, i: int) -> jax.Array:
    """``G_(i) G_(i)^T``: ``g`` contracted with itself over every axis but ``i``."""
    others = [a for a in range(g.ndim) if a != i]
    return jnp.tensordot(g, g, axes=(others, others))


def _descending(q: jax.Array, factor: jax.Array) -> jax.Array:
    """The order of ``q``'s columns by decreasing Rayleigh quotient ``q_j^T L q_j``."""
    estimate = jnp.sum(q * (factor @ q), axis=0)
    return jnp.argsort(-estimate, stable=True)


def _refresh(m, v, factors, bases, method: str):
    """New eigenbases from the factors; ``m`` re-projected, ``v`` permuted to follow them.

    ``qr``: the columns of the old basis are sorted by their estimated
    eigenvalues, ``v`` is permuted the same way, and one step of power
    iteration (``L Q``) is orthonormalised by QR (Vyas et al., Algorithm 4).
    ``eigh``: the same sort and permutation, then the exact eigenvectors,
    by decreasing eigenvalue. ``m`` goes back to the original basis with the
    old bases and into the new ones (so it is the same moment, rotated).
    """
    m = _rotate(m, bases, back=True)
    new = []
    for i, (factor, q) in enumerate(zip(factors, bases)):
        if factor is None:
            new.append(None)
            continue
        order = _descending(q, factor)
        v = jnp.take(v, order, axis=i)
        if method == "qr":
            q, _ = jnp.linalg.qr(factor @ q[:, order])
        else:
            _, vectors = jnp.linalg.eigh(factor)
            q = vectors[:, ::-1]
        new.append(q)
    new = tuple(new)
    return _rotate(m, new, back=False), v, new


def _keep(m, v, factors, bases):
    del factors
    return m, v, bases


def _refresh_qr(m, v, factors, bases):
    return _refresh(m, v, factors, bases, "qr")


def _refresh_eigh(m, v, factors, bases):
    return _refresh(m, v, factors, bases, "eigh")


def scale_by_soap(
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.95,
    eps: float | jax.Array = 1e-8,
    *,
    shampoo_beta: float | jax.Array | None = None,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    eigenbasis: str = "qr",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Scales updates by Adam run in the eigenbasis of Shampoo's preconditioner (SOAP).

    For a matrix ``G`` (``m x n``; a tensor gets one factor per axis), with
    ``Q_L, Q_R`` the current eigenbases and ``k = 1, 2, ...`` the call::

        # k = 1: build the preconditioner only; the output is 0 * G
        G'   = Q_L^T G Q_R                                  # rotate
        M    = b1 M + (1 - b1) G'                           # M kept rotated
        V    = b2 V + (1 - b2) G' * G'
        out  = sqrt(1 - b2**t) / (1 - b1**t) * Q_L (M / (sqrt(V) + eps)) Q_R^T,  t = k - 1
        L    = s L + (1 - s) G G^T,   R = s R + (1 - s) G^T G,   s = shampoo_beta
        if k = 1:           Q_L, Q_R = eigenvectors of L, R (eigh)
        elif t % f == 0:    Q_L, Q_R = QR(L Q_L), QR(R Q_R)    # one power-iteration step
                            M re-projected into the new basis, V permuted

    This is Vyas et al.'s Algorithm 3 with Algorithm 4's eigenbasis update,
    in the form of the authors' reference code: the first call only builds
    ``L, R`` from ``G`` and their exact eigenbases (so that no gradient is
    rotated by a basis it built), the Adam step ``t`` lags the call count by
    one, and before each power-iteration step the columns of ``Q`` are sorted
    by their estimated eigenvalues ``diag(Q^T L Q)`` (decreasing), ``V``'s
    entries following them. ``M`` is kept in the rotated basis and carried
    into each new basis (``Q_new^T Q_old M Q_old^T Q_new``), which is the
    paper's ``M`` (kept unrotated) exactly; ``V`` is not rotated, as in the
    paper. The bias correction is the reference code's: the step size is
    multiplied by ``sqrt(1 - b2**t) / (1 - b1**t)`` and ``eps`` is added to
    ``sqrt(V)`` uncorrected (Adam's ``m_hat / (sqrt(v_hat) + eps')`` with
    ``eps' = eps / sqrt(1 - b2**t)``).

    **Fallback to Adam.** Leaves of rank 0 or 1, and every axis longer than
    ``max_precond_dim`` (a vocabulary axis), are not rotated: a leaf with no
    rotated axis is plain Adam (with the lag above). The refresh runs under
    ``lax.switch`` (three branches: keep, refresh, first build), so the
    step is one compiled program with no host round trip; it is
    deterministic. ``eigenbasis="eigh"`` replaces the power-iteration step
    by an exact ``eigh`` of each factor (more accurate, slower: ``eigh`` is
    ~10x a QR for ``d = 1024`` on CPU).

    **Dtypes.** ``mu``, ``nu`` are kept in ``mu_dtype``, ``nu_dtype``
    (default the parameter's); factors and eigenbases in float32 (float64
    for float64 parameters); the arithmetic is in float32 or wider and the
    output comes back in the parameter's dtype. Real parameters only.

    **Sharding.** Factors and eigenbases are small replicated matrices; the
    moments are sharded like the parameter. With explicit mesh axes each
    gradient is gathered before the rotations and the results resharded like
    the parameter (with automatic axes XLA inserts the same collectives).

    **Rank-deficient factors.** The first factors are built from one
    gradient: for an ``m x n`` gradient with ``m < n``, ``R = G^T G`` has the
    eigenvalue 0 ``n - m`` times, and the eigenvectors of a repeated
    eigenvalue are not unique. Two runs that round differently (a sharded
    and a single-device one, say) may pick different bases for that
    subspace and then take different, equally valid steps; measured on the
    sharding suite's 4 x 8 matrices, the parameters drift apart by ~1e-3
    after 20 steps. A single setup is deterministic.

    Not offered: the reference code's ``merge_dims``, ``precondition_1d``,
    ``normalize_grads`` and ``data_format`` options.

    Defaults are the reference code's: ``b1 = b2 = 0.95``,
    ``shampoo_beta = b2``, ``eps = 1e-8``, ``precondition_frequency = 10``,
    ``max_precond_dim = 10000``. optax 0.2.8 and torch 2.13 have no SOAP.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to ``sqrt(V)``, >= 0.
      shampoo_beta: decay of the factors ``L, R``, in [0, 1); ``None`` = ``b2``.
      precondition_frequency: refresh the eigenbases every this many Adam
        steps, an integer >= 1.
      max_precond_dim: axes longer than this are not rotated, an integer >= 1.
      eigenbasis: ``"qr"`` (one power-iteration step, the paper's) or ``"eigh"``.
      mu_dtype: dtype of ``mu``; ``None`` = the parameter's.
      nu_dtype: dtype of ``nu``; ``None`` = the parameter's.

    Returns:
      A ``GradientTransformation`` with state ``ScaleBySoapState``.

    Raises:
      ValueError: for a hyper-parameter out of range, and from ``init`` for a
        complex parameter.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.scale_by_soap()
      >>> state = tx.init(jnp.zeros((2, 2)))
      >>> update = jax.jit(tx.update)
      >>> out, state = update(jnp.array([[1.0, 2.0], [3.0, 4.0]]), state)
      >>> out  # the first call builds the preconditioner
      Array([[0., 0.],
             [0., 0.]], dtype=float32)
      >>> [q.shape for q in state.eigenbases]  # Q_L and Q_R
      [(2, 2), (2, 2)]
      >>> out, state = update(jnp.array([[1.0, -1.0], [0.5, 2.0]]), state)
      >>> out.shape
      (2, 2)

    References:
      N. Vyas, D. Morwani, R. Zhao, M. Kwun, I. Shapira, D. Brandfonbrener,
      L. Janson, S. Kakade, "SOAP: Improving and Stabilizing Shampoo using
      Adam", ICLR 2025, https://arxiv.org/abs/2409.11321 (Algorithms 3 and 4).
    """
    check_moment_hyperparams(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if shampoo_beta is not None:
        check_decay("shampoo_beta", shampoo_beta)
    check_integer("precondition_frequency", precondition_frequency, 1)
    check_integer("max_precond_dim", max_precond_dim, 1)
    if eigenbasis not in _EIGENBASES:
        raise ValueError(f"eigenbasis must be one of {_EIGENBASES}, got {eigenbasis!r}")
    s_beta = b2 if shampoo_beta is None else shampoo_beta

    def init_fn(params: Params) -> ScaleBySoapState:
        def matrices(x: Any, fill: Any) -> tuple:
            dtype = jnp.result_type(x)
            if jnp.issubdtype(dtype, jnp.complexfloating):
                raise ValueError(
                    f"scale_by_soap supports real parameters, got a {dtype} leaf of shape "
                    f"{jnp.shape(x)}"
                )
            cdt = compute_dtype(dtype)
            axes = preconditioned_axes(jnp.shape(x), max_precond_dim)
            return tuple(fill(d, cdt) if p else None for d, p in zip(jnp.shape(x), axes))

        leaves, treedef = jax.tree.flatten(params)
        zeros = [matrices(x, lambda d, t: jnp.zeros((d, d), t)) for x in leaves]
        eyes = [matrices(x, lambda d, t: jnp.eye(d, dtype=t)) for x in leaves]
        return ScaleBySoapState(
            count=jnp.zeros((), jnp.int32),
            mu=init_first_moment(params, mu_dtype),
            nu=init_second_moment(params, nu_dtype),
            factors=jax.tree.unflatten(treedef, zeros) if leaves else treedef.unflatten([]),
            eigenbases=jax.tree.unflatten(treedef, eyes) if leaves else treedef.unflatten([]),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        check_state("scale_by_soap", state, ScaleBySoapState)
        check_moment_updates("scale_by_soap", updates, state, mu_dtype, nu_dtype, params)
        count = safe_increment(state.count)
        t = jnp.maximum(count - 1, 1)  # the Adam step (the first call's output is masked)
        first = count == 1
        refresh = jnp.logical_and(t % precondition_frequency == 0, count > 1)
        branch = jnp.where(first, 2, jnp.where(refresh, 1, 0))

        @functools.cache
        def scalars(cdt):
            c1, c2 = one_minus_pow(b1, t, cdt), one_minus_pow(b2, t, cdt)
            return (
                hyperparam(b1, cdt),
                hyperparam(b2, cdt),
                hyperparam(eps, cdt),
                hyperparam(s_beta, cdt),
                jnp.sqrt(c2) / c1,
            )

        def leaf(g, m, v, factors, bases):
            cdt = leaf_compute_dtype(g, m, v)
            beta1, beta2, e, s, step = scalars(cdt)
            one = jnp.ones((), cdt)
            gw, spec = gather_explicit(g.astype(cdt))
            mw, _ = gather_explicit(m.astype(cdt))
            vw, _ = gather_explicit(v.astype(cdt))
            rotated = _rotate(gw, bases, back=False)
            m_new = beta1 * mw + (one - beta1) * rotated
            v_new = beta2 * vw + (one - beta2) * jnp.square(rotated)
            out = step * _rotate(m_new / (jnp.sqrt(v_new) + e), bases, back=True)
            out = jnp.where(first, gw * jnp.zeros((), cdt), out)  # 0, or NaN for a NaN gradient
            m_new = jnp.where(first, mw, m_new)
            v_new = jnp.where(first, vw, v_new)
            factors = tuple(
                None if f is None else s * f + (one - s) * _gram(gw, i).astype(f.dtype)
                for i, f in enumerate(factors)
            )
            if any(f is not None for f in factors):
                # Module-level branches: an eager switch compiles once, not per call.
                m_new, v_new, bases = jax.lax.switch(
                    branch,
                    [_keep, _refresh_qr if eigenbasis == "qr" else _refresh_eigh, _refresh_eigh],
                    m_new,
                    v_new,
                    factors,
                    bases,
                )
            outs = (out.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype))
            outs = tuple(shard_like(g, restore_explicit(x, spec)) for x in outs)
            return (*outs, factors, bases)

        leaves, treedef = jax.tree.flatten(updates)
        results = [
            leaf(*args)
            for args in zip(
                leaves,
                jax.tree.leaves(state.mu),
                jax.tree.leaves(state.nu),
                treedef.flatten_up_to(state.factors),
                treedef.flatten_up_to(state.eigenbases),
            )
        ]

        def field(i: int) -> Any:
            return jax.tree.unflatten(treedef, [r[i] for r in results])

        new_state = ScaleBySoapState(
            count=count,
            mu=field(1),
            nu=field(2),
            factors=field(3) if results else state.factors,
            eigenbases=field(4) if results else state.eigenbases,
        )
        return field(0), new_state

    return GradientTransformation(init_fn, update_fn)


def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.95,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.01,
    mask: Any = None,
    *,
    shampoo_beta: float | jax.Array | None = None,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    eigenbasis: str = "qr",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """SOAP (Vyas et al., ICLR 2025): Adam in Shampoo's eigenbasis, with decoupled weight decay.

    ::

        chain(scale_by_soap(b1, b2, eps, shampoo_beta=..., precondition_frequency=...,
                            max_precond_dim=..., eigenbasis=..., mu_dtype=..., nu_dtype=...),
              add_decayed_weights(weight_decay, mask),
              scale_by_learning_rate(learning_rate))

    so ``theta <- theta - lr (soap_t + weight_decay theta)``. The reference
    code decays the parameters after the step (``theta <- (theta - lr
    soap_t)(1 - lr weight_decay)``), which differs by ``lr**2 weight_decay
    soap_t`` per step. Defaults are the reference code's (``lr = 3e-3``,
    ``weight_decay = 0.01``); equations, dtypes and memory:
    ``scale_by_soap`` and the module docstring. optax 0.2.8 and torch 2.13
    have no SOAP (optax's pull requests for it are unmerged).

    Args:
      learning_rate: a number or a schedule ``count -> value``.
      b1, b2, eps, shampoo_beta, precondition_frequency, max_precond_dim,
        eigenbasis, mu_dtype, nu_dtype: as in ``scale_by_soap``.
      weight_decay: decoupled weight decay, >= 0.
      mask: which parameters to decay (see ``add_decayed_weights``).

    With ``inject_hyperparams``, name ``precondition_frequency`` and
    ``max_precond_dim`` in ``static_args`` (they shape the program and the
    state); the other numbers can be run-time values.

    Returns:
      A ``GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> x = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
      >>> y = x @ jnp.array([[1.0, -1.0], [0.5, 2.0]])
      >>> loss = lambda w: jnp.mean((x @ w - y) ** 2)
      >>> tx = adaptx.soap(0.05, weight_decay=0.0)
      >>> @jax.jit
      ... def step(w, state):
      ...     updates, state = tx.update(jax.grad(loss)(w), state, w)
      ...     return adaptx.apply_updates(w, updates), state
      >>> w = jnp.zeros((2, 2))
      >>> state = tx.init(w)
      >>> for _ in range(100):
      ...     w, state = step(w, state)
      >>> round(float(loss(jnp.zeros((2, 2)))), 2), bool(loss(w) < 0.1)  # from 7.5 to < 0.1
      (7.51, True)

    References:
      N. Vyas, D. Morwani, R. Zhao, M. Kwun, I. Shapira, D. Brandfonbrener,
      L. Janson, S. Kakade, "SOAP: Improving and Stabilizing Shampoo using
      Adam", ICLR 2025, https://arxiv.org/abs/2409.11321
    """
    check_learning_rate("learning_rate", learning_rate)
    check_nonnegative("weight_decay", weight_decay)
    return chain(
        scale_by_soap(
            b1,
            b2,
            eps,
            shampoo_beta=shampoo_beta,
            precondition_frequency=precondition_frequency,
            max_precond_dim=max_precond_dim,
            eigenbasis=eigenbasis,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def state_bytes(shape: tuple[int, ...], dtype: Any = np.float32, max_precond_dim: int = 10000):
    """The bytes of ``scale_by_soap``'s state for one leaf, by the module docstring's formula."""
    n = int(np.prod(shape, dtype=np.int64))
    size = jnp.dtype(dtype).itemsize
    wide = compute_dtype(dtype).itemsize
    axes = preconditioned_axes(tuple(shape), max_precond_dim)
    return 2 * n * size + 2 * wide * sum(d * d for d, p in zip(shape, axes) if p) + 4
