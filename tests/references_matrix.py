"""Plain NumPy float64 implementations of Muon and SOAP, written from the papers.

This module does not import adaptx (or jax): it is the independent side of
the comparisons in ``test_muon.py`` and ``test_soap.py``. Each function
takes a gradient sequence ``grads`` of shape ``(T, m, n)`` (element ``t - 1``
is the gradient of step ``t``) and returns the ``(T, m, n)`` directions the
matching ``scale_by_*`` transform should output (before the learning rate).

Muon follows Jordan's reference code (blog post, 2024; the momentum
``lerp`` and the quintic Newton-Schulz iteration); SOAP follows Vyas et
al.'s Algorithms 3 and 4 (ICLR 2025) with the reference code's conventions
for what the algorithm box leaves open: the first call only builds the
preconditioner, the bias-corrected step size ``sqrt(1 - b2**t) / (1 - b1**t)``,
the eigenvalue sort before each power-iteration step. Here ``M`` is kept in
the *original* basis and rotated at every step, as in Algorithm 3 (adaptx
keeps it rotated and re-projects it when the basis changes).
"""

from __future__ import annotations

import numpy as np

JORDAN = (3.4445, -4.7750, 2.0315)


def matrix_sequence(steps: int, m: int, n: int, seed: int = 0) -> np.ndarray:
    """Random gradients, exactly representable in float32 (so both sides see the same numbers)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(steps, m, n)) * np.linspace(0.5, 2.0, steps)[:, None, None]
    return g.astype(np.float32).astype(np.float64)


def newton_schulz(x: np.ndarray, coeffs=JORDAN, steps: int = 5, eps: float = 1e-8) -> np.ndarray:
    """Jordan's ``zeropower_via_newtonschulz5``: X / ||X||_F, then ``steps`` quintic steps."""
    rows = [coeffs] * steps if np.ndim(coeffs) == 1 else list(coeffs)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (np.linalg.norm(x) + eps)
    for a, b, c in rows:
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def muon(grads, beta=0.95, nesterov=True, bias_correction=False, coeffs=JORDAN, steps=5, eps=1e-8):
    """Muon's orthogonalised momentum for each step.

    ``mu = beta mu + (1 - beta) g``; Nesterov feeds ``beta mu + (1 - beta) g``.
    ``bias_correction=True`` divides those terms by ``1 - beta**(t+1)`` and
    ``1 - beta**t`` (optax's form).
    """
    mu = np.zeros(grads.shape[1:])
    out = []
    for t, g in enumerate(grads, start=1):
        mu = beta * mu + (1 - beta) * g
        c_t = 1 - beta**t if bias_correction else 1.0
        c_next = 1 - beta ** (t + 1) if bias_correction else 1.0
        m = beta * mu / c_next + (1 - beta) * g / c_t if nesterov else mu / c_t
        out.append(newton_schulz(m, coeffs, steps, eps))
    return np.stack(out)


def moonlight_scale(m: int, n: int, rms: float = 0.2) -> float:
    """Liu et al., Eq. 4: ``0.2 sqrt(max(A, B))`` for an ``A x B`` matrix."""
    return rms * np.sqrt(max(m, n))


def jordan_scale(fan_in: int, fan_out: int) -> float:
    """Jordan's ``max(1, rows / cols)**0.5`` for torch's ``(out, in)`` layout."""
    return max(1.0, fan_out / fan_in) ** 0.5


def _eigh_descending(a: np.ndarray) -> np.ndarray:
    _, vectors = np.linalg.eigh(a)
    return vectors[:, ::-1]


def soap(
    grads,
    b1=0.95,
    b2=0.95,
    eps=1e-8,
    shampoo_beta=None,
    frequency=10,
    rotate=(True, True),
    eigenbasis="qr",
):
    """SOAP's directions for a sequence of matrices (``rotate`` says which sides have a factor)."""
    s = b2 if shampoo_beta is None else shampoo_beta
    _, m, n = grads.shape
    sizes = (m, n)
    factors = [np.zeros((d, d)) for d in sizes]
    bases = [np.eye(d) for d in sizes]
    big_m = np.zeros((m, n))  # the first moment, in the original basis (Algorithm 3)
    big_v = np.zeros((m, n))  # the second moment, in the rotated basis
    out = []

    def rot(x, qs):  # Q_L^T x Q_R
        ql = qs[0] if rotate[0] else np.eye(m)
        qr = qs[1] if rotate[1] else np.eye(n)
        return ql.T @ x @ qr

    def back(x, qs):  # Q_L x Q_R^T
        ql = qs[0] if rotate[0] else np.eye(m)
        qr = qs[1] if rotate[1] else np.eye(n)
        return ql @ x @ qr.T

    for k, g in enumerate(grads, start=1):
        t = k - 1
        if k == 1:
            out.append(np.zeros_like(g))
        else:
            g_rot = rot(g, bases)
            big_m = b1 * big_m + (1 - b1) * g
            big_v = b2 * big_v + (1 - b2) * g_rot**2
            n_rot = rot(big_m, bases) / (np.sqrt(big_v) + eps)
            step = np.sqrt(1 - b2**t) / (1 - b1**t)
            out.append(step * back(n_rot, bases))
        grams = (g @ g.T, g.T @ g)
        factors = [s * f + (1 - s) * gram for f, gram in zip(factors, grams)]
        if k == 1:
            bases = [_eigh_descending(f) for f in factors]
        elif t % frequency == 0:
            new = []
            for side, (f, q) in enumerate(zip(factors, bases)):
                if not rotate[side]:
                    new.append(q)
                    continue
                estimate = np.diag(q.T @ f @ q)
                order = np.argsort(-estimate, kind="stable")
                big_v = np.take(big_v, order, axis=side)
                if eigenbasis == "qr":
                    new.append(np.linalg.qr(f @ q[:, order])[0])
                else:
                    new.append(_eigh_descending(f))
            bases = new
    return np.stack(out)


def adam_lagged(grads, b1=0.95, b2=0.95, eps=1e-8):
    """SOAP on an unrotated leaf: Adam whose first call is skipped, step size corrected."""
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    out = []
    for k, g in enumerate(grads, start=1):
        if k == 1:
            out.append(np.zeros_like(g))
            continue
        t = k - 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        out.append(np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps))
    return np.stack(out)
