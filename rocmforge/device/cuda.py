"""NVIDIA backend over ``cuda.bindings.driver`` (pip extra ``nvidia``: cuda-bindings).

Imported lazily by rocmforge.device; nothing here runs at import of rocmforge.  Every
driver call goes through ``_check``, which raises DeviceError with the driver's error
name (``CUDA_ERROR_OUT_OF_MEMORY: cuMemAlloc(8.00 GiB)``).  The device's primary context
is used (the one PyTorch and CuPy share), made current on the calling thread.
"""
from __future__ import annotations

import ctypes

from .errors import DeviceError, format_bytes

try:  # cuda-bindings >= 12.6 exposes cuda.bindings.driver; older cuda-python exposes cuda.cuda
    from cuda.bindings import driver as cu
except ImportError:  # pragma: no cover - old cuda-python layout
    from cuda import cuda as cu  # type: ignore

NAME = "cuda"


def _err_name(err) -> str:
    name = getattr(err, "name", None)
    return name if name else f"CUresult({int(err)})"


def _check(res, call: str):
    """cuda-bindings returns (CUresult, *values): raise on error, return the values."""
    err = res[0] if isinstance(res, tuple) else res
    if int(err) != 0:
        raise DeviceError(_err_name(err), call)
    vals = res[1:] if isinstance(res, tuple) else ()
    return vals[0] if len(vals) == 1 else (vals or None)


def probe() -> int:
    """Number of CUDA devices; raises (anything) when there is no driver or no device."""
    _check(cu.cuInit(0), "cuInit(0)")
    return int(_check(cu.cuDeviceGetCount(), "cuDeviceGetCount()"))


