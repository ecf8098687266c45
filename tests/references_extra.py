"""Plain NumPy float64 implementations of sign-based, Adam-variant and layer-wise optimizers,
written from their papers.

Independent of adaptx and jax: the other side of the comparisons in
``test_extra_optimizers.py``. Direction functions take a gradient sequence
``grads`` of shape ``(T, n)`` (row ``t - 1`` is the gradient of step ``t``)
and return the ``(T, n)`` directions the matching ``scale_by_*`` transform
should output. The layer-wise ones (LAMB, LARS) need the parameters: they take
a list of layers (arrays) and a list of gradient sequences, follow the
parameters, and return the ``(T, n)`` updates, layers concatenated in order.
"""

from __future__ import annotations

import math

import numpy as np
from references_adam import one_minus_pow


def sign_sgd(grads):
    """Bernstein et al. (2018), Algorithm 1 without momentum: ``sign(g_t)``."""
    return np.sign(grads)


def signum(grads, beta=0.9):
    """Bernstein et al. (2018), Signum: ``m_t = beta m_{t-1} + (1 - beta) g_t``, ``sign(m_t)``."""
    m = np.zeros(grads.shape[1])
    out = []
    for g in grads:
        m = beta * m + (1 - beta) * g
        out.append(np.sign(m))
    return np.array(out)


def lion(grads, b1=0.9, b2=0.99):
    """Chen et al. (2023), Algorithm 2: ``sign(b1 m + (1 - b1) g)``, then
    ``m <- b2 m + (1 - b2) g``."""
    m = np.zeros(grads.shape[1])
    out = []
    for g in grads:
        out.append(np.sign(b1 * m + (1 - b1) * g))
        m = b2 * m + (1 - b2) * g
    return np.array(out)


def adabelief(grads, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16):
    """Zhuang et al. (2020), Algorithm 2; the recurrence's epsilon is ``eps_root``."""
    m = np.zeros(grads.shape[1])
    s = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        m_hat = m / one_minus_pow(b1, t)
        s_hat = s / one_minus_pow(b2, t)
        out.append(m_hat / (np.sqrt(s_hat) + eps))
    return np.array(out)


def yogi(grads, b1=0.9, b2=0.999, eps=1e-3, v0=1e-6, m0=0.0):
    """Zaheer et al. (2018), Algorithm 2, with Adam's bias corrections."""
    m = np.full(grads.shape[1], m0)
    v = np.full(grads.shape[1], v0)
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * np.sign(v - g * g) * g * g
        out.append((m / one_minus_pow(b1, t)) / (np.sqrt(v / one_minus_pow(b2, t)) + eps))
    return np.array(out)


def adopt(grads, b1=0.9, b2=0.9999, eps=1e-6, clipping=True):
    """Taniguchi et al. (2024), Algorithm 1: the first gradient only sets ``v_0 = g_0**2``;
    then ``m_t = b1 m + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps), t**0.25)``, output
    ``m_t``, and ``v_t = b2 v + (1 - b2) g_t**2``."""
    v = grads[0] ** 2
    m = np.zeros(grads.shape[1])
    out = [np.zeros(grads.shape[1])]
    for t, g in enumerate(grads[1:], start=1):
        normed = g / np.maximum(np.sqrt(v), eps)
        if clipping:
            normed = np.clip(normed, -(t**0.25), t**0.25)
        m = b1 * m + (1 - b1) * normed
        out.append(m)
        v = b2 * v + (1 - b2) * g * g
    return np.array(out)


def ademamix_alpha(t, alpha, warmup):
    """Pagliardini et al. (2025): ``alpha_t = min(t alpha / T, alpha)``."""
    return min(t * alpha / warmup, alpha)


def ademamix_b3(t, b3, warmup, b_start):
    """Pagliardini et al. (2025): the half-life-linear warm-up of ``b3``."""
    lb, ls = math.log(b3), math.log(b_start)
    return min(math.exp(ls * lb / ((1 - t / warmup) * lb + (t / warmup) * ls)), b3)


def ademamix(grads, b1=0.9, b2=0.999, b3=0.9999, alpha=5.0, eps=1e-8, warmup=None):
    """Pagliardini et al. (2025), Algorithm 1 (before the learning rate and decay); with
    ``warmup = T`` the paper's schedulers, with ``b_start = b1``."""
    m1 = np.zeros(grads.shape[1])
    m2 = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, start=1):
        b3_t = b3 if warmup is None else ademamix_b3(t, b3, warmup, b1)
        alpha_t = alpha if warmup is None else ademamix_alpha(t, alpha, warmup)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b3_t * m2 + (1 - b3_t) * g
        v = b2 * v + (1 - b2) * g * g
        m1_hat = m1 / one_minus_pow(b1, t)
        v_hat = v / one_minus_pow(b2, t)
        out.append((m1_hat + alpha_t * m2) / (np.sqrt(v_hat) + eps))
    return np.array(out)


def lamb(layers0, grads, lr, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0):
    """You et al. (2020), Algorithm 2 with ``phi(z) = z``:
    ``x <- x - lr ||x|| / ||r + wd x|| (r + wd x)``, ``r`` Adam's bias-corrected ratio.
    A layer with ``||x|| = 0`` gets ``phi(0) = 0``: it does not move."""
    xs = [np.array(x, np.float64) for x in layers0]
    ms = [np.zeros_like(x) for x in xs]
    vs = [np.zeros_like(x) for x in xs]
    out = []
    for t in range(1, len(grads[0]) + 1):
        step = []
        for i, x in enumerate(xs):
            g = grads[i][t - 1]
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            r = (ms[i] / one_minus_pow(b1, t)) / (np.sqrt(vs[i] / one_minus_pow(b2, t)) + eps)
            d = r + weight_decay * x
            u = -lr * np.linalg.norm(x) / np.linalg.norm(d) * d
            xs[i] = x + u
            step.append(u)
        out.append(np.concatenate(step))
    return np.array(out)


def lars(layers0, grads, lr, momentum=0.9, weight_decay=0.0, eta=0.001):
    """You, Gitman & Ginsburg (2017), Algorithm 1: per layer
    ``lambda = eta ||w|| / (||g|| + wd ||w||)``, ``v <- m v + lr lambda (g + wd w)``,
    ``w <- w - v``."""
    ws = [np.array(w, np.float64) for w in layers0]
    vs = [np.zeros_like(w) for w in ws]
    out = []
    for t in range(len(grads[0])):
        step = []
        for i, w in enumerate(ws):
            g = grads[i][t]
            local = eta * np.linalg.norm(w) / (np.linalg.norm(g) + weight_decay * np.linalg.norm(w))
            vs[i] = momentum * vs[i] + lr * local * (g + weight_decay * w)
            ws[i] = w - vs[i]
            step.append(-vs[i])
        out.append(np.concatenate(step))
    return np.array(out)
