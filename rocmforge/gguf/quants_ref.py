"""Plain NumPy reference for ggml block dequantization (and Q8_0 / Q4_0 quantization).

Readable first, fast second: each ``_dq_<type>(blocks)`` takes ``blocks`` of shape
(n_blocks, bytes_per_block) uint8 and returns (n_blocks, elements_per_block) float32.
The float32 arithmetic follows ggml's (and gguf-py's) operation order exactly, e.g.
Q4_K computes ``(d * sc) * q - (dmin * m)`` with a float32 rounding after every
operation, so the results are bit-identical to ``gguf.quants.dequantize``.  The Cython
fast path in ``_quants.pyx`` is tested against these functions.

Block layouts (byte offsets within one block; "lo/hi" = low/high nibble):
  Q4_0  (18)  d:f16 @0, qs[16] @2           elem j = lo(qs[j]), elem j+16 = hi(qs[j])
  Q4_1  (20)  d:f16 @0, m:f16 @2, qs[16] @4  y = d*q + m
  Q5_0  (22)  d @0, qh:u32 @2, qs[16] @6    5th bit of elem i = bit i of qh
  Q5_1  (24)  d @0, m @2, qh:u32 @4, qs[16] @8
  Q8_0  (34)  d @0, qs:i8[32] @2
  Q2_K  (84)  scales[16] @0, qs[64] @16, d @80, dmin @82
  Q3_K (110)  hmask[32] @0, qs[64] @32, scales[12] @96, d @108
  Q4_K (144)  d @0, dmin @2, scales[12] @4, qs[128] @16
  Q5_K (176)  d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
  Q6_K (210)  ql[128] @0, qh[64] @128, scales:i8[16] @192, d @208
  Q8_K (292)  d:f32 @0, qs:i8[256] @4, bsums:i16[16] @260 (unused here)
  IQ4_NL (18) d @0, qs[16] @2 (4-bit indices into KVALUES_IQ4NL)
  IQ4_XS (136) d @0, scales_h:u16 @2, scales_l[4] @4, qs[128] @8
  MXFP4 (17)  e8m0 @0, qs[16] @1 (E2M1 codes; ggml's block_mxfp4)
"""
from __future__ import annotations

import numpy as np

from .constants import TYPE_SIZES, GgufTensorType

T = GgufTensorType

KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                          1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)
# E2M1 values doubled (ggml's kvalues_mxfp4); the scale is halved to compensate.
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12],
                         dtype=np.int8)


def _f16(blocks: np.ndarray, off: int) -> np.ndarray:
    """(n, 1) float32 from the little-endian float16 at byte ``off`` of each block."""
    return blocks[:, off:off + 2].copy().view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k): low nibbles of all k bytes, then their high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _bits(x: np.ndarray, shifts, mask: int) -> np.ndarray:
    """(n, k) -> (n, len(shifts) * k): (x >> s) & mask for each s in turn."""
    return np.concatenate([(x >> s) & mask for s in shifts], axis=-1)


# ---- 32-element blocks --------------------------------------------------------------

def _dq_q4_0(b):
    d = _f16(b, 0)
    q = _nibbles(b[:, 2:18]).astype(np.int8) - np.int8(8)        # (n, 32)
    return d * q.astype(np.float32)


def _dq_q4_1(b):
    d, m = _f16(b, 0), _f16(b, 2)
    q = _nibbles(b[:, 4:20]).astype(np.float32)
    return d * q + m


