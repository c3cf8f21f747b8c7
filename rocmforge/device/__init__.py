"""rocmforge.device: one small runtime facade over three backends.

    from rocmforge import device
    dev = device.get_device()            # ROCMFORGE_DEVICE=auto|hip|cuda|cpu (default auto)
    x = dev.to_device(np.ones((4, 32), np.float32))
    y = dev.empty((4, 32), np.float16)
    k = dev.load_module("mx_dequant").kernel("mx_dequant_mxfp4_f16", SIGNATURE)
    k.launch(grid, block, y, q, n_blocks, stream=s)
    y.copy_to_host()

Backends: ``hip`` (hip-python, pip extra ``amd``), ``cuda`` (cuda-bindings, extra
``nvidia``), ``cpu`` (host memory, no code objects).  ``auto`` takes hip if an AMD GPU
answers, else cuda if an NVIDIA GPU answers, else cpu.  Neither GPU package is imported
until a device is asked for; a missing package, a missing driver or ``cuInit`` failing
all mean "no device" (``gpu_available()`` is False and GPU tests skip).
"""
from __future__ import annotations

import importlib
import os
import threading

from .buffers import DeviceBuffer
from .errors import DeviceError, HostArrayError
from .modules import Kernel, Module, arg_layout, find_code_object, load_manifest
from .runtime import Device, DeviceInfo, Event, Graph, Stream

__all__ = ["Device", "DeviceBuffer", "DeviceError", "DeviceInfo", "Event", "Graph",
           "HostArrayError", "Kernel", "Module", "Stream", "arg_layout", "backend_status",
           "find_code_object", "get_device", "gpu_available", "load_manifest"]

BACKENDS = ("hip", "cuda", "cpu")
_devices = {}
_status = {}  # backend -> None (works) or the reason it does not
_lock = threading.Lock()


def _backend_module(kind: str):
    return importlib.import_module(f"{__name__}.{kind}")


def _probe(kind: str) -> str | None:
    """None if ``kind`` has at least one device, else the reason why not (cached)."""
    if kind in _status:
        return _status[kind]
    if kind == "cpu":
        reason = None
    else:
        try:
            n = _backend_module(kind).probe()
            reason = None if n > 0 else f"{kind}: no devices"
        except ImportError as e:
            reason = f"{kind}: package not installed ({e})"
        except Exception as e:  # noqa: BLE001 - a driver that fails to load/init means "no device"
            reason = f"{kind}: {type(e).__name__}: {e}"
    _status[kind] = reason
    return reason


def backend_status() -> dict:
    """{backend: None if usable else the reason} for hip, cuda and cpu."""
    return {k: _probe(k) for k in BACKENDS}


def _choose(kind: str | None) -> str:
    kind = (kind or os.environ.get("ROCMFORGE_DEVICE", "auto")).strip().lower()
    if kind == "auto":
        for k in ("hip", "cuda"):
            if _probe(k) is None:
                return k
        return "cpu"
    if kind not in BACKENDS:
        raise ValueError(f"ROCMFORGE_DEVICE={kind!r}: expected auto, hip, cuda or cpu")
    reason = _probe(kind)
    if reason is not None:
        raise DeviceError("rocmforgeErrorNoDevice", f"{kind} backend", reason)
    return kind


def get_device(kind: str | None = None, index: int = 0) -> Device:
    """The (cached) Device for ``kind`` (default: $ROCMFORGE_DEVICE, else auto)."""
    k = _choose(kind)
    with _lock:
        dev = _devices.get((k, index))
        if dev is None:
            dev = _devices[(k, index)] = Device(_backend_module(k).Backend(index))
    return dev


def gpu_available() -> bool:
    """True if the hip or cuda backend has a device (what GPU tests check to skip)."""
    return _probe("hip") is None or _probe("cuda") is None
