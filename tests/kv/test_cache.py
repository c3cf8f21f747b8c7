"""Paged KV cache: config sizes, row codecs, pool / page-table invariants, copy-on-write,
KvCacheFull atomicity, and a long random operation sequence against a dense reference."""
import zlib

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")

from rocmforge import mx
from rocmforge.kv import (CacheConfig, KvCache, KvCacheDtype, KvCacheFull, Storage,
                          decode_rows, encode_rows)
from rocmforge.kv.cache import bf16_to_f32, f32_to_bf16

ALL_DTYPES = list(KvCacheDtype)
MX_DTYPES = [d for d in KvCacheDtype if d.is_mx]
# Bits per stored value, from the OCP MX block sizes (scale byte + packed codes per 32).
BITS = {"F32": 32, "F16": 16, "BF16": 16, "MXFP8_E4M3": 8.25, "MXFP6_E2M3": 6.25,
        "MXFP6_E3M2": 6.25, "MXFP4": 4.25}


# ------------------------------------------------------------------ oracles
def roundtrip(dtype, rows):
    """The values a cache of ``dtype`` must give back for float32 rows (n, D), computed
    without the kv package: rocmforge.mx for MX, numpy for F16, ml_dtypes for BF16."""
    rows = np.asarray(rows, np.float32)
    if dtype is KvCacheDtype.F32:
        return rows.copy()
    if dtype is KvCacheDtype.F16:
        with np.errstate(over="ignore"):
            return rows.astype(np.float16).astype(np.float32)
    if dtype is KvCacheDtype.BF16:
        return rows.astype(ml_dtypes.bfloat16).astype(np.float32)
    fmt = dtype.mx_format
    return mx.dequantize(mx.quantize(rows, fmt), fmt)


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a, np.float32).view(np.uint32),
        np.ascontiguousarray(b, np.float32).view(np.uint32))


def snapshot(cache):
    """Deep copy of everything a failed operation must leave alone."""
    tables = {s: (cache.page_table(s),
                  tuple(cache.layer_len(s, l) for l in range(cache.config.num_layers)))
              for s in cache.sequences()}
    st = cache.storage
    return (cache.pool.state(), tables, [a.copy() for a in st.k_pages],
            [a.copy() for a in st.v_pages])


def assert_same_snapshot(a, b):
    assert a[0] == b[0], "pool refcounts / free list changed"
    assert a[1] == b[1], "page tables changed"
    for x, y in zip(a[2] + a[3], b[2] + b[3]):
        np.testing.assert_array_equal(x, y, err_msg="stored page bytes changed")


