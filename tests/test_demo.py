"""The main job, ``python -m adaptx demo``: runs, prints its table, writes its PNG."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adaptx.__main__ import main
from adaptx.demo import (
    OPTIMIZERS,
    lbfgs_optimum,
    load_digits_problem,
    objective,
    objective_f64,
)

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"^\| (?P<label>[^|]+?) \|\s*(?P<lr>[^|]*?)\s*\| (?P<final>[0-9.]+) \| (?P<gap>[^|]+?) \|"
)


def test_demo_prints_table_and_writes_png(tmp_path, capsys):
    out = tmp_path / "nested" / "demo.png"
    argv = ["demo", "--epochs", "2", "--optimizers", "adam", "sgd_nesterov"]
    argv += ["--learning-rates", "0.03", "0.3", "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    rows = {m["label"]: m for m in map(ROW.match, text.splitlines()) if m}
    assert set(rows) == {"Adam", "SGD Nesterov", "L-BFGS, float64 (optimum)"}, text
    optimum = float(rows.pop("L-BFGS, float64 (optimum)")["final"])
    for label, row in rows.items():
        # Two epochs get close to the optimum but cannot pass it.
        assert optimum < float(row["final"]) < 0.5, (label, text)
        assert float(row["gap"]) == pytest.approx(float(row["final"]) - optimum, rel=0.06)
        assert float(row["lr"]) in (0.03, 0.3)
    assert f"wrote {out}" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_unknown_optimizer(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--optimizers", "adamm"])
    assert exc.value.code == 2
    assert "invalid choice: 'adamm'" in capsys.readouterr().err


def test_demo_offers_every_optimizer_of_the_issue():
    assert list(OPTIMIZERS) == [
        "adam",
        "adagrad",
        "sgd_nesterov",
        "rmsprop",
        "adamax",
        "nadam",
        "amsgrad",
        "adamw",
        "radam",
    ]
    assert [s.label for s in OPTIMIZERS.values() if s.in_paper] == [
        "Adam",
        "AdaGrad",
        "SGD Nesterov",
    ]


def test_lbfgs_reaches_the_optimum_of_the_jax_objective(x64):
    """Two independent implementations: the hand-written float64 NumPy gradient
    that L-BFGS follows, and JAX's autodiff of the objective the optimizers see."""
    problem = load_digits_problem(l2=1e-3)
    opt = lbfgs_optimum(problem)
    x, y = jnp.asarray(problem.x, jnp.float64), jnp.asarray(problem.y)
    params = jax.tree.map(jnp.asarray, opt.params)
    value, grads = jax.value_and_grad(objective)(params, x, y, problem.l2)
    assert float(value) == pytest.approx(opt.value, rel=1e-12)
    grad_norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
    assert grad_norm < 1e-8
    # Away from the optimum the two gradients agree too.
    shifted = jax.tree.map(lambda p: p + 0.1, opt.params)
    ref_value, ref_grads = objective_f64(problem, shifted)
    value, grads = jax.value_and_grad(objective)(
        jax.tree.map(jnp.asarray, shifted), x, y, problem.l2
    )
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    for k in ("w", "b"):
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-10, atol=1e-14)
    assert ref_value > opt.value


def test_cli_entry_point_and_lazy_demo_dependencies():
    """``python -m adaptx --help`` works, and ``import adaptx`` needs only JAX."""
    code = (
        "import sys, adaptx; "
        "heavy = [m for m in ('sklearn', 'scipy', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "adaptx", "demo", "--help"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for option in ("--optimizers", "--epochs", "--seed", "--output"):
        assert option in out
