"""Builds adaptx's optional native CPU kernels (``adaptx/csrc``) at install time.

Everything else is in ``pyproject.toml``. The kernels are plain C against
XLA's FFI C API (header vendored), so a C compiler is all they need. The
build is optional: without a working compiler the install still succeeds,
and adaptx compiles the kernels on first use if a compiler appears later,
or runs its pure-JAX path, which gives the same numbers.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "adaptx._kernels",
            sources=["adaptx/csrc/kernels.c"],
            include_dirs=["adaptx/csrc"],
            # As adaptx._native.CFLAGS: exact IEEE arithmetic, vectorised sqrt.
            extra_compile_args=[
                "-O3",
                "-ffp-contract=off",
                "-fno-math-errno",
                "-fno-trapping-math",
                "-fvisibility=hidden",
            ],
            libraries=["m"],
            optional=True,
        )
    ]
)
