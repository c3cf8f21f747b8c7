"""Code objects and kernel launch.

``manifest.json`` (written by tools/build_kernels.py into rocmforge/_kernels/, or the
folder named by ROCMFORGE_KERNEL_DIR) lists every built code object with its target and
sha256.  ``find_code_object(module, arch)`` picks the one for the GPU: the exact target,
or for NVIDIA the newest ``sm_XY`` of the same major version not above the device (a
cubin runs on later minors of its major).  A missing one is a DeviceError naming the arch
and the build command.

Kernel arguments follow the fixed ABI (outputs first, then inputs, then scalars); each
kernel's signature is a tuple of (name, ctypes type) and every argument is packed into
its explicit ctypes type; the packed objects live until the launch call returns.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from .buffers import DeviceBuffer
from .errors import DeviceError, HostArrayError

KERNEL_DIR = Path(__file__).resolve().parent.parent / "_kernels"
BUILD_HINT = "python tools/build_kernels.py --targets {arch}"

_NOT_FOUND = {"cuda": "CUDA_ERROR_FILE_NOT_FOUND", "hip": "hipErrorFileNotFound",
              "cpu": "rocmforgeErrorFileNotFound"}


def kernel_dir() -> Path:
    return Path(os.environ.get("ROCMFORGE_KERNEL_DIR", KERNEL_DIR))


def load_manifest(folder: Path | None = None) -> dict:
    folder = kernel_dir() if folder is None else Path(folder)
    path = folder / "manifest.json"
    if not path.exists():
        return {"version": 1, "objects": [], "_path": str(path), "_missing": True}
    m = json.loads(path.read_text())
    m["_path"] = str(path)
    return m


def _sm(arch: str):
    m = re.fullmatch(r"sm_(\d+?)(\d)", arch)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_code_object(module: str, arch: str, backend: str = "cuda", folder=None) -> Path:
    """Path of ``module``'s code object for ``arch`` (verified against its sha256)."""
    man = load_manifest(folder)
    entries = [o for o in man["objects"] if o["module"] == module]
    pick = [o for o in entries if o["target"] == arch]
    want = _sm(arch)
    if not pick and want:
        same = [(o, _sm(o["target"])) for o in entries if _sm(o["target"])]
        same = [(o, v) for o, v in same if v[0] == want[0] and v[1] <= want[1]]
        pick = [max(same, key=lambda ov: ov[1])[0]] if same else []
    if not pick:
        have = sorted({o["target"] for o in entries}) or ["none"]
        where = man["_path"] + (" (missing)" if man.get("_missing") else "")
        raise DeviceError(_NOT_FOUND.get(backend, "rocmforgeErrorFileNotFound"),
                          f"load module {module!r} for {arch}",
                          f"no code object for {arch} in {where}; built targets: "
                          f"{', '.join(have)}; build it with: {BUILD_HINT.format(arch=arch)}")
    entry = pick[0]
    path = Path(man["_path"]).parent / entry["file"]
    data = path.read_bytes() if path.exists() else b""
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DeviceError("rocmforgeErrorCorruptCodeObject", f"load {path}",
                          f"sha256 differs from manifest; rebuild with: {BUILD_HINT.format(arch=arch)}")
    return path


