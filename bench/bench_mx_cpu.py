#!/usr/bin/env python3
"""MX quantize / dequantize throughput on one CPU core: Cython fast path vs NumPy reference.

Throughput is GB/s of float32 (input for quantize, output for dequantize), best of
--repeat runs.  Run:  python bench/bench_mx_cpu.py [--mib 32] [--repeat 5]
Both paths run on the same data size in the same run.
"""
import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")        # single thread for numpy's helpers

import numpy as np  # noqa: E402

from rocmforge import mx  # noqa: E402


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=32, help="float32 MiB per run")
    ap.add_argument("--ref-mib", type=float, default=None,
                    help="float32 MiB per reference run (default: the same as --mib)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.ref_mib is None:
        args.ref_mib = args.mib
    if not mx.have_fast_path():
        raise SystemExit("rocmforge.mx._fast is not built: pip install -e . first")
    rng = np.random.default_rng(0)
    n = int(args.mib * 2**20 / 4) // 32 * 32
    n_ref = int(args.ref_mib * 2**20 / 4) // 32 * 32
    x = rng.standard_normal(n).astype(np.float32)
    xr = x[:n_ref]
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}, "
          f"{args.mib:g} MiB fast / {args.ref_mib:g} MiB reference, best of {args.repeat}")
    print(f"{'format':<12} {'op':<10} {'cython GB/s':>12} {'numpy GB/s':>11} {'ratio':>8}")
    for fmt in mx.MxFormat:
        q = mx.quantize(x, fmt)
        qr = q[: n_ref // 32 * fmt.block_bytes]
        out, out_r = np.empty_like(x), np.empty_like(xr)     # both write into a reused buffer
        for op, fast, ref in (
            ("quantize", lambda: mx.quantize(x, fmt, impl="fast"),
             lambda: mx.quantize(xr, fmt, impl="reference")),
            ("dequantize", lambda: mx.dequantize(q, fmt, impl="fast", out=out),
             lambda: mx.dequantize(qr, fmt, impl="reference", out=out_r)),
        ):
            gf = n * 4 / best_time(fast, args.repeat) / 1e9
            gr = n_ref * 4 / best_time(ref, max(1, args.repeat // 2)) / 1e9
            print(f"{fmt.name:<12} {op:<10} {gf:>12.2f} {gr:>11.3f} {gf / gr:>7.1f}x")


if __name__ == "__main__":
    main()
