"""Builds adaptx.fused's native CPU kernel (``adaptx/csrc/kernels.c``) at install time.

Everything else is in ``pyproject.toml``. The kernel is plain C against XLA's
FFI C API, whose header is vendored (``adaptx/csrc/xla_ffi_c_api.h``, Apache
License 2.0, from OpenXLA): pip's isolated build has no jax to take it from
(``jax.ffi.include_dir()``), and declaring jax a build requirement would
install jaxlib into every build environment. The loops are compiled for
several instruction sets and chosen at run time (``target_clones``), so a
generic build is vectorised on any x86-64 CPU. The build is optional:
without a working compiler the install still succeeds, and
``adaptx.fused`` compiles the kernel on first use if a compiler appears
later, or runs its pure-JAX path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "adaptx.fused._kernels",
            sources=["adaptx/csrc/kernels.c"],
            include_dirs=["adaptx/csrc"],
            # As adaptx.fused._kernel.CFLAGS: each operation rounded as written.
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
