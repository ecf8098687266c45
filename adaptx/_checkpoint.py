"""Saving and loading optimizer states: exact, atomic, validated.

``save_state(path, state)`` writes one file: an ``.npz`` archive with the raw
bytes of every leaf and a JSON header holding the tree structure (with the
state's ``NamedTuple`` type names), each leaf's path, dtype, shape and
SHA-256, and a format version. It is written to a temporary file in the same
directory, flushed to disk and renamed into place, so a process killed at any
moment (``SIGKILL`` included) leaves under ``path`` either the previous
checkpoint or the new one, complete. The temporary file is named after the
checkpoint, the host and the writing process
(``.<name>.adaptx-<host>-<pid>-<random>.tmp``); one left by a killed process
is removed by the next ``save_state`` to the same path on the same host (on
POSIX systems, where a process id can be checked).

``load_state(path, like=...)`` reads it back into the structure of ``like``
(the state of a freshly initialised optimizer, or its
``jax.eval_shape``). Everything is checked before anything is returned: the
file is complete, the structure, every path, dtype and shape match ``like``,
and every leaf's checksum matches. Otherwise ``CheckpointError`` (a
``ValueError``) says what differs; a state is never half loaded. Values are
restored bit for bit (bfloat16, float16, complex and integer leaves
included), so training resumed from a checkpoint is bit-identical to
training that was never interrupted.

The states are plain pytrees, so standard checkpointers (orbax's
``PyTreeCheckpointer`` with the state as restore target, for example) work
too; these functions add nothing but a dependency-free, validated format.
Arrays are gathered to the host to be saved; on load a leaf of ``like`` that
is a ``jax.Array`` (or a ``jax.ShapeDtypeStruct`` with a sharding) gives its
sharding to the loaded leaf. Multi-host arrays that are not fully
addressable need a distributed checkpointer such as orbax.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adaptx._base import OptState

_FORMAT = "adaptx-state"
_VERSION = 1
_HEADER = "__adaptx_header__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked: truncated, corrupt, or mismatched."""


def _tmp_prefix(path: str) -> str:
    """The start of the temporary file names of saves to ``path`` from this host."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
    return f".{os.path.basename(path)}.adaptx-{host}-"


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: cannot tell
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def _remove_stale_temporaries(directory: str, prefix: str) -> None:
    """Removes temporary files of saves to the same path by dead processes of this host.

    A file whose writer is still alive (a concurrent save) is left alone, and
    so is one from another host (its process cannot be checked from here).
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass  # removed concurrently, or not ours to remove