def assert_balanced(cache):
    """Independently of BlockPool.check: refcount == table entries; free == unreferenced."""
    n = cache.config.max_pages
    held = np.zeros(n, np.int64)
    for s in cache.sequences():
        table = cache.page_table(s)
        assert len(table) == -(-cache.layer_len(s, 0) // cache.config.page_size)
        for p in table:
            held[p] += 1
    refcount, free = cache.pool.state()
    np.testing.assert_array_equal(np.asarray(refcount), held)
    assert len(set(free)) == len(free)
    assert set(free) == set(np.flatnonzero(held == 0).tolist())


def rand_rows(rng, n, shape):
    scale = 10.0 ** rng.uniform(-3, 3)
    x = rng.standard_normal((n,) + shape) * scale
    if rng.random() < 0.1:
        x[rng.integers(n)] = 0.0                      # an all-zero row
    return x.astype(np.float32)


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_sizes_follow_the_format_table(dtype):
    cfg = CacheConfig(page_size=16, max_pages=10, num_heads=4, head_dim=64, num_layers=3,
                      dtype=dtype)
    assert dtype.bits_per_value == BITS[dtype.name]
    if dtype.is_mx:
        assert cfg.row_bytes == 256 // 32 * dtype.mx_format.spec.block_bytes
        assert mx.quantize(np.zeros((1, 256), np.float32), dtype.mx_format).shape == \
            (1, cfg.row_bytes)
    assert cfg.row_bytes * 8 == 256 * dtype.bits_per_value
    assert cfg.bytes_per_token == 2 * 3 * cfg.row_bytes
    assert cfg.bytes_per_page == 16 * cfg.bytes_per_token
    assert cfg.total_bytes == 10 * cfg.bytes_per_page
    cache = KvCache(cfg)
    assert cache.storage.nbytes == cfg.total_bytes
    rep = cache.memory_report()
    assert rep["bytes_per_token"] == cfg.bytes_per_token
    assert rep["bytes_per_page"] == cfg.bytes_per_page
    assert rep["pages"] == 10 and rep["free_pages"] == 10 and rep["used_pages"] == 0
    assert rep["total_bytes"] == cfg.total_bytes
    text = str(rep)
    assert f"{cfg.bytes_per_token} bytes/token" in text
    assert f"{dtype.bits_per_value:g} bits/value" in text and dtype.name in text


def test_from_budget():
    kw = dict(page_size=32, num_heads=2, head_dim=64, num_layers=4, dtype="mxfp6_e2m3")
    one = CacheConfig(max_pages=1, **kw)
    cfg = CacheConfig.from_budget(7 * one.bytes_per_page + one.bytes_per_page - 1, **kw)
    assert cfg.max_pages == 7 and cfg.dtype is KvCacheDtype.MXFP6_E2M3
    assert cfg.total_bytes <= 8 * one.bytes_per_page - 1
    with pytest.raises(ValueError, match="smaller than one page"):
        CacheConfig.from_budget(one.bytes_per_page - 1, **kw)


@pytest.mark.parametrize("dtype", MX_DTYPES, ids=lambda d: d.name)
def test_mx_row_must_be_whole_blocks(dtype):
    with pytest.raises(ValueError, match=r"num_heads \* head_dim = 3 \* 40 = 120 .*multiple of 32"):
        CacheConfig(16, 4, num_heads=3, head_dim=40, num_layers=1, dtype=dtype)
    CacheConfig(16, 4, num_heads=3, head_dim=40, num_layers=1, dtype="f16")   # fine unquantized


def test_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="page_size must be >= 1"):
        CacheConfig(0, 4, 2, 64, 1)
    with pytest.raises(ValueError, match="max_pages must be an integer"):
        CacheConfig(16, 4.5, 2, 64, 1)
    with pytest.raises(ValueError, match="unknown KV cache dtype 'fp5'"):
        CacheConfig(16, 4, 2, 64, 1, "fp5")


