"""Plain NumPy float64 implementations of the SGD family, written from the papers.

Independent of adaptx: nothing here imports it. Every function takes a gradient
sequence ``grads`` of shape ``(T, n)`` and returns the ``(T, n)`` sequence of
updates ``u_t`` to *add* to the parameters. ``lrs`` is the sequence of the T
learning rates (a schedule, evaluated); ``lrs=None`` means the transform alone:
no learning rate and no sign flip (the descent direction). Complex gradients
are allowed: second moments accumulate ``|g|^2`` (real), first moments and
momentum buffers are complex.
"""

from __future__ import annotations

import numpy as np


def _wide(grads):
    """float64, or complex128 for complex gradients (second moments use |g|^2, real)."""
    grads = np.asarray(grads)
    return grads.astype(np.complex128 if np.iscomplexobj(grads) else np.float64)


def _lr(lrs, t):
    return None if lrs is None else float(lrs[t])


def _descend(direction, lr):
    return direction if lr is None else -lr * direction


def sgd(grads, lrs, momentum=None, nesterov=False):
    """Robbins-Monro SGD; heavy ball b_t = mu b_{t-1} + g_t; Nesterov g_t + mu b_t."""
    grads = _wide(grads)
    b = np.zeros(grads.shape[1:], grads.dtype)
    out = []
    for t, g in enumerate(grads):
        if momentum is None:
            d = g
        else:
            b = momentum * b + g
            d = g + momentum * b if nesterov else b
        out.append(_descend(d, _lr(lrs, t)))
    return np.stack(out)


def ema(grads, decay, debias=True):
    """m_t = beta m_{t-1} + (1 - beta) g_t, divided by 1 - beta^t if debias."""
    grads = _wide(grads)
    m = np.zeros(grads.shape[1:], grads.dtype)
    out = []
    for t, g in enumerate(grads, start=1):
        m = decay * m + (1.0 - decay) * g
        out.append(m / (1.0 - decay**t) if debias else m.copy())
    return np.stack(out)


def adagrad(grads, lrs, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False):
    """Duchi, Hazan, Singer (2011): G_t = G_{t-1} + g_t^2, x -= lr g_t / (delta + sqrt(G_t))."""
    grads = _wide(grads)
    G = np.full(grads.shape[1:], float(initial_accumulator_value))
    out = []
    for t, g in enumerate(grads):
        G = G + np.abs(g) ** 2
        den = np.sqrt(G + eps) if eps_in_sqrt else np.sqrt(G) + eps
        d = np.divide(g, den, out=np.zeros_like(g), where=den > 0)
        out.append(_descend(d, _lr(lrs, t)))
    return np.stack(out)


def rmsprop(
    grads,
    lrs,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt=True,
    centered=False,
    bias_correction=False,
    momentum=None,
    nesterov=False,
    lr_before_momentum=True,
):
    """Hinton's RMSProp: v_t = rho v_{t-1} + (1 - rho) g_t^2, step g_t / RMS.

    Centred (Graves 2013): divide by sqrt(v_t - m_t^2) instead. Momentum either
    on learning-rate-scaled steps (TensorFlow/optax, ``lr_before_momentum``)
    or on unscaled ones with the learning rate after the buffer (torch).
    """
    grads = _wide(grads)
    v = np.full(grads.shape[1:], float(initial_scale))
    m = np.zeros(grads.shape[1:], grads.dtype)
    b = np.zeros(grads.shape[1:], grads.dtype)
    out = []
    for t, g in enumerate(grads, start=1):
        v = decay * v + (1.0 - decay) * np.abs(g) ** 2
        m = decay * m + (1.0 - decay) * g
        c = 1.0 - decay**t if bias_correction else 1.0
        s = v / c - np.abs(m / c) ** 2 if centered else v / c
        den = np.sqrt(s + eps) if eps_in_sqrt else np.sqrt(s) + eps
        d = g / den
        lr = _lr(lrs, t - 1)
        if momentum is None:
            out.append(_descend(d, lr))
            continue
        if lr_before_momentum:  # the buffer sums steps already scaled by -lr
            x = _descend(d, lr)
            b = momentum * b + x
            out.append(x + momentum * b if nesterov else b.copy())
        else:  # the buffer sums directions; -lr is applied to its output
            b = momentum * b + d
            out.append(_descend(d + momentum * b if nesterov else b, lr))
    return np.stack(out)


def adadelta(grads, lrs, rho=0.9, eps=1e-6):
    """Zeiler (2012), Algorithm 1; E[dx^2] accumulates dx before any learning rate."""
    grads = _wide(grads)
    eg = np.zeros(grads.shape[1:])
    ex = np.zeros(grads.shape[1:])
    out = []
    for t, g in enumerate(grads):
        eg = rho * eg + (1.0 - rho) * np.abs(g) ** 2
        dx = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g
        ex = rho * ex + (1.0 - rho) * np.abs(dx) ** 2
        out.append(_descend(dx, _lr(lrs, t)))
    return np.stack(out)
