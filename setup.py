"""Build the optional compiled parts: the fused CPU engine's kernel and the page's drawing reader.

Everything else is declared in pyproject.toml. Both extensions are optional: when no C
compiler is found, or a build fails, the package installs without it; ``--engine auto``
then uses the NumPy engine, and the server reads drawings with NumPy. OpenMP is used when
the compiler accepts ``-fopenmp``; without it the kernel runs on one thread.
"""

from __future__ import annotations

import os
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ENGINES = "src/logreg_mnist/engines/"
# the module and its boundary checks, the Layout type, the kernel's instantiations (_fused.h lists them)
SOURCES = [ENGINES + name for name in ("_fused.c", "_fused_check.c", "_fused_layout.c", "_fused_kernels.c")]
HEADERS = [ENGINES + name for name in ("_fused.h", "_fused_kernel.h")]
OPENMP = {"logreg_mnist.engines._fused"}
FALLBACK = {
    "logreg_mnist.engines._fused": "the NumPy engine will be used",
    "logreg_mnist.serve._canvas": "the server will read drawings with NumPy",
}


class OptionalOpenMPBuildExt(build_ext):
    """Adds OpenMP flags when the compiler takes them; never fails the install."""

    def _accepts(self, flags: list[str]) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
            try:
                objects = self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                self.compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=flags)
            except Exception:  # noqa: BLE001 -- any failure means: no OpenMP
                return False
        return True

    def build_extensions(self) -> None:
        wanted = self.compiler.compiler_type == "unix" and os.environ.get("LOGREG_MNIST_NO_OPENMP") != "1"
        if wanted and self._accepts(["-fopenmp"]):
            for ext in self.extensions:
                if ext.name in OPENMP:
                    ext.extra_compile_args.append("-fopenmp")
                    ext.extra_link_args.append("-fopenmp")
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001 -- NumPy is the fallback of both
            print(f"warning: {ext.name} was not built ({e}); {FALLBACK[ext.name]}", file=sys.stderr)


extra = ["-O3", "-std=c11", "-ffp-contract=fast"] if os.name != "nt" else ["/O2"]
setup(
    ext_modules=[
        Extension("logreg_mnist.engines._fused", SOURCES, depends=HEADERS, extra_compile_args=list(extra), optional=True),
        Extension(
            "logreg_mnist.serve._canvas", ["src/logreg_mnist/serve/_canvas.c"], extra_compile_args=list(extra), optional=True
        ),
    ],
    cmdclass={"build_ext": OptionalOpenMPBuildExt},
)
