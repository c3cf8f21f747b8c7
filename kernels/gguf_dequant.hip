// kernels/gguf_dequant.hip: GGUF (ggml) blocks -> float16.
//
// Reference: rocmforge.gguf.quants.dequantize, itself bit-identical to gguf-py's
// gguf.quants.dequantize except that an MXFP4 scale byte 0xFF is NaN (OCP MX).  Each value is
// computed in float32 in the reference's order (every product below is exact in float32,
// so fused multiply-add cannot change a result), then rounded to nearest-even float16.
// Block layouts (ggml-common.h) are pinned by the static_asserts below.
//
// Work split: one thread writes 8 consecutive outputs (one 16-byte store); a block of
// QK elements is handled by QK / 8 threads.
// Entry points (256 threads per workgroup, grid = ceil(n_blocks * QK / 8 / 256)):
//   gguf_dequant_<type>_f16(
//       rf_u16*      out,       // (n_blocks * QK,) float16 bits, 16-byte aligned
//       const rf_u8* in,        // (n_blocks * block_bytes,) ggml blocks
//       rf_u64       n_blocks)  // number of blocks
#include "rocmforge/mx.h"

// ---------------------------------------------------------------- ggml block structs
struct rf_block_q4_0 { rf_u16 d; rf_u8 qs[16]; };             // 32 elems: d*(q-8)
struct rf_block_q8_0 { rf_u16 d; rf_i8 qs[32]; };             // 32 elems: d*q
struct rf_block_q5_0 { rf_u16 d; rf_u8 qh[4]; rf_u8 qs[16]; };  // 32 elems: d*(q-16)
struct rf_block_q4_K {                                        // 256 elems, 8 sub-blocks of 32
  rf_u16 d, dmin;     // super-block scales (f16)
  rf_u8 scales[12];   // (8,) 6-bit scales and (8,) 6-bit mins, packed
  rf_u8 qs[128];      // (256,) nibbles: 4 chunks of 32 bytes, low nibbles then high
};
struct rf_block_q6_K {  // 256 elems, 16 sub-blocks of 16
  rf_u8 ql[128];        // (256,) low 4 bits
  rf_u8 qh[64];         // (256,) high 2 bits
  rf_i8 scales[16];     // (16,) int8 sub-block scales
  rf_u16 d;             // super-block scale (f16)
};
static_assert(sizeof(rf_block_q4_0) == 18, "block_q4_0 is 18 bytes");
static_assert(sizeof(rf_block_q8_0) == 34, "block_q8_0 is 34 bytes");
static_assert(sizeof(rf_block_q5_0) == 22, "block_q5_0 is 22 bytes");
static_assert(sizeof(rf_block_q4_K) == 144, "block_q4_K is 144 bytes");
static_assert(sizeof(rf_block_q6_K) == 210, "block_q6_K is 210 bytes");

// Blocks sit at byte offsets that are not multiples of their alignment (18, 22, 210 bytes),
// so multi-byte fields are read byte by byte.
RF_DEVICE float rf_ld_f16(const rf_u8* p) {
  return rf_half_bits_to_float((rf_u16)(p[0] | (p[1] << 8)));
}

