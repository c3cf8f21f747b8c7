"""The device runtime on a real GPU: discovery, memory accounting, OOM, streams, events,
graph capture and replay, kernel launch errors, a missing code object."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from rocmforge.device import DeviceError, HostArrayError
from rocmforge.ops import mx as mx_ops
from rocmforge.ops.kernels import get_kernel

pytestmark = pytest.mark.gpu


def test_discovery(gpu):
    info = gpu.info
    assert info.kind in ("hip", "cuda") and info.name and info.total_memory > 1 << 30
    assert info.arch.startswith("gfx" if info.kind == "hip" else "sm_")
    assert info.wave_size in (32, 64) and info.multiprocessors > 0
    free, total = gpu.mem_info()
    assert 0 < free <= total


def test_alloc_free_1000_buffers_leaves_memory_where_it_started(gpu):
    gpu.synchronize()
    gc.collect()
    free0, _ = gpu.mem_info()
    live0 = gpu.live_allocations
    bufs = [gpu.alloc(1 << 20) for _ in range(500)]          # freed by free()
    assert gpu.live_allocations[0] == live0[0] + 500
    assert gpu.mem_info()[0] <= free0 - 500 * (1 << 20)
    for b in bufs:
        b.free()
    for i in range(250):                                      # freed by the context manager
        with gpu.alloc(4096 + i):
            pass
    more = [gpu.alloc(1 << 16) for _ in range(250)]           # freed by finalizers
    del more, bufs
    gc.collect()
    assert gpu.live_allocations == live0
    assert gpu.mem_info()[0] == free0


def test_out_of_memory_is_a_clean_error(gpu):
    total = gpu.info.total_memory
    with pytest.raises(DeviceError) as ei:
        gpu.alloc(total + (8 << 30))
    e = ei.value
    assert e.name in ("CUDA_ERROR_OUT_OF_MEMORY", "hipErrorOutOfMemory"), e
    assert "GiB" in e.call and ("cuMemAlloc" in e.call or "hipMalloc" in e.call)
    with gpu.alloc(1 << 20) as b:              # the device still works afterwards
        b.memset(1)
        assert (b.copy_to_host() == 1).all()


def test_host_array_rejected_by_launch(gpu):
    k = get_kernel(gpu, "mx_dequant_mxfp4_f32")
    with gpu.alloc(128) as out, pytest.raises(HostArrayError, match="argument 1 'in'"):
        k.launch((1,), (256,), out, np.zeros(17, np.uint8), 1)


def test_missing_code_object_is_a_clear_error(gpu, tmp_path, monkeypatch):
    from rocmforge.device.runtime import Device
    monkeypatch.setenv("ROCMFORGE_KERNEL_DIR", str(tmp_path))
    fresh = Device(gpu.backend)                       # no cached modules
    with pytest.raises(DeviceError) as ei:
        fresh.load_module("mx_quant")
    assert ei.value.name in ("CUDA_ERROR_FILE_NOT_FOUND", "hipErrorFileNotFound")
    assert gpu.arch in str(ei.value) and "build_kernels.py" in str(ei.value)


def test_events_time_a_copy(gpu):
    s = gpu.stream()
    n = 64 << 20
    with gpu.alloc(n) as a, gpu.alloc(n) as b:
        a.memset(3, stream=s)
        e0, e1 = gpu.event().record(s), gpu.event()
        b.copy_from_device(a, stream=s)
        e1.record(s)
        ms = e1.elapsed_ms(e0)
        assert 0 < ms < 1000
        assert (b.view(n - 16, 16).copy_to_host() == 3).all()


def test_graph_capture_and_replay(gpu, same_bits):
    """Capture memset + quantize + dequantize on a stream, then replay it on new data."""
    from rocmforge import mx
    s = gpu.stream()
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((8, 256)).astype(np.float32)
    x2 = (rng.standard_normal((8, 256)) * 1e3).astype(np.float32)
    xb = gpu.to_device(x1)
    q = gpu.empty((8, 8 * 33), np.uint8)
    y = gpu.empty((8, 256), np.float16)
    mx_ops.dequantize(mx_ops.quantize(xb, "mxfp8_e4m3", out=q), "mxfp8_e4m3", np.float16, out=y)
    gpu.synchronize()                       # modules loaded before capture
    g = gpu.graph(s)
    with g:
        q.memset(0, stream=s)
        mx_ops.quantize(xb, "mxfp8_e4m3", out=q, stream=s)
        mx_ops.dequantize(q, "mxfp8_e4m3", np.float16, out=y, stream=s)
    g.keep_alive(xb, q, y)
    for x in (x1, x2, x1):
        xb.copy_from_host(x)
        g.replay()
        s.synchronize()
        want = mx.dequantize(mx.quantize(x, "mxfp8_e4m3"), "mxfp8_e4m3", np.float16)
        same_bits(y.copy_to_host(), want, "graph replay")


def test_capture_pauses_the_cyclic_garbage_collector(gpu):
    """A cycle holding a device buffer, collected inside a capture, would free device memory
    there (cuMemFree invalidates the capture): the collector is paused while capturing and
    restored after, also when the capture fails."""
    import gc
    s = gpu.stream()
    assert gc.isenabled()
    buf = gpu.empty((16,), np.float32)
    g = gpu.graph(s)
    with g:
        assert not gc.isenabled()
        buf.memset(0, stream=s)
    g.keep_alive(buf)
    assert gc.isenabled()
    g.replay()
    s.synchronize()
    with pytest.raises(RuntimeError, match="inside"):
        with gpu.graph(s):
            raise RuntimeError("inside the capture")
    assert gc.isenabled()


def test_default_stream_cannot_be_captured(gpu):
    with pytest.raises(DeviceError, match="default stream"):
        gpu.graph(gpu.default_stream)
