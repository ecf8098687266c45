"""Plain NumPy float64 Adafactor, written from Shazeer & Stern (ICML 2018).

Independent of adaptx and jax: Algorithm 4 (factored second moments for
matrices, using row and column *sums* as the paper writes them, and
``V = R C / (1^T R)``), Algorithm 2 for vectors, the decay of Section 7.2
(``beta2_t = 1 - t**-c``), update clipping of Section 6
(``U / max(1, RMS(U) / d)``) and the relative step size of Section 8
(``alpha_t = max(eps2, RMS(X_{t-1})) rho_t``).

For a tensor of rank > 2 the paper says nothing; this reference factors it
over two given axes (``axes=(small, large)``), summing over the other.
"""

from __future__ import annotations

import numpy as np


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


class Adafactor:
    """One parameter's Adafactor, stepped with ``step(x, g) -> new x``.

    Args:
      shape: the parameter's shape.
      axes: ``(row axis, column axis)`` to factor over, or ``None`` (Algorithm 2).
      rho: ``t -> relative step size`` (t from 1).
      c: decay exponent; ``d``: clipping threshold (``None``: no clipping).
      eps1, eps2: the paper's epsilons; ``param_scale``: multiply by
        ``max(eps2, RMS(X))``.
      momentum: ``b1`` of a moving average of the scaled updates (None: none).
      weight_decay: ``w``: ``X <- X - w X`` added to the step (optax's placement).
    """

    def __init__(
        self,
        shape,
        axes,
        rho,
        c=0.8,
        d=1.0,
        eps1=1e-30,
        eps2=1e-3,
        param_scale=True,
        momentum=None,
        weight_decay=None,
    ):
        self.axes, self.rho, self.c, self.d = axes, rho, c, d
        self.eps1, self.eps2, self.param_scale = eps1, eps2, param_scale
        self.momentum, self.weight_decay = momentum, weight_decay
        self.t = 0
        if axes is None:
            self.V = np.zeros(shape)
        else:
            i, j = axes  # R sums over the column axis j; C over the row axis i
            self.R = np.zeros(np.delete(np.array(shape), j))
            self.C = np.zeros(np.delete(np.array(shape), i))
            self.n_i, self.n_j = shape[i], shape[j]
        self.M = np.zeros(shape)

    def direction(self, g: np.ndarray) -> np.ndarray:
        """``G / sqrt(V_hat)`` (before clipping), updating the statistics."""
        self.t += 1
        b = 1.0 - self.t ** (-self.c)
        s = np.square(g) + self.eps1
        if self.axes is None:
            self.V = b * self.V + (1 - b) * s
            return g / np.sqrt(self.V)
        i, j = self.axes
        # Paper: R_t = b R + (1 - b) (G^2 + eps) 1_m, C_t = b C + (1 - b) 1_n^T (G^2 + eps).
        self.R = b * self.R + (1 - b) * s.sum(axis=j)
        self.C = b * self.C + (1 - b) * s.sum(axis=i)
        # V_hat = R C / (1^T R): R indexed without j, C without i; total over i.
        r = np.expand_dims(self.R, j)
        cc = np.expand_dims(self.C, i)
        total = r.sum(axis=i, keepdims=True)  # 1^T R, per slice of the other axes
        v_hat = r * cc / total
        return g / np.sqrt(v_hat)

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        u = self.direction(g)
        if self.d is not None:
            u = u / max(1.0, rms(u) / self.d)
        u = self.rho(self.t) * u
        if self.param_scale:
            u = max(self.eps2, rms(x)) * u
        if self.momentum is not None:
            self.M = self.momentum * self.M + (1 - self.momentum) * u
            u = self.M
        if self.weight_decay is not None:
            u = u + self.weight_decay * x
        return x - u


def paper_rho(t: int, max_rate: float = 1e-2) -> float:
    """Section 8's relative step size ``min(max_rate, 1 / sqrt(t))``."""
    return min(max_rate, 1.0 / np.sqrt(t))
