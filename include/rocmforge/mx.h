// rocmforge/mx.h: OCP MX v1.0 block layouts and device-side element codecs.
//
// The byte layouts are those of rocmforge/mx/formats.py (and DESIGN.md "Layouts"):
//   byte 0      E8M0 shared scale X = 2**(byte - 127); 0xFF = NaN (the whole block is NaN)
//   bytes 1..   32 element codes:
//     4 bits  byte j = element j (low nibble) | element j+16 (high nibble)  (ggml block_mxfp4)
//     6 bits  4 codes in 3 bytes, little-endian: w = c0 | c1<<6 | c2<<12 | c3<<18
//     8 bits  one code per byte
// Quantization (bit-identical to rocmforge.mx.quantize):
//   e = clamp(floor(log2(amax)) - emax_elem, -127, 127), scale byte = e + 127;
//   code = encode(x * 2**-e): round to nearest, ties to even, saturating to +-max;
//   a block holding NaN or Inf stores scale 0xFF and zero codes; a block of zeros (+0 or
//   -0) stores scale byte 0 and zero codes.
// Dequantization: decode(code) * X in float32, -0 codes giving +0.0 (like ggml).
#ifndef ROCMFORGE_MX_H
#define ROCMFORGE_MX_H

#include "compat.h"

#define RF_MX_BLOCK 32  // elements per MX block

// ---------------------------------------------------------------- block structs
struct rf_block_mxfp4 {  // == ggml block_mxfp4, GGUF type 39
  rf_u8 e;               // E8M0 scale
  rf_u8 qs[16];          // (16,) nibbles: element j low, element j+16 high
};
struct rf_block_mxfp6 {  // MXFP6_E2M3 and MXFP6_E3M2
  rf_u8 e;
  rf_u8 qs[24];          // (24,) = 8 groups of 3 bytes, 4 codes each, little-endian
};
struct rf_block_mxfp8 {  // MXFP8_E4M3, MXFP8_E5M2, MXINT8
  rf_u8 e;
  rf_u8 qs[32];          // (32,) one code per element
};
static_assert(sizeof(rf_block_mxfp4) == 17, "block_mxfp4 is 17 bytes");
static_assert(sizeof(rf_block_mxfp6) == 25, "block_mxfp6 is 25 bytes");
static_assert(sizeof(rf_block_mxfp8) == 33, "block_mxfp8 is 33 bytes");

// ---------------------------------------------------------------- format table
// Mirrors rocmforge/mx/formats.py (FormatSpec).  special: 0 = every code finite (FP4, FP6,
// INT8); 1 = E4M3FN (S.1111.111 is NaN); 2 = IEEE-like E5M2 (exponent 31: Inf / NaN).
#define RF_MX_FORMAT(NAME, BITS, EBITS, MBITS, BIAS, EMAX, MAXCODE, MAXV, ISINT, SPECIAL) \
  struct NAME {                                                                           \
    static constexpr int bits = BITS, ebits = EBITS, mbits = MBITS, bias = BIAS;          \
    static constexpr int emax = EMAX, special = SPECIAL;                                  \
    static constexpr rf_u32 max_code = MAXCODE;                                           \
    static constexpr float max = MAXV;                                                    \
    static constexpr bool is_int = ISINT;                                                 \
    static constexpr int block_bytes = 1 + RF_MX_BLOCK * BITS / 8;                        \
  };
RF_MX_FORMAT(rf_fmt_mxfp4, 4, 2, 1, 1, 2, 0x7u, 6.0f, false, 0)
RF_MX_FORMAT(rf_fmt_mxfp6_e2m3, 6, 2, 3, 1, 2, 0x1Fu, 7.5f, false, 0)
RF_MX_FORMAT(rf_fmt_mxfp6_e3m2, 6, 3, 2, 3, 4, 0x1Fu, 28.0f, false, 0)
RF_MX_FORMAT(rf_fmt_mxfp8_e4m3, 8, 4, 3, 7, 8, 0x7Eu, 448.0f, false, 1)
RF_MX_FORMAT(rf_fmt_mxfp8_e5m2, 8, 5, 2, 15, 15, 0x7Bu, 57344.0f, false, 2)
RF_MX_FORMAT(rf_fmt_mxint8, 8, 0, 6, 0, 0, 0x7Fu, 127.0f / 64.0f, true, 0)
#undef RF_MX_FORMAT

