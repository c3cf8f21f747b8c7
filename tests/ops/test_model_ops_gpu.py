"""GPU kernels of the forward pass (kernels/linear.hip, kernels/model_ops.hip) against their
CPU ops.  Tolerances: float32 with a different accumulation order, so |gpu - cpu| <=
1e-5 * (scale of the result) + tiny absolute slack; the rope table and the quantized
weights are the same bytes on both sides.
"""
import math

import numpy as np
import pytest

from rocmforge import device as devmod
from rocmforge.gguf import quants
from rocmforge.gguf.constants import TYPE_SIZES, GgufTensorType as T
from rocmforge.ops import linear as lo
from rocmforge.ops import model_ops as mo

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def dev():
    if not devmod.gpu_available():
        pytest.skip(f"no GPU: {devmod.backend_status()}")
    return devmod.get_device()


def _close(got, want, rel=1e-5, what=""):
    scale = float(np.abs(want).max()) or 1.0
    err = float(np.abs(got - want).max())
    assert err <= rel * scale + 1e-7, f"{what}: max |gpu - cpu| {err:.3g} > {rel} * {scale:.3g}"


def _random_blocks(rng, ttype, n_out, n_in):
    """Valid random rows of ``ttype``: quantized values, or random bytes with sane scales."""
    x = rng.standard_normal((n_out, n_in)).astype(np.float32)
    if ttype in (T.F32, T.F16, T.Q8_0, T.Q4_0, T.MXFP4, T.MXFP6_E2M3, T.MXFP6_E3M2,
                 T.MXFP8_E4M3, T.MXFP8_E5M2, T.MXINT8):
        return np.ascontiguousarray(quants.quantize(x, ttype)).reshape(-1)
    import importlib.util
    import sys
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "mk", Path(__file__).resolve().parents[2] / "tools" / "make_gemma_shaped_gguf.py")
    mk = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mk", mk)
    spec.loader.exec_module(mk)
    return mk.random_blocks(rng, ttype, n_out, n_in)


LIN_TYPES = [T.F32, T.F16, T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_K, T.Q6_K, T.MXFP4, T.MXFP6_E2M3,
             T.MXFP6_E3M2, T.MXFP8_E4M3, T.MXFP8_E5M2, T.MXINT8]


