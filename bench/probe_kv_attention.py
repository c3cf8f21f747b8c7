#!/usr/bin/env python3
"""Where the staged decode-attention kernel's time goes (an experiment, not the benchmark).

Times one shape of paged decode attention (graph replay, as bench_kv_attention.py) under a
variant build of kernels/attention.hip, beside PyTorch's float16 SDPA in the same run:

    --define RF_STAGED_NOMATH    the page copies alone (no arithmetic; wrong output)
    --define RF_STAGED_NOCOPY    the arithmetic alone on constant tiles (wrong output)
    --define RF_STAGED_NOEPI     no partial results written (wrong output)
    --no-combine                 skip the split-merge kernel (attn_combine; wrong output)

A variant is built with nvcc into a temporary copy of the package's code objects (only
attention.<target> is rebuilt, with the extra -D flags) and loaded through
ROCMFORGE_KERNEL_DIR.  ``build_variant`` is shared with trace_kv_attention.py.

    python bench/probe_kv_attention.py                          # the shipped kernels
    python bench/probe_kv_attention.py --define RF_STAGED_NOMATH
    python bench/probe_kv_attention.py --no-combine --batch 1
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))


def build_variant(defines, target: str, out_dir: Path | None = None) -> Path:
    """A copy of rocmforge/_kernels (in ``out_dir``, else a new temporary folder) with
    attention.<target>.cubin rebuilt with -D<define> for each of ``defines``; returns its
    folder (manifest hash updated)."""
    import build_kernels
    nvcc = build_kernels.find_nvcc()
    if nvcc is None:
        raise SystemExit("building a variant needs nvcc (set ROCMFORGE_NVCC)")
    src = ROOT / "rocmforge" / "_kernels"
    if not (src / "manifest.json").exists():
        raise SystemExit(f"{src} has no manifest: run python tools/build_kernels.py first")
    out = Path(out_dir or tempfile.mkdtemp(prefix="rf_variant_")) / "kernels"
    shutil.copytree(src, out)
    obj = out / f"attention.{target}.cubin"
    cmd = build_kernels.nvidia_command(nvcc, ROOT / "kernels" / "attention.hip", target, obj)
    cmd[1:1] = [f"-D{d}" for d in defines]
    err = build_kernels._compile(cmd, obj)
    if err:
        raise SystemExit(f"variant build {err}")
    man = json.loads((out / "manifest.json").read_text())
    for o in man["objects"]:
        if o["file"] == obj.name:
            o["sha256"] = hashlib.sha256(obj.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(man))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--context", type=int, default=32768)
    ap.add_argument("--dtype", default="mxfp6_e2m3")
    ap.add_argument("--body", default="auto", choices=["auto", "staged", "split"])
    ap.add_argument("--splits", type=int, default=0, help="force n_splits (0: the plan)")
    ap.add_argument("--define", nargs="*", default=[], help="macros for a variant build")
    ap.add_argument("--no-combine", action="store_true", help="skip attn_combine")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--heads", type=int, nargs=2, default=[32, 8], metavar=("HQ", "HK"),
                    help="query and KV heads (default 32 8)")
    ap.add_argument("--head-dim", type=int, default=128)
    args = ap.parse_args(argv)

    from rocmforge import device
    if not device.gpu_available():
        print("no GPU:", device.backend_status())
        return 2
    dev = device.get_device()
    if args.define:
        os.environ["ROCMFORGE_KERNEL_DIR"] = str(build_variant(args.define, dev.arch))
    import bench_kv_attention as bk
    from rocmforge.ops import attention as attn_ops
    bk.set_heads(*args.heads, args.head_dim)
    if args.no_combine:
        real = attn_ops.get_kernel

        class _Skip:
            def launch(self, *a, **k):
                pass

        attn_ops.get_kernel = lambda d, name: _Skip() if name == "attn_combine" else real(d, name)
    what = " ".join([f"-D{d}" for d in args.define] + (["no combine"] if args.no_combine else [])) \
        or "shipped kernels"
    print(f"# {dev.name} ({dev.arch}); {what}; {args.dtype}, {bk.HQ} query heads, {bk.HK} KV "
          f"heads, head_dim {bk.D}, page {bk.PAGE}, context {args.context}")
    print("| batch | kernel (splits) | us | KV GB/s | torch f16 SDPA us | ratio |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch in args.batch:
        run, body, n_splits, _, cfg, _ = bk.decode_case(dev, args.dtype, batch, args.context,
                                                        args.splits or None, args.body)
        out = dev.empty((batch, bk.HQ, bk.D), np.float32)
        iters = max(10, 30 * 4096 // max(4096, args.context))
        ms = bk.time_ms(dev, lambda stream: run(stream, out), iters, args.repeats)
        t_torch = bk.torch_sdpa_ms(batch, args.context, iters, args.repeats)
        gbs = 2 * batch * args.context * cfg.row_bytes / ms / 1e6
        ratio = "-" if t_torch is None else f"{t_torch / ms:.2f}x"
        torch_us = "-" if t_torch is None else f"{1000 * t_torch:.1f}"
        print(f"| {batch} | {body} ({n_splits}) | {1000 * ms:.1f} | {gbs:.0f} | {torch_us} | {ratio} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
