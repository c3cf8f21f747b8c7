// kernels/mx_quant.hip: float32 / float16 / bfloat16 -> MX blocks.
//
// Bit-identical to rocmforge.mx.quantize (rules in include/rocmforge/mx.h): shared exponent
// from the block's |amax| (exact, from its float bits), codes by round-to-nearest-even
// with saturation, NaN/Inf blocks -> scale 0xFF and zero codes, zero blocks (of +0 or -0)
// -> scale 0 and zero codes; other blocks keep the sign of zero codes (-0.0 -> sign bit).
//
// Work split: one thread reads 16 bytes of input, i.e. E = 4 (f32) or 8 (f16, bf16)
// elements; the G = 32 / E threads of a block (aligned lanes of one wave) reduce |amax|
// with xor shuffles, so every lane of a wave runs the shuffles (no early return).  A
// workgroup of 256 threads owns TB = 4 * 256 / G consecutive blocks (each thread loads 4
// chunks up front): it packs their codes into an LDS tile (TB * block_bytes bytes, a
// multiple of 16) and writes the tile out with 16-byte stores.
// Entry points (256 threads per workgroup, grid = ceil(n_blocks / TB)):
//   mx_quant_<fmt>_<f32|f16|bf16>(
//       rf_u8*       out,       // (n_blocks * block_bytes,) MX blocks, 16-byte aligned
//       const void*  in,        // (n_blocks * 32,) float32 / float16 / bfloat16, 16-byte aligned
//       rf_u64       n_blocks)  // number of 32-element blocks
#include "rocmforge/mx.h"

#define RF_THREADS 256
#define RF_UNROLL 4  // chunks per thread: more bytes in flight per workgroup

template <int IN>  // 0 float32, 1 float16, 2 bfloat16
RF_DEVICE float rf_in_lo(rf_u32 w) {
  return IN == 1 ? rf_half_bits_to_float((rf_u16)(w & 0xffffu)) : rf_bf16_bits_to_float((rf_u16)(w & 0xffffu));
}
template <int IN>
RF_DEVICE float rf_in_hi(rf_u32 w) {
  return IN == 1 ? rf_half_bits_to_float((rf_u16)(w >> 16)) : rf_bf16_bits_to_float((rf_u16)(w >> 16));
}

// Quantize one chunk (16 bytes of input: E elements of one block) into the tile.
template <class F, int IN>
RF_DEVICE void rf_mx_quant_chunk(rf_u8* __restrict__ ob, int sub, bool active, const rf_u32x4& raw) {
  constexpr int E = IN == 0 ? 4 : 8;
  constexpr int G = RF_MX_BLOCK / E;
  const rf_u32 rw[4] = {raw.x, raw.y, raw.z, raw.w};
  float v[E];  // the elements, widened exactly (unused, so not computed, on the f16 FP4 path)
  if (IN == 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = rf_uint_as_float(rw[i]);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) { v[2 * i] = rf_in_lo<IN>(rw[i]); v[2 * i + 1] = rf_in_hi<IN>(rw[i]); }
  }
  // |amax| as float32 bits: ordered like the values; >= 0x7f800000 means Inf or NaN.
  // 16-bit inputs: the max of the 16-bit magnitudes (same order), widened once.
  rf_u32 amax = 0u;
  if (IN == 0) {
#pragma unroll
    for (int k = 0; k < 4; ++k) amax = rf_max_u32(amax, rw[k] & 0x7fffffffu);
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k) amax = rf_max_u16x2(amax, rw[k] & 0x7fff7fffu);
    amax = rf_max_u32(amax & 0xffffu, amax >> 16);
  }
#pragma unroll
  for (int off = 1; off < G; off <<= 1) amax = rf_max_u32(amax, rf_shfl_xor_u32(amax, off));
  if (IN == 1) amax = rf_float_as_uint(rf_half_bits_to_float((rf_u16)amax));
  if (IN == 2) amax <<= 16;

  // Packed codes (see rf_mx_encode_words): bytes of 4 codes, or 24-bit FP6 groups.
  rf_u32 w[E / 4];
  rf_u32 sbyte;
  if (amax >= 0x7f800000u || amax == 0u) {  // NaN/Inf block, or a zero block (+-0 only)
    sbyte = amax ? 0xffu : 0u;
#pragma unroll
    for (int i = 0; i < E / 4; ++i) w[i] = 0u;
  } else {
    const rf_i32 e = rf_mx_shared_exp<F>(amax);
    sbyte = (rf_u32)(e + 127);
    const float inv = rf_exp2i(-e);  // exact: x * 2**-e never rounds where it matters
    if (F::bits == 4 && IN == 1) {
      // float16 input: y = x * 2**-e in packed float16, as two exact power-of-two steps
      // (2**a, 2**b in float16 range: -e lies in [-13, 26] for float16 blocks).  Where a
      // step underflows, |y| < 2**-14 and the code is 0 with its sign either way.
      const rf_i32 a = (-e) >> 1, b = -e - a;
      const rf_u32 sa = (rf_u32)(a + 15) << 10, sb = (rf_u32)(b + 15) << 10;
      const rf_u32 s2a = sa | (sa << 16), s2b = sb | (sb << 16);
#pragma unroll
      for (int i = 0; i < 2; ++i)
        w[i] = rf_pack_lo_bytes(rf_mx_encode_fp4_h2(rf_h2_mul(rf_h2_mul(rw[2 * i], s2a), s2b)),
                                rf_mx_encode_fp4_h2(rf_h2_mul(rf_h2_mul(rw[2 * i + 1], s2a), s2b)));
    } else {
      const bool sat = rf_uint_as_float(amax) * inv > F::max;
      rf_mx_encode_words<F, E, IN != 0>(v, inv, sat, w);
    }
  }

  const int first = sub * E;
  if (F::bits == 4) {
    // Element j and j + 16 share a byte: the lower half of the block's threads write,
    // taking the high nibbles from the thread G/2 lanes away.
#pragma unroll
    for (int i = 0; i < E / 4; ++i) w[i] |= rf_shfl_xor_u32(w[i], G / 2) << 4;
    if (active && sub < G / 2) {
#pragma unroll
      for (int k = 0; k < E; ++k) ob[1 + first + k] = (rf_u8)(w[k / 4] >> (8 * (k & 3)));
    }
  } else if (active && F::bits == 8) {
#pragma unroll
    for (int k = 0; k < E; ++k) ob[1 + first + k] = (rf_u8)(w[k / 4] >> (8 * (k & 3)));
  } else if (active) {  // 6 bits: each 24-bit group -> three bytes, little-endian
#pragma unroll
    for (int g = 0; g < E / 4; ++g) {
      rf_u8* p = ob + 1 + (first / 4 + g) * 3;
      p[0] = (rf_u8)w[g]; p[1] = (rf_u8)(w[g] >> 8); p[2] = (rf_u8)(w[g] >> 16);
    }
  }
  if (active && sub == 0) ob[0] = (rf_u8)sbyte;
}