def _q5_high(qh4: np.ndarray) -> np.ndarray:
    """(n, 4) bytes of a little-endian u32 -> (n, 32): bit i of the u32, shifted to bit 4."""
    qh = qh4.copy().view("<u4")                                     # (n, 1)
    return (((qh >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.uint8)


def _dq_q5_0(b):
    d = _f16(b, 0)
    q = (_nibbles(b[:, 6:22]) | _q5_high(b[:, 2:6])).astype(np.int8) - np.int8(16)
    return d * q.astype(np.float32)


def _dq_q5_1(b):
    d, m = _f16(b, 0), _f16(b, 2)
    q = (_nibbles(b[:, 8:24]) | _q5_high(b[:, 4:8])).astype(np.float32)
    return d * q + m


def _dq_q8_0(b):
    d = _f16(b, 0)
    return b[:, 2:34].view(np.int8).astype(np.float32) * d


def _dq_iq4_nl(b):
    d = _f16(b, 0)
    return d * KVALUES_IQ4NL[_nibbles(b[:, 2:18])].astype(np.float32)


def _e8m0_half(e: np.ndarray) -> np.ndarray:
    """E8M0 byte -> 2**(e - 128) as float32 (ggml's e8m0_to_fp32_half); 0xFF -> NaN."""
    e = e.astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - 1) << np.uint32(23))
    return np.where(e == 0xFF, np.float32(np.nan), bits.astype(np.uint32).view(np.float32))


def _dq_mxfp4(b):
    # NOTE: a scale byte of 0xFF is NaN (OCP MX, DESIGN.md); ggml/gguf-py read it as 2**127.
    d = _e8m0_half(b[:, 0:1])
    return d * KVALUES_MXFP4[_nibbles(b[:, 1:17])].astype(np.float32)


# ---- 256-element super-blocks (k-quants) ---------------------------------------------

def _dq_q2_k(b):
    n = b.shape[0]
    sc = b[:, 0:16]
    d, dmin = _f16(b, 80), _f16(b, 82)
    dl = d * (sc & 0x0F).astype(np.float32)                         # (n, 16)
    ml = dmin * (sc >> 4).astype(np.float32)
    # element 128*h + 32*s + l = bits 2s..2s+1 of qs[32*h + l]
    q = np.concatenate([_bits(b[:, 16 + 32 * h:48 + 32 * h], (0, 2, 4, 6), 3)
                        for h in range(2)], axis=-1).astype(np.float32)
    q = q.reshape(n, 16, 16)
    return (dl[:, :, None] * q - ml[:, :, None]).reshape(n, 256)


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """(n, 12) packed 6-bit scales -> (n, 16) int: low 4 bits from s[0:8], high 2 from s[8:12]."""
    lo = _bits(s[:, 0:8], (0, 4), 0x0F)                               # i = 8k + j
    hi = _bits(s[:, 8:12], (0, 2, 4, 6), 0x03)                        # i = 4k + j
    return (lo | (hi << 4)).astype(np.int8) - np.int8(32)


def _dq_q3_k(b):
    n = b.shape[0]
    d = _f16(b, 108)
    dl = d * _q3_k_scales(b[:, 96:108]).astype(np.float32)          # (n, 16)
    ql = np.concatenate([_bits(b[:, 32 + 32 * h:64 + 32 * h], (0, 2, 4, 6), 3)
                         for h in range(2)], axis=-1)               # (n, 256)
    hm = _bits(b[:, 0:32], range(8), 1)                              # element 32*k + l
    q = ql.astype(np.int8) - ((hm ^ 1) << 2).astype(np.int8)        # set bit = no offset
    return (dl[:, :, None] * q.astype(np.float32).reshape(n, 16, 16)).reshape(n, 256)


