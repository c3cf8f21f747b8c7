"""CPU attention over the paged KV cache against a float64 NumPy reference that walks the
page table itself, and prefill attention against the same reference on plain arrays."""
import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")

from rocmforge import mx
from rocmforge.kv import (CacheConfig, KvCache, KvCacheDtype, KvCacheFull,
                          cached_prefill_attention, decode_attention, prefill_attention)

ALL_DTYPES = list(KvCacheDtype)
CONTEXTS = [1, 17, 33, 100]           # tokens per sequence of a decode batch
PAGE_SIZES = [16, 32]
GQA = [1, 4]                          # query heads per KV head
HEADS = {64: 2, 128: 1, 256: 1}       # head_dim -> KV heads (num_heads * head_dim % 32 == 0)
WINDOWS = [None, 24]

# Max |out - reference| where the reference uses the same dequantized K/V in float64:
# float32 rounding only, scaled by max |v| (measured worst over the decode grid: 1.6e-7).
F32_ATOL = 2e-6
# Max |out - attention on the unquantized K/V in float64|, scaled by max |v|, for
# standard-normal q, k, v and scale 1/sqrt(head_dim).  Measured worst cases over the decode
# grid below, in the comments.  The one-token context shows the element error directly:
# attention returns v itself.  MXFP8_E4M3 loses more than MXFP6_E2M3 here because OCP MX
# saturates the block maximum (scale 2**(floor(log2 amax) - emax); E4M3's max is 1.75 *
# 2**emax, E2M3's 1.875 * 2**emax), so a normal block's largest value is clipped harder.
QUANT_ATOL = {
    KvCacheDtype.F32: 2e-6,           # 1.6e-7
    KvCacheDtype.F16: 1e-3,           # 4.3e-4
    KvCacheDtype.BF16: 7e-3,          # 3.4e-3
    KvCacheDtype.MXFP8_E4M3: 0.2,     # 0.120
    KvCacheDtype.MXFP6_E2M3: 0.1,     # 0.052
    KvCacheDtype.MXFP6_E3M2: 0.2,     # 0.108
    KvCacheDtype.MXFP4: 0.35,         # 0.199
}



# ------------------------------------------------------------------ reference
def decode_page(dtype, page):
    """uint8 (page_size, row_bytes) -> float64 (page_size, row_values), without rocmforge.kv."""
    page = np.ascontiguousarray(page)
    if dtype is KvCacheDtype.F32:
        x = page.view("<f4")
    elif dtype is KvCacheDtype.F16:
        x = page.view("<f2")
    elif dtype is KvCacheDtype.BF16:
        x = page.view("<u2").view(ml_dtypes.bfloat16)
    else:
        x = mx.dequantize(page, dtype.mx_format)
    return x.astype(np.float64)


def walk_page_table(cache, layer, sid):
    """k, v float64 (n, num_heads, head_dim): each page of the table in order, dequantized."""
    cfg = cache.config
    n = cache.layer_len(sid, layer)
    ks, vs = [], []
    for page in cache.page_table(sid):
        ks.append(decode_page(cfg.dtype, cache.storage.k_pages[layer][page]))
        vs.append(decode_page(cfg.dtype, cache.storage.v_pages[layer][page]))
    shape = (-1, cfg.num_heads, cfg.head_dim)
    return np.concatenate(ks)[:n].reshape(shape), np.concatenate(vs)[:n].reshape(shape)


