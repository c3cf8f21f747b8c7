"""rocmforge.gguf.quants: dequantization of every ggml type, dot_rows / matmul, quantize.

Oracles: gguf-py's ``gguf.quants`` (bit-identical float32 on every type it supports,
random blocks both sane and raw-random), the NumPy reference ``quants_ref`` (bit-identical
for every type, the ones gguf-py lacks included), and hand-built blocks.
Real files: EVERY tensor of stories260K.gguf and EVERY tensor of the Gemma 3 270M Q4_K_M
GGUF is compared in full with gguf-py (big tensors in row chunks to bound memory; about
10-30 s of gguf-py dequantization on 2 cores).  Raw tensor bytes come from
rocmforge.gguf.reader.GGUFReader (tests/gguf/test_reader.py checks it against gguf-py).
"""
from __future__ import annotations

import numpy as np
import pytest

from rocmforge.gguf import quants, quants_ref
from rocmforge.gguf.constants import MX_TYPES, TYPE_SIZES, GgufTensorType as T
from rocmforge.gguf.quants import (dequantize, dequantize_rows, dot_rows, matmul, quantize)
from rocmforge.gguf.quants_ref import random_blocks

gguf = pytest.importorskip("gguf")
from gguf.constants import GGMLQuantizationType as G  # noqa: E402

ORACLE_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K,
                T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS, T.MXFP4]
CYTHON_TYPES = ORACLE_TYPES + [T.Q8_K, T.F64, T.I8, T.I16, T.I32, T.I64]
MATVEC_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K,
                T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K, T.IQ4_NL, T.IQ4_XS, T.MXFP4,
                T.MXFP6_E2M3, T.MXFP8_E4M3, T.MXINT8]


def gguf_dequant(raw: np.ndarray, ttype: T) -> np.ndarray:
    """gguf-py's dequantization of uint8 whole blocks -> float32 (n_elements,)."""
    with np.errstate(all="ignore"):
        out = gguf.quants.dequantize(raw.reshape(-1, TYPE_SIZES[ttype][1]), G(int(ttype)))
    return np.asarray(out, dtype=np.float32).reshape(-1)