// ---------------------------------------------------------------- E8M0 scale
// Scale byte -> float: 2**(s-127); s == 0 gives the subnormal 2**-127; 0xFF is NaN.
RF_DEVICE float rf_e8m0_to_float(rf_u32 s) {
  return s == 0xFFu ? rf_uint_as_float(0x7fc00000u) : rf_exp2i((rf_i32)s - 127);
}
// Shared exponent of a block from |amax| as float bits (finite): floor(log2(amax)) - emax,
// clamped to [-127, 127].  A zero or subnormal amax lands on the clamp (-127).
template <class F>
RF_DEVICE rf_i32 rf_mx_shared_exp(rf_u32 amax_bits) {
  rf_i32 e = (rf_i32)(amax_bits >> 23) - 127 - F::emax;  // biased 0 (zero/subnormal) -> clamp
  return rf_min_i32(rf_max_i32(e, -127), 127);
}

// ---------------------------------------------------------------- element codecs
// Bit-level codecs: integer and plain float ops only (no int<->float conversion or rint
// instructions, which run at a quarter of the FP32 rate on NVIDIA), all exact.

// FP code -> exact float value, no scale.  The code's exponent|mantissa bits are placed
// at the top of a float32's exponent|mantissa (a float32 subnormal for e == 0), and one
// exact multiply by 2**(127 - bias) rebiases it; subnormals need denormals kept.
// E4M3: S.1111.111 is NaN; E5M2: exponent 31 is Inf (m == 0) or NaN.
template <class F>
RF_DEVICE float rf_mx_decode_fp(rf_u32 code) {
  const rf_u32 mag = code & ((1u << (F::bits - 1)) - 1u);
  const rf_u32 sign = ((code >> (F::bits - 1)) & 1u) << 31;
  float v = rf_uint_as_float((mag << (23 - F::mbits)) | sign) *
            rf_uint_as_float((rf_u32)(254 - F::bias) << 23);
  if (F::special == 1 && mag == 0x7fu) v = rf_uint_as_float(0x7fc00000u);
  if (F::special == 2 && mag >= 0x7cu) v = rf_uint_as_float(sign | (mag == 0x7cu ? 0x7f800000u : 0x7fc00000u));
  return v;
}
// INT8 code -> its integer value as a float (exact; the 2**-6 goes into the block scale).
RF_DEVICE float rf_mx_decode_int8(rf_u32 code) {
  return rf_uint_as_float(0x4b000000u | ((code ^ 0x80u) & 0xffu)) - 8388736.0f;  // 2**23 + 128
}
// E5M2 codes are the top byte of a float16: exact, Inf and NaN included.
RF_DEVICE float rf_mx_decode_e5m2(rf_u32 code) { return rf_half_bits_to_float((rf_u16)(code << 8)); }

// Code -> exact float value (no scale).
template <class F>
RF_DEVICE float rf_mx_decode(rf_u32 code) {
  return F::is_int ? rf_mx_decode_int8(code) * (1.0f / 64.0f) : rf_mx_decode_fp<F>(code);
}

