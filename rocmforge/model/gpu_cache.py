"""K/V storage of the GPU forward pass (``GpuKvCache``): one cache slot per live sequence.

Two layouts, chosen per model:
  paged       helper-6's ``DeviceStorage`` pages in the KV dtype itself (MX blocks,
              F16, BF16 or F32 rows; kernels/kv_cache.hip encodes them on write) and its
              split-K paged decode attention (kernels/attention.hip).  Slot s owns the
              pages [s * P, (s + 1) * P), P = ceil(n_ctx / page_size), so page tables are
              static and a decode step can be captured into a graph.  Needs a head_dim the
              paged kernels take (64, 128, 256).
  contiguous  float32 (slots, layers, n_ctx, KV*d) with this package's attention
              (kernels/model_ops.hip); MX dtypes are applied numerically (rows quantized
              and dequantized back before they are stored), the memory is float32.
              Any head_dim up to 512 (stories260K's is 8).
ROCMFORGE_GPU_KV=contiguous forces the second.  The engine uses allocate / free /
seq_len / ``in`` / memory_report, as of ``KvCache``.
"""
from __future__ import annotations

import os

import numpy as np

from ..kv import CacheConfig, KvCacheDtype
from .config import ModelConfig

PAGED_HEAD_DIMS = (64, 128, 256)   # rocmforge.ops.kernels.ATTN_HEAD_DIMS


class GpuKvCache:
    def __init__(self, dev, cfg: ModelConfig, n_ctx: int, max_batch: int, dtype: KvCacheDtype,
                 page_size: int = 16, layout: str | None = None):
        self.dev, self.dtype, self.n_ctx = dev, dtype, int(n_ctx)
        self.row = cfg.n_kv_heads * cfg.head_dim
        self.n_layers, self.max_batch = cfg.n_layers, int(max_batch)
        if dtype.is_mx:
            dtype.row_bytes(self.row)          # raises if the row is not whole MX blocks
        layout = layout or os.environ.get("ROCMFORGE_GPU_KV") or (
            "paged" if cfg.head_dim in PAGED_HEAD_DIMS else "contiguous")
        if layout not in ("paged", "contiguous"):
            raise ValueError(f"GPU KV layout must be 'paged' or 'contiguous', got {layout!r}")
        if layout == "paged" and cfg.head_dim not in PAGED_HEAD_DIMS:
            raise ValueError(f"paged GPU KV cache: head_dim {cfg.head_dim} not in {PAGED_HEAD_DIMS}")
        if layout == "contiguous" and not (dtype.is_mx or dtype is KvCacheDtype.F32):
            raise NotImplementedError(f"contiguous GPU KV cache: {dtype.name} (F32 and MX only)")
        self.paged = layout == "paged"
        self._slots: dict = {}     # seq id -> slot
        self._len: dict = {}       # seq id -> tokens stored
        if self.paged:
            from ..kv.gpu import DeviceStorage
            self.page_size = int(page_size)
            self.pages_per_slot = -(-self.n_ctx // self.page_size)
            self.config = CacheConfig(page_size=self.page_size,
                                      max_pages=self.pages_per_slot * self.max_batch,
                                      num_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                                      num_layers=cfg.n_layers, dtype=dtype)
            self.storage = DeviceStorage(dev, self.config)
            self.k = self.v = None
            self.layer_stride = self.slot_stride = 0
        else:
            self.layer_stride = self.n_ctx * self.row                  # floats
            self.slot_stride = self.n_layers * self.layer_stride       # floats
            shape = (self.max_batch, self.n_layers, self.n_ctx, self.row)
            self.k = dev.zeros(shape, np.float32)
            self.v = dev.zeros(shape, np.float32)
            self.storage = None

    # ------------------------------------------------------------------ sequences
    def allocate(self, sid) -> None:
        if sid in self._slots:
            raise ValueError(f"sequence {sid} is already allocated")
        free = sorted(set(range(self.max_batch)) - set(self._slots.values()))
        if not free:
            raise RuntimeError(f"GPU KV cache full: {self.max_batch} sequences live")
        self._slots[sid], self._len[sid] = free[0], 0

    def free(self, sid) -> None:
        self._slots.pop(sid)
        self._len.pop(sid)

    def __contains__(self, sid) -> bool:
        return sid in self._slots

    def sequences(self) -> list:
        return list(self._slots)

    def slot(self, sid) -> int:
        return self._slots[sid]

    def seq_len(self, sid) -> int:
        return self._len[sid]

    def advance(self, sid, n: int) -> None:
        if self._len[sid] + n > self.n_ctx:
            raise RuntimeError(f"sequence {sid}: {self._len[sid] + n} tokens exceed the GPU KV "
                               f"cache context of {self.n_ctx}")
        self._len[sid] += n

    # ------------------------------------------------------------------ paged addressing
    def page_slots(self, slots: np.ndarray, pos: np.ndarray):
        """int32 (n,) page and slot-in-page of positions ``pos`` of cache slots ``slots``."""
        pages = slots.astype(np.int64) * self.pages_per_slot + pos // self.page_size
        return pages.astype(np.int32), (pos % self.page_size).astype(np.int32)

    def tables(self, slots: np.ndarray) -> np.ndarray:
        """int32 (n, pages_per_slot): the (static) page table of each slot."""
        base = slots.astype(np.int32)[:, None] * self.pages_per_slot
        return base + np.arange(self.pages_per_slot, dtype=np.int32)[None, :]

    # ------------------------------------------------------------------ report
    def memory_report(self) -> dict:
        row_bytes = self.dtype.row_bytes(self.row)
        if self.paged:
            per_token = 2 * self.n_layers * row_bytes
            total = self.storage.nbytes
            storage = f"{self.dtype.name} pages (device)"
        else:
            per_token = 2 * self.n_layers * self.row * 4
            total = self.k.nbytes + self.v.nbytes
            storage = "float32 (device)"
        return {"dtype": self.dtype.name, "storage": storage, "bytes_per_token": per_token,
                "bytes": total, "logical_bytes_per_token": 2 * self.n_layers * row_bytes,
                "sequences": len(self._slots)}

    def close(self):
        if self.paged:
            for b in self.storage._roots:
                if not b.freed:
                    b.free()
        else:
            for b in (self.k, self.v):
                b.free()
