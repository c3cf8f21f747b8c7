"""CPU attention (float32) over the paged KV cache, and over plain K/V for prefill.

Conventions shared by every function here:
  * grouped-query attention: n_q_heads = group * n_kv_heads, and query head h reads
    KV head h // group (llama.cpp / Hugging Face ``repeat_kv`` order);
  * scores = scale * q.k; with ``softcap`` (Gemma 2) scores = softcap * tanh(scores / softcap);
  * a query at position p attends to keys at positions j <= p (causal) and, with a sliding
    ``window`` w, only to p - w < j, i.e. the last w positions including its own.
Decode walks a sequence's page table a few pages at a time (``chunk_pages``), decodes only
those pages and folds them into an online softmax: no function here decodes the whole
cache.  Prefill attends over the unquantized K/V it is given.
"""
from __future__ import annotations

import numpy as np

from .cache import KvCache

__all__ = ["decode_attention", "prefill_attention", "cached_prefill_attention"]

DEFAULT_CHUNK_TOKENS = 256     # decode: pages per step ~ this many tokens
DEFAULT_Q_CHUNK = 128          # prefill: queries per step (bounds the score matrix)


def _check_common(scale, window, softcap):
    scale = float(scale)
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    if window is not None:
        window = int(window)
        if window < 1:
            raise ValueError(f"window must be >= 1 (or None), got {window}")
    if softcap is not None:
        softcap = float(softcap)
        if not softcap > 0:
            raise ValueError(f"softcap must be > 0 (or None), got {softcap}")
    return scale, window, softcap


def _group(n_q_heads: int, n_kv_heads: int) -> int:
    if n_q_heads % n_kv_heads:
        raise ValueError(f"grouped-query attention needs n_q_heads ({n_q_heads}) to be a "
                         f"multiple of the KV heads ({n_kv_heads})")
    return n_q_heads // n_kv_heads


def _scores(qh, k, scale, softcap):
    """qh (Hk, g, [m,] d), k (t, Hk, d) -> float32 scores (Hk, g, [m,] t)."""
    kt = k.transpose(1, 2, 0)                                  # (Hk, d, t)
    if qh.ndim == 4:
        kt = kt[:, None]                                       # (Hk, 1, d, t)
    s = np.matmul(qh, kt) * np.float32(scale)
    if softcap is not None:
        c = np.float32(softcap)
        s = c * np.tanh(s / c)
    return s


