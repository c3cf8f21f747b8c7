#!/usr/bin/env python3
"""Per-kernel GPU time of one decode step and one prefill, through CUPTI (torch.profiler
records every kernel of the process, including rocmforge's driver-API launches).

    python bench/profile_gpu_step.py [--kv f32] [--prompt 128] [--steps 5]
Model: tools/make_gemma_shaped_gguf.py's Gemma-3-270M-shaped file (built into $TMPDIR).
Needs a CUDA GPU and PyTorch (only for the profiler).
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kv", default="f32")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    import make_gemma_shaped_gguf as mk
    import rocmforge
    from torch.profiler import ProfilerActivity, profile

    path = Path(tempfile.gettempdir()) / "rocmforge_gemma3_shaped_seed0.gguf"
    if not path.exists():
        mk.build(path, seed=0)
    m = rocmforge.load(path, device="cuda", kv_cache_dtype=a.kv, n_ctx=a.prompt + 400,
                       max_batch=1)
    g, cache = m.transformer, m.cache
    ids = [2] + list(range(300, 300 + a.prompt - 1))
    cache.allocate(0)
    g.prefill(ids, 0, cache, last_only=True)
    for _ in range(3):                      # eager, capture, replay
        g.decode([5], [0], cache)
    t = time.perf_counter()
    for _ in range(50):
        g.decode([5], [0], cache)
    print(f"{a.kv}: decode step (graph replay, context ~{cache.seq_len(0)}): "
          f"{(time.perf_counter() - t) / 50 * 1e3:.3f} ms wall")

    def show(what, fn):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
        agg = collections.defaultdict(lambda: [0, 0.0])
        for e in prof.events():
            if e.device_type.name == "CUDA":
                s = agg[e.name]
                s[0] += 1
                s[1] += getattr(e, "device_time_total", 0) or e.cuda_time_total
        total = sum(v[1] for v in agg.values())
        print(f"{what}: GPU time {total / 1e3:.3f} ms")
        for k, (c, us) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
            print(f"  {k[:34]:<34} {c:>5} {us / 1e3:8.3f} ms  {us / c:7.2f} us/call")

    def decode():
        for _ in range(a.steps):
            g.decode([5], [0], cache)

    def prefill():
        cache.free(0)
        cache.allocate(0)
        g.prefill(ids, 0, cache, last_only=True)

    show(f"{a.steps} decode steps", decode)
    show(f"prefill {a.prompt}", prefill)
    m.close()


if __name__ == "__main__":
    main()
