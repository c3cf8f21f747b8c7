#!/usr/bin/env python3
"""Write a GGUF with Gemma 3 270M Q4_K_M's exact layout and random weights.

    python tools/make_gemma_shaped_gguf.py OUT.gguf [--seed 0] [--layers 18] [--vocab 262144]

The real file (253 MB) cannot travel to the GPU machine; this one is built there in a few
seconds.  Same metadata keys and values (gemma3.*, tokenizer.ggml.* flags), same tensor
names, order, shapes and types: Q8_0 token_embd (tied output), Q5_0 attn_q / attn_k /
ffn_gate / ffn_up, Q4_K attn_output, attn_v Q8_0 and ffn_down Q6_K on layers
0 1 4 7 10 13 15 16 17 (attn_v Q5_0 and ffn_down Q4_K elsewhere), F32 norms.  Block
bytes are random but valid: small positive float16 scales, random quants, chosen so that
weights are of order 0.05 and activations stay finite through 18 layers.  The tokenizer
is synthetic (llama/SentencePiece style: 4 specials, 256 byte tokens, then pieces
"▁t<i>") so that generation and detokenization work over the full vocabulary.
``--layers`` / ``--vocab`` shrink it for CPU tests.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rocmforge.gguf.constants import GgufTensorType as T  # noqa: E402
from rocmforge.gguf.writer import GGUFWriter  # noqa: E402

DIM, FFN, HEADS, KV_HEADS, HEAD_DIM, LAYERS, VOCAB = 640, 2048, 4, 1, 256, 18, 262144
HIGH_PRECISION_LAYERS = (0, 1, 4, 7, 10, 13, 15, 16, 17)   # attn_v Q8_0, ffn_down Q6_K


def _f16(rng, n, lo, hi) -> np.ndarray:
    """(n, 2) uint8: float16 bits of uniform values in [lo, hi)."""
    return rng.uniform(lo, hi, n).astype("<f2").view(np.uint8).reshape(n, 2)


def random_blocks(rng, ttype: T, n_out: int, n_in: int) -> np.ndarray:
    """uint8 (n_out * row_bytes,): valid random blocks of ``ttype`` (weights ~ 0.05)."""
    if ttype == T.Q8_0:
        nb = n_out * n_in // 32
        b = np.empty((nb, 34), np.uint8)
        b[:, :2] = _f16(rng, nb, 2e-4, 4e-4)
        b[:, 2:] = rng.integers(0, 256, (nb, 32), dtype=np.uint8)
    elif ttype == T.Q5_0:
        nb = n_out * n_in // 32
        b = rng.integers(0, 256, (nb, 22), dtype=np.uint8)
        b[:, :2] = _f16(rng, nb, 2e-3, 4e-3)
    elif ttype == T.Q4_K:
        nb = n_out * n_in // 256
        b = rng.integers(0, 256, (nb, 144), dtype=np.uint8)
        b[:, 0:2] = _f16(rng, nb, 4e-5, 8e-5)           # d
        b[:, 2:4] = _f16(rng, nb, 3e-4, 6e-4)           # dmin (centres d*sc*q - dmin*m)
    elif ttype == T.Q6_K:
        nb = n_out * n_in // 256
        b = rng.integers(0, 256, (nb, 210), dtype=np.uint8)
        b[:, 208:210] = _f16(rng, nb, 8e-6, 1.6e-5)
    else:
        raise ValueError(f"no random block maker for {ttype.name}")
    return b.reshape(-1)


def tokenizer_metadata(vocab: int) -> dict:
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
    types = np.ones(vocab, np.int32)
    types[:3], types[3], types[4:260] = 3, 2, 6
    scores = -np.arange(vocab, dtype=np.float32)
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
            "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.padding_token_id": 0,
            "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_sep_token": False,
            "tokenizer.ggml.add_eos_token": False, "tokenizer.ggml.add_space_prefix": False}


def build(path, seed: int = 0, layers: int = LAYERS, vocab: int = VOCAB, heads: int = HEADS,
          kv_heads: int = KV_HEADS, head_dim: int = HEAD_DIM) -> Path:
    """Write the file; ``heads`` / ``kv_heads`` / ``head_dim`` change the attention shape
    (e.g. 8 / 4 / 128, which the staged MX attention kernel runs)."""
    from rocmforge.gguf.constants import GgufValueType as V
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path)
    u32 = lambda k, v: w.add(k, v, V.UINT32)  # noqa: E731
    w.add("general.architecture", "gemma3")
    w.add("general.type", "model")
    w.add("general.name", "Gemma 3 270m (random weights, rocmforge test)")
    w.add("general.basename", "gemma-3")
    w.add("general.size_label", "270M")
    u32("gemma3.context_length", 32768)
    u32("gemma3.embedding_length", DIM)
    u32("gemma3.block_count", layers)
    u32("gemma3.feed_forward_length", FFN)
    u32("gemma3.attention.head_count", heads)
    w.add("gemma3.attention.layer_norm_rms_epsilon", 1e-6, V.FLOAT32)
    u32("gemma3.attention.key_length", head_dim)
    u32("gemma3.attention.value_length", head_dim)
    w.add("gemma3.rope.freq_base", 1e6, V.FLOAT32)
    u32("gemma3.attention.sliding_window", 512)
    u32("gemma3.attention.head_count_kv", kv_heads)
    for k, v in tokenizer_metadata(vocab).items():
        if isinstance(v, (bool, np.bool_)):
            w.add(k, bool(v), V.BOOL)
        elif isinstance(v, int):
            u32(k, v)
        elif isinstance(v, np.ndarray):
            w.add(k, v.tolist(), V.ARRAY, V.FLOAT32 if v.dtype == np.float32 else V.INT32)
        else:
            w.add(k, v)
    u32("general.quantization_version", 2)
    u32("general.file_type", 15)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def mat(name, ttype, n_out, n_in):
        w.add_tensor(name, random_blocks(rng, ttype, n_out, n_in), ttype, shape=(n_out, n_in))

    w.add_tensor("output_norm.weight", norm(DIM))
    mat("token_embd.weight", T.Q8_0, vocab, DIM)
    for i in range(layers):
        p = f"blk.{i}."
        hi = i in HIGH_PRECISION_LAYERS
        mat(p + "attn_k.weight", T.Q5_0, kv_heads * head_dim, DIM)
        w.add_tensor(p + "attn_k_norm.weight", norm(head_dim))
        w.add_tensor(p + "attn_norm.weight", norm(DIM))
        mat(p + "attn_output.weight", T.Q4_K, DIM, heads * head_dim)
        mat(p + "attn_q.weight", T.Q5_0, heads * head_dim, DIM)
        w.add_tensor(p + "attn_q_norm.weight", norm(head_dim))
        mat(p + "attn_v.weight", T.Q8_0 if hi else T.Q5_0, kv_heads * head_dim, DIM)
        mat(p + "ffn_down.weight", T.Q6_K if hi else T.Q4_K, DIM, FFN)
        mat(p + "ffn_gate.weight", T.Q5_0, FFN, DIM)
        w.add_tensor(p + "ffn_norm.weight", norm(DIM))
        mat(p + "ffn_up.weight", T.Q5_0, FFN, DIM)
        w.add_tensor(p + "post_attention_norm.weight", norm(DIM))
        w.add_tensor(p + "post_ffw_norm.weight", norm(DIM))
    return w.write()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=LAYERS)
    ap.add_argument("--vocab", type=int, default=VOCAB)
    a = ap.parse_args(argv)
    print(build(a.out, a.seed, a.layers, a.vocab))
    return 0


if __name__ == "__main__":
    sys.exit(main())
