"""The forward pass on the GPU (rocmforge.model.gpu_transformer) against the CPU path.

GPU tests (marked gpu) skip without a device.  The first tests run everywhere: they drive
``GpuTransformer`` on the ``cpu`` device (every op through its CPU reference), which checks
the orchestration (cache slots, positions, chunked prefill, MX rounding of cached K/V,
the gemma3 path) in CPU-only CI.

Tolerances (GPU vs CPU logits): float32 accumulation in another order, so
max |gpu - cpu| <= 1e-3 * (max logit - min logit) with an F32 KV cache (measured on an
H100: see docs/BENCHMARKS-GPU-generate.md); MX KV caches amplify such differences where a
value falls on the other side of a rounding boundary of the MX element, so those compare
looser (2e-2 of the range).
"""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import rocmforge
from rocmforge import device as devmod
from rocmforge.kv import KvCacheDtype
from rocmforge.model.gpu_transformer import GpuTransformer

ROOT = Path(__file__).resolve().parents[2]
REL_F32 = 1e-3
REL_MX = 2e-2


def _load(path: Path, name: str):
    """A module from a file (tests run with --import-mode=importlib: no sys.path entry)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return sys.modules[name]


def _maker():
    return _load(ROOT / "tools" / "make_gemma_shaped_gguf.py", "make_gemma_shaped_gguf")


_engine_tests = _load(Path(__file__).with_name("test_engine.py"), "_rocmforge_test_engine")
GOLDEN, LLAMA_CPP_PPL, ppl_text = (_engine_tests.GOLDEN, _engine_tests.LLAMA_CPP_PPL,
                                   _engine_tests.ppl_text)


def _rel_err(got, want):
    return float(np.abs(got - want).max()) / float(want.max() - want.min())


def _host_transformer(m, device):
    tensors = {n: (t.data, t.ttype, t.shape) for n, t in m._reader.tensors.items()}
    return GpuTransformer(m.config, tensors, None, device, m.n_ctx)


# ------------------------------------------------------------------ everywhere (cpu device)
@pytest.mark.parametrize("kv", ["f32", "mxfp6_e2m3"])
def test_gpu_transformer_logic_on_cpu_device_stories(stories260k, kv):
    """Chunked prefill (3 + 4 + 1 tokens) and a decode step, through GpuTransformer on
    the cpu device, equal the CPU engine's chunked logits (same ops, same order)."""
    with rocmforge.load(stories260k, device="cpu", kv_cache_dtype=kv, n_ctx=32) as m:
        ids = m.tokenize("Once upon a time there was a")[:8]
        want = m.logits(ids, chunk_size=1 if kv != "f32" else None)
        g = _host_transformer(m, devmod.get_device("cpu"))
        g.use_graphs = False
        cache = g.make_cache(2, KvCacheDtype.parse(kv))
        cache.allocate("other")
        cache.allocate(7)
        if kv == "f32":
            got = np.concatenate([g.prefill(ids[:3], 7, cache), g.prefill(ids[3:7], 7, cache),
                                  g.decode([ids[7]], [7], cache)])
        else:   # token by token: every query reads MX-rounded K/V of earlier tokens
            got = np.concatenate([g.prefill([t], 7, cache) for t in ids])
        assert cache.seq_len(7) == 8 and cache.seq_len("other") == 0
        assert _rel_err(got, want) < 1e-5, _rel_err(got, want)


def test_gpu_transformer_logic_on_cpu_device_gemma_shaped(tmp_path):
    """gemma3 path (q/k norms, neox rope, local/global layers, post-norms, tied output) on
    a 7-layer, 4096-token model of Gemma 3 270M's shapes and tensor types."""
    path = _maker().build(tmp_path / "g.gguf", seed=3, layers=7, vocab=4096)
    with rocmforge.load(path, device="cpu", kv_cache_dtype="f32", n_ctx=64) as m:
        assert m.config.arch == "gemma3" and m.config.is_local(0) and not m.config.is_local(5)
        ids = [2] + list(np.random.default_rng(0).integers(4, 4096, 9))
        want = m.logits(ids)
        g = _host_transformer(m, devmod.get_device("cpu"))
        cache = g.make_cache(1, KvCacheDtype.F32)
        cache.allocate(0)
        got = np.concatenate([g.prefill(ids[:6], 0, cache), g.prefill(ids[6:], 0, cache)])
        assert _rel_err(got, want) < 1e-5


def _decode_logits(transformer, cache, ids, sid="s"):
    """Prefill of ids[:1], then one decode step per token: every step appends its K/V to
    the cache and attends over the cache (MX-rounded K/V, its own included)."""
    cache.allocate(sid)
    try:
        return np.concatenate([transformer.prefill(ids[:1], sid, cache)] +
                              [transformer.decode([t], [sid], cache) for t in ids[1:]])
    finally:
        cache.free(sid)


