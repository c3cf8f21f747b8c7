"""Paged KV cache: row codecs, host page storage, and the cache (append / fork / read).

Layout.  A page holds ``page_size`` consecutive tokens of one sequence for every layer.
Storage keeps, per layer,
    k_pages[layer], v_pages[layer]: uint8 (max_pages, page_size, row_bytes)
where one row is a token's K (or V) of all KV heads, num_heads * head_dim values,
encoded by ``encode_rows`` (MX blocks run along the row).  Token t of a sequence lives
in page table[t // page_size], slot t % page_size.

Token count.  Each sequence counts tokens per layer.  A forward pass appends layer by
layer: layer 0 may always append; layer l > 0 may only append up to the count of layer
l - 1 (so counts never increase with the layer index).  ``read(seq, layer)`` and
attention see the tokens written to that layer; the sequence's length
(``seq_len``) is the count of the last layer.  ``fork`` needs all layers equal.

Errors.  ``KvCacheFull`` (a RuntimeError) when too few pages are free, raised before
anything changes: all new pages and copy-on-write copies are reserved first.
ValueError for bad shapes, layers, ordering or sequence ids already in use; KeyError
for an unknown sequence id.
"""
from __future__ import annotations

import numpy as np

from rocmforge.mx import dequantize, quantize

from .config import CacheConfig, KvCacheDtype
from .pool import BlockPool, KvCacheFull, PageTable

__all__ = ["KvCache", "Storage", "MemoryReport", "encode_rows", "decode_rows",
           "f32_to_bf16", "bf16_to_f32", "KvCacheFull"]


# ---------------------------------------------------------------- row codecs
def f32_to_bf16(x) -> np.ndarray:
    """float32 (...) -> bfloat16 bits uint16 (...), round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet = (u >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(nan, quiet, rounded).astype(np.uint16)


def bf16_to_f32(b) -> np.ndarray:
    """bfloat16 bits uint16 (...) -> float32 (...), exact."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def encode_rows(dtype: KvCacheDtype, x: np.ndarray) -> np.ndarray:
    """float32 (n, row_values) -> uint8 (n, row_bytes) in ``dtype``'s storage format."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype is KvCacheDtype.F32:
        out = x.astype("<f4", copy=False)
    elif dtype is KvCacheDtype.F16:
        with np.errstate(over="ignore"):
            out = x.astype("<f2")
    elif dtype is KvCacheDtype.BF16:
        out = f32_to_bf16(x).astype("<u2", copy=False)
    else:
        return np.ascontiguousarray(quantize(x, dtype.mx_format), dtype=np.uint8)
    return np.ascontiguousarray(out).view(np.uint8)


def decode_rows(dtype: KvCacheDtype, data: np.ndarray) -> np.ndarray:
    """uint8 (..., row_bytes) -> float32 (..., row_values); inverse of ``encode_rows``."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if dtype is KvCacheDtype.F32:
        return data.view("<f4").astype(np.float32, copy=False)
    if dtype is KvCacheDtype.F16:
        return data.view("<f2").astype(np.float32)
    if dtype is KvCacheDtype.BF16:
        return bf16_to_f32(data.view("<u2"))
    return dequantize(data, dtype.mx_format, dtype=np.float32)


# ---------------------------------------------------------------- storage
class Storage:
    """Host page storage; a device version implements the same four methods.

    k_pages[layer], v_pages[layer]: uint8 (max_pages, page_size, row_bytes)
    """

    def __init__(self, config: CacheConfig):
        shape = (config.max_pages, config.page_size, config.row_bytes)
        self.k_pages = [np.zeros(shape, np.uint8) for _ in range(config.num_layers)]
        self.v_pages = [np.zeros(shape, np.uint8) for _ in range(config.num_layers)]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k_pages) + sum(a.nbytes for a in self.v_pages)

    def write(self, layer: int, pages, slots, k_rows, v_rows) -> None:
        """pages, slots: int (n,); k_rows, v_rows: uint8 (n, row_bytes) -> the given slots."""
        self.k_pages[layer][pages, slots] = k_rows
        self.v_pages[layer][pages, slots] = v_rows

    def read(self, layer: int, pages):
        """pages: int (m,) -> (k, v) uint8 (m, page_size, row_bytes) host copies."""
        return self.k_pages[layer][pages], self.v_pages[layer][pages]

    def copy_page(self, src: int, dst: int) -> None:
        """Copy page ``src`` to ``dst`` in every layer (copy-on-write)."""
        for a in self.k_pages:
            a[dst] = a[src]
        for a in self.v_pages:
            a[dst] = a[src]


