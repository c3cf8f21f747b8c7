"""Block quantization semantics (OCP MX v1.0), edge cases, and agreement with gguf-py's MXFP4."""
import gguf
import ml_dtypes
import numpy as np
import pytest

from rocmforge import mx
from rocmforge.mx import MxFormat

ALL = list(MxFormat)
IMPLS = ["reference", "fast"]
ML = {MxFormat.MXFP4: ml_dtypes.float4_e2m1fn, MxFormat.MXFP6_E2M3: ml_dtypes.float6_e2m3fn,
      MxFormat.MXFP6_E3M2: ml_dtypes.float6_e3m2fn, MxFormat.MXFP8_E4M3: ml_dtypes.float8_e4m3fn,
      MxFormat.MXFP8_E5M2: ml_dtypes.float8_e5m2}


def oracle_quantize(x, fmt):
    """Independent MX quantizer built on ml_dtypes casts: (scale bytes, codes)."""
    blocks = x.astype(np.float64).reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    e = np.clip(np.floor(np.log2(np.where(amax > 0, amax, 1))).astype(int) - fmt.spec.emax,
                -127, 127)
    scaled = np.clip(blocks / 2.0 ** e[:, None], -fmt.spec.max, fmt.spec.max)
    if fmt is MxFormat.MXINT8:
        codes = np.rint(scaled * 64).astype(np.int8).view(np.uint8)
    else:
        codes = scaled.astype(np.float32).astype(ML[fmt]).view(np.uint8)
    scale = np.where(amax > 0, e + 127, 0).astype(np.uint8)
    codes[amax == 0] = 0
    return scale, codes


def split(q, fmt):
    b = q.reshape(-1, fmt.block_bytes)
    return b[:, 0], mx.unpack(b[:, 1:], fmt)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_matches_ml_dtypes_oracle(fmt, impl):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 32)) * np.exp2(rng.integers(-20, 20, (64, 1)))).astype(np.float32)
    x[3] = 0.0
    x[4, ::2] = 0.0
    x[5] = np.float32(2.0**-130) * rng.standard_normal(32).astype(np.float32)   # fp32 subnormals
    scale, codes = split(mx.quantize(x, fmt, impl=impl), fmt)
    o_scale, o_codes = oracle_quantize(x, fmt)
    np.testing.assert_array_equal(scale, o_scale)
    np.testing.assert_array_equal(codes, o_codes)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_ones_round_trip_exactly(fmt, impl):
    x = np.array([1.0] * 32, np.float32)
    np.testing.assert_array_equal(mx.dequantize(mx.quantize(x, fmt, impl=impl), fmt, impl=impl), x)
    for v in (-1.0, 0.375, 1.5 * 2.0**20, 2.0**-100):
        y = np.full(32, v, np.float32)
        np.testing.assert_array_equal(mx.dequantize(mx.quantize(y, fmt, impl=impl), fmt), y)


def test_mxfp6_e2m3_never_worse_than_mxfp4():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2000, 32)) * rng.uniform(0.01, 100, (2000, 1))).astype(np.float32)
    e4 = np.abs(mx.dequantize(mx.quantize(x, "mxfp4"), "mxfp4") - x)
    e6 = np.abs(mx.dequantize(mx.quantize(x, "mxfp6_e2m3"), "mxfp6_e2m3") - x)
    assert (e6 <= e4).all(), f"{(e6 > e4).sum()} elements worse in MXFP6_E2M3"
    assert (e6 < e4).any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_nan_inf_and_zero_blocks(fmt, impl):
    x = np.ones((5, 32), np.float32)
    x[0, 7] = np.nan
    x[1, 0] = np.inf
    x[2, 31] = -np.inf
    x[3] = 0.0
    x[4] = -0.0
    q = mx.quantize(x, fmt, impl=impl).reshape(5, fmt.block_bytes)
    assert (q[:3, 0] == 0xFF).all() and not q[:3, 1:].any()
    assert not q[3:].any()                                     # scale byte 0, zero codes
    d = mx.dequantize(q, fmt, impl=impl)
    assert np.isnan(d[:3]).all()
    np.testing.assert_array_equal(d[3:], 0.0)
    assert not np.signbit(d[3:]).any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_amax_near_e8m0_limits(fmt, impl):
    emax = fmt.spec.emax
    lo = np.full(32, 2.0**-127, np.float32)                    # exponent clamps to -127
    q = mx.quantize(lo, fmt, impl=impl)
    assert q[0] == 0                                           # E8M0 2**-127
    np.testing.assert_array_equal(mx.dequantize(q, fmt, impl=impl), lo)
    big = np.full(32, np.finfo(np.float32).max, np.float32)   # amax just under 2**128
    q = mx.quantize(big, fmt, impl=impl)
    assert q[0] == 127 + 127 - emax
    expect = np.float32(fmt.spec.max * 2.0 ** (127 - emax))  # saturated to the element max
    np.testing.assert_array_equal(mx.dequantize(q, fmt, impl=impl), expect)
    assert np.isfinite(expect)
    hi = np.full(32, 2.0**127, np.float32)
    np.testing.assert_array_equal(mx.dequantize(mx.quantize(hi, fmt, impl=impl), fmt), hi)


@pytest.mark.parametrize("impl", IMPLS)
def test_float16_in_and_out(impl):
    rng = np.random.default_rng(3)
    x16 = rng.standard_normal((4, 64)).astype(np.float16)
    for fmt in ALL:
        q = mx.quantize(x16, fmt, impl=impl)
        np.testing.assert_array_equal(q, mx.quantize(x16.astype(np.float32), fmt, impl=impl))
        d16 = mx.dequantize(q, fmt, np.float16, impl=impl)
        assert d16.dtype == np.float16
        np.testing.assert_array_equal(d16, mx.dequantize(q, fmt, impl=impl).astype(np.float16))


