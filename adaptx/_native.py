"""adaptx's native CPU kernels: loading, XLA FFI registration and thin wrappers.

The kernels (``csrc/kernels.c``) are plain C against XLA's FFI C API. They are
built when the package is installed (``setup.py``), or, when that build is
missing (a source checkout on ``PYTHONPATH``), compiled once on first use
with the system C compiler into a per-user cache. Without a C compiler, with
``ADAPTX_NATIVE=0`` in the environment, or on a non-CPU backend, nothing here
is used and adaptx runs its pure-JAX code, which gives the same numbers.

This module also keeps the table that lets ``apply_updates`` recognise
updates that a fused optimizer has just produced, so that ``params +
updates`` becomes one in-place pass over the parameters (see
``fused_apply``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_SOURCES = ("kernels.c", "xla_ffi_c_api.h")
# Exact IEEE arithmetic: no contraction the source does not spell out, no
# errno on sqrt and no trapping (so sqrt and selects vectorise; neither changes
# a value), and only the kernels' entry points exported.
CFLAGS = (
    "-O3",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fvisibility=hidden",
)
TARGETS = (
    "adaptx_adam_moments",
    "adaptx_adam_out",
    "adaptx_adam_step",
    "adaptx_momentum_buffer",
    "adaptx_momentum_out",
    "adaptx_momentum_step",
)

# Kernel flags (must match csrc/kernels.c).
F_APPLY = 1
F_EXACT_JIT = 2
F_DECAY = 4
F_NESTEROV = 8

_lock = threading.Lock()
_state: dict[str, Any] = {"tried": False, "lib": None, "error": None}


def _source_digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        with open(os.path.join(_HERE, "csrc", name), "rb") as f:
            h.update(f.read())
    h.update(" ".join(CFLAGS).encode())
    h.update(sys.platform.encode())
    return h.hexdigest()[:16]


def _installed_library() -> str | None:
    """The library ``setup.py`` built next to this file, if any."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(_HERE, "_kernels" + suffix)
        if os.path.exists(path):
            return path
    return None


