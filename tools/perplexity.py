#!/usr/bin/env python3
"""Perplexity of a GGUF model on a text, optionally for several KV cache dtypes.

    python tools/perplexity.py --model ../shared/data/models/stories260K.gguf \\
        --text ../shared/data/text/tinystories_sample.txt --stories 200 --n-tokens 512

With --stories N the text is split on <|endoftext|>, the first N stories stripped and
joined with newlines (the protocol of tests/model/test_engine.py).  --chunk-size makes
later tokens read earlier ones back from the KV cache, so the KV dtype matters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--text", type=Path, required=True)
    ap.add_argument("--stories", type=int, default=None)
    ap.add_argument("--n-tokens", type=int, default=512)
    ap.add_argument("--kv-cache-dtype", action="append", default=None,
                    help="repeatable; default f32")
    ap.add_argument("--weights-dtype", default=None)
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args(argv)
    import rocmforge
    try:
        text = args.text.read_text(encoding="utf-8")
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.stories:
        text = "\n".join(s.strip() for s in text.split("<|endoftext|>")[:args.stories])
    for kv in args.kv_cache_dtype or ["f32"]:
        try:
            with rocmforge.load(args.model, kv_cache_dtype=kv, weights_dtype=args.weights_dtype,
                                n_ctx=max(args.n_tokens, 16), max_batch=1) as m:
                ids = m.tokenize(text)[:args.n_tokens]
                ppl = m.perplexity(ids, chunk_size=args.chunk_size)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{args.model.name}  kv={kv:<11} weights={args.weights_dtype or 'file'}  "
              f"tokens={len(ids)}  ppl={ppl:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
