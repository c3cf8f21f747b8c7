"""The device layer's one error type.

A ``DeviceError`` carries the driver's error name and the call that failed, and prints
them the way CuPy and tinygrad do::

    CUDA_ERROR_OUT_OF_MEMORY: cuMemAlloc(8.00 GiB)
    hipErrorFileNotFound: no code object for gfx1100 in rocmforge/_kernels/manifest.json (...)

Errors raised by rocmforge itself (not by a driver) use names that start with
``rocmforge`` (``rocmforgeErrorHostArray``, ``rocmforgeErrorNoDevice``, ...).
"""
from __future__ import annotations


class DeviceError(RuntimeError):
    """A device/driver call failed.  ``name`` is the driver's error name, ``call`` the call."""

    def __init__(self, name: str, call: str, detail: str = ""):
        self.name = name
        self.call = call
        self.detail = detail
        msg = f"{name}: {call}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class HostArrayError(DeviceError, TypeError):
    """A host (numpy) array was passed where a device buffer is expected."""

    def __init__(self, where: str, shape=None, dtype=None):
        what = "a host numpy array"
        if shape is not None:
            what += f" of shape {tuple(shape)} and dtype {dtype}"
        super().__init__(
            "rocmforgeErrorHostArray", where,
            f"{what} was passed where a device buffer is expected; copy it to the device "
            "first, e.g. buf = dev.to_device(arr)")


def format_bytes(n: int) -> str:
    """8589934592 -> '8.00 GiB' (for error messages)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
