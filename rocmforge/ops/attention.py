"""Paged KV cache ops on the device, each beside its CPU reference:

    kv_write(...)                 K/V rows -> quantized page rows (kernels/kv_cache.hip);
                                  reference rocmforge.kv.cache.encode_rows
    paged_decode_attention(...)   split-K decode attention over quantized pages
                                  (kernels/attention.hip); reference
                                  rocmforge.kv.attention.decode_attention
    decode_attention(cache, ...)  the cache-level op: the GPU kernels when the cache's
                                  storage is a DeviceStorage on a GPU, else the CPU op

On the ``cpu`` device (CI) the wrappers run the CPU op on the buffers' host memory, so the
Python side (DeviceStorage, page tables, split plan) is tested everywhere.
"""
from __future__ import annotations

import numpy as np

from ..device.buffers import as_device_buffer
from ..kv.config import CacheConfig, KvCacheDtype
from ._common import check_aligned
from .kernels import (ATTN_GROUPS, ATTN_HEAD_DIMS, STAGED_DTYPE_NAMES, STAGED_HEAD_DIMS, THREADS,
                      get_kernel, staged_kernel_name, staged_unaligned_head)

__all__ = ["kv_write", "paged_decode_attention", "decode_attention", "decode_attention_cpu",
           "combine_workgroups", "decode_plan", "split_plan", "staged_heads", "staged_launch", "staged_plan",
           "staged_shared_bytes", "staged_unsupported", "workspace_bytes"]

STAGED_TILE = 16        # positions per staged step
STAGED_STAGES = 3       # tile buffers of a staged workgroup (NST in kernels/attention.hip)
STAGED_TARGET = 2       # 4-head staged workgroups per multiprocessor the split plan aims at


def staged_heads(num_kv_heads: int, dtype="mxfp6_e2m3", head_dim: int = 128):
    """KV heads (one warp each) of a staged workgroup: 4 where 4 divide the KV heads, else 2
    where 2 do, else 1; None where that size has no kernel.  At most 2 for
    F16 / BF16 pages at head_dim 256, whose 4-head tiles would take 198 KB of shared memory,
    and for MXFP6 pages at head_dim 128, where twice as many 2-warp workgroups ran faster
    than 4-warp ones (H100, 8 KV heads, 2026-11-26 14:25 UTC, `bench_kv_attention.py`, us,
    4 / 2 heads a workgroup: E2M3 batch 1 x 32k 30.0 / 28.9, batch 4 x 32k 90.6 / 86.8, batch
    16 x 32k 323.4 / 318.5, batch 16 x 16k 167.6 / 163.3, batch 1 x 1k 7.9 / 8.0; E3M2 batch
    16 x 32k 332.6 / 318.2; MXFP4 within 2% either way, MXFP8_E4M3 and head_dim 64 / 256
    slower).  A workgroup of fewer heads than the row holds takes a slice of each row
    (``_h2s`` / ``_h1s`` for MX heads that are not whole 16-byte pieces, ``_h1u`` for one MX
    head of head_dim 64: ``staged_kernel_name``)."""
    n = int(num_kv_heads)
    dt = KvCacheDtype.parse(dtype)
    d = int(head_dim)
    mxfp6 = dt in (KvCacheDtype.MXFP6_E2M3, KvCacheDtype.MXFP6_E3M2)
    big = 2 if (d == 256 and dt.bits_per_value == 16) or (d == 128 and mxfp6) else 4
    h = next(x for x in (big, 2, 1) if n % x == 0)
    return h if staged_kernel_name(dt.value, d, h, h == n) else None


