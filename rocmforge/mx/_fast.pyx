# cython: language_level=3
"""Cython fast path for MX block quantize / dequantize.

Bit-identical to ``rocmforge.mx.reference`` (tests/mx/test_fast.py).  The element
encoder rounds with integer arithmetic on the float32 bit pattern (round to nearest
even), which is exact because scaling by a power of two is exact for every value
that can round to a non-zero code.
"""
from libc.math cimport ldexpf, fabsf, NAN
from libc.stdint cimport uint8_t, uint32_t, int32_t
from libc.string cimport memcpy, memset

cdef struct Fmt:
    int is_int
    int bits
    int mbits
    int bias
    int emax
    int max_code
    int block_bytes
    float sub_limit      # 2**(1 - bias): below it an element is subnormal
    float sub_mul        # 2**(bias - 1 + mbits): subnormal value -> integer code
    float table[256]     # code -> value (no scale)


cdef float RNE_MAGIC = 8388608.0     # 2**23: (a + 2**23) - 2**23 rounds 0 <= a < 2**22 to even


cdef inline uint32_t _rint(float a) noexcept nogil:
    """Round 0 <= a < 2**22 to the nearest integer, ties to even (IEEE default mode)."""
    cdef float t = a + RNE_MAGIC        # no -ffast-math: the compiler keeps both steps
    return <uint32_t>(t - RNE_MAGIC)


cdef inline uint32_t _f2u(float f) noexcept nogil:
    cdef uint32_t u
    memcpy(&u, &f, 4)
    return u


cdef inline uint32_t _encode_fp(float v, uint32_t shift, uint32_t base, float sub_mul,
                                float sub_limit, uint32_t max_code,
                                uint32_t sign_shift) noexcept nogil:
    """FP element code of v (v / X already applied; |v| < 2**(emax+1), finite).

    Normal range: round the fp32 bit pattern to ``mbits`` mantissa bits (nearest even)
    and rebias the exponent; subnormal range: round v / smallest-subnormal to an
    integer.  Both are computed and one selected with masks (no branches)."""
    cdef float a = fabsf(v)
    cdef uint32_t u = _f2u(a)
    cdef uint32_t code, sub, m
    u += ((<uint32_t>1 << (shift - 1)) - 1) + ((u >> shift) & 1)
    code = (u >> shift) - base                                         # normal range
    sub = _rint(a * sub_mul)                                           # subnormal range
    m = 0u - <uint32_t>(a < sub_limit)                                 # all ones if subnormal
    code = (sub & m) | (code & ~m)
    m = 0u - <uint32_t>(code > max_code)                               # all ones if saturating
    code = (max_code & m) | (code & ~m)
    return code | ((_f2u(v) >> 31) << sign_shift)


cdef inline uint32_t _encode_int(float v) noexcept nogil:
    """MXINT8 code of v: round(v * 64) to nearest even, saturate to +-127, two's complement."""
    cdef uint32_t code = _rint(fabsf(v) * 64.0)
    if code > 127:
        code = 127
    return (0u - code) & 0xFF if v < 0 else code


cdef void _quantize_block(const Fmt* f, const float* x, uint8_t* out) noexcept nogil:
    cdef uint32_t umax = 0, u
    cdef int i, e, j
    cdef uint32_t c[32]
    cdef uint32_t w, shift, base, sign_shift
    cdef float inv
    for i in range(32):
        u = _f2u(x[i]) & 0x7FFFFFFF
        if u > umax:
            umax = u
    if umax >= 0x7F800000:                       # a NaN or an Inf in the block
        out[0] = 0xFF
        memset(out + 1, 0, f.block_bytes - 1)
        return
    if umax == 0:
        memset(out, 0, f.block_bytes)
        return
    # floor(log2(amax)) is the biased exponent field - 127; fp32 subnormals (field 0)
    # land below -127 - emax and clamp to -127 like any amax under 2**(-127 + emax).
    e = <int>(umax >> 23) - 127 - f.emax
    if e < -127:
        e = -127
    out[0] = <uint8_t>(e + 127)
    inv = ldexpf(1.0, -e)                        # exact: 2**-127 .. 2**127
    if f.is_int:
        for i in range(32):
            c[i] = _encode_int(x[i] * inv)
    else:
        shift = 23 - f.mbits
        base = <uint32_t>(127 - f.bias) << f.mbits
        sign_shift = f.bits - 1
        for i in range(32):
            c[i] = _encode_fp(x[i] * inv, shift, base, f.sub_mul, f.sub_limit,
                              <uint32_t>f.max_code, sign_shift)
    if f.bits == 4:
        for j in range(16):
            out[1 + j] = <uint8_t>(c[j] | (c[j + 16] << 4))
    elif f.bits == 6:
        for j in range(8):
            w = c[4 * j] | (c[4 * j + 1] << 6) | (c[4 * j + 2] << 12) | (c[4 * j + 3] << 18)
            out[1 + 3 * j] = <uint8_t>(w & 0xFF)
            out[2 + 3 * j] = <uint8_t>((w >> 8) & 0xFF)
            out[3 + 3 * j] = <uint8_t>(w >> 16)
    else:
        for j in range(32):
            out[1 + j] = <uint8_t>c[j]


