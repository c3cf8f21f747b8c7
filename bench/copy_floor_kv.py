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
    ... + partials  (batch 1) the same, and each split then writes its partial results (a row
                    of 128 floats and (M, L) per query head) in attn_combine's layout
    ... + combine   (batch 1) and the real attn_combine merges them: the floor of a split-K
                    decode over these pages with no arithmetic at all
    ... + empty kernel  (batch 1) an empty kernel in place of attn_combine: what a second
                    kernel costs before it does any work
    ... + warp combine  (batch 1) combine_warp (copy_floor_kv.cu), a candidate attn_combine
                    with one warp per 16 values of a row and no shared memory, in its place
The shipped attention is also timed with combine_warp in place of attn_combine, after both
merges are checked against NumPy on random partial results.
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
             ("table", ctypes.c_void_p), ("n_pages", ctypes.c_int32), ("pps", ctypes.c_int32),
             ("part_o", ctypes.c_void_p), ("part_ml", ctypes.c_void_p))
COMBINE_SIGNATURE = (("out", ctypes.c_void_p), ("part_o", ctypes.c_void_p), ("part_ml", ctypes.c_void_p),
                     ("n_splits", ctypes.c_int32), ("head_dim", ctypes.c_int32))
HQ = 32   # query heads whose partial results the "+ partials" kernels write (batch 1)


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


