// kernels/kv_cache.hip: quantize-on-write of K/V rows into the pages of the paged KV cache.
//
// Bit-identical to rocmforge.kv.cache.encode_rows for every KvCacheDtype:
//   F32         the float32 bits as given
//   F16         IEEE half, round to nearest even, overflow -> Inf; NaN -> sign | 0x7c00 +
//               (mantissa >> 13), or 0x7c01 where that is 0 (numpy's npy_floatbits_to_halfbits)
//   BF16        (u + 0x7fff + lsb) >> 16, NaN -> (u >> 16) | 0x40 (rocmforge.kv.cache.f32_to_bf16)
//   MX*         rocmforge.mx.quantize (rules in include/rocmforge/mx.h), blocks of 32 along the row
//
// Device layout (same as the host Storage, docs/KV_CACHE.md): one buffer per layer and K/V,
//   pages: uint8 (max_pages, page_size, row_bytes), token row = all KV heads, head after head.
// Entry points (256 threads per workgroup; grid = ceil(2 * n_tokens * units_per_row / 256)):
//   kv_write_<dtype>(
//       rf_u8*        k_pages,   // (max_pages, page_size, row_bytes) of one layer
//       rf_u8*        v_pages,   // (max_pages, page_size, row_bytes) of one layer
//       const float*  k,         // (n_tokens, row_values) float32
//       const float*  v,         // (n_tokens, row_values) float32
//       const rf_i32* pages,     // (n_tokens,) page id of each token
//       const rf_i32* slots,     // (n_tokens,) slot of each token in its page
//       rf_i32 n_tokens, rf_i32 row_values, rf_i32 row_bytes, rf_i32 page_size)
// One work item encodes one "unit" of one token's K or V row: an MX block (32 values) for
// MX dtypes, one value for F32/F16/BF16.  Items [0, n*units) are K, [n*units, 2n*units) V.
// Writes are not vectorized: a decode step writes a few hundred bytes, a prompt of a
// thousand tokens a few MB; this kernel is never the bottleneck.
#include "rocmforge/mx.h"

#define RF_THREADS 256

template <class F>
RF_DEVICE void rf_kv_encode_block(rf_u8* __restrict__ dst, const float* __restrict__ src) {
  float v[RF_MX_BLOCK];
#pragma unroll
  for (int i = 0; i < RF_MX_BLOCK; ++i) v[i] = src[i];
  rf_u32 amax = 0u;  // |amax| as float bits; >= 0x7f800000 means Inf or NaN
#pragma unroll
  for (int i = 0; i < RF_MX_BLOCK; ++i) amax = rf_max_u32(amax, rf_float_as_uint(v[i]) & 0x7fffffffu);
  rf_u32 codes[RF_MX_BLOCK];
  rf_u32 sbyte;
  if (amax >= 0x7f800000u || amax == 0u) {  // NaN/Inf block -> 0xFF, zero block -> 0; zero codes
    sbyte = amax ? 0xffu : 0u;
#pragma unroll
    for (int i = 0; i < RF_MX_BLOCK; ++i) codes[i] = 0u;
  } else {
    const rf_i32 e = rf_mx_shared_exp<F>(amax);
    sbyte = (rf_u32)(e + 127);
    rf_mx_encode_n<F, RF_MX_BLOCK>(v, rf_exp2i(-e), codes);
  }
  dst[0] = (rf_u8)sbyte;
  if (F::bits == 8) {
#pragma unroll
    for (int i = 0; i < 32; ++i) dst[1 + i] = (rf_u8)codes[i];
  } else if (F::bits == 6) {  // 4 codes -> 3 bytes, little-endian
#pragma unroll
    for (int g = 0; g < 8; ++g) {
      const rf_u32 w = codes[4 * g] | (codes[4 * g + 1] << 6) | (codes[4 * g + 2] << 12) | (codes[4 * g + 3] << 18);
      dst[1 + 3 * g] = (rf_u8)w;
      dst[2 + 3 * g] = (rf_u8)(w >> 8);
      dst[3 + 3 * g] = (rf_u8)(w >> 16);
    }
  } else {  // 4 bits: byte j = element j (low nibble) | element j + 16 (high nibble)
#pragma unroll
    for (int j = 0; j < 16; ++j) dst[1 + j] = (rf_u8)(codes[j] | (codes[j + 16] << 4));
  }
}