class Backend:
    """One CUDA device (primary context).  Pointers and handles are plain ints/objects."""

    name = NAME
    vendor = "nvidia"

    def __init__(self, index: int = 0):
        n = probe()
        if not 0 <= index < n:
            raise DeviceError("CUDA_ERROR_INVALID_DEVICE", f"cuDeviceGet({index})",
                              f"{n} CUDA device(s) present")
        self.index = index
        self._dev = _check(cu.cuDeviceGet(index), f"cuDeviceGet({index})")
        self._ctx = _check(cu.cuDevicePrimaryCtxRetain(self._dev), "cuDevicePrimaryCtxRetain")
        self.make_current()
        attr = cu.CUdevice_attribute
        get = lambda a: int(_check(cu.cuDeviceGetAttribute(a, self._dev), f"cuDeviceGetAttribute({a.name})"))
        major = get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        minor = get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        self.arch = f"sm_{major}{minor}"
        self.multiprocessors = get(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        self.wave_size = get(attr.CU_DEVICE_ATTRIBUTE_WARP_SIZE)
        self.l2_bytes = get(attr.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        raw = _check(cu.cuDeviceGetName(256, self._dev), "cuDeviceGetName")
        self.device_name = raw.split(b"\0", 1)[0].decode(errors="replace")
        self.total_memory = int(_check(cu.cuDeviceTotalMem(self._dev), "cuDeviceTotalMem"))

    def make_current(self):
        _check(cu.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    def mem_info(self):
        free, total = _check(cu.cuMemGetInfo(), "cuMemGetInfo()")
        return int(free), int(total)

    # ---------------------------------------------------------------- memory
    def malloc(self, nbytes: int) -> int:
        return int(_check(cu.cuMemAlloc(nbytes), f"cuMemAlloc({format_bytes(nbytes)})"))

    def free(self, ptr: int):
        _check(cu.cuMemFree(ptr), f"cuMemFree(0x{ptr:x})")

    def copy_htod(self, dst: int, src_host: int, nbytes: int, stream=None):
        if stream is None:
            _check(cu.cuMemcpyHtoD(dst, src_host, nbytes), f"cuMemcpyHtoD({format_bytes(nbytes)})")
        else:
            _check(cu.cuMemcpyHtoDAsync(dst, src_host, nbytes, stream),
                   f"cuMemcpyHtoDAsync({format_bytes(nbytes)})")

    def copy_dtoh(self, dst_host: int, src: int, nbytes: int, stream=None):
        if stream is None:
            _check(cu.cuMemcpyDtoH(dst_host, src, nbytes), f"cuMemcpyDtoH({format_bytes(nbytes)})")
        else:
            _check(cu.cuMemcpyDtoHAsync(dst_host, src, nbytes, stream),
                   f"cuMemcpyDtoHAsync({format_bytes(nbytes)})")

    def copy_dtod(self, dst: int, src: int, nbytes: int, stream=None):
        _check(cu.cuMemcpyDtoDAsync(dst, src, nbytes, stream if stream is not None else 0),
               f"cuMemcpyDtoDAsync({format_bytes(nbytes)})")

    def memset8(self, ptr: int, value: int, nbytes: int, stream=None):
        _check(cu.cuMemsetD8Async(ptr, value, nbytes, stream if stream is not None else 0),
               f"cuMemsetD8Async({format_bytes(nbytes)})")

    # ---------------------------------------------------------------- streams, events
    def stream_create(self):
        flags = cu.CUstream_flags.CU_STREAM_NON_BLOCKING
        return _check(cu.cuStreamCreate(flags), "cuStreamCreate")

    def stream_destroy(self, s):
        _check(cu.cuStreamDestroy(s), "cuStreamDestroy")

    def stream_synchronize(self, s):
        _check(cu.cuStreamSynchronize(s if s is not None else 0), "cuStreamSynchronize")

    def synchronize(self):
        _check(cu.cuCtxSynchronize(), "cuCtxSynchronize")

    def event_create(self):
        return _check(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate")

    def event_destroy(self, e):
        _check(cu.cuEventDestroy(e), "cuEventDestroy")

    def event_record(self, e, s):
        _check(cu.cuEventRecord(e, s if s is not None else 0), "cuEventRecord")

    def event_synchronize(self, e):
        _check(cu.cuEventSynchronize(e), "cuEventSynchronize")

    def event_elapsed_ms(self, start, end) -> float:
        return float(_check(cu.cuEventElapsedTime(start, end), "cuEventElapsedTime"))

    # ---------------------------------------------------------------- modules, launch
    def module_load(self, image: bytes, what: str):
        return _check(cu.cuModuleLoadData(image), f"cuModuleLoadData({what})")

    def module_unload(self, mod):
        _check(cu.cuModuleUnload(mod), "cuModuleUnload")

    def module_function(self, mod, name: str):
        return _check(cu.cuModuleGetFunction(mod, name.encode()), f"cuModuleGetFunction({name})")

    def func_set_max_shared(self, fn, nbytes: int, what: str):
        attr = cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _check(cu.cuFuncSetAttribute(fn, attr, int(nbytes)),
               f"cuFuncSetAttribute({what}, max dynamic shared memory = {nbytes} bytes)")

    def launch(self, fn, grid, block, shared: int, stream, params, what: str):
        # params: a ctypes (c_void_p * n) array of argument addresses (kernelParams).
        _check(cu.cuLaunchKernel(fn, *grid, *block, shared, stream if stream is not None else 0,
                                 ctypes.addressof(params), 0),
               f"cuLaunchKernel({what}, grid={tuple(grid)}, block={tuple(block)})")

    # ---------------------------------------------------------------- graphs
    def capture_begin(self, s):
        mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        _check(cu.cuStreamBeginCapture(s, mode), "cuStreamBeginCapture")

    def capture_end(self, s):
        return _check(cu.cuStreamEndCapture(s), "cuStreamEndCapture")

    def graph_instantiate(self, g):
        return _check(cu.cuGraphInstantiate(g, 0), "cuGraphInstantiate")

    def graph_launch(self, ge, s):
        _check(cu.cuGraphLaunch(ge, s if s is not None else 0), "cuGraphLaunch")

    def graph_destroy(self, g):
        _check(cu.cuGraphDestroy(g), "cuGraphDestroy")

    def graph_exec_destroy(self, ge):
        _check(cu.cuGraphExecDestroy(ge), "cuGraphExecDestroy")
