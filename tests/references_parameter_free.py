"""Plain NumPy float64 Schedule-Free, D-Adaptation and Prodigy, written from the papers.

This module does not import adaptx (or jax). Each function runs the
algorithm from ``x1`` on a gradient oracle ``grad(x) -> ndarray`` and returns
the sequence of parameters the training loop holds after each step (``y`` for
Schedule-Free, ``x`` for the others), plus Schedule-Free's evaluation
sequence ``x``. The gradients depend on the iterates, so the comparison
exercises the distance estimates of D-Adaptation and Prodigy.

Schedule-Free keeps the paper's three sequences explicitly (``y``, ``z``,
``x``), where adaptx keeps ``y`` and ``z`` and eliminates ``x``. Prodigy
follows the paper's Algorithm 4 with its ``(1 - sqrt(b2)) gamma d**2``
factors in ``r`` and ``s`` (adaptx, the authors' code and optax use other
factors with the same ratio); ``eps`` is multiplied by the updated ``d``,
as in the authors' code.
"""

from __future__ import annotations

import numpy as np


def schedule_free(
    grad,
    x1,
    steps,
    *,
    adam=True,
    lr=0.0025,
    warmup=0,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    wd=0.0,
    power=2.0,
    r=0.0,
):
    """Defazio et al. 2024, Algorithm 1 (Adam base) or Section 2 (SGD base).

    Returns ``(ys, xs)``: ``ys[t-1] = y_{t+1}``, ``xs[t-1] = x_{t+1}``.
    """
    x = np.array(x1, np.float64)
    z = x.copy()
    v = np.zeros_like(x)
    weight_sum, lr_max = 0.0, 0.0
    ys, xs = [], []
    for t in range(1, steps + 1):
        y = (1 - b1) * z + b1 * x
        g = grad(y)
        gamma = lr * min(1.0, t / warmup) if warmup else lr
        if adam:
            v = b2 * v + (1 - b2) * g * g
            d = g / (np.sqrt(v / (1 - b2**t)) + eps) + wd * y
        else:
            d = g + wd * y
        z = z - gamma * d
        lr_max = max(lr_max, gamma)
        w = t**r * lr_max**power
        weight_sum += w
        c = w / weight_sum if weight_sum > 0 else 0.0
        x = (1 - c) * x + c * z
        ys.append((1 - b1) * z + b1 * x)
        xs.append(x.copy())
    return np.array(ys), np.array(xs)


def dadapt_adam(grad, x1, steps, *, lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, wd=0.0, bc=False):
    """Defazio & Mishchenko 2023, D-Adapted Adam (decoupled decay, as the authors run it)."""
    x = np.array(x1, np.float64)
    m, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    q = np.sqrt(b2)
    rr, d = 0.0, d0
    out = []
    for k in range(steps):
        g = grad(x)
        gamma = lr(k) if callable(lr) else lr
        corr = np.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if bc else 1.0
        lam = d * gamma * corr
        rr = q * rr + (1 - q) * lam * np.dot(g, s / (np.sqrt(v) + eps))
        m = b1 * m + (1 - b1) * lam * g
        v = b2 * v + (1 - b2) * g * g
        s = q * s + (1 - q) * lam * g
        l1 = np.abs(s).sum()
        if l1 > 0:
            d = max(d, rr / ((1 - q) * l1))
        x = x - (m / (np.sqrt(v) + eps) + wd * lam * x)
        out.append(x.copy())
    return np.array(out)


def prodigy(
    grad,
    x1,
    steps,
    *,
    lr=1.0,
    b1=0.9,
    b2=0.999,
    beta3=None,
    eps=1e-8,
    d0=1e-6,
    coef=1.0,
    wd=0.0,
    safeguard=False,
    bc=False,
):
    """Mishchenko & Defazio 2024, Algorithm 4 (Prodigy, Adam version)."""
    x0 = np.array(x1, np.float64)
    x = x0.copy()
    m, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    b3 = np.sqrt(b2) if beta3 is None else beta3
    rr, d = 0.0, d0
    out = []
    for k in range(steps):
        g = grad(x)
        gamma = lr(k) if callable(lr) else lr
        corr = np.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if bc else 1.0
        m = b1 * m + (1 - b1) * d * g
        v = b2 * v + (1 - b2) * d * d * g * g
        rr = b3 * rr + (1 - b3) * gamma * corr * d * d * np.dot(g, x0 - x)
        s = b3 * s + (1 - b3) * (1.0 if safeguard else gamma * corr) * d * d * g
        l1 = np.abs(s).sum()
        d_old = d
        if l1 > 0:
            d = max(d, coef * rr / l1)
        step = gamma * corr * d_old
        x = x - step * (m / (np.sqrt(v) + d * eps) + wd * x)
        out.append(x.copy())
    return np.array(out)
