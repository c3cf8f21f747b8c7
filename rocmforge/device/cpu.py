"""CPU backend: "device" memory is host memory, so buffers, copies and memsets work
everywhere (CI included); code objects do not run here (ops use their CPU path).
Streams are synchronous; events read a host clock."""
from __future__ import annotations

import ctypes
import os
import platform
import time

import numpy as np

from .errors import DeviceError, format_bytes

NAME = "cpu"


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # non-POSIX
        return 1 << 34


class Backend:
    name = NAME
    vendor = "cpu"

    def __init__(self, index: int = 0):
        if index != 0:
            raise DeviceError("rocmforgeErrorInvalidDevice", f"cpu device {index}", "only device 0")
        self.index = 0
        self.arch = platform.machine() or "cpu"
        self.device_name = platform.processor() or self.arch
        self.total_memory = _physical_memory()
        self.multiprocessors = os.cpu_count() or 1
        self.wave_size = 1
        self.l2_bytes = 0
        self._arrays = {}  # ptr -> numpy uint8 array owning the memory

    def make_current(self):
        pass

    def mem_info(self):
        used = sum(a.nbytes for a in self._arrays.values())
        return max(self.total_memory - used, 0), self.total_memory

    def malloc(self, nbytes: int) -> int:
        if nbytes > self.total_memory:
            raise DeviceError("rocmforgeErrorOutOfMemory", f"malloc({format_bytes(nbytes)})",
                              f"the host has {format_bytes(self.total_memory)}")
        try:
            arr = np.empty(nbytes, dtype=np.uint8)
        except MemoryError:
            raise DeviceError("rocmforgeErrorOutOfMemory", f"malloc({format_bytes(nbytes)})") from None
        ptr = arr.ctypes.data
        self._arrays[ptr] = arr
        return ptr

    def free(self, ptr: int):
        if self._arrays.pop(ptr, None) is None:
            raise DeviceError("rocmforgeErrorInvalidValue", f"free(0x{ptr:x})", "not allocated here")

    def copy_htod(self, dst, src_host, nbytes, stream=None):
        ctypes.memmove(dst, src_host, nbytes)

    copy_dtoh = copy_htod
    copy_dtod = copy_htod

    def memset8(self, ptr, value, nbytes, stream=None):
        ctypes.memset(ptr, value, nbytes)

    def stream_create(self):
        return object()

    def stream_destroy(self, s):
        pass

    def stream_synchronize(self, s):
        pass

    def synchronize(self):
        pass

    def event_create(self):
        return [0.0]

    def event_destroy(self, e):
        pass

    def event_record(self, e, s):
        e[0] = time.perf_counter()

    def event_synchronize(self, e):
        pass

    def event_elapsed_ms(self, start, end) -> float:
        return (end[0] - start[0]) * 1e3

    def _unsupported(self, call):
        raise DeviceError("rocmforgeErrorNotSupported", call,
                          "the cpu backend runs no code objects; use the op's CPU path")

    def module_load(self, image, what):
        self._unsupported(f"module_load({what})")

    def module_unload(self, mod):
        pass

    def module_function(self, mod, name):
        self._unsupported(f"module_function({name})")

    def func_set_max_shared(self, fn, nbytes, what):
        self._unsupported(f"func_set_max_shared({what})")

    def launch(self, fn, grid, block, shared, stream, params, what):
        self._unsupported(f"launch({what})")

    def capture_begin(self, s):
        self._unsupported("stream capture")

    def capture_end(self, s):
        self._unsupported("stream capture")

    def graph_instantiate(self, g):
        self._unsupported("graph instantiate")

    def graph_launch(self, ge, s):
        self._unsupported("graph launch")

    def graph_destroy(self, g):
        pass

    def graph_exec_destroy(self, ge):
        pass