def _sync_directory(directory: str) -> None:
    """Flushes the rename to disk where the platform allows (POSIX); best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _leaf_name(i: int) -> str:
    return f"leaf_{i:06d}"


def _describe(tree: Any) -> tuple[Any, list[str], list[Any]]:
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(p) for p, _ in path_leaves]
    return treedef, paths, [x for _, x in path_leaves]


def _dtype_name(x: Any) -> str:
    dtype = getattr(x, "dtype", None)
    return str(jax.dtypes.canonicalize_dtype(jnp.result_type(x) if dtype is None else dtype))


def save_state(path: str | os.PathLike, state: OptState) -> str:
    """Writes an optimizer state (any pytree of arrays) to ``path``, atomically.

    Args:
      path: the file to write (any name; ``.npz`` is customary). An existing
        file is replaced only once the new one is complete and on disk: if
        the process is killed during the save, ``path`` holds the old
        checkpoint or the new one, never a mix. A temporary file left by a
        killed save (``.<name>.adaptx-<host>-<pid>-*.tmp``) is removed by the
        next save to ``path``.
      state: the state, e.g. ``tx.init(params)`` or one returned by ``tx.update``.

    Returns:
      ``path`` as a string.

    Raises:
      CheckpointError: for a leaf that is not an array (a PRNG key, an object).

    Example:
      >>> import os, tempfile
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> tx = adaptx.adam(1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> _, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> path = os.path.join(tempfile.mkdtemp(), "opt.npz")
      >>> _ = adaptx.save_state(path, state)
      >>> restored = adaptx.load_state(path, like=tx.init(params))
      >>> restored[0].count, bool((restored[0].nu["w"] == state[0].nu["w"]).all())
      (Array(1, dtype=int32), True)
    """
    path = os.fspath(path)
    treedef, paths, leaves = _describe(state)
    arrays: dict[str, np.ndarray] = {}
    entries = []
    total = hashlib.sha256()
    for i, (p, x) in enumerate(zip(paths, leaves)):
        try:
            a = np.asarray(jax.device_get(x), order="C")
        except Exception as e:  # PRNG keys, objects
            raise CheckpointError(f"save_state: leaf {p} cannot be saved as an array: {e}") from e
        if a.dtype == object:
            raise CheckpointError(f"save_state: leaf {p} is not an array (got {type(x).__name__})")
        raw = a.reshape(-1).view(np.uint8)
        digest = hashlib.sha256(raw.tobytes()).hexdigest()
        total.update(digest.encode())
        arrays[_leaf_name(i)] = raw
        entries.append(
            {
                "path": p,
                "dtype": _dtype_name(a),
                "shape": list(a.shape),
                "nbytes": int(raw.size),
                "sha256": digest,
            }
        )
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "treedef": str(treedef),
        "leaves": entries,
        "sha256": total.hexdigest(),
    }
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _tmp_prefix(path)
    _remove_stale_temporaries(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_directory(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _read_header(archive: Any, path: str) -> dict:
    if _HEADER not in archive.files:
        raise CheckpointError(f"load_state: {path} is not an adaptx checkpoint (no header)")
    try:
        header = json.loads(archive[_HEADER].tobytes().decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"load_state: {path} has a corrupt header ({e})") from e
    if header.get("format") != _FORMAT:
        raise CheckpointError(f"load_state: {path} is not an adaptx checkpoint")
    if header.get("version") != _VERSION:
        raise CheckpointError(
            f"load_state: {path} has format version {header.get('version')!r}; this adaptx "
            f"reads version {_VERSION}"
        )
    return header


def _check_against(header: dict, like: Any, path: str) -> tuple[Any, list[Any]]:
    treedef, paths, leaves = _describe(like)
    saved = header["leaves"]
    if len(saved) != len(leaves) or [e["path"] for e in saved] != paths:
        want, got = set(paths), {e["path"] for e in saved}
        raise CheckpointError(
            f"load_state: {path} holds a state of another structure than `like` "
            f"({len(saved)} leaves saved, {len(leaves)} expected; missing from the file: "
            f"{sorted(want - got)[:5]}, not in `like`: {sorted(got - want)[:5]}).\n"
            f"  saved: {header['treedef']}\n  like:  {treedef}"
        )
    for e, x in zip(saved, leaves):
        want = (_dtype_name(x), list(jnp.shape(x)))
        if (e["dtype"], e["shape"]) != want:
            raise CheckpointError(
                f"load_state: leaf {e['path']} of {path} is {e['dtype']} {tuple(e['shape'])}, "
                f"but `like` has {want[0]} {tuple(want[1])}"
            )
    if header["treedef"] != str(treedef):
        raise CheckpointError(
            f"load_state: {path} holds a state whose node types differ from `like`'s "
            "(another optimizer, or one initialised for other parameters).\n"
            f"  saved: {header['treedef']}\n  like:  {treedef}"
        )
    return treedef, leaves


def _place(a: np.ndarray, like_leaf: Any) -> jax.Array:
    sharding = getattr(like_leaf, "sharding", None)
    if sharding is not None:
        return jax.device_put(a, sharding)
    return jnp.asarray(a)


def load_state(path: str | os.PathLike, like: OptState) -> OptState:
    """Reads a state written by ``save_state``, checked against ``like``.

    Args:
      path: the file ``save_state`` wrote.
      like: a state with the expected structure, dtypes and shapes: the
        optimizer's ``init(params)`` (or ``jax.eval_shape(tx.init, params)``).
        Its values are not used; its leaves' shardings are.

    Returns:
      The saved state, with ``like``'s tree structure (its ``NamedTuple`` types
      and static parts) and the saved values, bit for bit.

    Raises:
      CheckpointError: if the file is missing, truncated or corrupt (a leaf's
        checksum differs), or holds a state of another structure, paths,
        dtypes or shapes than ``like``. Nothing is returned in that case.

    Example:
      >>> import os, tempfile
      >>> import jax.numpy as jnp
      >>> import adaptx
      >>> path = os.path.join(tempfile.mkdtemp(), "opt.npz")
      >>> _ = adaptx.save_state(path, adaptx.sgd(0.1, 0.9).init({"w": jnp.ones(2)}))
      >>> adaptx.load_state(path, like=adaptx.adam(0.1).init({"w": jnp.ones(2)}))
      Traceback (most recent call last):
      ...
      adaptx._checkpoint.CheckpointError: load_state: ... holds a state of another structure ...
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError as e:
        raise CheckpointError(f"load_state: no checkpoint at {path}") from e
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(
            f"load_state: {path} is truncated or not an adaptx checkpoint ({e})"
        ) from e
    with archive:
        header = _read_header(archive, path)
        treedef, like_leaves = _check_against(header, like, path)
        arrays = []
        total = hashlib.sha256()
        for i, e in enumerate(header["leaves"]):
            try:
                raw = archive[_leaf_name(i)]
            except (KeyError, zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
                raise CheckpointError(
                    f"load_state: leaf {e['path']} of {path} is missing or truncated ({err})"
                ) from err
            digest = hashlib.sha256(raw.tobytes()).hexdigest()
            if raw.dtype != np.uint8 or raw.size != e["nbytes"] or digest != e["sha256"]:
                raise CheckpointError(
                    f"load_state: leaf {e['path']} of {path} is corrupt (checksum mismatch)"
                )
            total.update(digest.encode())
            dtype = jnp.dtype(e["dtype"])
            arrays.append(raw.view(dtype).reshape(e["shape"]))
        if total.hexdigest() != header["sha256"]:
            raise CheckpointError(f"load_state: {path} is corrupt (checksum mismatch)")
    return jax.tree.unflatten(treedef, [_place(a, x) for a, x in zip(arrays, like_leaves)])