def decode_attention(cache: KvCache, layer: int, seq_ids, q, scale: float, window=None,
                     softcap=None, chunk_pages: int | None = None) -> np.ndarray:
    """One new query per sequence over everything the sequence holds in ``layer``.

    q: (batch, n_q_heads, head_dim), batch == len(seq_ids); the query sits at the
    sequence's last position (append its K/V to ``layer`` first).
    Returns float32 (batch, n_q_heads, head_dim).
    """
    cfg = cache.config
    scale, window, softcap = _check_common(scale, window, softcap)
    seq_ids = list(seq_ids)
    q = np.asarray(q, dtype=np.float32)
    if q.ndim != 3 or q.shape[0] != len(seq_ids) or q.shape[2] != cfg.head_dim:
        raise ValueError(f"decode_attention: q must be (batch={len(seq_ids)}, n_q_heads, "
                         f"head_dim={cfg.head_dim}), got {q.shape}")
    g = _group(q.shape[1], cfg.num_heads)
    if chunk_pages is None:
        chunk_pages = max(1, DEFAULT_CHUNK_TOKENS // cfg.page_size)
    if chunk_pages < 1:
        raise ValueError(f"chunk_pages must be >= 1, got {chunk_pages}")
    P, Hk, d = cfg.page_size, cfg.num_heads, cfg.head_dim
    out = np.empty(q.shape, np.float32)
    for b, sid in enumerate(seq_ids):
        n = cache.layer_len(sid, layer)
        if n == 0:
            raise ValueError(f"decode_attention: sequence {sid!r} has no tokens in layer "
                             f"{layer}")
        start = 0 if window is None else max(0, n - window)
        qh = q[b].reshape(Hk, g, d)                                 # (Hk, g, d)
        m = np.full((Hk, g), -np.inf, np.float32)                   # running max
        den = np.zeros((Hk, g), np.float32)                         # running sum of exp
        acc = np.zeros((Hk, g, d), np.float32)                      # running sum p * v
        lo = start
        while lo < n:
            hi = min(n, (lo // P + chunk_pages) * P)                # page-aligned end
            k, v = cache.read_range(sid, layer, lo, hi)             # (t, Hk, d) each
            s = _scores(qh, k, scale, softcap)                      # (Hk, g, t)
            m_new = np.maximum(m, s.max(axis=-1))
            alpha = np.exp(m - m_new)
            p = np.exp(s - m_new[..., None])                        # (Hk, g, t)
            den = den * alpha + p.sum(axis=-1)
            acc = acc * alpha[..., None] + np.matmul(p, v.transpose(1, 0, 2))
            m = m_new
            lo = hi
        out[b] = (acc / den[..., None]).reshape(-1, d)
    return out


def prefill_attention(q, k, v, scale: float, window=None, causal: bool = True, softcap=None,
                      q_chunk: int = DEFAULT_Q_CHUNK) -> np.ndarray:
    """Attention of n_q queries over n_kv unquantized keys/values, float32.

    q: (n_q, n_q_heads, head_dim); k, v: (n_kv, n_kv_heads, head_dim), n_kv >= n_q.
    The queries are the last n_q positions: query i sits at position n_kv - n_q + i (so a
    plain prompt has n_kv == n_q, and a prompt after a cached prefix passes prefix + new K/V).
    causal=False lets every query see every key (``window`` then is not allowed).
    Returns float32 (n_q, n_q_heads, head_dim).
    """
    scale, window, softcap = _check_common(scale, window, softcap)
    q = np.asarray(q, dtype=np.float32)
    k = np.asarray(k, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if q.ndim != 3 or k.ndim != 3 or k.shape != v.shape or q.shape[2] != k.shape[2]:
        raise ValueError(f"prefill_attention: want q (n_q, n_q_heads, d) and k, v "
                         f"(n_kv, n_kv_heads, d); got q {q.shape}, k {k.shape}, v {v.shape}")
    n_q, hq, d = q.shape
    n_kv, hk = k.shape[0], k.shape[1]
    if n_kv < n_q:
        raise ValueError(f"prefill_attention: {n_kv} keys for {n_q} queries (need n_kv >= n_q)")
    if not causal and window is not None:
        raise ValueError("prefill_attention: window needs causal=True")
    if n_q == 0:
        return np.zeros(q.shape, np.float32)
    g = _group(hq, hk)
    if q_chunk < 1:
        raise ValueError(f"q_chunk must be >= 1, got {q_chunk}")
    offset = n_kv - n_q
    out = np.empty(q.shape, np.float32)
    for a in range(0, n_q, q_chunk):
        b = min(n_q, a + q_chunk)
        pos = np.arange(a, b) + offset                              # (m,) query positions
        hi = pos[-1] + 1 if causal else n_kv
        lo = 0 if window is None else max(0, pos[0] - window + 1)
        kk, vv = k[lo:hi], v[lo:hi]                                 # (t, Hk, d)
        qh = q[a:b].reshape(b - a, hk, g, d).transpose(1, 2, 0, 3)  # (Hk, g, m, d)
        s = _scores(qh, kk, scale, softcap)                         # (Hk, g, m, t)
        if causal:
            j = np.arange(lo, hi)
            bad = j[None, :] > pos[:, None]
            if window is not None:
                bad |= j[None, :] <= pos[:, None] - window
            s = np.where(bad, np.float32(-np.inf), s)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        o = np.matmul(p, vv.transpose(1, 0, 2)[:, None])            # (Hk, g, m, d)
        out[a:b] = o.transpose(2, 0, 1, 3).reshape(b - a, hq, d)
    return out


def cached_prefill_attention(cache: KvCache, layer: int, seq_id, q, k, v, scale: float,
                             window=None, softcap=None) -> np.ndarray:
    """Append k, v (n, n_kv_heads, d) to ``layer`` of ``seq_id``, then attend q over it.

    The new tokens use the unquantized k, v; tokens the sequence held before come from the
    cache (dequantized, only the pages the window reaches).  q: (n, n_q_heads, d).
    Raises KvCacheFull (cache unchanged) if the pages do not fit.
    Returns float32 (n, n_q_heads, head_dim).
    """
    scale, window, softcap = _check_common(scale, window, softcap)
    k = np.asarray(k, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    q = np.asarray(q, dtype=np.float32)
    if q.ndim != 3 or k.ndim != 3 or q.shape[0] != k.shape[0]:
        raise ValueError(f"cached_prefill_attention: q {q.shape} and k {k.shape} need the "
                         f"same number of tokens")
    n_prev = cache.layer_len(seq_id, layer)
    cache.append(seq_id, layer, k, v)
    lo = 0 if window is None else max(0, n_prev - window + 1)
    pk, pv = cache.read_range(seq_id, layer, lo, n_prev)           # (n_prev - lo, Hk, d)
    return prefill_attention(q, np.concatenate([pk, k]), np.concatenate([pv, v]), scale,
                             window=window, causal=True, softcap=softcap)
