#!/usr/bin/env python3
"""How fast the staged attention kernel's page traffic could go at all: copy-only kernels
(bench/copy_floor_kv.cu, built with nvcc at run time) read the K and V pages of the
benchmark's cache (8 KV heads x 128 MXFP6 values, 800-byte rows, page_size 16, pages in a
random order) with different copy structures and do nothing else, timed beside the shipped
attention kernel, PyTorch's float16 SDPA and a device-to-device copy in the same run.

    python bench/copy_floor_kv.py [--batch 1 16] [--context 32768] [--repeats 5]

Structures (a "split" = consecutive page-table entries of one workgroup):
    cpasync h4 sN   16-byte cp.async, 4 heads' 400 contiguous bytes of each position per
                    workgroup (the shipped staged kernel's pattern), N buffers
    cpasync h8 sN   the same over all 8 heads: whole 12.8 KB pages
    bulk sN         one cp.async.bulk (TMA) per K page and V page, mbarrier per stage (sm_90)
    ldg             16-byte loads into registers, two pages in flight
Times are graph replays as in bench_kv_attention.py; "% copy" = bytes read / time against
the device-to-device copy's read + write bandwidth.  Exits 2 without a GPU or nvcc.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

PAGE_BYTES = 16 * 800
SIGNATURE = (("out", ctypes.c_void_p), ("kp", ctypes.c_void_p), ("vp", ctypes.c_void_p),
             ("table", ctypes.c_void_p), ("n_pages", ctypes.c_int32), ("pps", ctypes.c_int32))


def build(arch: str) -> bytes:
    import build_kernels
    nvcc = build_kernels.find_nvcc()
    if nvcc is None:
        raise SystemExit("copy_floor_kv needs nvcc (set ROCMFORGE_NVCC)")
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "floor.cubin"
        err = build_kernels._compile(build_kernels.nvidia_command(
            nvcc, ROOT / "bench" / "copy_floor_kv.cu", arch, obj), obj)
        if err:
            raise SystemExit(f"build {err}")
        return obj.read_bytes()


def structures(n_pages: int, sm90: bool):
    """(label, kernel, grid, threads, dynamic shared bytes, pages per split)."""
    out = []
    h4 = 128 if n_pages <= 4096 else 8 * n_pages // 2048   # the shipped plan's splits
    for s in (3, 4):
        out.append((f"cpasync h4 s{s}", f"floor_cpasync_h4_s{s}", 2 * h4, 128, s * 2 * 16 * 400,
                    -(-n_pages // h4)))
    for grid in (132, 264):
        pps = -(-n_pages // grid)
        for s in (3, 4):
            out.append((f"cpasync h8 s{s}", f"floor_cpasync_h8_s{s}", grid, 256, s * 2 * PAGE_BYTES, pps))
        if sm90:
            for s in (3, 4):
                out.append((f"bulk s{s}", f"floor_bulk_s{s}", grid, 256, s * 2 * PAGE_BYTES, pps))
        out.append(("ldg", "floor_ldg", grid, 256, 0, pps))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    from rocmforge import device
    if not device.gpu_available() or device.get_device().kind != "cuda":
        print("no GPU:", device.backend_status())
        return 2
    dev = device.get_device()
    import bench_kv_attention as bk
    mod = dev.load_module_data(build(dev.arch), "bench/copy_floor_kv.cu")
    sm90 = int(dev.arch[3:]) >= 90
    print(f"# {dev.name} ({dev.arch}); K+V pages of {bk.HK} KV heads x {bk.D} MXFP6 values "
          f"(800-byte rows), page {bk.PAGE}, context {args.context}, random page order")
    print("| batch | what | grid | us | GB/s | % copy | torch f16 SDPA us | vs torch |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for batch in args.batch:
        n_pages = batch * args.context // 16
        iters = max(10, 30 * 4096 // max(4096, args.context))
        nbytes = n_pages * PAGE_BYTES
        rng = np.random.default_rng(0)
        kp, vp = dev.alloc(nbytes + 64), dev.alloc(nbytes + 64)
        kp.memset(0x3c)
        vp.memset(0x5a)
        table = dev.to_device(rng.permutation(n_pages).astype(np.int32))
        out = dev.alloc(4 * 264 * 256)           # one word per thread of the largest grid
        t_torch = bk.torch_sdpa_ms(batch, args.context, iters, args.repeats)
        copy = bk.copy_gbs(dev, nbytes, iters, args.repeats)
        rows = []
        run, body, n_splits, _, cfg, _ = bk.decode_case(dev, "mxfp6_e2m3", batch, args.context)
        o = dev.empty((batch, bk.HQ, bk.D), np.float32)
        rows.append((f"shipped attention ({body}, {n_splits} splits)", "-",
                     bk.time_ms(dev, lambda st: run(st, o), iters, args.repeats)))
        for label, name, grid, threads, smem, pps in structures(n_pages, sm90):
            k = mod.kernel(name, SIGNATURE)
            k.allow_shared(smem)

            def fn(st, k=k, grid=grid, threads=threads, smem=smem, pps=pps):
                k.launch((grid,), (threads,), out, kp, vp, table, n_pages, pps, stream=st, shared=smem)
            rows.append((label, str(grid), bk.time_ms(dev, fn, iters, args.repeats)))
        for label, grid, ms in rows:
            gbs = 2 * nbytes / ms / 1e6
            tt = "-" if t_torch is None else f"{1000 * t_torch:.1f}"
            ratio = "-" if t_torch is None else f"{t_torch / ms:.2f}x"
            print(f"| {batch} | {label} | {grid} | {1000 * ms:.1f} | {gbs:.0f} | {100 * gbs / copy:.1f}% "
                  f"| {tt} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
