"""The KV cache on a device (rocmforge.kv.gpu.DeviceStorage) and GPU decode attention
(rocmforge.ops.attention) against the host cache and the CPU ops.

* CPU everywhere: DeviceStorage on the ``cpu`` device (host memory, CPU codecs) runs the
  randomized op sequence and the KvCacheFull check, so the Python side is tested in CI.
* GPU (@pytest.mark.gpu, skip without one): pages written by kernels/kv_cache.hip are
  byte-identical to encode_rows for every dtype (specials included); the randomized op
  sequence bit-for-bit; decode attention (kernels/attention.hip) vs the CPU
  decode_attention and the float64 page-walking reference of tests/kv/test_attention.py,
  for the split kernels and the NVIDIA-only staged kernel (also against each other), and
  stale NaN/Inf rows of a reused page never reaching the output.
* CPU: which kernel decode_plan picks and the split plans' coverage.
"""
from __future__ import annotations

import numpy as np
import pytest

from rocmforge import device
from rocmforge.kv import CacheConfig, KvCache, KvCacheDtype, KvCacheFull, decode_attention
from rocmforge.kv.gpu import DeviceStorage
from rocmforge.ops import attention as attn_ops



def _load_sibling(name):
    """tests/kv/<name>.py as a module (pytest runs with --import-mode=importlib)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(f"_kv_{name}", Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_ref = _load_sibling("test_attention")          # the NumPy page-walking reference
ref_attention, walk_page_table = _ref.ref_attention, _ref.walk_page_table

ALL_DTYPES = list(KvCacheDtype)
# GPU vs CPU decode_attention on the same dequantized pages, |diff| / max|v|.
# FMA kernel (float32 throughout): a different summation order, the block scale applied
# per 16 values and exp2 for exp: 2e-5 (F32 measured worst on an H200 over the grid below:
# 2.0e-7; F32/F16/BF16 at head_dim 128 on an H100, `bench_kv_attention.py --accuracy`:
# 2.1e-7).  Tensor-core bodies (NVIDIA sm_80+, MX dtypes, head_dim 128): q and p rounded to
# float16 (MXFP6/MXFP4) or TF32 (MXFP8), both 2^-11 relative, float32 accumulation: 2e-3.
# Measured worst on an H100 (`--accuracy`: contexts to 4099, GQA 1/4/8, window none/24,
# page 16/32): 1.5e-4 MXFP6_E2M3, 1.3e-4 MXFP6_E3M2, 1.5e-4 MXFP4, 1.3e-4 MXFP8_E4M3; the
# tolerance keeps ~13x margin for other data and GPUs.  The staged kernel on F16 / BF16
# pages splits q and p into hi + lo float16 (bfloat16) operands: measured up to 4.7e-7 /
# 2.0e-6, held to FMA_ATOL.
FMA_ATOL = 2e-5
TC_ATOL = 2e-3


def gpu_atol(dtype, head_dim):
    return TC_ATOL if dtype.is_mx and head_dim == 128 else FMA_ATOL


def staged_atol(dtype):
    return TC_ATOL if dtype.is_mx else FMA_ATOL


def _device(kind):
    if kind == "cpu":
        return device.get_device("cpu")
    if not device.gpu_available():
        pytest.skip("no GPU")
    return device.get_device("hip" if device.backend_status()["hip"] is None else "cuda")


def pair(cfg, dev):
    """A host cache and a device cache with the same config."""
    return KvCache(cfg), KvCache(cfg, storage=DeviceStorage(dev, cfg))


def assert_pages_equal(host: KvCache, dcache: KvCache, what=""):
    for layer in range(host.config.num_layers):
        dk, dv = dcache.storage.to_host(layer)
        for name, want, got in (("K", host.storage.k_pages[layer], dk),
                                ("V", host.storage.v_pages[layer], dv)):
            if not np.array_equal(want, got):
                p, s, b = np.argwhere(want != got)[0]
                raise AssertionError(f"{what} layer {layer} {name}: page {p} slot {s} byte {b}: "
                                     f"device {got[p, s, b]:#04x} host {want[p, s, b]:#04x}")


def special_rows(rng, n, hk, d):
    """Random normal rows with NaN / Inf / zero / -0 / subnormal / huge / tiny heads mixed in."""
    x = rng.standard_normal((n, hk, d)).astype(np.float32)
    flat = x.reshape(n, -1)
    if n >= 8:
        flat[0, 5] = np.nan
        flat[1, 40] = -np.inf
        flat[2, :32] = 0.0
        flat[3, :32] = -0.0
        flat[4, :32] *= np.float32(1e-39)             # subnormal block
        flat[5, :32] *= np.float32(3e37)              # near float32 max
        flat[6, 32:64] = rng.standard_normal(32) * np.float32(2.0 ** -130)
        flat[7, :] *= np.float32(1e4)                 # F16 overflow to Inf
    return x


# ------------------------------------------------------------------ pages (GPU)
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_pages_byte_identical(gpu, dtype):
    rng = np.random.default_rng(ALL_DTYPES.index(dtype))
    cfg = CacheConfig(16, 24, 3, 64, 2, dtype)
    host, dcache = pair(cfg, gpu)
    for sid, n in enumerate([1, 17, 40, 100]):
        host.allocate(sid)
        dcache.allocate(sid)
        for layer in range(2):
            k, v = special_rows(rng, n, 3, 64), special_rows(rng, n, 3, 64)
            host.append(sid, layer, k, v)
            dcache.append(sid, layer, gpu.to_device(k), gpu.to_device(v))   # device input
    assert_pages_equal(host, dcache, dtype.name)


# ------------------------------------------------------------------ randomized ops
def _random_ops(dev, dtype, n_ops, seed):
    rng = np.random.default_rng(seed)
    cfg = CacheConfig(int(rng.choice([4, 16])), 40, 2, 32, 2, dtype)
    host, dcache = pair(cfg, dev)
    live, next_id = [], 0
    for step in range(n_ops):
        op = rng.choice(["alloc", "append", "append", "append", "fork", "free", "read"])
        if op == "alloc" or not live:
            host.allocate(next_id)
            dcache.allocate(next_id)
            live.append(next_id)
            next_id += 1
        elif op == "append":
            sid = live[rng.integers(len(live))]
            n = int(rng.integers(1, 12))
            k = rng.standard_normal((n, 2, 32)).astype(np.float32) * 3
            v = rng.standard_normal((n, 2, 32)).astype(np.float32)
            full = False
            for layer in range(2):
                try:
                    host.append(sid, layer, k, v)
                except KvCacheFull:
                    full = True
                    with pytest.raises(KvCacheFull):
                        dcache.append(sid, layer, k, v)
                    break
                dk = dev.to_device(k) if (step % 2 and dev.kind != "cpu") else k
                dcache.append(sid, layer, dk, v)
            if full and host.layer_len(sid, 0) != host.layer_len(sid, 1):
                host.free(sid)                       # mid-pass sequence: drop it
                dcache.free(sid)
                live.remove(sid)
        elif op == "fork":
            sid = live[rng.integers(len(live))]
            host.fork(sid, next_id)
            dcache.fork(sid, next_id)
            live.append(next_id)
            next_id += 1
        elif op == "free":
            sid = live.pop(rng.integers(len(live)))
            host.free(sid)
            dcache.free(sid)
        else:
            sid = live[rng.integers(len(live))]
            layer = int(rng.integers(2))
            if host.layer_len(sid, layer) == 0:   # (rocmforge.mx's NumPy path rejects 0 rows)
                continue
            for a, b in zip(host.read(sid, layer), dcache.read(sid, layer)):
                np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
        assert host.page_table(live[0]) == dcache.page_table(live[0]) if live else True
        if step % 50 == 49:
            assert_pages_equal(host, dcache, f"step {step}")
    dcache.check()
    assert_pages_equal(host, dcache, "end")


@pytest.mark.parametrize("dtype", [KvCacheDtype.F16, KvCacheDtype.MXFP6_E2M3, KvCacheDtype.MXFP4],
                         ids=lambda d: d.name)
def test_random_ops_cpu_device(dtype):
    _random_ops(device.get_device("cpu"), dtype, 150, 11)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_random_ops_gpu(gpu, dtype):
    _random_ops(gpu, dtype, 300, ALL_DTYPES.index(dtype))


@pytest.mark.parametrize("kind", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_full_leaves_device_cache_unchanged(kind):
    dev = _device(kind)
    cfg = CacheConfig(16, 4, 2, 32, 2, KvCacheDtype.MXFP4)
    host, dcache = pair(cfg, dev)
    rng = np.random.default_rng(3)
    for c in (host, dcache):
        c.allocate("a")
    k = rng.standard_normal((40, 2, 32)).astype(np.float32)
    for c in (host, dcache):
        for layer in range(2):
            c.append("a", layer, k, k)                    # 3 pages of 4
        c.fork("a", "b")
    before = [dcache.storage.to_host(l) for l in range(2)]
    table = dcache.page_table("a")
    with pytest.raises(KvCacheFull):                      # copy-on-write + 2 new pages > 1 free
        dcache.append("b", 0, np.ones((30, 2, 32), np.float32), np.ones((30, 2, 32), np.float32))
    after = [dcache.storage.to_host(l) for l in range(2)]
    for (k0, v0), (k1, v1) in zip(before, after):
        np.testing.assert_array_equal(k0, k1)
        np.testing.assert_array_equal(v0, v1)
    assert dcache.page_table("a") == table == dcache.page_table("b")
    assert dcache.layer_len("b", 0) == 40 and dcache.pool.num_free == 1
    dcache.check()
    assert_pages_equal(host, dcache)


def test_device_storage_errors():
    dev = device.get_device("cpu")
    cfg = CacheConfig(16, 4, 2, 32, 1, KvCacheDtype.F16)
    cache = KvCache(cfg, storage=DeviceStorage(dev, cfg))
    cache.allocate(0)
    with pytest.raises(ValueError, match=r"k must have shape \(n_tokens, 2, 32\)"):
        cache.append(0, 0, np.zeros((3, 2, 16)), np.zeros((3, 2, 32)))
    with pytest.raises(ValueError, match="device v must be float32"):
        cache.append(0, 0, np.zeros((3, 2, 32)), dev.to_device(np.zeros((3, 2, 32), np.float16)))
    assert cache.layer_len(0, 0) == 0 and cache.pool.num_free == 4


# ------------------------------------------------------------------ decode attention (GPU)
CONTEXTS = [1, 17, 33, 100, 1037]
HEADS = {64: 2, 128: 2, 256: 1}


def build(dev, dtype, page_size, hk, d, rng, layers=1):
    cfg = CacheConfig(page_size, sum(-(-n // page_size) for n in CONTEXTS) + 8, hk, d, layers, dtype)
    host, dcache = pair(cfg, dev)
    for sid, n in enumerate(CONTEXTS):
        k = rng.standard_normal((n, hk, d)).astype(np.float32)
        v = rng.standard_normal((n, hk, d)).astype(np.float32)
        for c in (host, dcache):
            c.allocate(sid)
            cut = n // 2
            c.append(sid, 0, k[:cut], v[:cut])
            for t in range(cut, min(n, cut + 3)):
                c.append(sid, 0, k[t:t + 1], v[t:t + 1])
            if n > cut + 3:
                c.append(sid, 0, k[cut + 3:], v[cut + 3:])
        if sid == 2:                                   # a fork sharing pages, 4 more tokens
            kk = rng.standard_normal((4, hk, d)).astype(np.float32)
            for c in (host, dcache):
                c.fork(2, "fork")
                c.append("fork", 0, kk, kk)
    return host, dcache, list(range(len(CONTEXTS))) + ["fork"]


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("window", [None, 24])
@pytest.mark.parametrize("gqa", [1, 4])
@pytest.mark.parametrize("page_size", [16, 32])
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_decode_attention_gpu(gpu, dtype, page_size, gqa, window, head_dim):
    rng = np.random.default_rng([page_size, gqa, head_dim, window or 0, ALL_DTYPES.index(dtype)])
    hk = HEADS[head_dim]
    host, dcache, sids = build(gpu, dtype, page_size, hk, head_dim, rng)
    assert_pages_equal(host, dcache, "attention cache")
    q = rng.standard_normal((len(sids), hk * gqa, head_dim)).astype(np.float32)
    scale = head_dim ** -0.5
    out = attn_ops.decode_attention(dcache, 0, sids, q, scale, window=window).copy_to_host()
    cpu = decode_attention(host, 0, sids, q, scale, window=window)
    assert out.shape == cpu.shape and out.dtype == np.float32
    # "auto" runs the staged kernel where it can (MX head_dim 256 too), else the split kernels
    body = attn_ops.decode_plan(gpu, dtype, head_dim, hk, hk * gqa, page_size, max(CONTEXTS) + 4,
                                len(sids), window=window)[0]
    tol = staged_atol(dtype) if body == "staged" else gpu_atol(dtype, head_dim)
    for b, sid in enumerate(sids):
        k, v = walk_page_table(host, 0, sid)
        vmax = np.abs(v).max()
        atol = tol * vmax
        np.testing.assert_allclose(out[b], cpu[b], rtol=0, atol=atol,
                                   err_msg=f"{dtype.name} seq {sid}: GPU vs CPU decode_attention")
        want = ref_attention(q[b:b + 1], k, v, scale, window)[0]
        np.testing.assert_allclose(out[b], want, rtol=0, atol=atol,
                                   err_msg=f"{dtype.name} seq {sid}: GPU vs float64 reference")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [KvCacheDtype.F32, KvCacheDtype.MXFP4, KvCacheDtype.MXFP8_E4M3],
                         ids=lambda d: d.name)
def test_decode_attention_gpu_softcap_splits_and_groups(gpu, dtype):
    rng = np.random.default_rng(99)
    host, dcache, sids = build(gpu, dtype, 16, 2, 128, rng)
    for gqa in (2, 3, 8):                   # group split into 2, 1 (x3), 4 (x2) heads per workgroup
        q = 4 * rng.standard_normal((len(sids), 2 * gqa, 128)).astype(np.float32)
        cpu = decode_attention(host, 0, sids, q, 0.1, window=300, softcap=5.0)
        for n_splits in (None, 1, 3, 40):
            out = capped_attention(gpu, dcache, sids, q, n_splits)
            np.testing.assert_allclose(out, cpu, rtol=0, atol=gpu_atol(dtype, 128) * 5,
                                       err_msg=f"gqa {gqa} n_splits {n_splits}")
    plain = attn_ops.decode_attention(dcache, 0, sids, q, 0.1, window=300).copy_to_host()
    assert np.abs(plain - cpu).max() > 1e-3           # the cap changes the answer


STAGED = [KvCacheDtype.MXFP6_E2M3, KvCacheDtype.MXFP6_E3M2, KvCacheDtype.MXFP4, KvCacheDtype.MXFP8_E4M3,
          KvCacheDtype.F16, KvCacheDtype.BF16]


def _need_staged(dev, dtype, hk, gqa, page_size, head_dim=128):
    why = attn_ops.staged_unsupported(dev, dtype, head_dim, hk, gqa, page_size)
    if why is not None:
        pytest.skip(f"the staged attention kernel {why}")


@pytest.mark.gpu
@pytest.mark.parametrize("window", [None, 24, 300])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("hk,gqa", [(4, 1), (8, 4), (4, 8), (12, 2), (2, 6), (1, 8), (2, 1), (6, 2),
                                    (3, 4)])
@pytest.mark.parametrize("page_size", [16, 32])
@pytest.mark.parametrize("dtype", STAGED, ids=lambda d: d.name)
def test_staged_attention_gpu(gpu, dtype, page_size, hk, gqa, window, head_dim):
    """attn_staged_* (NVIDIA sm_80+): against the CPU op, the float64 page-walking
    reference and the split kernels, on contexts 1..1037 and a fork; windows that start
    mid-tile (24) and span several (300).  1 and 2 KV heads run the _h1 / _h2 kernels
    (whole rows a workgroup where MX rows of 68-264 bytes are not 16-byte multiples); head_dim 256
    runs each half of a head as head_dim 128 does (F16 / BF16: 2 heads a workgroup);
    head_dim 64 runs half blocks per K lane and copies MX slices of 4 heads in 8-byte pieces.
    6 and 3 KV heads take 2 or 1 a workgroup, a slice of each row (MX: the _h2s / _h1s
    kernels, 8- or 4-byte pieces; MX at head_dim 64 with 1 or 3 KV heads: the _h1u kernels,
    whose slices start 0 or 2 bytes into a word)."""
    _need_staged(gpu, dtype, hk, gqa, page_size, head_dim)
    rng = np.random.default_rng([page_size, hk, gqa, window or 0, STAGED.index(dtype), head_dim])
    host, dcache, sids = build(gpu, dtype, page_size, hk, head_dim, rng)
    q = rng.standard_normal((len(sids), hk * gqa, head_dim)).astype(np.float32)
    scale = head_dim ** -0.5
    staged = attn_ops.decode_attention(dcache, 0, sids, q, scale, window=window,
                                       body="staged").copy_to_host()
    split = attn_ops.decode_attention(dcache, 0, sids, q, scale, window=window,
                                      body="split").copy_to_host()
    cpu = decode_attention(host, 0, sids, q, scale, window=window)
    for b, sid in enumerate(sids):
        k, v = walk_page_table(host, 0, sid)
        atol = staged_atol(dtype) * np.abs(v).max()
        np.testing.assert_allclose(staged[b], cpu[b], rtol=0, atol=atol,
                                   err_msg=f"{dtype.name} seq {sid}: staged vs CPU")
        want = ref_attention(q[b:b + 1], k, v, scale, window)[0]
        np.testing.assert_allclose(staged[b], want, rtol=0, atol=atol,
                                   err_msg=f"{dtype.name} seq {sid}: staged vs float64 reference")
        np.testing.assert_allclose(staged[b], split[b], rtol=0, atol=atol,
                                   err_msg=f"{dtype.name} seq {sid}: staged vs split kernels")


@pytest.mark.gpu
@pytest.mark.parametrize("hk,gqa,d", [(8, 4, 128), (2, 6, 128), (6, 3, 128), (5, 3, 64), (1, 4, 64)])
@pytest.mark.parametrize("dtype", STAGED, ids=lambda d: d.name)
def test_staged_attention_softcap_and_forced_splits(gpu, dtype, hk, gqa, d):
    """Forced split counts (1, 3, 40, 500: most of them empty) and a softcap.  (5 and 1 KV
    heads of head_dim 64: MX pages run the _h1u kernels, whose slices start 0 or 2 bytes into
    a word.)"""
    _need_staged(gpu, dtype, hk, gqa, 16, d)
    rng = np.random.default_rng(7)
    host, dcache, sids = build(gpu, dtype, 16, hk, d, rng)
    q = 4 * rng.standard_normal((len(sids), hk * gqa, d)).astype(np.float32)
    cpu = decode_attention(host, 0, sids, q, 0.1, window=300, softcap=5.0)
    for n_splits in (None, 1, 3, 40, 500):
        out = capped_attention(gpu, dcache, sids, q, n_splits, body="staged")
        np.testing.assert_allclose(out, cpu, rtol=0, atol=staged_atol(dtype) * 5,
                                   err_msg=f"n_splits {n_splits}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,body,hk,d", [
    (KvCacheDtype.MXFP6_E2M3, "staged", 8, 128), (KvCacheDtype.F16, "staged", 8, 128),
    (KvCacheDtype.BF16, "staged", 8, 128), (KvCacheDtype.MXFP6_E2M3, "split", 8, 128),
    (KvCacheDtype.MXFP6_E2M3, "staged", 2, 128), (KvCacheDtype.MXFP4, "staged", 1, 128),
    (KvCacheDtype.MXFP8_E4M3, "staged", 2, 128), (KvCacheDtype.F16, "staged", 1, 128),
    (KvCacheDtype.MXFP6_E3M2, "staged", 4, 256), (KvCacheDtype.MXFP8_E4M3, "staged", 1, 256),
    (KvCacheDtype.MXFP6_E2M3, "staged", 4, 64), (KvCacheDtype.MXFP4, "staged", 2, 64),
    (KvCacheDtype.BF16, "staged", 1, 64), (KvCacheDtype.F16, "staged", 4, 256),
    (KvCacheDtype.MXFP6_E2M3, "staged", 6, 128), (KvCacheDtype.MXFP4, "staged", 3, 128),
    (KvCacheDtype.MXFP8_E4M3, "staged", 6, 64), (KvCacheDtype.MXFP6_E3M2, "staged", 3, 256),
    (KvCacheDtype.BF16, "staged", 3, 128), (KvCacheDtype.MXFP6_E2M3, "staged", 3, 64),
    (KvCacheDtype.MXFP4, "staged", 1, 64), (KvCacheDtype.MXFP8_E4M3, "staged", 5, 64)], ids=str)
def test_stale_page_slots_never_reach_the_output(gpu, dtype, body, hk, d):
    """A page freed by one sequence and reused by another still holds the old rows (NaN
    and Inf here) past the new sequence's length: they must not leak into its attention.
    (1 or 2 KV heads: the whole-row kernels zero-fill such a tile word by word; 3 or 6: the
    slice kernels piece by piece; MX at head_dim 64 with 1, 3 or 5: the _h1u kernels word by
    word.)"""
    if body == "staged":
        _need_staged(gpu, dtype, hk, 4, 16, d)
    cfg = CacheConfig(16, 1, hk, d, 1, dtype)           # one page: "new" must reuse it
    host, dcache = pair(cfg, gpu)
    bad = np.full((16, hk, d), np.nan, np.float32)
    bad[::2] = np.inf
    rng = np.random.default_rng(3)
    k = rng.standard_normal((5, hk, d)).astype(np.float32)
    v = rng.standard_normal((5, hk, d)).astype(np.float32)
    for c in (host, dcache):
        c.allocate("old")
        c.append("old", 0, bad, bad)
        c.free("old")
        c.allocate("new")
        c.append("new", 0, k, v)
    q = rng.standard_normal((1, 4 * hk, d)).astype(np.float32)
    out = attn_ops.decode_attention(dcache, 0, ["new"], q, 0.1, body=body).copy_to_host()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, decode_attention(host, 0, ["new"], q, 0.1), rtol=0,
                               atol=staged_atol(dtype) * np.abs(v).max())


def test_decode_plan_and_staged_rules():
    """Which kernel runs where, and the plans' coverage (CPU: no kernel is launched)."""
    cpu = device.get_device("cpu")
    assert "NVIDIA" in attn_ops.staged_unsupported(cpu, "mxfp6_e2m3", 128, 8, 4, 16)
    assert attn_ops.decode_plan(cpu, "mxfp6_e2m3", 128, 8, 32, 16, 4096, 1)[0] == "split"
    with pytest.raises(ValueError, match="staged attention kernel needs an NVIDIA GPU"):
        attn_ops.decode_plan(cpu, "mxfp6_e2m3", 128, 8, 32, 16, 4096, 1, body="staged")
    with pytest.raises(ValueError, match="body must be"):
        attn_ops.decode_plan(cpu, "mxfp6_e2m3", 128, 8, 32, 16, 4096, 1, body="fast")

    class FakeInfo:
        kind, arch, multiprocessors = "cuda", "sm_90", 132

    class Fake:
        kind, info = "cuda", FakeInfo

    assert attn_ops.staged_unsupported(Fake, "mxfp6_e2m3", 128, 8, 4, 16) is None
    class FakeInfo86(FakeInfo):
        arch = "sm_86"

    class Fake86:
        kind, info = "cuda", FakeInfo86

    assert attn_ops.staged_unsupported(Fake, "mxfp8_e4m3", 128, 8, 4, 16) is None
    assert attn_ops.staged_unsupported(Fake86, "mxfp6_e2m3", 128, 8, 4, 16) is None
    assert attn_ops.staged_shared_bytes("mxfp6_e2m3") == 3 * 2 * (16 * 400 + 16)
    assert attn_ops.staged_shared_bytes("mxfp8_e4m3") == 3 * 2 * (16 * 528 + 16) > 48 * 1024
    assert attn_ops.staged_shared_bytes("f16") == 3 * 2 * (16 * (1024 + 16) + 16)
    assert attn_ops.staged_shared_bytes("bf16") == attn_ops.staged_shared_bytes("f16")
    assert attn_ops.staged_shared_bytes("mxfp6_e2m3", 2) == 3 * 2 * (16 * 200 + 16)
    assert attn_ops.staged_shared_bytes("f16", 1) == 3 * 2 * (16 * (256 + 16) + 16)
    assert attn_ops.staged_shared_bytes("mxfp4", 1, 256) == 3 * 2 * (16 * 136 + 16)
    for dt in ("mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxfp8_e4m3"):
        assert attn_ops.staged_unsupported(Fake, dt, 256, 8, 4, 16) is None
        assert attn_ops.staged_unsupported(Fake, dt, 64, 8, 4, 16) is None
        assert attn_ops.staged_unsupported(Fake, dt, 64, 2, 4, 16) is None
        assert attn_ops.staged_unsupported(Fake, dt, 64, 6, 4, 16) is None
        for hk in (1, 3, 5):   # one head of 2 MX blocks a workgroup: _h1u
            assert attn_ops.staged_unsupported(Fake, dt, 64, hk, 4, 16) is None
            assert attn_ops.staged_launch(dt, 64, hk, KvCacheDtype.parse(dt).row_bytes(64 * hk)) == (
                f"attn_staged_{dt}_d64_h1u", 1)
        # 1 or 2 MX heads of a wider row that are not whole 16-byte pieces: _h2s / _h1s
        assert attn_ops.staged_kernel_name(dt, 128, 2, False) == f"attn_staged_{dt}_d128_h2s"
        assert attn_ops.staged_kernel_name(dt, 128, 2, True) == f"attn_staged_{dt}_d128_h2"
        assert attn_ops.staged_kernel_name(dt, 256, 2, False) == f"attn_staged_{dt}_d256_h2"
        assert attn_ops.staged_kernel_name(dt, 256, 1, False) == f"attn_staged_{dt}_d256_h1s"
        assert attn_ops.staged_kernel_name(dt, 64, 1, False) == f"attn_staged_{dt}_d64_h1u"
        assert attn_ops.staged_kernel_name(dt, 64, 1, True) == f"attn_staged_{dt}_d64_h1u"
    assert attn_ops.staged_kernel_name("f16", 128, 1, False) == "attn_staged_f16_d128_h1"
    assert attn_ops.staged_unsupported(Fake, "f16", 64, 1, 4, 16) is None
    # F16 / BF16 at head_dim 256: 2 heads a workgroup (4 would take 198 KB of shared memory)
    assert [attn_ops.staged_heads(n, "bf16", 256) for n in (1, 2, 3, 4, 8)] == [1, 2, 1, 2, 2]
    assert attn_ops.staged_heads(8, "mxfp4", 256) == 4 and attn_ops.staged_heads(8, "f16", 128) == 4
    assert attn_ops.staged_shared_bytes("f16", 2, 256) == 3 * 2 * (16 * (1024 + 16) + 16) < 100 * 1024
    assert attn_ops.staged_unsupported(Fake, "f16", 256, 8, 4, 16) is None
    assert attn_ops.staged_unsupported(Fake86, "f16", 128, 8, 4, 16) is None
    # 4 heads a workgroup where they divide the KV heads, else 2, else 1; MXFP6 at head_dim
    # 128 at most 2 (twice as many 2-warp workgroups ran faster there)
    assert [attn_ops.staged_heads(n, "mxfp4") for n in (1, 2, 3, 4, 6, 8, 10, 12)] == [1, 2, 1, 4, 2, 4, 2, 4]
    for dt in ("mxfp6_e2m3", "mxfp6_e3m2"):
        assert [attn_ops.staged_heads(n, dt) for n in (1, 3, 4, 8)] == [1, 1, 2, 2]
        assert attn_ops.staged_heads(8, dt, 64) == 4 and attn_ops.staged_heads(8, dt, 256) == 4
    assert [attn_ops.staged_heads(n, "mxfp4", 64) for n in (1, 2, 3, 6)] == [1, 2, 1, 2]
    # _h1u keeps each position's slice as the 4-byte words that hold it (0 or 2 bytes before)
    assert attn_ops.staged_shared_bytes("mxfp6_e2m3", 1, 64) == 3 * 2 * (16 * 52 + 16)
    assert attn_ops.staged_shared_bytes("mxfp4", 1, 64) == 3 * 2 * (16 * 36 + 16)
    assert attn_ops.staged_shared_bytes("mxfp8_e4m3", 1, 64) == 3 * 2 * (16 * 68 + 16)
    for hk in (1, 2, 3, 4, 5, 6, 10, 12):
        assert attn_ops.staged_unsupported(Fake, "mxfp6_e2m3", 128, hk, 8, 16) is None
    for args, word in (((Fake86, "mxfp8_e4m3", 128, 8, 4, 16), "sm_89"),
                       ((Fake, "f32", 128, 8, 4, 16), "F32"),
                       ((Fake, "mxfp4", 96, 8, 4, 16), "head_dim"),
                       ((Fake, "mxfp4", 128, 8, 16, 16), "query heads"),
                       ((Fake, "mxfp4", 128, 8, 4, 24), "page_size")):
        assert word in attn_ops.staged_unsupported(*args)
    for batch, ctx, window in ((1, 32768, None), (16, 32768, None), (3, 17, None), (2, 5000, 300),
                               (1, 1, None), (64, 100000, 4096), (4, 1025, None), (4, 1024, None)):
        eff = min(ctx, window or ctx)
        tiles = -(-eff // 16) + (1 if window else 0)
        body, n, per = attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, ctx, batch,
                                            window=window)
        assert body == "staged"          # wherever it can run, at every length and batch
        body, n, per = attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, ctx, batch,
                                            window=window, body="staged")
        assert body == "staged" and n >= 1 and (n - 1) * per < tiles <= n * per
        for forced in (1, 7, 1000):
            _, n2, per2 = attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, ctx, batch,
                                               window=window, n_splits=forced, body="staged")
            assert n2 == forced and n2 * per2 >= tiles
    # about 2 workgroups per SM in all, at least 2 tiles per split
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, 32768, 1)[1:] == (128, 16)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, 32768, 16)[1:] == (8, 256)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, 4096, 1,
                                body="staged")[1:] == (128, 2)
    # a tile per split where every tile's workgroup fits on the SMs at once (2 x 64 <= 132)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, 1024, 1)[1:] == (64, 1)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, 1024, 2)[1:] == (32, 2)
    # 2-head (2-warp) workgroups: twice as many fit, so the plan aims at twice as many
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 2, 12, 16, 32768, 1)[1:] == (512, 4)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 2, 12, 16, 4096, 1)[1:] == (256, 1)
    # one-warp workgroups: at least 4 tiles a split (8 / 1 x 128 and 9 / 3 x 64 would take 2 / 3)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 1, 8, 16, 32768, 1)[1:] == (512, 4)
    assert attn_ops.decode_plan(Fake, "mxfp4", 64, 3, 9, 16, 32768, 1)[1:] == (512, 4)
    assert attn_ops.decode_plan(Fake, "mxfp4", 64, 5, 15, 16, 32768, 1)[1:] == (410, 5)
    assert attn_ops.decode_plan(Fake, "mxfp4", 64, 3, 9, 16, 32768, 16)[1:] == (44, 47)
    # head_dim 64: tiles are half the work, so twice as many workgroups
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 64, 8, 32, 16, 32768, 16)[1:] == (16, 128)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 64, 8, 32, 16, 32768, 1)[1:] == (256, 8)
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 256, 8, 16, 16, 32768, 16)[1:] == (8, 256)
    # the target (2 x 4 / heads workgroups an SM) rounded down unless a quarter of it would
    # go unused: 40 / 10 heads at batch 16 (target 6.6 splits) 6; 32 / 8 at batch 24 (5.5) 5,
    # at batch 48 (2.75) 3, since 2 would leave 27% unused
    for (hk, hq, batch), want in (((10, 40, 16), 6), ((10, 40, 12), 8), ((10, 40, 32), 3),
                                  ((8, 32, 24), 5), ((8, 32, 48), 3), ((3, 12, 48), 7)):
        assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, hk, hq, 16, 32768, batch)[1] == want
    # "auto" takes the staged kernel on short ranges too, and the split kernels where the
    # staged one cannot run
    for ctx, batch in ((16, 1), (1024, 1), (4096, 1), (1024, 16)):
        assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 128, 8, 32, 16, ctx, batch)[0] == "staged"
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 64, 8, 32, 16, 1024, 1)[0] == "staged"
    assert attn_ops.decode_plan(Fake, "mxfp6_e2m3", 64, 1, 8, 16, 1024, 1)[0] == "staged"
    assert attn_ops.decode_plan(Fake, "f16", 128, 8, 32, 16, 1024, 1)[0] == "staged"
    assert attn_ops.decode_plan(Fake, "bf16", 128, 8, 32, 16, 1024, 1)[0] == "staged"
    assert attn_ops.decode_plan(Fake, "f32", 128, 8, 32, 16, 1024, 1)[0] == "split"
    assert attn_ops.decode_plan(Fake86, "mxfp8_e4m3", 128, 8, 32, 16, 1024, 1)[0] == "split"


