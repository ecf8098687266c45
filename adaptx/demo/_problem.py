"""The Adam paper's logistic-regression problem on scikit-learn's digits.

Kingma & Ba (2015, Section 6.1) train L2-regularised multinomial logistic
regression on MNIST. The same model on the 8x8 digits that ship with
scikit-learn (1797 images, 64 features, 10 classes) needs no download and
trains in seconds. The objective is strongly convex, so its minimum is unique
and a float64 L-BFGS solve gives the number every optimizer is measured against.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Problem:
    """L2-regularised multinomial logistic regression on a fixed data set.

    The objective, with ``z_i = x_i W + b``, is::

        f(W, b) = mean_i [logsumexp(z_i) - z_i[y_i]] + l2 / 2 * (|W|^2 + |b|^2)

    Attributes:
      x: the ``(n, d)`` float32 features.
      y: the ``(n,)`` int32 labels, in ``[0, n_classes)``.
      n_classes: the number of classes.
      l2: the regularisation coefficient.
    """

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    l2: float

    def init_params(self) -> Params:
        """Zero weights ``{"w": (d, n_classes), "b": (n_classes,)}`` in float32.

        Example:
          >>> from adaptx.demo import load_digits_problem
          >>> p = load_digits_problem().init_params()
          >>> p["w"].shape, p["b"].shape
          ((64, 10), (10,))
        """
        d = self.x.shape[1]
        return {
            "w": jnp.zeros((d, self.n_classes), jnp.float32),
            "b": jnp.zeros((self.n_classes,), jnp.float32),
        }


def load_digits_problem(l2: float = 1e-4) -> Problem:
    """scikit-learn's bundled digits as a logistic-regression problem.

    Each feature is standardised to zero mean and unit variance over the whole
    set (features that are constant stay at zero). Nothing is downloaded.

    Args:
      l2: the L2 coefficient of the objective (see ``Problem``).

    Returns:
      A ``Problem`` with 1797 examples, 64 features and 10 classes.

    Example:
      >>> from adaptx.demo import load_digits_problem
      >>> problem = load_digits_problem()
      >>> problem.x.shape, problem.x.dtype, problem.n_classes
      ((1797, 64), dtype('float32'), 10)
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = np.asarray(x, np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return Problem(x=x.astype(np.float32), y=np.asarray(y, np.int32), n_classes=10, l2=float(l2))


def data_loss(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of the linear model ``x W + b`` (no L2 term).

    Args:
      params: ``{"w": (d, k), "b": (k,)}``.
      x: ``(n, d)`` features.
      y: ``(n,)`` integer labels.

    Returns:
      A scalar in the params' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from adaptx.demo import data_loss, load_digits_problem
      >>> problem = load_digits_problem()
      >>> float(data_loss(problem.init_params(), problem.x, problem.y))  # log(10)
      2.302585...
    """
    z = x @ params["w"] + params["b"][None, :]
    picked = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - picked)


def l2_penalty(params: Params, l2: float) -> jax.Array:
    """``l2 / 2`` times the squared norm of every parameter.

    Example:
      >>> import jax.numpy as jnp
      >>> from adaptx.demo import l2_penalty
      >>> float(l2_penalty({"w": jnp.ones(4), "b": jnp.ones(2)}, 0.5))
      1.5
    """
    return 0.5 * l2 * sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))


def objective(params: Params, x: jax.Array, y: jax.Array, l2: float) -> jax.Array:
    """The regularised objective ``data_loss + l2_penalty`` (in the params' dtype).

    Example:
      >>> from adaptx.demo import load_digits_problem, objective
      >>> problem = load_digits_problem()
      >>> float(objective(problem.init_params(), problem.x, problem.y, problem.l2))
      2.302585...
    """
    return data_loss(params, x, y) + l2_penalty(params, l2)


def objective_f64(problem: Problem, params: Params) -> tuple[float, Params]:
    """The objective and its gradient in float64 NumPy, written out by hand.

    Independent of JAX: this is what L-BFGS minimises and what the final
    objective of every optimizer is evaluated with.

    Args:
      problem: the problem.
      params: ``{"w", "b"}`` arrays of any float dtype.

    Returns:
      ``(value, grads)`` with ``grads`` float64 arrays shaped like ``params``.

    Example:
      >>> from adaptx.demo import load_digits_problem, objective_f64
      >>> problem = load_digits_problem()
      >>> value, grads = objective_f64(problem, problem.init_params())
      >>> round(value, 12), grads["w"].dtype
      (2.302585092994, dtype('float64'))
    """
    return _value_and_grad_f64(problem.x.astype(np.float64), problem.y, problem.l2, params)


def _value_and_grad_f64(x: np.ndarray, y: np.ndarray, l2: float, params: Params):
    w = np.asarray(params["w"], np.float64)
    b = np.asarray(params["b"], np.float64)
    n = x.shape[0]
    rows = np.arange(n)
    z = x @ w + b
    z -= z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    value = np.mean(lse - z[rows, y]) + 0.5 * l2 * (np.sum(w * w) + np.sum(b * b))
    resid = np.exp(z - lse[:, None])  # softmax probabilities
    resid[rows, y] -= 1.0
    resid /= n
    grads = {"w": x.T @ resid + l2 * w, "b": resid.sum(axis=0) + l2 * b}
    return float(value), grads


@dataclasses.dataclass(frozen=True)
class Optimum:
    """The float64 minimum found by L-BFGS.

    Attributes:
      value: the objective at the minimum.
      params: the minimiser, float64 arrays.
      grad_norm: the gradient's l2 norm there (how optimal it is).
      iterations: L-BFGS iterations used.
      seconds: wall time of the solve.
    """

    value: float
    params: Params
    grad_norm: float
    iterations: int
    seconds: float


def lbfgs_optimum(problem: Problem, *, gtol: float = 1e-10, max_iter: int = 10_000) -> Optimum:
    """Minimises the objective in float64 with SciPy's L-BFGS-B.

    The objective is strongly convex (``l2 > 0``), so the minimum is unique;
    ``grad_norm`` of the result shows how close the solve got to it.

    Args:
      problem: the problem.
      gtol: stop when the largest gradient component is below this.
      max_iter: iteration limit.

    Returns:
      An ``Optimum``.

    Example:
      >>> from adaptx.demo import lbfgs_optimum, load_digits_problem
      >>> opt = lbfgs_optimum(load_digits_problem(l2=1e-2))
      >>> round(opt.value, 6), opt.grad_norm < 1e-8
      (0.271279, True)
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    d, k = problem.x.shape[1], problem.n_classes
    x64 = problem.x.astype(np.float64)

    def unpack(theta: np.ndarray) -> Params:
        return {"w": theta[: d * k].reshape(d, k), "b": theta[d * k :]}

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = _value_and_grad_f64(x64, problem.y, problem.l2, unpack(theta))
        return value, np.concatenate([grads["w"].ravel(), grads["b"]])

    start = time.perf_counter()
    # The matrices are tiny: a multi-threaded BLAS spends more time waking its
    # threads than multiplying (about 20x slower on 2 busy cores).
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(
            fun,
            np.zeros(d * k + k),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "gtol": gtol, "ftol": 0.0, "maxcor": 20},
        )
    seconds = time.perf_counter() - start
    return Optimum(
        value=float(res.fun),
        params=unpack(res.x),
        grad_norm=float(np.linalg.norm(res.jac)),
        iterations=int(res.nit),
        seconds=seconds,
    )
