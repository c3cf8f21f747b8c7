# cython: language_level=3
"""Cython fast path for ggml dequantization, W @ x and W @ X^T on quantized rows.

Every kernel is ``dq_<type>(src, dst, n_blocks)``: ``n_blocks`` whole blocks at ``src``
(uint8) -> ``n_blocks * block_elems`` float32 at ``dst``.  The float32 operation order is
ggml's / gguf-py's (see quants_ref.py, the reference these are tested against), so the
results are bit-identical; fused multiply-add is switched off below so that a build with
``-march=native`` keeps that property.  Little-endian hosts only (x86-64, aarch64).

dot_rows / matmul dequantize one row of W at a time into a scratch buffer (never the
whole matrix) and dot it with x (rf_dot: 16 float32 partial sums; rf_dot4: 4 tokens per
pass over the row, 8 each), summed in a fixed order at the end.  The small C helpers
(vector dots, the vectorized float16 conversion) sit in the verbatim block below.
"""
from libc.stdint cimport uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, int64_t
from libc.string cimport memcpy
from libc.stdlib cimport malloc, free

cdef extern from *:
    """
    #if defined(__clang__)
    #pragma clang fp contract(off)
    #elif defined(__GNUC__)
    #pragma GCC optimize("fp-contract=off")
    #endif
    #include <string.h>
    #include <stddef.h>

    /* Dot products on 4-wide float vectors (GCC/clang vector extensions: SSE2 on
       x86-64, NEON on aarch64).  rf_dot: 16 partial sums; rf_dot4: 4 dots sharing the
       loads of w, 8 partial sums each.  Fixed summation order (deterministic). */
    #include <stdint.h>
    typedef float * __restrict rf_float_out;
    typedef float rf_v4 __attribute__((vector_size(16)));
    static inline rf_v4 rf_ld(const float* p) { rf_v4 v; memcpy(&v, p, 16); return v; }
    static inline float rf_hsum(rf_v4 s) { return (s[0] + s[2]) + (s[1] + s[3]); }

    /* float16 -> float32 for n values, 4 at a time: exponent/mantissa moved to float
       position and rebiased (+112); subnormals rebuilt exactly as (2^-14 + m*2^-24) - 2^-14
       in float arithmetic on normal numbers; Inf/NaN get exponent 0xFF (payload kept). */
    typedef uint32_t rf_u4 __attribute__((vector_size(16)));
    typedef int32_t rf_i4 __attribute__((vector_size(16)));
    typedef uint16_t rf_h4 __attribute__((vector_size(8)));
    static inline rf_u4 rf_half4(rf_u4 u) {
        rf_u4 o = (u & 0x7FFF) << 13;
        rf_u4 e = o & 0x0F800000u;
        rf_u4 t = o + 0x38800000u, den, r;
        rf_v4 f;
        memcpy(&f, &t, 16);
        f = f - 6.103515625e-05f;
        memcpy(&den, &f, 16);
        rf_u4 m_special = (rf_u4)(e == 0x0F800000u), m_sub = (rf_u4)(e == 0);
        r = ((o | 0x7F800000u) & m_special) | (den & m_sub)
            | ((o + 0x38000000u) & ~(m_special | m_sub));
        return r | ((u & 0x8000u) << 16);
    }
    static void rf_f16_to_f32(const uint8_t* src, float* __restrict dst, ptrdiff_t n) {
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            rf_h4 h;
            memcpy(&h, src + 2 * i, 8);
            rf_u4 r = rf_half4(__builtin_convertvector(h, rf_u4));
            memcpy(dst + i, &r, 16);
        }
        for (; i < n; i++) {
            uint16_t h1;
            memcpy(&h1, src + 2 * i, 2);
            rf_u4 r = rf_half4((rf_u4){h1, 0, 0, 0});
            memcpy(dst + i, &r, 4);
        }
    }

    static float rf_dot(const float* a, const float* b, ptrdiff_t n) {
        rf_v4 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        ptrdiff_t i = 0;
        float t = 0.0f;
        for (; i + 16 <= n; i += 16) {
            s0 += rf_ld(a + i) * rf_ld(b + i);
            s1 += rf_ld(a + i + 4) * rf_ld(b + i + 4);
            s2 += rf_ld(a + i + 8) * rf_ld(b + i + 8);
            s3 += rf_ld(a + i + 12) * rf_ld(b + i + 12);
        }
        for (; i < n; i++) t += a[i] * b[i];
        return rf_hsum((s0 + s1) + (s2 + s3)) + t;
    }

    static void rf_dot4(const float* w, const float* x0, const float* x1, const float* x2,
                        const float* x3, ptrdiff_t n, float* o) {
        rf_v4 a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
        ptrdiff_t i = 0;
        float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
        for (; i + 8 <= n; i += 8) {
            rf_v4 w0 = rf_ld(w + i), w1 = rf_ld(w + i + 4);
            a0 += w0 * rf_ld(x0 + i); b0 += w1 * rf_ld(x0 + i + 4);
            a1 += w0 * rf_ld(x1 + i); b1 += w1 * rf_ld(x1 + i + 4);
            a2 += w0 * rf_ld(x2 + i); b2 += w1 * rf_ld(x2 + i + 4);
            a3 += w0 * rf_ld(x3 + i); b3 += w1 * rf_ld(x3 + i + 4);
        }
        for (; i < n; i++) {
            t0 += w[i] * x0[i]; t1 += w[i] * x1[i]; t2 += w[i] * x2[i]; t3 += w[i] * x3[i];
        }
        o[0] = rf_hsum(a0 + b0) + t0;
        o[1] = rf_hsum(a1 + b1) + t1;
        o[2] = rf_hsum(a2 + b2) + t2;
        o[3] = rf_hsum(a3 + b3) + t3;
    }
    """
    # the output pointer of every kernel: stores through it alias nothing else (so the
    # byte loads from the block may be vectorized past them)
    ctypedef float* float_out "rf_float_out"
    void f16_to_f32_n "rf_f16_to_f32"(const uint8_t* src, float* dst, Py_ssize_t n) noexcept nogil
    float dot "rf_dot"(const float* a, const float* b, Py_ssize_t n) noexcept nogil
    void dot4 "rf_dot4"(const float* w, const float* x0, const float* x1, const float* x2,
                        const float* x3, Py_ssize_t n, float* o) noexcept nogil

