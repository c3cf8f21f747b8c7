"""Plain NumPy reference for the MX formats: the oracle the fast paths are tested against.

Written for clarity, not speed: element values come from a decode table built from
the format's fields, encoding picks the nearest table entry (ties to the even code),
and block scaling is done in float64 where every step is exact.
"""
from __future__ import annotations

import numpy as np

from .formats import BLOCK_SIZE, E8M0_BIAS, E8M0_NAN, SCALE_EXP_MAX, SCALE_EXP_MIN, MxFormat

# ----------------------------------------------------------------------------- elements


def decode_table(fmt: MxFormat) -> np.ndarray:
    """float64 value of every code 0 .. 2**bits - 1 of ``fmt``'s element format."""
    s = fmt.spec
    codes = np.arange(s.n_codes)
    if s.kind == "int":
        return codes.astype(np.uint8).view(np.int8).astype(np.float64) / 2.0**s.mbits
    sign = np.where(codes & s.sign_bit, -1.0, 1.0)
    exp = (codes >> s.mbits) & ((1 << s.ebits) - 1)
    man = codes & ((1 << s.mbits) - 1)
    subnormal = man * 2.0 ** (1 - s.bias - s.mbits)
    normal = (1.0 + man / 2.0**s.mbits) * 2.0 ** (exp - s.bias)
    vals = sign * np.where(exp == 0, subnormal, normal)
    # Only the FP8 formats have special codes (FP4 / FP6 have none).
    if fmt is MxFormat.MXFP8_E4M3:                      # S.1111.111 is NaN, no Inf
        nan = (codes & 0x7F) == 0x7F
        vals[nan] = np.copysign(np.nan, sign[nan])
    elif fmt is MxFormat.MXFP8_E5M2:                    # exponent 11111: Inf or NaN
        top = exp == 0x1F
        vals[top & (man == 0)] = sign[top & (man == 0)] * np.inf
        vals[top & (man != 0)] = np.copysign(np.nan, sign[top & (man != 0)])
    return vals


def decode(codes, fmt: MxFormat) -> np.ndarray:
    """Element codes (uint8) -> float32 values, no scale applied."""
    fmt = MxFormat.parse(fmt)
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise ValueError(f"codes must be uint8, got {codes.dtype}")
    if fmt.spec.bits < 8 and codes.size and int(codes.max()) >= fmt.spec.n_codes:
        raise ValueError(f"{fmt.name} codes are {fmt.spec.bits}-bit; got a code of "
                         f"{int(codes.max())}")
    return decode_table(fmt)[codes].astype(np.float32)


def encode(values, fmt: MxFormat) -> np.ndarray:
    """Values (already divided by the block scale) -> element codes, uint8.

    Round to nearest, ties to the even code; magnitudes beyond the format's max
    (Inf included) saturate to +-max, the MX rule.  NaN maps to the NaN code of the
    FP8 formats and is an error for formats without one.
    """
    fmt = MxFormat.parse(fmt)
    s = fmt.spec
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    if nan.any() and fmt not in (MxFormat.MXFP8_E4M3, MxFormat.MXFP8_E5M2):
        raise ValueError(f"{fmt.name} elements have no NaN code")
    grid = np.abs(decode_table(fmt)[: s.max_code + 1])       # +0 .. +max, ascending
    a = np.minimum(np.abs(np.where(nan, 0.0, v)), s.max)
    hi = np.clip(np.searchsorted(grid, a, side="left"), 0, s.max_code)
    lo = np.maximum(hi - 1, 0)
    d_lo, d_hi = a - grid[lo], grid[hi] - a
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    mag = np.where(pick_hi, hi, lo).astype(np.int64)
    neg = np.signbit(v)
    if s.kind == "int":
        code = np.where(neg, (-mag) & 0xFF, mag)
    else:
        code = np.where(neg, mag | s.sign_bit, mag)
        code = np.where(nan, 0x7F, code)
    return code.astype(np.uint8)


# ----------------------------------------------------------------------------- E8M0


def e8m0_decode(scale_bytes) -> np.ndarray:
    """E8M0 bytes -> float64 2**(b - 127); 0xFF -> NaN."""
    b = np.asarray(scale_bytes, dtype=np.uint8).astype(np.int64)
    out = np.ldexp(1.0, b - E8M0_BIAS)
    return np.where(b == E8M0_NAN, np.nan, out)


def shared_exponent(amax, fmt: MxFormat) -> np.ndarray:
    """floor(log2(amax)) - emax_elem, clamped to [-127, 127] (amax > 0, finite)."""
    _, e = np.frexp(np.asarray(amax, dtype=np.float64))      # amax = m * 2**e, m in [0.5, 1)
    return np.clip(e - 1 - MxFormat.parse(fmt).spec.emax, SCALE_EXP_MIN, SCALE_EXP_MAX)