// Each type: QK elements, BYTES per block, and dq8(block, first, v) -> v[0..8) for
// elements [first, first + 8).
struct rf_gguf_q4_0 {
  static constexpr int QK = 32, BYTES = 18;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_ld_f16(b);
    const int shift = first < 16 ? 0 : 4;
    const rf_u8* q = b + 2 + (first & 15);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = d * (float)((rf_i32)((q[k] >> shift) & 15) - 8);
  }
};
struct rf_gguf_q8_0 {
  static constexpr int QK = 32, BYTES = 34;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_ld_f16(b);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = (float)(rf_i8)b[2 + first + k] * d;
  }
};
struct rf_gguf_q5_0 {
  static constexpr int QK = 32, BYTES = 22;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_ld_f16(b);
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
struct rf_gguf_mxfp4 {  // ggml block_mxfp4: e2m1 values doubled, times e8m0 / 2
  static constexpr int QK = 32, BYTES = 17;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const rf_u32 e = b[0];
    // ggml_e8m0_to_fp32_half: 2**(e - 128); 0 and 1 give the subnormals 2**-128, 2**-127.
    // 0xFF is NaN here (OCP MX, as rocmforge.gguf.quants reads it); ggml reads 2**127.
    const float d = e == 0xffu ? rf_uint_as_float(0x7fc00000u)
                               : rf_uint_as_float(e < 2 ? (0x00200000u << e) : ((e - 1u) << 23));
    const int shift = first < 16 ? 0 : 4;
    const rf_u8* q = b + 1 + (first & 15);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const rf_u32 c = (q[k] >> shift) & 15u;
      const rf_u32 mag = c & 7u;  // doubled e2m1 magnitudes 0 1 2 3 4 6 8 12
      const rf_i32 kv = (rf_i32)(mag < 5u ? mag : (mag == 5u ? 6u : (mag == 6u ? 8u : 12u)));
      v[k] = d * (float)(c & 8u ? -kv : kv);
    }
  }
};
struct rf_gguf_q4_K {
  static constexpr int QK = 256, BYTES = 144;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_ld_f16(b), dmin = rf_ld_f16(b + 2);
    const rf_u8* s = b + 4;
    const int j = first / 32;  // sub-block
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
struct rf_gguf_q6_K {
  static constexpr int QK = 256, BYTES = 210;
  RF_DEVICE static void dq8(const rf_u8* b, int first, float (&v)[8]) {
    const float d = rf_ld_f16(b + 208);
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

template <class T>
RF_DEVICE void rf_gguf_dequant(rf_u16* __restrict__ out, const rf_u8* __restrict__ in, rf_u64 n_blocks) {
  constexpr int G = T::QK / 8;  // threads per block
  const rf_u64 t = rf_global_thread_idx();
  const rf_u64 blk = t / G;
  if (blk >= n_blocks) return;
  float v[8];
  T::dq8(in + blk * T::BYTES, (int)(t % G) * 8, v);
  rf_u32x4 o;
  o.x = (rf_u32)rf_float_to_half_bits(v[0]) | ((rf_u32)rf_float_to_half_bits(v[1]) << 16);
  o.y = (rf_u32)rf_float_to_half_bits(v[2]) | ((rf_u32)rf_float_to_half_bits(v[3]) << 16);
  o.z = (rf_u32)rf_float_to_half_bits(v[4]) | ((rf_u32)rf_float_to_half_bits(v[5]) << 16);
  o.w = (rf_u32)rf_float_to_half_bits(v[6]) | ((rf_u32)rf_float_to_half_bits(v[7]) << 16);
  ((rf_u32x4*)out)[t] = o;  // elements [8t, 8t + 8)
}

#define RF_GGUF_DEQUANT_KERNEL(NAME, T)                                                  \
  RF_KERNEL RF_LAUNCH_BOUNDS(256) gguf_dequant_##NAME##_f16(                              \
      rf_u16* __restrict__ out, const rf_u8* __restrict__ in, rf_u64 n_blocks) {          \
    rf_gguf_dequant<T>(out, in, n_blocks);                                               \
  }
RF_GGUF_DEQUANT_KERNEL(q4_0, rf_gguf_q4_0)
RF_GGUF_DEQUANT_KERNEL(q8_0, rf_gguf_q8_0)
RF_GGUF_DEQUANT_KERNEL(q5_0, rf_gguf_q5_0)
RF_GGUF_DEQUANT_KERNEL(q4_k, rf_gguf_q4_K)
RF_GGUF_DEQUANT_KERNEL(q6_k, rf_gguf_q6_K)
RF_GGUF_DEQUANT_KERNEL(mxfp4, rf_gguf_mxfp4)