// Finite float (already divided by the block scale) -> code: round to nearest, ties to
// even, saturating to +-max.  FP codes keep the sign of zero (-0.0 and tiny negatives give
// the sign bit with a zero magnitude), like rocmforge.mx.reference.encode.
template <class F>
RF_DEVICE rf_u32 rf_mx_encode(float y) {
  if (F::is_int) {
    // y * 64 + 1.5 * 2**23 rounds to an integer (RNE) in the low mantissa bits (|y| < 2).
    const float t = y * 64.0f + 12582912.0f;
    rf_i32 q = (rf_i32)(rf_float_as_uint(t) - 0x4b400000u);
    q = rf_min_i32(rf_max_i32(q, -127), 127);
    return (rf_u32)q & 0xffu;
  }
  const float a = rf_fminf(rf_fabsf(y), F::max);  // saturate (a is finite)
  const rf_u32 ua = rf_float_as_uint(a);
  rf_u32 mag;
  if (a < rf_uint_as_float((rf_u32)(128 - F::bias) << 23)) {
    // below the smallest normal 2**(1-bias): adding M = 2**(24 - bias - mbits), whose ulp
    // is the subnormal step 2**(1 - bias - mbits), rounds (RNE) to a multiple of that step;
    // the code is that multiple.
    const rf_u32 mbits_of_M = (rf_u32)(151 - F::bias - F::mbits) << 23;  // 2**(24-bias-mbits)
    mag = rf_float_as_uint(a + rf_uint_as_float(mbits_of_M)) - mbits_of_M;
  } else {
    // normal: round the float32 mantissa to mbits bits (RNE, carrying into the exponent),
    // then rebias the exponent from 127 to bias.
    constexpr int SH = 23 - F::mbits;
    const rf_u32 r = (ua + ((1u << (SH - 1)) - 1u) + ((ua >> SH) & 1u)) >> SH;
    mag = r - ((rf_u32)(127 - F::bias) << F::mbits);
  }
  return mag | ((rf_float_as_uint(y) >> 31) << (F::bits - 1));
}

// codes[k] = encode(v[k] * inv) for an even E, one code per element (used by other
// kernels, e.g. kernels/kv_cache.hip).  On sm_89+ the FP8 formats use the hardware
// conversion and FP6 goes through it (see rf_mx_encode_words below for why it is exact).
template <class F, int E>
RF_DEVICE void rf_mx_encode_n(const float (&v)[E], float inv, rf_u32 (&codes)[E]) {
#if defined(RF_HAVE_FP8_CVT)
  if (!F::is_int && F::bits >= 6) {
    constexpr bool e4 = F::ebits == 4 || F::ebits == 2;               // -> E4M3, else E5M2
    const float sh = F::bits == 6 ? rf_uint_as_float((rf_u32)(127 + F::bias - (e4 ? 7 : 15)) << 23) : 1.0f;
    const float k = inv * sh, m = F::max * sh;
#pragma unroll
    for (int i = 0; i < E; i += 2) {
      float a = v[i] * k, b = v[i + 1] * k;
      if (F::bits == 6) {
        a = rf_fminf(rf_fmaxf(a, -m), m);
        b = rf_fminf(rf_fmaxf(b, -m), m);
      }
      rf_u32 w = e4 ? rf_cvt_e4m3x2_satfinite(a, b) : rf_cvt_e5m2x2_satfinite(a, b);
      if (F::bits == 6) w = (w & 0x1f1fu) | ((w & 0x8080u) >> 2);      // sign: bit 7 -> bit 5
      codes[i] = w & 0xffu;
      codes[i + 1] = w >> 8;
    }
  } else
#endif
  {
#pragma unroll
    for (int i = 0; i < E; ++i) codes[i] = rf_mx_encode<F>(v[i] * inv);
  }
}

// MXFP4 codes of a pair y = (lo, hi), given as float16 bits packed in a u32, in packed
// float16 arithmetic: the two codes come back in the low nibble of each 16-bit lane.
// Exact when y came from float16/bfloat16 input times a power of two: then each y has at
// most 11 significant bits, so it is a float16 unless |y| < 2**-14, where the code is 0
// (sign kept) whichever way float16 rounds it.  Round to nearest even at the E2M1 step
// of y's binade q = 2**(E' - 1), E' = max(floor(log2 |y|), 0), by adding M = 2**(E' + 9)
// (whose float16 ulp is q): m = rint(|y| / q) = bits(|y| + M) - bits(M); the code is
// m + 2 * E', sign in bit 3.  e = 2**E' has only exponent bits, so e >> 9 = 2 * E' + 30
// per lane, and every lane of the result is >= 0: plain 32-bit adds are exact.
RF_DEVICE rf_u32 rf_mx_encode_fp4_h2(rf_u32 y) {
  const rf_u32 a = rf_h2_min(y & 0x7fff7fffu, 0x46004600u);       // min(|y|, 6.0)
  const rf_u32 e = rf_h2_max(a & 0x7c007c00u, 0x3c003c00u);       // 2**E'
  const rf_u32 mb = e + 0x24002400u;                              // M = 2**(E' + 9)
  const rf_u32 t = rf_h2_add(a, mb);
  return t - mb + (e >> 9) - 0x001e001eu + ((y & 0x80008000u) >> 12);
}

