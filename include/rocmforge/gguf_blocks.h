// rocmforge/gguf_blocks.h: in-register dequantization of GGUF weight rows, 8 elements
// at a time, for the matrix products (kernels/linear.hip) and the embedding gather.
//
// Every type T has QK (elements per block), BYTES (bytes per block) and
//   T::dq8(const rf_u8* block, int first, float (&v)[8])   // v = elements [first, first+8)
// with first % 8 == 0.  Values are those of rocmforge.gguf.quants.dequantize (float32,
// ggml's formulas; MX types: decode(code) * 2**(scale-127)).  Blocks sit at byte offsets
// that are not multiples of their alignment, so multi-byte fields are read byte by byte;
// F32 / F16 rows are read as words (their rows are 4- / 2-byte aligned).
// Layouts (ggml-common.h; rocmforge/mx/formats.py for the MX types):
//   Q8_0  34 B: f16 d, i8 qs[32]                           d * q
//   Q4_0  18 B: f16 d, u8 qs[16] (j low, j+16 high)         d * (q - 8)
//   Q5_0  22 B: f16 d, u8 qh[4], u8 qs[16]                  d * (q - 16), bit 4 from qh
//   Q4_K 144 B: f16 d, f16 dmin, u8 scales[12], u8 qs[128]  d*sc*q - dmin*m (8 x 32)
//   Q6_K 210 B: u8 ql[128], u8 qh[64], i8 scales[16], f16 d  d*sc*(q - 32) (16 x 16)
//   MXFP4 (ggml, 17 B) and rocmforge MX (byte 0 = E8M0 scale, then packed codes).
#ifndef ROCMFORGE_GGUF_BLOCKS_H
#define ROCMFORGE_GGUF_BLOCKS_H

#include "mx.h"

RF_DEVICE float rf_gb_f16(const rf_u8* p) {
  return rf_half_bits_to_float((rf_u16)(p[0] | (p[1] << 8)));
}

struct rf_gb_f32 {
  static constexpr int QK = 1, BYTES = 4;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float* p = (const float*)b + first;
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = p[k];
  }
};
struct rf_gb_f16t {
  static constexpr int QK = 1, BYTES = 2;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const rf_u16* p = (const rf_u16*)b + first;
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = rf_half_bits_to_float(p[k]);
  }
};
struct rf_gb_q8_0 {
  static constexpr int QK = 32, BYTES = 34;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_gb_f16(b);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = (float)(rf_i8)b[2 + first + k] * d;
  }
};
struct rf_gb_q4_0 {
  static constexpr int QK = 32, BYTES = 18;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_gb_f16(b);
    const int shift = first < 16 ? 0 : 4;
    const rf_u8* q = b + 2 + (first & 15);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = d * (float)((rf_i32)((q[k] >> shift) & 15u) - 8);
  }
};
struct rf_gb_q5_0 {
  static constexpr int QK = 32, BYTES = 22;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_gb_f16(b);
    const rf_u32 qh = (rf_u32)b[2] | ((rf_u32)b[3] << 8) | ((rf_u32)b[4] << 16) | ((rf_u32)b[5] << 24);
    const int shift = first < 16 ? 0 : 4;
    const rf_u8* q = b + 6 + (first & 15);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const rf_i32 x = (rf_i32)(((q[k] >> shift) & 15u) | (((qh >> (first + k)) & 1u) << 4));
      v[k] = d * (float)(x - 16);
    }
  }
};
struct rf_gb_q4_k {
  static constexpr int QK = 256, BYTES = 144;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_gb_f16(b), dmin = rf_gb_f16(b + 2);
    const rf_u8* s = b + 4;
    const int j = first / 32;  // sub-block of 32
    rf_u32 sc, m;
    if (j < 4) {
      sc = s[j] & 63u;
      m = s[j + 4] & 63u;
    } else {
      sc = (s[j + 4] & 15u) | ((s[j - 4] >> 6) << 4);
      m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    const float ds = d * (float)sc, dm = dmin * (float)m;
    const rf_u8* q = b + 16 + (j / 2) * 32 + (first & 31);
    const int shift = (j & 1) * 4;
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = ds * (float)((q[k] >> shift) & 15u) - dm;
  }
};
struct rf_gb_q6_k {
  static constexpr int QK = 256, BYTES = 210;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_gb_f16(b + 208);
    const float ds = d * (float)(rf_i8)b[192 + first / 16];
    const int h = first / 128, r = first % 128;
    const rf_u8* ql = b + h * 64 + (r & 63);
    const rf_u8* qh = b + 128 + h * 32 + (r & 31);
    const int sl = (r / 64) * 4, sh = (r / 32) * 2;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const rf_i32 q = (rf_i32)(((ql[k] >> sl) & 15u) | (((qh[k] >> sh) & 3u) << 4)) - 32;
      v[k] = ds * (float)q;
    }
  }
};
// rocmforge MX blocks (and ggml MXFP4, the same bytes and values): byte 0 = E8M0 scale.
template <class F>
struct rf_gb_mx {
  static constexpr int QK = 32, BYTES = F::block_bytes;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float s = F::is_int ? rf_e8m0_to_float(b[0]) * (1.0f / 64.0f) : rf_e8m0_to_float(b[0]);
    const rf_u8* q = b + 1;
    rf_u32 c[8];
    if (F::bits == 8) {
#pragma unroll
      for (int k = 0; k < 8; ++k) c[k] = q[first + k];
    } else if (F::bits == 6) {
#pragma unroll
      for (int g = 0; g < 2; ++g) {
        const rf_u8* p = q + (first / 4 + g) * 3;
        const rf_u32 w = (rf_u32)p[0] | ((rf_u32)p[1] << 8) | ((rf_u32)p[2] << 16);
#pragma unroll
        for (int j = 0; j < 4; ++j) c[4 * g + j] = (w >> (6 * j)) & 63u;
      }
    } else {
      const int shift = first < 16 ? 0 : 4;
      const rf_u8* p = q + (first & 15);
#pragma unroll
      for (int k = 0; k < 8; ++k) c[k] = (p[k] >> shift) & 15u;
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float e = F::is_int ? rf_mx_decode_int8(c[k]) : rf_mx_decode_fp<F>(c[k]);
      v[k] = e * s + 0.0f;  // -0 codes give +0.0, as the CPU dequantizer does
    }
  }
};

// X(kernel suffix, type): every weight type the GPU matrix kernels take.
#define RF_GGUF_WEIGHT_TYPES(X)             \
  X(f32, rf_gb_f32)                         \
  X(f16, rf_gb_f16t)                        \
  X(q8_0, rf_gb_q8_0)                       \
  X(q4_0, rf_gb_q4_0)                       \
  X(q5_0, rf_gb_q5_0)                       \
  X(q4_k, rf_gb_q4_k)                       \
  X(q6_k, rf_gb_q6_k)                       \
  X(mxfp4, rf_gb_mx<rf_fmt_mxfp4>)          \
  X(mxfp6_e2m3, rf_gb_mx<rf_fmt_mxfp6_e2m3>) \
  X(mxfp6_e3m2, rf_gb_mx<rf_fmt_mxfp6_e3m2>) \
  X(mxfp8_e4m3, rf_gb_mx<rf_fmt_mxfp8_e4m3>) \
  X(mxfp8_e5m2, rf_gb_mx<rf_fmt_mxfp8_e5m2>) \
  X(mxint8, rf_gb_mx<rf_fmt_mxint8>)

#endif  // ROCMFORGE_GGUF_BLOCKS_H
