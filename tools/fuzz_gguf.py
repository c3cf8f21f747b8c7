#!/usr/bin/env python3
"""Fuzz the GGUF reader: mutated real files must raise GGUFError or open cleanly.

    python tools/fuzz_gguf.py --cases 200000 --seed 1 [FILE ...] [--save-failures DIR]
    python tools/fuzz_gguf.py --cases 3000 --vs-gguf-py models/stories260K.gguf   # differential

Each case mutates a copy of a seed file's header region (bit flips, random bytes,
interesting integers written at the parsed header/count/length/type/offset fields,
truncations, splices, insertions, deletions) and opens it from memory.  Anything but
``GGUFError`` escaping is a failure; a file that opens has all its metadata decoded and
every tensor view touched (first and last byte, typed view).  A segfault or a hang
would stop the run itself.  ``tests/gguf/test_fuzz.py`` runs the same engine.
"""
from __future__ import annotations

import argparse
import ctypes
import mmap
import random
import struct
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rocmforge.gguf.errors import GGUFError  # noqa: E402
from rocmforge.gguf.reader import GGUFReader, StringArray  # noqa: E402

DEFAULT_FILES = ["models/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf"]
HEADER_REGION = 64 * 1024          # mutate at most this prefix (whole header of stories260K)


def integer_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the integer fields of a valid file's header, found by parsing it."""
    r = GGUFReader(data)
    fields = [(4, 4), (8, 8), (16, 8)]
    for key in r.metadata:
        at = r.metadata.offset(key)
        klen = struct.unpack_from("<Q", data, at)[0]
        vat = at + 8 + klen + 4
        fields += [(at, 8), (vat - 4, 4)]
        vt = r.metadata.value_type(key)
        if vt == 8:                       # STRING: its length
            fields.append((vat, 8))
        elif vt == 9:                     # ARRAY: element type, count, first string lengths
            fields += [(vat, 4), (vat + 4, 8)]
            if r.metadata.element_type(key) == 8:
                pos = vat + 12
                for _ in range(min(4, len(r.metadata[key]))):
                    fields.append((pos, 8))
                    pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        else:
            fields.append((vat, {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1}.get(int(vt), 8)))
    for t in r.tensors.values():
        at = t.info_offset
        nlen = struct.unpack_from("<Q", data, at)[0]
        nd_at = at + 8 + nlen
        fields += [(at, 8), (nd_at, 4)]
        fields += [(nd_at + 4 + 8 * k, 8) for k in range(len(t.dims))]
        type_at = nd_at + 4 + 8 * len(t.dims)
        fields += [(type_at, 4), (type_at + 4, 8)]
    return [f for f in fields if f[0] + f[1] <= HEADER_REGION]


def interesting(rng: random.Random, old: int, width: int, size: int) -> int:
    top = (1 << (8 * width)) - 1
    pool = [0, 1, 2, 3, 4, 5, 7, 8, 12, 13, 31, 32, 33, 39, 40, 41, 63, 64, 255, 256, 1000, 1004,
            1005, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63,
            2**64 - 1, size, size - 1, size + 1, size // 2, size // 8, size // 13, size // 24,
            old + 1, old - 1, old * 2, old + 32, old ^ (1 << rng.randrange(8 * width)),
            rng.getrandbits(8 * width)]
    return rng.choice(pool) & top


def mutate(rng: random.Random, data: bytes, fields: list[tuple[int, int]], other: bytes) -> tuple[bytes, str]:
    """One mutated copy of ``data`` and a description of the mutation."""
    size = len(data)
    region = min(HEADER_REGION, size)
    kind = rng.choices(["field", "bitflip", "bytes", "truncate", "splice", "insert", "delete"],
                       weights=[40, 15, 10, 12, 10, 7, 6])[0]
    buf = bytearray(data[:region])
    tail = data[region:]
    if kind == "field" and fields:
        done = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            off, width = rng.choice(fields)
            old = int.from_bytes(buf[off:off + width], "little")
            new = interesting(rng, old, width, size)
            buf[off:off + width] = new.to_bytes(width, "little")
            done.append(f"{off}:{width}={new}")
        desc = "field " + " ".join(done)
    elif kind == "bitflip":
        pos = [rng.randrange(region) for _ in range(rng.choice([1, 1, 2, 4, 8]))]
        for p in pos:
            buf[p] ^= 1 << rng.randrange(8)
        desc = f"bitflip {pos}"
    elif kind == "bytes":
        p = rng.randrange(region)
        n = rng.choice([1, 2, 4, 8, 16])
        buf[p:p + n] = bytes(rng.getrandbits(8) for _ in range(n))[: max(0, region - p)]
        desc = f"bytes {p}+{n}"
    elif kind == "truncate":
        n = rng.randrange(region) if rng.random() < 0.8 else rng.randrange(size)
        return data[:n], f"truncate {n}"
    elif kind == "splice":
        src = other if rng.random() < 0.3 else data
        n = rng.choice([4, 8, 12, 24, 64, 256])
        a, b = rng.randrange(max(1, len(src) - n)), rng.randrange(region)
        buf[b:b + n] = src[a:a + n][: max(0, region - b)]
        desc = f"splice {a}->{b}+{n}"
    elif kind == "insert":
        p, n = rng.randrange(region), rng.choice([1, 4, 8, 13])
        buf[p:p] = bytes(rng.getrandbits(8) for _ in range(n))
        desc = f"insert {p}+{n}"
    else:
        p, n = rng.randrange(region), rng.choice([1, 4, 8, 13])
        del buf[p:p + n]
        desc = f"delete {p}+{n}"
    return bytes(buf) + tail, desc


