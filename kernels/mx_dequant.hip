// kernels/mx_dequant.hip: MX blocks -> float32 / float16 / bfloat16.
//
// Bit-identical to rocmforge.mx.dequantize: value = decode(code) * 2**(scale - 127) in
// float32 (one rounding, subnormals kept), then rounded to nearest-even for f16 / bf16;
// scale 0xFF makes the whole block NaN; codes of -0 give +0.0 (as ggml's block_mxfp4
// does, see rocmforge.mx.reference.dequantize).
//
// Work split: a workgroup of 256 threads owns a tile of TB = 4 * 256 * E / 32 consecutive
// blocks.  It first copies the tile's TB * block_bytes bytes (a multiple of 16) into LDS
// with 16-byte loads; then each thread, 4 times, decodes E = 4 (f32) or 8 (f16, bf16)
// consecutive elements of one block from LDS and writes them with one 16-byte store, so
// global traffic is coalesced and vectorized on both sides.
// Entry points (256 threads per workgroup, grid = ceil(n_blocks / TB)):
//   mx_dequant_<fmt>_<f32|f16|bf16>(
//       void*        out,       // (n_blocks * 32,) float32 / float16 / bfloat16, 16-byte aligned
//       const rf_u8* in,        // (n_blocks * block_bytes,) MX blocks, 16-byte aligned
//       rf_u64       n_blocks)  // number of 32-element blocks
#include "rocmforge/mx.h"

#define RF_THREADS 256
#define RF_UNROLL 4  // chunks per thread: more bytes in flight per workgroup

// Codes of elements [first, first + E) of one block (q: its packed codes, in LDS).
// Byte reads: on sm_90 they measured faster here than aligned word reads + funnel shifts.
template <class F, int E>
RF_DEVICE void rf_mx_load_codes(const rf_u8* q, int first, rf_u32 (&codes)[E]) {
  if (F::bits == 8) {
#pragma unroll
    for (int k = 0; k < E; ++k) codes[k] = q[first + k];
  } else if (F::bits == 6) {  // 4 codes per 24-bit little-endian group
#pragma unroll
    for (int g = 0; g < E / 4; ++g) {
      const rf_u8* p = q + (first / 4 + g) * 3;
      const rf_u32 w = (rf_u32)p[0] | ((rf_u32)p[1] << 8) | ((rf_u32)p[2] << 16);
#pragma unroll
      for (int j = 0; j < 4; ++j) codes[4 * g + j] = (w >> (6 * j)) & 63u;
    }
  } else {  // 4 bits: byte j = element j (low) | element j + 16 (high)
    const int shift = first < 16 ? 0 : 4;
    const rf_u8* p = q + (first & 15);
#pragma unroll
    for (int k = 0; k < E; ++k) codes[k] = (p[k] >> shift) & 15u;
  }
}

// Copy `nbytes` from global `src` (16-byte aligned) into the LDS tile, all threads helping.
RF_DEVICE void rf_tile_load(rf_u32x4* tile, const rf_u8* __restrict__ src, int nbytes) {
  const int tid = (int)rf_thread_idx_x();
  const int n16 = nbytes >> 4;
  for (int i = tid; i < n16; i += RF_THREADS) tile[i] = ((const rf_u32x4*)src)[i];
  rf_u8* tb = (rf_u8*)tile;
  for (int i = (n16 << 4) + tid; i < nbytes; i += RF_THREADS) tb[i] = src[i];
}

