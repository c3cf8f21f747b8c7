// kernels/linear.hip: y = x @ W.T with W kept in its GGUF block type, dequantized in
// registers (include/rocmforge/gguf_blocks.h), float32 accumulation; and the embedding
// gather (rows of W, dequantized, times a scale).
//
// Reference: rocmforge.model.weights.Linear (CPU: quants.dot_rows / quants.matmul) and
// Linear.take.  Results agree to float32 accumulation-order rounding, not bit for bit.
//
// Work split (linear): a workgroup of 256 threads = 8 groups of 32 lanes; group g owns
// output row 8 * rg + g and a tile of up to 8 tokens; lane l takes the 8-element chunks
// l, l + 32, ... of the row (consecutive lanes read consecutive bytes of the row), and
// the 32 partial sums of each token are reduced with xor shuffles inside the aligned
// group of 32 lanes (valid for waves of 32 and 64).  The 8 rows of a workgroup are one
// contiguous span of bytes: when it fits 16 KiB and is 16-byte aligned it is first copied
// to LDS with coalesced 16-byte loads (the blocks' odd sizes make direct reads byte
// loads).  x is read with 16-byte loads when its rows are 16-byte aligned.  The grid is
// 1-D: block = token_tile * ceil(n_out / 8) + rg.
// Entry points (256 threads per workgroup):
//   linear_<type>(float* y,          // (n_tok, n_out) float32
//                 const rf_u8* w,    // (n_out, n_in) rows of GGUF blocks of <type>
//                 const float* x,    // (n_tok, n_in) float32
//                 rf_u64 n_tok, rf_u32 n_out, rf_u32 n_in)   // n_in % QK == 0
//     grid = ceil(n_out / 8) * ceil(n_tok / 8)
//   linear1_<type>(same arguments): a tile of 1 token (decode of one sequence): fewer
//     registers, so more workgroups in flight; grid = ceil(n_out / 8) * n_tok
//   embed_<type>(float* out,         // (n_tok, n_in) float32 = W[tokens] * scale
//                const rf_u8* w,     // (n_rows, n_in) GGUF rows
//                const rf_i32* tokens,  // (n_tok,) row ids (checked on the host)
//                rf_u64 n_tok, rf_u32 n_in, float scale)      // n_in % 8 == 0
//     grid = ceil(n_tok * n_in / 8 / 256)
#include "rocmforge/gguf_blocks.h"

#define RF_LIN_ROWS 8  // rows per workgroup (groups of 32 lanes)
#define RF_LIN_TOK 8   // tokens per workgroup

#define RF_LIN_LDS 16384  // bytes of weights staged in LDS per workgroup (8 rows)

// acc[t] += dot(v[0..8), x[t, e .. e+8)) for the nt tokens of the tile.
template <bool VEC, int NT>
RF_DEVICE void rf_lin_fma(float (&acc)[NT], const float (&v)[8], const float* xt,
                          rf_u32 n_in, rf_u32 e, int nt) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < nt) {
      const float* xp = xt + (rf_u64)t * n_in + e;
      float xv[8];
      if (VEC) {  // two 16-byte loads (x rows 16-byte aligned: n_in % 4 == 0)
        const rf_u32x4 a = ((const rf_u32x4*)xp)[0], b = ((const rf_u32x4*)xp)[1];
        xv[0] = rf_uint_as_float(a.x); xv[1] = rf_uint_as_float(a.y);
        xv[2] = rf_uint_as_float(a.z); xv[3] = rf_uint_as_float(a.w);
        xv[4] = rf_uint_as_float(b.x); xv[5] = rf_uint_as_float(b.y);
        xv[6] = rf_uint_as_float(b.z); xv[7] = rf_uint_as_float(b.w);
      } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) xv[k] = xp[k];
      }
      float s = acc[t];
#pragma unroll
      for (int k = 0; k < 8; ++k) s = rf_fmaf(v[k], xv[k], s);
      acc[t] = s;
    }
  }
}

