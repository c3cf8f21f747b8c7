"""Device, streams, events and graphs over one backend (hip, cuda or cpu)."""
from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from .buffers import DeviceBuffer, as_device_buffer
from .errors import DeviceError
from .modules import Module, find_code_object, load_manifest


@dataclass(frozen=True)
class DeviceInfo:
    kind: str            # "hip", "cuda" or "cpu"
    index: int
    name: str            # e.g. "NVIDIA H100 80GB HBM3", "AMD Radeon RX 7900 XT"
    arch: str            # "sm_90", "gfx1100", "x86_64"
    total_memory: int    # bytes
    multiprocessors: int
    wave_size: int       # 32 / 64 (1 on the CPU)
    l2_bytes: int


class Stream:
    """A non-blocking stream (``Device.stream()``); ``Device.default_stream`` wraps the
    legacy default stream (handle None), which cannot be captured into a graph."""

    def __init__(self, device, handle=None, owned: bool = False):
        self.device, self.handle = device, handle
        if owned:
            self._finalizer = weakref.finalize(self, device.backend.stream_destroy, handle)

    def synchronize(self):
        self.device.backend.stream_synchronize(self.handle)

    def __repr__(self):
        return f"Stream({'default' if self.handle is None else hex(id(self.handle))})"


class Event:
    """Records a point in a stream; ``end.elapsed_ms(start)`` (or ``start.elapsed_to(end)``)."""

    def __init__(self, device):
        self.device = device
        self.handle = device.backend.event_create()
        self._finalizer = weakref.finalize(self, device.backend.event_destroy, self.handle)

    def record(self, stream: Stream | None = None):
        self.device.backend.event_record(self.handle, None if stream is None else stream.handle)
        return self

    def synchronize(self):
        self.device.backend.event_synchronize(self.handle)

    def elapsed_ms(self, start: "Event") -> float:
        """Milliseconds from ``start`` to this event (both recorded, this one completed)."""
        self.synchronize()
        return self.device.backend.event_elapsed_ms(start.handle, self.handle)


class Graph:
    """Stream capture -> graph -> executable graph -> replay.

        g = dev.graph(stream)
        with g:                       # captures the work queued on ``stream``
            kernel.launch(grid, block, out, x, n, stream=stream)
        g.replay()                    # launches the whole captured sequence again
    Kernel arguments are copied into the graph at capture; buffers must stay alive.
    Python's cyclic garbage collector is paused while capturing: a finalizer that frees
    device memory (cuMemFree) inside a capture would invalidate it.
    """

    def __init__(self, device, stream: Stream):
        if stream.handle is None:
            raise DeviceError("rocmforgeErrorInvalidValue", "graph capture",
                              "the legacy default stream cannot be captured; use dev.stream()")
        self.device, self.stream = device, stream
        self._graph = self._exec = None
        self._keep = []  # objects (buffers) the user asks the graph to keep alive

    def keep_alive(self, *objs):
        self._keep.extend(objs)

    def __enter__(self):
        if self._graph is not None:
            raise DeviceError("rocmforgeErrorInvalidValue", "graph capture", "already captured")
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self.device.backend.capture_begin(self.stream.handle)
        except BaseException:
            if self._gc_was_enabled:
                gc.enable()
            raise
        return self

    def __exit__(self, exc_type, *exc):
        try:
            graph = self.device.backend.capture_end(self.stream.handle)
        finally:
            if self._gc_was_enabled:
                gc.enable()
        if exc_type is not None:
            self.device.backend.graph_destroy(graph)
            return False
        be = self.device.backend
        self._graph = graph
        self._exec = be.graph_instantiate(graph)
        self._finalizer = weakref.finalize(self, _destroy_graph, be, graph, self._exec)
        return False

    def replay(self, stream: Stream | None = None):
        if self._exec is None:
            raise DeviceError("rocmforgeErrorInvalidValue", "graph replay", "nothing captured yet")
        self.device.backend.graph_launch(self._exec, (stream or self.stream).handle)

    launch = replay


def _destroy_graph(backend, graph, exec_):
    backend.graph_exec_destroy(exec_)
    backend.graph_destroy(graph)


class Device:
    """One GPU (or the CPU) behind a backend: memory, streams, events, modules, graphs."""

    def __init__(self, backend):
        self.backend = backend
        self.kind = backend.name
        self.info = DeviceInfo(backend.name, backend.index, backend.device_name, backend.arch,
                               backend.total_memory, backend.multiprocessors, backend.wave_size,
                               backend.l2_bytes)
        self.name, self.arch, self.total_memory = self.info.name, self.info.arch, self.info.total_memory
        self.default_stream = Stream(self, None)
        self._lock = threading.Lock()
        self._live = {}       # ptr -> nbytes of every allocation not yet freed
        self._modules = {}

    def __repr__(self):
        return f"Device({self.kind}:{self.info.index} {self.name!r} {self.arch})"

    # ---------------------------------------------------------------- memory
    def _track(self, ptr, nbytes):
        with self._lock:
            self._live[ptr] = nbytes

    def _untrack(self, ptr, nbytes):
        with self._lock:
            self._live.pop(ptr, None)

    @property
    def live_allocations(self):
        """(count, bytes) of buffers allocated through this device and not yet freed."""
        with self._lock:
            return len(self._live), sum(self._live.values())

    def mem_info(self):
        """(free, total) bytes as the driver reports them."""
        return self.backend.mem_info()

    def alloc(self, nbytes: int, *, dtype=None, shape=None) -> DeviceBuffer:
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ValueError(f"alloc: negative size {nbytes}")
        ptr = self.backend.malloc(nbytes) if nbytes else 0  # zero bytes: a null buffer
        buf = DeviceBuffer(self, ptr, nbytes, dtype=dtype, shape=shape)
        if not nbytes:
            self._untrack(0, 0)
        return buf

    def empty(self, shape, dtype) -> DeviceBuffer:
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        dtype = np.dtype(dtype)
        return self.alloc(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, dtype=dtype, shape=shape)

    def zeros(self, shape, dtype) -> DeviceBuffer:
        return self.empty(shape, dtype).memset(0)

    def to_device(self, arr: np.ndarray, stream: Stream | None = None) -> DeviceBuffer:
        """A new device buffer holding a copy of a host array (same dtype and shape)."""
        arr = np.ascontiguousarray(arr)
        buf = self.empty(arr.shape, arr.dtype)
        return buf.copy_from_host(arr, stream)

    def as_buffer(self, obj, where: str = "argument") -> DeviceBuffer:
        return as_device_buffer(obj, where)

    # ---------------------------------------------------------------- execution
    def stream(self) -> Stream:
        return Stream(self, self.backend.stream_create(), owned=True)

    def event(self) -> Event:
        return Event(self)

    def graph(self, stream: Stream) -> Graph:
        return Graph(self, stream)

    def synchronize(self):
        self.backend.synchronize()

    def load_module(self, module: str) -> Module:
        """Load ``module`` (a kernels/*.hip stem) for this device's arch, from the manifest."""
        mod = self._modules.get(module)
        if mod is None:
            path = find_code_object(module, self.arch, self.kind)
            entry = next(o for o in load_manifest(path.parent)["objects"] if o["file"] == path.name)
            mod = self._modules[module] = Module(self, path.read_bytes(), str(path), entry["kernels"])
        return mod

    def load_module_data(self, image: bytes, what: str = "code object") -> Module:
        return Module(self, image, what)
