"""Model hyper-parameters read from GGUF metadata (``{arch}.*`` keys, llama.cpp's names)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

SUPPORTED_ARCHS = ("llama", "gemma3")


class ModelError(ValueError):
    """A model file that rocmforge cannot run: unknown architecture, missing key or tensor."""


@dataclass(frozen=True)
class ModelConfig:
    arch: str               # "llama" or "gemma3"
    n_layers: int
    dim: int                # embedding width
    n_heads: int            # query heads
    n_kv_heads: int         # key/value heads (grouped-query attention)
    head_dim: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    norm_eps: float
    rope_base: float        # RoPE base of global-attention layers
    rope_base_local: float  # RoPE base of sliding-window layers (gemma3: 10000)
    rope_dim: int           # leading dims of each head that RoPE rotates
    rope_neox: bool         # pairs (i, i + rope_dim/2) if True, (2i, 2i+1) if False
    rope_scale: float       # linear position scaling factor (positions / rope_scale)
    sliding_window: int | None
    swa_pattern: int        # gemma3: every swa_pattern-th layer is global, the rest local
    attn_scale: float       # softmax scale applied to q.k

    def is_local(self, layer: int) -> bool:
        """True where ``layer`` uses sliding-window attention."""
        if not self.sliding_window or self.swa_pattern <= 1:
            return False
        return layer % self.swa_pattern < self.swa_pattern - 1

    @classmethod
    def from_metadata(cls, meta: Mapping, vocab_size: int | None = None) -> "ModelConfig":
        arch = meta.get("general.architecture")
        if arch not in SUPPORTED_ARCHS:
            raise ModelError(f"unsupported architecture {arch!r}; rocmforge runs: "
                             f"{', '.join(SUPPORTED_ARCHS)}")

        def get(key, default=None, required=True):
            full = f"{arch}.{key}"
            if full in meta:
                return meta[full]
            if required and default is None:
                raise ModelError(f"GGUF metadata lacks {full!r}")
            return default

        dim = int(get("embedding_length"))
        n_heads = int(get("attention.head_count"))
        n_kv = get("attention.head_count_kv", n_heads)
        n_kv = int(n_kv if not hasattr(n_kv, "__len__") else n_kv[0])
        head_dim = int(get("attention.key_length", dim // n_heads))
        if int(get("attention.value_length", head_dim)) != head_dim:
            raise ModelError(f"{arch}: key_length != value_length is not supported")
        if vocab_size is None:
            vocab_size = int(get("vocab_size", len(meta.get("tokenizer.ggml.tokens", ())) or None))
        gemma = arch == "gemma3"
        scaling = get("rope.scaling.type", "none", required=False)
        factor = float(get("rope.scaling.factor", 1.0, required=False) or 1.0)
        if scaling not in ("none", "linear") and factor != 1.0:
            raise ModelError(f"{arch}: RoPE scaling {scaling!r} is not supported (linear only)")
        return cls(
            arch=arch,
            n_layers=int(get("block_count")),
            dim=dim,
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=head_dim,
            ffn_dim=int(get("feed_forward_length")),
            vocab_size=int(vocab_size),
            context_length=int(get("context_length", 2048, required=False)),
            norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5, required=False)),
            rope_base=float(get("rope.freq_base", 10000.0, required=False)),
            rope_base_local=float(get("rope.freq_base_swa", 10000.0, required=False)),
            rope_dim=int(get("rope.dimension_count", head_dim, required=False)),
            rope_neox=gemma,
            rope_scale=factor if scaling == "linear" else 1.0,
            sliding_window=int(get("attention.sliding_window", 0, required=False)) or None,
            swa_pattern=6 if gemma else 0,
            attn_scale=1.0 / math.sqrt(head_dim),
        )