def check_combines(dev, combine, warp_combine, threads):
    """Both merges against NumPy on random partial results (some splits empty): relative error
    at most 1e-5 of the row's largest value, else exit."""
    from rocmforge.ops.attention import combine_workgroups
    rng = np.random.default_rng(1)
    for n_rows, n_splits, d in ((3, 1, 128), (5, 3, 64), (4, 8, 128), (2, 64, 256), (32, 128, 128),
                                (3, 200, 128), (2, 300, 64)):
        o = rng.standard_normal((n_rows, n_splits, d)).astype(np.float32)
        m = rng.uniform(-30, 30, (n_rows, n_splits)).astype(np.float32)
        m[rng.random((n_rows, n_splits)) < 0.2] = -np.inf
        m[:, 0] = rng.uniform(-30, 30, n_rows)                      # every row has a split
        lsum = np.where(np.isinf(m), 0.0, rng.uniform(0.5, 50, (n_rows, n_splits))).astype(np.float32)
        ml = np.stack([m, lsum], -1).astype(np.float32)
        w = np.exp2(m - m.max(1, keepdims=True))
        want = (w[..., None] * o).sum(1) / (w * lsum).sum(1)[:, None]
        po, pm = dev.to_device(o), dev.to_device(ml)
        for name, k, grid, block in (
                ("attn_combine", combine, combine_workgroups(n_rows, n_splits, d), threads),
                ("combine_warp", warp_combine, n_rows * d // 32, 64)):
            out = dev.alloc(4 * n_rows * d)
            k.launch((grid,), (block,), out, po, pm, n_splits, d)
            got = out.copy_to_host(np.empty((n_rows, d), np.float32))
            err = float(np.max(np.abs(got - want) / np.abs(want).max(1, keepdims=True)))
            if not err <= 1e-5:
                raise SystemExit(f"{name}: rows {n_rows} splits {n_splits} head_dim {d}: error {err:.2e}")
    print("# attn_combine and combine_warp match NumPy (random partials, 1-300 splits, head_dim 64-256)")


def structures(n_pages: int, sm90: bool, batch: int):
    """(label, kernel, grid, threads, dynamic shared bytes, pages per split, n_splits, epi):
    epi 0 copies only, 1 + partials, 2 + partials + attn_combine, 3 + partials + an empty
    kernel, 4 + partials + combine_warp (1-4: batch 1 only)."""
    out = []
    h4 = 128 if n_pages <= 4096 else 8 * n_pages // 2048   # the shipped plan's splits
    for s in (3, 4):
        out.append((f"cpasync h4 s{s}", f"floor_cpasync_h4_s{s}", 2 * h4, 128, s * 2 * 16 * 400,
                    -(-n_pages // h4), h4, 0))
    for grid in (132, 264):
        pps = -(-n_pages // grid)
        for s in (3, 4):
            out.append((f"cpasync h8 s{s}", f"floor_cpasync_h8_s{s}", grid, 256, s * 2 * PAGE_BYTES, pps,
                        grid, 0))
        if sm90:
            for s in (3, 4, 6) if grid == 132 else (3, 4):   # 6 stages: one workgroup an SM
                out.append((f"bulk s{s}", f"floor_bulk_s{s}", grid, 256, s * 2 * PAGE_BYTES, pps, grid, 0))
        out.append(("ldg", "floor_ldg", grid, 256, 0, pps, grid, 0))
    if batch == 1:
        for epi, what in ((1, " + partials"), (2, " + partials + combine"), (3, " + partials + empty kernel"),
                          (4, " + partials + warp combine")):
            out.append((f"cpasync h4 s3{what}", "floor_cpasync_h4_s3_epi", 2 * h4, 128, 3 * 2 * 16 * 400,
                        -(-n_pages // h4), h4, epi))
            if sm90:
                for grid, s in ((132, 4), (132, 6), (264, 4)):
                    out.append((f"bulk s{s}{what}", f"floor_bulk_s{s}_epi", grid, 256, s * 2 * PAGE_BYTES,
                                -(-n_pages // grid), grid, epi))
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
    from rocmforge.ops import attention as attn_ops
    from rocmforge.ops.kernels import THREADS, get_kernel
    combine = get_kernel(dev, "attn_combine")
    mod = dev.load_module_data(build(dev.arch), "bench/copy_floor_kv.cu")
    noop = mod.kernel("floor_noop", SIGNATURE)
    warp_combine = mod.kernel("combine_warp", COMBINE_SIGNATURE)
    check_combines(dev, combine, warp_combine, THREADS)
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
        max_splits = 264
        part_o = dev.alloc(4 * HQ * max_splits * bk.D)
        part_ml = dev.alloc(4 * HQ * max_splits * 2)
        merged = dev.alloc(4 * HQ * bk.D)
        t_torch = bk.torch_sdpa_ms(batch, args.context, iters, args.repeats)
        copy = bk.copy_gbs(dev, nbytes, iters, args.repeats)
        rows = []
        run, body, n_splits, _, cfg, _ = bk.decode_case(dev, "mxfp6_e2m3", batch, args.context)
        o = dev.empty((batch, bk.HQ, bk.D), np.float32)
        rows.append((f"shipped attention ({body}, {n_splits} splits)", "-",
                     bk.time_ms(dev, lambda st: run(st, o), iters, args.repeats)))
        real_get = attn_ops.get_kernel

        class _Warp:      # combine_warp where paged_decode_attention launches attn_combine
            def launch(self, grid, block, out_, po, pm, ns, d, stream=None):
                warp_combine.launch((batch * bk.HQ * d // 32,), (64,), out_, po, pm, ns, d, stream=stream)
        attn_ops.get_kernel = lambda d_, name: _Warp() if name == "attn_combine" else real_get(d_, name)
        try:
            o2 = dev.empty((batch, bk.HQ, bk.D), np.float32)
            rows.append(("shipped attention + warp combine", "-",
                         bk.time_ms(dev, lambda st: run(st, o2), iters, args.repeats)))
        finally:
            attn_ops.get_kernel = real_get
        ref, base = o2.copy_to_host(), o.copy_to_host()   # what the timed calls left there
        err = float(np.max(np.abs(ref - base)) / np.max(np.abs(base)))
        print(f"# batch {batch}: shipped attention with combine_warp against attn_combine: "
              f"max error {err:.1e} of the largest output", flush=True)
        if not err <= 1e-5:
            raise SystemExit("combine_warp disagrees with attn_combine on the shipped attention")
        for label, name, grid, threads, smem, pps, n_splits, epi in structures(n_pages, sm90, batch):
            k = mod.kernel(name, SIGNATURE)
            k.allow_shared(smem)
            cgrid = attn_ops.combine_workgroups(HQ, n_splits, bk.D)   # as paged_decode_attention

            def fn(st, k=k, grid=grid, threads=threads, smem=smem, pps=pps, n_splits=n_splits, epi=epi,
                   cgrid=cgrid):
                k.launch((grid,), (threads,), out, kp, vp, table, n_pages, pps, part_o, part_ml, stream=st,
                         shared=smem)
                if epi == 3:
                    noop.launch((cgrid,), (THREADS,), out, kp, vp, table, n_pages, pps, part_o,
                                part_ml, stream=st)
                if epi == 4:
                    warp_combine.launch((HQ * bk.D // 32,), (64,), merged, part_o, part_ml, n_splits, bk.D,
                                        stream=st)
                if epi == 2:
                    combine.launch((cgrid,), (THREADS,), merged, part_o, part_ml, n_splits, bk.D,
                                   stream=st)
            rows.append((label, str(grid), bk.time_ms(dev, fn, iters, args.repeats)))
            if epi == 2:   # every split wrote values in [0, 1) with L = 1 (or L = 0, M = -inf if empty)
                got = merged.copy_to_host(np.empty((HQ, bk.D), np.float32))
                if not (np.all(np.isfinite(got)) and got.min() >= 0.0 and got.max() < 1.0):
                    raise SystemExit(f"{label}: the merged rows are not averages of the partials "
                                     f"(min {got.min()}, max {got.max()})")
        for label, grid, ms in rows:
            gbs = 2 * nbytes / ms / 1e6
            tt = "-" if t_torch is None else f"{1000 * t_torch:.1f}"
            ratio = "-" if t_torch is None else f"{t_torch / ms:.2f}x"
            print(f"| {batch} | {label} | {grid} | {1000 * ms:.1f} | {gbs:.0f} | {100 * gbs / copy:.1f}% "
                  f"| {tt} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
