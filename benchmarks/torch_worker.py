"""torch.optim side of the benchmark, run in its own interpreter (torch is optional).

Protocol: one JSON command per line on stdin, one JSON reply per line on stdout.

- ``{"cmd": "setup", "shapes": [[...], ...], "opt": "adam", "impl": "fused", "threads": 2,
  "device": "cpu"}`` builds params, grads and the optimizer (on ``device``, ``cuda`` too);
  replies ``{"ok": true, "bytes": ...}``.
- ``{"cmd": "step", "n": 1}`` times ``n`` optimizer steps; replies ``{"times": [...]}``.
- ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import json
import sys
import time

import torch

state: dict = {}


def setup(shapes, opt, impl, threads, device="cpu"):
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    params = [
        (torch.randn(*s, generator=gen) if s else torch.randn((), generator=gen)).to(device)
        for s in shapes
    ]
    for p in params:
        p.requires_grad_(True)
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    kw = {"foreach": True} if impl == "foreach" else {"fused": True}
    if opt == "adam":
        o = torch.optim.Adam(params, lr=1e-3, **kw)
    elif opt == "adamw_clip":
        o = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, **kw)
    elif opt == "sgd_momentum":
        o = torch.optim.SGD(params, lr=1e-2, momentum=0.9, **kw)
    else:
        raise ValueError(opt)
    clip = opt == "adamw_clip"

    @torch.no_grad()
    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        o.step()
        sync()

    step()  # creates the state
    state.update(step=step, params=params, opt=o)
    nbytes = sum(p.numel() * p.element_size() * 2 for p in params)  # params and grads
    for s in o.state.values():
        nbytes += sum(v.numel() * v.element_size() for v in s.values() if torch.is_tensor(v))
    return {"ok": True, "bytes": nbytes}


def main():
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "setup":
            state.clear()
            t0 = time.perf_counter()
            args = (cmd["shapes"], cmd["opt"], cmd["impl"], cmd.get("threads", 2))
            reply = setup(*args, cmd.get("device", "cpu"))
            reply["setup_s"] = time.perf_counter() - t0
        elif cmd["cmd"] == "step":
            times = []
            for _ in range(cmd.get("n", 1)):
                t0 = time.perf_counter()
                state["step"]()
                times.append(time.perf_counter() - t0)
            reply = {"times": times}
        elif cmd["cmd"] == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd['cmd']}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
