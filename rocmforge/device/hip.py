"""AMD backend over hip-python (pip extra ``amd``: ``hip-python``).

hip-python dlopens ``libamdhip64.so`` (ROCm 6+); it cannot drive NVIDIA GPUs.  Imported
lazily by rocmforge.device.  The call shapes mirror cuda.py one for one (DESIGN.md:
``hipModuleLoadData`` / ``hipModuleLaunchKernel`` with ``kernelParams``).  Errors raise
DeviceError with HIP's error name (``hipErrorOutOfMemory: hipMalloc(8.00 GiB)``).

No AMD GPU is lent to this project's test machines: this backend is exercised only on
AMD hardware; its code objects are checked by metadata on every CI run.
"""
from __future__ import annotations

from .errors import DeviceError, format_bytes

from hip import hip  # noqa: E402  (ImportError means "no hip backend")

NAME = "hip"


def _check(res, call: str):
    """hip-python returns (hipError_t, *values) or a bare hipError_t."""
    err = res[0] if isinstance(res, tuple) else res
    if int(err) != 0:
        raise DeviceError(getattr(err, "name", f"hipError_t({int(err)})"), call)
    vals = res[1:] if isinstance(res, tuple) else ()
    return vals[0] if len(vals) == 1 else (vals or None)


def probe() -> int:
    _check(hip.hipInit(0), "hipInit(0)")
    return int(_check(hip.hipGetDeviceCount(), "hipGetDeviceCount()"))