def _cache_dir() -> str:
    base = os.environ.get("ADAPTX_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "adaptx")


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if cc:
            exe = shutil.which(cc.split()[0])
            if exe:
                return exe
    return None


def build(dest: str) -> str:
    """Compiles the kernels into the shared library ``dest`` with the system C compiler.

    Args:
      dest: path of the library to write (written atomically).

    Returns:
      ``dest``.

    Raises:
      RuntimeError: no C compiler, or the compilation failed.
    """
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(dest))
    os.close(fd)
    cmd = [cc, *CFLAGS, "-shared", "-o", tmp, os.path.join(_HERE, "csrc", "kernels.c"), "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _find_or_build() -> str:
    path = _installed_library()
    if path is not None:
        return path
    path = os.path.join(_cache_dir(), f"adaptx_kernels_{_source_digest()}.so")
    if os.path.exists(path):
        return path
    for stale in glob.glob(os.path.join(_cache_dir(), "adaptx_kernels_*.so")):
        try:
            os.remove(stale)
        except OSError:
            pass
    return build(path)


def load() -> ctypes.CDLL | None:
    """Loads (building if needed) and registers the kernels; ``None`` if unavailable.

    The reason a load failed is kept in ``load_error()``.
    """
    with _lock:
        if _state["tried"]:
            return _state["lib"]
        _state["tried"] = True
        if os.environ.get("ADAPTX_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
            _state["error"] = "disabled by ADAPTX_NATIVE"
            return None
        try:
            lib = ctypes.CDLL(_find_or_build())
            for name in TARGETS:
                jax.ffi.register_ffi_target(
                    name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu"
                )
        except Exception as e:  # no compiler, a failed build, an FFI mismatch
            _state["error"] = f"{type(e).__name__}: {e}"
            return None
        _state["lib"] = lib
        return lib


def load_error() -> str | None:
    """Why the native kernels are not available (``None`` if they are or were not tried)."""
    return _state["error"]


def available() -> bool:
    """Whether the native CPU kernels can be used in this process."""
    return load() is not None


# --- calls ------------------------------------------------------------------------


def _sds(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def _call(name, results, operands, aliases, flags, offset=0) -> list[jax.Array]:
    call = jax.ffi.ffi_call(
        name,
        [_sds(r) for r in results],
        input_output_aliases=aliases,
        vmap_method="sequential",
    )
    return list(call(*operands, flags=np.int32(flags), offset=np.int64(offset)))


# XLA's compile time grows quadratically with the number of in-place (aliased)
# results of one operation, so the in-place passes over the params run as
# several calls of at most this many leaves each.
APPLY_CHUNK = 128


def _chunked(name, scalars, flats, groups, flags, *, flats_out):
    """In-place passes over the params (the last group), ``APPLY_CHUNK`` leaves per call.

    ``flats`` are the flat state buffers; with ``flats_out`` they are updated
    in place too (threaded through the calls) and returned first.
    """
    params = groups[-1]
    flats = list(flats)
    new_params: list[jax.Array] = []
    offset = 0
    for start in range(0, len(params), APPLY_CHUNK):
        chunk = [list(g[start : start + APPLY_CHUNK]) for g in groups]
        operands = [scalars, *flats, *(x for g in chunk for x in g)]
        first_p = len(operands) - len(chunk[-1])
        results = (flats if flats_out else []) + chunk[-1]
        r0 = len(flats) if flats_out else 0
        aliases = {first_p + i: r0 + i for i in range(len(chunk[-1]))}
        if flats_out:
            aliases.update({1 + k: k for k in range(len(flats))})
        out = _call(name, results, operands, aliases, flags, offset)
        if flats_out:
            flats, out = out[: len(flats)], out[len(flats) :]
        new_params += out
        offset += sum(int(np.size(x)) for x in chunk[-1])
    return (flats, new_params) if flats_out else new_params


def adam_moments(scalars, mu, nu, grads, *, exact_jit: bool) -> tuple[jax.Array, jax.Array]:
    """``(mu, nu)`` updated in place from the gradient leaves (scalars: b1, 1-b1, b2, 1-b2)."""
    flags = F_EXACT_JIT if exact_jit else 0
    mu, nu = _call("adaptx_adam_moments", (mu, nu), (scalars, mu, nu, *grads), {1: 0, 2: 1}, flags)
    return mu, nu


def adam_out(scalars, mu, nu, like, params, *, apply: bool, decay: bool, exact_jit: bool):
    """Per-leaf Adam updates (``like`` gives the shapes), or ``params + updates`` in place."""
    flags = F_EXACT_JIT if exact_jit else 0
    flags |= (F_APPLY if apply else 0) | (F_DECAY if decay else 0)
    if apply:
        return _chunked("adaptx_adam_out", scalars, (mu, nu), [params], flags, flats_out=False)
    operands = [scalars, mu, nu] + (list(params) if decay else [])
    return _call("adaptx_adam_out", list(like), operands, {}, flags)


def adam_step(scalars, mu, nu, grads, params, *, decay: bool, exact_jit: bool):
    """The whole Adam step in one pass: ``(mu, nu, params + updates)``, all in place."""
    flags = (F_EXACT_JIT if exact_jit else 0) | (F_DECAY if decay else 0)
    (mu, nu), new_params = _chunked(
        "adaptx_adam_step", scalars, (mu, nu), [grads, params], flags, flats_out=True
    )
    return mu, nu, new_params


def momentum_buffer(scalars, trace, grads, *, exact_jit: bool) -> jax.Array:
    """The heavy-ball buffer ``mu * b + g`` in place (scalars: mu)."""
    flags = F_EXACT_JIT if exact_jit else 0
    return _call("adaptx_momentum_buffer", (trace,), (scalars, trace, *grads), {1: 0}, flags)[0]


def momentum_out(
    scalars, trace, like, grads, params, *, apply: bool, nesterov: bool, exact_jit: bool
):
    """Per-leaf momentum updates, or ``params + updates`` in place (scalars: mu, lr)."""
    flags = (F_EXACT_JIT if exact_jit else 0) | (F_APPLY if apply else 0)
    flags |= F_NESTEROV if nesterov else 0
    if apply:
        groups = ([grads] if nesterov else []) + [params]
        return _chunked("adaptx_momentum_out", scalars, (trace,), groups, flags, flats_out=False)
    operands = [scalars, trace] + (list(grads) if nesterov else [])
    return _call("adaptx_momentum_out", list(like), operands, {}, flags)


def momentum_step(scalars, trace, grads, params, *, nesterov: bool, exact_jit: bool):
    """The whole momentum step in one pass: ``(trace, params + updates)``, in place."""
    flags = (F_EXACT_JIT if exact_jit else 0) | (F_NESTEROV if nesterov else 0)
    (trace,), new_params = _chunked(
        "adaptx_momentum_step", scalars, (trace,), [grads, params], flags, flats_out=True
    )
    return trace, new_params


# --- recognising fused updates in apply_updates --------------------------------------


@dataclasses.dataclass(eq=False)
class PendingUpdates:
    """How to recompute a fused optimizer's updates inside ``params + updates``.

    ``apply(params)`` returns the new parameter leaves, computed by in-place
    kernel passes with the same arithmetic as ``params + updates``.
    ``params`` is the parameter leaves the updates were computed from when
    they depend on them (weight decay), else ``None``.
    """

    apply: Any
    n_leaves: int
    params: tuple | None = None
    # One pass for the whole step: ``step(params) -> (new state buffers, new
    # params)``, and the state's ``FlatBuffer``s to point at those buffers.
    step: Any = None
    buffers: tuple = ()


@dataclasses.dataclass(eq=False)
class ScaledLeaves:
    """Leaves that are ``inputs[i] * factor`` (``clip_by_global_norm``'s outputs).

    A fused optimizer given them reads ``inputs`` and multiplies by ``factor``
    itself, so the scaled copies are never written to memory.
    """

    inputs: tuple
    factor: jax.Array
    n_leaves: int


_pending: dict[int, tuple[weakref.ref, Any, int]] = {}


def _forget(key: int) -> None:
    _pending.pop(key, None)


def remember(leaves: Sequence[Any], record: PendingUpdates | ScaledLeaves) -> None:
    """Records that ``leaves`` (tracers of the current trace) were produced as ``record`` says."""
    for i, x in enumerate(leaves):
        key = id(x)
        try:
            ref = weakref.ref(x, lambda _, key=key: _forget(key))
        except TypeError:  # not weak-referenceable: simply not recognised later
            return
        _pending[key] = (ref, record, i)


def recognise(leaves: Sequence[Any], kind: type = PendingUpdates) -> Any:
    """The ``kind`` record that produced exactly these leaves, in this order, or ``None``."""
    record = None
    for i, x in enumerate(leaves):
        entry = _pending.get(id(x))
        if entry is None or entry[0]() is not x or entry[2] != i:
            return None
        if record is None:
            record = entry[1]
        elif entry[1] is not record:
            return None
    if not isinstance(record, kind) or record.n_leaves != len(leaves):
        return None
    return record


def remember_scaled(inputs: Any, outputs: Any, factor: jax.Array) -> None:
    """Records, under tracing, that the leaves of ``outputs`` are ``inputs`` times ``factor``."""
    out_leaves = jax.tree.leaves(outputs)
    if not any(isinstance(x, jax.core.Tracer) for x in out_leaves):
        return  # eagerly the copies exist already
    in_leaves = jax.tree.leaves(inputs)
    if len(in_leaves) == len(out_leaves):
        remember(out_leaves, ScaledLeaves(tuple(in_leaves), factor, len(out_leaves)))


def _traced_here(leaves: Sequence[Any]) -> bool:
    """Whether every leaf is a tracer of the innermost trace being built now.

    The single-pass step points the state ``update`` returned at new buffers;
    that is only sound where those buffers belong to the same trace as the
    state, e.g. not when ``apply_updates`` runs inside a ``lax.cond`` branch
    on updates closed over from outside (the buffers would escape the branch).
    """
    try:
        from jax._src import core

        current = core.trace_ctx.trace
        return all(getattr(x, "_trace", None) is current for x in leaves)
    except Exception:  # a JAX without this internal: never take the single pass
        return False


def fused_apply(params: Any, updates: Any) -> Any | None:
    """``params + updates`` as one kernel pass, if ``updates`` came from a fused update.

    Returns ``None`` (the caller then adds leaf by leaf) unless every update
    leaf is exactly one returned by a fused optimizer's ``update``, the params
    have the same tree structure, and every param is float32 with its
    update's shape (and, for weight decay, is the very leaf the update used).
    """
    u_leaves, treedef = jax.tree.flatten(updates)
    record = recognise(u_leaves)
    if record is None:
        return None
    p_leaves, p_treedef = jax.tree.flatten(params)
    if p_treedef != treedef:
        return None
    for p, u in zip(p_leaves, u_leaves):
        if jnp.result_type(p) != jnp.float32 or jnp.shape(p) != jnp.shape(u):
            return None
    if record.params is not None and any(a is not b for a, b in zip(p_leaves, record.params)):
        return None
    if record.step is not None and record.buffers and _traced_here(u_leaves + p_leaves):
        # The state the update returned gets the single pass's buffers (the same
        # values); the update's own moment pass and updates are then dead code.
        flats, new_params = record.step(p_leaves)
        for buffer, flat in zip(record.buffers, flats):
            buffer.flat = flat
        return jax.tree.unflatten(treedef, new_params)
    return jax.tree.unflatten(treedef, record.apply(p_leaves))
