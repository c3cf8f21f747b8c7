"""The element-wise and attention steps of the forward pass on the device
(kernels/model_ops.hip), each with its CPU op (rocmforge.model.transformer,
rocmforge.kv.attention) as reference.  float32 activations throughout.

Device ops take DeviceBuffers and sizes and launch one kernel (on a ``cpu`` device they
run the CPU op on host copies, for tests).  Sizes are passed explicitly so that buffers
may be larger scratch areas (the GPU transformer reuses them between steps).
"""
from __future__ import annotations

import math

import numpy as np

from .kernels import THREADS, get_kernel

ACT_KINDS = {"silu": 0, "gelu_tanh": 1}
MAX_HEAD_DIM = 512   # attention_f32 keeps q in LDS and two output dims per thread


def _grid(n: int) -> tuple:
    return (max(1, -(-int(n) // THREADS)),)


# ---------------------------------------------------------------- CPU ops (reference)
def rms_norm_cpu(x, w, eps):
    from ..model.transformer import rms_norm
    return rms_norm(np.asarray(x, np.float32), np.asarray(w, np.float32), eps)


def rms_norm_add_cpu(x, o, w, eps):
    return np.asarray(x, np.float32) + rms_norm_cpu(o, w, eps)


def act_mul_cpu(g, u, kind: str):
    from ..model.transformer import gelu_tanh, silu
    return (silu if kind == "silu" else gelu_tanh)(np.asarray(g, np.float32)) * u


def rope_table(n_pos: int, base: float, n_dims: int, scale: float = 1.0) -> np.ndarray:
    """float32 (n_pos, 2, n_dims/2): cos and sin of pos / scale * base^(-2i/n_dims),
    computed in float64 like rocmforge.model.transformer.rope, then rounded."""
    half = n_dims // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_dims)
    ang = (np.arange(n_pos, dtype=np.float64) / scale)[:, None] * inv[None, :]
    return np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)


def rope_cpu(x, pos, base, n_dims, neox, scale=1.0):
    from ..model.transformer import rope
    return rope(np.asarray(x, np.float32), np.asarray(pos), base, n_dims, neox, scale)


def attention_cpu(q, k, v, pos, scale, window=None):
    """q (n, H, d) at positions ``pos`` (n,) of one sequence whose keys/values k, v
    (n_keys, KV, d) cover positions 0..n_keys-1: causal (optionally windowed) softmax
    attention in float64 -> float32 (n, H, d)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    n, H, d = q.shape
    g = H // k.shape[1]
    out = np.empty((n, H, d), np.float32)
    for t, p in enumerate(pos):
        lo = 0 if window is None else max(0, p - window + 1)
        for h in range(H):
            s = k[lo:p + 1, h // g] @ q[t, h] * scale
            e = np.exp(s - s.max())
            out[t, h] = (e / e.sum()) @ v[lo:p + 1, h // g]
    return out


# ---------------------------------------------------------------- device ops
def _host(buf, n, shape=None):
    a = buf.copy_to_host().view(np.float32).reshape(-1)[:n]
    return a.reshape(shape) if shape is not None else a


def _put(buf, arr):
    arr = np.ascontiguousarray(arr, np.float32).reshape(-1)
    buf.view(0, arr.nbytes).copy_from_host(arr)


def rms_norm(out, x, w, n_rows: int, width: int, eps: float, stream=None):
    """out (R, W) = rms_norm(x (R, W)) * w (W,); out may be x."""
    dev = x.device
    if dev.kind == "cpu":
        _put(out, rms_norm_cpu(_host(x, n_rows * width, (n_rows, width)), _host(w, width), eps))
        return out
    if n_rows:
        get_kernel(dev, "rms_norm_f32").launch((n_rows,), (THREADS,), out, x, w, n_rows, width,
                                               float(eps), stream=stream)
    return out


def rms_norm_add(x, o, w, n_rows: int, width: int, eps: float, stream=None):
    """x (R, W) += rms_norm(o (R, W)) * w (W,)."""
    dev = x.device
    if dev.kind == "cpu":
        _put(x, rms_norm_add_cpu(_host(x, n_rows * width, (n_rows, width)),
                                 _host(o, n_rows * width, (n_rows, width)), _host(w, width), eps))
        return x
    if n_rows:
        get_kernel(dev, "rms_norm_add_f32").launch((n_rows,), (THREADS,), x, o, w, n_rows, width,
                                                   float(eps), stream=stream)
    return x


def add(x, o, n: int, stream=None):
    """x (n,) += o (n,)."""
    dev = x.device
    if dev.kind == "cpu":
        _put(x, _host(x, n) + _host(o, n))
        return x
    get_kernel(dev, "add_f32").launch(_grid(n), (THREADS,), x, o, n, stream=stream)
    return x


def act_mul(out, g, u, n: int, kind: str, stream=None):
    """out (n,) = act(g) * u, act = silu | gelu_tanh."""
    if kind not in ACT_KINDS:
        raise ValueError(f"act_mul: unknown activation {kind!r}; expected {list(ACT_KINDS)}")
    dev = g.device
    if dev.kind == "cpu":
        _put(out, act_mul_cpu(_host(g, n), _host(u, n), kind))
        return out
    get_kernel(dev, "act_mul_f32").launch(_grid(n), (THREADS,), out, g, u, n, ACT_KINDS[kind],
                                          stream=stream)
    return out


def rope(x, pos, table, n_tok: int, heads: int, d: int, n_dims: int, neox: bool, stream=None):
    """In place on x (n_tok, heads, d): rotate the first n_dims dims at positions
    pos int32 (n_tok,), with ``table`` = device copy of rope_table(...)."""
    dev = x.device
    if n_dims % 2 or n_dims > d:
        raise ValueError(f"rope: n_dims={n_dims} must be even and <= head_dim {d}")
    if dev.kind == "cpu":
        p = pos.copy_to_host().view(np.int32)[:n_tok]
        tab = table.copy_to_host().view(np.float32).reshape(-1, 2, n_dims // 2)[p]  # (n, 2, half)
        xs = _host(x, n_tok * heads * d, (n_tok, heads, d)).copy()
        c, s = tab[:, 0][:, None, :], tab[:, 1][:, None, :]
        half = n_dims // 2
        ia = np.arange(half) if neox else np.arange(0, n_dims, 2)
        ib = ia + half if neox else ia + 1
        a, b = xs[..., ia].copy(), xs[..., ib].copy()
        xs[..., ia], xs[..., ib] = a * c - b * s, a * s + b * c
        _put(x, xs)
        return x
    total = n_tok * heads * (n_dims // 2)
    if total:
        get_kernel(dev, "rope_f32").launch(_grid(total), (THREADS,), x, pos, table, n_tok, heads,
                                           d, n_dims, int(bool(neox)), stream=stream)
    return x


def kv_store(kc, vc, k, v, slot, pos, n_tok: int, row: int, slot_stride: int, layer_off: int,
             stream=None):
    """kc/vc[slot[t] * slot_stride + layer_off + pos[t] * row + c] = k/v[t, c]."""
    dev = k.device
    if dev.kind == "cpu":
        s = slot.copy_to_host().view(np.int32)[:n_tok]
        p = pos.copy_to_host().view(np.int32)[:n_tok]
        for cache, src in ((kc, k), (vc, v)):
            arr = cache.copy_to_host().view(np.float32).reshape(-1).copy()
            rows = _host(src, n_tok * row, (n_tok, row))
            for t in range(n_tok):
                o = int(s[t]) * slot_stride + layer_off + int(p[t]) * row
                arr[o:o + row] = rows[t]
            _put(cache, arr)
        return
    if n_tok:
        get_kernel(dev, "kv_store_f32").launch(_grid(n_tok * row), (THREADS,), kc, vc, k, v, slot,
                                               pos, n_tok, row, slot_stride, layer_off,
                                               stream=stream)


def attention_splits(n_queries: int, max_keys: int, multiprocessors: int = 132) -> int:
    """Workgroups per (query, head) that split the keys (flash-decoding): enough to give
    every multiprocessor about two, at least 32 keys each, at most 32."""
    want = -(-2 * multiprocessors // max(1, n_queries))
    return max(1, min(32, want, -(-int(max_keys) // 32)))


def attention_part_floats(n_tok: int, H: int, d: int, n_split: int) -> int:
    """Size (float32 elements) of the partials workspace ``attention`` needs."""
    return n_tok * H * n_split * (d + 2) if n_split > 1 else 0


def attention(out, q, kc, vc, fk, fv, slot, pos, n_tok: int, H: int, KV: int, d: int,
              slot_stride: int, layer_off: int, fresh_start: int, window, scale: float,
              n_split: int = 1, part=None, stream=None):
    """out (n_tok, H, d): query t at position pos[t] of the sequence in cache slot
    slot[t] attends over keys [lo, pos[t]]; keys >= fresh_start come from fk/fv rows
    (key - fresh_start), earlier ones from the cache (layout [slot][layer][pos][KV*d]).
    ``n_split`` > 1 splits each query's keys over that many workgroups, whose partials go
    to ``part`` (float32, attention_part_floats(...) elements; allocated if None)."""
    if d > MAX_HEAD_DIM or H % KV:
        raise ValueError(f"attention: head_dim {d} > {MAX_HEAD_DIM} or {H} heads not a multiple "
                         f"of {KV} KV heads")
    n_split = int(n_split)
    if not 1 <= n_split <= 1024:
        raise ValueError(f"attention: n_split must be in [1, 1024], got {n_split}")
    dev = q.device
    win = int(window or 0)
    if dev.kind == "cpu":
        s = slot.copy_to_host().view(np.int32)[:n_tok]
        p = pos.copy_to_host().view(np.int32)[:n_tok]
        qs = _host(q, n_tok * H * d, (n_tok, H, d))
        kca, vca = (c.copy_to_host().view(np.float32).reshape(-1) for c in (kc, vc))
        row = KV * d
        res = np.empty((n_tok, H, d), np.float32)
        for t in range(n_tok):
            keys, vals = [], []
            for j in range(int(p[t]) + 1):
                if j >= fresh_start:
                    keys.append(_host(fk, (j - fresh_start + 1) * row)[(j - fresh_start) * row:])
                    vals.append(_host(fv, (j - fresh_start + 1) * row)[(j - fresh_start) * row:])
                else:
                    o = int(s[t]) * slot_stride + layer_off + j * row
                    keys.append(kca[o:o + row])
                    vals.append(vca[o:o + row])
            kk = np.stack(keys).reshape(-1, KV, d)
            vv = np.stack(vals).reshape(-1, KV, d)
            res[t] = attention_cpu(qs[t:t + 1], kk, vv, [int(p[t])], scale, win or None)[0]
        _put(out, res)
        return out
    if not n_tok:
        return out
    need = attention_part_floats(n_tok, H, d, n_split)
    if part is None:
        part = dev.empty((max(1, need),), np.float32)
    elif part.nbytes < 4 * need:
        raise ValueError(f"attention: part has {part.nbytes} bytes, needs {4 * need}")
    get_kernel(dev, "attention_f32").launch((n_tok * H * n_split,), (THREADS,), out, part, q, kc,
                                            vc, fk, fv, slot, pos, n_tok, H, KV, d, slot_stride,
                                            layer_off, int(fresh_start), win, float(scale),
                                            n_split, stream=stream)
    if n_split > 1:
        get_kernel(dev, "attention_combine_f32").launch((n_tok * H,), (THREADS,), out, part,
                                                        n_tok * H, d, n_split, stream=stream)
    return out


def qk_rope(q, k, qw, kw, pos, table, n_tok: int, H: int, KV: int, d: int, n_dims: int,
            neox: bool, eps: float = 0.0, stream=None):
    """In place: q (n_tok, H, d) and k (n_tok, KV, d) -> rope(rms_norm(.) * w) when
    qw/kw are given (Gemma's q/k norms), else rope(.): one launch for both."""
    use_norm = qw is not None
    if n_dims % 2 or n_dims > d or d > MAX_HEAD_DIM:
        raise ValueError(f"qk_rope: n_dims={n_dims} must be even and <= head_dim {d} <= "
                         f"{MAX_HEAD_DIM}")
    dev = q.device
    if dev.kind == "cpu":
        for buf, w, heads in ((q, qw, H), (k, kw, KV)):
            if use_norm:
                rms_norm(buf, buf, w, n_tok * heads, d, eps)
            rope(buf, pos, table, n_tok, heads, d, n_dims, neox)
        return
    if n_tok:
        get_kernel(dev, "qk_rope_f32").launch((n_tok * (H + KV),), (THREADS,), q, k,
                                              qw if use_norm else q, kw if use_norm else k, pos,
                                              table, n_tok, H, KV, d, n_dims, int(bool(neox)),
                                              int(use_norm), float(eps), stream=stream)


def residual_norm(x, h, o, w_post, w_next, n_rows: int, width: int, eps: float, stream=None):
    """x (R, W) += rms_norm(o) * w_post if w_post is given, else += o; then, if w_next is
    given, h (R, W) = rms_norm(x) * w_next.  One launch."""
    dev = x.device
    if dev.kind == "cpu":
        if w_post is not None:
            rms_norm_add(x, o, w_post, n_rows, width, eps)
        else:
            add(x, o, n_rows * width)
        if w_next is not None:
            rms_norm(h, x, w_next, n_rows, width, eps)
        return
    if n_rows:
        get_kernel(dev, "residual_norm_f32").launch(
            (n_rows,), (THREADS,), x, h if w_next is not None else x, o,
            w_post if w_post is not None else o, w_next if w_next is not None else o, n_rows,
            width, float(eps), int(w_post is not None), int(w_next is not None), stream=stream)


def attn_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
