"""Regenerates torch_sgd_family.json: torch.optim reference updates for the SGD family.

Run from the repository root with torch installed (the tests do not need torch):

    python tests/data/generate_torch_sgd_family.py

Everything runs in float64. The optimizers used here do not look at the
parameter values (no weight decay), so before each step the parameter is set
to 0 and the update is read back exactly as the parameter after ``step()``.
A case with ``lrs`` sets the group's learning rate to ``lrs[t]`` before step
``t`` (t from 0), which is what an adaptx schedule evaluated at ``count = t``
gives.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np

T = 25


def gradients() -> np.ndarray:
    """T steps of 6 coordinates: always 0, a 100x spike, shrinking, alternating, random."""
    rng = np.random.default_rng(20240607)
    t = np.arange(T, dtype=np.float64)
    g = np.zeros((T, 6))
    g[:, 1] = 0.8 * np.sin(0.7 * t + 0.3)
    g[9, 1] *= 100.0  # the spike
    g[:, 2] = 3.0 * 0.6**t  # shrinking to ~1e-5
    g[:, 3] = np.where(t % 2 == 0, 1.0, -0.5)
    g[:, 4:] = rng.standard_normal((T, 2))
    return g


def schedule(base: float) -> list[float]:
    """A decaying learning rate with a drop at step 12."""
    return [base * 0.95**t * (0.2 if t >= 12 else 1.0) for t in range(T)]


CASES = {
    "sgd": ("SGD", {"lr": 0.1}, None),
    "sgd_momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}, None),
    "sgd_nesterov": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, None),
    "sgd_momentum_schedule": ("SGD", {"lr": 0.1, "momentum": 0.9}, schedule(0.1)),
    "adagrad": ("Adagrad", {"lr": 0.1}, None),
    "adagrad_initial_accumulator": (
        "Adagrad",
        {"lr": 0.1, "initial_accumulator_value": 0.1, "eps": 1e-7},
        None,
    ),
    "adagrad_lr_decay": ("Adagrad", {"lr": 0.1, "lr_decay": 0.05}, None),
    "rmsprop": ("RMSprop", {"lr": 0.01}, None),
    "rmsprop_centered": ("RMSprop", {"lr": 0.01, "centered": True}, None),
    "rmsprop_momentum": ("RMSprop", {"lr": 0.01, "momentum": 0.9}, None),
    "rmsprop_momentum_schedule": ("RMSprop", {"lr": 0.01, "momentum": 0.9}, schedule(0.01)),
    "rmsprop_centered_momentum_schedule": (
        "RMSprop",
        {"lr": 0.01, "momentum": 0.5, "centered": True, "alpha": 0.9, "eps": 1e-6},
        schedule(0.01),
    ),
    "adadelta": ("Adadelta", {}, None),
    "adadelta_schedule": ("Adadelta", {"lr": 0.5, "rho": 0.95, "eps": 1e-5}, schedule(0.5)),
}


def run(name: str, kwargs: dict, lrs: list[float] | None, grads: np.ndarray) -> np.ndarray:
    import torch  # here, so that pytest's doctest collection can import this file without torch

    p = torch.zeros(grads.shape[1], dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, name)([p], foreach=False, **kwargs)
    out = []
    for t, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        with torch.no_grad():
            p.zero_()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return np.stack(out)


def main() -> None:
    import torch

    grads = gradients()
    data = {
        "generator": "tests/data/generate_torch_sgd_family.py",
        "torch_version": torch.__version__,
        "grads": grads.tolist(),
        "cases": {},
    }
    for case, (name, kwargs, lrs) in CASES.items():
        updates = run(name, kwargs, lrs, grads)
        data["cases"][case] = {
            "optimizer": f"torch.optim.{name}",
            "kwargs": kwargs,
            "lrs": lrs,
            "updates": updates.tolist(),
        }
    path = pathlib.Path(__file__).with_name("torch_sgd_family.json")
    text = json.dumps(data, indent=1)
    # One line per innermost list (a step's numbers), for readable diffs.
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )
    path.write_text(text + "\n")
    print(f"wrote {path} ({len(CASES)} cases, {len(grads)} steps)")


if __name__ == "__main__":
    main()