ctypedef void (*dq_fn)(const uint8_t* src, float_out dst, Py_ssize_t nb) noexcept nogil

# ---- scalar conversions -------------------------------------------------------------

cdef inline float bits_f32(uint32_t u) noexcept nogil:
    cdef float f
    memcpy(&f, &u, 4)
    return f

cdef inline uint16_t ld16(const uint8_t* p) noexcept nogil:
    return <uint16_t>(p[0] | (<uint16_t>p[1] << 8))

cdef inline uint32_t ld32(const uint8_t* p) noexcept nogil:
    cdef uint32_t u
    memcpy(&u, p, 4)
    return u

cdef inline float f16_to_f32(uint16_t h) noexcept nogil:
    """IEEE half -> float (scale fields), exact: normals, subnormals, +-0, +-inf, NaN
    (payload kept).  Same method as rf_half4: exponent/mantissa move to float position,
    the exponent is rebiased (+112); subnormals are rebuilt exactly as
    2^-14 * (1 + m/1024) - 2^-14 (no subnormal float arithmetic); Inf/NaN get 0xFF.
    """
    cdef uint32_t o = (<uint32_t>(h & 0x7FFF)) << 13
    cdef uint32_t e = o & 0x0F800000u
    cdef uint32_t normal = o + 0x38000000u
    cdef uint32_t special = o | 0x7F800000u
    cdef float den = bits_f32(o + 0x38800000u) - bits_f32(0x38800000u)
    cdef uint32_t den_u
    memcpy(&den_u, &den, 4)
    cdef uint32_t r = special if e == 0x0F800000u else (den_u if e == 0 else normal)
    return bits_f32(r | ((<uint32_t>(h & 0x8000)) << 16))