# ---------------------------------------------------------------- report
class MemoryReport(dict):
    """``KvCache.memory_report()``: a dict whose str() is a short table."""

    def __str__(self) -> str:
        mib = self["total_bytes"] / 2**20
        return (f"KV cache {self['dtype']}: {self['bits_per_value']:g} bits/value, "
                f"{self['bytes_per_token']} bytes/token ({self['num_layers']} layers x K+V x "
                f"{self['row_bytes']} bytes/row), {self['bytes_per_page']} bytes/page "
                f"({self['page_size']} tokens), {self['pages']} pages "
                f"({self['used_pages']} used, {self['free_pages']} free), "
                f"total {self['total_bytes']} bytes ({mib:.2f} MiB), "
                f"{self['max_tokens']} tokens max")


# ---------------------------------------------------------------- the cache
class KvCache:
    """Paged KV cache over a ``BlockPool`` and a ``Storage`` (see the module docstring)."""

    def __init__(self, config: CacheConfig, storage: Storage | None = None):
        if not isinstance(config, CacheConfig):
            raise TypeError(f"KvCache needs a CacheConfig, got {type(config).__name__}")
        self.config = config
        self.pool = BlockPool(config.max_pages)
        self.storage = storage if storage is not None else Storage(config)
        self._tables: dict = {}                   # seq_id -> PageTable

    # ---- sequences
    def allocate(self, seq_id) -> None:
        """Start an empty sequence (no pages until it appends)."""
        if seq_id in self._tables:
            raise ValueError(f"sequence {seq_id!r} already exists")
        self._tables[seq_id] = PageTable([], [0] * self.config.num_layers)

    def fork(self, parent, child) -> None:
        """Make ``child`` share all of ``parent``'s pages (copy-on-write on later writes)."""
        t = self._table(parent)
        if child in self._tables:
            raise ValueError(f"fork: child sequence {child!r} already exists")
        if len(set(t.lengths)) != 1:
            raise ValueError(f"fork: parent {parent!r} is mid forward pass (tokens per layer "
                             f"{t.lengths}); fork when every layer has the same count")
        self.pool.incref(t.pages)
        self._tables[child] = t.copy()

    def free(self, seq_id) -> None:
        """Drop the sequence; pages nobody else holds return to the pool."""
        t = self._table(seq_id)
        del self._tables[seq_id]
        self.pool.decref(t.pages)

    def sequences(self) -> list:
        return list(self._tables)

    def __contains__(self, seq_id) -> bool:
        return seq_id in self._tables

    def seq_len(self, seq_id) -> int:
        """Tokens the sequence holds in every layer (the last layer's count)."""
        return self._table(seq_id).lengths[-1]

    def layer_len(self, seq_id, layer: int) -> int:
        return self._table(seq_id).lengths[self._layer(layer)]

    def page_table(self, seq_id) -> tuple:
        return tuple(self._table(seq_id).pages)

    # ---- append
    def pages_needed(self, seq_id, layer: int, n_tokens: int) -> int:
        """Free pages that appending ``n_tokens`` to ``layer`` takes (new + copy-on-write)."""
        cow, n_new = self._plan(self._table(seq_id), self._layer(layer), int(n_tokens))
        return len(cow) + n_new

    def append(self, seq_id, layer: int, k, v) -> None:
        """Append tokens to one layer. k, v: float (n_tokens, num_heads, head_dim).

        Values are converted to float32, then encoded in the cache dtype.  Raises
        KvCacheFull (nothing changed) if the pool cannot hold them.
        """
        cfg = self.config
        t = self._table(seq_id)
        layer = self._layer(layer)
        prepare = getattr(self.storage, "prepare_rows", None)   # device storage encodes on write
        if prepare is not None:
            k, v = prepare("k", k), prepare("v", v)       # (n_tokens, num_heads, head_dim)
        else:
            k = self._check_rows("k", k)
            v = self._check_rows("v", v)
        if k.shape[0] != v.shape[0]:
            raise ValueError(f"append: k has {k.shape[0]} tokens, v has {v.shape[0]}")
        n = k.shape[0]
        start = t.lengths[layer]
        if layer > 0 and start + n > t.lengths[layer - 1]:
            raise ValueError(
                f"append: layer {layer} of sequence {seq_id!r} would hold {start + n} tokens, "
                f"more than layer {layer - 1} ({t.lengths[layer - 1]}); append layer by layer")
        if n == 0:
            return
        if prepare is not None:
            k_rows, v_rows = k, v                          # Storage.write encodes them
        else:
            k_rows = encode_rows(cfg.dtype, k.reshape(n, cfg.row_values))   # (n, row_bytes)
            v_rows = encode_rows(cfg.dtype, v.reshape(n, cfg.row_values))
        cow, n_new = self._plan(t, layer, n)
        fresh = self.pool.allocate(len(cow) + n_new)      # KvCacheFull here: nothing changed
        for idx, dst in zip(cow, fresh):
            src = t.pages[idx]
            self.storage.copy_page(src, dst)
            t.pages[idx] = dst
            self.pool.decref([src])
        t.pages.extend(fresh[len(cow):])
        pos = np.arange(start, start + n)
        pages = np.asarray(t.pages, dtype=np.int64)[pos // cfg.page_size]
        self.storage.write(layer, pages, pos % cfg.page_size, k_rows, v_rows)
        t.lengths[layer] = start + n

    # ---- read
    def read(self, seq_id, layer: int):
        """All tokens of one layer, dequantized: k, v float32 (n_ctx, num_heads, head_dim)."""
        n = self.layer_len(seq_id, layer)
        return self.read_range(seq_id, layer, 0, n)

    def read_range(self, seq_id, layer: int, start: int, stop: int):
        """Tokens start..stop-1 of one layer; decodes only the pages covering them.

        Returns k, v float32 (stop - start, num_heads, head_dim).
        """
        cfg = self.config
        t = self._table(seq_id)
        layer = self._layer(layer)
        if not 0 <= start <= stop <= t.lengths[layer]:
            raise ValueError(f"read_range: [{start}, {stop}) is outside the "
                             f"{t.lengths[layer]} tokens of layer {layer} of {seq_id!r}")
        p0, p1 = start // cfg.page_size, -(-stop // cfg.page_size)
        kb, vb = self.storage.read(layer, t.pages[p0:p1])  # (m, page_size, row_bytes)
        lo = start - p0 * cfg.page_size
        kb = kb.reshape(-1, cfg.row_bytes)[lo:lo + stop - start]
        vb = vb.reshape(-1, cfg.row_bytes)[lo:lo + stop - start]
        shape = (stop - start, cfg.num_heads, cfg.head_dim)
        return (decode_rows(cfg.dtype, kb).reshape(shape),
                decode_rows(cfg.dtype, vb).reshape(shape))

    # ---- accounting
    def memory_report(self) -> MemoryReport:
        cfg = self.config
        return MemoryReport(
            dtype=cfg.dtype.name, bits_per_value=cfg.dtype.bits_per_value,
            num_layers=cfg.num_layers, row_bytes=cfg.row_bytes,
            bytes_per_token=cfg.bytes_per_token, bytes_per_page=cfg.bytes_per_page,
            page_size=cfg.page_size, pages=cfg.max_pages, used_pages=self.pool.num_used,
            free_pages=self.pool.num_free, total_bytes=cfg.total_bytes,
            max_tokens=cfg.max_tokens)

    def check(self) -> None:
        """Assert the pool / table invariants (see pool.py)."""
        self.pool.check(self._tables.values())
        P = self.config.page_size
        for sid, t in self._tables.items():
            if any(a < b for a, b in zip(t.lengths, t.lengths[1:])):
                raise AssertionError(f"sequence {sid!r}: layer counts {t.lengths} increase")
            if len(t.pages) != -(-t.lengths[0] // P):
                raise AssertionError(f"sequence {sid!r}: {len(t.pages)} pages for "
                                     f"{t.lengths[0]} tokens")

    # ---- helpers
    def _table(self, seq_id) -> PageTable:
        try:
            return self._tables[seq_id]
        except KeyError:
            raise KeyError(f"unknown sequence {seq_id!r}") from None

    def _layer(self, layer) -> int:
        n = self.config.num_layers
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
                or not 0 <= layer < n:
            raise ValueError(f"layer {layer!r} out of range [0, {n})")
        return int(layer)

    def _check_rows(self, name: str, x) -> np.ndarray:
        cfg = self.config
        x = np.asarray(x)
        want = (cfg.num_heads, cfg.head_dim)
        if x.ndim != 3 or x.shape[1:] != want:
            raise ValueError(f"append: {name} must have shape (n_tokens, {want[0]}, {want[1]}) "
                             f"(num_heads, head_dim), got {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"append: {name} must be a float array, got dtype {x.dtype}")
        return x.astype(np.float32, copy=False)

    def _plan(self, t: PageTable, layer: int, n: int):
        """(table indices of shared pages to copy, number of new pages) for an append."""
        if n <= 0:
            return [], 0
        P = self.config.page_size
        start = t.lengths[layer]
        first, last = start // P, (start + n - 1) // P
        cow = [i for i in range(first, min(last + 1, len(t.pages)))
               if self.pool.refcount[t.pages[i]] > 1]
        return cow, max(0, last + 1 - len(t.pages))
