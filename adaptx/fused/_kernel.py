"""The native CPU kernel of ``adaptx.fused``: loading it and calling it through ``jax.ffi``.

The kernel (``adaptx/csrc/kernels.c``) is built when the package is installed
(``setup.py``). In a source checkout on ``PYTHONPATH`` without that build, it
is compiled once, on first use, with the system C compiler into a per-user
cache (``$ADAPTX_CACHE_DIR``, else ``~/.cache/adaptx``). The loaded library is
cached for the process (``functools.cache``); if it cannot be loaded, the
fused optimizers run their pure-JAX path and, on a CPU backend, warn once.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from typing import Any

import jax
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_CSRC = os.path.join(os.path.dirname(_HERE), "csrc")
_SOURCES = ("kernels.c", "xla_ffi_c_api.h")
# As setup.py: every operation rounded as written (no contraction into fma),
# no errno on sqrt and no trapping (so sqrt and the zero-denominator select
# vectorise; neither changes a value), only the entry points exported. The
# instruction set is chosen at run time (target_clones in kernels.c).
CFLAGS = (
    "-O3",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fvisibility=hidden",
)
TARGETS = ("adaptx_adam", "adaptx_sgd")


def _source_digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        with open(os.path.join(_CSRC, name), "rb") as f:
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
    """Compiles the kernel into the shared library ``dest`` (written atomically); returns it.

    Raises:
      RuntimeError: no C compiler, or the compilation failed.
    """
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(dest))
    os.close(fd)
    src = os.path.join(_CSRC, "kernels.c")
    cmd = [cc, *CFLAGS, "-shared", "-I", _CSRC, "-o", tmp, src, "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def library_path() -> str:
    """The kernel library: the installed build, else a cached build (compiled now if missing)."""
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


@functools.cache
def load() -> tuple[ctypes.CDLL | None, str | None]:
    """``(library, None)``, its FFI targets registered, or ``(None, why not)``; once per process."""
    try:
        lib = ctypes.CDLL(library_path())
        for name in TARGETS:
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
        lib.adaptx_isa.restype = ctypes.c_char_p
    except Exception as e:  # no compiler, a failed build, an FFI mismatch
        return None, f"{type(e).__name__}: {e}"
    return lib, None


@functools.cache
def _warn_unavailable(reason: str) -> None:
    warnings.warn(
        "adaptx.fused: the native CPU kernel is unavailable, so the fused optimizers run "
        f"their pure-JAX path (the same maths, slower). Reason: {reason}",
        RuntimeWarning,
        stacklevel=4,
    )


def available() -> bool:
    """Whether the kernel is loaded; warns once (on a CPU backend) when it cannot be."""
    lib, error = load()
    if lib is None and jax.default_backend() == "cpu":
        _warn_unavailable(error)
    return lib is not None


def info() -> dict[str, Any]:
    """What ``adaptx.fused`` runs with here: kernel loaded or not, why not, instruction set."""
    lib, error = load()
    return {
        "kernel": lib is not None,
        "error": error,
        "isa": lib.adaptx_isa().decode() if lib is not None else None,
        "library": getattr(lib, "_name", None),
    }


def _sds(x: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(x), np.float32)


# XLA's compile time grows quadratically with the number of in-place (aliased)
# results of one operation, so an in-place pass over the params runs as
# several calls of at most this many leaves each.
APPLY_CHUNK = 128


def call(
    name: str,
    scalars: jax.Array,
    flats: list,
    grads: list,
    params: list | None,
    *,
    apply: bool,
    **attrs: int,
) -> tuple[list, list]:
    """One kernel pass: ``(new flat buffers, per-leaf results)``, the buffers updated in place.

    With ``apply`` the results are the params plus the updates, in place, in
    calls of ``APPLY_CHUNK`` leaves.
    """
    flats = list(flats)
    n_leaves = len(grads)
    step = APPLY_CHUNK if apply else max(n_leaves, 1)
    results: list = []
    offset = 0
    for start in range(0, n_leaves, step):
        g = list(grads[start : start + step])
        p = [] if params is None else list(params[start : start + step])
        operands = [scalars, *flats, *g, *p]
        aliases = {1 + k: k for k in range(len(flats))}
        if apply:
            first_p = 1 + len(flats) + len(g)
            aliases.update({first_p + i: len(flats) + i for i in range(len(p))})
        out = jax.ffi.ffi_call(
            name,
            [_sds(f) for f in flats] + [_sds(x) for x in g],
            input_output_aliases=aliases,
        )(
            *operands,
            apply=np.int32(apply),
            offset=np.int64(offset),
            **{k: np.int32(v) for k, v in attrs.items()},
        )
        flats, new = list(out[: len(flats)]), list(out[len(flats) :])
        results += new
        offset += sum(int(np.size(x)) for x in g)
    return flats, results