@pytest.mark.parametrize("ttype", LIN_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_tok", [1, 3, 17])
def test_linear_matches_cpu(dev, ttype, n_tok):
    rng = np.random.default_rng(int(ttype) * 31 + n_tok)
    block = TYPE_SIZES[ttype][0]
    n_out, n_in = 37, max(block, 256) * 2
    raw = _random_blocks(rng, ttype, n_out, n_in)
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    want = lo.linear_cpu(raw, ttype, n_out, n_in, x)
    y = lo.linear(dev.to_device(raw), ttype, n_out, n_in, dev.to_device(x), n_tok)
    _close(y.copy_to_host().view(np.float32).reshape(n_tok, n_out), want, what=ttype.name)
    # embedding gather of the same rows, scaled
    ids = rng.integers(0, n_out, 9).astype(np.int32)
    e = lo.embed(dev.to_device(raw), ttype, n_in, dev.to_device(ids), len(ids), 2.5)
    got = e.copy_to_host().view(np.float32).reshape(len(ids), n_in)
    np.testing.assert_array_equal(got, lo.embed_cpu(raw, ttype, n_in, ids, 2.5))


def test_linear_float_tail(dev):
    """F32 rows whose width is not a multiple of 8 (stories260K's ffn_down: 172)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((64, 172)).astype(np.float32)
    x = rng.standard_normal((6, 172)).astype(np.float32)
    y = lo.linear(dev.to_device(w.view(np.uint8).reshape(-1)), T.F32, 64, 172, dev.to_device(x), 6)
    _close(y.copy_to_host().view(np.float32).reshape(6, 64), x @ w.T, what="f32 tail")


def test_norms_act_add(dev):
    rng = np.random.default_rng(1)
    R, W = 13, 640
    x = rng.standard_normal((R, W)).astype(np.float32) * 3
    o = rng.standard_normal((R, W)).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(W)).astype(np.float32)
    bx, bo, bw = dev.to_device(x), dev.to_device(o), dev.to_device(w)
    out = dev.empty((R, W), np.float32)
    mo.rms_norm(out, bx, bw, R, W, 1e-6)
    _close(out.copy_to_host(), mo.rms_norm_cpu(x, w, 1e-6), what="rms_norm")
    mo.rms_norm_add(bx, bo, bw, R, W, 1e-6)
    _close(bx.copy_to_host(), mo.rms_norm_add_cpu(x, o, w, 1e-6), what="rms_norm_add")
    bx.copy_from_host(x)
    mo.add(bx, bo, R * W)
    np.testing.assert_array_equal(bx.copy_to_host(), x + o)
    for kind in ("silu", "gelu_tanh"):
        g = np.concatenate([rng.standard_normal(R * W) * 4, [0.0, -30.0, 30.0, 1e-3]]).astype(np.float32)
        u = rng.standard_normal(g.size).astype(np.float32)
        r = dev.empty(g.shape, np.float32)
        mo.act_mul(r, dev.to_device(g), dev.to_device(u), g.size, kind)
        _close(r.copy_to_host(), mo.act_mul_cpu(g, u, kind), rel=3e-6, what=kind)


@pytest.mark.parametrize("neox", [False, True])
def test_rope(dev, neox):
    rng = np.random.default_rng(2)
    n, H, d, n_dims, base = 9, 4, 64, 48, 1e6
    x = rng.standard_normal((n, H, d)).astype(np.float32)
    pos = np.array([0, 1, 2, 100, 511, 512, 1000, 3, 2047], np.int32)
    tab = mo.rope_table(2048, base, n_dims)
    bx = dev.to_device(x)
    mo.rope(bx, dev.to_device(pos), dev.to_device(tab), n, H, d, n_dims, neox)
    _close(bx.copy_to_host(), mo.rope_cpu(x, pos, base, n_dims, neox), rel=1e-6, what="rope")


@pytest.mark.parametrize("n_split", [1, 7, 32])
@pytest.mark.parametrize("H,KV,d,window", [(8, 4, 8, None), (4, 1, 256, 5), (4, 1, 256, None),
                                           (2, 2, 320, 300)])
def test_kv_store_and_attention(dev, H, KV, d, window, n_split):
    """Two sequences in cache slots 1 and 0: a prefill chunk (fresh K/V after 300 cached
    tokens, longer than one 256-key chunk) and a decode step, vs. float64 softmax; keys
    split over n_split workgroups (some splits empty under the window of 5)."""
    rng = np.random.default_rng(H * d)
    n_ctx, layers, layer, slots = 320, 2, 1, 2
    row = KV * d
    slot_stride, layer_off = layers * n_ctx * row, layer * n_ctx * row
    kc, vc = dev.zeros((slots, layers, n_ctx, row), np.float32), dev.zeros((slots, layers, n_ctx, row), np.float32)
    K = rng.standard_normal((slots, n_ctx, KV, d)).astype(np.float32)
    V = rng.standard_normal((slots, n_ctx, KV, d)).astype(np.float32)
    start, n = 300, 7
    # store the cached part of both sequences
    for s in range(slots):
        cnt = start if s == 1 else n_ctx
        mo.kv_store(kc, vc, dev.to_device(K[s, :cnt].reshape(cnt, row)),
                    dev.to_device(V[s, :cnt].reshape(cnt, row)),
                    dev.to_device(np.full(cnt, s, np.int32)), dev.to_device(np.arange(cnt, dtype=np.int32)),
                    cnt, row, slot_stride, layer_off)
    scale = 1 / math.sqrt(d)
    # prefill: slot 1, positions start..start+n-1, fresh K/V = K[1, start:start+n]
    q = rng.standard_normal((n, H, d)).astype(np.float32)
    pos = np.arange(start, start + n, dtype=np.int32)
    out = dev.empty((n, H, d), np.float32)
    mo.attention(out, dev.to_device(q), kc, vc, dev.to_device(K[1, start:start + n].reshape(n, row)),
                 dev.to_device(V[1, start:start + n].reshape(n, row)), dev.to_device(np.full(n, 1, np.int32)),
                 dev.to_device(pos), n, H, KV, d, slot_stride, layer_off, start, window, scale,
                 n_split=n_split)
    want = mo.attention_cpu(q, K[1, :start + n], V[1, :start + n], pos, scale, window)
    _close(out.copy_to_host(), want, rel=2e-5, what="prefill attention")
    # decode: both sequences, all keys from the cache
    q2 = rng.standard_normal((2, H, d)).astype(np.float32)
    pos2 = np.array([n_ctx - 1, 40], np.int32)
    slot2 = np.array([0, 1], np.int32)
    out2 = dev.empty((2, H, d), np.float32)
    mo.attention(out2, dev.to_device(q2), kc, vc, kc, vc, dev.to_device(slot2), dev.to_device(pos2), 2,
                 H, KV, d, slot_stride, layer_off, 2**31 - 1, window, scale, n_split=n_split)
    got2 = out2.copy_to_host()
    for i in range(2):
        w = mo.attention_cpu(q2[i:i + 1], K[slot2[i], :pos2[i] + 1], V[slot2[i], :pos2[i] + 1],
                             [pos2[i]], scale, window)
        _close(got2[i:i + 1], w, rel=2e-5, what=f"decode attention {i}")


@pytest.mark.parametrize("ttype,n_in", [(T.MXFP4, 32 * 33), (T.F32, 4096), (T.Q8_0, 96),
                                        (T.Q6_K, 256 * 9)], ids=lambda v: getattr(v, "name", v))
def test_linear_unstaged_and_odd_shapes(dev, ttype, n_in):
    """Row spans that are not 16-byte aligned or exceed the 16 KiB LDS stage take the
    direct path; 8-row tiles with a partial last tile."""
    rng = np.random.default_rng(n_in)
    n_out, n_tok = 21, 9
    raw = _random_blocks(rng, ttype, n_out, n_in)
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    y = lo.linear(dev.to_device(raw), ttype, n_out, n_in, dev.to_device(x), n_tok)
    _close(y.copy_to_host().view(np.float32).reshape(n_tok, n_out),
           lo.linear_cpu(raw, ttype, n_out, n_in, x), what=f"{ttype.name} {n_in}")


@pytest.mark.parametrize("norm,neox,d,n_dims", [(True, True, 256, 256), (False, False, 8, 8),
                                                (True, False, 64, 32)])
def test_qk_rope_fused(dev, norm, neox, d, n_dims):
    rng = np.random.default_rng(d)
    n, H, KV, eps = 5, 4, 2, 1e-6
    q = rng.standard_normal((n, H, d)).astype(np.float32)
    k = rng.standard_normal((n, KV, d)).astype(np.float32)
    qw, kw = (1 + 0.1 * rng.standard_normal((2, d))).astype(np.float32)
    pos = np.array([0, 7, 8, 300, 1023], np.int32)
    tab = mo.rope_table(1024, 1e4, n_dims)
    bq, bk = dev.to_device(q), dev.to_device(k)
    mo.qk_rope(bq, bk, dev.to_device(qw) if norm else None, dev.to_device(kw) if norm else None,
               dev.to_device(pos), dev.to_device(tab), n, H, KV, d, n_dims, neox, eps)
    for got, x, w in ((bq, q, qw), (bk, k, kw)):
        want = mo.rope_cpu(mo.rms_norm_cpu(x, w, eps) if norm else x, pos, 1e4, n_dims, neox)
        _close(got.copy_to_host(), want, rel=2e-6, what="qk_rope")


@pytest.mark.parametrize("post,nxt", [(True, True), (False, True), (True, False), (False, False)])
def test_residual_norm_fused(dev, post, nxt):
    rng = np.random.default_rng(int(post) * 2 + int(nxt))
    R, W, eps = 6, 640, 1e-6
    x, o = rng.standard_normal((2, R, W)).astype(np.float32)
    wp, wn = (1 + 0.1 * rng.standard_normal((2, W))).astype(np.float32)
    bx, bh = dev.to_device(x), dev.zeros((R, W), np.float32)
    mo.residual_norm(bx, bh, dev.to_device(o), dev.to_device(wp) if post else None,
                     dev.to_device(wn) if nxt else None, R, W, eps)
    want_x = mo.rms_norm_add_cpu(x, o, wp, eps) if post else x + o
    _close(bx.copy_to_host(), want_x, rel=2e-6, what="residual")
    if nxt:
        _close(bh.copy_to_host(), mo.rms_norm_cpu(want_x, wn, eps), rel=2e-6, what="next norm")
