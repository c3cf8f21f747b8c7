"""Paged KV cache pages in device memory: ``DeviceStorage`` and device page tables.

    from rocmforge import device
    from rocmforge.kv import CacheConfig, KvCache
    from rocmforge.kv.gpu import DeviceStorage
    dev = device.get_device()
    cache = KvCache(cfg, storage=DeviceStorage(dev, cfg))
    cache.append(seq, layer, k, v)     # k, v: host arrays or device float32 buffers
                                       # (n_tokens, num_heads, head_dim): quantized on the GPU
    from rocmforge.ops import attention as attn_ops
    out = attn_ops.decode_attention(cache, layer, seqs, q, scale)   # DeviceBuffer (batch, Hq, D)

Layout: the host ``Storage``'s, one device buffer per layer and K/V,
    k_pages[layer], v_pages[layer]: DeviceBuffer uint8 (max_pages, page_size, row_bytes)
each allocated with ``SLACK`` readable bytes after its end (the attention kernel reads
whole aligned words around an MX lane's bytes).  Pages start zeroed, like the host's.
Rows are encoded by kernels/kv_cache.hip, bit-identical to ``encode_rows``.
"""
from __future__ import annotations

import numpy as np

from ..device import DeviceBuffer
from .config import CacheConfig

__all__ = ["DeviceStorage", "device_page_tables", "SLACK"]

SLACK = 16   # bytes after each page buffer that kernels may read (never write)


class DeviceStorage:
    """The ``Storage`` interface (write / read / copy_page / nbytes) over device buffers,
    plus ``prepare_rows``, which makes ``KvCache.append`` encode rows on the device."""

    def __init__(self, device, config: CacheConfig):
        if not isinstance(config, CacheConfig):
            raise TypeError(f"DeviceStorage needs a CacheConfig, got {type(config).__name__}")
        self.device, self.config = device, config
        self.shape = (config.max_pages, config.page_size, config.row_bytes)
        self.page_bytes = config.page_size * config.row_bytes
        self._roots = []
        self.k_pages = [self._alloc() for _ in range(config.num_layers)]
        self.v_pages = [self._alloc() for _ in range(config.num_layers)]

    def _alloc(self) -> DeviceBuffer:
        n = self.config.max_pages * self.page_bytes
        root = self.device.alloc(n + SLACK)
        root.memset(0)
        self._roots.append(root)
        return root.view(0, n, dtype=np.uint8, shape=self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of page memory (K and V of every layer; the slack not counted)."""
        return 2 * self.config.num_layers * self.config.max_pages * self.page_bytes

    # ---- rows
    def prepare_rows(self, name: str, x) -> DeviceBuffer:
        """Host array or device float32 buffer (n, num_heads, head_dim) -> device float32
        buffer of that shape (checked; host input converted to float32 and uploaded)."""
        cfg = self.config
        want = (cfg.num_heads, cfg.head_dim)
        if isinstance(x, DeviceBuffer):
            shape = x.shape
            if x.dtype != np.float32 or shape is None or len(shape) not in (2, 3) or \
                    tuple(shape[1:]) not in (want, (cfg.row_values,)):
                raise ValueError(f"append: device {name} must be float32 (n_tokens, {want[0]}, "
                                 f"{want[1]}), got {x.dtype} {shape}")
            if x.ptr % 4:
                raise ValueError(f"append: device {name} is not 4-byte aligned")
            return x.view(0, shape[0] * cfg.row_values * 4, dtype=np.float32,
                          shape=(shape[0], *want))
        a = np.asarray(x)
        if a.ndim != 3 or a.shape[1:] != want:
            raise ValueError(f"append: {name} must have shape (n_tokens, {want[0]}, {want[1]}) "
                             f"(num_heads, head_dim), got {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"append: {name} must be a float array, got dtype {a.dtype}")
        return self.device.to_device(np.ascontiguousarray(a, dtype=np.float32))

    def write(self, layer: int, pages, slots, k_rows, v_rows) -> None:
        """pages, slots: int (n,).  k_rows, v_rows: device float32 (n, num_heads, head_dim)
        from ``prepare_rows`` (encoded here by kv_write), or host encoded uint8 (n, row_bytes)
        as the host Storage takes (copied row by row)."""
        pages = np.asarray(pages, dtype=np.int64).reshape(-1)
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        n = pages.shape[0]
        if n == 0:
            return
        if isinstance(k_rows, DeviceBuffer):
            from ..ops import attention as attn_ops
            idx = self.device.to_device(np.stack([pages, slots]).astype(np.int32))   # (2, n)
            attn_ops.kv_write(self.k_pages[layer], self.v_pages[layer], k_rows, v_rows,
                              idx.view(0, 4 * n, dtype=np.int32, shape=(n,)),
                              idx.view(4 * n, 4 * n, dtype=np.int32, shape=(n,)), self.config)
            self.device.default_stream.synchronize()
            return
        rb = self.config.row_bytes
        k_rows = np.ascontiguousarray(k_rows, dtype=np.uint8).reshape(n, rb)
        v_rows = np.ascontiguousarray(v_rows, dtype=np.uint8).reshape(n, rb)
        for i in range(n):
            off = int(pages[i]) * self.page_bytes + int(slots[i]) * rb
            self.k_pages[layer].view(off, rb).copy_from_host(k_rows[i])
            self.v_pages[layer].view(off, rb).copy_from_host(v_rows[i])

    def read(self, layer: int, pages):
        """pages: int (m,) -> (k, v) host uint8 (m, page_size, row_bytes) copies."""
        pages = [int(p) for p in pages]
        out = []
        for arr in (self.k_pages[layer], self.v_pages[layer]):
            host = np.empty((len(pages), *self.shape[1:]), np.uint8)
            for i, p in enumerate(pages):
                arr.view(p * self.page_bytes, self.page_bytes).copy_to_host(host[i])
            out.append(host)
        return out[0], out[1]

    def copy_page(self, src: int, dst: int) -> None:
        """Copy page ``src`` to ``dst`` in every layer, K and V (device to device)."""
        pb = self.page_bytes
        for arr in (*self.k_pages, *self.v_pages):
            arr.view(dst * pb, pb).copy_from_device(arr.view(src * pb, pb))

    def to_host(self, layer: int):
        """(k, v) host uint8 (max_pages, page_size, row_bytes) copies of one layer."""
        return self.k_pages[layer].copy_to_host(), self.v_pages[layer].copy_to_host()


def device_page_tables(cache, layer: int, seq_ids, device=None):
    """Page tables and token counts of ``seq_ids`` in ``layer``, uploaded.

    Returns (table DeviceBuffer int32 (batch, stride), lens DeviceBuffer int32 (batch,),
    host lens int64 (batch,)); stride = the longest table (>= 1), unused entries 0.
    """
    seq_ids = list(seq_ids)
    dev = device if device is not None else cache.storage.device
    tables = [cache.page_table(s) for s in seq_ids]
    lens = np.array([cache.layer_len(s, layer) for s in seq_ids], dtype=np.int64)
    stride = max([1] + [len(t) for t in tables])
    host = np.zeros((len(seq_ids), stride), np.int32)
    for i, t in enumerate(tables):
        host[i, :len(t)] = t
    return dev.to_device(host), dev.to_device(lens.astype(np.int32)), lens