# ---------------------------------------------------------------- argument packing
def pack_args(kernel: str, signature, args, backend: str = "cuda"):
    """Pack Python arguments into ctypes objects of the signature's types.

    Returns (objects, params) where params is a (c_void_p * n) array of their addresses.
    Pointer parameters (ctypes.c_void_p) take a DeviceBuffer, an object exposing
    ``__cuda_array_interface__`` (CUDA backend: torch/cupy arrays) or an explicit
    ctypes.c_void_p; a host numpy array raises HostArrayError.
    """
    if len(args) != len(signature):
        names = ", ".join(n for n, _ in signature)
        raise TypeError(f"{kernel} takes {len(signature)} arguments ({names}), got {len(args)}")
    objs = []
    for i, ((name, ctype), value) in enumerate(zip(signature, args)):
        where = f"{kernel} argument {i} {name!r}"
        if ctype is ctypes.c_void_p:
            if isinstance(value, DeviceBuffer):
                objs.append(ctypes.c_void_p(value.ptr))
            elif isinstance(value, np.ndarray):
                raise HostArrayError(where, value.shape, value.dtype)
            elif isinstance(value, ctypes.c_void_p):
                objs.append(ctypes.c_void_p(value.value))
            elif backend == "cuda" and hasattr(value, "__cuda_array_interface__"):
                objs.append(ctypes.c_void_p(value.__cuda_array_interface__["data"][0]))
            else:
                raise TypeError(f"{where}: expected a DeviceBuffer, got {type(value).__name__}")
        else:
            if isinstance(value, (DeviceBuffer, np.ndarray)):
                raise TypeError(f"{where}: expected a {ctype.__name__} scalar, got a buffer")
            obj = ctype(value)
            if isinstance(value, (int, np.integer)) and obj.value != int(value):
                raise OverflowError(f"{where}: {value} does not fit {ctype.__name__}")
            objs.append(obj)
    params = (ctypes.c_void_p * max(len(objs), 1))(*[ctypes.addressof(o) for o in objs])
    return objs, params


def arg_layout(signature):
    """[(name, offset, size)] of the kernel-argument buffer (C layout, natural alignment)."""
    out, off = [], 0
    for name, ctype in signature:
        size = ctypes.sizeof(ctype)
        align = ctypes.alignment(ctype)
        off = (off + align - 1) // align * align
        out.append((name, off, size))
        off += size
    return out


class Kernel:
    """One entry point of a loaded module, with its argument signature."""

    def __init__(self, module: "Module", name: str, handle, signature):
        self.module, self.name, self.handle, self.signature = module, name, handle, tuple(signature)
        self._max_shared = 48 * 1024   # dynamic shared memory a launch may take without asking

    def allow_shared(self, nbytes: int):
        """Let launches of this kernel take ``nbytes`` of dynamic shared memory (NVIDIA needs
        an opt-in above 48 KiB); a driver call once per kernel and size."""
        if nbytes > self._max_shared:
            self.module.device.backend.func_set_max_shared(self.handle, nbytes, self.name)
            self._max_shared = nbytes

    def launch(self, grid, block, *args, stream=None, shared: int = 0):
        grid = tuple(grid) + (1,) * (3 - len(tuple(grid)))
        block = tuple(block) + (1,) * (3 - len(tuple(block)))
        if min(grid) < 1 or min(block) < 1:
            raise ValueError(f"{self.name}: empty launch grid={grid} block={block}")
        dev = self.module.device
        objs, params = pack_args(self.name, self.signature, args, dev.kind)
        dev.backend.launch(self.handle, grid, block, shared,
                           None if stream is None else stream.handle, params, self.name)
        del objs, params  # kept alive until here: the driver copied them during the call

    __call__ = launch

    def __repr__(self):
        return f"Kernel({self.name}, {', '.join(n for n, _ in self.signature)})"


class Module:
    """A loaded code object; ``kernel(name, signature)`` looks entry points up (cached)."""

    def __init__(self, device, image: bytes, what: str, kernel_names=()):
        self.device, self.what = device, what
        self.kernel_names = tuple(kernel_names)
        self.handle = device.backend.module_load(image, what)
        self._kernels = {}

    def kernel(self, name: str, signature) -> Kernel:
        k = self._kernels.get(name)
        if k is None:
            if self.kernel_names and name not in self.kernel_names:
                raise DeviceError(_NOT_FOUND.get(self.device.kind, "rocmforgeErrorFileNotFound"),
                                  f"kernel {name!r} in {self.what}",
                                  f"it has: {', '.join(self.kernel_names[:8])}...")
            handle = self.device.backend.module_function(self.handle, name)
            k = self._kernels[name] = Kernel(self, name, handle, signature)
        return k
