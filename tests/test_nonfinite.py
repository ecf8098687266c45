"""Non-finite gradients propagate, for every registry entry.

A NaN (or an Inf) in one gradient element at step k gives a non-finite update
of that element at step k, as in optax and torch: nothing freezes a parameter
silently. The only exceptions are the entries that say why in their
``hides_nan`` / ``hides_inf`` field (the documented guards ``apply_if_finite``
and ``zero_nans``, ``set_to_zero``, ``clip`` for an Inf); for those the test
checks that they do hide it, so the flag stays honest.

One jitted step per entry serves every case: a few clean steps first (so the
moments are non-zero and guarded divisions are exercised), then the bad one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptx

from registry import REGISTRY, Entry

ENTRIES = [pytest.param(e, id=e.name) for e in REGISTRY]

# The bad gradient comes at step 3 (the fourth call): an emitting step for
# MultiSteps(every_k_schedule=2), whose other calls return zeros by design.
CLEAN_STEPS = 3
BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _params():
    # A matrix, a vector and a scalar: masked/freeze/partition entries treat vectors and
    # scalars differently, and matrix optimizers (muon, soap) take another path for "m".
    return {
        "m": jnp.array([[1.0, -0.5], [0.25, 2.0], [-1.0, 0.5]], jnp.float32),
        "w": jnp.array([1.0, -0.5, 0.25], jnp.float32),
        "s": jnp.asarray(1.5, jnp.float32),
    }


def _grads(k, bad):
    """Step k's gradients; ``bad`` goes into m[0, 0] and w[0]."""
    m = jnp.array([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]], jnp.float32) * (1 + k / 4)
    w = jnp.array([0.5, -1.0, 2.0], jnp.float32) * (1 + k / 4)
    return {
        "m": m.at[0, 0].set(bad),
        "w": w.at[0].set(bad),
        "s": jnp.asarray(0.3 - k / 10, jnp.float32),
    }


def _optimizer(entry: Entry) -> adaptx.GradientTransformation:
    tx = entry.make(0.1)
    if entry.kind == "direction":
        tx = adaptx.chain(tx, adaptx.scale(-0.1))
    return tx


def _bad_updates(entry: Entry) -> dict[str, tuple[float, float]]:
    """The updates of ``m[0, 0]`` and ``w[0]`` at the bad step, for each kind of bad value."""
    tx = _optimizer(entry)
    step = jax.jit(tx.update)
    out = {}
    for name, bad in BAD.items():
        params = _params()
        state = tx.init(params)
        for k in range(CLEAN_STEPS + 1):
            # The clean steps pass a finite value through the same argument.
            value = bad if k == CLEAN_STEPS else 0.5 * (1 + k / 4)
            updates, state = step(_grads(k, jnp.float32(value)), state, params)
            params = adaptx.apply_updates(params, updates)
        out[name] = (float(np.asarray(updates["m"])[0, 0]), float(np.asarray(updates["w"])[0]))
    return out


@pytest.mark.parametrize("entry", ENTRIES)
def test_non_finite_gradient_gives_non_finite_update(entry):
    got = _bad_updates(entry)
    for name, (u_matrix, u_vector) in got.items():
        hidden_because = entry.hides_nan or (entry.hides_inf if name != "nan" else "")
        for where, u in (("m[0, 0]", u_matrix), ("w[0]", u_vector)):
            if hidden_because:
                assert np.isfinite(u), (
                    f"{entry.name} is flagged as hiding {name} ({hidden_because}) "
                    f"but gave {u} at {where}: drop the flag"
                )
            else:
                assert not np.isfinite(u), (
                    f"a {name} gradient at {where} gave the finite update {u} with "
                    f"{entry.name}: non-finite gradients must show in the update "
                    "(as in optax and torch)"
                )


def test_a_nan_does_not_freeze_the_element_in_adam():
    # The reproduction: adam(0.1) froze element 0 at 0.9 for good.
    tx = adaptx.adam(0.1)
    params = jnp.ones(3)
    state = tx.init(params)
    for g in ([1.0, 1.0, 1.0], [float("nan"), 1.0, 1.0], [1.0, 1.0, 1.0]):
        updates, state = tx.update(jnp.array(g), state, params)
        params = adaptx.apply_updates(params, updates)
    assert np.isnan(np.asarray(params)[0])
    np.testing.assert_allclose(np.asarray(params)[1:], 0.7, rtol=1e-5)


def test_eps_zero_with_zero_gradients_still_gives_zero_steps():
    # The guard that stays: 0 / 0 for a coordinate whose gradients have been 0.
    for make in (adaptx.adam, adaptx.rmsprop, adaptx.adagrad):
        tx = make(0.1, eps=0.0)
        params = jnp.ones(2)
        state = tx.init(params)
        updates, state = tx.update(jnp.array([0.0, 1.0]), state, params)
        u = np.asarray(updates)
        assert u[0] == 0.0 and np.isfinite(u[1]) and u[1] < 0