// Encode the E (a multiple of 4) values v[k] * inv into packed words.  8- and 4-bit
// formats: byte j of word i is the code of element 4i + j; 6-bit formats: word i is the
// little-endian 24-bit group c0 | c1 << 6 | c2 << 12 | c3 << 18 of elements 4i .. 4i+3.
// `sat`: some |v * inv| exceeds the format's max (FP6 through FP8 then clamps first).
// IN16: the values came from float16/bfloat16 (MXFP4 may then round in packed float16).
// On sm_89+ the FP8 formats use the hardware conversion (RNE, satfinite), and FP6 goes
// through it too: E2M3 is E4M3 and E3M2 is E5M2 on values scaled by 2**(bias - bias8)
// (same mantissa width, subnormal steps that line up) after clamping to the FP6 max; the
// magnitude then fits 5 bits and the sign moves from bit 7 to bit 5.
template <class F, int E, bool IN16>
RF_DEVICE void rf_mx_encode_words(const float (&v)[E], float inv, bool sat, rf_u32 (&w)[E / 4]) {
#if defined(RF_HAVE_FP8_CVT)
  if (!F::is_int && F::bits >= 6) {
    constexpr bool e4 = F::ebits == 4 || F::ebits == 2;               // -> E4M3, else E5M2
    const float sh = F::bits == 6 ? rf_uint_as_float((rf_u32)(127 + F::bias - (e4 ? 7 : 15)) << 23) : 1.0f;
    const float k = inv * sh, m = F::max * sh;
#pragma unroll
    for (int i = 0; i < E / 4; ++i) {
      rf_u32 p[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        float a = v[4 * i + 2 * j] * k, b = v[4 * i + 2 * j + 1] * k;
        if (F::bits == 6 && sat) {
          a = rf_fminf(rf_fmaxf(a, -m), m);
          b = rf_fminf(rf_fmaxf(b, -m), m);
        }
        p[j] = e4 ? rf_cvt_e4m3x2_satfinite(a, b) : rf_cvt_e5m2x2_satfinite(a, b);
      }
      const rf_u32 P = p[0] | (p[1] << 16);  // bytes: codes of elements 4i .. 4i+3
      if (F::bits == 8) {
        w[i] = P;
      } else {
        // each byte is s00mmmmm: per 16-bit lane, c_even | c_odd << 6 with the signs moved
        // from bits 7 / 15 to bits 5 / 11; then the two 12-bit lanes -> one 24-bit group.
        const rf_u32 pk = (P & 0x001f001fu) | ((P >> 2) & 0x07e007e0u) | ((P >> 4) & 0x08000800u);
        w[i] = (pk & 0xfffu) | ((pk >> 4) & 0xfff000u);
      }
    }
  } else
#endif
  if (F::bits == 4 && IN16) {
#pragma unroll
    for (int i = 0; i < E / 4; ++i) {
      const rf_u32 c0 = rf_mx_encode_fp4_h2(rf_pack_half2_rn(v[4 * i] * inv, v[4 * i + 1] * inv));
      const rf_u32 c1 = rf_mx_encode_fp4_h2(rf_pack_half2_rn(v[4 * i + 2] * inv, v[4 * i + 3] * inv));
      w[i] = rf_pack_lo_bytes(c0, c1);
    }
  } else {
#pragma unroll
    for (int i = 0; i < E / 4; ++i) {
      rf_u32 c[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) c[j] = rf_mx_encode<F>(v[4 * i + j] * inv);
      w[i] = F::bits == 6 ? (c[0] | (c[1] << 6) | (c[2] << 12) | (c[3] << 18))
                          : (c[0] | (c[1] << 8) | (c[2] << 16) | (c[3] << 24));
    }
  }
}

#endif  // ROCMFORGE_MX_H
