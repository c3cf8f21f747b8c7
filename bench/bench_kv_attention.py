#!/usr/bin/env python3
"""Paged decode attention over the quantized KV cache (kernels/attention.hip) for every
KvCacheDtype, against PyTorch's scaled_dot_product_attention on a dense float16 KV cache of
the same shape, in the same run.

    python bench/bench_kv_attention.py [--contexts 1024 4096 16384 32768] [--batches 1 16]
                                       [--iters 30] [--json out.json] [--splits N]
                                       [--bodies auto split] [--heads 12 2] [--head-dim 64]
    python bench/bench_kv_attention.py --accuracy [--dtypes ...] [--head-dim 256] [--heads HQ HK]   # worst GPU-vs-CPU error
                                       # (4 KV heads unless --heads names them)

--bodies: which attention kernels to time per dtype: "auto" (what decode_attention picks:
the staged kernel where staged_unsupported allows it, on NVIDIA sm_80+, else the split
kernels), "split" (the split kernels forced), "staged" (where it can run).

Shape: 32 query heads, 8 KV heads (--heads HQ HK for others, e.g. 12 2 as in Qwen2.5-1.5B),
head_dim 128 (--head-dim 64 as in Llama 3.2 1B, 256 as in Gemma 3; the bars are checked at
32 / 8 heads x 128 only), page_size 16, one layer; every sequence of a batch holds `context`
tokens (random normal K/V quantized by kv_write; pages in a random
order, as a fragmented pool would hand them out).  Times: --iters calls captured
into one graph (ours: rocmforge.device.Graph; PyTorch: torch.cuda.CUDAGraph), events around a
replay that is queued behind an untimed one (so the host's graph launch happens while the
GPU is busy and is not in the interval), best of --repeats: GPU time per call.  Effective bandwidth = K+V page
bytes read / time, against a device-to-device copy (bytes read + written) in the same run.
Bars: MXFP6 at 32k >= 2x faster than the float16 PyTorch baseline; MX KV bytes within 1% of
8.25 / 6.25 / 4.25 bits per value.
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
from rocmforge.kv import CacheConfig, KvCacheDtype  # noqa: E402
from rocmforge.kv.gpu import DeviceStorage  # noqa: E402
from rocmforge.ops import attention as attn_ops  # noqa: E402

HQ, HK, D, PAGE = 32, 8, 128, 16
MX_BITS = {KvCacheDtype.MXFP8_E4M3: 8.25, KvCacheDtype.MXFP6_E2M3: 6.25,
           KvCacheDtype.MXFP6_E3M2: 6.25, KvCacheDtype.MXFP4: 4.25}


def set_heads(hq: int, hk: int, d: int = 128):
    """Query heads, KV heads and head_dim of every case from here on (module-wide, as HQ,
    HK and D)."""
    global HQ, HK, D
    if hk < 1 or hq < 1 or hq % hk:
        raise SystemExit(f"--heads: query heads ({hq}) must be a positive multiple of the KV heads ({hk})")
    if d not in attn_ops.ATTN_HEAD_DIMS:
        raise SystemExit(f"--head-dim: {d} not in {attn_ops.ATTN_HEAD_DIMS}")
    HQ, HK, D = hq, hk, d


def time_ms(dev, fn, iters, repeats, graph=True):
    """Best mean ms per fn(stream) call.  graph=True: `iters` calls captured into one
    graph; each timed replay is queued behind an untimed one, so that the events measure
    GPU time only, not the host's graph launch (H100, batch 1 x 32k, 10 calls a replay:
    30.0 us a call timed from an idle GPU, 29.8 queued; torch_sdpa_ms alike 51.0 / 50.3)."""
    s = dev.stream()
    for _ in range(3):
        fn(s)
    s.synchronize()
    if graph:
        g = dev.graph(s)
        with g:
            for _ in range(iters):
                fn(s)
        g.replay()
        s.synchronize()
    best = float("inf")
    for _ in range(repeats):
        if graph:
            g.replay()               # untimed: the GPU is busy while the timed replay is queued
        e0, e1 = dev.event().record(s), dev.event()
        if graph:
            g.replay()
        else:
            for _ in range(iters):
                fn(s)
        e1.record(s)
        best = min(best, e1.elapsed_ms(e0) / iters)
    return best


def copy_gbs(dev, nbytes, iters, repeats):
    a, b = dev.alloc(nbytes), dev.alloc(nbytes)
    a.memset(1)
    ms = time_ms(dev, lambda st: b.copy_from_device(a, stream=st), iters, repeats, graph=False)
    a.free(), b.free()
    return 2 * nbytes / ms / 1e6


def fill_cache(dev, cfg, batch, ctx, rng):
    """DeviceStorage with `batch` sequences of `ctx` tokens; returns (storage, table, lens)."""
    st = DeviceStorage(dev, cfg)
    n_pages = batch * ctx // PAGE
    order = rng.permutation(cfg.max_pages)[:n_pages].astype(np.int32)
    chunk = 4096
    kf = dev.to_device(rng.standard_normal((chunk, HK, D)).astype(np.float32))
    vf = dev.to_device(rng.standard_normal((chunk, HK, D)).astype(np.float32))
    pos = np.arange(batch * ctx)
    for lo in range(0, batch * ctx, chunk):
        p = pos[lo:lo + chunk]
        idx = dev.to_device(np.stack([order[p // PAGE], (p % PAGE).astype(np.int32)]))
        n = len(p)
        attn_ops.kv_write(st.k_pages[0], st.v_pages[0], kf, vf,
                          idx.view(0, 4 * n, dtype=np.int32, shape=(n,)),
                          idx.view(4 * n, 4 * n, dtype=np.int32, shape=(n,)), cfg)
        dev.synchronize()
    table = dev.to_device(order.reshape(batch, ctx // PAGE))
    lens = dev.to_device(np.full(batch, ctx, np.int32))
    return st, table, lens


def attend(q, st, table, lens, cfg, ctx, n_splits, body, ws, out=None, stream=None):
    """paged_decode_attention over layer 0 of storage ``st`` at this benchmark's shape."""
    return attn_ops.paged_decode_attention(
        q, st.k_pages[0], st.v_pages[0], table, lens, dtype=cfg.dtype, num_kv_heads=HK,
        head_dim=D, page_size=PAGE, row_bytes=cfg.row_bytes, scale=D ** -0.5, max_len=ctx,
        n_splits=n_splits, out=out, workspace=ws, stream=stream, body=body)