// float32 -> float16 bits as numpy converts: RNE, overflow to Inf, NaN payload truncated.
RF_DEVICE rf_u16 rf_kv_f16_bits(float x) {
  const rf_u32 u = rf_float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    const rf_u32 m = (u >> 13) & 0x3ffu;
    return (rf_u16)(((u >> 16) & 0x8000u) | 0x7c00u | (m ? m : 1u));
  }
  return rf_float_to_half_bits(x);
}

// KIND: 0 F32, 1 F16, 2 BF16, 3 MX (format F)
template <int KIND, class F>
RF_DEVICE void rf_kv_write(rf_u8* __restrict__ k_pages, rf_u8* __restrict__ v_pages,
                           const float* __restrict__ k, const float* __restrict__ v,
                           const rf_i32* __restrict__ pages, const rf_i32* __restrict__ slots,
                           rf_i32 n_tokens, rf_i32 row_values, rf_i32 row_bytes, rf_i32 page_size) {
  const rf_i64 units = KIND == 3 ? row_values / RF_MX_BLOCK : row_values;  // per row
  const rf_i64 per_side = (rf_i64)n_tokens * units;
  const rf_i64 item = (rf_i64)rf_global_thread_idx();
  if (item >= 2 * per_side) return;
  const bool is_v = item >= per_side;
  const rf_i64 r = is_v ? item - per_side : item;
  const rf_i64 tok = r / units, unit = r % units;
  const float* src = (is_v ? v : k) + tok * row_values;
  rf_u8* row = (is_v ? v_pages : k_pages) +
               ((rf_i64)pages[tok] * page_size + slots[tok]) * (rf_i64)row_bytes;
  if (KIND == 3) {
    rf_kv_encode_block<F>(row + unit * F::block_bytes, src + unit * RF_MX_BLOCK);
  } else if (KIND == 0) {
    const rf_u32 u = rf_float_as_uint(src[unit]);
    rf_u8* d = row + unit * 4;
    d[0] = (rf_u8)u; d[1] = (rf_u8)(u >> 8); d[2] = (rf_u8)(u >> 16); d[3] = (rf_u8)(u >> 24);
  } else {
    const rf_u16 h = KIND == 1 ? rf_kv_f16_bits(src[unit]) : rf_float_to_bf16_bits(src[unit]);
    rf_u8* d = row + unit * 2;
    d[0] = (rf_u8)h; d[1] = (rf_u8)(h >> 8);
  }
}

#define RF_KV_WRITE_KERNEL(NAME, KIND, FMT)                                                      \
  RF_KERNEL RF_LAUNCH_BOUNDS(RF_THREADS) kv_write_##NAME(                                        \
      rf_u8* __restrict__ k_pages, rf_u8* __restrict__ v_pages, const float* __restrict__ k,     \
      const float* __restrict__ v, const rf_i32* __restrict__ pages,                             \
      const rf_i32* __restrict__ slots, rf_i32 n_tokens, rf_i32 row_values, rf_i32 row_bytes,    \
      rf_i32 page_size) {                                                                        \
    rf_kv_write<KIND, FMT>(k_pages, v_pages, k, v, pages, slots, n_tokens, row_values,           \
                           row_bytes, page_size);                                                \
  }

RF_KV_WRITE_KERNEL(f32, 0, rf_fmt_mxfp4)
RF_KV_WRITE_KERNEL(f16, 1, rf_fmt_mxfp4)
RF_KV_WRITE_KERNEL(bf16, 2, rf_fmt_mxfp4)
RF_KV_WRITE_KERNEL(mxfp8_e4m3, 3, rf_fmt_mxfp8_e4m3)
RF_KV_WRITE_KERNEL(mxfp6_e2m3, 3, rf_fmt_mxfp6_e2m3)
RF_KV_WRITE_KERNEL(mxfp6_e3m2, 3, rf_fmt_mxfp6_e3m2)
RF_KV_WRITE_KERNEL(mxfp4, 3, rf_fmt_mxfp4)
