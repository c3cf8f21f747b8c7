"""The hip backend's call shapes and error naming, against a stand-in for hip-python.

No AMD GPU (and no hip-python) is available to these tests, so a fake ``hip`` package
records the calls rocmforge.device.hip makes and answers like hip-python does: tuples of
(hipError_t, values...).  This checks the glue, not the driver."""
from __future__ import annotations

import ctypes
import enum
import importlib
import sys
import types

import numpy as np
import pytest

from rocmforge.device import DeviceError


class hipError_t(enum.IntEnum):
    hipSuccess = 0
    hipErrorOutOfMemory = 2
    hipErrorFileNotFound = 301


class FakeHip:
    """The subset of hip-python's ``hip.hip`` that rocmforge uses."""

    hipStreamNonBlocking = 1

    class hipMemcpyKind(enum.IntEnum):
        hipMemcpyHostToDevice = 1
        hipMemcpyDeviceToHost = 2
        hipMemcpyDeviceToDevice = 3

    class hipDeviceProp_t:
        def __init__(self):
            self.gcnArchName = b"gfx90a:sramecc+:xnack-"
            self.name = b"AMD Instinct MI210"
            self.totalGlobalMem = 64 << 30
            self.multiProcessorCount = 104
            self.warpSize = 64
            self.l2CacheSize = 8 << 20

    def __init__(self):
        self.calls = []
        self.mem = {}
        self.ok = (hipError_t.hipSuccess,)

    def hipInit(self, flags):
        return self.ok

    def hipGetDeviceCount(self):
        return hipError_t.hipSuccess, 1

    def hipSetDevice(self, i):
        return self.ok

    def hipGetDeviceProperties(self, props, i):
        return self.ok

    def hipMalloc(self, n):
        if n > 64 << 30:
            return hipError_t.hipErrorOutOfMemory, None
        buf = ctypes.create_string_buffer(n)
        self.mem[ctypes.addressof(buf)] = buf
        return hipError_t.hipSuccess, ctypes.addressof(buf)

    def hipFree(self, p):
        self.mem.pop(p)
        return self.ok

    def hipMemcpy(self, dst, src, n, kind):
        ctypes.memmove(dst, src, n)
        return self.ok

    def hipMemsetD8Async(self, p, v, n, s):
        ctypes.memset(p, v, n)
        return self.ok

    def hipModuleLoadData(self, image):
        return hipError_t.hipErrorFileNotFound, None

    def hipModuleLaunchKernel(self, f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        self.calls.append(("launch", (gx, gy, gz), (bx, by, bz), params, extra))
        return self.ok

    def hipMemGetInfo(self):
        return hipError_t.hipSuccess, 60 << 30, 64 << 30


@pytest.fixture
def fake_hip(monkeypatch):
    fake = FakeHip()
    pkg = types.ModuleType("hip")
    pkg.hip = fake
    monkeypatch.setitem(sys.modules, "hip", pkg)
    monkeypatch.setitem(sys.modules, "hip.hip", fake)
    monkeypatch.delitem(sys.modules, "rocmforge.device.hip", raising=False)
    mod = importlib.import_module("rocmforge.device.hip")
    yield fake, mod
    monkeypatch.delitem(sys.modules, "rocmforge.device.hip", raising=False)


def test_discovery_and_arch_name(fake_hip):
    _, mod = fake_hip
    be = mod.Backend(0)
    assert be.arch == "gfx90a" and be.wave_size == 64 and be.device_name == "AMD Instinct MI210"


def test_errors_carry_hip_names(fake_hip):
    _, mod = fake_hip
    be = mod.Backend(0)
    with pytest.raises(DeviceError) as ei:
        be.malloc(80 << 30)
    assert str(ei.value) == "hipErrorOutOfMemory: hipMalloc(80.00 GiB)"
    with pytest.raises(DeviceError, match="hipErrorFileNotFound: hipModuleLoadData"):
        be.module_load(b"\x7fELF", "x.hsaco")


def test_buffers_and_launch_through_the_facade(fake_hip):
    fake, mod = fake_hip
    from rocmforge.device.modules import Kernel
    from rocmforge.device.runtime import Device
    from rocmforge.ops import KERNELS
    dev = Device(mod.Backend(0))
    x = np.arange(8, dtype=np.float32)
    with dev.to_device(x) as b:
        np.testing.assert_array_equal(b.copy_to_host(), x)
        b.memset(0)
        assert not b.copy_to_host().any()
        k = Kernel(types.SimpleNamespace(device=dev), "mx_dequant_mxfp4_f32", object(),
                   KERNELS["mx_dequant_mxfp4_f32"][1])
        k.launch((3,), (256,), b, b.view(16), 5)
    _, grid, block, params, extra = fake.calls[-1]
    assert grid == (3, 1, 1) and block == (256, 1, 1) and extra is None
    assert isinstance(params, ctypes.Array) and len(params) == 3
    assert dev.live_allocations == (0, 0)
