"""Strict settings for the whole test session.

- 8 fake CPU devices, so sharding and pmap tests run on any machine;
- strict dtype promotion: an implicit float32 * bfloat16 is an error, not a silent upcast;
- rank promotion raises: no accidental broadcasting between a (3,) and a (3, 1);
- warnings are errors (pyproject's filterwarnings).
"""

import jax

# Must run before any backend is initialised.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402


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