class Backend:
    name = NAME
    vendor = "amd"

    def __init__(self, index: int = 0):
        n = probe()
        if not 0 <= index < n:
            raise DeviceError("hipErrorInvalidDevice", f"hipSetDevice({index})",
                              f"{n} HIP device(s) present")
        self.index = index
        self.make_current()
        props = hip.hipDeviceProp_t()
        _check(hip.hipGetDeviceProperties(props, index), f"hipGetDeviceProperties({index})")
        arch = props.gcnArchName
        arch = arch.decode() if isinstance(arch, bytes) else str(arch)
        self.arch = arch.split(":", 1)[0]          # "gfx90a:sramecc+:xnack-" -> "gfx90a"
        name = props.name
        self.device_name = (name.decode() if isinstance(name, bytes) else str(name)).split("\0", 1)[0]
        self.total_memory = int(props.totalGlobalMem)
        self.multiprocessors = int(props.multiProcessorCount)
        self.wave_size = int(props.warpSize)
        self.l2_bytes = int(props.l2CacheSize)

    def make_current(self):
        _check(hip.hipSetDevice(self.index), f"hipSetDevice({self.index})")

    def mem_info(self):
        free, total = _check(hip.hipMemGetInfo(), "hipMemGetInfo()")
        return int(free), int(total)

    # ---------------------------------------------------------------- memory
    def malloc(self, nbytes: int) -> int:
        return int(_check(hip.hipMalloc(nbytes), f"hipMalloc({format_bytes(nbytes)})"))

    def free(self, ptr: int):
        _check(hip.hipFree(ptr), f"hipFree(0x{ptr:x})")

    def _copy(self, dst, src, nbytes, kind, stream, what):
        if stream is None:
            _check(hip.hipMemcpy(dst, src, nbytes, kind), f"hipMemcpy({what}, {format_bytes(nbytes)})")
        else:
            _check(hip.hipMemcpyAsync(dst, src, nbytes, kind, stream),
                   f"hipMemcpyAsync({what}, {format_bytes(nbytes)})")

    def copy_htod(self, dst, src_host, nbytes, stream=None):
        self._copy(dst, src_host, nbytes, hip.hipMemcpyKind.hipMemcpyHostToDevice, stream, "HtoD")

    def copy_dtoh(self, dst_host, src, nbytes, stream=None):
        self._copy(dst_host, src, nbytes, hip.hipMemcpyKind.hipMemcpyDeviceToHost, stream, "DtoH")

    def copy_dtod(self, dst, src, nbytes, stream=None):
        _check(hip.hipMemcpyAsync(dst, src, nbytes, hip.hipMemcpyKind.hipMemcpyDeviceToDevice,
                                  stream if stream is not None else 0),
               f"hipMemcpyAsync(DtoD, {format_bytes(nbytes)})")

    def memset8(self, ptr, value, nbytes, stream=None):
        _check(hip.hipMemsetD8Async(ptr, value, nbytes, stream if stream is not None else 0),
               f"hipMemsetD8Async({format_bytes(nbytes)})")

    # ---------------------------------------------------------------- streams, events
    def stream_create(self):
        return _check(hip.hipStreamCreateWithFlags(hip.hipStreamNonBlocking), "hipStreamCreateWithFlags")

    def stream_destroy(self, s):
        _check(hip.hipStreamDestroy(s), "hipStreamDestroy")

    def stream_synchronize(self, s):
        _check(hip.hipStreamSynchronize(s if s is not None else 0), "hipStreamSynchronize")

    def synchronize(self):
        _check(hip.hipDeviceSynchronize(), "hipDeviceSynchronize")

    def event_create(self):
        return _check(hip.hipEventCreate(), "hipEventCreate")

    def event_destroy(self, e):
        _check(hip.hipEventDestroy(e), "hipEventDestroy")

    def event_record(self, e, s):
        _check(hip.hipEventRecord(e, s if s is not None else 0), "hipEventRecord")

    def event_synchronize(self, e):
        _check(hip.hipEventSynchronize(e), "hipEventSynchronize")

    def event_elapsed_ms(self, start, end) -> float:
        return float(_check(hip.hipEventElapsedTime(start, end), "hipEventElapsedTime"))

    # ---------------------------------------------------------------- modules, launch
    def module_load(self, image: bytes, what: str):
        return _check(hip.hipModuleLoadData(image), f"hipModuleLoadData({what})")

    def module_unload(self, mod):
        _check(hip.hipModuleUnload(mod), "hipModuleUnload")

    def module_function(self, mod, name: str):
        return _check(hip.hipModuleGetFunction(mod, name.encode()), f"hipModuleGetFunction({name})")

    def func_set_max_shared(self, fn, nbytes: int, what: str):
        # An AMD workgroup may take up to 64 KiB of LDS without an attribute; no kernel of
        # ours asks for more there (the staged attention kernels are NVIDIA-only).
        if nbytes > 65536:
            raise DeviceError("hipErrorInvalidValue", f"{what}: {nbytes} bytes of dynamic LDS",
                              "more than 64 KiB is not supported on AMD targets")

    def launch(self, fn, grid, block, shared, stream, params, what):
        # params: a ctypes (c_void_p * n) array of argument addresses (kernelParams).
        _check(hip.hipModuleLaunchKernel(fn, *grid, *block, shared,
                                         stream if stream is not None else 0, params, None),
               f"hipModuleLaunchKernel({what}, grid={tuple(grid)}, block={tuple(block)})")

    # ---------------------------------------------------------------- graphs
    def capture_begin(self, s):
        _check(hip.hipStreamBeginCapture(s, hip.hipStreamCaptureMode.hipStreamCaptureModeThreadLocal),
               "hipStreamBeginCapture")

    def capture_end(self, s):
        return _check(hip.hipStreamEndCapture(s), "hipStreamEndCapture")

    def graph_instantiate(self, g):
        return _check(hip.hipGraphInstantiateWithFlags(g, 0), "hipGraphInstantiateWithFlags")

    def graph_launch(self, ge, s):
        _check(hip.hipGraphLaunch(ge, s if s is not None else 0), "hipGraphLaunch")

    def graph_destroy(self, g):
        _check(hip.hipGraphDestroy(g), "hipGraphDestroy")

    def graph_exec_destroy(self, ge):
        _check(hip.hipGraphExecDestroy(ge), "hipGraphExecDestroy")