cdef inline float ldh(const uint8_t* p) noexcept nogil:
    return f16_to_f32(ld16(p))

cdef inline float e8m0_half(uint8_t e) noexcept nogil:
    """2**(e - 128) (ggml's e8m0_to_fp32_half); 0xFF is NaN (OCP MX)."""
    if e == 0xFF:
        return bits_f32(0x7FC00000u)
    if e < 2:
        return bits_f32(0x00200000u << e)
    return bits_f32((<uint32_t>e - 1) << 23)

# 4-bit code -> value tables, as float (exact small integers): IQ4_NL's non-linear grid and
# E2M1 doubled (ggml's kvalues_mxfp4; the E8M0 scale is halved to compensate)
cdef const float* KV_IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10,
                              1, 13, 25, 38, 53, 69, 89, 113]
cdef const float* KV_MXFP4 = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

# ---- plain element types --------------------------------------------------------------

cdef void dq_f32(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    memcpy(y, s, n * 4)

cdef void dq_f16(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    f16_to_f32_n(s, y, n)

cdef void dq_bf16(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint16_t h
    cdef uint32_t u
    for i in range(n):
        memcpy(&h, s + 2 * i, 2)
        u = (<uint32_t>h) << 16
        memcpy(&y[i], &u, 4)

cdef void dq_f64(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double v
    for i in range(n):
        memcpy(&v, s + 8 * i, 8)
        y[i] = <float>v

cdef void dq_i8(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = <float>(<const int8_t*>s)[i]

cdef void dq_i16(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int16_t v
    for i in range(n):
        memcpy(&v, s + 2 * i, 2)
        y[i] = <float>v

cdef void dq_i32(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int32_t v
    for i in range(n):
        memcpy(&v, s + 4 * i, 4)
        y[i] = <float>v

cdef void dq_i64(const uint8_t* s, float_out y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t v
    for i in range(n):
        memcpy(&v, s + 8 * i, 8)
        y[i] = <float>v

# ---- 32-element blocks ----------------------------------------------------------------

# Q5 high bits: element j takes bit j of the u32 qh; BIT32[j] = 1 << j (a table, so the
# test (qh & BIT32[j]) vectorizes: SSE2 has no per-lane variable shift)
cdef uint32_t BIT32[32]
cdef int _i
for _i in range(32):
    BIT32[_i] = (<uint32_t>1) << _i

cdef void dq_q4_0(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d
    for b in range(nb):
        d = ldh(s)
        for j in range(16):
            y[j] = d * <float>(<int>(s[2 + j] & 0x0F) - 8)
            y[j + 16] = d * <float>(<int>(s[2 + j] >> 4) - 8)
        s += 18
        y += 32

cdef void dq_q4_1(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d, m
    for b in range(nb):
        d = ldh(s)
        m = ldh(s + 2)
        for j in range(16):
            y[j] = d * <float>(s[4 + j] & 0x0F) + m
            y[j + 16] = d * <float>(s[4 + j] >> 4) + m
        s += 20
        y += 32

cdef void dq_q5_0(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d
    cdef uint32_t qh
    for b in range(nb):
        d = ldh(s)
        qh = ld32(s + 2)
        for j in range(16):
            y[j] = d * <float>(<int>((s[6 + j] & 0x0F) | ((qh & BIT32[j]) != 0) << 4) - 16)
            y[j + 16] = d * <float>(<int>((s[6 + j] >> 4) | ((qh & BIT32[j + 16]) != 0) << 4) - 16)
        s += 22
        y += 32

cdef void dq_q5_1(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d, m
    cdef uint32_t qh
    for b in range(nb):
        d = ldh(s)
        m = ldh(s + 2)
        qh = ld32(s + 4)
        for j in range(16):
            y[j] = d * <float>((s[8 + j] & 0x0F) | ((qh & BIT32[j]) != 0) << 4) + m
            y[j + 16] = d * <float>((s[8 + j] >> 4) | ((qh & BIT32[j + 16]) != 0) << 4) + m
        s += 24
        y += 32

cdef void dq_q8_0(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d
    cdef const int8_t* q
    for b in range(nb):
        d = ldh(s)
        q = <const int8_t*>(s + 2)
        for j in range(32):
            y[j] = <float>q[j] * d
        s += 34
        y += 32

cdef void dq_iq4_nl(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d
    for b in range(nb):
        d = ldh(s)
        for j in range(16):
            y[j] = d * KV_IQ4NL[s[2 + j] & 0x0F]
            y[j + 16] = d * KV_IQ4NL[s[2 + j] >> 4]
        s += 18
        y += 32

cdef void dq_mxfp4(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d
    for b in range(nb):
        d = e8m0_half(s[0])
        for j in range(16):
            y[j] = d * KV_MXFP4[s[1 + j] & 0x0F]
            y[j + 16] = d * KV_MXFP4[s[1 + j] >> 4]
        s += 17
        y += 32

# ---- 256-element k-quant super-blocks ----------------------------------------------------

cdef void dq_q2_k(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    # element 128h + 32k + l = bits 2k of qs[32h + l]; sub-block (16 elements) e // 16
    cdef Py_ssize_t b
    cdef int h, k, hh, l, isb
    cdef float d, dmin, dl, ml
    cdef const uint8_t* qs
    for b in range(nb):
        d = ldh(s + 80)
        dmin = ldh(s + 82)
        for h in range(2):
            qs = s + 16 + 32 * h
            for k in range(4):
                for hh in range(2):
                    isb = 8 * h + 2 * k + hh
                    dl = d * <float>(s[isb] & 0x0F)
                    ml = dmin * <float>(s[isb] >> 4)
                    for l in range(16):
                        y[16 * isb + l] = dl * <float>((qs[16 * hh + l] >> (2 * k)) & 3) - ml
        s += 84
        y += 256

cdef void dq_q3_k(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    # hmask[32] @0, qs[64] @32, scales[12] @96, d @108; element e = 128h + 32k + l:
    # low 2 bits (qs[32h + l] >> 2k) & 3, minus 4 unless bit e//32 of hmask[l] is set
    cdef Py_ssize_t b
    cdef int h, k, l, i, lo, hi, e
    cdef float d, dl
    cdef float dsc[16]
    cdef const uint8_t* sc
    for b in range(nb):
        d = ldh(s + 108)
        sc = s + 96
        for i in range(16):
            lo = (sc[i] & 0x0F) if i < 8 else (sc[i - 8] >> 4)
            hi = (sc[8 + (i & 3)] >> (2 * (i >> 2))) & 3
            dsc[i] = d * <float>((lo | (hi << 4)) - 32)
        for h in range(2):
            for k in range(4):
                e = 128 * h + 32 * k
                for i in range(2):      # 16 outputs share one scale
                    dl = dsc[(e >> 4) + i]
                    for l in range(16 * i, 16 * i + 16):
                        y[e + l] = dl * <float>(
                            <int>((s[32 + 32 * h + l] >> (2 * k)) & 3)
                            - (((~s[l] >> (4 * h + k)) & 1) << 2))
        s += 110
        y += 256

cdef inline void k_scale_min(const uint8_t* q, int j, int* sc, int* m) noexcept nogil:
    """ggml's get_scale_min_k4: 6-bit scale and min of sub-block j from 12 packed bytes."""
    if j < 4:
        sc[0] = q[j] & 63
        m[0] = q[j + 4] & 63
    else:
        sc[0] = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4)
        m[0] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)

cdef void dq_q4_k(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int c, l, sc, mn
    cdef float d, dmin, d1, m1, d2, m2
    cdef const uint8_t* q
    for b in range(nb):
        d = ldh(s)
        dmin = ldh(s + 2)
        for c in range(4):
            k_scale_min(s + 4, 2 * c, &sc, &mn)
            d1 = d * <float>sc
            m1 = dmin * <float>mn
            k_scale_min(s + 4, 2 * c + 1, &sc, &mn)
            d2 = d * <float>sc
            m2 = dmin * <float>mn
            q = s + 16 + 32 * c
            for l in range(32):
                y[64 * c + l] = d1 * <float>(q[l] & 0x0F) - m1
            for l in range(32):
                y[64 * c + 32 + l] = d2 * <float>(q[l] >> 4) - m2
        s += 144
        y += 256

cdef void dq_q5_k(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int c, l, sc, mn
    cdef float d, dmin, d1, m1, d2, m2
    cdef const uint8_t* q
    cdef const uint8_t* qh
    for b in range(nb):
        d = ldh(s)
        dmin = ldh(s + 2)
        qh = s + 16
        for c in range(4):
            k_scale_min(s + 4, 2 * c, &sc, &mn)
            d1 = d * <float>sc
            m1 = dmin * <float>mn
            k_scale_min(s + 4, 2 * c + 1, &sc, &mn)
            d2 = d * <float>sc
            m2 = dmin * <float>mn
            q = s + 48 + 32 * c
            for l in range(32):
                y[64 * c + l] = d1 * <float>((q[l] & 0x0F) | (((qh[l] >> (2 * c)) & 1) << 4)) - m1
            for l in range(32):
                y[64 * c + 32 + l] = d2 * <float>(
                    (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2
        s += 176
        y += 256

cdef void dq_q6_k(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    # ql[128] @0, qh[64] @128, scales:i8[16] @192, d @208; for half h and l < 32:
    # element 128h + l + 32k takes nibble (k >> 1) of ql[64h + l + 32(k & 1)] and
    # bits 2k of qh[32h + l]; minus 32
    cdef Py_ssize_t b
    cdef int h, l, i
    cdef float d, d0, d1, d2, d3
    cdef float dsc[16]
    cdef const uint8_t* ql
    cdef const uint8_t* qh
    cdef const int8_t* sc
    for b in range(nb):
        d = ldh(s + 208)
        sc = <const int8_t*>(s + 192)
        for i in range(16):
            dsc[i] = d * <float>sc[i]
        for h in range(2):
            ql = s + 64 * h
            qh = s + 128 + 32 * h
            for i in range(2):          # l in [16i, 16i + 16): one scale per 16 outputs
                d0 = dsc[8 * h + i]
                d1 = dsc[8 * h + 2 + i]
                d2 = dsc[8 * h + 4 + i]
                d3 = dsc[8 * h + 6 + i]
                for l in range(16 * i, 16 * i + 16):
                    y[128 * h + l] = d0 * <float>(
                        <int>((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32)
                for l in range(16 * i, 16 * i + 16):
                    y[128 * h + l + 32] = d1 * <float>(
                        <int>((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32)
                for l in range(16 * i, 16 * i + 16):
                    y[128 * h + l + 64] = d2 * <float>(
                        <int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32)
                for l in range(16 * i, 16 * i + 16):
                    y[128 * h + l + 96] = d3 * <float>(
                        <int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32)
        s += 210
        y += 256

cdef void dq_q8_k(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t b
    cdef int j
    cdef float d
    cdef const int8_t* q
    for b in range(nb):
        memcpy(&d, s, 4)
        q = <const int8_t*>(s + 4)
        for j in range(256):
            y[j] = d * <float>q[j]
        s += 292
        y += 256

cdef void dq_iq4_xs(const uint8_t* s, float_out y, Py_ssize_t nb) noexcept nogil:
    # d @0, scales_h:u16 @2, scales_l[4] @4, qs[128] @8; sub-block i of 32 elements
    cdef Py_ssize_t b
    cdef int i, l, ls
    cdef uint16_t sh
    cdef float d, dl
    cdef const uint8_t* q
    for b in range(nb):
        d = ldh(s)
        sh = ld16(s + 2)
        for i in range(8):
            ls = ((s[4 + (i >> 1)] >> (4 * (i & 1))) & 0x0F) | (((sh >> (2 * i)) & 3) << 4)
            dl = d * <float>(ls - 32)
            q = s + 8 + 16 * i
            for l in range(16):
                y[32 * i + l] = dl * KV_IQ4NL[q[l] & 0x0F]
                y[32 * i + 16 + l] = dl * KV_IQ4NL[q[l] >> 4]
        s += 136
        y += 256

# ---- dispatch -----------------------------------------------------------------------------

# ggml type id -> (kernel, elements per block, bytes per block).  The sizes restate the
# layouts the kernels above are written for; quants.py checks them against TYPE_SIZES.
cdef dq_fn kernel_for(int t, int* elems, int* nbytes) noexcept nogil:
    if t == 0:
        elems[0] = 1; nbytes[0] = 4; return dq_f32
    if t == 1:
        elems[0] = 1; nbytes[0] = 2; return dq_f16
    if t == 30:
        elems[0] = 1; nbytes[0] = 2; return dq_bf16
    if t == 28:
        elems[0] = 1; nbytes[0] = 8; return dq_f64
    if t == 24:
        elems[0] = 1; nbytes[0] = 1; return dq_i8
    if t == 25:
        elems[0] = 1; nbytes[0] = 2; return dq_i16
    if t == 26:
        elems[0] = 1; nbytes[0] = 4; return dq_i32
    if t == 27:
        elems[0] = 1; nbytes[0] = 8; return dq_i64
    if t == 2:
        elems[0] = 32; nbytes[0] = 18; return dq_q4_0
    if t == 3:
        elems[0] = 32; nbytes[0] = 20; return dq_q4_1
    if t == 6:
        elems[0] = 32; nbytes[0] = 22; return dq_q5_0
    if t == 7:
        elems[0] = 32; nbytes[0] = 24; return dq_q5_1
    if t == 8:
        elems[0] = 32; nbytes[0] = 34; return dq_q8_0
    if t == 10:
        elems[0] = 256; nbytes[0] = 84; return dq_q2_k
    if t == 11:
        elems[0] = 256; nbytes[0] = 110; return dq_q3_k
    if t == 12:
        elems[0] = 256; nbytes[0] = 144; return dq_q4_k
    if t == 13:
        elems[0] = 256; nbytes[0] = 176; return dq_q5_k
    if t == 14:
        elems[0] = 256; nbytes[0] = 210; return dq_q6_k
    if t == 15:
        elems[0] = 256; nbytes[0] = 292; return dq_q8_k
    if t == 20:
        elems[0] = 32; nbytes[0] = 18; return dq_iq4_nl
    if t == 23:
        elems[0] = 256; nbytes[0] = 136; return dq_iq4_xs
    if t == 39:
        elems[0] = 32; nbytes[0] = 17; return dq_mxfp4
    return NULL


def block_layout(int ttype):
    """(elements, bytes) per block that the Cython kernel for ``ttype`` is written for, or None."""
    cdef int elems = 0, nbytes = 0
    if kernel_for(ttype, &elems, &nbytes) == NULL:
        return None
    return elems, nbytes


cdef dq_fn _checked(int ttype, Py_ssize_t nbytes_raw, Py_ssize_t n_rows, Py_ssize_t row_elems,
                    int* elems, int* bb) except NULL:
    cdef dq_fn fn = kernel_for(ttype, elems, bb)
    if fn == NULL:
        raise NotImplementedError(f"no Cython kernel for ggml type {ttype}")
    if n_rows < 0 or row_elems <= 0 or row_elems % elems[0]:
        raise ValueError(f"type {ttype}: {n_rows} rows of {row_elems} elements: row length "
                         f"is not a positive multiple of the block size {elems[0]}")
    # compare in block counts first, so that no product below can overflow
    cdef Py_ssize_t nb_row = row_elems // elems[0]
    cdef Py_ssize_t avail = nbytes_raw // bb[0]
    if n_rows == 0 or nb_row > avail or avail // nb_row < n_rows or \
            nbytes_raw != n_rows * nb_row * bb[0]:
        if n_rows == 0 and nbytes_raw == 0:
            return fn
        raise ValueError(f"type {ttype}: {nbytes_raw} bytes given, but {n_rows} rows of "
                         f"{row_elems} elements take {n_rows} x {nb_row} blocks of {bb[0]} bytes")
    return fn


def dequantize_into(const uint8_t[::1] raw, int ttype, float[::1] out):
    """raw: whole blocks of ``ttype`` (uint8) -> out: float32 (n_elements,), filled in place."""
    cdef int elems = 0, bb = 0
    cdef dq_fn fn
    if out.shape[0] == 0:
        if kernel_for(ttype, &elems, &bb) == NULL:
            raise NotImplementedError(f"no Cython kernel for ggml type {ttype}")
        if raw.shape[0]:
            raise ValueError(f"type {ttype}: {raw.shape[0]} bytes given for 0 elements")
        return
    fn = _checked(ttype, raw.shape[0], 1, out.shape[0], &elems, &bb)
    with nogil:
        fn(&raw[0], &out[0], out.shape[0] // elems)


def dot_rows(const uint8_t[::1] raw, int ttype, Py_ssize_t n_rows, Py_ssize_t row_elems,
             const float[::1] x, float[::1] out):
    """out[r] = W[r] . x for the (n_rows, row_elems) matrix W stored as ``ttype`` in raw.

    Each row is dequantized into a scratch buffer of row_elems float32 and dotted with x.
    """
    cdef int elems = 0, bb = 0
    cdef dq_fn fn = _checked(ttype, raw.shape[0], n_rows, row_elems, &elems, &bb)
    if x.shape[0] != row_elems or out.shape[0] != n_rows:
        raise ValueError(f"dot_rows: x has {x.shape[0]} elements (expected {row_elems}), "
                         f"out has {out.shape[0]} (expected {n_rows})")
    if n_rows == 0:
        return
    cdef Py_ssize_t row_bytes = row_elems // elems * bb, r
    cdef Py_ssize_t nb = row_elems // elems
    cdef float* buf = <float*>malloc(row_elems * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    with nogil:
        for r in range(n_rows):
            fn(&raw[r * row_bytes], buf, nb)
            out[r] = dot(buf, &x[0], row_elems)
    free(buf)


def matmul(const uint8_t[::1] raw, int ttype, Py_ssize_t n_rows, Py_ssize_t row_elems,
           const float[:, ::1] X, float[:, ::1] out):
    """out[t, r] = W[r] . X[t]: W (n_rows, row_elems) as ``ttype``; X (n_tok, row_elems).

    Each weight row is dequantized once and applied to every token.
    """
    cdef int elems = 0, bb = 0
    cdef dq_fn fn = _checked(ttype, raw.shape[0], n_rows, row_elems, &elems, &bb)
    cdef Py_ssize_t n_tok = X.shape[0]
    if X.shape[1] != row_elems or out.shape[0] != n_tok or out.shape[1] != n_rows:
        raise ValueError(f"matmul: X is ({X.shape[0]}, {X.shape[1]}), out is ({out.shape[0]}, "
                         f"{out.shape[1]}); expected (n_tok, {row_elems}) and (n_tok, {n_rows})")
    if n_rows == 0 or n_tok == 0:
        return
    cdef Py_ssize_t row_bytes = row_elems // elems * bb, r, t
    cdef Py_ssize_t nb = row_elems // elems
    cdef float* buf = <float*>malloc(row_elems * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    cdef float o4[4]
    with nogil:
        for r in range(n_rows):
            fn(&raw[r * row_bytes], buf, nb)
            t = 0
            while t + 4 <= n_tok:
                dot4(buf, &X[t, 0], &X[t + 1, 0], &X[t + 2, 0], &X[t + 3, 0], row_elems, o4)
                out[t, r] = o4[0]
                out[t + 1, r] = o4[1]
                out[t + 2, r] = o4[2]
                out[t + 3, r] = o4[3]
                t += 4
            while t < n_tok:
                out[t, r] = dot(buf, &X[t, 0], row_elems)
                t += 1
    free(buf)