# ------------------------------------------------------------------ codecs
def test_bf16_round_to_nearest_even_matches_ml_dtypes():
    rng = np.random.default_rng(1)
    with np.errstate(over="ignore", under="ignore"):
        wide = (rng.standard_normal(4096) * 10.0 ** rng.uniform(-40, 38, 4096)).astype(np.float32)
    x = np.concatenate([
        wide,
        rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32).view(np.float32),
        # exact ties (low 16 bits 0x8000) with even and odd kept parts, and near-ties
        np.array([0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7FFFFF, 0x7F7F8000,
                  0x00008000, 0x00018000, 0x80008000], np.uint32).view(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45], np.float32),
    ])
    assert x.dtype == np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    got = f32_to_bf16(x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.isnan(bf16_to_f32(got[nan])).all()
    np.testing.assert_array_equal(bf16_to_f32(want).view(np.uint32),
                                  (want.astype(np.uint32) << 16))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_row_codec_round_trip(dtype):
    rng = np.random.default_rng(2)
    x = rand_rows(rng, 9, (128,))
    data = encode_rows(dtype, x)
    assert data.dtype == np.uint8 and data.shape == (9, dtype.row_bytes(128))
    assert same_bits(decode_rows(dtype, data), roundtrip(dtype, x))


# ------------------------------------------------------------------ sequences, fork, COW
def make(dtype=KvCacheDtype.MXFP6_E2M3, page_size=16, max_pages=8, heads=2, head_dim=32,
         layers=2):
    return KvCache(CacheConfig(page_size, max_pages, heads, head_dim, layers, dtype))


def append_all_layers(cache, sid, k, v):
    for layer in range(cache.config.num_layers):
        cache.append(sid, layer, k, v)


def test_token_count_advances_layer_by_layer():
    cache = make()
    rng = np.random.default_rng(3)
    cache.allocate("a")
    k = rand_rows(rng, 5, (2, 32))
    cache.append("a", 0, k, k)
    assert (cache.layer_len("a", 0), cache.layer_len("a", 1), cache.seq_len("a")) == (5, 0, 0)
    with pytest.raises(ValueError, match="layer 1 of sequence 'a' would hold 6 tokens, more "
                                         "than layer 0 \\(5\\)"):
        cache.append("a", 1, rand_rows(rng, 6, (2, 32)), rand_rows(rng, 6, (2, 32)))
    with pytest.raises(ValueError, match="mid forward pass"):
        cache.fork("a", "b")
    cache.append("a", 1, k[:2], k[:2])
    cache.append("a", 1, k[2:], k[2:])
    assert cache.seq_len("a") == 5
    cache.fork("a", "b")
    assert cache.seq_len("b") == 5 and cache.page_table("b") == cache.page_table("a")


def test_fork_shares_full_pages_and_copies_partial_page_on_write():
    cache = make(page_size=16, max_pages=8)
    rng = np.random.default_rng(4)
    cache.allocate(0)
    k0, v0 = rand_rows(rng, 20, (2, 32)), rand_rows(rng, 20, (2, 32))
    append_all_layers(cache, 0, k0, v0)               # page 0 full, page 1 holds 4 tokens
    cache.fork(0, 1)
    full, partial = cache.page_table(0)
    assert cache.pool.refcount[full] == 2 and cache.pool.refcount[partial] == 2
    assert cache.pages_needed(1, 0, 1) == 1           # the copy of the shared partial page
    k1, v1 = rand_rows(rng, 3, (2, 32)), rand_rows(rng, 3, (2, 32))
    append_all_layers(cache, 1, k1, v1)
    t0, t1 = cache.page_table(0), cache.page_table(1)
    assert t0 == (full, partial) and t1[0] == full and t1[1] != partial
    assert cache.pool.refcount[full] == 2 and cache.pool.refcount[partial] == 1
    k2, v2 = rand_rows(rng, 13, (2, 32)), rand_rows(rng, 13, (2, 32))
    append_all_layers(cache, 0, k2, v2)               # parent writes its page in place
    assert cache.page_table(0)[:2] == (full, partial)
    D = 64
    for layer in range(2):
        pk, pv = cache.read(0, layer)
        ck, cv = cache.read(1, layer)
        assert same_bits(pk.reshape(-1, D), roundtrip(cache.config.dtype,
                                                      np.concatenate([k0, k2]).reshape(-1, D)))
        assert same_bits(cv.reshape(-1, D), roundtrip(cache.config.dtype,
                                                      np.concatenate([v0, v1]).reshape(-1, D)))
    assert_balanced(cache)
    cache.free(0)
    assert cache.pool.refcount[full] == 1 and cache.pool.refcount[partial] == 0
    cache.free(1)
    assert cache.pool.num_free == 8
    assert_balanced(cache)


def test_errors_name_what_is_wrong():
    cache = make()
    cache.allocate(7)
    with pytest.raises(ValueError, match="sequence 7 already exists"):
        cache.allocate(7)
    with pytest.raises(KeyError, match="unknown sequence 8"):
        cache.append(8, 0, np.zeros((1, 2, 32)), np.zeros((1, 2, 32)))
    with pytest.raises(ValueError, match=r"k must have shape \(n_tokens, 2, 32\).*got \(1, 64\)"):
        cache.append(7, 0, np.zeros((1, 64)), np.zeros((1, 64)))
    with pytest.raises(ValueError, match="k has 2 tokens, v has 1"):
        cache.append(7, 0, np.zeros((2, 2, 32)), np.zeros((1, 2, 32)))
    with pytest.raises(ValueError, match=r"layer 2 out of range \[0, 2\)"):
        cache.read(7, 2)
    with pytest.raises(ValueError, match="child sequence 7 already exists"):
        cache.fork(7, 7)
    with pytest.raises(ValueError, match=r"read_range: \[0, 1\) is outside the 0 tokens"):
        cache.read_range(7, 0, 0, 1)
    assert issubclass(KvCacheFull, RuntimeError)


class CountingStorage(Storage):
    """A storage that slots in through the same four methods (as a device one would)."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = {"write": 0, "read": 0, "copy_page": 0}

    def write(self, *a):
        self.calls["write"] += 1
        super().write(*a)

    def read(self, *a):
        self.calls["read"] += 1
        return super().read(*a)

    def copy_page(self, *a):
        self.calls["copy_page"] += 1
        super().copy_page(*a)


def test_storage_is_pluggable():
    cfg = CacheConfig(16, 4, 2, 32, 1, "mxfp4")
    st = CountingStorage(cfg)
    cache = KvCache(cfg, storage=st)
    cache.allocate(0)
    x = np.ones((3, 2, 32), np.float32)
    cache.append(0, 0, x, -x)
    cache.fork(0, 1)
    cache.append(1, 0, x[:1], x[:1])
    k, v = cache.read(0, 0)
    assert st.calls == {"write": 2, "read": 1, "copy_page": 1}
    np.testing.assert_array_equal(k, x)
    np.testing.assert_array_equal(v, -x)


# ------------------------------------------------------------------ KvCacheFull
@pytest.mark.parametrize("dtype", [KvCacheDtype.F32, KvCacheDtype.MXFP4], ids=lambda d: d.name)
def test_full_cache_changes_nothing(dtype):
    cache = make(dtype=dtype, page_size=16, max_pages=4)
    rng = np.random.default_rng(5)
    cache.allocate(0)
    append_all_layers(cache, 0, rand_rows(rng, 40, (2, 32)), rand_rows(rng, 40, (2, 32)))
    cache.fork(0, 1)                                  # 3 pages shared, 1 free
    cache.allocate(2)
    append_all_layers(cache, 2, rand_rows(rng, 5, (2, 32)), rand_rows(rng, 5, (2, 32)))
    assert cache.pool.num_free == 0
    cases = [
        (1, 0, 1),     # one token into the shared partial page: needs a copy-on-write page
        (0, 0, 9),     # fills the shared page (copy) and spills into a new page
        (2, 0, 12),    # crosses into a new page
        (2, 0, 100),   # many pages at once
    ]
    for sid, layer, n in cases:
        before = snapshot(cache)
        assert cache.pages_needed(sid, layer, n) > cache.pool.num_free
        with pytest.raises(KvCacheFull, match=r"need \d+ free pages, 0 of 4 free"):
            cache.append(sid, layer, rand_rows(rng, n, (2, 32)), rand_rows(rng, n, (2, 32)))
        assert_same_snapshot(before, snapshot(cache))
    # One free page: 1 token into a private partial page needs none; 12 need a new one.
    cache.free(2)
    cache.allocate(3)
    append_all_layers(cache, 3, rand_rows(rng, 16, (2, 32)), rand_rows(rng, 16, (2, 32)))
    before = snapshot(cache)
    with pytest.raises(KvCacheFull):                  # COW copy + 1 new page > 0 free
        cache.append(1, 0, rand_rows(rng, 9, (2, 32)), rand_rows(rng, 9, (2, 32)))
    assert_same_snapshot(before, snapshot(cache))
    assert_balanced(cache)


# ------------------------------------------------------------------ random operations
class DenseReference:
    """Per sequence and layer, the expected read-back rows (float32, already rounded)."""

    def __init__(self, layers):
        self.layers = layers
        self.k, self.v = {}, {}

    def add(self, sid):
        self.k[sid] = [[] for _ in range(self.layers)]
        self.v[sid] = [[] for _ in range(self.layers)]

    def fork(self, parent, child):
        self.k[child] = [list(x) for x in self.k[parent]]
        self.v[child] = [list(x) for x in self.v[parent]]

    def drop(self, sid):
        del self.k[sid], self.v[sid]

    def length(self, sid, layer):
        return sum(len(a) for a in self.k[sid][layer])

    def rows(self, sid, layer, shape):
        k, v = self.k[sid][layer], self.v[sid][layer]
        if not k:
            return np.zeros((0,) + shape, np.float32), np.zeros((0,) + shape, np.float32)
        return np.concatenate(k), np.concatenate(v)


def run_random_ops(dtype, page_size, heads, head_dim, n_ops, seed, max_pages=24, layers=2):
    cfg = CacheConfig(page_size, max_pages, heads, head_dim, layers, dtype)
    cache = KvCache(cfg)
    ref = DenseReference(layers)
    rng = np.random.default_rng(seed)
    shape = (heads, head_dim)
    D = heads * head_dim
    next_id = 0
    counts = dict(allocate=0, append=0, full=0, fork=0, fork_refused=0, free=0, read=0, cow=0)
    for _ in range(n_ops):
        live = cache.sequences()
        assert sorted(live) == sorted(ref.k)
        r = rng.random()
        if not live or (r < 0.08 and len(live) < 10):
            cache.allocate(next_id)
            ref.add(next_id)
            next_id += 1
            counts["allocate"] += 1
        elif r < 0.55:
            sid = live[rng.integers(len(live))]
            lens = [ref.length(sid, l) for l in range(layers)]
            ok = [0] + [l for l in range(1, layers) if lens[l] < lens[l - 1]]
            layer = ok[rng.integers(len(ok))]
            room = 40 if layer == 0 else lens[layer - 1] - lens[layer]
            n = int(rng.integers(1, room + 1))
            k, v = rand_rows(rng, n, shape), rand_rows(rng, n, shape)
            need = cache.pages_needed(sid, layer, n)
            table = cache.page_table(sid)
            if need > cache.pool.num_free:
                before = snapshot(cache)
                with pytest.raises(KvCacheFull):
                    cache.append(sid, layer, k, v)
                assert_same_snapshot(before, snapshot(cache))
                counts["full"] += 1
                victim = live[rng.integers(len(live))]  # make room like a scheduler would
                cache.free(victim)
                ref.drop(victim)
                continue
            cache.append(sid, layer, k, v)
            new_table = cache.page_table(sid)
            counts["cow"] += sum(a != b for a, b in zip(table, new_table))
            assert len(new_table) - len(table) + sum(a != b for a, b in zip(table, new_table)) \
                == need
            ref.k[sid][layer].append(roundtrip(dtype, k.reshape(n, D)).reshape(k.shape))
            ref.v[sid][layer].append(roundtrip(dtype, v.reshape(n, D)).reshape(v.shape))
            counts["append"] += 1
        elif r < 0.65:
            sid = live[rng.integers(len(live))]
            lens = {ref.length(sid, l) for l in range(layers)}
            if len(lens) > 1:
                with pytest.raises(ValueError, match="mid forward pass"):
                    cache.fork(sid, next_id)
                counts["fork_refused"] += 1
                continue
            cache.fork(sid, next_id)
            ref.fork(sid, next_id)
            assert cache.page_table(next_id) == cache.page_table(sid)
            next_id += 1
            counts["fork"] += 1
        elif r < 0.72:
            sid = live[rng.integers(len(live))]
            cache.free(sid)
            ref.drop(sid)
            counts["free"] += 1
        else:
            sid = live[rng.integers(len(live))]
            layer = int(rng.integers(layers))
            k, v = cache.read(sid, layer)
            wk, wv = ref.rows(sid, layer, shape)
            assert same_bits(k, wk) and same_bits(v, wv), (sid, layer, counts)
            counts["read"] += 1
        if rng.random() < 0.02:
            assert_balanced(cache)
    for sid in cache.sequences():
        for layer in range(layers):
            k, v = cache.read(sid, layer)
            wk, wv = ref.rows(sid, layer, shape)
            assert same_bits(k, wk) and same_bits(v, wv)
    assert_balanced(cache)
    cache.check()
    for sid in cache.sequences():
        cache.free(sid)
    assert cache.pool.num_free == max_pages and all(c == 0 for c in cache.pool.refcount)
    return counts


def test_random_operations_10000_mxfp6():
    counts = run_random_ops(KvCacheDtype.MXFP6_E2M3, 16, 2, 64, n_ops=10_000, seed=11)
    assert sum(counts.values()) - counts["cow"] >= 10_000
    for key in ("allocate", "append", "full", "fork", "fork_refused", "free", "read", "cow"):
        assert counts[key] > 20, counts                  # every path was exercised


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("page_size, heads, head_dim", [(16, 4, 32), (32, 1, 64), (32, 2, 64)])
def test_random_operations_every_dtype(dtype, page_size, heads, head_dim):
    counts = run_random_ops(dtype, page_size, heads, head_dim, n_ops=1200,
                            seed=zlib.crc32(f"{dtype.name}-{page_size}-{heads}".encode()))
    assert counts["full"] > 0 and counts["cow"] > 0 and counts["fork"] > 0, counts
