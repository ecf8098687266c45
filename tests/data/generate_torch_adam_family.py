"""Regenerates ``torch_adam_family.json``: torch.optim's Adam family on a fixed sequence.

Run from the repository root with any Python that has torch and NumPy::

    python tests/data/generate_torch_adam_family.py

It runs each torch optimizer in float64 (``torch.set_default_dtype``, so
NAdam's ``mu_product`` is float64 too) on the gradient sequence of
``tests/references_adam.py`` and stores the parameter trajectories.
``test_adam_family.py`` replays them against adaptx under the mappings
documented in adaptx's docstrings; torch is not needed to run the tests.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import references_adam  # noqa: E402

PARAMS0 = [0.5, -1.0, 2.0, 0.0, 1.5, -0.25]

# name -> (torch optimizer, keyword arguments, which gradients).
CASES = {
    "Adam": ("Adam", {"lr": 1e-2}, "all"),
    "Adam_b2_0.99_eps_1e-6": ("Adam", {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-6}, "all"),
    "Adam_L2": ("Adam", {"lr": 1e-2, "weight_decay": 0.1}, "all"),
    "AdamW": ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}, "all"),
    "Adam_amsgrad": ("Adam", {"lr": 1e-2, "amsgrad": True}, "all"),
    "Adamax": ("Adamax", {"lr": 2e-2}, "all"),
    "Adamax_eps_0": ("Adamax", {"lr": 2e-2, "eps": 0.0}, "nonzero"),
    "NAdam": ("NAdam", {"lr": 2e-2}, "all"),
    "NAdam_psi_0.05": ("NAdam", {"lr": 2e-2, "momentum_decay": 0.05}, "all"),
    "RAdam": ("RAdam", {"lr": 1e-2}, "all"),
    "RAdam_b2_0.9999": ("RAdam", {"lr": 1e-2, "betas": (0.9, 0.9999)}, "all"),
    "RAdam_b2_0.99999": ("RAdam", {"lr": 1e-2, "betas": (0.9, 0.99999)}, "all"),
}


def gradients(which: str) -> np.ndarray:
    g = references_adam.gradient_sequence()
    return g[:, 1:] if which == "nonzero" else g


def run(name: str, kwargs: dict, grads: np.ndarray, params0: list[float]) -> list[list[float]]:
    import torch

    p = torch.tensor(params0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, name)([p], **kwargs)
    trajectory = [p.detach().clone().tolist()]
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        trajectory.append(p.detach().clone().tolist())
    return trajectory


def main() -> None:
    import torch  # here, so that collecting this file (doctests) needs no torch

    torch.set_default_dtype(torch.float64)
    out = {
        "torch_version": torch.__version__,
        "generated_by": "tests/data/generate_torch_adam_family.py",
        "params0": PARAMS0,
        "cases": {},
    }
    for case, (name, kwargs, which) in CASES.items():
        grads = gradients(which)
        params0 = PARAMS0[1:] if which == "nonzero" else PARAMS0
        out["cases"][case] = {
            "optimizer": name,
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "grads": which,
            "params": run(name, kwargs, grads, params0),
        }
    path = HERE / "torch_adam_family.json"
    text = json.dumps(out, indent=1)
    # One line per list of numbers (a parameter vector), for a readable file.
    text = re.sub(
        r"\[\s+([^\[\]]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )
    path.write_text(text + "\n")
    print(f"wrote {path} ({len(CASES)} cases, torch {torch.__version__})")


if __name__ == "__main__":
    main()
