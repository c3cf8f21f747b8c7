#!/usr/bin/env python3
"""Decode attention under sustained load: per-call time, SM clock and board power.

bench_kv_attention.py times short bursts (10-30 calls per graph replay, best of a few
replays), which shows what a kernel does at full clock.  A decode loop keeps the GPU busy
for seconds, and a board that reaches its power limit lowers the SM clock.  This tool
replays graphs of ``--calls`` decode-attention calls back to back for ``--seconds`` and
the same for PyTorch's float16 scaled_dot_product_attention (the benchmark's peer, dense
cache of the same shape) in the same run, while ``nvidia-smi`` samples the SM clock, the
power draw and the clock-event reasons every 100 ms (where nvidia-smi exists; else those
columns read "-").  Prints one markdown row per (batch, kernel) and the ratio torch / ours.

    python bench/sustained_kv_attention.py                       # MXFP6_E2M3, batch 1 and 16
    python bench/sustained_kv_attention.py --batch 16 --seconds 5 --dtype mxfp4
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SMI_FIELDS = "timestamp,clocks.sm,power.draw,clocks_event_reasons.active"


class Sampler:
    """nvidia-smi in the background, 100 ms apart; ``window(t0, t1)`` summarizes the
    samples taken between two time.time() marks: (mean SM MHz, min SM MHz, mean W, max W,
    share of samples with a power-cap clock event)."""

    def __init__(self):
        self.proc = None
        exe = shutil.which("nvidia-smi")
        if exe:
            self.proc = subprocess.Popen([exe, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits",
                                          "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True)
        self.samples = []   # (time.time() of the sample, SM MHz, W, clock-event reasons)

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        for ln in out.splitlines():   # "2026/11/26 08:51:45.080, 1980, 123.40, 0x0000000000000000"
            try:
                stamp, mhz, watts, reasons = (x.strip() for x in ln.split(","))
                t = datetime.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
                self.samples.append((t, float(mhz), float(watts), int(reasons, 16)))
            except ValueError:      # a header, a "[N/A]" field or a cut line
                continue

    def window(self, t0, t1):
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        if not s:
            return None
        mhz = [x[1] for x in s]
        watts = [x[2] for x in s]
        capped = sum(1 for x in s if x[3] & 0x4) / len(s)   # 0x4: SW power cap
        return sum(mhz) / len(mhz), min(mhz), sum(watts) / len(watts), max(watts), capped


def sustain(replay, sync, seconds, calls):
    """Replay until ``seconds`` have passed; returns (us per call, t0, t1)."""
    replay()
    sync()
    t0, n = time.time(), 0
    while time.time() - t0 < seconds:
        replay()
        sync()
        n += calls
    t1 = time.time()
    return 1e6 * (t1 - t0) / n, t0, t1


def ours(dev, dtype, batch, ctx, seconds, calls):
    import bench_kv_attention as bk
    run, body, n_splits, _, _, _ = bk.decode_case(dev, dtype, batch, ctx)
    out = dev.empty((batch, bk.HQ, bk.D), np.float32)
    s = dev.stream()
    run(s, out)
    g = dev.graph(s)
    with g:
        for _ in range(calls):
            run(s, out)
    return f"{body} ({n_splits})", sustain(g.replay, s.synchronize, seconds, calls)


def torch_peer(batch, ctx, seconds, calls):
    import bench_kv_attention as bk
    peer = bk.torch_sdpa_graph(batch, ctx, calls)
    if peer is None:
        return None
    import torch
    graph, tensors = peer
    r = sustain(graph.replay, torch.cuda.synchronize, seconds, calls)
    del graph, tensors
    torch.cuda.empty_cache()
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--dtype", default="mxfp6_e2m3")
    ap.add_argument("--seconds", type=float, default=3.0, help="sustained time per kernel")
    ap.add_argument("--calls", type=int, default=100, help="calls per graph replay")
    ap.add_argument("--rest", type=float, default=2.0, help="idle seconds before each kernel")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.calls < 1 or args.rest < 0:
        ap.error("--seconds must be > 0, --calls >= 1, --rest >= 0")

    from rocmforge import device
    if not device.gpu_available():
        print("no GPU:", device.backend_status())
        return 2
    dev = device.get_device()
    import bench_kv_attention as bk
    print(f"# {dev.name} ({dev.arch}); {args.dtype}, {bk.HQ} query heads, {bk.HK} KV heads, "
          f"head_dim {bk.D}, page {bk.PAGE}, context {args.context}; {args.seconds:g} s each, "
          f"{args.calls} calls per graph replay, {args.rest:g} s idle before each")
    smi = Sampler()
    rows = []
    for batch in args.batch:
        time.sleep(args.rest)
        name, (us, t0, t1) = ours(dev, args.dtype, batch, args.context, args.seconds, args.calls)
        rows.append((batch, name, us, t0, t1))
        time.sleep(args.rest)
        r = torch_peer(batch, args.context, args.seconds, args.calls)
        if r is not None:
            rows.append((batch, "torch f16 SDPA", *r))
    smi.stop()
    print("| batch | kernel | us per call | SM MHz mean (min) | W mean (max) | power-capped samples | "
          "torch / ours |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    mine = {}
    for batch, name, us, t0, t1 in rows:
        w = smi.window(t0, t1)
        clk = "-" if w is None else f"{w[0]:.0f} ({w[1]:.0f})"
        pw = "-" if w is None else f"{w[2]:.0f} ({w[3]:.0f})"
        cap = "-" if w is None else f"{100 * w[4]:.0f}%"
        if name.startswith("torch"):
            ratio = f"{us / mine[batch]:.2f}x" if batch in mine else "-"
        else:
            mine[batch], ratio = us, ""
        print(f"| {batch} | {name} | {us:.1f} | {clk} | {pw} | {cap} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