def decode_case(dev, dtype, batch, ctx, n_splits=None, body="auto"):
    """One filled cache and its attention call (probe_kv_attention.py, trace_kv_attention.py):
    returns (run, body, n_splits, per, cfg, ws) with run(stream=None, out=None)."""
    rng = np.random.default_rng(0)
    cfg = CacheConfig(PAGE, batch * ctx // PAGE + 1, HK, D, 1, dtype)
    st, table, lens = fill_cache(dev, cfg, batch, ctx, rng)
    q = dev.to_device(rng.standard_normal((batch, HQ, D)).astype(np.float32))
    body, n_splits, per = attn_ops.decode_plan(dev, dtype, D, HK, HQ, PAGE, ctx, batch,
                                               n_splits=n_splits, body=body)
    ws = dev.alloc(attn_ops.workspace_bytes(batch, HQ, D, n_splits))

    def run(stream=None, out=None):
        return attend(q, st, table, lens, cfg, ctx, n_splits, body, ws, out=out, stream=stream)
    return run, body, n_splits, per, cfg, ws


def torch_sdpa_graph(batch, ctx, calls):
    """The peer: PyTorch's float16 scaled_dot_product_attention (GQA) on a dense cache of
    this benchmark's shape, ``calls`` calls captured in one torch.cuda.CUDAGraph after a
    warm-up on a side stream.  Returns (graph, tensors): keep the tensors while replaying;
    None without torch or CUDA (also used by sustained_kv_attention.py)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    q = torch.randn(batch, HQ, 1, D, device="cuda", dtype=torch.float16)
    k = torch.randn(batch, HK, ctx, D, device="cuda", dtype=torch.float16)
    v = torch.randn(batch, HK, ctx, D, device="cuda", dtype=torch.float16)

    def run():
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(st)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            run()
    return graph, (q, k, v)


def torch_sdpa_ms(batch, ctx, iters, repeats):
    peer = torch_sdpa_graph(batch, ctx, iters)
    if peer is None:
        return None
    import torch
    graph, tensors = peer
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        graph.replay()               # untimed, as in time_ms
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        best = min(best, a.elapsed_time(b) / iters)
    del graph, tensors
    torch.cuda.empty_cache()
    return best


def accuracy(dev, dtypes, rng, hk=4):
    """Worst max|GPU - CPU decode_attention| / max|v| per dtype (``hk`` KV heads of head_dim
    D: 4 unless --heads names them; standard normal q/K/V, contexts 1..4099, page 16/32, GQA
    1/4/8, window none/24): the figure the tests' tolerances are stated against."""
    from rocmforge.kv import KvCache, decode_attention
    print(f"\n| dtype | body | worst max|GPU - CPU| / max|v| ({hk} KV heads of head_dim {D}) |")
    print("|---|---|---:|")
    worst_all = {}
    for dt in dtypes:
        worst = {}
        for page in (16, 32):
            lens = [1, 17, 33, 100, 1037, 4099]
            cfg = CacheConfig(page, sum(-(-n // page) for n in lens) + 4, hk, D, 1, dt)
            host, dc = KvCache(cfg), KvCache(cfg, storage=DeviceStorage(dev, cfg))
            for sid, n in enumerate(lens):
                k = rng.standard_normal((n, hk, D)).astype(np.float32)
                v = rng.standard_normal((n, hk, D)).astype(np.float32)
                for c in (host, dc):
                    c.allocate(sid)
                    c.append(sid, 0, k, v)
            sids = list(range(len(lens)))
            for gqa in (1, 4, 8):
                for window in (None, 24):
                    q = rng.standard_normal((len(sids), hk * gqa, D)).astype(np.float32)
                    ref = decode_attention(host, 0, sids, q, D ** -0.5, window=window)
                    for body in ("staged", "split"):
                        if body == "staged" and attn_ops.staged_unsupported(dev, dt, D, hk, gqa, page):
                            continue
                        out = attn_ops.decode_attention(dc, 0, sids, q, D ** -0.5, window=window,
                                                        body=body).copy_to_host()
                        for b, sid in enumerate(sids):
                            vmax = np.abs(host.read(sid, 0)[1]).max()
                            worst[body] = max(worst.get(body, 0.0),
                                              float(np.abs(out[b] - ref[b]).max() / vmax))
        for body, x in worst.items():
            worst_all[f"{dt.value}/{body}"] = x
            print(f"| {dt.name} | {body} | {x:.2e} |", flush=True)
    return worst_all


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", type=int, nargs="*", default=[1024, 4096, 16384, 32768])
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--dtypes", nargs="*", default=[d.value for d in KvCacheDtype])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--splits", type=int, default=0, help="force n_splits (0: the plan)")
    ap.add_argument("--bodies", nargs="*", default=["auto"], choices=["auto", "staged", "split"])
    ap.add_argument("--heads", type=int, nargs=2, default=None, metavar=("HQ", "HK"),
                    help="query and KV heads (default 32 8; --accuracy: its KV heads, default 4)")
    ap.add_argument("--head-dim", type=int, default=D, help="head_dim (default 128)")
    ap.add_argument("--accuracy", action="store_true",
                    help="only measure the worst GPU-vs-CPU error of each dtype (at --head-dim)")
    args = ap.parse_args(argv)
    set_heads(*(args.heads or (HQ, HK)), args.head_dim)
    bar_shape = (HQ, HK, D) == (32, 8, 128)
    if not device.gpu_available():
        print("no GPU:", device.backend_status())
        return 2
    dev = device.get_device()
    rng = np.random.default_rng(0)
    copy = copy_gbs(dev, 1 << 30, 10, args.repeats)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {dev.name} ({dev.arch}, {dev.info.multiprocessors} SMs), {when}; "
          f"device copy {copy:.0f} GB/s (read + write)")
    print(f"# decode attention: {HQ} query heads, {HK} KV heads, head_dim {D}, page_size {PAGE}, "
          f"1 layer")
    dtypes = [KvCacheDtype.parse(d) for d in args.dtypes]
    if args.accuracy:
        accuracy(dev, dtypes, rng, args.heads[1] if args.heads else 4)
        return 0
    print("\n| dtype | bits/value | KV bytes/token/layer | vs 8.25/6.25/4.25 |")
    print("|---|---:|---:|---|")
    mem = {}
    ok_bits = True
    for dt in dtypes:
        cfg = CacheConfig(PAGE, 64, HK, D, 1, dt)
        st = DeviceStorage(dev, cfg)
        bits = 8 * st.nbytes / (2 * 64 * PAGE * HK * D)
        want = MX_BITS.get(dt)
        good = want is None or abs(bits - want) <= 0.01 * want
        ok_bits &= good
        mem[dt.value] = {"bits_per_value": bits, "bytes_per_token": cfg.bytes_per_token}
        print(f"| {dt.name} | {bits:.3f} | {cfg.bytes_per_token} | "
              f"{'-' if want is None else ('ok' if good else 'FAIL')} |")
        del st
    rows = []
    print("\n| batch | context | dtype | kernel (splits) | ms | GB/s | % copy | torch f16 SDPA ms | speed-up |")
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for batch in args.batches:
        for ctx in args.contexts:
            iters = max(10, args.iters * 4096 // max(4096, ctx))
            t_torch = torch_sdpa_ms(batch, ctx, iters, args.repeats)
            q = dev.to_device(rng.standard_normal((batch, HQ, D)).astype(np.float32))
            out = dev.empty((batch, HQ, D), np.float32)
            for dt in dtypes:
                cfg = CacheConfig(PAGE, batch * ctx // PAGE + 1, HK, D, 1, dt)
                st, table, lens = fill_cache(dev, cfg, batch, ctx, rng)
                for body in args.bodies:
                    try:
                        used, n_splits, _ = attn_ops.decode_plan(
                            dev, dt, D, HK, HQ, PAGE, ctx, batch, n_splits=args.splits or None,
                            body=body)
                    except ValueError:
                        continue                       # staged asked for where it cannot run
                    if body == "auto" and len(args.bodies) > 1 and used in args.bodies:
                        continue                       # timed under its own name
                    ws = dev.alloc(attn_ops.workspace_bytes(batch, HQ, D, n_splits))

                    def run(stream):
                        attend(q, st, table, lens, cfg, ctx, n_splits, used, ws, out=out,
                               stream=stream)
                    ms = time_ms(dev, run, iters, args.repeats)
                    nbytes = 2 * batch * ctx * cfg.row_bytes
                    gbs = nbytes / ms / 1e6
                    sp = None if t_torch is None else t_torch / ms
                    rows.append({"batch": batch, "context": ctx, "dtype": dt.value, "body": used,
                                 "auto": used == attn_ops.decode_plan(dev, dt, D, HK, HQ, PAGE, ctx,
                                                                      batch)[0],
                                 "ms": ms, "gbs": gbs, "copy_frac": gbs / copy,
                                 "torch_f16_ms": t_torch, "speedup": sp, "n_splits": n_splits})
                    print(f"| {batch} | {ctx} | {dt.name} | {used} ({n_splits}) | {ms:.4f} | {gbs:.0f} | "
                          f"{100 * gbs / copy:.1f}% | {'-' if t_torch is None else f'{t_torch:.4f}'} | "
                          f"{'-' if sp is None else f'{sp:.2f}x'} |", flush=True)
                    del ws
                del st, table, lens
    fails = []
    for r in rows:
        if bar_shape and r["dtype"].startswith("mxfp6") and r["context"] == 32768 and r["auto"] \
                and r["speedup"] is not None and r["speedup"] < 2.0:
            fails.append(f"{r['dtype']} batch {r['batch']} 32k: {r['speedup']:.3f}x < 2x")
    if not ok_bits:
        fails.append("MX bits per value off by more than 1%")
    print("\nbars:", "all met" if not fails else "; ".join(fails))
    if args.json:
        args.json.write_text(json.dumps({"device": dev.name, "arch": dev.arch, "date": when,
                                         "q_heads": HQ, "kv_heads": HK, "head_dim": D,
                                         "copy_gbs": copy, "memory": mem, "rows": rows,
                                         "fails": fails}, indent=1))
    return 0 if not fails else 1


if __name__ == "__main__":
    sys.exit(main())
