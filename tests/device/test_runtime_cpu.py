"""The device facade on the CPU backend (runs everywhere, CI included): buffers, views,
copies, memset, deterministic freeing, error names, backend selection, lazy imports."""
from __future__ import annotations

import ctypes
import gc
import subprocess
import sys

import numpy as np
import pytest

from rocmforge import device
from rocmforge.device import DeviceError, HostArrayError, arg_layout
from rocmforge.device.modules import find_code_object, pack_args
from rocmforge.ops import KERNELS

SIG = KERNELS["mx_dequant_mxfp4_f32"][1]


def test_roundtrip_view_memset(cpu_dev):
    x = np.arange(64, dtype=np.float32).reshape(2, 32)            # (2, 32)
    with cpu_dev.to_device(x) as buf:
        assert buf.shape == (2, 32) and buf.dtype == np.float32 and buf.nbytes == 256
        np.testing.assert_array_equal(buf.copy_to_host(), x)
        row1 = buf.view(128, 128, dtype=np.float32, shape=(32,))  # x[1]
        np.testing.assert_array_equal(row1.copy_to_host(), x[1])
        row1.memset(0)
        got = buf.copy_to_host()
        np.testing.assert_array_equal(got[0], x[0])
        assert not got[1].any()
        other = cpu_dev.empty((2, 32), np.float32)
        other.copy_from_device(buf)
        np.testing.assert_array_equal(other.copy_to_host(), got)
        other.free()
    assert buf.freed and row1.freed
    with pytest.raises(DeviceError, match="rocmforgeErrorUseAfterFree"):
        row1.copy_to_host()


