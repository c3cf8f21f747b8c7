"""Paged KV cache with K/V pages stored in F32, F16, BF16 or OCP MX formats.

    from rocmforge.kv import CacheConfig, KvCache, KvCacheDtype, decode_attention
    cfg = CacheConfig(page_size=16, max_pages=256, num_heads=4, head_dim=64,
                      num_layers=2, dtype=KvCacheDtype.MXFP6_E2M3)
    cache = KvCache(cfg)
    cache.allocate(0)
    cache.append(0, layer, k, v)      # k, v: float32 (n_tokens, num_heads, head_dim)
    out = decode_attention(cache, layer, [0], q, scale=64 ** -0.5)

See docs/KV_CACHE.md for the layout, invariants and errors.
"""
from .config import CacheConfig, KvCacheDtype
from .pool import BlockPool, KvCacheFull, PageTable
from .cache import KvCache, MemoryReport, Storage, decode_rows, encode_rows
from .attention import cached_prefill_attention, decode_attention, prefill_attention

__all__ = [
    "CacheConfig", "KvCacheDtype", "BlockPool", "KvCacheFull", "PageTable", "KvCache",
    "MemoryReport", "Storage", "decode_rows", "encode_rows", "decode_attention",
    "prefill_attention", "cached_prefill_attention",
]