def staged_launch(dtype, head_dim: int, num_kv_heads: int, row_bytes: int):
    """(kernel name, KV heads a workgroup) of a staged launch, after checking ``row_bytes``
    against how the kernel copies rows: a workgroup of 1 or 2 MX heads that are not whole
    16-byte pieces copies whole rows as one run per tile where it holds every head (then
    row_bytes must be exactly that row), else its slice of each row in 16-, 8- or 4-byte
    pieces (then row_bytes must hold every head and be a multiple of the piece;
    kernels/attention.hip: RUN and PB).  One MX head of head_dim 64 (``_h1u``) copies the
    4-byte words that hold its slice, which starts 0 or 2 bytes into one: row_bytes must hold
    every head and be even.  ValueError naming the kernel otherwise."""
    dtype = KvCacheDtype.parse(dtype)
    d, n = int(head_dim), int(num_kv_heads)
    heads = staged_heads(n, dtype, d)
    if heads is None:
        raise ValueError(f"the staged attention kernel has no body for {n} KV heads of "
                         f"{dtype.name} at head_dim {d}")
    sl, row, whole = dtype.row_bytes(heads * d), dtype.row_bytes(n * d), heads == n
    name = staged_kernel_name(dtype.value, d, heads, whole)
    if staged_unaligned_head(dtype.value, heads, d):
        piece = 2                         # words from 0 or 2 bytes before the slice
    else:
        piece = 0 if heads < 4 and sl % 16 and whole else 16 if sl % 16 == 0 else 8 if sl % 8 == 0 else 4
    if row_bytes != row if piece == 0 else row_bytes < row or row_bytes % piece:
        need = f"{row}" if piece == 0 else f"at least {row} and a multiple of {piece}"
        raise ValueError(f"the staged attention kernel ({name}) needs row_bytes {need} for "
                         f"{n} KV heads of {d} {dtype.name} values, got {row_bytes}")
    return name, heads


def decode_attention_cpu(cache, layer, seq_ids, q, scale, window=None, softcap=None):
    """The CPU reference (rocmforge.kv.attention.decode_attention)."""
    from ..kv.attention import decode_attention as ref
    return ref(cache, layer, seq_ids, q, scale, window=window, softcap=softcap)


# ---------------------------------------------------------------- quantize-on-write
def kv_write(k_pages, v_pages, k, v, pages, slots, config: CacheConfig, stream=None):
    """Encode k, v (device float32 (n, num_heads, head_dim)) into page rows.

    k_pages, v_pages: device uint8 (max_pages, page_size, row_bytes) of one layer;
    pages, slots: device int32 (n,).  Bit-identical to ``encode_rows``.
    """
    k_pages, v_pages = as_device_buffer(k_pages, "kv_write: k_pages"), as_device_buffer(v_pages, "kv_write: v_pages")
    k, v = as_device_buffer(k, "kv_write: k"), as_device_buffer(v, "kv_write: v")
    pages, slots = as_device_buffer(pages, "kv_write: pages"), as_device_buffer(slots, "kv_write: slots")
    cfg = config
    n = pages.shape[0] if pages.shape else pages.nbytes // 4
    need = n * cfg.row_values * 4
    for name, b in (("k", k), ("v", v)):
        if b.dtype != np.float32 or b.nbytes < need:
            raise ValueError(f"kv_write: {name} must be float32 with {n} x {cfg.row_values} "
                             f"values, got {b.dtype} {b.shape}")
    if slots.nbytes < 4 * n:
        raise ValueError(f"kv_write: slots has {slots.nbytes // 4} entries, need {n}")
    if n == 0:
        return
    dev = k.device
    if dev.kind == "cpu":   # CPU device: the reference codec on host memory
        from ..kv.cache import encode_rows
        pg = pages.copy_to_host(np.empty(n, np.int32)).astype(np.int64)
        sl = slots.copy_to_host(np.empty(n, np.int32)).astype(np.int64)
        rb, pb = cfg.row_bytes, cfg.page_size * cfg.row_bytes
        for src, dst in ((k, k_pages), (v, v_pages)):
            rows = encode_rows(cfg.dtype, src.copy_to_host(np.empty((n, cfg.row_values), np.float32)))
            for i in range(n):
                dst.view(int(pg[i]) * pb + int(sl[i]) * rb, rb).copy_from_host(rows[i])
        return
    units = cfg.row_values // 32 if cfg.dtype.is_mx else cfg.row_values
    grid = (2 * n * units + THREADS - 1) // THREADS
    get_kernel(dev, f"kv_write_{cfg.dtype.value}").launch(
        (grid,), (THREADS,), k_pages, v_pages, k, v, pages, slots, n, cfg.row_values,
        cfg.row_bytes, cfg.page_size, stream=stream)