def _k_scale_min(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12) packed -> (sc, m), each (n, 8) 6-bit (ggml's get_scale_min_k4)."""
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc, mn


def _k4_low(qs: np.ndarray) -> np.ndarray:
    """(n, 128) -> (n, 8, 32): sub-block 2c takes lo(qs[32c + l]), 2c+1 takes hi."""
    n = qs.shape[0]
    q = qs.reshape(n, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    return (q & 0x0F).reshape(n, 8, 32)


def _dq_q4_k(b):
    n = b.shape[0]
    d, dmin = _f16(b, 0), _f16(b, 2)
    sc, mn = _k_scale_min(b[:, 4:16])
    d1 = (d * sc.astype(np.float32))[:, :, None]                     # (n, 8, 1)
    m1 = (dmin * mn.astype(np.float32))[:, :, None]
    return (d1 * _k4_low(b[:, 16:144]).astype(np.float32) - m1).reshape(n, 256)


def _dq_q5_k(b):
    n = b.shape[0]
    d, dmin = _f16(b, 0), _f16(b, 2)
    sc, mn = _k_scale_min(b[:, 4:16])
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * mn.astype(np.float32))[:, :, None]
    qh = _bits(b[:, 16:48], range(8), 1).reshape(n, 8, 32)           # bit j of qh[l]
    q = (_k4_low(b[:, 48:176]) | (qh << 4)).astype(np.float32)
    return (d1 * q - m1).reshape(n, 256)


def _dq_q6_k(b):
    n = b.shape[0]
    d = _f16(b, 208)
    d1 = (d * b[:, 192:208].view(np.int8).astype(np.float32))[:, :, None]   # (n, 16, 1)
    # element 128h + 64k + m (m < 64): nibble k of ql[64h + m];
    # element 128h + 32s + l (l < 32): bits 2s, 2s+1 of qh[32h + l]
    ql = np.concatenate([_bits(b[:, 64 * h:64 * h + 64], (0, 4), 0x0F) for h in range(2)], axis=-1)
    qh = np.concatenate([_bits(b[:, 128 + 32 * h:160 + 32 * h], (0, 2, 4, 6), 3)
                         for h in range(2)], axis=-1)
    q = (ql | (qh << 4)).astype(np.int8) - np.int8(32)
    return (d1 * q.astype(np.float32).reshape(n, 16, 16)).reshape(n, 256)


def _dq_q8_k(b):
    d = b[:, 0:4].copy().view("<f4")                                 # (n, 1) float32
    return d * b[:, 4:260].view(np.int8).astype(np.float32)


def _dq_iq4_xs(b):
    n = b.shape[0]
    d = _f16(b, 0)
    sh = b[:, 2:4].copy().view("<u2")                                # (n, 1)
    lo = (b[:, 4:8, None] >> np.array([0, 4], dtype=np.uint8)).reshape(n, 8) & 0x0F
    hi = ((sh >> (2 * np.arange(8, dtype=np.uint16))) & 3).astype(np.uint8)
    dl = d * ((lo | (hi << 4)).astype(np.int8) - np.int8(32)).astype(np.float32)  # (n, 8)
    idx = np.concatenate([_nibbles(b[:, 8 + 16 * i:24 + 16 * i]) for i in range(8)], axis=-1)
    v = KVALUES_IQ4NL[idx].astype(np.float32).reshape(n, 8, 32)
    return (dl[:, :, None] * v).reshape(n, 256)


BLOCK_DEQUANT = {
    T.Q4_0: _dq_q4_0, T.Q4_1: _dq_q4_1, T.Q5_0: _dq_q5_0, T.Q5_1: _dq_q5_1,
    T.Q8_0: _dq_q8_0, T.Q2_K: _dq_q2_k, T.Q3_K: _dq_q3_k, T.Q4_K: _dq_q4_k,
    T.Q5_K: _dq_q5_k, T.Q6_K: _dq_q6_k, T.Q8_K: _dq_q8_k, T.IQ4_NL: _dq_iq4_nl,
    T.IQ4_XS: _dq_iq4_xs, T.MXFP4: _dq_mxfp4,
}
# plain element types: little-endian numpy dtype of the stored values
PLAIN_DTYPES = {
    T.F32: "<f4", T.F16: "<f2", T.F64: "<f8", T.I8: "i1", T.I16: "<i2", T.I32: "<i4",
    T.I64: "<i8",
}


def dequantize_ref(raw: np.ndarray, ttype: GgufTensorType) -> np.ndarray:
    """Reference: uint8 (whole blocks of ``ttype``) -> float32 (n_elements,)."""
    ttype = GgufTensorType(ttype)
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if ttype == T.BF16:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    if ttype in PLAIN_DTYPES:
        return raw.view(PLAIN_DTYPES[ttype]).astype(np.float32)
    if ttype not in BLOCK_DEQUANT:
        raise NotImplementedError(ttype.name)
    nbytes = TYPE_SIZES[ttype][1]
    blocks = raw.reshape(-1, nbytes)
    with np.errstate(invalid="ignore", over="ignore"):
        return BLOCK_DEQUANT[ttype](blocks).astype(np.float32, copy=False).reshape(-1)


# ---- quantization (bit-exact with ggml's reference quantizers / gguf-py) -------------

def _round_away(x: np.ndarray) -> np.ndarray:
    """roundf(): nearest, ties away from zero (in float32; no x + 0.5 rounding trap)."""
    a = np.abs(x)
    fl = np.floor(a)
    return np.sign(x) * (fl + (a - fl >= np.float32(0.5)).astype(np.float32))


def quantize_q8_0_ref(x: np.ndarray) -> np.ndarray:
    """float32 (..., K), K % 32 == 0 -> uint8 (n_blocks * 34,)."""
    blk = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    d = np.abs(blk).max(axis=1, keepdims=True) / np.float32(127)     # (n, 1)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = _round_away(blk * inv).astype(np.int8)
    return np.concatenate([d.astype("<f2").view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def quantize_q4_0_ref(x: np.ndarray) -> np.ndarray:
    """float32 (..., K), K % 32 == 0 -> uint8 (n_blocks * 18,)."""
    blk = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    imax = np.abs(blk).argmax(axis=1)[:, None]                        # first max |x|
    d = np.take_along_axis(blk, imax, axis=1) / np.float32(-8)         # signed, (n, 1)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.trunc(blk * inv + np.float32(8.5)).astype(np.uint8)        # trunc, then clip
    q = np.minimum(q, 15)
    qs = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([d.astype("<f2").view(np.uint8), qs], axis=1).reshape(-1)


# ---- random test blocks ---------------------------------------------------------------

# byte offsets of the float16 scale fields in each block (for sane random blocks)
F16_FIELDS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
    T.IQ4_NL: (0,), T.IQ4_XS: (0,),
}


def random_blocks(ttype: GgufTensorType, n_blocks: int, rng: np.random.Generator,
                  sane: bool = True) -> np.ndarray:
    """uint8 (n_blocks * bytes_per_block,) of random ``ttype`` blocks, for tests and benches.

    ``sane=False``: raw random bytes (scales may be NaN / Inf / subnormal).  ``sane=True``:
    random payload bits but finite, normal scales like a real model's (|d| in [1e-4, 0.1]
    for float16 fields, E8M0 in [100, 150]); plain float types get N(0, 1) values.
    """
    ttype = GgufTensorType(ttype)
    elems, nbytes = TYPE_SIZES[ttype]
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    if not sane:
        return raw.reshape(-1)
    if ttype in (T.F32, T.F16, T.F64):
        vals = rng.standard_normal(n_blocks).astype(PLAIN_DTYPES[ttype])
        return vals.view(np.uint8).copy()
    if ttype == T.BF16:
        bits = rng.standard_normal(n_blocks).astype(np.float32).view(np.uint32) >> 16
        return bits.astype("<u2").view(np.uint8).copy()
    for off in F16_FIELDS.get(ttype, ()):
        mag = np.exp(rng.uniform(np.log(1e-4), np.log(0.1), n_blocks))
        d = (mag * rng.choice([-1.0, 1.0], n_blocks)).astype("<f2")
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    if ttype == T.Q8_K:
        raw[:, 0:4] = rng.uniform(1e-4, 0.1, n_blocks).astype("<f4").view(np.uint8).reshape(-1, 4)
    if ttype == T.MXFP4:
        raw[:, 0] = rng.integers(100, 151, n_blocks)
    if ttype.value >= 1000:     # rocmforge MX (FP8 codes may be NaN): quantize N(0, 1) instead
        from .. import mx
        x = rng.standard_normal((n_blocks, 32)).astype(np.float32)
        x *= np.exp2(rng.integers(-20, 20, (n_blocks, 1))).astype(np.float32)
        return np.asarray(mx.quantize(x, mx.MxFormat.parse(ttype.name)), np.uint8).reshape(-1)
    return raw.reshape(-1)