template <class F, int IN>
RF_DEVICE void rf_mx_quant(rf_u8* __restrict__ out, const void* __restrict__ in, rf_u64 n_blocks) {
  constexpr int E = IN == 0 ? 4 : 8;             // elements per chunk: 16 bytes of input
  constexpr int G = RF_MX_BLOCK / E;             // chunks per block, aligned lanes of a wave
  constexpr int TB = RF_UNROLL * RF_THREADS / G; // blocks per workgroup tile
  constexpr int TILE = TB * F::block_bytes;
  static_assert(TILE % 16 == 0, "tile must be whole 16-byte vectors");
  RF_SHARED rf_u32x4 tile[TILE / 16];
  rf_u8* tb = (rf_u8*)tile;

  const int tid = (int)rf_thread_idx_x();
  const rf_u64 blk0 = (rf_u64)rf_block_idx_x() * TB;
  const rf_u64 left = n_blocks - blk0;
  const int nvalid = left < (rf_u64)TB ? (int)left : TB;
  const rf_u32x4* in16 = (const rf_u32x4*)in + blk0 * G;

  // All loads first (RF_UNROLL x 16 bytes in flight per thread), coalesced per round.
  rf_u32x4 raw[RF_UNROLL];
#pragma unroll
  for (int r = 0; r < RF_UNROLL; ++r) {
    const int c = r * RF_THREADS + tid;
    raw[r].x = raw[r].y = raw[r].z = raw[r].w = 0u;
    if (c / G < nvalid) raw[r] = in16[c];
  }
#pragma unroll
  for (int r = 0; r < RF_UNROLL; ++r) {
    const int c = r * RF_THREADS + tid;
    rf_mx_quant_chunk<F, IN>(tb + (c / G) * F::block_bytes, c % G, c / G < nvalid, raw[r]);
  }
  rf_barrier();

  // Copy the tile's valid bytes out with 16-byte stores (the tile starts 16-byte aligned).
  rf_u8* dst = out + blk0 * F::block_bytes;
  const int nbytes = nvalid * F::block_bytes;
  const int n16 = nbytes >> 4;
  for (int i = tid; i < n16; i += RF_THREADS) ((rf_u32x4*)dst)[i] = tile[i];
  for (int i = (n16 << 4) + tid; i < nbytes; i += RF_THREADS) dst[i] = tb[i];
}

#define RF_MX_QUANT_KERNEL(NAME, FMT, IN, SUFFIX)                                      \
  RF_KERNEL RF_LAUNCH_BOUNDS(RF_THREADS) mx_quant_##NAME##_##SUFFIX(                           \
      rf_u8* __restrict__ out, const void* __restrict__ in, rf_u64 n_blocks) {          \
    rf_mx_quant<FMT, IN>(out, in, n_blocks);                                           \
  }
#define RF_MX_QUANT_ALL(NAME, FMT)          \
  RF_MX_QUANT_KERNEL(NAME, FMT, 0, f32)     \
  RF_MX_QUANT_KERNEL(NAME, FMT, 1, f16)     \
  RF_MX_QUANT_KERNEL(NAME, FMT, 2, bf16)

RF_MX_QUANT_ALL(mxfp4, rf_fmt_mxfp4)
RF_MX_QUANT_ALL(mxfp6_e2m3, rf_fmt_mxfp6_e2m3)
RF_MX_QUANT_ALL(mxfp6_e3m2, rf_fmt_mxfp6_e3m2)
RF_MX_QUANT_ALL(mxfp8_e4m3, rf_fmt_mxfp8_e4m3)
RF_MX_QUANT_ALL(mxfp8_e5m2, rf_fmt_mxfp8_e5m2)
RF_MX_QUANT_ALL(mxint8, rf_fmt_mxint8)
