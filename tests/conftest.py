"""Strict settings for the whole test session.

- 8 fake CPU devices, so sharding and pmap tests run on any machine;
- strict dtype promotion: an implicit float32 * bfloat16 is an error, not a silent upcast;
- rank promotion raises: no accidental broadcasting between a (3,) and a (3, 1);
- warnings are errors (pyproject's filterwarnings);
- XLA's CPU compiler flags in ``TEST_XLA_FLAGS`` (below).
"""

import os
import subprocess
import sys

# Compiling is most of the suite's time: each test compiles small programs once.
# XLA's older CPU emitters compile them about twice as fast and give the same
# results up to float32 rounding (the order of a reduction may differ), which
# every numerical test must tolerate anyway: the suite also shows that its claims
# do not hang on one compiler's rounding. A long collective timeout, because a
# busy 2-core machine can starve one of the 8 fake devices for a while.
# ADAPTX_TEST_XLA_DEFAULTS=1 runs the suite with XLA's own defaults instead.
TEST_XLA_FLAGS = (
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_collective_call_terminate_timeout_seconds=600",
)


def _set_xla_flags() -> None:
    """Adds ``TEST_XLA_FLAGS`` to ``XLA_FLAGS`` (kept where the user set them) if this
    XLA knows them: an unknown flag aborts the process, so a subprocess tries first."""
    current = os.environ.get("XLA_FLAGS", "")
    missing = [f for f in TEST_XLA_FLAGS if f.split("=")[0] not in current]
    if os.environ.get("ADAPTX_TEST_XLA_DEFAULTS") or not missing:
        return
    flags = " ".join([*missing, current]).strip()
    probe = "import jax, jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(2))"
    ok = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, "XLA_FLAGS": flags}, capture_output=True
    )
    if ok.returncode == 0:
        os.environ["XLA_FLAGS"] = flags  # also for subprocesses: notebooks, examples


_set_xla_flags()

import jax  # noqa: E402

# Must run before any backend is initialised.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402


def pytest_report_header(config):
    return f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}"


def _no_jit(f, **kwargs):
    del kwargs
    return f


@pytest.fixture(params=["jit", "nojit"])
def jit(request):
    """``jax.jit`` or the identity: every test that takes it runs both ways."""
    return jax.jit if request.param == "jit" else _no_jit


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


# The slowest modules, first. The README's command runs ``--dist worksteal``: each
# worker starts on its own contiguous share of the collection, and an idle worker
# takes tests from the end of another's share. Collected last, the notebooks (a few
# tests of up to a minute each) would end the run on one worker while the other idles.
SLOWEST_FIRST = ("test_notebooks.py", "test_consumers.py", "test_sharding.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within and among the other modules is kept