@pytest.mark.parametrize("which", ["stories", "gemma"])
def test_mx_kv_decode_logic_on_cpu_device(stories260k, tmp_path, which):
    """Decode over an MXFP6 cache: GpuTransformer (contiguous layout for stories260K's
    head_dim 8, helper-6's paged DeviceStorage for the Gemma-shaped head_dim 256) equals
    the CPU Transformer over the CPU paged cache."""
    path = stories260k if which == "stories" else \
        _maker().build(tmp_path / "g.gguf", seed=4, layers=6, vocab=2048)
    with rocmforge.load(path, device="cpu", kv_cache_dtype="mxfp6_e2m3", n_ctx=32) as m:
        ids = ([1] if which == "stories" else [2]) + \
            [int(t) for t in np.random.default_rng(1).integers(4, 500, 7)]
        want = _decode_logits(m.transformer, m.cache, ids)
        g = _host_transformer(m, devmod.get_device("cpu"))
        cache = g.make_cache(1, KvCacheDtype.MXFP6_E2M3)
        assert cache.paged == (which == "gemma")
        got = _decode_logits(g, cache, ids)
        rep = cache.memory_report()
        assert rep["bytes_per_token"] == (rep["logical_bytes_per_token"] if cache.paged
                                          else 2 * m.config.n_layers * cache.row * 4)
    assert _rel_err(got, want) < 1e-5, _rel_err(got, want)


def test_gpu_device_errors_without_gpu(stories260k):
    if devmod.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(devmod.DeviceError):
        rocmforge.load(stories260k, device="cuda")
    with rocmforge.load(stories260k, device="auto") as m:
        assert m.device == "cpu"


# ------------------------------------------------------------------ GPU
gpu = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_kind():
    if not devmod.gpu_available():
        pytest.skip(f"no GPU: {devmod.backend_status()}")
    return devmod.get_device().kind


@gpu
def test_golden_greedy_stories260k_gpu(stories260k, gpu_kind):
    with rocmforge.load(stories260k, device=gpu_kind, kv_cache_dtype="f32") as m:
        assert m.device == gpu_kind
        assert m.generate("Once upon a time", max_tokens=40, temperature=0) == GOLDEN
        assert m.last_stats.generated_tokens == 40
        # again: the decode steps now replay the captured graph
        assert m.generate("Once upon a time", max_tokens=40, temperature=0) == GOLDEN
        assert m.transformer._graphs, "decode steps were not captured into a graph"


@gpu
def test_stories260k_logits_and_perplexity_gpu(stories260k, shared_data, gpu_kind):
    with rocmforge.load(stories260k, device="cpu", kv_cache_dtype="f32") as c:
        ids = c.tokenize(ppl_text(shared_data))[:512]
        want = c.logits(ids)
    with rocmforge.load(stories260k, device=gpu_kind, kv_cache_dtype="f32") as m:
        got = m.logits(ids)
        ppl = m.perplexity(ids)
    err = _rel_err(got, want)
    print(f"stories260K 512 tokens: max |gpu - cpu| / logit range = {err:.2e}; ppl {ppl:.4f}")
    assert err < REL_F32, err
    assert abs(ppl / LLAMA_CPP_PPL["stories260K"] - 1) < 0.01, ppl


@gpu
@pytest.mark.parametrize("kv", ["mxfp6_e2m3", "mxfp8_e4m3", "mxfp4"])
def test_mx_kv_decode_matches_cpu(stories260k, gpu_kind, kv):
    """Token-by-token logits (every query reads MX-rounded K/V) vs the CPU MX cache."""
    with rocmforge.load(stories260k, device="cpu", kv_cache_dtype=kv) as c:
        ids = c.tokenize("Once upon a time, there was a little girl named Lily. She")
        want = c.logits(ids, chunk_size=1)
    with rocmforge.load(stories260k, device=gpu_kind, kv_cache_dtype=kv) as m:
        assert m.kv_dtype.name == kv.upper()
        got = m.logits(ids, chunk_size=1)
    assert _rel_err(got, want) < REL_MX, _rel_err(got, want)


@gpu
def test_default_gpu_kv_dtype_and_close_frees(stories260k, gpu_kind):
    dev = devmod.get_device(gpu_kind)
    before = dev.live_allocations
    m = rocmforge.load(stories260k, device=gpu_kind)
    assert m.kv_dtype is KvCacheDtype.MXFP6_E2M3
    assert len(m.generate("Once upon a time", max_tokens=8, temperature=0)) > 8
    assert dev.live_allocations[1] > before[1]
    m.close()
    assert dev.live_allocations == before


