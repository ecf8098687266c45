"""reduce_on_plateau: optax.contrib's numbers and state, torch's mapping, checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import adaptx


def _losses(n=80, seed=0):
    """Falls, then plateaus with noise, then falls again, then flat."""
    rng = np.random.default_rng(seed)
    base = np.concatenate(
        [np.linspace(5, 2, 20), np.full(30, 2.0), np.linspace(2, 1, 10), np.ones(20)]
    )
    return (base[:n] + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _run(tx, losses, jit=jax.jit):
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    state = tx.init(params)
    step = jit(lambda u, s, v: tx.update(u, s, params, value=v))
    scales, states = [], []
    for v in losses:
        u, state = step(params, state, jnp.float32(v))
        scales.append(float(u["b"][0]))
        states.append(state)
    return np.array(scales), states


def scale_reference(losses, factor, patience, rtol, atol, cooldown, acc, min_scale):
    """The rule written out in plain Python (windows of ``acc`` values)."""
    scale, best, plateau, cool, out, window = 1.0, np.inf, 0, 0, [], []
    for v in losses:
        window.append(float(v))
        if len(window) == acc:
            a = sum(window) / acc
            window = []
            improved = a < (1 - rtol) * best - atol
            best = a if improved else best
            plateau = 0 if improved else plateau + 1
            if cool > 0:
                cool, plateau = cool - 1, 0
            elif plateau == patience:
                scale, plateau, cool = max(scale * factor, min_scale), 0, cooldown
        out.append(scale)
    return np.array(out)


SETTINGS = {
    "defaults": {},
    "patience_3_cooldown_2": dict(factor=0.5, patience=3, cooldown=2),
    "accumulated_tolerant": dict(factor=0.3, patience=2, accumulation_size=4, rtol=1e-2, atol=0.01),
    "min_scale": dict(factor=0.1, patience=2, min_scale=0.05),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_matches_optax_contrib_and_the_rule(name, jit):
    kw = SETTINGS[name]
    losses = _losses()
    ours, states = _run(adaptx.reduce_on_plateau(**kw), losses, jit)
    with jax.numpy_dtype_promotion("standard"):
        theirs, their_states = _run(optax.contrib.reduce_on_plateau(**kw), losses)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    full = {
        "factor": 0.1,
        "patience": 10,
        "rtol": 1e-4,
        "atol": 0.0,
        "cooldown": 0,
        "accumulation_size": 1,
        "min_scale": 0.0,
        **kw,
    }
    ref = scale_reference(
        losses,
        full["factor"],
        full["patience"],
        full["rtol"],
        full["atol"],
        full["cooldown"],
        full["accumulation_size"],
        full["min_scale"],
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert ours[-1] < 1.0  # the plateaus did reduce it
    paths = lambda s: [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(s)[0]
    ]
    assert paths(states[-1]) == paths(their_states[-1])
    for a, b in zip(jax.tree.leaves(states[-1]), jax.tree.leaves(their_states[-1])):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_state_survives_a_checkpoint_mid_plateau(tmp_path):
    tx = adaptx.chain(adaptx.sgd(0.1), adaptx.reduce_on_plateau(factor=0.5, patience=3))
    params = {"w": jnp.ones(3)}
    losses = _losses(60)
    state = tx.init(params)
    straight, saved = [], False
    for i, v in enumerate(losses):
        # In the flat stretch, with a plateau count running and the scale already reduced.
        if not saved and i > 25 and int(state[1].plateau_count) > 0:
            assert float(state[1].scale) < 1.0
            path = adaptx.save_state(tmp_path / "opt.npz", state)
            state, saved = adaptx.load_state(path, like=tx.init(params)), True
        u, state = tx.update({"w": jnp.ones(3)}, state, params, value=v)
        straight.append(float(u["w"][0]))
    state2 = tx.init(params)
    for v in losses:
        u, state2 = tx.update({"w": jnp.ones(3)}, state2, params, value=v)
    assert saved and float(u["w"][0]) == straight[-1]
    assert float(state2[1].scale) < 1.0


def test_needs_the_value_and_validates():
    tx = adaptx.reduce_on_plateau()
    with pytest.raises(TypeError, match="needs the monitored value"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    with pytest.raises(ValueError, match="value must be a scalar"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)), value=jnp.ones(2))
    for kw, match in [
        ({"factor": 1.5}, r"factor must be in \[0.0, 1.0\], got 1.5"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"cooldown": -1}, "cooldown must be an integer >= 0"),
        ({"accumulation_size": 0}, "accumulation_size must be an integer >= 1"),
        ({"rtol": 1.0}, r"rtol must be in \[0.0, 1.0\)"),
        ({"atol": -1.0}, "atol must be in"),
        ({"min_scale": 2.0}, "min_scale must be in"),
    ]:
        with pytest.raises(ValueError, match=match):
            adaptx.reduce_on_plateau(**kw)


def test_nan_loss_is_never_an_improvement():
    tx = adaptx.reduce_on_plateau(factor=0.5, patience=2)
    state = tx.init(jnp.ones(1))
    for v in [1.0, float("nan"), float("nan")]:
        _, state = tx.update(jnp.ones(1), state, value=v)
    assert float(state.best_value) == 1.0 and float(state.scale) == 0.5