def capped_attention(gpu, dcache, sids, q, n_splits, **kw):
    """paged_decode_attention over layer 0 of a device cache with scale 0.1, window 300,
    softcap 5 and ``n_splits`` forced (None: the plan); host float32 result."""
    cfg = dcache.config
    table, lens, hl = attn_ops_tables(dcache, sids)
    return attn_ops.paged_decode_attention(
        gpu.to_device(q), dcache.storage.k_pages[0], dcache.storage.v_pages[0], table, lens,
        dtype=cfg.dtype, num_kv_heads=cfg.num_heads, head_dim=cfg.head_dim,
        page_size=cfg.page_size, row_bytes=cfg.row_bytes, scale=0.1, max_len=int(hl.max()),
        window=300, softcap=5.0, n_splits=n_splits, **kw).copy_to_host()


def attn_ops_tables(dcache, sids):
    from rocmforge.kv.gpu import device_page_tables
    return device_page_tables(dcache, 0, sids)


def test_decode_attention_cpu_device_uses_cpu_op():
    dev = device.get_device("cpu")
    rng = np.random.default_rng(5)
    host, dcache, sids = build(dev, KvCacheDtype.MXFP6_E3M2, 16, 2, 64, rng)
    q = rng.standard_normal((len(sids), 4, 64)).astype(np.float32)
    out = attn_ops.decode_attention(dcache, 0, sids, q, 0.125, window=50)
    np.testing.assert_array_equal(out, decode_attention(host, 0, sids, q, 0.125, window=50))