def test_shapes_and_errors():
    x = np.zeros((2, 3, 64), np.float32)
    q = mx.quantize(x, "mxfp6_e3m2")
    assert q.shape == (2, 3, 50) and q.dtype == np.uint8
    assert mx.dequantize(q, "mxfp6_e3m2").shape == (2, 3, 64)
    with pytest.raises(ValueError, match="float32 or float16.*float64"):
        mx.quantize(np.zeros(32), "mxfp4")
    with pytest.raises(ValueError, match=r"multiple of 32, got shape \(2, 33\)"):
        mx.quantize(np.zeros((2, 33), np.float32), "mxfp4")
    with pytest.raises(ValueError, match="17 bytes.*last dimension 18"):
        mx.dequantize(np.zeros(18, np.uint8), "mxfp4")
    with pytest.raises(ValueError, match="uint8"):
        mx.dequantize(np.zeros(17, np.int8), "mxfp4")
    with pytest.raises(ValueError, match="float32 or float16, not float64"):
        mx.dequantize(np.zeros(17, np.uint8), "mxfp4", np.float64)


# ------------------------------------------------------------------ gguf-py (llama.cpp) MXFP4

def _gguf_mxfp4(x):
    return gguf.quants.quantize(x, gguf.GGMLQuantizationType.MXFP4).reshape(-1, 17)


def test_mxfp4_dequantize_bit_identical_to_gguf_py():
    rng = np.random.default_rng(4)
    blocks = rng.integers(0, 256, (4096, 17), dtype=np.uint8)
    blocks[:, 0] = rng.integers(0, 255, 4096)                  # every finite scale byte
    blocks[:255, 0] = np.arange(255)
    theirs = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.MXFP4)
    for impl in IMPLS:
        ours = mx.dequantize(blocks, "mxfp4", impl=impl)
        bad = np.flatnonzero((ours.view(np.uint32) != theirs.view(np.uint32)).any(axis=1))
        assert bad.size == 0, f"{impl}: first differing block {bad[:1]}"


def test_mxfp4_quantize_agrees_with_gguf_py_except_documented_cases():
    """gguf-py differs from round-to-nearest-even in exactly these ways (documented in
    docs/MX_FORMATS.md): (a) an exact tie between two E2M1 values goes to the smaller
    magnitude (argmin order) rather than the even code: 0.75, 1.75, 3.5 (x scale);
    (b) a negative value that rounds to zero gets +0 (code 0) rather than -0 (code 8);
    (c) its shared exponent uses float32 log2, which rounds amax just under a power of
    two up. Everything else must agree bit for bit."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((20000, 32)) * np.exp2(rng.integers(-10, 10, (20000, 1))))
    x = x.astype(np.float32)
    # plant exact ties so case (a) is exercised: block scale 1 (amax 4..8 -> e = 0)
    x[:100, 0] = 6.0
    x[:100, 1:4] = [0.75, 1.75, -3.5]
    x[:100, 4:] = rng.uniform(-5.9, 5.9, (100, 28))
    ours = mx.quantize(x, "mxfp4").reshape(-1, 17)
    theirs = _gguf_mxfp4(x)
    same_scale = ours[:, 0] == theirs[:, 0]
    amax = np.abs(x).max(axis=1)
    log2_rounds_up = np.floor(np.log2(amax)) != np.frexp(amax.astype(np.float64))[1] - 1
    assert (~same_scale == log2_rounds_up).all()              # (c) and only (c)
    oc, tc = mx.unpack(ours[same_scale, 1:], "mxfp4"), mx.unpack(theirs[same_scale, 1:], "mxfp4")
    scaled = x[same_scale].astype(np.float64) / mx.e8m0_decode(ours[same_scale, 0])[:, None]
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    is_tie = np.isin(np.abs(scaled), (grid[:-1] + grid[1:]) / 2) & (np.abs(scaled) > 0.25)
    neg_zero = (oc == 8) & (tc == 0)
    diff = oc != tc
    assert (diff == (is_tie | neg_zero) & diff).all(), "a difference not explained by (a)/(b)"
    n_a, n_b, n_c = int((diff & is_tie).sum()), int((diff & neg_zero).sum()), int((~same_scale).sum())
    assert n_a >= 300 and n_b > 0                              # the planted ties differ
    print(f"gguf-py MXFP4 differences: {n_a} tie elements, {n_b} negative zeros, "
          f"{n_c} blocks with a different exponent, of {x.size} elements")


@pytest.mark.parametrize("impl", IMPLS)
def test_dequantize_into_out(impl):
    x = np.random.default_rng(6).standard_normal((3, 64)).astype(np.float32)
    for fmt in ALL:
        q = mx.quantize(x, fmt)
        for dt in (np.float32, np.float16):
            out = np.full((3, 64), 7, dt)
            assert mx.dequantize(q, fmt, dt, impl=impl, out=out) is out
            np.testing.assert_array_equal(out, mx.dequantize(q, fmt, dt, impl=impl))
    with pytest.raises(ValueError, match=r"out must be a C-contiguous float32 array of shape \(3, 64\)"):
        mx.dequantize(q, "mxint8", out=np.empty((3, 32), np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_inputs(impl):
    for fmt in ALL:
        q = mx.quantize(np.zeros((0, 64), np.float32), fmt, impl=impl)
        assert q.shape == (0, 2 * fmt.block_bytes)
        assert mx.dequantize(q, fmt, impl=impl).shape == (0, 64)
        assert mx.dequantize(np.zeros((3, 0), np.uint8), fmt, impl=impl).shape == (3, 0)
