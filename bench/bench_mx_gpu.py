#!/usr/bin/env python3
"""Effective bandwidth of every MX quantize / dequantize kernel, against a device-to-device
copy in the same run (and PyTorch's float32 -> float16 cast as a bandwidth peer).

    python bench/bench_mx_gpu.py [--mib 256] [--iters 20] [--json out.json]

Effective bandwidth = (bytes read + bytes written) / kernel time; the float side of every
kernel is --mib MiB.  Times are CUDA/HIP events around --iters back-to-back launches after
warm-up; the best of --repeats such runs is reported.  Bar: >= 85% of copy bandwidth.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rocmforge import device  # noqa: E402
from rocmforge.mx import BLOCK_SIZE, MxFormat  # noqa: E402
from rocmforge.ops import mx as mx_ops  # noqa: E402
from rocmforge.ops._common import BFLOAT16  # noqa: E402

BAR = 0.85


def time_ms(dev, stream, fn, iters: int, repeats: int) -> float:
    """Best mean milliseconds per call of fn() over ``repeats`` runs of ``iters`` calls."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        e0, e1 = dev.event().record(stream), dev.event()
        for _ in range(iters):
            fn()
        e1.record(stream)
        best = min(best, e1.elapsed_ms(e0) / iters)
    return best


def torch_cast_gbs(nbytes_f32: int, iters: int, repeats: int):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    x = torch.randn(nbytes_f32 // 4, device="cuda", dtype=torch.float32)
    y = torch.empty_like(x, dtype=torch.float16)
    for _ in range(3):
        y.copy_(x)
    best = float("inf")
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            y.copy_(x)
        b.record()
        b.synchronize()
        best = min(best, a.elapsed_time(b) / iters)
    moved = x.numel() * 6
    del x, y
    torch.cuda.empty_cache()
    return moved / best / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not device.gpu_available():
        print("no GPU:", device.backend_status())
        return 2
    dev = device.get_device()
    s = dev.stream()
    nbytes = args.mib << 20
    rows, results = [], {}

    with dev.alloc(nbytes) as a, dev.alloc(nbytes) as b:
        a.memset(1)
        ms = time_ms(dev, s, lambda: b.copy_from_device(a, stream=s), args.iters, args.repeats)
    copy_gbs = 2 * nbytes / ms / 1e6
    print(f"device: {dev.name} ({dev.arch}), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"device-to-device copy of {args.mib} MiB: {copy_gbs:8.1f} GB/s (read + write)")
    results["copy_gbs"] = copy_gbs

    rng = np.random.default_rng(0)
    for dtype in (np.dtype(np.float32), np.dtype(np.float16), BFLOAT16):
        n = nbytes // dtype.itemsize
        host = rng.standard_normal(n // BLOCK_SIZE * BLOCK_SIZE, dtype=np.float32)
        x = dev.to_device(host.astype(dtype).reshape(-1, 4096) if n >= 4096 else host.astype(dtype))
        for fmt in MxFormat:
            q = mx_ops.quantize(x, fmt, stream=s)
            y = dev.empty(x.shape, dtype)
            moved = x.nbytes + q.nbytes
            tq = time_ms(dev, s, lambda: mx_ops.quantize(x, fmt, out=q, stream=s), args.iters, args.repeats)
            td = time_ms(dev, s, lambda: mx_ops.dequantize(q, fmt, dtype, out=y, stream=s), args.iters, args.repeats)
            for op, t in (("quantize", tq), ("dequantize", td)):
                gbs = moved / t / 1e6
                key = f"{op} {fmt.name} {dtype.name}"
                results[key] = {"ms": t, "gbs": gbs, "pct_copy": gbs / copy_gbs}
                rows.append((key, t, gbs, gbs / copy_gbs))
            q.free()
            y.free()
        x.free()
    torch_gbs = torch_cast_gbs(nbytes, args.iters, args.repeats)
    results["torch_f32_to_f16_gbs"] = torch_gbs

    print(f"{'kernel':34s} {'ms':>8s} {'GB/s':>8s} {'% copy':>7s}")
    for key, t, gbs, pct in rows:
        flag = "" if pct >= BAR else "  < 85%"
        print(f"{key:34s} {t:8.4f} {gbs:8.1f} {100 * pct:6.1f}%{flag}")
    if torch_gbs:
        print(f"{'torch float32->float16 cast':34s} {'':8s} {torch_gbs:8.1f} {100 * torch_gbs / copy_gbs:6.1f}%")
    worst = min(r[3] for r in rows)
    print(f"worst kernel: {100 * worst:.1f}% of copy bandwidth (bar {100 * BAR:.0f}%)")
    if args.json:
        args.json.write_text(json.dumps({"device": dev.name, "arch": dev.arch, "mib": args.mib,
                                         "results": results}, indent=1))
    return 0 if worst >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
