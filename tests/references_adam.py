"""Plain NumPy float64 implementations of the Adam family, written from the papers.

This module does not import adaptx (or jax): it is the independent side of
the comparisons in ``test_adam_family.py``, and
``data/generate_torch_adam_family.py`` imports it for the shared gradient
sequence. Every function takes a gradient sequence ``grads`` of shape
``(T, n)`` (row ``t - 1`` is the gradient of step ``t``) and returns the
``(T, n)`` directions the matching ``scale_by_*`` transform should output
(before the learning rate; ``adamw_paper`` returns parameters).

Bias corrections ``1 - b**t`` and RAdam's ``rho_t`` are computed exactly with
``fractions.Fraction`` from the float64 value of each hyper-parameter and
only then rounded to float64: written naively in float64, ``1 - 0.99999**t``
loses five digits and ``rho_t`` nearly all of them.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

T = 25  # steps in the reference runs


def gradient_sequence(steps: int = T) -> np.ndarray:
    """A fixed ``(steps, 6)`` gradient sequence, exactly representable in float32.

    Columns: 0 always zero; 1 a 100x spike at step 8; 2 shrinking
    geometrically (by 0.7 a step); 3 alternating sign; 4 small (~1e-3)
    and irregular; 5 negative and oscillating. No coordinate's moving
    average passes close to zero, which would make the float32 comparison
    measure the cancellation of the sequence rather than the implementation.
    """
    t = np.arange(1, steps + 1, dtype=np.float64)
    g = np.zeros((steps, 6))
    g[:, 1] = 0.3 + 0.1 * np.sin(t)
    g[7, 1] *= 100.0
    g[:, 2] = 2.0 * 0.7**t
    g[:, 3] = np.where(t % 2 == 0, 1.5, -1.0) * (1.0 + 0.05 * t)
    g[:, 4] = 1e-3 * np.cos(2.7 * t)
    g[:, 5] = -0.6 - 0.3 * np.sin(1.7 * t)
    return g.astype(np.float32).astype(np.float64)


def one_minus_pow(b: float, t: int) -> float:
    """``1 - b**t`` exactly for the float ``b``, then rounded."""
    return float(1 - Fraction(b) ** t)


def adam(grads, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, b1_decay=None):
    """Kingma & Ba, Algorithm 1; with ``b1_decay=lam``, ``beta1_t = b1 lam**(t-1)``
    (Theorem 4.1) and ``m`` divided by ``1 - prod_i beta1_i``."""
    m = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    prod = Fraction(1)
    out = []
    for t, g in enumerate(grads, start=1):
        b1_t = Fraction(b1) * (Fraction(b1_decay) ** (t - 1) if b1_decay is not None else 1)
        prod *= b1_t
        b1_t = float(b1_t)
        m = b1_t * m + (1 - b1_t) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / float(1 - prod)
        v_hat = v / one_minus_pow(b2, t)
        out.append(m_hat / (np.sqrt(v_hat + eps_root) + eps))
    return np.array(out)


def adamax(grads, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba, Algorithm 2, with ``eps`` inside the maximum (``eps=0``: the paper)."""
    m = np.zeros(grads.shape[1])
    u = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        out.append(m / one_minus_pow(b1, t) / u)
    return np.array(out)


def amsgrad(grads, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, variant="max_raw"):
    """Reddi, Kale & Kumar, Algorithm 2 (``"paper"``), and the two bias-corrected forms."""
    m = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    v_max = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        c1, c2 = one_minus_pow(b1, t), one_minus_pow(b2, t)
        if variant == "paper":
            v_max = np.maximum(v_max, v)
            out.append(m / (np.sqrt(v_max + eps_root) + eps))
        elif variant == "max_raw":
            v_max = np.maximum(v_max, v)
            out.append((m / c1) / (np.sqrt(v_max / c2 + eps_root) + eps))
        elif variant == "max_corrected":
            v_max = np.maximum(v_max, v / c2)
            out.append((m / c1) / (np.sqrt(v_max + eps_root) + eps))
        else:
            raise ValueError(variant)
    return np.array(out)


def nadam(grads, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, momentum_decay=4e-3):
    """Dozat (2016), with the momentum schedule ``mu_t = b1 (1 - 0.5 * 0.96**(t psi))``
    (``momentum_decay=None``: ``mu_t = b1``). ``m`` is the EMA with constant ``b1``."""

    def mu(t):
        if momentum_decay is None:
            return Fraction(b1)
        return Fraction(b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay)))

    m = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    prod = Fraction(1)
    out = []
    for t, g in enumerate(grads, start=1):
        prod *= mu(t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        g_hat = g / float(1 - prod)
        m_hat = m / float(1 - prod * mu(t + 1))
        m_bar = float(1 - mu(t)) * g_hat + float(mu(t + 1)) * m_hat
        out.append(m_bar / (np.sqrt(v / one_minus_pow(b2, t) + eps_root) + eps))
    return np.array(out)


def radam_rho(b2: float, t: int) -> float:
    """``rho_t = rho_inf - 2 t b2**t / (1 - b2**t)``, exactly for the float ``b2``."""
    b = Fraction(b2)
    rho_inf = 2 / (1 - b) - 1
    return float(rho_inf - 2 * t * b**t / (1 - b**t))


def radam(
    grads,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    threshold=5.0,
    eps_before_bias_correction=False,
    nesterov=False,
):
    """Liu et al., Algorithm 2: momentum SGD while ``rho_t <= threshold``, then the
    rectified step. ``eps`` as ``sqrt(v_hat) + eps`` (optax) or, with
    ``eps_before_bias_correction``, ``sqrt(1 - b2**t) / (sqrt(v) + eps)`` (torch)."""
    b = Fraction(b2)
    rho_inf = float(2 / (1 - b) - 1)
    m = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        c1, c2 = one_minus_pow(b1, t), one_minus_pow(b2, t)
        if nesterov:
            m_hat = b1 * m / one_minus_pow(b1, t + 1) + (1 - b1) * g / c1
        else:
            m_hat = m / c1
        rho = radam_rho(b2, t)
        if rho > threshold:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            if eps_before_bias_correction:
                out.append(r * m_hat * math.sqrt(c2) / (np.sqrt(v) + eps))
            else:
                out.append(r * m_hat / (np.sqrt(v / c2) + eps))
        else:
            out.append(m_hat)
    return np.array(out)


def first_rectified_step(b2: float, threshold: float = 5.0, steps: int = 50) -> int:
    """The first ``t`` with ``rho_t > threshold`` (exact ``rho_t``)."""
    return next(t for t in range(1, steps + 1) if radam_rho(b2, t) > threshold)


def adamw_paper(params0, grads, alpha, eta, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """Loshchilov & Hutter, Algorithm 2 (AdamW) with a fixed gradient sequence:
    ``theta_t = theta_{t-1} - eta_t (alpha m_hat / (sqrt(v_hat) + eps) + lambda theta_{t-1})``.

    ``eta`` is the schedule multiplier, a function of ``t = 1, 2, ...``. Returns
    the ``(T + 1, n)`` parameter trajectory.
    """
    theta = np.array(params0, np.float64)
    directions = adam(grads, b1, b2, eps)
    trajectory = [theta]
    for t, d in enumerate(directions, start=1):
        theta = theta - eta(t) * (alpha * d + weight_decay * theta)
        trajectory.append(theta)
    return np.array(trajectory)