cdef inline float _u2f(uint32_t u) noexcept nogil:
    cdef float f
    memcpy(&f, &u, 4)
    return f


cdef void _dequantize_block(const Fmt* f, const uint8_t* b, float* y) noexcept nogil:
    cdef int j
    cdef uint32_t w
    cdef float s
    cdef float lut[16]
    if b[0] == 0xFF:
        for j in range(32):
            y[j] = NAN
        return
    # 2**(b - 127) built from its bits: exponent field b, or 2**-127 = 0x00400000 (subnormal)
    s = _u2f((<uint32_t>b[0]) << 23 if b[0] else 0x00400000u)
    if f.bits == 8:                             # 256 codes: scale after the lookup
        for j in range(32):
            y[j] = f.table[b[1 + j]] * s
        return
    if f.bits == 4:                             # 16 scaled values, then pure lookups
        for j in range(16):
            lut[j] = f.table[j] * s
        for j in range(16):
            y[j] = lut[b[1 + j] & 0xF]
        for j in range(16):
            y[j + 16] = lut[b[1 + j] >> 4]
        return
    for j in range(8):                          # 6-bit: 4 codes in 3 bytes
        w = b[1 + 3 * j] | (<uint32_t>b[2 + 3 * j] << 8) | (<uint32_t>b[3 + 3 * j] << 16)
        y[4 * j] = f.table[w & 0x3F] * s
        y[4 * j + 1] = f.table[(w >> 6) & 0x3F] * s
        y[4 * j + 2] = f.table[(w >> 12) & 0x3F] * s
        y[4 * j + 3] = f.table[w >> 18] * s


cdef Fmt _make_fmt(spec, table):
    cdef Fmt f
    cdef int i
    f.is_int = spec.kind == "int"
    f.bits = spec.bits
    f.mbits = spec.mbits
    f.bias = spec.bias
    f.emax = spec.emax
    f.max_code = spec.max_code
    f.block_bytes = spec.block_bytes
    f.sub_limit = ldexpf(1.0, 1 - spec.bias)
    f.sub_mul = ldexpf(1.0, spec.bias - 1 + spec.mbits)
    for i in range(256):
        f.table[i] = table[i] if i < len(table) else 0.0
    return f


def quantize_blocks(spec, table, const float[::1] x not None, uint8_t[::1] out not None):
    """x: (nblocks*32,) float32 -> out: (nblocks*block_bytes,) uint8."""
    cdef Fmt f = _make_fmt(spec, table)
    cdef Py_ssize_t nb = x.shape[0] // 32, i
    if x.shape[0] % 32 or out.shape[0] != nb * f.block_bytes:
        raise ValueError("quantize_blocks: bad buffer sizes")
    with nogil:
        for i in range(nb):
            _quantize_block(&f, &x[i * 32], &out[i * f.block_bytes])


def dequantize_blocks(spec, table, const uint8_t[::1] data not None, float[::1] out not None):
    """data: (nblocks*block_bytes,) uint8 -> out: (nblocks*32,) float32."""
    cdef Fmt f = _make_fmt(spec, table)
    cdef Py_ssize_t nb = data.shape[0] // f.block_bytes, i
    if data.shape[0] % f.block_bytes or out.shape[0] != nb * 32:
        raise ValueError("dequantize_blocks: bad buffer sizes")
    with nogil:
        for i in range(nb):
            _dequantize_block(&f, &data[i * f.block_bytes], &out[i * 32])