template <class T, int NT>
RF_DEVICE void rf_linear(float* __restrict__ y, const rf_u8* __restrict__ w,
                         const float* __restrict__ x, rf_u64 n_tok, rf_u32 n_out, rf_u32 n_in) {
  RF_SHARED rf_u32x4 stage[RF_LIN_LDS / 16];
  const rf_u32 tid = rf_thread_idx_x();
  const rf_u32 lane = tid & 31u, grp = tid >> 5;
  const rf_u32 n_rg = (n_out + RF_LIN_ROWS - 1) / RF_LIN_ROWS;
  const rf_u32 bid = rf_block_idx_x();
  const rf_u32 row0 = (bid % n_rg) * RF_LIN_ROWS;
  const rf_u32 row = row0 + grp;
  const rf_u64 t0 = (rf_u64)(bid / n_rg) * NT;
  const bool valid = row < n_out;  // no early return: every lane joins the shuffles
  const rf_u64 left = n_tok - t0;
  const int nt = left < NT ? (int)left : NT;
  const rf_u64 row_bytes = (rf_u64)(n_in / T::QK) * T::BYTES;
  // The workgroup's rows are one contiguous span: stage it in LDS with 16-byte loads
  // when it fits and is 16-byte aligned (uniform condition), else read global memory.
  const rf_u32 rows_here = n_out - row0 < RF_LIN_ROWS ? n_out - row0 : RF_LIN_ROWS;
  const rf_u64 span = rows_here * row_bytes;
  const rf_u8* src = w + (rf_u64)row0 * row_bytes;
  const bool staged = span <= RF_LIN_LDS && ((rf_u64)src & 15u) == 0 && (span & 15u) == 0;
  const rf_u8* wr;
  if (staged) {
    const rf_u32 n16 = (rf_u32)(span >> 4);
    for (rf_u32 i = tid; i < n16; i += 256) stage[i] = ((const rf_u32x4*)src)[i];
    rf_barrier();
    wr = (const rf_u8*)stage + (valid ? (rf_u64)grp * row_bytes : 0);
  } else {
    wr = w + (valid ? (rf_u64)row : 0) * row_bytes;
  }
  const float* xt = x + t0 * n_in;
  const bool vec = (n_in & 3u) == 0 && ((rf_u64)x & 15u) == 0;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  const rf_u32 n_chunks = valid ? n_in / 8 : 0;
  if (vec) {
#pragma unroll 2
    for (rf_u32 c = lane; c < n_chunks; c += 32) {
      float v[8];
      T::dq8(wr + (rf_u64)(c * 8 / T::QK) * T::BYTES, (int)(c * 8 % T::QK), v);
      rf_lin_fma<true, NT>(acc, v, xt, n_in, c * 8, nt);
    }
  } else {
    for (rf_u32 c = lane; c < n_chunks; c += 32) {
      float v[8];
      T::dq8(wr + (rf_u64)(c * 8 / T::QK) * T::BYTES, (int)(c * 8 % T::QK), v);
      rf_lin_fma<false, NT>(acc, v, xt, n_in, c * 8, nt);
    }
  }
  if constexpr (T::QK == 1) {  // float rows: a tail of n_in % 8 elements
    const rf_u32 tail0 = n_in / 8 * 8;
    for (rf_u32 e = tail0 + lane; valid && e < n_in; e += 32) {
      float v = T::BYTES == 4 ? ((const float*)wr)[e] : rf_half_bits_to_float(((const rf_u16*)wr)[e]);
#pragma unroll
      for (int t = 0; t < NT; ++t)
        if (t < nt) acc[t] = rf_fmaf(v, xt[(rf_u64)t * n_in + e], acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = acc[t];
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) s += rf_uint_as_float(rf_shfl_xor_u32(rf_float_as_uint(s), m));
    acc[t] = s;
  }
  if (valid && lane == 0) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
      if (t < nt) y[(t0 + t) * n_out + row] = acc[t];
  }
}

template <class T>
RF_DEVICE void rf_embed(float* __restrict__ out, const rf_u8* __restrict__ w,
                        const rf_i32* __restrict__ tokens, rf_u64 n_tok, rf_u32 n_in, float scale) {
  const rf_u64 i = rf_global_thread_idx();
  const rf_u32 per = n_in / 8;
  if (i >= n_tok * per) return;
  const rf_u64 t = i / per;
  const rf_u32 e = (rf_u32)(i % per) * 8;
  const rf_u64 row_bytes = (rf_u64)(n_in / T::QK) * T::BYTES;
  float v[8];
  T::dq8(w + (rf_u64)tokens[t] * row_bytes + (rf_u64)(e / T::QK) * T::BYTES, (int)(e % T::QK), v);
  float* o = out + t * n_in + e;
#pragma unroll
  for (int k = 0; k < 8; ++k) o[k] = v[k] * scale;
}

#define RF_LINEAR_KERNELS(NAME, T)                                                          \
  RF_KERNEL RF_LAUNCH_BOUNDS(256) linear_##NAME(float* __restrict__ y, const rf_u8* __restrict__ w, \
                                                const float* __restrict__ x, rf_u64 n_tok,   \
                                                rf_u32 n_out, rf_u32 n_in) {                 \
    rf_linear<T, RF_LIN_TOK>(y, w, x, n_tok, n_out, n_in);                                  \
  }                                                                                         \
  RF_KERNEL RF_LAUNCH_BOUNDS(256) linear1_##NAME(float* __restrict__ y, const rf_u8* __restrict__ w, \
                                                 const float* __restrict__ x, rf_u64 n_tok,  \
                                                 rf_u32 n_out, rf_u32 n_in) {                \
    rf_linear<T, 1>(y, w, x, n_tok, n_out, n_in);                                           \
  }                                                                                         \
  RF_KERNEL RF_LAUNCH_BOUNDS(256) embed_##NAME(float* __restrict__ out, const rf_u8* __restrict__ w, \
                                               const rf_i32* __restrict__ tokens, rf_u64 n_tok, \
                                               rf_u32 n_in, float scale) {                   \
    rf_embed<T>(out, w, tokens, n_tok, n_in, scale);                                        \
  }
RF_GGUF_WEIGHT_TYPES(RF_LINEAR_KERNELS)