class GuardedBuffer:
    """Places each case so that its last byte sits just before a PROT_NONE page.

    Reading even one byte past the end of the input then segfaults instead of silently
    reading neighbouring heap memory (Linux; elsewhere it is a plain buffer)."""

    def __init__(self, capacity: int):
        page = mmap.PAGESIZE
        self.data_end = -(-capacity // page) * page
        self.mm = mmap.mmap(-1, self.data_end + page)
        self.guarded = False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
            libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self.guarded = libc.mprotect(addr + self.data_end, page, 0) == 0   # PROT_NONE
        except (OSError, AttributeError):
            pass

    def place(self, buf: bytes) -> memoryview:
        start = self.data_end - len(buf)
        self.mm[start:self.data_end] = buf
        return memoryview(self.mm)[start:self.data_end]


def touch(r: GGUFReader) -> None:
    """Use everything a caller could: decode all metadata, read both ends of each view."""
    for value in r.metadata.values():
        if isinstance(value, StringArray):
            value.tolist()
        elif isinstance(value, np.ndarray):
            value.tobytes()
        elif isinstance(value, tuple):
            [v.tolist() if hasattr(v, "tolist") else v for v in value]
    for t in r.tensors.values():
        d = t.data
        if t.nbytes:
            int(d[0]) + int(d[-1])
        try:
            t.array
        except (TypeError, ImportError):   # block types; BF16 without ml_dtypes
            pass


def agrees_with_gguf_py(r: GGUFReader, buf: bytes) -> str | None:
    """None if gguf-py reads ``buf`` to the same keys and tensor index as ``r``, else why.

    gguf-py is less strict (no UTF-8/bool/overlap checks), so it is only asked about
    files we accept; it does not know rocmforge's MX type ids (>= 1000)."""
    import tempfile

    import gguf
    if any(t.ttype.value >= 1000 for t in r.tensors.values()):
        return None
    with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:   # gguf-py reads paths only
        tmp.write(buf)
        tmp.flush()
        try:
            g = gguf.GGUFReader(tmp.name)
        except Exception as e:  # noqa: BLE001
            return f"gguf-py rejects it: {type(e).__name__}: {e}"
        return _compare(r, g)


def _compare(r: GGUFReader, g) -> str | None:
    if [k for k in g.fields if not k.startswith("GGUF.")] != list(r.metadata):
        return "metadata keys differ"
    for t in g.tensors:
        o = r.tensors.get(t.name)
        if o is None or (o.file_offset, o.dims, int(o.ttype)) != (
                int(t.data_offset), tuple(int(d) for d in t.shape), int(t.tensor_type)):
            return f"tensor {t.name} differs"
    return None if len(g.tensors) == len(r.tensors) else "tensor count differs"


def run(files: list[Path], cases: int, seed: int, save: Path | None = None,
        log=print, vs_gguf_py: bool = False) -> dict:
    """Run ``cases`` mutations spread over ``files``; returns counts and failures."""
    rng = random.Random(seed)
    seeds = [Path(f).read_bytes() for f in files]
    fields = [integer_fields(d) for d in seeds]
    guard = GuardedBuffer(max(map(len, seeds)) + 4096)
    stats = {"cases": 0, "rejected": 0, "opened": 0, "failures": [], "guarded": guard.guarded}
    for i in range(cases):
        k = i % len(seeds)
        buf, desc = mutate(rng, seeds[k], fields[k], seeds[(k + 1) % len(seeds)])
        stats["cases"] += 1
        try:
            with GGUFReader(guard.place(buf)) as r:
                touch(r)
                why = agrees_with_gguf_py(r, buf) if vs_gguf_py else None
            stats["opened"] += 1
            if why:
                stats["failures"].append((Path(files[k]).name, i, desc, why, ""))
                log(f"DIFF {Path(files[k]).name} case {i} ({desc}): {why}")
        except GGUFError:
            stats["rejected"] += 1
        except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
            stats["failures"].append((Path(files[k]).name, i, desc, f"{type(e).__name__}: {e}",
                                      traceback.format_exc()))
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"case{i}.gguf").write_bytes(buf)
            log(f"FAIL {Path(files[k]).name} case {i} ({desc}): {type(e).__name__}: {e}")
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="seed GGUF files (default: the two shared ones)")
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vs-gguf-py", action="store_true",
                    help="also check that gguf-py reads every accepted file the same way (slow)")
    ap.add_argument("--save-failures", type=Path, default=None, help="write failing inputs here")
    args = ap.parse_args(argv)
    files = args.files or [Path(__file__).resolve().parent.parent.parent / "shared" / "data" / f
                           for f in DEFAULT_FILES]
    t0 = time.perf_counter()
    stats = run(files, args.cases, args.seed, args.save_failures, vs_gguf_py=args.vs_gguf_py)
    dt = time.perf_counter() - t0
    print(f"{stats['cases']} cases in {dt:.1f} s: {stats['rejected']} rejected with GGUFError, "
          f"{stats['opened']} opened, {len(stats['failures'])} failures "
          f"(guard page {'on' if stats['guarded'] else 'off'})")
    return 1 if stats["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
