#!/usr/bin/env python3
"""Where the time of one staged attention launch goes, per workgroup (an experiment).

Runs a build of kernels/attention.hip with -DRF_STAGED_TRACE (not the default; built
here with nvcc by probe_kv_attention.build_variant, unless ROCMFORGE_KERNEL_DIR names one
already): each workgroup then overwrites the first 17 words of its warp 0's first partial
row with globaltimer and clock64 marks at its start, when its first tile has landed, after
its last tile and at its end, and its SM id.  The attention output of that build is wrong;
only the marks are read.

    python bench/trace_kv_attention.py --batch 1 --context 32768
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_kv_attention as bk  # noqa: E402
from rocmforge import device  # noqa: E402
from rocmforge.ops import attention as attn_ops  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--dtype", default="mxfp6_e2m3")
    ap.add_argument("--splits", type=int, default=0)
    args = ap.parse_args(argv)
    if not device.gpu_available():
        print("no GPU:", device.backend_status())
        return 2
    dev = device.get_device()
    if "ROCMFORGE_KERNEL_DIR" not in os.environ:
        from probe_kv_attention import build_variant
        os.environ["ROCMFORGE_KERNEL_DIR"] = str(build_variant(["RF_STAGED_TRACE"], dev.arch))
    hq, hk, d = bk.HQ, bk.HK, bk.D
    run, body, n_splits, per, cfg, ws = bk.decode_case(dev, args.dtype, args.batch, args.context,
                                                       args.splits or None, "staged")
    for _ in range(5):
        run()
        dev.synchronize()
    raw = ws.copy_to_host(np.empty(args.batch * hq * n_splits * d, np.uint32))
    raw = raw.reshape(args.batch, hq, n_splits, d)
    group = hq // hk
    heads = attn_ops.staged_heads(hk, args.dtype, d)   # KV heads (warps) a workgroup
    marks = []
    for b in range(args.batch):
        for hg in range(hk // heads):
            for s in range(n_splits):
                w = raw[b, hg * heads * group, s, :17].astype(np.uint64)
                t = w[0:8:2] | (w[1:8:2] << np.uint64(32))
                c = w[8:16:2] | (w[9:16:2] << np.uint64(32))
                marks.append((t.astype(np.int64), c.astype(np.int64), int(w[16])))
    t = np.array([m[0] for m in marks], np.float64)
    c = np.array([m[1] for m in marks], np.float64)
    t0 = t[:, 0].min()
    tiles = per
    print(f"# {dev.name}: {args.dtype}, batch {args.batch} x {args.context}, {n_splits} splits of {per} "
          f"tiles, {len(marks)} workgroups on {len(set(m[2] for m in marks))} SMs")
    q_ = lambda x: "/".join(f"{np.percentile(x, p):.2f}" for p in (0, 50, 90, 100))  # noqa: E731
    print(f"start offset us (min/median/p90/max): {q_((t[:, 0] - t0) / 1e3)}")
    print(f"fill us (start -> first tile ready):   {q_((t[:, 1] - t[:, 0]) / 1e3)}")
    print(f"loop us (first tile -> last done):     {q_((t[:, 2] - t[:, 1]) / 1e3)}")
    print(f"per tile us (loop / (tiles - 1)):      {q_((t[:, 2] - t[:, 1]) / 1e3 / max(1, tiles - 1))}")
    print(f"write-out us:                          {q_((t[:, 3] - t[:, 2]) / 1e3)}")
    print(f"end offset us:                         {q_((t[:, 3] - t0) / 1e3)}")
    print(f"fill cycles / loop cycles (median):    {np.median(c[:, 1] - c[:, 0]):.0f} / "
          f"{np.median(c[:, 2] - c[:, 1]):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
