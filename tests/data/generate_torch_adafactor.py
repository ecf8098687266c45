"""Regenerates torch_adafactor.json: torch.optim.Adafactor trajectories (float64).

Run from the repository root with torch installed (the tests do not need torch):

    python tests/data/generate_torch_adafactor.py

Adafactor's step depends on the parameters (relative step size, weight decay),
so the whole trajectory is stored: the initial parameters, the gradient fed
at each step (fixed in advance, not computed from the parameters) and the
parameters after every step. Three leaves: a 4 x 6 matrix and a 2 x 3 x 5
tensor (factored by torch over their last two axes, which are also their two
largest), and a vector of 5 (unfactored).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

T = 12
SHAPES = {"w": (4, 6), "t": (2, 3, 5), "b": (5,)}
CASES = {
    "defaults": {},
    "lr_0.05_d_2_decay_0.5": {"lr": 0.05, "d": 2.0, "beta2_decay": -0.5},
    "weight_decay": {"lr": 0.02, "weight_decay": 0.1},
}


def problem():
    rng = np.random.default_rng(15)
    p0 = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) * (1 + t % 3) for k, s in SHAPES.items()} for t in range(T)]
    grads[4]["w"][1, :] = 0.0  # a zero row
    return p0, grads


def run(kwargs, p0, grads):
    import torch  # here, so that pytest's doctest collection can import this file without torch

    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p0.items()}
    opt = torch.optim.Adafactor(list(params.values()), foreach=False, **kwargs)
    out = []
    for g in grads:
        for k, p in params.items():
            p.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
        out.append({k: p.detach().numpy().tolist() for k, p in params.items()})
    return out


def main() -> None:
    import torch

    p0, grads = problem()
    data = {
        "generator": "tests/data/generate_torch_adafactor.py",
        "torch_version": torch.__version__,
        "params0": {k: v.tolist() for k, v in p0.items()},
        "grads": [{k: v.tolist() for k, v in g.items()} for g in grads],
        "cases": {name: {"kwargs": kw, "params": run(kw, p0, grads)} for name, kw in CASES.items()},
    }
    path = pathlib.Path(__file__).with_name("torch_adafactor.json")
    path.write_text(json.dumps(data) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
