"""Device buffers: raw device memory with an optional dtype/shape, freed deterministically.

A buffer is freed by ``free()``, by leaving its ``with`` block, or by its finalizer when
the last reference goes (``weakref.finalize``): never leaked.  ``view(offset, nbytes)``
returns a buffer sharing the memory; it keeps its parent alive, and any use after the
parent was freed raises DeviceError('rocmforgeErrorUseAfterFree').
"""
from __future__ import annotations

import warnings
import weakref

import numpy as np

from .errors import DeviceError, HostArrayError, format_bytes


def _release(device_ref, backend, ptr: int, nbytes: int):
    """Finalizer: free one allocation (never touches the DeviceBuffer object)."""
    dev = device_ref()
    if dev is not None:
        dev._untrack(ptr, nbytes)
    if ptr:
        try:
            backend.make_current()
            backend.free(ptr)
        except DeviceError as e:  # e.g. at interpreter exit after the context went away
            warnings.warn(f"rocmforge: freeing a device buffer failed: {e}", ResourceWarning)


class DeviceBuffer:
    """``nbytes`` of device memory at ``ptr`` (optionally typed: ``dtype``, ``shape``)."""

    def __init__(self, device, ptr: int, nbytes: int, *, dtype=None, shape=None,
                 parent: "DeviceBuffer | None" = None, offset: int = 0):
        self.device = device
        self._ptr = ptr
        self.nbytes = nbytes
        self.offset = offset            # bytes from the start of the root allocation
        self._parent = parent           # keeps the root allocation alive
        self._root = parent._root if parent is not None else self
        self.dtype = np.dtype(dtype) if dtype is not None else None
        self.shape = tuple(shape) if shape is not None else None
        if self.dtype is not None and self.shape is not None:
            need = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
            if need > nbytes:
                raise ValueError(f"shape {self.shape} of {self.dtype} needs {need} bytes, "
                                 f"buffer has {nbytes}")
        if parent is None:
            device._track(ptr, nbytes)
            self._finalizer = weakref.finalize(self, _release, weakref.ref(device),
                                               device.backend, ptr, nbytes)

    # ---------------------------------------------------------------- state
    @property
    def freed(self) -> bool:
        return not self._root._finalizer.alive

    @property
    def ptr(self) -> int:
        if self.freed:
            raise DeviceError("rocmforgeErrorUseAfterFree", f"buffer 0x{self._ptr:x}",
                              "this buffer (or the buffer it views) was freed")
        return self._ptr

    def free(self):
        """Free the memory now (for a view: detach only; the parent owns the memory)."""
        if self._parent is None:
            self._finalizer()
        else:
            self._parent = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __repr__(self):
        state = "freed" if self.freed else f"0x{self._ptr:x}"
        typ = f", dtype={self.dtype}, shape={self.shape}" if self.dtype is not None else ""
        return f"DeviceBuffer({state}, {format_bytes(self.nbytes)}{typ}, {self.device.kind})"

    # ---------------------------------------------------------------- views
    def view(self, offset: int = 0, nbytes: int | None = None, *, dtype=None, shape=None):
        """A buffer over bytes [offset, offset + nbytes) of this one (same memory)."""
        if nbytes is None:
            nbytes = self.nbytes - offset
        if offset < 0 or nbytes < 0 or offset + nbytes > self.nbytes:
            raise ValueError(f"view [{offset}, {offset + nbytes}) is outside the buffer's "
                             f"{self.nbytes} bytes")
        return DeviceBuffer(self.device, self.ptr + offset, nbytes, dtype=dtype, shape=shape,
                            parent=self, offset=self.offset + offset)

    def typed(self, dtype, shape):
        """This memory seen as an array of ``shape`` and ``dtype`` (no copy)."""
        return self.view(0, self.nbytes, dtype=dtype, shape=shape)

    # ---------------------------------------------------------------- copies
    @staticmethod
    def _host(arr, what: str) -> np.ndarray:
        if isinstance(arr, DeviceBuffer):
            raise TypeError(f"{what}: got a DeviceBuffer where a host numpy array is expected; "
                            "use copy_from_device for device-to-device copies")
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{what}: expected a numpy array, got {type(arr).__name__}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{what}: the host array must be C-contiguous (use np.ascontiguousarray)")
        return arr

    def copy_from_host(self, arr: np.ndarray, stream=None):
        """Copy a host array into the start of this buffer."""
        arr = self._host(arr, "copy_from_host")
        if arr.nbytes > self.nbytes:
            raise ValueError(f"copy_from_host: {arr.nbytes} bytes do not fit the buffer's {self.nbytes}")
        self.device.backend.copy_htod(self.ptr, arr.ctypes.data, arr.nbytes, _handle(stream))
        return self

    def copy_to_host(self, out: np.ndarray | None = None, stream=None) -> np.ndarray:
        """Copy the buffer to a host array (``out``, or a new one of the buffer's dtype/shape)."""
        if out is None:
            dtype = self.dtype if self.dtype is not None else np.dtype(np.uint8)
            shape = self.shape if self.shape is not None else (self.nbytes // dtype.itemsize,)
            out = np.empty(shape, dtype=dtype)
        out = self._host(out, "copy_to_host")
        if out.nbytes > self.nbytes:
            raise ValueError(f"copy_to_host: asked for {out.nbytes} bytes of a {self.nbytes}-byte buffer")
        self.device.backend.copy_dtoh(out.ctypes.data, self.ptr, out.nbytes, _handle(stream))
        if stream is not None:
            stream.synchronize()
        return out

    numpy = copy_to_host

    def copy_from_device(self, src: "DeviceBuffer", nbytes: int | None = None, stream=None):
        """Device-to-device copy of ``nbytes`` (default: all of ``src``) into this buffer."""
        src = as_device_buffer(src, "copy_from_device")
        n = src.nbytes if nbytes is None else nbytes
        if n > self.nbytes or n > src.nbytes:
            raise ValueError(f"copy_from_device: {n} bytes exceed a buffer ({src.nbytes} -> {self.nbytes})")
        self.device.backend.copy_dtod(self.ptr, src.ptr, n, _handle(stream))
        return self

    def memset(self, value: int = 0, stream=None):
        """Set every byte to ``value`` (0..255)."""
        if not 0 <= int(value) <= 255:
            raise ValueError(f"memset value must be a byte (0..255), got {value}")
        self.device.backend.memset8(self.ptr, int(value), self.nbytes, _handle(stream))
        return self


def _handle(stream):
    return None if stream is None else stream.handle


def as_device_buffer(obj, where: str) -> DeviceBuffer:
    """Accept a DeviceBuffer; reject host arrays with a helpful DeviceError."""
    if isinstance(obj, DeviceBuffer):
        return obj
    if isinstance(obj, np.ndarray):
        raise HostArrayError(where, obj.shape, obj.dtype)
    raise TypeError(f"{where}: expected a DeviceBuffer, got {type(obj).__name__}")