template <class F, int OUT>  // OUT: 0 float32, 1 float16, 2 bfloat16
RF_DEVICE void rf_mx_dequant(void* __restrict__ out, const rf_u8* __restrict__ in, rf_u64 n_blocks) {
  constexpr int E = OUT == 0 ? 4 : 8;            // elements per chunk: 16 bytes of output
  constexpr int G = RF_MX_BLOCK / E;             // chunks per block
  constexpr int TB = RF_UNROLL * RF_THREADS / G; // blocks per workgroup tile
  constexpr int TILE = TB * F::block_bytes;      // tile bytes (a multiple of 16)
  static_assert(TILE % 16 == 0, "tile must be whole 16-byte vectors");
  RF_SHARED rf_u32x4 tile[TILE / 16];

  const rf_u64 blk0 = (rf_u64)rf_block_idx_x() * TB;
  const rf_u64 left = n_blocks - blk0;
  const int nvalid = left < (rf_u64)TB ? (int)left : TB;
  rf_tile_load(tile, in + blk0 * F::block_bytes, nvalid * F::block_bytes);
  rf_barrier();

  const int tid = (int)rf_thread_idx_x();
  rf_u32x4* out16 = (rf_u32x4*)out + blk0 * G;
#pragma unroll
  for (int r = 0; r < RF_UNROLL; ++r) {
    const int c = r * RF_THREADS + tid;          // chunk within the tile: coalesced stores
    const int lb = c / G;                        // block within the tile
    if (lb >= nvalid) break;
    const int first = (c % G) * E;
    const rf_u32 s = ((const rf_u8*)tile)[lb * F::block_bytes];
    // INT8 folds its 2**-6 into the scale: q * 2**(s-133), one rounding like q/64 * 2**(s-127).
    const float scale = s == 0xffu ? rf_uint_as_float(0x7fc00000u)
                                   : rf_exp2i((rf_i32)s - 127 - (F::is_int ? 6 : 0));
    rf_u32 codes[E];
    rf_mx_load_codes<F, E>((const rf_u8*)tile + lb * F::block_bytes + 1, first, codes);
    float d[E];
#if defined(RF_HAVE_FP8_CVT)
    if (F::special == 1) {  // E4M3: the hardware converts pairs exactly (NaN included)
#pragma unroll
      for (int k = 0; k < E; k += 2) rf_cvt_e4m3x2_to_float2(codes[k] | (codes[k + 1] << 8), d[k], d[k + 1]);
    } else
#endif
    {
#pragma unroll
      for (int k = 0; k < E; ++k)
        d[k] = F::is_int ? rf_mx_decode_int8(codes[k])
             : F::special == 2 ? rf_mx_decode_e5m2(codes[k]) : rf_mx_decode_fp<F>(codes[k]);
    }
    float v[E];
#pragma unroll
    for (int k = 0; k < E; ++k) v[k] = d[k] * scale + 0.0f;  // exact decode, one rounding; -0 -> +0
    rf_u32x4 o;
    if (OUT == 0) {
      o.x = rf_float_as_uint(v[0]); o.y = rf_float_as_uint(v[1]);
      o.z = rf_float_as_uint(v[2]); o.w = rf_float_as_uint(v[3]);
    } else if (OUT == 1) {
      o.x = rf_pack_half2_rn(v[0], v[1]); o.y = rf_pack_half2_rn(v[2], v[3]);
      o.z = rf_pack_half2_rn(v[4], v[5]); o.w = rf_pack_half2_rn(v[6], v[7]);
    } else {
      o.x = rf_pack_bf16x2_rn(v[0], v[1]); o.y = rf_pack_bf16x2_rn(v[2], v[3]);
      o.z = rf_pack_bf16x2_rn(v[4], v[5]); o.w = rf_pack_bf16x2_rn(v[6], v[7]);
    }
    out16[c] = o;  // elements [first, first + E) of block blk0 + lb
  }
}

#define RF_MX_DEQUANT_KERNEL(NAME, FMT, OUT, SUFFIX)                                   \
  RF_KERNEL RF_LAUNCH_BOUNDS(RF_THREADS) mx_dequant_##NAME##_##SUFFIX(                  \
      void* __restrict__ out, const rf_u8* __restrict__ in, rf_u64 n_blocks) {          \
    rf_mx_dequant<FMT, OUT>(out, in, n_blocks);                                        \
  }
#define RF_MX_DEQUANT_ALL(NAME, FMT)          \
  RF_MX_DEQUANT_KERNEL(NAME, FMT, 0, f32)     \
  RF_MX_DEQUANT_KERNEL(NAME, FMT, 1, f16)     \
  RF_MX_DEQUANT_KERNEL(NAME, FMT, 2, bf16)

RF_MX_DEQUANT_ALL(mxfp4, rf_fmt_mxfp4)
RF_MX_DEQUANT_ALL(mxfp6_e2m3, rf_fmt_mxfp6_e2m3)
RF_MX_DEQUANT_ALL(mxfp6_e3m2, rf_fmt_mxfp6_e3m2)
RF_MX_DEQUANT_ALL(mxfp8_e4m3, rf_fmt_mxfp8_e4m3)
RF_MX_DEQUANT_ALL(mxfp8_e5m2, rf_fmt_mxfp8_e5m2)
RF_MX_DEQUANT_ALL(mxint8, rf_fmt_mxint8)