def test_bad_views_and_copies(cpu_dev):
    buf = cpu_dev.alloc(100)
    with pytest.raises(ValueError, match=r"view \[96, 104\)"):
        buf.view(96, 8)
    with pytest.raises(ValueError, match="do not fit"):
        buf.copy_from_host(np.zeros(101, np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        buf.copy_from_host(np.zeros((10, 10), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="byte"):
        buf.memset(256)
    buf.free()
    buf.free()  # idempotent


def test_finalizer_and_context_free_everything(cpu_dev):
    before = cpu_dev.live_allocations
    bufs = [cpu_dev.alloc(1000 + i) for i in range(200)]
    assert cpu_dev.live_allocations == (before[0] + 200, before[1] + sum(1000 + i for i in range(200)))
    views = [b.view(8, 16) for b in bufs[:50]]
    del bufs
    gc.collect()
    assert cpu_dev.live_allocations[0] == before[0] + 50   # views keep their parents alive
    del views
    gc.collect()
    assert cpu_dev.live_allocations == before


def test_zero_size_buffer(cpu_dev):
    with cpu_dev.empty((0, 32), np.float32) as b:
        assert b.nbytes == 0 and b.copy_to_host().shape == (0, 32)


def test_out_of_memory_is_a_clean_error(cpu_dev):
    too_big = cpu_dev.total_memory * 4
    with pytest.raises(DeviceError) as ei:
        cpu_dev.alloc(too_big)
    assert ei.value.name == "rocmforgeErrorOutOfMemory" and "GiB" in str(ei.value)


def test_host_array_rejected_with_a_helpful_message(cpu_dev):
    buf = cpu_dev.alloc(64)
    with pytest.raises(HostArrayError) as ei:
        pack_args("mx_dequant_mxfp4_f32", SIG, (buf, np.zeros(17, np.uint8), 1))
    e = ei.value
    assert isinstance(e, DeviceError) and isinstance(e, TypeError)
    assert e.name == "rocmforgeErrorHostArray"
    assert "argument 1 'in'" in str(e) and "to_device" in str(e) and "(17,)" in str(e)
    from rocmforge.ops import mx as mx_ops
    with pytest.raises(HostArrayError):
        mx_ops.dequantize(np.zeros((1, 17), np.uint8), "mxfp4")


def test_pack_args_types_and_lifetime(cpu_dev):
    buf = cpu_dev.alloc(64)
    objs, params = pack_args("k", SIG, (buf, buf.view(16), 7))
    assert [type(o) for o in objs] == [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
    assert objs[1].value == buf.ptr + 16 and objs[2].value == 7
    assert [params[i] for i in range(3)] == [ctypes.addressof(o) for o in objs]
    with pytest.raises(OverflowError, match="n_blocks"):
        pack_args("k", SIG, (buf, buf, -1))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        pack_args("k", SIG, (buf, buf))
    with pytest.raises(TypeError, match="expected a DeviceBuffer"):
        pack_args("k", SIG, (buf, 12345, 1))   # a bare int is not a device pointer


def test_arg_layout_is_c_layout():
    sig = (("out", ctypes.c_void_p), ("n", ctypes.c_uint32), ("x", ctypes.c_void_p), ("s", ctypes.c_float))
    assert arg_layout(sig) == [("out", 0, 8), ("n", 8, 4), ("x", 16, 8), ("s", 24, 4)]


def test_missing_code_object_names_arch_and_build_command(tmp_path):
    with pytest.raises(DeviceError) as ei:
        find_code_object("mx_quant", "gfx1030", "hip", folder=tmp_path)
    e = ei.value
    assert e.name == "hipErrorFileNotFound"
    assert "gfx1030" in str(e) and "tools/build_kernels.py --targets gfx1030" in str(e)
    with pytest.raises(DeviceError, match="CUDA_ERROR_FILE_NOT_FOUND.*sm_75"):
        find_code_object("mx_quant", "sm_75", "cuda", folder=tmp_path)


def test_cubin_of_an_older_minor_is_chosen(tmp_path):
    import hashlib
    import json
    data = b"not really a cubin"
    (tmp_path / "m.sm_80.cubin").write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 1, "objects": [
        {"file": "m.sm_80.cubin", "module": "m", "target": "sm_80", "vendor": "nvidia",
         "sha256": hashlib.sha256(data).hexdigest(), "kernels": []}]}))
    assert find_code_object("m", "sm_86", "cuda", folder=tmp_path).name == "m.sm_80.cubin"
    with pytest.raises(DeviceError, match="sm_90"):   # no forward compatibility across majors
        find_code_object("m", "sm_90", "cuda", folder=tmp_path)
    (tmp_path / "m.sm_80.cubin").write_bytes(b"tampered")
    with pytest.raises(DeviceError, match="rocmforgeErrorCorruptCodeObject"):
        find_code_object("m", "sm_80", "cuda", folder=tmp_path)


def test_cpu_backend_runs_no_code_objects(cpu_dev):
    with pytest.raises(DeviceError, match="rocmforgeErrorNotSupported"):
        cpu_dev.load_module_data(b"\x7fELF", "x")


def test_backend_selection(monkeypatch):
    monkeypatch.setenv("ROCMFORGE_DEVICE", "bogus")
    with pytest.raises(ValueError, match="auto, hip, cuda or cpu"):
        device.get_device()
    monkeypatch.setenv("ROCMFORGE_DEVICE", "cpu")
    assert device.get_device().kind == "cpu"
    status = device.backend_status()
    assert status["cpu"] is None
    for kind in ("hip", "cuda"):
        if status[kind] is not None:       # no such GPU here: asking for it is a clean error
            with pytest.raises(DeviceError, match="rocmforgeErrorNoDevice"):
                device.get_device(kind)


def test_import_is_lazy():
    code = ("import sys, rocmforge, rocmforge.device, rocmforge.ops.mx, rocmforge.ops.gguf; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('hip', 'cuda') "
            "or m in ('rocmforge.device.cuda', 'rocmforge.device.hip')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cpu_ops_match_reference(cpu_dev):
    from rocmforge import mx
    from rocmforge.ops import mx as mx_ops
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    q = mx_ops.quantize(cpu_dev.to_device(x), "mxfp6_e3m2")
    np.testing.assert_array_equal(q.copy_to_host(), mx.quantize(x, "mxfp6_e3m2"))
    y = mx_ops.dequantize(q, "mxfp6_e3m2", np.float16)
    np.testing.assert_array_equal(y.copy_to_host(), mx.dequantize(q.copy_to_host(), "mxfp6_e3m2", np.float16))