@gpu
@pytest.mark.parametrize("kv", ["mxfp6_e2m3", "mxfp4", "f16"])
def test_gemma_shaped_paged_kv_decode_gpu_vs_cpu(tmp_path, gpu_kind, kv):
    """helper-6's paged DeviceStorage + paged decode attention (head_dim 256) under the
    GPU forward pass: 1 + 15 decode steps vs the CPU Transformer over the CPU cache."""
    path = _maker().build(tmp_path / "g.gguf", seed=5, layers=6, vocab=4096)
    ids = [2] + [int(t) for t in np.random.default_rng(2).integers(4, 4096, 15)]
    with rocmforge.load(path, device="cpu", kv_cache_dtype=kv, n_ctx=64) as c:
        want = _decode_logits(c.transformer, c.cache, ids)
    with rocmforge.load(path, device=gpu_kind, kv_cache_dtype=kv, n_ctx=64) as m:
        assert m.cache.paged
        got = _decode_logits(m.transformer, m.cache, ids)
        got2 = _decode_logits(m.transformer, m.cache, ids)       # graph replays
    assert _rel_err(got, want) < REL_MX, _rel_err(got, want)
    np.testing.assert_array_equal(got, got2)


@gpu
@pytest.mark.parametrize("head_dim,heads,kv_heads", [(128, 8, 4), (64, 8, 4), (256, 8, 2),
                                                     (128, 12, 6), (64, 12, 3)])
@pytest.mark.parametrize("kv", ["mxfp6_e2m3", "mxfp4", "mxfp8_e4m3", "f16", "bf16"])
def test_staged_attention_in_the_decode_graph(tmp_path, gpu_kind, kv, head_dim, heads, kv_heads):
    """A Gemma-shaped model with 8 query heads, 4 KV heads of head_dim 128 (or 4 of 64, or 2
    of 256, or 12 query and 6 KV heads of 128: slices of 2 heads, or 12 query and 3 KV heads
    of 64: MX pages on the _h1u kernels) and n_ctx 4100: every layer, the sliding-window ones
    included, decodes through the staged attention kernel on NVIDIA
    sm_80+ (MX, F16 and BF16 pages); 1 + 15 decode steps, eager and replayed, against the CPU
    Transformer."""
    from rocmforge.ops import attention as attn_ops
    path = _maker().build(tmp_path / f"g{head_dim}.gguf", seed=7, layers=6, vocab=4096, heads=heads,
                          kv_heads=kv_heads, head_dim=head_dim)
    ids = [2] + [int(t) for t in np.random.default_rng(4).integers(4, 4096, 15)]
    with rocmforge.load(path, device="cpu", kv_cache_dtype=kv, n_ctx=4100) as c:
        want = _decode_logits(c.transformer, c.cache, ids)
    with rocmforge.load(path, device=gpu_kind, kv_cache_dtype=kv, n_ctx=4100) as m:
        assert m.cache.paged
        dev, cc = m.transformer.dev, m.cache.config
        group = heads // kv_heads
        if attn_ops.staged_unsupported(dev, kv, head_dim, kv_heads, group, cc.page_size) is None:
            for window in (None, 512):
                assert attn_ops.decode_plan(dev, kv, head_dim, kv_heads, heads, cc.page_size, 4100, 1,
                                            window=window)[0] == "staged"
        got = _decode_logits(m.transformer, m.cache, ids)
        got2 = _decode_logits(m.transformer, m.cache, ids)       # graph replays
    assert _rel_err(got, want) < REL_MX, _rel_err(got, want)
    np.testing.assert_array_equal(got, got2)


@gpu
def test_gemma_shaped_logits_gpu_vs_cpu(tmp_path, gpu_kind):
    """Gemma 3 270M's exact shapes and tensor types (random weights): one prefill of 40
    tokens and 8 decode steps (sliding-window and global layers) against the CPU path."""
    path = _maker().build(tmp_path / "gemma_shaped.gguf", seed=0)
    rng = np.random.default_rng(0)
    ids = [2] + [int(t) for t in rng.integers(4, 262144, 47)]
    with rocmforge.load(path, device="cpu", kv_cache_dtype="f32", n_ctx=64) as c:
        want = c.logits(ids)
    with rocmforge.load(path, device=gpu_kind, kv_cache_dtype="f32", n_ctx=64) as m:
        got_one = m.logits(ids)
        g, cache = m.transformer, m.cache
        cache.allocate("s")
        steps = [g.prefill(ids[:40], "s", cache)] + [g.decode([t], ["s"], cache) for t in ids[40:]]
        cache.free("s")
    got = np.concatenate(steps)
    e1, e2 = _rel_err(got_one, want), _rel_err(got, want)
    print(f"gemma-shaped: max |gpu - cpu| / logit range: one pass {e1:.2e}, "
          f"prefill + decode {e2:.2e}")
    assert e1 < REL_F32 and e2 < REL_F32, (e1, e2)
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.9