def ref_attention(q, k, v, scale, window=None, causal=True, softcap=None):
    """Plain float64 attention, one query at a time.  q (n_q, Hq, d); k, v (n_kv, Hk, d);
    query i sits at position n_kv - n_q + i."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    n_q, hq, d = q.shape
    n_kv, hk = k.shape[:2]
    g = hq // hk
    out = np.zeros((n_q, hq, d))
    for i in range(n_q):
        pos = n_kv - n_q + i
        j = np.arange(n_kv)
        ok = np.ones(n_kv, bool)
        if causal:
            ok &= j <= pos
        if window is not None:
            ok &= j > pos - window
        for h in range(hq):
            s = scale * (k[ok, h // g] @ q[i, h])
            if softcap is not None:
                s = softcap * np.tanh(s / softcap)
            p = np.exp(s - s.max())
            out[i, h] = (p / p.sum()) @ v[ok, h // g]
    return out


# ------------------------------------------------------------------ decode
def build_batch(dtype, page_size, hk, d, rng, layers=2):
    """A cache holding one sequence per CONTEXTS length plus a fork of the 33-token one
    with 4 more tokens; returns the cache, seq ids and the unquantized K/V per layer."""
    cfg = CacheConfig(page_size, 64, hk, d, layers, dtype)
    cache = KvCache(cfg)
    raw = {}
    for sid, n in enumerate(CONTEXTS):
        cache.allocate(sid)
        raw[sid] = []
        for layer in range(layers):
            k = rng.standard_normal((n, hk, d)).astype(np.float32)
            v = rng.standard_normal((n, hk, d)).astype(np.float32)
            cut = n // 2                     # a prompt, then the rest in single tokens
            cache.append(sid, layer, k[:cut], v[:cut])
            for t in range(cut, n):
                cache.append(sid, layer, k[t:t + 1], v[t:t + 1])
            raw[sid].append((k, v))
    cache.fork(2, "fork")
    raw["fork"] = []
    for layer in range(layers):
        k = rng.standard_normal((4, hk, d)).astype(np.float32)
        v = rng.standard_normal((4, hk, d)).astype(np.float32)
        cache.append("fork", layer, k, v)
        pk, pv = raw[2][layer]
        raw["fork"].append((np.concatenate([pk, k]), np.concatenate([pv, v])))
    return cache, list(raw), raw


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("gqa", GQA)
@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_decode_attention_matches_reference(dtype, page_size, gqa, window, head_dim):
    rng = np.random.default_rng([page_size, gqa, head_dim, window or 0, ALL_DTYPES.index(dtype)])
    hk = HEADS[head_dim]
    cache, sids, raw = build_batch(dtype, page_size, hk, head_dim, rng)
    layer = 1
    q = rng.standard_normal((len(sids), hk * gqa, head_dim)).astype(np.float32)
    scale = head_dim ** -0.5
    out = decode_attention(cache, layer, sids, q, scale, window=window)
    assert out.dtype == np.float32 and out.shape == q.shape
    for b, sid in enumerate(sids):
        k, v = walk_page_table(cache, layer, sid)
        want = ref_attention(q[b:b + 1], k, v, scale, window)[0]
        vmax = np.abs(v).max()
        np.testing.assert_allclose(out[b], want, rtol=0, atol=F32_ATOL * vmax,
                                   err_msg=f"sequence {sid} vs dequantized reference")
        rk, rv = raw[sid][layer]
        exact = ref_attention(q[b:b + 1], rk, rv, scale, window)[0]
        np.testing.assert_allclose(out[b], exact, rtol=0,
                                   atol=QUANT_ATOL[dtype] * np.abs(rv).max(),
                                   err_msg=f"sequence {sid} vs unquantized float64")


@pytest.mark.parametrize("dtype", [KvCacheDtype.F32, KvCacheDtype.MXFP4], ids=lambda d: d.name)
def test_decode_chunking_and_softcap(dtype):
    rng = np.random.default_rng(7)
    cache, sids, _ = build_batch(dtype, 16, 2, 64, rng)
    q = 4 * rng.standard_normal((len(sids), 4, 64)).astype(np.float32)
    for chunk_pages in (1, 2, None):
        out = decode_attention(cache, 0, sids, q, 0.125, window=40, softcap=5.0,
                               chunk_pages=chunk_pages)
        for b, sid in enumerate(sids):
            k, v = walk_page_table(cache, 0, sid)
            want = ref_attention(q[b:b + 1], k, v, 0.125, window=40, softcap=5.0)[0]
            np.testing.assert_allclose(out[b], want, rtol=0, atol=F32_ATOL * np.abs(v).max())
    # the cap changes the answer (so the test above checks it is applied)
    plain = decode_attention(cache, 0, sids, q, 0.125, window=40)
    assert np.abs(plain - out).max() > 1e-3


def test_decode_errors():
    rng = np.random.default_rng(8)
    cache, sids, _ = build_batch(KvCacheDtype.F16, 16, 2, 64, rng)
    q = np.zeros((len(sids), 3, 64), np.float32)
    with pytest.raises(ValueError, match=r"n_q_heads \(3\) to be a multiple of the KV heads \(2\)"):
        decode_attention(cache, 0, sids, q, 0.1)
    with pytest.raises(ValueError, match=r"q must be \(batch=5, n_q_heads, head_dim=64\)"):
        decode_attention(cache, 0, sids, np.zeros((5, 2, 32)), 0.1)
    with pytest.raises(ValueError, match="window must be >= 1"):
        decode_attention(cache, 0, sids, np.zeros((5, 2, 64)), 0.1, window=0)
    cache.allocate("empty")
    with pytest.raises(ValueError, match="sequence 'empty' has no tokens in layer 0"):
        decode_attention(cache, 0, ["empty"], np.zeros((1, 2, 64)), 0.1)


# ------------------------------------------------------------------ prefill
@pytest.mark.parametrize("n_q, n_kv, gqa, window, causal, softcap", [
    (1, 1, 1, None, True, None), (17, 17, 4, None, True, None), (100, 100, 1, 24, True, None),
    (33, 33, 4, None, False, None), (17, 50, 4, 20, True, None), (300, 300, 2, 64, True, None),
    (40, 40, 2, None, True, 0.5),
])
def test_prefill_attention_matches_reference(n_q, n_kv, gqa, window, causal, softcap):
    rng = np.random.default_rng([n_q, n_kv, gqa])
    hk, d = 2, 64
    q = rng.standard_normal((n_q, hk * gqa, d)).astype(np.float32)
    k = rng.standard_normal((n_kv, hk, d)).astype(np.float32)
    v = rng.standard_normal((n_kv, hk, d)).astype(np.float32)
    want = ref_attention(q, k, v, 0.125, window, causal, softcap)
    for q_chunk in (7, 128):
        out = prefill_attention(q, k, v, 0.125, window=window, causal=causal, softcap=softcap,
                                q_chunk=q_chunk)
        assert out.dtype == np.float32 and out.shape == q.shape
        np.testing.assert_allclose(out, want, rtol=0, atol=F32_ATOL * np.abs(v).max())


def test_prefill_last_row_equals_decode():
    rng = np.random.default_rng(9)
    n, hk, g, d = 45, 2, 4, 128
    q = rng.standard_normal((n, hk * g, d)).astype(np.float32)
    k = rng.standard_normal((n, hk, d)).astype(np.float32)
    v = rng.standard_normal((n, hk, d)).astype(np.float32)
    cache = KvCache(CacheConfig(16, 8, hk, d, 1, "f32"))
    cache.allocate(0)
    cache.append(0, 0, k, v)
    dec = decode_attention(cache, 0, [0], q[-1:], d ** -0.5, window=30)
    pre = prefill_attention(q, k, v, d ** -0.5, window=30)
    np.testing.assert_allclose(dec[0], pre[-1], rtol=0, atol=F32_ATOL * np.abs(v).max())


@pytest.mark.parametrize("dtype", [KvCacheDtype.BF16, KvCacheDtype.MXFP6_E3M2],
                         ids=lambda d: d.name)
def test_cached_prefill_writes_and_attends_over_prefix(dtype):
    rng = np.random.default_rng(10)
    hk, g, d, window = 1, 4, 128, 30
    cache = KvCache(CacheConfig(16, 8, hk, d, 1, dtype))
    cache.allocate(0)
    k1, v1 = (rng.standard_normal((21, hk, d)).astype(np.float32) for _ in range(2))
    q1 = rng.standard_normal((21, hk * g, d)).astype(np.float32)
    out1 = cached_prefill_attention(cache, 0, 0, q1, k1, v1, 0.1, window=window)
    np.testing.assert_allclose(out1, ref_attention(q1, k1, v1, 0.1, window), rtol=0,
                               atol=F32_ATOL * np.abs(v1).max())      # fresh prompt: unquantized
    k2, v2 = (rng.standard_normal((12, hk, d)).astype(np.float32) for _ in range(2))
    q2 = rng.standard_normal((12, hk * g, d)).astype(np.float32)
    out2 = cached_prefill_attention(cache, 0, 0, q2, k2, v2, 0.1, window=window)
    pk, pv = walk_page_table(cache, 0, 0)                             # (33, hk, d) cached
    want = ref_attention(q2, np.concatenate([pk[:21], k2]), np.concatenate([pv[:21], v2]),
                         0.1, window)
    np.testing.assert_allclose(out2, want, rtol=0, atol=F32_ATOL * np.abs(v2).max())
    assert cache.layer_len(0, 0) == 33
    rk, rv = cache.read(0, 0)
    np.testing.assert_array_equal(rk, pk.astype(np.float32))
    # the new tokens were stored quantized: the cached prefix differs from k1 unless F32
    assert np.abs(pk[:21] - k1).max() > 0
    # no room: KvCacheFull, cache unchanged
    before = cache.pool.state(), cache.page_table(0), cache.layer_len(0, 0)
    big = np.zeros((200, hk, d), np.float32)
    with pytest.raises(KvCacheFull):
        cached_prefill_attention(cache, 0, 0, np.zeros((200, g, d)), big, big, 0.1)
    assert (cache.pool.state(), cache.page_table(0), cache.layer_len(0, 0)) == before


def test_prefill_errors():
    z = np.zeros((4, 2, 64), np.float32)
    with pytest.raises(ValueError, match="5 keys for 6 queries"):
        prefill_attention(np.zeros((6, 2, 64)), z[:1].repeat(5, 0), z[:1].repeat(5, 0), 0.1)
    with pytest.raises(ValueError, match="window needs causal=True"):
        prefill_attention(z, z, z, 0.1, window=2, causal=False)
    with pytest.raises(ValueError, match="softcap must be > 0"):
        prefill_attention(z, z, z, 0.1, softcap=0.0)
    with pytest.raises(ValueError, match=r"got q \(4, 2, 64\), k \(4, 2, 32\)"):
        prefill_attention(z, z[..., :32], z[..., :32], 0.1)
