#!/usr/bin/env python3
"""Print a GGUF file's metadata and tensor table (like llama.cpp's gguf_dump).

    python tools/gguf_dump.py model.gguf [--json] [--items N]

Arrays are abbreviated to their type, length and first N items.  Shapes are numpy
order (..., ne1, ne0); ``--json`` also gives GGUF ``dims`` (ne0 first).  A bad file
prints one line ``gguf_dump: error: ...`` on stderr and exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rocmforge.gguf.errors import GGUFError  # noqa: E402
from rocmforge.gguf.reader import GGUFReader, StringArray  # noqa: E402


def _plain(value, items: int):
    """A JSON-able rendering; arrays as {element_type, length, head}."""
    if isinstance(value, (StringArray, np.ndarray, tuple)):
        head = value[:items]
        head = head.tolist() if isinstance(head, np.ndarray) else [_plain(v, items) for v in head]
        return {"length": len(value), "head": head}
    return value


def _type_name(md, key: str) -> str:
    vt, et = md.value_type(key), md.element_type(key)
    return f"{et.name}[{len(md[key])}]" if et is not None else vt.name


def _short(value, items: int) -> str:
    if isinstance(value, (StringArray, np.ndarray, tuple)):
        head = list(value[:items])      # numpy scalars: str() is the shortest repr (1e-05)
        more = ", ..." if len(value) > items else ""
        return "[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in head) + more + "]"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def dump_text(r: GGUFReader, items: int) -> str:
    md = r.metadata
    lines = [f"{r.source}: GGUF v{r.version}, {len(md)} metadata keys, {len(r.tensors)} tensors, "
             f"alignment {r.alignment}, data section at byte {r.data_offset}, {r.file_size} bytes",
             "", "metadata:"]
    kw = max((len(k) for k in md), default=0)
    tw = max((len(_type_name(md, k)) for k in md), default=0)
    for key in md:
        value = md[key]
        shown = str(np.float32(value)) if md.value_type(key).name == "FLOAT32" else _short(value, items)
        lines.append(f"  {key:<{kw}}  {_type_name(md, key):<{tw}}  {shown}")
    lines += ["", "tensors:"]
    rows = [("#", "name", "type", "shape", "bytes", "offset")]
    for i, t in enumerate(r.tensors.values()):
        rows.append((str(i), t.name, t.ttype.name, str(t.shape),
                     str(t.nbytes), str(t.offset)))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(v.rjust(w) if c in (0, 4, 5) else v.ljust(w)
                                      for c, (v, w) in enumerate(zip(row, widths))).rstrip())
    total = sum(t.nbytes for t in r.tensors.values())
    lines.append(f"  total tensor bytes: {total}")
    return "\n".join(lines)


def dump_json(r: GGUFReader, items: int) -> str:
    md = r.metadata
    out = {
        "file": r.source, "version": r.version, "alignment": r.alignment,
        "data_offset": r.data_offset, "file_size": r.file_size,
        "metadata": {k: {"type": md.value_type(k).name,
                         **({"element_type": md.element_type(k).name} if md.element_type(k) else {}),
                         "value": _plain(md[k], items)} for k in md},
        "tensors": [{"name": t.name, "type": t.ttype.name, "shape": list(t.shape), "dims": list(t.dims),
                     "offset": t.offset, "nbytes": t.nbytes} for t in r.tensors.values()],
    }
    return json.dumps(out, indent=1, ensure_ascii=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--items", type=int, default=5, help="array items shown (default 5)")
    args = ap.parse_args(argv)
    try:
        with GGUFReader(args.file) as r:
            text = dump_json(r, args.items) if args.json else dump_text(r, args.items)
    except (GGUFError, OSError) as e:
        print(f"gguf_dump: error: {e}", file=sys.stderr)
        return 1
    try:
        print(text)
    except BrokenPipeError:   # `| head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
