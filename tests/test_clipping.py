"""clip, clip_by_global_norm and clip_by_block_rms against float64 NumPy and optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec

import adaptx


def _updates():
    return {
        "a": jnp.array([[3.0, -4.0], [0.5, 12.0]], jnp.float32),
        "b": jnp.array([-0.25, 1.5, 0.0], jnp.float32),
    }


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _apply(tx, updates, jit=jax.jit):
    return jit(tx.update)(updates, tx.init(updates))[0]


def test_clip_exact(jit):
    got = _apply(adaptx.clip(1.0), _updates(), jit)
    want = jax.tree.map(lambda x: np.clip(x, -1.0, 1.0), _np(_updates()))
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_clip_complex_keeps_phase():
    u = jnp.array([3.0 + 4.0j, 0.3 - 0.4j, -2.0j], jnp.complex64)
    got = _apply(adaptx.clip(1.0), u)
    np.testing.assert_allclose(got, [0.6 + 0.8j, 0.3 - 0.4j, -1.0j], rtol=1e-6)


def test_clip_by_global_norm_exact(jit):
    u = _np(_updates())
    norm = np.sqrt(sum(np.sum(x**2) for x in jax.tree.leaves(u)))
    got = _apply(adaptx.clip_by_global_norm(2.0), _updates(), jit)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w * 2.0 / norm, rtol=1e-6), got, u)
    np.testing.assert_allclose(adaptx.global_norm(got), 2.0, rtol=1e-6)
    # Below the threshold the updates come back bit for bit.
    same = _apply(adaptx.clip_by_global_norm(100.0), _updates(), jit)
    jax.tree.map(np.testing.assert_array_equal, same, _updates())


def test_clip_by_global_norm_low_precision_does_not_overflow():
    u = {"x": jnp.full((4,), 300.0, jnp.float16)}  # 300**2 overflows float16
    got = _apply(adaptx.clip_by_global_norm(60.0), u)
    assert got["x"].dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(got["x"], np.float32), 30.0, rtol=1e-3)


def test_clip_by_block_rms_exact(jit):
    u = _np(_updates())
    got = _apply(adaptx.clip_by_block_rms(1.0), _updates(), jit)

    def want(x):
        rms = np.sqrt(np.mean(x**2))
        return x * min(1.0, 1.0 / rms)

    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, want(w), rtol=1e-6), got, u)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (adaptx.clip(0.7), optax.clip(0.7)),
        (adaptx.clip_by_global_norm(2.0), optax.clip_by_global_norm(2.0)),
        (adaptx.clip_by_block_rms(0.5), optax.clip_by_block_rms(0.5)),
    ],
    ids=["clip", "clip_by_global_norm", "clip_by_block_rms"],
)
def test_matches_optax(ours, theirs):
    with jax.numpy_dtype_promotion("standard"):
        ref = theirs.update(_updates(), theirs.init(_updates()))[0]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), _apply(ours, _updates()), ref
    )


def test_traced_thresholds_equal_python_floats():
    for make, value in [
        (adaptx.clip, 0.7),
        (adaptx.clip_by_global_norm, 2.0),
        (adaptx.clip_by_block_rms, 0.5),
    ]:
        want = _apply(make(value), _updates())
        got = jax.jit(lambda v, u: make(v).update(u, make(v).init(u))[0])(
            jnp.float32(value), _updates()
        )
        jax.tree.map(np.testing.assert_array_equal, got, want)


def test_validation():
    with pytest.raises(ValueError, match="max_delta must be in"):
        adaptx.clip(-1.0)
    with pytest.raises(ValueError, match="max_norm must be in"):
        adaptx.clip_by_global_norm(0.0)
    with pytest.raises(ValueError, match="threshold must be in"):
        adaptx.clip_by_block_rms(float("nan"))


def test_clip_by_global_norm_axis_name_clips_by_the_global_norm_in_shard_map():
    # Each of 8 devices holds a slice of the updates (model parallelism): with
    # axis_name the norm is summed over the devices, so the result equals
    # clipping the whole, unsharded tree.
    mesh = Mesh(np.array(jax.devices()[:8]), ("model",))
    full = {"w": jnp.arange(32, dtype=jnp.float32).reshape(8, 4) / 10 - 1.0}
    want = _apply(adaptx.clip_by_global_norm(1.5), full)
    tx = adaptx.clip_by_global_norm(1.5, axis_name="model")
    local = adaptx.clip_by_global_norm(1.5)

    def step(u, clipper):
        return clipper.update(u, clipper.init(u))[0]

    spec = {"w": PartitionSpec("model")}
    sharded = jax.jit(
        jax.shard_map(lambda u: step(u, tx), mesh=mesh, in_specs=(spec,), out_specs=spec)
    )(full)
    np.testing.assert_allclose(sharded["w"], want["w"], rtol=1e-6)
    # Without axis_name every shard would clip by its own, smaller norm.
    per_shard = jax.jit(
        jax.shard_map(lambda u: step(u, local), mesh=mesh, in_specs=(spec,), out_specs=spec)
    )(full)
    assert not np.allclose(per_shard["w"], want["w"], rtol=1e-3)


def test_clip_by_global_norm_float64(x64):
    u = {"a": jnp.array([3.0, 4.0], jnp.float64), "b": jnp.array([12.0], jnp.float32)}
    got = _apply(adaptx.clip_by_global_norm(1.0), u)
    assert got["a"].dtype == jnp.float64 and got["b"].dtype == jnp.float32
    np.testing.assert_allclose(got["a"], np.array([3.0, 4.0]) / 13.0, rtol=1e-15)
