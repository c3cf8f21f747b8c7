"""Checks shared by the op wrappers."""
from __future__ import annotations

import numpy as np

from ..device import DeviceBuffer
from ..device.buffers import as_device_buffer

try:
    import ml_dtypes
    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # ml_dtypes absent: bfloat16 buffers cannot be typed
    ml_dtypes = None
    BFLOAT16 = None

SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}
if BFLOAT16 is not None:
    SUFFIX[BFLOAT16] = "bf16"


def float_suffix(dtype, what: str) -> str:
    dt = np.dtype(dtype) if not (isinstance(dtype, str) and dtype == "bfloat16") else BFLOAT16
    if dt not in SUFFIX:
        raise ValueError(f"{what}: dtype must be float32, float16 or bfloat16, got {dtype}")
    return SUFFIX[dt]


def typed_input(buf, what: str) -> DeviceBuffer:
    buf = as_device_buffer(buf, what)
    if buf.dtype is None or buf.shape is None:
        raise ValueError(f"{what}: the buffer needs a dtype and shape (use buf.typed(dtype, shape))")
    return buf


def check_aligned(buf: DeviceBuffer, what: str, align: int = 16):
    if buf.ptr % align:
        raise ValueError(f"{what}: device address 0x{buf.ptr:x} (offset {buf.offset}) is not "
                         f"{align}-byte aligned; the kernel uses {align}-byte vector accesses")


def output(device, out, shape, dtype, what: str) -> DeviceBuffer:
    dtype = np.dtype(dtype)
    if out is None:
        return device.empty(shape, dtype)
    out = as_device_buffer(out, what)
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if out.nbytes < need:
        raise ValueError(f"{what}: out has {out.nbytes} bytes, needs {need} for {shape} {dtype}")
    return out if (out.dtype == dtype and out.shape == tuple(shape)) else out.view(0, need, dtype=dtype, shape=shape)
