"""Decoder-only transformers from GGUF: ``llama`` and ``gemma3``, on the CPU.

Both are pre-norm stacks of attention + gated FFN blocks; they differ as follows
(llama.cpp's llm_build_llama / llm_build_gemma3 define the behaviour we match):

                      llama                         gemma3
  embedding           lookup                        lookup * sqrt(dim)
  q/k norm            -                             RMSNorm per head (q_norm, k_norm)
  RoPE pairs          (2i, 2i+1)                    (i, i + d/2)  ("neox")
  RoPE base           rope.freq_base                global layers: rope.freq_base,
                                                    local layers: 10000
  attention window    full                          local layers: sliding_window
  post-norms          -                             after attention and after FFN
  FFN                 silu(gate) * up               gelu_tanh(gate) * up
  output              output.weight                 tied to token_embd

GGUF norm weights already include Gemma's "+1" (llama.cpp's converter adds it).
Shapes: n tokens, D = dim, H / KV = query / key-value heads, d = head_dim.
"""
from __future__ import annotations

import math

import numpy as np

from ..gguf import quants
from ..kv import KvCache
from ..kv.attention import cached_prefill_attention, decode_attention
from .config import ModelConfig, ModelError
from ..progress import Progress
from .weights import Linear


# ----------------------------------------------------------------------------- math


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x (..., d) float32, w (d,) -> x / sqrt(mean(x^2) + eps) * w."""
    ms = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True)
    return (x * (1.0 / np.sqrt(ms + eps)).astype(np.float32)) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.float32(math.sqrt(2.0 / math.pi))
    return 0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))


def rope_tables(pos: np.ndarray, base: float, n_dims: int, scale: float = 1.0):
    """cos, sin float32 (n, 1, n_dims/2) of positions pos (n,) for RoPE with ``base``."""
    half = n_dims // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_dims)        # (half,)
    ang = (pos.astype(np.float64) / scale)[:, None] * inv[None, :]           # (n, half)
    return (np.cos(ang).astype(np.float32)[:, None, :],
            np.sin(ang).astype(np.float32)[:, None, :])


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, n_dims: int,
               neox: bool) -> np.ndarray:
    """Rotate the first n_dims of x (n, heads, d) by the tables of ``rope_tables``."""
    half = n_dims // 2
    out = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:n_dims]
        out[..., :half] = a * cos - b * sin
        out[..., half:n_dims] = a * sin + b * cos
    else:
        a, b = x[..., 0:n_dims:2], x[..., 1:n_dims:2]
        out[..., 0:n_dims:2] = a * cos - b * sin
        out[..., 1:n_dims:2] = a * sin + b * cos
    return out


def rope(x: np.ndarray, pos: np.ndarray, base: float, n_dims: int, neox: bool,
         scale: float = 1.0) -> np.ndarray:
    """Rotary embedding of x (n, heads, d) at positions pos (n,); rotates the first n_dims."""
    return apply_rope(x, *rope_tables(pos, base, n_dims, scale), n_dims, neox)


# ----------------------------------------------------------------------------- model


class Layer:
    def __init__(self, get, i: int, cfg: ModelConfig):
        p = f"blk.{i}."
        self.attn_norm = get(p + "attn_norm.weight")            # (D,)
        self.wq = get(p + "attn_q.weight", linear=True)          # (H*d, D)
        self.wk = get(p + "attn_k.weight", linear=True)          # (KV*d, D)
        self.wv = get(p + "attn_v.weight", linear=True)          # (KV*d, D)
        self.wo = get(p + "attn_output.weight", linear=True)     # (D, H*d)
        self.ffn_norm = get(p + "ffn_norm.weight")              # (D,)
        self.w_gate = get(p + "ffn_gate.weight", linear=True)    # (F, D)
        self.w_up = get(p + "ffn_up.weight", linear=True)        # (F, D)
        self.w_down = get(p + "ffn_down.weight", linear=True)    # (D, F)
        if cfg.arch == "gemma3":
            self.q_norm = get(p + "attn_q_norm.weight")         # (d,)
            self.k_norm = get(p + "attn_k_norm.weight")         # (d,)
            self.post_attn_norm = get(p + "post_attention_norm.weight")  # (D,)
            self.post_ffn_norm = get(p + "post_ffw_norm.weight")         # (D,)


class Transformer:
    """The forward pass over a paged KV cache; ``tensors`` maps names to (raw, type, shape)."""

    def __init__(self, cfg: ModelConfig, tensors, weights_dtype=None, progress: bool = False):
        self.cfg = cfg
        self.requantized: list[str] = []       # matrices converted to weights_dtype
        self.kept: list[str] = []              # matrices whose rows are not whole blocks of it

        def get(name, linear=False):
            if name not in tensors:
                raise ModelError(f"{cfg.arch} model lacks tensor {name!r}")
            raw, ttype, shape = tensors[name]
            if not linear:
                return quants.dequantize(raw, ttype, shape=shape)
            if len(shape) != 2:
                raise ModelError(f"{name}: expected a matrix, got shape {shape}")
            lin = Linear(name, raw, ttype, shape[0], shape[1])
            if weights_dtype is not None:
                new = lin.requantized(weights_dtype)
                (self.requantized if new is not lin or lin.ttype == weights_dtype
                 else self.kept).append(name)
                lin = new
            return lin

        self.tok_embd = get("token_embd.weight", linear=True)   # (V, D)
        self.output_norm = get("output_norm.weight")            # (D,)
        self.output = get("output.weight", linear=True) if "output.weight" in tensors \
            else self.tok_embd                                   # (V, D), tied for gemma3
        desc = f"requantizing to {weights_dtype.name}" if weights_dtype is not None else "layers"
        with Progress(cfg.n_layers, desc, enabled=progress and weights_dtype is not None) as bar:
            self.layers = []
            for i in range(cfg.n_layers):
                self.layers.append(Layer(get, i, cfg))
                bar.update()
        if self.tok_embd.n_in != cfg.dim:
            raise ModelError(f"token_embd.weight has width {self.tok_embd.n_in}, "
                             f"metadata says {cfg.dim}")

    @property
    def weight_bytes(self) -> int:
        mats = {id(m): m.nbytes for L in self.layers for m in
                (L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down)}
        mats[id(self.tok_embd)] = self.tok_embd.nbytes
        mats[id(self.output)] = self.output.nbytes
        return sum(mats.values())

    def prefill(self, tokens, seq_id, cache: KvCache, last_only: bool = False) -> np.ndarray:
        """Run ``tokens`` (n,) of sequence ``seq_id`` (allocated in ``cache``) at the
        positions after what the cache holds; writes their K/V to the cache.  Returns
        logits float32 (n, V), or (1, V) for the last token when ``last_only``."""
        tokens = np.asarray(tokens, dtype=np.int64)
        start = cache.seq_len(seq_id)
        pos = np.arange(start, start + len(tokens))

        def attend(i, q, k, v, window):
            return cached_prefill_attention(cache, i, seq_id, q, k, v, self.cfg.attn_scale,
                                            window=window)

        return self._run(tokens, pos, attend, last_only)

    def decode(self, tokens, seq_ids, cache: KvCache) -> np.ndarray:
        """One new token per sequence: tokens (B,), seq_ids (B,) -> logits float32 (B, V)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        pos = np.array([cache.seq_len(s) for s in seq_ids])

        def attend(i, q, k, v, window):
            for b, s in enumerate(seq_ids):
                cache.append(s, i, k[b:b + 1], v[b:b + 1])
            return decode_attention(cache, i, list(seq_ids), q, self.cfg.attn_scale,
                                    window=window)

        return self._run(tokens, pos, attend, False)

    def _run(self, tokens, pos, attend, last_only) -> np.ndarray:
        c = self.cfg
        n = len(tokens)
        if n == 0:
            raise ValueError("no tokens to run")
        if tokens.min() < 0 or tokens.max() >= self.tok_embd.n_out:
            raise ValueError(f"token id out of range [0, {self.tok_embd.n_out}): "
                             f"{int(tokens.min())}..{int(tokens.max())}")
        x = self.tok_embd.take(tokens)                                     # (n, D)
        if c.arch == "gemma3":
            x *= np.float32(math.sqrt(c.dim))
        act = gelu_tanh if c.arch == "gemma3" else silu
        tables = {}                                       # RoPE base -> (cos, sin), once a pass
        for i, L in enumerate(self.layers):
            local = c.is_local(i)
            h = rms_norm(x, L.attn_norm, c.norm_eps)
            q = L.wq(h).reshape(n, c.n_heads, c.head_dim)                  # (n, H, d)
            k = L.wk(h).reshape(n, c.n_kv_heads, c.head_dim)               # (n, KV, d)
            v = L.wv(h).reshape(n, c.n_kv_heads, c.head_dim)               # (n, KV, d)
            if c.arch == "gemma3":
                q = rms_norm(q, L.q_norm, c.norm_eps)
                k = rms_norm(k, L.k_norm, c.norm_eps)
            base = c.rope_base_local if local else c.rope_base
            if base not in tables:
                tables[base] = rope_tables(pos, base, c.rope_dim, c.rope_scale)
            q = apply_rope(q, *tables[base], c.rope_dim, c.rope_neox)
            k = apply_rope(k, *tables[base], c.rope_dim, c.rope_neox)
            o = attend(i, q, k, v, c.sliding_window if local else None)   # (n, H, d)
            o = L.wo(o.reshape(n, c.n_heads * c.head_dim))                 # (n, D)
            if c.arch == "gemma3":
                o = rms_norm(o, L.post_attn_norm, c.norm_eps)
            x = x + o
            h = rms_norm(x, L.ffn_norm, c.norm_eps)
            f = L.w_down(act(L.w_gate(h)) * L.w_up(h))                     # (n, D)
            if c.arch == "gemma3":
                f = rms_norm(f, L.post_ffn_norm, c.norm_eps)
            x = x + f
        if last_only:
            x = x[-1:]
        x = rms_norm(x, self.output_norm, c.norm_eps)
        return self.output(x)                                              # (n, V)