def test_paged_decode_attention_checks_the_table_against_max_len():
    """max_len beyond what the page table holds (or below 1) is a ValueError, before any
    launch: the kernels read the table's first entries at indexes clamped into its row and
    would attend over the wrong pages."""
    dev = device.get_device("cpu")
    q = dev.to_device(np.zeros((2, 8, 128), np.float32))
    table = dev.to_device(np.zeros((2, 3), np.int32))
    lens = dev.to_device(np.ones(2, np.int32))
    kw = dict(dtype="mxfp6_e2m3", num_kv_heads=2, head_dim=128, page_size=16, row_bytes=200,
              scale=0.1)
    for bad in (49, 0):
        with pytest.raises(ValueError, match=rf"max_len {bad} must be in \[1, 48\]: the page "
                                             r"table \(2, 3\) holds 3 pages of 16 tokens"):
            attn_ops.paged_decode_attention(q, q, q, table, lens, max_len=bad, **kw)
    with pytest.raises(NotImplementedError):     # 48 fits: on to the cpu device's own error
        attn_ops.paged_decode_attention(q, q, q, table, lens, max_len=48, **kw)


def test_staged_launch_checks_row_bytes():
    """Which staged kernel a launch takes, and row_bytes checked against how it copies rows
    (CPU: nothing is launched): whole rows must be exactly the row; slices must hold every
    head and be whole pieces; the error names the kernel and what it needs."""
    sl = attn_ops.staged_launch
    assert sl("mxfp6_e2m3", 128, 8, 800) == ("attn_staged_mxfp6_e2m3_d128_h2s", 2)
    assert sl("mxfp4", 128, 8, 544) == ("attn_staged_mxfp4_d128", 4)
    assert sl("mxfp4", 128, 2, 136) == ("attn_staged_mxfp4_d128_h2", 2)       # whole rows
    assert sl("mxfp4", 128, 3, 204) == ("attn_staged_mxfp4_d128_h1s", 1)      # 4-byte pieces
    assert sl("f16", 128, 6, 1536) == ("attn_staged_f16_d128_h2", 2)
    assert sl("mxfp6_e3m2", 256, 3, 600) == ("attn_staged_mxfp6_e3m2_d256_h1s", 1)
    assert sl("mxfp6_e2m3", 64, 3, 150) == ("attn_staged_mxfp6_e2m3_d64_h1u", 1)    # 0 or 2 bytes in
    assert sl("mxfp4", 64, 1, 34) == ("attn_staged_mxfp4_d64_h1u", 1)
    assert sl("mxfp8_e4m3", 64, 5, 332) == ("attn_staged_mxfp8_e4m3_d64_h1u", 1)   # any even row
    for args, want in (
            (("mxfp4", 128, 2, 144), r"_h2\) needs row_bytes 136 for 2 KV heads"),
            (("mxfp6_e2m3", 128, 6, 596), r"_h2s\) needs row_bytes at least 600 and a multiple of 8"),
            (("mxfp6_e2m3", 128, 6, 604), r"multiple of 8 for 6 KV heads of 128 MXFP6_E2M3 values, got 604"),
            (("mxfp4", 128, 3, 206), r"_h1s\) needs row_bytes at least 204 and a multiple of 4"),
            (("f16", 128, 8, 2056), r"at least 2048 and a multiple of 16"),
            (("mxfp4", 64, 3, 101), r"_h1u\) needs row_bytes at least 102 and a multiple of 2"),
            (("mxfp6_e2m3", 64, 5, 248), r"_h1u\) needs row_bytes at least 250"),
            (("f32", 128, 8, 4096), r"no body for 8 KV heads of F32 at head_dim 128")):
        with pytest.raises(ValueError, match=want):
            sl(*args)


def test_split_plan():
    for max_len in (1, 17, 1000, 32768):
        for units in (1, 8, 512):
            n, sl = attn_ops.split_plan("mxfp4", 128, max_len, units, 132)
            assert n >= 1 and sl % 128 == 0 and (n - 1) * sl < max_len <= n * sl


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_bits_per_value_within_one_percent(dtype):
    want = {KvCacheDtype.MXFP8_E4M3: 8.25, KvCacheDtype.MXFP6_E2M3: 6.25,
            KvCacheDtype.MXFP6_E3M2: 6.25, KvCacheDtype.MXFP4: 4.25}.get(dtype)
    cfg = CacheConfig(16, 64, 8, 128, 1, dtype)
    st = DeviceStorage(device.get_device("cpu"), cfg)
    bits = 8 * st.nbytes / (2 * 64 * 16 * 8 * 128)
    if want is not None:
        assert abs(bits - want) <= 0.01 * want
    else:
        assert bits == dtype.bits_per_value