# ----------------------------------------------------------------------------- packing


def pack(codes, fmt: MxFormat) -> np.ndarray:
    """Element codes (..., nb*32) -> packed code bytes (..., nb*bits*4) (no scale bytes)."""
    fmt = MxFormat.parse(fmt)
    c = np.asarray(codes, dtype=np.uint8)
    lead, n = c.shape[:-1], c.shape[-1]
    c = c.reshape(*lead, n // BLOCK_SIZE, BLOCK_SIZE).astype(np.uint32)   # explicit: 0-size ok
    bits = fmt.spec.bits
    if bits == 4:        # byte j: element j (low nibble), element j + 16 (high nibble)
        out = c[..., :16] | (c[..., 16:] << 4)
    elif bits == 6:      # 4 codes -> 3 bytes, little-endian 24-bit word
        q = c.reshape(*c.shape[:-1], 8, 4)
        w = q[..., 0] | (q[..., 1] << 6) | (q[..., 2] << 12) | (q[..., 3] << 18)
        out = np.stack([w & 0xFF, (w >> 8) & 0xFF, w >> 16], axis=-1)
    else:
        out = c
    return out.astype(np.uint8).reshape(*lead, n // BLOCK_SIZE * bits * 4)


def unpack(packed, fmt: MxFormat) -> np.ndarray:
    """Inverse of ``pack``: (..., nb*bits*4) bytes -> (..., nb*32) codes."""
    fmt = MxFormat.parse(fmt)
    p = np.asarray(packed, dtype=np.uint8)
    bits = fmt.spec.bits
    per_block = BLOCK_SIZE * bits // 8
    lead = p.shape[:-1]
    p = p.reshape(*lead, p.shape[-1] // per_block, per_block).astype(np.uint32)
    if bits == 4:
        out = np.concatenate([p & 0xF, p >> 4], axis=-1)
    elif bits == 6:
        t = p.reshape(*p.shape[:-1], 8, 3)
        w = t[..., 0] | (t[..., 1] << 8) | (t[..., 2] << 16)
        out = np.stack([(w >> (6 * i)) & 0x3F for i in range(4)], axis=-1)
    else:
        out = p
    return out.astype(np.uint8).reshape(*lead, p.shape[-2] * BLOCK_SIZE)


# ----------------------------------------------------------------------------- blocks


def quantize(x, fmt: MxFormat) -> np.ndarray:
    """float array (..., K), K % 32 == 0 -> uint8 blocks (..., K/32 * block_bytes)."""
    fmt = MxFormat.parse(fmt)
    x = np.asarray(x)
    lead, k = x.shape[:-1], x.shape[-1]
    blocks = x.astype(np.float64).reshape(x.size // BLOCK_SIZE, BLOCK_SIZE)   # (nblocks, 32)
    finite = np.isfinite(blocks).all(axis=1)
    amax = np.where(finite, np.abs(np.where(np.isfinite(blocks), blocks, 0)).max(axis=1), 0.0)
    nonzero = finite & (amax > 0)
    e = np.where(nonzero, shared_exponent(np.where(nonzero, amax, 1.0), fmt), 0)
    scaled = np.ldexp(np.where(nonzero[:, None], blocks, 0.0), -e[:, None])
    codes = encode(scaled, fmt)
    codes[~nonzero] = 0                                       # zero and NaN/Inf blocks
    scale = np.where(finite, np.where(nonzero, e + E8M0_BIAS, 0), E8M0_NAN).astype(np.uint8)
    out = np.concatenate([scale[:, None], pack(codes, fmt)], axis=1)
    return out.reshape(*lead, k // BLOCK_SIZE * fmt.block_bytes)


def dequantize(data, fmt: MxFormat, dtype=np.float32) -> np.ndarray:
    """uint8 blocks (..., nb * block_bytes) -> values (..., nb * 32) of ``dtype``.

    Codes of -0 dequantize to +0.0 (ggml decodes block_mxfp4 through integer values,
    so its -0 code gives +0; we follow it in every format so that dequantized blocks
    are bit-identical to llama.cpp's).  ``decode`` keeps the sign of zero.
    """
    fmt = MxFormat.parse(fmt)
    d = np.asarray(data, dtype=np.uint8)
    lead = d.shape[:-1]
    blocks = d.reshape(d.size // fmt.block_bytes, fmt.block_bytes)
    vals = decode_table(fmt)[unpack(blocks[:, 1:], fmt)] * e8m0_decode(blocks[:, 0])[:, None]
    vals += 0.0                     # a zero element dequantizes to +0, as in ggml's MXFP4
    with np.errstate(over="ignore"):     # beyond the float16 range -> inf, as a cast does
        return vals.astype(dtype).reshape(*lead, d.shape[-1] // fmt.block_bytes * BLOCK_SIZE)
