"""save_state / load_state: exact, atomic, and never half loaded; orbax interop.

Every registry entry's round trip and bit-identical resume are in
``test_robustness_registry.py``; this file covers the failure modes.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import adaptx

PARAMS = {
    "w": jnp.arange(6, dtype=jnp.float32).reshape(3, 2),
    "h": jnp.ones(4, jnp.bfloat16),
    "z": jnp.array([1 + 2j, -1j], jnp.complex64),
}


def _trained(tx, params=PARAMS, steps=3):
    state = tx.init(params)
    for k in range(steps):
        grads = jax.tree.map(lambda p: (jnp.ones_like(p) * (k + 1) / 3).astype(p.dtype), params)
        _, state = tx.update(grads, state, params)
    return state


def _equal_bits(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


@pytest.fixture
def saved(tmp_path):
    tx = adaptx.chain(adaptx.add_decayed_weights(1e-2), adaptx.adam(0.1, mu_dtype=jnp.float32))
    state = _trained(tx)
    path = adaptx.save_state(tmp_path / "opt.npz", state)
    return tx, state, path


def test_round_trip_keeps_values_dtypes_and_types(saved):
    tx, state, path = saved
    restored = adaptx.load_state(path, like=tx.init(PARAMS))
    _equal_bits(restored, state)
    assert type(restored[1][0]).__name__ == "ScaleByAdamState"
    assert (
        restored[1][0].mu["h"].dtype == jnp.float32 and restored[1][0].nu["h"].dtype == jnp.bfloat16
    )
    # The static tree signature comes back too: the restored state still checks updates.
    with pytest.raises(adaptx.TreeMismatchError):
        tx.update({**PARAMS, "w": PARAMS["w"].T}, restored, PARAMS)


def test_like_may_be_abstract(saved):
    tx, state, path = saved
    like = jax.eval_shape(tx.init, PARAMS)
    _equal_bits(adaptx.load_state(path, like=like), state)


def test_float64_state_round_trips_exactly(tmp_path, x64):
    params = {"w": jnp.array([1.0, 1 / 3], jnp.float64)}
    tx = adaptx.adam(0.1)
    state = _trained(tx, params)
    assert state[0].nu["w"].dtype == jnp.float64
    adaptx.save_state(tmp_path / "s", state)
    _equal_bits(adaptx.load_state(tmp_path / "s", like=tx.init(params)), state)


def test_loaded_leaves_take_the_sharding_of_like(tmp_path):
    mesh = jax.make_mesh((4,), ("d",), devices=jax.devices()[:4])
    sharding = NamedSharding(mesh, PartitionSpec("d"))
    params = {"w": jax.device_put(jnp.arange(8.0), sharding)}
    tx = adaptx.adam(0.1)
    state = _trained(tx, params)
    adaptx.save_state(tmp_path / "s", state)
    like = jax.tree.map(lambda x: jax.device_put(x, sharding) if x.ndim else x, tx.init(params))
    restored = adaptx.load_state(tmp_path / "s", like=like)
    assert restored[0].mu["w"].sharding == like[0].mu["w"].sharding == sharding
    _equal_bits(restored, state)


@pytest.mark.parametrize(
    "other, match",
    [
        (lambda: adaptx.sgd(0.1, 0.9).init(PARAMS), r"another structure than `like`"),
        (
            lambda: adaptx.chain(
                adaptx.add_decayed_weights(1e-2), adaptx.adam(0.1, mu_dtype=jnp.float32)
            ).init({**PARAMS, "w": jnp.zeros((2, 3))}),
            r"leaf \[1\]\[0\]\.mu\['w'\] of .* is float32 \(3, 2\), "
            r"but `like` has float32 \(2, 3\)",
        ),
        (
            lambda: adaptx.chain(adaptx.add_decayed_weights(1e-2), adaptx.adam(0.1)).init(PARAMS),
            r"leaf \[1\]\[0\]\.mu\['h'\] of .* is float32 \(4,\), but `like` has bfloat16 \(4,\)",
        ),
    ],
    ids=["other optimizer", "other shapes", "other dtypes"],
)
def test_mismatched_like_is_refused(saved, other, match):
    _, _, path = saved
    with pytest.raises(adaptx.CheckpointError, match=match):
        adaptx.load_state(path, like=other())


def open_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _rewrite_entry(path, name, data):
    """A copy of the archive at ``path`` with member ``name`` replaced by ``data``."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.95])
def test_truncated_file_is_refused(saved, keep):
    tx, _, path = saved
    data = open_bytes(path)
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    with pytest.raises(adaptx.CheckpointError, match=r"truncated|missing|corrupt"):
        adaptx.load_state(path, like=tx.init(PARAMS))


def test_corrupted_leaf_is_refused(saved):
    tx, _, path = saved
    with zipfile.ZipFile(path) as z:
        raw = bytearray(z.read("leaf_000002.npy"))
    raw[-1] ^= 0xFF  # one flipped byte in the data
    _rewrite_entry(path, "leaf_000002.npy", bytes(raw))
    with pytest.raises(adaptx.CheckpointError, match=r"corrupt \(checksum mismatch\)"):
        adaptx.load_state(path, like=tx.init(PARAMS))


def test_missing_leaf_is_refused(saved):
    tx, _, path = saved
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "leaf_000001.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    with pytest.raises(adaptx.CheckpointError, match=r"missing or truncated"):
        adaptx.load_state(path, like=tx.init(PARAMS))


def test_other_files_are_refused(tmp_path):
    like = adaptx.adam().init(PARAMS)
    with pytest.raises(adaptx.CheckpointError, match="no checkpoint at"):
        adaptx.load_state(tmp_path / "nothing.npz", like=like)
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(adaptx.CheckpointError, match="not an adaptx checkpoint"):
        adaptx.load_state(tmp_path / "plain.npz", like=like)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(adaptx.CheckpointError, match="truncated or not an adaptx checkpoint"):
        adaptx.load_state(tmp_path / "text.npz", like=like)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(saved):
    _, state, path = saved
    before = open_bytes(path)
    bad = (state, {"key": jax.random.key(0)})  # a typed PRNG key is not saveable as an array
    with pytest.raises(adaptx.CheckpointError, match=r"leaf \[1\]\['key'\] cannot be saved"):
        adaptx.save_state(path, bad)
    assert open_bytes(path) == before
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".adaptx-")] == []


def test_states_pickle():
    tx = adaptx.sgd(0.1, 0.9)
    state = tx.init(PARAMS)
    again = pickle.loads(pickle.dumps(state))
    assert jax.tree.structure(again) == jax.tree.structure(state)
    _equal_bits(tx.update(PARAMS, again, PARAMS), tx.update(PARAMS, state, PARAMS))
    with pytest.raises(adaptx.TreeMismatchError):
        tx.update({"w": PARAMS["w"]}, again)


def test_orbax_round_trips_a_state(tmp_path):
    # A standard pytree checkpointer handles adaptx states: NamedTuples of plain arrays.
    tx = adaptx.chain(adaptx.identity(), adaptx.adamw(0.1, mu_dtype=jnp.float32))
    params = {"w": PARAMS["w"], "h": PARAMS["h"]}
    state = _trained(tx, params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "orbax", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "orbax", tx.init(params))
    _equal_bits(restored, state)
    u1, _ = tx.update(params, state, params)
    u2, _ = tx.update(params, restored, params)
    _equal_bits(u1, u2)