def assert_same_bits(got: np.ndarray, want: np.ndarray, ttype: T, what: str = "") -> None:
    """Equal float32 bit patterns, NaNs compared by position only; names the first bad block."""
    got, want = got.reshape(-1), want.reshape(-1)
    assert got.shape == want.shape, (got.shape, want.shape)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    bad = (nan_g != nan_w) | (~nan_w & (got.view(np.uint32) != want.view(np.uint32)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        elems = TYPE_SIZES[ttype][0]
        pytest.fail(f"{ttype.name} {what}: {int(bad.sum())} elements differ; first at element "
                    f"{i} (block {i // elems}, index {i % elems}): got {got[i]!r}, "
                    f"want {want[i]!r}")
    np.testing.assert_array_equal(got, want)   # equal_nan by default


def test_cython_extension_is_built():
    assert quants.HAVE_CYTHON, ("rocmforge.gguf._quants is not built: run "
                                "python setup.py build_ext --inplace")


@pytest.mark.parametrize("ttype", CYTHON_TYPES, ids=lambda t: t.name)
def test_kernel_layout_matches_type_sizes(ttype):
    from rocmforge.gguf import _quants
    assert _quants.block_layout(int(ttype)) == TYPE_SIZES[ttype]


# ---- oracle: gguf-py on random blocks ------------------------------------------------------

@pytest.mark.parametrize("sane", [True, False], ids=["sane", "raw"])
@pytest.mark.parametrize("ttype", ORACLE_TYPES, ids=lambda t: t.name)
def test_matches_gguf_py_on_random_blocks(ttype, sane):
    rng = np.random.default_rng([int(ttype), sane])
    elems = TYPE_SIZES[ttype][0]
    raw = random_blocks(ttype, 4096 if elems == 1 else 512, rng, sane=sane)
    if ttype == T.MXFP4:    # 0xFF scales: NaN here (OCP), 2**127 in ggml; tested separately
        raw.reshape(-1, 17)[:, 0] = np.minimum(raw.reshape(-1, 17)[:, 0], 0xFE)
    want = gguf_dequant(raw, ttype)
    assert_same_bits(dequantize(raw, ttype), want, ttype, "vs gguf-py")
    assert_same_bits(quants_ref.dequantize_ref(raw, ttype), want, ttype, "reference vs gguf-py")
    if not sane:
        return
    got16 = dequantize(raw, ttype, dtype=np.float16)
    assert got16.dtype == np.float16
    with np.errstate(over="ignore"):
        want16 = want.astype(np.float16)
    np.testing.assert_array_equal(got16.view(np.uint16), want16.view(np.uint16))


@pytest.mark.parametrize("sane", [True, False], ids=["sane", "raw"])
@pytest.mark.parametrize("ttype", CYTHON_TYPES, ids=lambda t: t.name)
def test_cython_matches_reference(ttype, sane):
    rng = np.random.default_rng([int(ttype), sane, 7])
    elems = TYPE_SIZES[ttype][0]
    raw = random_blocks(ttype, 4096 if elems == 1 else 300, rng, sane=sane)
    with np.errstate(all="ignore"):
        want = quants_ref.dequantize_ref(raw, ttype)
    assert_same_bits(dequantize(raw, ttype), want, ttype, "Cython vs reference")


def test_f16_all_codes():
    codes = np.arange(1 << 16, dtype=np.uint16)
    got = dequantize(codes.view(np.uint8), T.F16)
    want = codes.view(np.float16).astype(np.float32)
    assert_same_bits(got, want, T.F16, "all 65536 codes")
    nan = np.isnan(want)         # NaN payloads are kept: sign and mantissa bits shifted up
    np.testing.assert_array_equal(got[nan].view(np.uint32),
                                  ((codes[nan].astype(np.uint32) & 0x8000) << 16) | 0x7F800000
                                  | ((codes[nan].astype(np.uint32) & 0x3FF) << 13))
    # subnormals, both zeros and the infinities by their bits
    assert got[0x0001] == np.float32(2.0 ** -24) and got[0x03FF] == np.float32(1023 * 2.0 ** -24)
    assert got[0x8000].view(np.uint32) == 0x80000000 and got[0x0000].view(np.uint32) == 0
    assert got[0x7C00] == np.inf and got[0xFC00] == -np.inf


def test_bf16_all_codes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    codes = np.arange(1 << 16, dtype=np.uint16)
    got = dequantize(codes.view(np.uint8), T.BF16)
    np.testing.assert_array_equal(got.view(np.uint32), codes.astype(np.uint32) << 16)
    want = codes.view(ml_dtypes.bfloat16).astype(np.float32)
    assert_same_bits(got, want, T.BF16, "vs ml_dtypes")


# ---- hand-built blocks (layouts as bits) ---------------------------------------------

def test_q4_0_layout_by_hand():
    blk = np.zeros(18, np.uint8)
    blk[0:2] = np.array([0.5], "<f2").view(np.uint8)          # d = 0.5
    blk[2] = 0b1000_0001      # element 16 : element 0  -> codes 8, 1
    blk[17] = 0b1111_0000     # element 31 : element 15 -> codes 15, 0
    y = dequantize(blk, T.Q4_0)
    assert y[0] == (1 - 8) * 0.5 and y[16] == 0.0
    assert y[15] == (0 - 8) * 0.5 and y[31] == (15 - 8) * 0.5
    assert np.all(y[1:15] == -4.0)


def test_q5_0_high_bits_by_hand():
    blk = np.zeros(22, np.uint8)
    blk[0:2] = np.array([1.0], "<f2").view(np.uint8)
    blk[2:6] = np.array([(1 << 3) | (1 << 20)], "<u4").view(np.uint8)  # 5th bit of 3 and 20
    y = dequantize(blk, T.Q5_0)
    want = np.full(32, -16.0, np.float32)
    want[3] = want[20] = 0.0
    np.testing.assert_array_equal(y, want)


def test_q8_k_by_hand():
    blk = np.zeros(292, np.uint8)
    blk[0:4] = np.array([0.25], "<f4").view(np.uint8)
    q = np.arange(-128, 128, dtype=np.int8)
    blk[4:260] = q.view(np.uint8)
    blk[260:292] = 0xAB              # bsums are not used by dequantization
    np.testing.assert_array_equal(dequantize(blk, T.Q8_K), q.astype(np.float32) * 0.25)


def test_mxfp4_by_hand_and_nan_scale():
    blk = np.zeros((2, 17), np.uint8)
    blk[0, 0] = 127 + 1                         # scale 2**1
    blk[0, 1] = 0b1111_0111                     # element 16: -6, element 0: +6
    blk[0, 2] = 0b1000_0001                     # element 17: -0 -> +0, element 1: 0.5
    blk[1, 0] = 0xFF                            # NaN scale (OCP MX): whole block NaN
    y = dequantize(blk, T.MXFP4).reshape(2, 32)
    assert y[0, 0] == 12.0 and y[0, 16] == -12.0 and y[0, 1] == 1.0
    assert y[0, 17] == 0.0 and not np.signbit(y[0, 17])
    assert np.isnan(y[1]).all()
    # every other scale byte agrees with gguf-py
    blk = np.zeros((255, 17), np.uint8)
    blk[:, 0] = np.arange(255)
    blk[:, 1:] = np.random.default_rng(3).integers(0, 256, (255, 16))
    assert_same_bits(dequantize(blk, T.MXFP4), gguf_dequant(blk, T.MXFP4), T.MXFP4, "all scales")


# ---- real files -----------------------------------------------------------------------

def _tensors(path) -> list[tuple[str, T, tuple, np.ndarray]]:
    """[(name, type, numpy-order shape, raw uint8 bytes)] of every tensor in a GGUF file."""
    from rocmforge.gguf.reader import GGUFReader
    r = GGUFReader(str(path))
    return [(t.name, T(int(t.ttype)), tuple(t.shape), np.asarray(t.data, np.uint8))
            for t in r.tensors.values()]


def _compare_file(path, chunk_elems=1 << 22):
    """Every tensor of the file, ours vs gguf-py, all rows (big tensors in row chunks)."""
    tensors = _tensors(path)
    for name, ttype, shape, raw in tensors:
        row_elems = shape[-1]
        rb = row_elems // TYPE_SIZES[ttype][0] * TYPE_SIZES[ttype][1]
        n_rows = raw.size // rb
        if raw.size > chunk_elems:
            step = max(1, chunk_elems // row_elems)
            for r0 in range(0, n_rows, step):
                k = min(step, n_rows - r0)
                got = dequantize_rows(raw, ttype, r0, k, row_elems)
                assert_same_bits(got, gguf_dequant(raw[r0 * rb:(r0 + k) * rb], ttype), ttype,
                                 f"{name} rows {r0}..{r0 + k}")
        else:
            got = dequantize(raw, ttype, shape=shape)
            assert got.shape == shape
            assert_same_bits(got, gguf_dequant(raw, ttype), ttype, name)
    return tensors


def test_stories260k_every_tensor(stories260k):
    assert len(_compare_file(stories260k)) == 48


def test_gemma3_270m_every_tensor(gemma_gguf):
    kinds = {ttype for _, ttype, _, _ in _compare_file(gemma_gguf)}
    assert {T.Q4_K, T.Q5_0, T.Q6_K, T.Q8_0, T.F32} <= kinds


def test_gemma3_270m_dot_rows_on_real_weights(gemma_gguf):
    seen = set()
    rng = np.random.default_rng(5)
    for name, ttype, shape, raw in _tensors(gemma_gguf):
        if ttype in seen or len(shape) != 2 or raw.size > 4_000_000:
            continue
        seen.add(ttype)
        n_rows, row_elems = shape
        X = rng.standard_normal((5, row_elems)).astype(np.float32)
        _check_matvec(raw, ttype, n_rows, row_elems, X)
    assert {T.Q4_K, T.Q5_0, T.Q6_K, T.Q8_0} <= seen


# ---- dot_rows, matmul, dequantize_rows ----------------------------------------------

def _check_matvec(raw, ttype, n_rows, row_elems, X):
    """dot_rows and matmul against float64 (X @ W.T) of the dequantized W.

    Tolerance: float32 accumulation in another order; |err| <= 1e-5 * (|X| @ |W|.T) + 1e-30.
    """
    W = dequantize(raw, ttype, shape=(n_rows, row_elems)).astype(np.float64)
    want = X.astype(np.float64) @ W.T                              # (n_tok, n_rows)
    bound = 1e-5 * (np.abs(X).astype(np.float64) @ np.abs(W).T) + 1e-30
    got_mm = matmul(raw, ttype, n_rows, row_elems, X)
    assert got_mm.shape == want.shape and got_mm.dtype == np.float32
    assert np.all(np.abs(got_mm - want) <= bound), f"{ttype.name} matmul"
    for t in range(min(X.shape[0], 3)):
        got = dot_rows(raw, ttype, n_rows, row_elems, X[t])
        assert got.shape == (n_rows,) and got.dtype == np.float32
        assert np.all(np.abs(got - want[t]) <= bound[t]), f"{ttype.name} dot_rows token {t}"


@pytest.mark.parametrize("ttype", MATVEC_TYPES, ids=lambda t: t.name)
def test_dot_rows_and_matmul(ttype):
    if ttype in MX_TYPES and ttype != T.MXFP4:
        pytest.importorskip("rocmforge.mx")
    rng = np.random.default_rng(int(ttype))
    elems = TYPE_SIZES[ttype][0]
    row_elems = 2 * elems if elems > 1 else 37          # odd length: the scalar tails
    row_elems = max(row_elems, 512)
    n_rows = 19
    raw = random_blocks(ttype, n_rows * row_elems // elems, rng)
    for n_tok in (1, 4, 7):                                 # 4-token blocks and remainders
        X = rng.standard_normal((n_tok, row_elems)).astype(np.float32)
        _check_matvec(raw, ttype, n_rows, row_elems, X)


def test_dot_rows_odd_row_length_f32():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((5, 37)).astype(np.float32)
    X = rng.standard_normal((6, 37)).astype(np.float32)
    _check_matvec(W.view(np.uint8), T.F32, 5, 37, X)
    out = np.full(5, np.nan, np.float32)
    assert dot_rows(W, T.F32, 5, 37, X[0], out=out) is out
    np.testing.assert_array_equal(out, dot_rows(W, T.F32, 5, 37, X[0]))
    with pytest.raises(ValueError, match=r"out must be a writable C-contiguous float32 array "
                                         r"of shape \(5,\), got float64 \(5,\)"):
        dot_rows(W, T.F32, 5, 37, X[0], out=np.zeros(5))


def test_dequantize_rows_is_a_slice():
    rng = np.random.default_rng(4)
    raw = random_blocks(T.Q4_K, 12 * 2, rng)                 # 12 rows of 512
    full = dequantize(raw, T.Q4_K, shape=(12, 512))
    np.testing.assert_array_equal(dequantize_rows(raw, T.Q4_K, 5, 4, 512), full[5:9])
    assert dequantize_rows(raw, T.Q4_K, 12, 0, 512).shape == (0, 512)
    with pytest.raises(ValueError, match=r"rows \[10, 13\) out of range .* 12 rows"):
        dequantize_rows(raw, T.Q4_K, 10, 3, 512)


# ---- quantize ---------------------------------------------------------------------------

def _quant_inputs(rng):
    x = rng.standard_normal((64, 256)).astype(np.float32)
    x[1] = 0.0                                              # all-zero blocks
    x[2, :32] = np.linspace(-8, 8, 32)                      # exact grid points, ties
    x[3] *= 1e-30                                           # tiny scales (f16 underflow)
    x[4] *= 1e4
    x[5, ::2] = -x[5, 1::2]                                 # equal |max| of both signs
    x[6] = np.round(rng.standard_normal(256) * 127) / 2     # many x/d exactly at .5
    return x


@pytest.mark.parametrize("ttype", [T.Q8_0, T.Q4_0], ids=lambda t: t.name)
def test_quantize_matches_gguf_py(ttype):
    x = _quant_inputs(np.random.default_rng(int(ttype)))
    got = quantize(x, ttype)
    with np.errstate(all="ignore"):
        want = gguf.quants.quantize(x, G(int(ttype)))
    assert got.dtype == np.uint8
    assert got.shape == want.shape == (64, 256 // 32 * TYPE_SIZES[ttype][1])
    bad = np.flatnonzero(np.any((got != want).reshape(-1, TYPE_SIZES[ttype][1]), axis=1))
    assert bad.size == 0, f"{ttype.name}: first differing block {bad[0] if bad.size else None}"
    # round trip: |error| <= d/2 (Q8_0) or d (Q4_0: the +max end clips from 8 to 7), plus
    # the float16 rounding of d (127 or 8 steps of 2**-11 relative), plus f16 underflow
    y = dequantize(got, ttype, shape=x.shape).reshape(-1, 32)
    amax = np.abs(x).reshape(-1, 32).max(axis=1)
    steps, half = (127, 0.5) if ttype == T.Q8_0 else (8, 1.0)
    bound = amax / steps * half + amax * 2.0 ** -10 + 1e-7 * (amax < 1e-4)
    assert np.all(np.abs(y - x.reshape(-1, 32)).max(axis=1) <= bound)


def test_quantize_f32_f16_and_errors():
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_array_equal(dequantize(quantize(x, T.F32), T.F32, shape=x.shape), x)
    np.testing.assert_array_equal(dequantize(quantize(x, T.F16), T.F16, shape=x.shape),
                                  x.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="Q8_0: last dimension 40 is not a multiple of .* 32"):
        quantize(np.zeros(40, np.float32), T.Q8_0)
    with pytest.raises(NotImplementedError, match="Q4_K"):
        quantize(np.zeros(256, np.float32), T.Q4_K)


@pytest.mark.parametrize("ttype", sorted(MX_TYPES), ids=lambda t: t.name)
def test_mx_types_delegate_to_rocmforge_mx(ttype):
    mx = pytest.importorskip("rocmforge.mx")
    if not hasattr(mx, "quantize"):
        pytest.skip("rocmforge.mx.quantize is not there yet")
    fmt = MX_TYPES[ttype]
    x = np.random.default_rng(int(ttype)).standard_normal((4, 128)).astype(np.float32)
    raw = quantize(x, ttype)
    np.testing.assert_array_equal(raw, np.asarray(mx.quantize(x, fmt)))
    y = dequantize(raw, ttype, shape=(4, 128))
    np.testing.assert_array_equal(y, np.asarray(mx.dequantize(raw, fmt)).reshape(4, 128))
    if ttype == T.MXFP4:         # our Cython MXFP4 == rocmforge.mx on its own output
        assert_same_bits(y, np.asarray(mx.dequantize(raw, fmt), np.float32), ttype, "vs mx")


# ---- inputs and errors ----------------------------------------------------------------

def test_buffer_kinds_and_shapes():
    rng = np.random.default_rng(9)
    raw = random_blocks(T.Q6_K, 4, rng)
    want = dequantize(raw, T.Q6_K)
    for buf in (raw.tobytes(), memoryview(raw.tobytes()), bytearray(raw.tobytes()),
                raw.view(np.uint16), raw.reshape(4, -1)):
        np.testing.assert_array_equal(dequantize(buf, T.Q6_K), want)
    ro = raw.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(dequantize(ro, int(T.Q6_K), shape=(2, 512)), want.reshape(2, 512))
    assert dequantize(np.zeros(0, np.uint8), T.Q4_K).shape == (0,)


def test_errors_name_what_is_wrong():
    raw = np.zeros(144 * 2 + 5, np.uint8)
    with pytest.raises(ValueError, match=r"Q4_K: 293 bytes is not a whole number of 144-byte "
                                         r"blocks \(expected 288 or 432 bytes\)"):
        dequantize(raw, T.Q4_K)
    with pytest.raises(ValueError, match=r"Q4_K: shape \(3, 256\) has 768 elements, but 288 bytes "
                                         r"hold 512 \(expected 432 bytes"):
        dequantize(raw[:288], T.Q4_K, shape=(3, 256))
    with pytest.raises(NotImplementedError, match="IQ2_XXS"):
        dequantize(np.zeros(66, np.uint8), T.IQ2_XXS)
    with pytest.raises(ValueError, match="unknown GGUF tensor type 99"):
        dequantize(np.zeros(4, np.uint8), 99)
    with pytest.raises(ValueError, match="dtype must be float32 or float16"):
        dequantize(np.zeros(4, np.uint8), T.F32, dtype=np.float64)
    with pytest.raises(ValueError, match=r"Q8_0: 68 bytes given, but 3 rows of 32 elements "
                                         r"take 102"):
        dot_rows(np.zeros(68, np.uint8), T.Q8_0, 3, 32, np.zeros(32, np.float32))
    with pytest.raises(ValueError, match=r"x has shape \(31,\), expected \(32,\)"):
        dot_rows(np.zeros(68, np.uint8), T.Q8_0, 2, 32, np.zeros(31, np.float32))
    with pytest.raises(ValueError, match="row_elems 100 is not a positive multiple of the "
                                         "block size 32"):
        matmul(np.zeros(68, np.uint8), T.Q8_0, 2, 100, np.zeros((1, 100), np.float32))
    with pytest.raises(ValueError, match=r"X has shape \(2, 33\), expected \(n_tok, 32\)"):
        matmul(np.zeros(68, np.uint8), T.Q8_0, 2, 32, np.zeros((2, 33), np.float32))