# ---------------------------------------------------------------- decode attention
def _tokens_per_step(dtype: KvCacheDtype, head_dim: int) -> int:
    """Positions one workgroup covers per loop step: (256 / (head_dim / 16)) slots x C."""
    c = 4 if dtype.is_mx else (1 if dtype is KvCacheDtype.F32 else 2)
    return THREADS // (head_dim // 16) * c


def split_plan(dtype, head_dim: int, max_len: int, units: int, n_sms: int):
    """(n_splits, split_len) for ``units`` = batch * kv_heads * q_sub workgroups per split.

    Cost model: the workgroups run in waves of ``slots`` = n_sms * (workgroups resident
    per multiprocessor: 1 for MX at head_dim 128, whose tensor-core bodies take ~200
    registers a thread, else 2); a wave lasts about (loop steps per split + 2) steps (the
    2: pipeline fill, merge and write-out).  Picks the number of splits with the least
    waves * (steps + 2), the fewest splits on a tie; splits are a whole number of steps.
    (H100, batch 1 x 32k, MXFP6: 16 splits in one wave ran 0.050 ms, 66 splits in four
    waves 0.082 ms.)"""
    dt = KvCacheDtype.parse(dtype)
    step = _tokens_per_step(dt, head_dim)
    n_steps = -(-max(1, int(max_len)) // step)
    slots = max(1, n_sms) * (1 if dt.is_mx and head_dim == 128 else 2)
    units = max(1, units)
    best, best_s = None, 1
    for s in range(1, min(n_steps, 8 * slots) + 1):
        per = -(-n_steps // s)
        if s > 1 and -(-n_steps // (s - 1)) == per:
            continue                       # same split length as s - 1: more splits, no gain
        cost = -(-units * s // slots) * (per + 2)
        if best is None or cost < best:
            best, best_s = cost, s
    split_len = -(-n_steps // best_s) * step
    return -(-max(1, int(max_len)) // split_len), split_len


def staged_unsupported(device, dtype, head_dim: int, num_kv_heads: int, group: int,
                       page_size: int):
    """Why the staged kernel (attn_staged_*) cannot run this shape, or None when it can."""
    dt = KvCacheDtype.parse(dtype)
    arch = device.info.arch
    sm = int(arch[3:]) if device.kind == "cuda" and arch.startswith("sm_") else 0
    if sm < 80:
        return f"needs an NVIDIA GPU of sm_80 or newer (device {arch})"
    if dt.value not in STAGED_DTYPE_NAMES:
        return f"has no {dt.name} body (only {', '.join(STAGED_DTYPE_NAMES)})"
    if dt is KvCacheDtype.MXFP8_E4M3 and sm < 89:
        return f"needs sm_89 or newer for {dt.name} (hardware E4M3 conversion; device {arch})"
    if head_dim not in STAGED_HEAD_DIMS:
        return f"needs head_dim 64, 128 or 256, not {head_dim}"
    if group > 8:
        return f"needs at most 8 query heads per KV head, not {group}"
    if page_size % STAGED_TILE:
        return f"needs page_size a multiple of {STAGED_TILE}, not {page_size}"
    return None


def staged_shared_bytes(dtype, heads: int = 4, head_dim: int = 128) -> int:
    """Dynamic shared memory of a staged workgroup: STAGED_STAGES tiles of K and V, 16
    positions x ``heads`` KV heads x ``head_dim`` values each, plus 16 bytes of read slack
    (4 heads of 128: MXFP6 38.5 KB, MXFP4 26.2 KB, MXFP8_E4M3 50.8 KB); F16 / BF16 positions
    sit 16 bytes apart beyond their 256 bytes a head, so that ldmatrix rows fall on different
    banks (4 heads: 97.6 KB).  One MX head of head_dim 64 (``_h1u``) keeps each position's
    slice as the whole 4-byte words that hold it, from 0 or 2 bytes before it (MXFP6: 13
    words for 50 bytes)."""
    dt = KvCacheDtype.parse(dtype)
    pad = 16 if dt in (KvCacheDtype.F16, KvCacheDtype.BF16) else 0
    sl = dt.row_bytes(int(heads) * int(head_dim))
    if staged_unaligned_head(dt.value, int(heads), int(head_dim)):
        sl = 4 * ((sl + 5) // 4)
    return STAGED_STAGES * 2 * (16 * (sl + pad) + 16)


def staged_plan(max_tiles: int, units: int, n_sms: int, heads: int = 4, head_dim: int = 128):
    """(n_splits, split_tiles) for the staged kernel: ``max_tiles`` 16-position tiles at
    most per sequence, ``units`` = batch * n_kv_heads / ``heads`` workgroups per split.

    About STAGED_TARGET workgroups of 4 heads (4 warps) of head_dim 128 or 256 per
    multiprocessor in all, i.e. STAGED_TARGET * 4 / heads of smaller ones, and twice as many
    at head_dim 64, whose tiles are half the work, with at least 2 tiles per split (4 for
    workgroups of one warp, whose pipeline fill weighs more against fewer tiles); but where
    one workgroup per tile fits on the multiprocessors at once (units x tiles <= that many
    slots / STAGED_TARGET), a tile per split.  Every split pays a pipeline fill and writes partial
    results that attn_combine merges, so fewer, longer splits beat a full wave of 4 per SM.
    Measured on an H100 (MXFP6_E2M3, 8 KV heads, `bench/probe_kv_attention.py --body staged
    --splits N`, us, 2026-11-26; the plan's choice first):
      batch 1 x 32k:   128 splits 29.5;  112-256 splits 30.0-34.9
      batch 1 x 4k:    128 9.9;   64: 10.1;  256: 11.3
      batch 1 x 1k:     64 7.5;   32: 7.9;   16: 9.4
      batch 1 x 256:    16 6.7;    8: 7.4;    4: 8.6
      batch 4 x 1k:     32 10.6;  16: 10.0;  64: 11.9
      batch 16 x 1k:     8 17.7;   4: 20.3;  16: 22.3
      batch 16 x 256:    8 9.9;    4: 9.9;   16: 14.2
    (batch 16 x 32k: 8 splits 0.346 ms against 16: 0.363 on earlier kernels.)  Head_dim 64,
    32 query / 8 KV heads, 32k (13:05 UTC): batch 1 64 / 128 / 192 / 256 splits 24.5 / 20.3
    / 20.0 / 19.7 us, batch 16 4 / 8 / 12 / 16 splits 300.6 / 204.1 / 190.6 / 184.4 us; head_dim
    256, 16 / 8 heads: batch 1 64 / 128 / 192 / 256 57.3 / 52.8 / 65.5 / 58.0, batch 16 4 / 8
    / 12 / 16 767.1 / 633.4 / 741.9 / 632.3.  The split count rounds the target down unless
    that leaves more than a quarter of it unused (us, 2026-11-26 14:12-14:16 UTC, MXFP6_E2M3,
    32k, the plan's choice first; workgroups per SM in brackets, target 2 x 4 / heads):
      40 / 10 heads (2 a workgroup), batch 16:  6 (3.6) 416.8;  7 (4.2) 520.5;  4 / 5 / 8 / 10 /
        11 / 13 / 16: 584.9 / 487.9 / 464.9 / 503.2 / 485.0 / 435.0 / 434.5
      40 / 10, batch 12:  8 (3.6) 315.2;  9 (4.1) 386.8.    batch 32:  3 (3.6) 837.5;  4 (4.8) 942.9
      40 / 10, batch 1:   103 34.0;  52 / 79 / 132 / 158 / 206: 41.3 / 38.7 / 39.4 / 36.8 / 40.1
      32 / 8, batch 24:  5 (1.8) 511.8;  6 (2.2) 587.9.      batch 48:  3 (2.2) 1156.4;  2 (1.5) 1220.5
      12 / 3 (1 a workgroup), batch 16:  22 135.9;  11 / 16 / 27 / 33 / 44: 158.8 / 163.4 /
        154.2 / 142.2 / 154.3.   batch 48:  7 (7.6) 437.0;  8 (8.7) 490.1
    (Rounding to the nearest, as before, took 7 and 9 splits at batch 16 and 12 of 40 / 10,
    and 6 at batch 24 of 32 / 8.)  32 / 8 heads with MXFP6's 2-head workgroups (14:33 UTC):
    batch 16 x 32k 8 splits 316.4, 6 / 7 / 10 / 12 / 16: 393.6 / 349.6 / 373.3 / 348.6 /
    357.1; batch 4 33 85.4, 24 / 40 / 50 / 66: 106.2 / 100.6 / 107.8 / 92.7; batch 1 128 28.2,
    100 / 176 / 256: 32.9 / 33.0 / 32.8.  One-warp workgroups at batch 1 x 32k (15:41 UTC; the
    plan's choice first, then 4 tiles a split where it took 2 or 3): 8 / 1 heads x 128: 1024 14.6,
    512 12.8, 128 / 256 19.6 / 14.4; 4 / 1 x 64: 1024 12.7, 512 10.6, 128 / 256 14.3 / 10.8;
    9 / 3 x 64 (_h1u): 683 15.8, 512 14.2, 171 / 256 / 342 13.7 / 13.6 / 13.3; where the plan
    already gives 4 tiles or more it stays: 12 / 3 x 128 342 16.5 (128 / 176 / 256: 20.1 / 18.2
    / 17.8), 15 / 5 x 64 410 17.4 (205 / 256: 15.8 / 16.9)."""
    n_steps = max(1, int(max_tiles))
    units = max(1, int(units))
    slots = max(1, n_sms) * (4 // int(heads)) * max(1, 128 // int(head_dim))
    if units * n_steps <= slots:
        return n_steps, 1
    # the target rounded down (a few workgroups over it cost more than some under it),
    # unless that leaves the multiprocessors more than a quarter short of it
    lo = max(1, STAGED_TARGET * slots // units)
    want = lo if 4 * lo * units >= 3 * STAGED_TARGET * slots else lo + 1
    s = max(1, min(want, n_steps // (4 if int(heads) == 1 else 2)))
    split_tiles = -(-n_steps // s)
    return -(-n_steps // split_tiles), split_tiles


def workspace_bytes(batch: int, n_q_heads: int, head_dim: int, n_splits: int) -> int:
    """Bytes of the partial results: part_o (batch, Hq, n_splits, D) + part_ml (.., 2)."""
    return batch * n_q_heads * n_splits * (head_dim + 2) * 4


def paged_decode_attention(q, k_pages, v_pages, page_table, seq_lens, *, dtype, num_kv_heads: int,
                           head_dim: int, page_size: int, row_bytes: int, scale: float,
                           max_len: int, window=None, softcap=None, n_splits=None,
                           out=None, workspace=None, stream=None, body="auto"):
    """Decode attention of q (device float32 (batch, n_q_heads, head_dim)) over the pages.

    k_pages, v_pages: device uint8 (max_pages, page_size, row_bytes) of one layer (with the
    DeviceStorage slack after them); page_table: device int32 (batch, stride); seq_lens:
    device int32 (batch,), each in [1, max_len].  ``max_len`` (host int) sizes the splits;
    ``n_splits`` forces their number (e.g. for graph capture).  Returns ``out``: device
    float32 (batch, n_q_heads, head_dim).  ``workspace``: optional device buffer of at
    least ``workspace_bytes(...)`` bytes (else allocated per call).  ``body``: "auto",
    "staged" or "split", as for ``decode_plan``.
    """
    dtype = KvCacheDtype.parse(dtype)
    q = as_device_buffer(q, "decode attention: q")
    if q.dtype != np.float32 or q.shape is None or len(q.shape) != 3 or q.shape[2] != head_dim:
        raise ValueError(f"decode attention: q must be float32 (batch, n_q_heads, {head_dim}), "
                         f"got {q.dtype} {q.shape}")
    batch, hq, d = q.shape
    if d not in ATTN_HEAD_DIMS:
        raise ValueError(f"decode attention: head_dim {d} not supported on the GPU "
                         f"(kernels for {ATTN_HEAD_DIMS})")
    if hq % num_kv_heads:
        raise ValueError(f"grouped-query attention needs n_q_heads ({hq}) to be a multiple of "
                         f"the KV heads ({num_kv_heads})")
    scale = float(scale)
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    w = 0 if window is None else int(window)
    if window is not None and w < 1:
        raise ValueError(f"window must be >= 1 (or None), got {window}")
    cap = 0.0 if softcap is None else float(softcap)
    if softcap is not None and not cap > 0:
        raise ValueError(f"softcap must be > 0 (or None), got {softcap}")
    page_table = as_device_buffer(page_table, "decode attention: page_table")
    seq_lens = as_device_buffer(seq_lens, "decode attention: seq_lens")
    if page_table.dtype != np.int32 or len(page_table.shape or ()) != 2 or page_table.shape[0] != batch:
        raise ValueError(f"decode attention: page_table must be int32 (batch={batch}, stride), "
                         f"got {page_table.dtype} {page_table.shape}")
    if int(max_len) < 1 or page_table.shape[1] * page_size < int(max_len):
        raise ValueError(f"decode attention: max_len {max_len} must be in [1, "
                         f"{page_table.shape[1] * page_size}]: the page table {page_table.shape} "
                         f"holds {page_table.shape[1]} pages of {page_size} tokens per sequence")
    dev = q.device
    if dev.kind == "cpu":
        raise NotImplementedError("paged_decode_attention runs on a GPU; on the cpu device use "
                                  "decode_attention(cache, ...), which runs the CPU op")
    used, n_splits, per = decode_plan(dev, dtype, d, num_kv_heads, hq, page_size, max_len, batch,
                                      window=window, n_splits=n_splits, body=body)
    if out is None:
        out = dev.empty((batch, hq, d), np.float32)
    need = workspace_bytes(batch, hq, d, n_splits)
    if workspace is None or workspace.nbytes < need:
        workspace = dev.alloc(need)
    part_o = workspace.view(0, batch * hq * n_splits * d * 4, dtype=np.float32)
    part_ml = workspace.view(part_o.nbytes, batch * hq * n_splits * 8, dtype=np.float32)
    check_aligned(q, "decode attention: q")
    if used == "staged":
        k_pages = as_device_buffer(k_pages, "decode attention: k_pages")
        v_pages = as_device_buffer(v_pages, "decode attention: v_pages")
        check_aligned(k_pages, "decode attention: k_pages")
        check_aligned(v_pages, "decode attention: v_pages")
        name, heads = staged_launch(dtype, d, num_kv_heads, row_bytes)
        kern = get_kernel(dev, name)
        smem = staged_shared_bytes(dtype, heads, d)
        kern.allow_shared(smem)
        kern.launch((batch * num_kv_heads // heads * n_splits,), (32 * heads,), part_o,
                    part_ml, q, k_pages, v_pages, page_table, seq_lens, hq, num_kv_heads, page_size,
                    row_bytes, page_table.shape[1], n_splits, per, w, scale, cap, stream=stream,
                    shared=smem)
    else:
        group = hq // num_kv_heads
        g = max(x for x in ATTN_GROUPS if group % x == 0)
        shift = page_size.bit_length() - 1 if page_size & (page_size - 1) == 0 else -1
        get_kernel(dev, f"attn_decode_{dtype.value}_d{d}_g{g}").launch(
            (batch * n_splits * num_kv_heads * (group // g),), (THREADS,),
            part_o, part_ml, q, k_pages, v_pages, page_table, seq_lens, hq, num_kv_heads, group // g,
            page_size, shift, row_bytes, page_table.shape[1], n_splits, per, w, scale, cap,
            stream=stream)
    get_kernel(dev, "attn_combine").launch((combine_workgroups(batch * hq, n_splits, d),), (THREADS,),
                                           out, part_o, part_ml, n_splits, d, stream=stream)
    return out


def combine_workgroups(n_rows: int, n_splits: int, head_dim: int) -> int:
    """attn_combine's grid for ``n_rows`` (sequence, query head) rows: one workgroup per NV
    values of a row, NV = min(head_dim, 1024 / the largest power of two <= min(n_splits, 32))
    (kernels/attention.hip computes the same NV from its arguments)."""
    nv = min(head_dim, 1024 >> min(5, int(n_splits).bit_length() - 1))
    return n_rows * (head_dim // nv)


def decode_plan(device, dtype, head_dim: int, num_kv_heads: int, n_q_heads: int, page_size: int,
                max_len: int, batch: int, window=None, n_splits=None, body="auto"):
    """(body, n_splits, per) of a paged_decode_attention call: body "staged" (per = 16-position
    tiles per split) or "split" (per = positions per split).  ``n_splits`` forces the count
    (a graph captured at one length and replayed at others keeps its launch shape).
    ``body``: "auto" (staged wherever ``staged_unsupported`` allows, at every length and
    batch: on an H100 it ran 1.12-1.75x faster than the split kernels on every shape
    measured with 8 KV heads, MXFP6/MXFP4/MXFP8/F16/BF16 x batch 1-16 x 64-32768 positions,
    and 1.15-4.6x with 2 KV heads except F16 at batch 1 x 1k, 0.94x; at head_dim 64 1.2-2.0x,
    at 256 1.06-2.9x except batch 1 x 1k with 8 KV heads, 0.87-0.91x: docs/BENCHMARKS.md;
    else split),
    "staged" (ValueError naming the reason where it cannot run) or "split"."""
    dtype = KvCacheDtype.parse(dtype)
    if body not in ("auto", "staged", "split"):
        raise ValueError(f"body must be 'auto', 'staged' or 'split', got {body!r}")
    group = n_q_heads // num_kv_heads
    w = 0 if window is None else int(window)
    eff = max(1, min(int(max_len), w) if w else int(max_len))
    why = (staged_unsupported(device, dtype, head_dim, num_kv_heads, group, page_size)
           if body != "split" else "was not asked for")
    if body == "staged" and why is not None:
        raise ValueError(f"the staged attention kernel {why}")
    if n_splits is not None:
        n_splits = int(n_splits)
        if n_splits < 1:
            raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    if why is None:
        # tiles a sequence's attended range can touch: one more when a window starts mid-tile
        max_tiles = -(-eff // STAGED_TILE) + (1 if w else 0)
        heads = staged_heads(num_kv_heads, dtype, head_dim)
        if n_splits is None:
            return ("staged",) + staged_plan(max_tiles, batch * num_kv_heads // heads,
                                             device.info.multiprocessors, heads, head_dim)
        return "staged", n_splits, -(-max_tiles // n_splits)
    g = max(x for x in ATTN_GROUPS if group % x == 0)
    if n_splits is None:
        return ("split",) + split_plan(dtype, head_dim, eff, batch * num_kv_heads * (group // g),
                                       device.info.multiprocessors)
    step = _tokens_per_step(dtype, head_dim)
    per = -(-eff // n_splits)                   # positions per split
    return "split", n_splits, -(-per // step) * step


def decode_attention(cache, layer: int, seq_ids, q, scale: float, window=None, softcap=None,
                     out=None, workspace=None, stream=None, body="auto"):
    """``rocmforge.kv.decode_attention`` for a cache on the device.

    q: host array or device float32 (batch, n_q_heads, head_dim).  With a DeviceStorage on
    a GPU, returns a DeviceBuffer float32 (batch, n_q_heads, head_dim); otherwise (host
    storage, or the cpu device) the CPU op's float32 numpy array.
    """
    from ..kv.gpu import DeviceStorage, device_page_tables
    from ..device import DeviceBuffer
    st = cache.storage
    if not isinstance(st, DeviceStorage) or st.device.kind == "cpu":
        qh = q.copy_to_host() if isinstance(q, DeviceBuffer) else q
        return decode_attention_cpu(cache, layer, seq_ids, qh, scale, window, softcap)
    cfg = cache.config
    seq_ids = list(seq_ids)
    if not isinstance(q, DeviceBuffer):
        qa = np.asarray(q, dtype=np.float32)
        if qa.ndim != 3 or qa.shape[0] != len(seq_ids) or qa.shape[2] != cfg.head_dim:
            raise ValueError(f"decode_attention: q must be (batch={len(seq_ids)}, n_q_heads, "
                             f"head_dim={cfg.head_dim}), got {qa.shape}")
        q = st.device.to_device(np.ascontiguousarray(qa))
    table, lens, host_lens = device_page_tables(cache, layer, seq_ids)
    for sid, n in zip(seq_ids, host_lens):
        if n == 0:
            raise ValueError(f"decode_attention: sequence {sid!r} has no tokens in layer {layer}")
    return paged_decode_attention(
        q, st.k_pages[layer], st.v_pages[layer], table, lens, dtype=cfg.dtype,
        num_kv_heads=cfg.num_heads, head_dim=cfg.head_dim, page_size=cfg.page_size,
        row_bytes=cfg.row_bytes, scale=scale, max_len=int(host_lens.max()), window=window,
        softcap=softcap, out=out, workspace=workspace, stream=stream, body=body)
