// kernels/attention.hip: paged decode attention over the quantized KV cache (split-K,
// "flash decoding"), dequantizing K/V pages in registers.
//
// Math (rocmforge.kv.attention.decode_attention): one query per sequence at its last
// position; query head h reads KV head h // group; s = scale * q.k, with softcap
// s = cap * tanh(s / cap); window w keeps the last w positions; softmax over them; o = p.V.
//
// Pages (device layout == host Storage, docs/KV_CACHE.md):
//   k_pages, v_pages: uint8 (max_pages, page_size, row_bytes) of one layer; a token row is
//   every KV head, head after head, HB = head_dim * bits_per_value / 8 bytes each (MX:
//   head_dim / 32 whole blocks, so a head never splits a block).  The buffers must be
//   readable 16 bytes past their end (DeviceStorage allocates that slack): MX lanes read
//   whole aligned 32-bit words around their bytes.
//
// Work split.  Kernel 1, attn_decode_<dtype>_d<D>_g<G>: one workgroup (256 threads) per
// (sequence b, split, KV head, sub-group of G query heads); a split is `split_len`
// consecutive positions of the attended range [start, len).  Inside, LPT = D / 16 lanes
// share a token (lane li holds 16 of its values: MXFP8/MXFP6/plain: values 16*li ..
// 16*li + 15; MXFP4: values 32*(li/2) + 8*(li%2) + {0..7, 16..23}, which are whole bytes of
// the block), so NS = 256 / LPT "slots" work on tokens base + slot, base + slot + NS, ...,
// C tokens per slot per step (loads of K and V for the C tokens are issued together).
// Each slot keeps its own online softmax (max m, sum l, acc[G][16]); scores are partial
// dot products (block scale applied once per lane) summed over the LPT lanes with xor
// shuffles.  At the end the slots are merged through LDS and the workgroup writes its
// partial (acc relative to M, M, L) for each of its G heads.
// On NVIDIA sm_80+ the MX kernels at head_dim 128 use tensor-core bodies instead (same
// entry points, work split and partial results): float16 mma for MXFP6/MXFP4, TF32 mma for
// MXFP8 (below).  NVIDIA sm_80+ also has a staged kernel for MXFP6/MXFP4 (and MXFP8_E4M3 on
// sm_89+) at head_dim 64, 128 and 256 (attn_staged_*, below: a workgroup
// per 4 KV heads, or per 1 or 2 where those are all the heads; pages copied to shared memory
// with cp.async), with the same partial results.
// Kernel 2, attn_combine: one workgroup per (sequence, query head, NV values) merges the
// splits: out = sum_s 2^(M_s - M) acc_s / sum_s 2^(M_s - M) L_s.  Softmax runs in base 2
// (scores times log2 e).
//
// Entry points (256 threads per workgroup, except attn_staged_*: 128):
//   attn_decode_<dtype>_d<64|128|256>_g<1|2|4>(     grid = batch * n_splits * n_kv_heads * q_sub
//       float*        part_o,      // (batch, n_q_heads, n_splits, D) float32
//       float*        part_ml,     // (batch, n_q_heads, n_splits, 2): M (base 2), L
//       const float*  q,           // (batch, n_q_heads, D) float32, 16-byte aligned
//       const rf_u8*  k_pages,     // (max_pages, page_size, row_bytes) one layer's K
//       const rf_u8*  v_pages,     // (max_pages, page_size, row_bytes) one layer's V
//       const rf_i32* page_table,  // (batch, table_stride) page ids of each sequence
//       const rf_i32* seq_lens,    // (batch,) tokens of each sequence (>= 1)
//       rf_i32 n_q_heads, rf_i32 n_kv_heads, rf_i32 q_sub,   // q_sub = group / G
//       rf_i32 page_size, rf_i32 page_shift,                 // page_shift = log2 or -1
//       rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits, rf_i32 split_len,
//       rf_i32 window,                                       // 0: none
//       float scale, float softcap)                          // softcap 0: none
//   attn_combine(float* out,            // (n_rows, D) float32, n_rows = batch * n_q_heads
//                const float* part_o,   // (n_rows, n_splits, D)
//                const float* part_ml,  // (n_rows, n_splits, 2)
//                rf_i32 n_splits, rf_i32 head_dim)    grid = n_rows * head_dim / NV,
//                NV = min(head_dim, 1024 / (largest power of two <= min(n_splits, 32)))
//   attn_staged_<mxfp6_e2m3|mxfp6_e3m2|mxfp4|mxfp8_e4m3|f16|bf16>_d<64|128|256>[_h2|_h1|_h2s|_h1s|_h1u](
//       NVIDIA sm_80+ only (MXFP8: sm_89+; d64 MX: _h1u instead of _h1); HW = 4 (no suffix), 2 or 1
//       KV heads a workgroup, 32 HW threads; _h2s / _h1s (MX, d64 _h2s, d128 both, d256 _h1s): a
//       slice of wider rows; _h1u (MX, d64): one head of any row (row_bytes even), copied as the
//       words that hold it; dynamic shared memory: staged_shared_bytes(dtype, HW, D) (Python);
//       part_o, part_ml, q, k_pages, v_pages, page_table, seq_lens,      grid = batch *
//       rf_i32 n_q_heads, rf_i32 n_kv_heads,          // n_kv_heads % HW == 0;               n_splits *
//                                                     // MX _h2 / _h1 (not d256 _h2):        n_kv_heads / HW
//                                                     // n_kv_heads == HW
//       rf_i32 page_size, rf_i32 row_bytes,           // page_size % 16 == 0; row_bytes a multiple
//                                                     // of the piece (16, 8 or 4 bytes; RUN:
//                                                     // == the slice; _h1u: even)
//       rf_i32 table_stride, rf_i32 n_splits, rf_i32 split_tiles,   // 16-position tiles per split
//       rf_i32 window, float scale, float softcap)    // group <= 8
#include "rocmforge/mx.h"

#define RF_THREADS 256
#define RF_LOG2E 1.4426950408889634f

// ---------------------------------------------------------------- per-dtype lane access
// KIND: 0 F32, 1 F16, 2 BF16, 3 MX (format F).
template <int KIND, class F>
struct rf_kv_fmt {
  static constexpr int ES = KIND == 0 ? 4 : 2;                      // plain: bytes / value
  static constexpr int CB = KIND == 3 ? 2 * F::bits : 16 * ES;      // code bytes per lane
  static constexpr int NW = KIND == 3 ? CB / 4 + 1 : CB / 4;        // raw words per lane
  static constexpr int C = KIND == 3 ? 4 : (KIND == 0 ? 1 : 2);     // tokens per slot step
  // index within the head of the lane's value k (0..15)
  static RF_DEVICE int elem(int li, int k) {
    if (KIND == 3 && F::bits == 4)
      return (li >> 1) * 32 + (k < 8 ? (li & 1) * 8 + k : 16 + (li & 1) * 8 + (k - 8));
    return li * 16 + k;
  }
};

// Load the lane's bytes of one token's head slice `head` (or zeros when !valid).
template <int KIND, class F>
RF_DEVICE void rf_lane_load(const rf_u8* __restrict__ head, int li, bool valid, rf_u32 (&w)[rf_kv_fmt<KIND, F>::NW],
                            rf_u32& sh, rf_u32& sb) {
  typedef rf_kv_fmt<KIND, F> K;
  if (KIND == 3) {
    const rf_u8* blk = head + (li >> 1) * F::block_bytes;
    const rf_u64 a = (rf_u64)(blk + 1 + (li & 1) * K::CB);
    const rf_u32* ab = (const rf_u32*)(a & ~(rf_u64)3);
    sh = valid ? (rf_u32)(a & 3u) * 8u : 0u;
    sb = valid ? (rf_u32)blk[0] : 0u;
#pragma unroll
    for (int i = 0; i < K::NW; ++i) w[i] = valid ? ab[i] : 0u;
  } else {
    const rf_u32x4* p = (const rf_u32x4*)(head + li * K::CB);
    sh = 0u;
    sb = 0u;
#pragma unroll
    for (int i = 0; i < K::NW / 4; ++i) {
      rf_u32x4 x;
      x.x = x.y = x.z = x.w = 0u;
      if (valid) x = p[i];
      w[4 * i] = x.x; w[4 * i + 1] = x.y; w[4 * i + 2] = x.z; w[4 * i + 3] = x.w;
    }
  }
}

// Raw words -> the lane's 16 values without the block scale (d) and the block scale.
template <int KIND, class F>
RF_DEVICE float rf_lane_decode(const rf_u32 (&raw)[rf_kv_fmt<KIND, F>::NW], rf_u32 sh, rf_u32 sb, float (&d)[16]) {
  typedef rf_kv_fmt<KIND, F> K;
  if (KIND == 0) {
#pragma unroll
    for (int k = 0; k < 16; ++k) d[k] = rf_uint_as_float(raw[k]);
    return 1.0f;
  } else if (KIND == 1) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      d[2 * i] = rf_half_bits_to_float((rf_u16)(raw[i] & 0xffffu));
      d[2 * i + 1] = rf_half_bits_to_float((rf_u16)(raw[i] >> 16));
    }
    return 1.0f;
  } else if (KIND == 2) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      d[2 * i] = rf_uint_as_float(raw[i] << 16);
      d[2 * i + 1] = rf_uint_as_float(raw[i] & 0xffff0000u);
    }
    return 1.0f;
  } else {
    constexpr int NC = K::CB / 4;  // aligned code words
    rf_u32 w[NC + 1];
#pragma unroll
    for (int i = 0; i < NC; ++i) w[i] = rf_funnel_r(raw[i], raw[i + 1], sh);
    w[NC] = 0u;
    if (F::bits == 8) {
#if defined(RF_HAVE_FP8_CVT)
      if (F::special == 1) {
#pragma unroll
        for (int k = 0; k < 16; k += 2) rf_cvt_e4m3x2_to_float2((w[k >> 2] >> (8 * (k & 3))) & 0xffffu, d[k], d[k + 1]);
      } else
#endif
      {
#pragma unroll
        for (int k = 0; k < 16; ++k) d[k] = rf_mx_decode_fp<F>((w[k >> 2] >> (8 * (k & 3))) & 0xffu);
      }
    } else if (F::bits == 6) {
#pragma unroll
      for (int k = 0; k < 16; ++k) {
        const int bit = 6 * k, i = bit >> 5, o = bit & 31;
        const rf_u32 c = (o <= 26 ? (w[i] >> o) : rf_funnel_r(w[i], w[i + 1], (rf_u32)o)) & 63u;
        d[k] = rf_mx_decode_fp<F>(c);
      }
    } else {  // 4 bits: byte j holds value k = j (low nibble) and k = j + 8 (high nibble)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const rf_u32 byte = (w[j >> 2] >> (8 * (j & 3))) & 0xffu;
        d[j] = rf_mx_decode_fp<F>(byte & 15u);
        d[j + 8] = rf_mx_decode_fp<F>(byte >> 4);
      }
    }
    return rf_e8m0_to_float(sb);
  }
}

RF_DEVICE float rf_shfl_xor_f(float v, int m) { return rf_uint_as_float(rf_shfl_xor_u32(rf_float_as_uint(v), m)); }

RF_DEVICE float rf_softcap(float x, float cap) {  // cap * tanh(x / cap)
  const float e = rf_expf(2.0f * x / cap);
  return cap * (1.0f - 2.0f / (e + 1.0f));
}

// ---------------------------------------------------------------- kernel 1
template <int KIND, class F, int D, int G>
RF_DEVICE void rf_attn_decode(float* __restrict__ part_o, float* __restrict__ part_ml, const float* __restrict__ q,
                              const rf_u8* __restrict__ k_pages, const rf_u8* __restrict__ v_pages,
                              const rf_i32* __restrict__ page_table, const rf_i32* __restrict__ seq_lens,
                              rf_i32 n_q_heads, rf_i32 n_kv_heads, rf_i32 q_sub, rf_i32 page_size,
                              rf_i32 page_shift, rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits,
                              rf_i32 split_len, rf_i32 window, float scale, float softcap) {
  typedef rf_kv_fmt<KIND, F> K;
  constexpr int LPT = D / 16;             // lanes per token
  constexpr int NS = RF_THREADS / LPT;    // token slots per workgroup
  constexpr int C = K::C;
  constexpr int HB = KIND == 3 ? D / RF_MX_BLOCK * F::block_bytes : D * K::ES;  // head bytes
  constexpr int NGRP = RF_THREADS / 32;   // 32-lane groups (warps on NVIDIA)
  static_assert(LPT >= 4 && LPT <= 16, "head_dim 64, 128 or 256");
  RF_SHARED float sm_m[NS][G];
  RF_SHARED float sm_o[NGRP][G][D];
  RF_SHARED float sm_l[NGRP][G];

  const int tid = (int)rf_thread_idx_x();
  const int li = tid % LPT, slot = tid / LPT;
  int idx = (int)rf_block_idx_x();
  const int sub = idx % q_sub; idx /= q_sub;
  const int kvh = idx % n_kv_heads; idx /= n_kv_heads;
  const int split = idx % n_splits;
  const int b = idx / n_splits;
  const int len = seq_lens[b];
  const int start = window > 0 ? rf_max_i32(0, len - window) : 0;
  const int lo = start + split * split_len;
  const int hi = rf_min_i32(len, lo + split_len);
  const int qh0 = kvh * (n_q_heads / n_kv_heads) + sub * G;
  const rf_i32* table = page_table + (rf_i64)b * table_stride;
  const rf_i64 head_off = (rf_i64)kvh * HB;
  const float neg_inf = rf_uint_as_float(0xff800000u);

  float qr[G][16];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* qg = q + ((rf_i64)b * n_q_heads + qh0 + g) * D;
#pragma unroll
    for (int k = 0; k < 16; ++k) qr[g][k] = qg[K::elem(li, k)];
  }
  float m[G], l[G], acc[G][16];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = neg_inf;
    l[g] = 0.0f;
#pragma unroll
    for (int k = 0; k < 16; ++k) acc[g][k] = 0.0f;
  }

  for (int base = lo; base < hi; base += NS * C) {  // uniform over the workgroup
    rf_u32 kw[C][K::NW], vw[C][K::NW], ksh[C], ksb[C], vsh[C], vsb[C];
    bool valid[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int t = base + c * NS + slot;
      valid[c] = t < hi;
      const int tt = valid[c] ? t : lo;
      const int pi = page_shift >= 0 ? (tt >> page_shift) : tt / page_size;
      const int sip = tt - pi * page_size;
      const rf_i64 off = ((rf_i64)table[pi] * page_size + sip) * row_bytes + head_off;
      rf_lane_load<KIND, F>(k_pages + off, li, valid[c], kw[c], ksh[c], ksb[c]);
      rf_lane_load<KIND, F>(v_pages + off, li, valid[c], vw[c], vsh[c], vsb[c]);
    }
    // scores s[c][g] (base 2)
    float s[C][G];
#pragma unroll
    for (int c = 0; c < C; ++c) {
      float dk[16];
      const float ks = rf_lane_decode<KIND, F>(kw[c], ksh[c], ksb[c], dk);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float p0 = 0.0f, p1 = 0.0f;
#pragma unroll
        for (int k = 0; k < 16; k += 2) {
          p0 = rf_fmaf(qr[g][k], dk[k], p0);
          p1 = rf_fmaf(qr[g][k + 1], dk[k + 1], p1);
        }
        s[c][g] = (p0 + p1) * ks;
      }
    }
#pragma unroll
    for (int o = 1; o < LPT; o <<= 1) {
#pragma unroll
      for (int c = 0; c < C; ++c) {
#pragma unroll
        for (int g = 0; g < G; ++g) s[c][g] += rf_shfl_xor_f(s[c][g], o);
      }
    }
#pragma unroll
    for (int c = 0; c < C; ++c) {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float x = s[c][g] * scale;
        if (softcap > 0.0f) x = rf_softcap(x, softcap);
        s[c][g] = valid[c] ? x * RF_LOG2E : neg_inf;
      }
    }
    // online softmax update, per head of the group
    float p[C][G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mc = s[0][g];
#pragma unroll
      for (int c = 1; c < C; ++c) mc = rf_fmaxf(mc, s[c][g]);
      const float m_new = rf_fmaxf(m[g], mc);
      float alpha = 1.0f;
      if (m_new == neg_inf) {
#pragma unroll
        for (int c = 0; c < C; ++c) p[c][g] = 0.0f;
      } else {
        alpha = rf_exp2f(m[g] - m_new);
        float ps = 0.0f;
#pragma unroll
        for (int c = 0; c < C; ++c) {
          p[c][g] = rf_exp2f(s[c][g] - m_new);
          ps += p[c][g];
        }
        l[g] = l[g] * alpha + ps;
        m[g] = m_new;
      }
#pragma unroll
      for (int k = 0; k < 16; ++k) acc[g][k] *= alpha;
    }
#pragma unroll
    for (int c = 0; c < C; ++c) {
      float dv[16];
      const float vs = rf_lane_decode<KIND, F>(vw[c], vsh[c], vsb[c], dv);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float pv = p[c][g] * vs;
#pragma unroll
        for (int k = 0; k < 16; ++k) acc[g][k] = rf_fmaf(pv, dv[k], acc[g][k]);
      }
    }
  }

  // ---- merge the NS slots: maxima through LDS, sums by shuffles then LDS
  if (li == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) sm_m[slot][g] = m[g];
  }
  rf_barrier();
  float M[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    M[g] = neg_inf;
    for (int i = 0; i < NS; ++i) M[g] = rf_fmaxf(M[g], sm_m[i][g]);
    const float f = m[g] == neg_inf ? 0.0f : rf_exp2f(m[g] - M[g]);
    l[g] *= f;
#pragma unroll
    for (int k = 0; k < 16; ++k) acc[g][k] *= f;
  }
#pragma unroll
  for (int o = LPT; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      l[g] += rf_shfl_xor_f(l[g], o);
#pragma unroll
      for (int k = 0; k < 16; ++k) acc[g][k] += rf_shfl_xor_f(acc[g][k], o);
    }
  }
  const int grp = tid >> 5, lane32 = tid & 31;
  if (lane32 < LPT) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int k = 0; k < 16; ++k) sm_o[grp][g][K::elem(li, k)] = acc[g][k];
      if (li == 0) sm_l[grp][g] = l[g];
    }
  }
  rf_barrier();
  const rf_i64 row0 = ((rf_i64)b * n_q_heads + qh0) * n_splits + split;  // head g: row0 + g * n_splits
  for (int i = tid; i < G * D; i += RF_THREADS) {
    const int g = i / D, e = i % D;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NGRP; ++w) sum += sm_o[w][g][e];
    part_o[(row0 + (rf_i64)g * n_splits) * D + e] = sum;
  }
  if (tid < G) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NGRP; ++w) sum += sm_l[w][tid];
    part_ml[(row0 + (rf_i64)tid * n_splits) * 2] = M[tid];
    part_ml[(row0 + (rf_i64)tid * n_splits) * 2 + 1] = sum;
  }
}

// ---------------------------------------------------------------- kernel 1, tensor cores
// NVIDIA sm_80+, MX dtypes, head_dim 128: the same work split per workgroup, but each warp
// takes 16 positions per step and does both products on tensor cores in TF32
// (mma.m16n8k8; rows = query heads, G of 16 used).  Dequantized MX values (code * scale)
// have at most 4 significant bits, so they are exact in TF32; q and p are rounded to TF32
// (rna): |error| ~ 2^-11 relative (tolerance in tests/kv/test_gpu.py).
// Lane l = 4 * g + t: S = Q K^T: B operand K^T holds position g of the 8-position tile,
// values of MX block t (units 2t, 2t+1 of 16 values); the reduction index is permuted
// (chunk j uses the lane's values 2j, 2j+1) and Q uses the same permutation.  The S tile
// (C layout: head g, positions 2t, 2t+1) is exactly the A operand of P V when the
// positions of the P V reduction are ordered (2t, 2t+1); V's B operand then holds
// positions 2t, 2t+1 and the 16 values of unit g, column i of n-tile i.
#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define RF_HAVE_TC_ATTN 1
RF_DEVICE rf_u32 rf_tf32(float x) {
  rf_u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
// c (row g, columns 2t, 2t+1) += A B.  A rows 8..15 (padding heads) are zero, so C rows
// 8..15 stay zero and are not kept.
RF_DEVICE void rf_mma_tf32(float (&c)[2], rf_u32 a0, rf_u32 a2, rf_u32 b0, rf_u32 b1) {
  float z2 = 0.0f, z3 = 0.0f;
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(z2), "+f"(z3)
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

template <class F, int G>
RF_DEVICE void rf_attn_decode_tc(float* __restrict__ part_o, float* __restrict__ part_ml, const float* __restrict__ q,
                                 const rf_u8* __restrict__ k_pages, const rf_u8* __restrict__ v_pages,
                                 const rf_i32* __restrict__ page_table, const rf_i32* __restrict__ seq_lens,
                                 rf_i32 n_q_heads, rf_i32 n_kv_heads, rf_i32 q_sub, rf_i32 page_size,
                                 rf_i32 page_shift, rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits,
                                 rf_i32 split_len, rf_i32 window, float scale, float softcap) {
  typedef rf_kv_fmt<3, F> K;
  constexpr int D = 128, NWARP = RF_THREADS / 32, STEP = NWARP * 16;
  constexpr int HB = D / RF_MX_BLOCK * F::block_bytes;
  RF_SHARED float sm_m[NWARP][G];
  RF_SHARED float sm_o[NWARP][G][D];
  RF_SHARED float sm_l[NWARP][G];

  const int tid = (int)rf_thread_idx_x();
  const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  int idx = (int)rf_block_idx_x();
  const int sub = idx % q_sub; idx /= q_sub;
  const int kvh = idx % n_kv_heads; idx /= n_kv_heads;
  const int split = idx % n_splits;
  const int b = idx / n_splits;
  const int len = seq_lens[b];
  const int start = window > 0 ? rf_max_i32(0, len - window) : 0;
  const int lo = start + split * split_len;
  const int hi = rf_min_i32(len, lo + split_len);
  const int qh0 = kvh * (n_q_heads / n_kv_heads) + sub * G;
  const rf_i32* table = page_table + (rf_i64)b * table_stride;
  const rf_i64 head_off = (rf_i64)kvh * HB;
  const float neg_inf = rf_uint_as_float(0xff800000u);

  // Q (A operand, row g): chunk j holds the lane's K values 2j, 2j+1 (unit 2 t4 + (m >> 4)).
  rf_u32 qa[16][2];
  {
    const float* qg = q + ((rf_i64)b * n_q_heads + qh0 + (g < G ? g : 0)) * D;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int m = 2 * j + e;
        const float x = qg[K::elem(2 * t4 + (m >> 4), m & 15)];
        qa[j][e] = g < G ? rf_tf32(x) : 0u;
      }
    }
  }
  float o[16][2];
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = 0.0f;
  float m_run = neg_inf, l_run = 0.0f;

  // Raw loads of a step: K positions base + g, base + 8 + g (units 2 t4, 2 t4 + 1);
  // V positions base + 2 t4 + {0, 1}, base + 8 + 2 t4 + {0, 1} (unit g).  Software
  // pipelined: the next step's loads are issued before this step's arithmetic.
  rf_u32 nkw[2][2][K::NW], nksh[2][2], nksb[2][2], nvw[4][K::NW], nvsh[4], nvsb[4];
  auto load_step = [&](int base) {
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      const int tk = base + 8 * tt + g;
      const bool ok = tk < hi;
      const int tc = ok ? tk : lo;
      const int pi = page_shift >= 0 ? (tc >> page_shift) : tc / page_size;
      const rf_i64 off = ((rf_i64)table[pi] * page_size + (tc - pi * page_size)) * row_bytes + head_off;
#pragma unroll
      for (int u = 0; u < 2; ++u) rf_lane_load<3, F>(k_pages + off, 2 * t4 + u, ok, nkw[tt][u], nksh[tt][u], nksb[tt][u]);
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int tv = base + 8 * (r >> 1) + 2 * t4 + (r & 1);
      const bool ok = tv < hi;
      const int tc = ok ? tv : lo;
      const int pi = page_shift >= 0 ? (tc >> page_shift) : tc / page_size;
      const rf_i64 off = ((rf_i64)table[pi] * page_size + (tc - pi * page_size)) * row_bytes + head_off;
      rf_lane_load<3, F>(v_pages + off, g, ok, nvw[r], nvsh[r], nvsb[r]);
    }
  };
  if (lo + warp * 16 < hi) load_step(lo + warp * 16);
  for (int base = lo + warp * 16; base < hi; base += STEP) {  // uniform per warp
    rf_u32 kw[2][2][K::NW], ksh[2][2], ksb[2][2], vw[4][K::NW], vsh[4], vsb[4];
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
#pragma unroll
      for (int u = 0; u < 2; ++u) {
#pragma unroll
        for (int i = 0; i < K::NW; ++i) kw[tt][u][i] = nkw[tt][u][i];
        ksh[tt][u] = nksh[tt][u];
        ksb[tt][u] = nksb[tt][u];
      }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int i = 0; i < K::NW; ++i) vw[r][i] = nvw[r][i];
      vsh[r] = nvsh[r];
      vsb[r] = nvsb[r];
    }
    if (base + STEP < hi) load_step(base + STEP);   // in flight during this step
    bool vvalid[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) vvalid[r] = base + 8 * (r >> 1) + 2 * t4 + (r & 1) < hi;
    // S = Q K^T for the two 8-position tiles
    float sc[2][2];
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      sc[tt][0] = sc[tt][1] = 0.0f;
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        float dk[16];
        const float ks = rf_lane_decode<3, F>(kw[tt][u], ksh[tt][u], ksb[tt][u], dk);
#pragma unroll
        for (int j = 0; j < 8; ++j)
          rf_mma_tf32(sc[tt], qa[8 * u + j][0], qa[8 * u + j][1], rf_float_as_uint(dk[2 * j] * ks),
                      rf_float_as_uint(dk[2 * j + 1] * ks));
      }
    }
    // scores of head g at positions base + 8 tt + 2 t4 + e (C layout c0, c1)
    float s[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float x = sc[r >> 1][r & 1] * scale;
      if (softcap > 0.0f) x = rf_softcap(x, softcap);
      s[r] = vvalid[r] ? x * RF_LOG2E : neg_inf;
    }
    float mx = rf_fmaxf(rf_fmaxf(s[0], s[1]), rf_fmaxf(s[2], s[3]));
    mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 1));
    mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 2));
    const float m_new = rf_fmaxf(m_run, mx);
    float p[4], alpha = 1.0f;
    if (m_new == neg_inf) {
      p[0] = p[1] = p[2] = p[3] = 0.0f;
    } else {
      alpha = rf_exp2f(m_run - m_new);
#pragma unroll
      for (int r = 0; r < 4; ++r) p[r] = rf_exp2f(s[r] - m_new);
      l_run = l_run * alpha + ((p[0] + p[1]) + (p[2] + p[3]));
      m_run = m_new;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) { o[i][0] *= alpha; o[i][1] *= alpha; }
    // O += P V, per 8-position tile; V values of unit g: column i of n-tile i
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      float dv0[16], dv1[16];
      const float s0 = rf_lane_decode<3, F>(vw[2 * tt], vsh[2 * tt], vsb[2 * tt], dv0);
      const float s1 = rf_lane_decode<3, F>(vw[2 * tt + 1], vsh[2 * tt + 1], vsb[2 * tt + 1], dv1);
      const rf_u32 a0 = rf_tf32(p[2 * tt]), a2 = rf_tf32(p[2 * tt + 1]);
#pragma unroll
      for (int i = 0; i < 16; ++i)
        rf_mma_tf32(o[i], a0, a2, rf_float_as_uint(dv0[i] * s0), rf_float_as_uint(dv1[i] * s1));
    }
  }

  // ---- merge the warps (head g of lanes 4 g .. 4 g + 3)
  l_run += rf_shfl_xor_f(l_run, 1);
  l_run += rf_shfl_xor_f(l_run, 2);
  if (t4 == 0 && g < G) sm_m[warp][g] = m_run;
  rf_barrier();
  if (g < G) {
    float M = neg_inf;
#pragma unroll
    for (int w = 0; w < NWARP; ++w) M = rf_fmaxf(M, sm_m[w][g]);
    const float f = m_run == neg_inf ? 0.0f : rf_exp2f(m_run - M);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      sm_o[warp][g][K::elem(2 * t4, i)] = o[i][0] * f;
      sm_o[warp][g][K::elem(2 * t4 + 1, i)] = o[i][1] * f;
    }
    if (t4 == 0) sm_l[warp][g] = l_run * f;
  }
  rf_barrier();
  const rf_i64 row0 = ((rf_i64)b * n_q_heads + qh0) * n_splits + split;
  for (int i = tid; i < G * D; i += RF_THREADS) {
    const int gg = i / D, e = i % D;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NWARP; ++w) sum += sm_o[w][gg][e];
    part_o[(row0 + (rf_i64)gg * n_splits) * D + e] = sum;
  }
  if (tid < G) {
    float M = neg_inf, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NWARP; ++w) {
      M = rf_fmaxf(M, sm_m[w][tid]);
      sum += sm_l[w][tid];
    }
    part_ml[(row0 + (rf_i64)tid * n_splits) * 2] = M;
    part_ml[(row0 + (rf_i64)tid * n_splits) * 2 + 1] = sum;
  }
}

// ---------------------------------------------------------------- kernel 1, float16 tensor cores
// NVIDIA sm_80+, MXFP6_E2M3 / MXFP6_E3M2 / MXFP4 at head_dim 128: the layout of the TF32
// body above, with both products as float16 mma.m16n8k16 (half the mma count) and the
// codes turned into float16 bits with integer ops instead of per-value float decoding.
// * A code's exponent|mantissa bits placed at bit 10 - mbits of a half (sign moved to bit
//   15) are float16 bits of value * 2^-(15 - bias), subnormals included; two codes per u32
//   (rf_h16_pair_at: FP6 one byte permute, one shift, two ands and a multiply-add per pair).
// * Block scales are powers of two, applied as one float16 multiply per pair by
//   2^(e - e_ref + 15 - bias): the result value * 2^(e - e_ref) is exact in float16 (at
//   most 4 significant bits, |.| <= 28) unless the block's scale is more than 2^20 below
//   e_ref; then it is rounded to float16's subnormal step 2^-24 (an absolute error of at
//   most 2^-25 of the reference block's scale).  K: e_ref = the largest scale of the position (its 4 blocks, one per
//   lane), 2^(e_ref - 127) multiplies that position's score in float32.  V: e_ref = a
//   running warp maximum of the V scales; the accumulator is rescaled when it grows and
//   multiplied by 2^(e_ref - 127) at the end.  An E8M0 NaN scale (0xFF) makes the
//   position's score, or the warp's output, NaN.
// * q is multiplied by 2^-qe (max |q| of the head in [1, 2)) before the float16 rounding,
//   so float16's range never clips it; 2^qe is applied to the score.  q and p are rounded
//   to float16 (2^-11 relative, as TF32).
// K lane (g, t4) holds MX block t4 of position g: pair j of the block (FP6 values
// 8 (j / 4) + j % 4 + {0, 4}; FP4 the nibbles of byte j, values j and j + 16) is b0b1
// (j even) / b2b3 (j odd) of mma j / 2; q uses the same permutation.  V lanes as in the
// TF32 body (unit g, 16 values), with the float16 pairs of two positions interleaved by
// byte permutes.  Loads: each warp issues its next step's K words right after S and its
// V words as soon as this step's are unpacked (before P V), with the page-table entries
// read one step earlier still.
// H100, batch 16 x 32k, MXFP6: 0.47 ms (TF32 body, old split plan: 0.77 ms).  Nsight on an
// earlier revision: ~1100 instructions per warp per 16 positions, 8 warps per SM (~190
// registers), issue slots 56% busy, DRAM 36%: issue/latency-bound, not bandwidth-bound.
#define RF_HAVE_H16_ATTN 1
template <class F>
struct rf_h16 {
  static constexpr int P = 10 - F::mbits;                         // code bit 0 -> half bit P
  static constexpr int SB = P + F::bits - 1;                      // where the sign bit lands
  static constexpr rf_u32 SMASK = (1u << SB) | (1u << (SB + 16));
  static constexpr rf_u32 SMUL = (1u << (15 - SB)) - 1u;          // s * SMUL: bit SB -> 15
  // half exponent of the factor that restores a decoded value: 2^(15 - bias) for the bit
  // trick (FP6, FP4); 2^0 for E4M3, which the hardware converts exactly (rf_cvt_e4m3x2_h16)
  static constexpr int EBIAS = F::bits == 8 ? 15 : 30 - F::bias;
  static constexpr int BB = F::block_bytes;
  static constexpr int NWO = (BB + 3) / 4;                        // words of one whole block
  // K lane: the two values (h = 0, 1) of pair j, as indices within the block
  static RF_DEVICE int kdim(int j, int h) {
    return F::bits == 4 ? j + 16 * h : F::bits >= 8 ? 2 * j + h : 8 * (j >> 2) + (j & 3) + 4 * h;
  }
};

// Two codes (bits 0.. and F::bits.. of y) -> float16x2 bits of value * 2^-(15 - bias).
template <class F>
RF_DEVICE rf_u32 rf_h16_pair(rf_u32 y) {
  typedef rf_h16<F> H;
  constexpr rf_u32 M = (1u << F::bits) - 1u;
  const rf_u32 r = ((y & M) << H::P) | ((y & (M << F::bits)) << (16 + H::P - F::bits));
  return r + (r & H::SMASK) * H::SMUL;
}
// float16x2 bits of 2^(ex - 15) in both halves (0 when ex <= 0; ex <= 30 here).
RF_DEVICE rf_u32 rf_h16_pow2(int ex) { return (rf_u32)rf_max_i32(ex, 0) * 0x04000400u; }
RF_DEVICE rf_u32 rf_byte_perm(rf_u32 x, rf_u32 y, rf_u32 sel) { return __byte_perm(x, y, sel); }
// Bits [off, off + 32) of the little-endian word stream w (compile-time off after unrolling).
template <int N>
RF_DEVICE rf_u32 rf_bits_at(const rf_u32 (&w)[N], int off) {
  const int i = off >> 5, o = off & 31;
  return o == 0 ? w[i] : rf_funnel_r(w[i], i + 1 < N ? w[i + 1] : 0u, (rf_u32)o);
}
// Two codes at bits o and 16 + o of x -> float16x2 bits of value * 2^-(15 - bias).
template <class F>
RF_DEVICE rf_u32 rf_h16_from(rf_u32 x, int o) {
  typedef rf_h16<F> H;
  const int sh = H::P - o;
  const rf_u32 r = sh >= 0 ? x << sh : x >> -sh;
  constexpr rf_u32 MM = (((1u << (F::bits - 1)) - 1u) << H::P) * 0x10001u;
  return (r & H::SMASK) * (1u << (15 - H::SB)) + (r & MM);
}
// Pair p (0..15) of the code stream that starts at byte `byte0` of w, as float16x2 bits of
// value * 2^-(15 - bias).  FP4: byte p, i.e. values p (low nibble) and p + 16 (high).  FP6:
// values 8 q + k and 8 q + k + 4 (q = p / 4, k = p % 4): one byte permute gathers the
// 6-byte group's bytes so that both codes sit 16 bits apart at bit s (s = 0, 6, 4, 10),
// then one shift, two ands and a multiply-add put magnitude and sign in place.
// E4M3 (sm_89+): values 2 p and 2 p + 1, converted by the hardware (exact, NaN kept).
template <class F, int N>
RF_DEVICE rf_u32 rf_h16_pair_at(const rf_u32 (&w)[N], int byte0, int p) {
  typedef rf_h16<F> H;
  if (F::bits == 4) return rf_h16_pair<F>(rf_bits_at(w, 8 * (byte0 + p)));
#if defined(RF_HAVE_FP8_CVT)
  if (F::bits == 8) return rf_cvt_e4m3x2_h16(rf_bits_at(w, 8 * (byte0 + 2 * p)) & 0xffffu);
#endif
  const int q = p >> 2, k = p & 3;
  const int base = byte0 + 6 * q + (k >> 1), o = base & 3;
  const rf_u32 x = rf_byte_perm(w[base >> 2], w[(base >> 2) + 1],
                                (rf_u32)(o | (o + 1) << 4 | (o + 3) << 8 | (o + 4) << 12));
  return rf_h16_from<F>(x, k == 0 ? 0 : k == 1 ? 6 : k == 2 ? 4 : 10);
}
// q of one lane: the 32 values of block t4 of its head (16-byte aligned), four vector loads.
RF_DEVICE void rf_load_q32(const float* __restrict__ qg, float (&qv)[32]) {
#pragma unroll
  for (int k = 0; k < 32; k += 4) {
    const rf_u32x4 x = *(const rf_u32x4*)(qg + k);
    qv[k] = rf_uint_as_float(x.x);
    qv[k + 1] = rf_uint_as_float(x.y);
    qv[k + 2] = rf_uint_as_float(x.z);
    qv[k + 3] = rf_uint_as_float(x.w);
  }
}
// The float16 pairs of q in the K lanes' order (pair p: values kdim(p, 0), kdim(p, 1); mma
// j takes pairs 2j, 2j + 1), scaled by 2^-qe so that max |q| of the head (its 4 lanes t4,
// xor 1 and 2) lies in [1, 2) and float16's range never clips it; zero when !valid.
// Returns 2^qe, the factor of the head's scores.
// The biased exponent eb of max |q| over a head's 128 values (this lane's 32 and lanes t4
// xor 1, 2), clamped to [1, 253]: q x 2^(127 - eb) has its largest magnitude in [1, 2).
RF_DEVICE int rf_q_exponent(const float (&qv)[32]) {
  float amax = 0.0f;
#pragma unroll
  for (int k = 0; k < 32; ++k) amax = rf_fmaxf(amax, rf_fabsf(qv[k]));
  amax = rf_fmaxf(amax, rf_shfl_xor_f(amax, 1));
  amax = rf_fmaxf(amax, rf_shfl_xor_f(amax, 2));
  return rf_min_i32(rf_max_i32((int)(rf_float_as_uint(amax) >> 23) & 0xff, 1), 253);
}
template <class F>
RF_DEVICE float rf_q_pairs_h16(const float (&qv)[32], bool valid, rf_u32 (&qa)[8][2]) {
  typedef rf_h16<F> H;
  const int eb = rf_q_exponent(qv);
  const float qs = rf_uint_as_float((rf_u32)(254 - eb) << 23);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int p = 2 * j + e;
      qa[j][e] = valid ? rf_pack_half2_rn(qv[H::kdim(p, 0)] * qs, qv[H::kdim(p, 1)] * qs) : 0u;
    }
  }
  return rf_uint_as_float((rf_u32)eb << 23);
}
// A K lane's MX block: raw words with the block starting at bit sh of raw[0] -> wd, the
// block's bytes from byte 0 (scale in byte 0, codes from byte 1); the position's reference
// scale e_ref (the largest of its 4 blocks, lanes t4 xor 1, 2) is returned and fac is
// 2^(e - e_ref + 15 - bias) in both float16 halves (rf_h16_pow2).
template <class F, int N>
RF_DEVICE int rf_k_block_h16(const rf_u32 (&raw)[N], rf_u32 sh, rf_u32 (&wd)[N], rf_u32& fac, int scale = -1) {
#pragma unroll
  for (int i = 0; i < N; ++i) wd[i] = rf_funnel_r(raw[i], i + 1 < N ? raw[i + 1] : 0u, sh);
  const int eu = scale < 0 ? (int)(wd[0] & 0xffu) : scale;   // scale: the block's, read apart
  int et = rf_max_i32(eu, (int)rf_shfl_xor_u32((rf_u32)eu, 1));
  et = rf_max_i32(et, (int)rf_shfl_xor_u32((rf_u32)et, 2));
  fac = rf_h16_pow2(rf_h16<F>::EBIAS + eu - et);
  return et;
}
RF_DEVICE void rf_mma_f16(float (&c)[2], rf_u32 a0, rf_u32 a2, rf_u32 b0, rf_u32 b1) {
  float z2 = 0.0f, z3 = 0.0f;
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(z2), "+f"(z3)
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
}

template <class F, int G>
RF_DEVICE void rf_attn_decode_h16(float* __restrict__ part_o, float* __restrict__ part_ml, const float* __restrict__ q,
                                  const rf_u8* __restrict__ k_pages, const rf_u8* __restrict__ v_pages,
                                  const rf_i32* __restrict__ page_table, const rf_i32* __restrict__ seq_lens,
                                  rf_i32 n_q_heads, rf_i32 n_kv_heads, rf_i32 q_sub, rf_i32 page_size,
                                  rf_i32 page_shift, rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits,
                                  rf_i32 split_len, rf_i32 window, float scale, float softcap) {
  typedef rf_kv_fmt<3, F> K;
  typedef rf_h16<F> H;
  constexpr int D = 128, NWARP = RF_THREADS / 32, STEP = NWARP * 16;
  constexpr int HB = D / RF_MX_BLOCK * F::block_bytes;
  constexpr int NWO = H::NWO;
  RF_SHARED float sm_m[NWARP][G];
  RF_SHARED float sm_o[NWARP][G][D];
  RF_SHARED float sm_l[NWARP][G];

  const int tid = (int)rf_thread_idx_x();
  const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  int idx = (int)rf_block_idx_x();
  const int sub = idx % q_sub; idx /= q_sub;
  const int kvh = idx % n_kv_heads; idx /= n_kv_heads;
  const int split = idx % n_splits;
  const int b = idx / n_splits;
  const int len = seq_lens[b];
  const int start = window > 0 ? rf_max_i32(0, len - window) : 0;
  const int lo = start + split * split_len;
  const int hi = rf_min_i32(len, lo + split_len);
  const int qh0 = kvh * (n_q_heads / n_kv_heads) + sub * G;
  const rf_i32* table = page_table + (rf_i64)b * table_stride;
  const rf_i64 head_off = (rf_i64)kvh * HB;
  const float neg_inf = rf_uint_as_float(0xff800000u);

  // Q (A operand, row g, block t4): mma j holds pairs 2j (a0a1) and 2j + 1 (a4a5).
  rf_u32 qa[8][2];
  float qf;  // 2^qe: the score factor of row g
  {
    float qv[32];
    rf_load_q32(q + ((rf_i64)b * n_q_heads + qh0 + (g < G ? g : 0)) * D + 32 * t4, qv);
    qf = rf_q_pairs_h16<F>(qv, g < G, qa);
  }
  float o[16][2];
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = 0.0f;
  float m_run = neg_inf, l_run = 0.0f;
  int ev_run = 0;  // V reference scale (E8M0), warp-uniform

  // Raw loads of a step: K positions base + 8 tt + g (block t4, whole); V positions
  // base + 8 (r >> 1) + 2 t4 + (r & 1) (unit g).  Each set is reloaded for the next step
  // as soon as this step has consumed it (K after S, V after P V): one set of registers.
  rf_u32 kw[2][NWO], ksh[2], vw[4][K::NW], vsh[4], vsb[4];
  // Page ids of the next loads' positions, read from the table one step earlier still, so
  // that the page-table read is off the critical path of the data loads.
  rf_i32 pk[2], pv[4];
  auto kpos = [&](int base, int tt) { const int t = base + 8 * tt + g; return t < hi ? t : lo; };
  auto vpos = [&](int base, int r) { const int t = base + 8 * (r >> 1) + 2 * t4 + (r & 1); return t < hi ? t : lo; };
  auto page_of = [&](int t) { return page_shift >= 0 ? (t >> page_shift) : t / page_size; };
  auto load_tab = [&](int base) {
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) pk[tt] = table[page_of(kpos(base, tt))];
#pragma unroll
    for (int r = 0; r < 4; ++r) pv[r] = table[page_of(vpos(base, r))];
  };
  auto load_k = [&](int base) {
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      const int tk = base + 8 * tt + g;
      const bool ok = tk < hi;
      const int tc = kpos(base, tt);
      const rf_i64 off = ((rf_i64)pk[tt] * page_size + (tc - page_of(tc) * page_size)) * row_bytes + head_off;
      const rf_u64 a = (rf_u64)(k_pages + off + t4 * F::block_bytes);
      const rf_u32* ab = (const rf_u32*)(a & ~(rf_u64)3);
      ksh[tt] = (rf_u32)(a & 3u) * 8u;
#pragma unroll
      for (int i = 0; i < NWO; ++i) kw[tt][i] = ok ? ab[i] : 0u;
    }
  };
  auto load_v = [&](int base) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int tv = base + 8 * (r >> 1) + 2 * t4 + (r & 1);
      const bool ok = tv < hi;
      const int tc = vpos(base, r);
      const rf_i64 off = ((rf_i64)pv[r] * page_size + (tc - page_of(tc) * page_size)) * row_bytes + head_off;
      rf_lane_load<3, F>(v_pages + off, g, ok, vw[r], vsh[r], vsb[r]);
    }
  };
  if (lo + warp * 16 < hi) {
    load_tab(lo + warp * 16);
    load_k(lo + warp * 16);
    load_v(lo + warp * 16);
    if (lo + warp * 16 + STEP < hi) load_tab(lo + warp * 16 + STEP);
  }
  for (int base = lo + warp * 16; base < hi; base += STEP) {  // uniform per warp
    const bool more = base + STEP < hi;
    bool vvalid[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) vvalid[r] = base + 8 * (r >> 1) + 2 * t4 + (r & 1) < hi;
    // S = Q K^T for the two 8-position tiles; sf: 2^(e_ref - 127) of columns 2 t4 + e
    float sc[2][2], sf[2][2];
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      rf_u32 w[NWO], fac;  // the block's bytes: scale in byte 0, codes from byte 1
      const int et = rf_k_block_h16<F>(kw[tt], ksh[tt], w, fac);
      sc[tt][0] = sc[tt][1] = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        rf_u32 bb[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int p = 2 * j + e;
          bb[e] = rf_h2_mul(rf_h16_pair_at<F>(w, 1, p), fac);
        }
        rf_mma_f16(sc[tt], qa[j][0], qa[j][1], bb[0], bb[1]);
      }
#pragma unroll
      for (int e = 0; e < 2; ++e)
        sf[tt][e] = rf_e8m0_to_float((rf_u32)__shfl_sync(0xffffffffu, et, 8 * t4 + 4 * e)) * qf;
    }
    if (more) load_k(base + STEP);   // in flight during the rest of this step
    // scores of head g at positions base + 8 tt + 2 t4 + e (C layout c0, c1)
    float s[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float x = sc[r >> 1][r & 1] * sf[r >> 1][r & 1] * scale;
      if (softcap > 0.0f) x = rf_softcap(x, softcap);
      s[r] = vvalid[r] ? x * RF_LOG2E : neg_inf;
    }
    float mx = rf_fmaxf(rf_fmaxf(s[0], s[1]), rf_fmaxf(s[2], s[3]));
    mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 1));
    mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 2));
    const float m_new = rf_fmaxf(m_run, mx);
    float p[4], alpha = 1.0f;
    if (m_new == neg_inf) {
      p[0] = p[1] = p[2] = p[3] = 0.0f;
    } else {
      alpha = rf_exp2f(m_run - m_new);
#pragma unroll
      for (int r = 0; r < 4; ++r) p[r] = rf_exp2f(s[r] - m_new);
      l_run = l_run * alpha + ((p[0] + p[1]) + (p[2] + p[3]));
      m_run = m_new;
    }
    // V reference scale: running warp maximum
    const int ev_step = (int)__reduce_max_sync(
        0xffffffffu, rf_max_u32(rf_max_u32(vsb[0], vsb[1]), rf_max_u32(vsb[2], vsb[3])));
    if (ev_step > ev_run) {  // warp-uniform
      alpha *= rf_exp2f((float)(ev_run - ev_step));
      ev_run = ev_step;
    }
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {  // rare once the maxima settle
#pragma unroll
      for (int i = 0; i < 16; ++i) { o[i][0] *= alpha; o[i][1] *= alpha; }
    }
    // O += P V: float16 pairs of each position, then (position 2t4, 2t4+1) interleaved
    rf_u32 cw[4][K::NW], fac[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int i = 0; i < K::NW; ++i) cw[r][i] = rf_funnel_r(vw[r][i], i + 1 < K::NW ? vw[r][i + 1] : 0u, vsh[r]);
      fac[r] = rf_h16_pow2(H::EBIAS + (int)vsb[r] - ev_run);
    }
    if (more) load_v(base + STEP);                 // V words consumed: in flight during P V
    if (base + 2 * STEP < hi) load_tab(base + 2 * STEP);
    const rf_u32 pa0 = rf_pack_half2_rn(p[0], p[1]), pa1 = rf_pack_half2_rn(p[2], p[3]);
#pragma unroll
    for (int pp = 0; pp < 8; ++pp) {
      rf_u32 pv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        pv[r] = rf_h2_mul(rf_h16_pair_at<F>(cw[r], 0, pp), fac[r]);
      }
      // pair pp holds values (FP6) 8 (pp / 4) + pp % 4 + {0, 4} / (FP4) pp, pp + 8 of the
      // unit: n-tiles
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int i = F::bits == 4 ? pp + 8 * h : 8 * (pp >> 2) + 4 * h + (pp & 3);
        const rf_u32 sel = h ? 0x7632u : 0x5410u;
        rf_mma_f16(o[i], pa0, pa1, __byte_perm(pv[0], pv[1], sel), __byte_perm(pv[2], pv[3], sel));
      }
    }
  }

  // ---- merge the warps (head g of lanes 4 g .. 4 g + 3)
  l_run += rf_shfl_xor_f(l_run, 1);
  l_run += rf_shfl_xor_f(l_run, 2);
  if (t4 == 0 && g < G) sm_m[warp][g] = m_run;
  rf_barrier();
  if (g < G) {
    float M = neg_inf;
#pragma unroll
    for (int w = 0; w < NWARP; ++w) M = rf_fmaxf(M, sm_m[w][g]);
    const float f = m_run == neg_inf ? 0.0f : rf_exp2f(m_run - M);
    const float fo = f * rf_e8m0_to_float((rf_u32)ev_run);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      sm_o[warp][g][K::elem(2 * t4, i)] = o[i][0] * fo;
      sm_o[warp][g][K::elem(2 * t4 + 1, i)] = o[i][1] * fo;
    }
    if (t4 == 0) sm_l[warp][g] = l_run * f;
  }
  rf_barrier();
  const rf_i64 row0 = ((rf_i64)b * n_q_heads + qh0) * n_splits + split;
  for (int i = tid; i < G * D; i += RF_THREADS) {
    const int gg = i / D, e = i % D;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NWARP; ++w) sum += sm_o[w][gg][e];
    part_o[(row0 + (rf_i64)gg * n_splits) * D + e] = sum;
  }
  if (tid < G) {
    float M = neg_inf, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < NWARP; ++w) {
      M = rf_fmaxf(M, sm_m[w][tid]);
      sum += sm_l[w][tid];
    }
    part_ml[(row0 + (rf_i64)tid * n_splits) * 2] = M;
    part_ml[(row0 + (rf_i64)tid * n_splits) * 2 + 1] = sum;
  }
}
// ---------------------------------------------------------------- kernel 1, staged (NVIDIA sm_80+)
// attn_staged_<dtype>_d<64|128|256>[_h2|_h1|_h2s|_h1s|_h1u]: pages staged in shared memory, both
// products as float16 mma.m16n8k16 with the operands transposed so that no register of
// an mma is padding.  Same partial results as the other bodies (acc relative to M, M, L).
// * Workgroup = (sequence b, split, group of HW KV heads), 32 HW threads; warp w serves KV
//   head HW * hg + w and the whole group of query heads that reads it (group <= 8).  HW = 4,
//   else 2 or 1 (the _h2 / _h1 kernels; for MX heads that are not whole 16-byte pieces they
//   hold whole page rows, and _h2s / _h1s take a slice of wider rows; _h1u: one MX head of
//   head_dim 64, whose 2 blocks are not whole 4-byte words, in any row).
// * The attended range is walked in 16-position tiles aligned to multiples of 16 (a tile
//   lies inside one page: page_size % 16 == 0); a split is `split_tiles` tiles from the
//   tile holding the range's first position.  For each tile the threads copy the HW heads'
//   K and V slices (16 x HW x HB bytes each) into shared memory with cp.async, zero-filling
//   positions outside [start, len) (a stale page slot never puts a NaN into P V): one
//   contiguous run per position, in 16-byte pieces (8 or 4 where the slice is not a multiple
//   of 16: 4 MX heads at head_dim 64, _h2s, _h1s).  Whole rows of 1 or 2 MX heads that are
//   not 16-byte multiples (68-264 bytes): the tile is one contiguous run of 16 row_bytes
//   bytes, copied in 16-byte chunks, or word by word with exact zero-filling where the tile
//   has positions outside the range.  _h1u: each position's slice as the 4-byte words that
//   hold it (it starts 0 or 2 bytes into the first), zero-filled per word.  Three
//   buffers: the tiles one and two steps ahead are in flight while a tile is computed; the
//   page-table entry is read a step before its copy is issued.
// * S^T = K Q^T (A = K: lane (g, t4) holds MX block t4 of positions g and g + 8, pairs
//   of values as in rf_attn_decode_h16; B = Q^T: column g = query head g, the same pairs of
//   q; C: positions g, g + 8 x heads 2 t4, 2 t4 + 1).  K block scales: relative to the
//   position's largest (e_ref), multiplied into the float16 pairs; 2^(e_ref - 127) scales
//   the score.
// * Softmax with a lazy maximum: each lane keeps the running maximum M of its two heads;
//   p = 2^(s - M) is computed against the M in hand, and M moves (a warp vote, then the
//   full reduction over the 8 lanes of a head and the rescale of l and O) only when some
//   score exceeds it by more than 8, so p <= 2^8 always fits float16 and most steps do no
//   reduction at all.  M, L and O stay consistent: O and L are sums of the same p.
// * P^T: the C tile of p (positions x heads) rounded to float16 and transposed by
//   movmatrix.trans is exactly the B operand (positions x heads, column = head g) of
//   O^T = V^T P^T (A = V^T: lane (g, t4) holds values i and i + 8 of its V unit g (16
//   values of the head) at positions 2 t4, 2 t4 + 1, 2 t4 + 8, 2 t4 + 9; one byte permute
//   gathers a value's code from two positions so that one shift-and-mask step gives the
//   float16 pair (rf_h16_cross); the V scale relative to a running warp maximum is one
//   float16 multiply per pair).  O^T C: values i, i + 8 of unit g x heads 2 t4, 2 t4 + 1.
// * MXFP8_E4M3 (sm_89+): K pairs are adjacent values (2 p, 2 p + 1) and a V pair is one
//   value at two positions; cvt.rn.f16x2.e4m3x2 makes the float16 pair (exact, NaN kept),
//   so the scale factors are 2^(e - e_ref) (EBIAS 15).
// * The partial results leave through shared memory as coalesced 16-byte stores.
// * F16 / BF16 pages: no decoding; A = K and A = V^T come from shared memory through
//   ldmatrix (.trans for V), positions 16 bytes apart beyond their slice (bank-conflict-free
//   rows), and q and p are hi + lo pairs of the page type, two mma per product.
// The launcher (rocmforge.ops.attention) takes this body for MXFP6/MXFP4/F16/BF16 (MXFP8_E4M3
// on sm_89+) pages at head_dim 64 / 128 / 256 with any number of KV heads, group <= 8 and
// page_size % 16 == 0 on NVIDIA sm_80+.
// The tile buffers, NST x (K, V) x BUFW words, in dynamic shared memory (MXFP8 needs 50.8 KB,
// above the 48 KB of a static array): the launcher passes staged_shared_bytes(dtype).
extern __shared__ __align__(16) rf_u32 rf_staged_smem[];
RF_DEVICE rf_u32 rf_smem_u32(const void* p) { return (rf_u32)__cvta_generic_to_shared(p); }
// RF_CP_ASYNC_L2: optional L2 prefetch size hint of the page copies (".L2::128B" / ".L2::256B")
#ifndef RF_CP_ASYNC_L2
#define RF_CP_ASYNC_L2 ""
#endif
RF_DEVICE void rf_cp_async16(rf_u32 dst, const void* src, rf_u32 src_bytes) {
  asm volatile("cp.async.cg.shared.global" RF_CP_ASYNC_L2 " [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}
// 4 bytes (the first src_bytes of them from global memory, the rest zero)
RF_DEVICE void rf_cp_async4(rf_u32 dst, const void* src, rf_u32 src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
// 8 bytes (the first src_bytes of them from global memory, the rest zero)
RF_DEVICE void rf_cp_async8(rf_u32 dst, const void* src, rf_u32 src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
// N = 16, 8 or 4 bytes, the first src_bytes of them from global memory
template <int N>
RF_DEVICE void rf_cp_async(rf_u32 dst, const void* src, rf_u32 src_bytes) {
  if constexpr (N == 16)
    rf_cp_async16(dst, src, src_bytes);
  else if constexpr (N == 8)
    rf_cp_async8(dst, src, src_bytes);
  else
    rf_cp_async4(dst, src, src_bytes);
}
RF_DEVICE void rf_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
RF_DEVICE void rf_cp_async_wait1() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }
RF_DEVICE void rf_cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }
// Word of value v (0..127) of head h in a warp's staging row (the staged kernel's epilogue):
// bits 2-3 of v xor (v / 32) % 4, bits 0-1 xor (h / 2) % 4.
RF_DEVICE int rf_staged_swz(int v, int h) { return v ^ (((v >> 5) & 3) << 2) ^ ((h >> 1) & 3); }
RF_DEVICE rf_u32 rf_movmatrix_t(rf_u32 x) {
  rf_u32 r;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(r) : "r"(x));
  return r;
}
RF_DEVICE void rf_mma_f16_full(float (&c)[4], rf_u32 a0, rf_u32 a1, rf_u32 a2, rf_u32 a3, rf_u32 b0, rf_u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// Four 8x8 float16 matrices from shared memory (lane l gives the address of row l % 8 of
// matrix l / 8); .trans hands each lane the transposed elements.
RF_DEVICE void rf_ldmatrix_x4(rf_u32 addr, rf_u32& a0, rf_u32& a1, rf_u32& a2, rf_u32& a3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(addr));
}
RF_DEVICE void rf_ldmatrix_x4_trans(rf_u32 addr, rf_u32& a0, rf_u32& a1, rf_u32& a2, rf_u32& a3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(addr));
}
// The staged kernel's 16-bit pages (KvCacheDtype.F16, BF16): no block scale, 64 bytes per
// 32 values, so a head is 256 bytes and the MX "block" of a K lane is 32 consecutive values.
struct rf_fmt_f16_pages {
  static constexpr int bits = 16, ebits = 5, mbits = 10, bias = 15, emax = 15, special = 0;
  static constexpr int block_bytes = 64;
};
struct rf_fmt_bf16_pages {
  static constexpr int bits = 16, ebits = 8, mbits = 7, bias = 127, emax = 127, special = 0;
  static constexpr int block_bytes = 64;
};
// (x0, x1) as hi + lo pairs of bfloat16 (BF) or float16: hi = x rounded, lo = the rest
// rounded, so two mma operands carry about 16 (bfloat16) or 22 (float16) bits of x.
template <bool BF>
RF_DEVICE void rf_split_x2(float x0, float x1, rf_u32& hi, rf_u32& lo) {
  if constexpr (BF) {
    hi = rf_pack_bf16x2_rn(x0, x1);
    lo = rf_pack_bf16x2_rn(x0 - rf_uint_as_float(hi << 16), x1 - rf_uint_as_float(hi & 0xffff0000u));
  } else {
    hi = rf_pack_half2_rn(x0, x1);
    lo = rf_pack_half2_rn(x0 - rf_half_bits_to_float((rf_u16)(hi & 0xffffu)),
                          x1 - rf_half_bits_to_float((rf_u16)(hi >> 16)));
  }
}
// rf_mma_f16_full with bfloat16 operands (BF) or float16 ones.
template <bool BF>
RF_DEVICE void rf_mma_16_full(float (&c)[4], rf_u32 a0, rf_u32 a1, rf_u32 a2, rf_u32 a3, rf_u32 b0, rf_u32 b1) {
  if constexpr (BF)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  else
    rf_mma_f16_full(c, a0, a1, a2, a3, b0, b1);
}
// The 16-bit pages' q: pairs as rf_q_pairs_h16 (same scaling by 2^-qe), each split into hi
// (qa) and lo (ql) pairs of bfloat16 (BF) or float16, so that K (exact in its own type)
// times hi + lo carries about 16 (22) bits of q.  Returns 2^qe.
template <bool BF>
RF_DEVICE float rf_q_pairs_split(const float (&qv)[32], bool valid, rf_u32 (&qa)[8][2], rf_u32 (&ql)[8][2]) {
  const int eb = rf_q_exponent(qv);
  const float qs = rf_uint_as_float((rf_u32)(254 - eb) << 23);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int p = 2 * j + e;
      rf_u32 hi, lo;
      rf_split_x2<BF>(qv[2 * p] * qs, qv[2 * p + 1] * qs, hi, lo);
      qa[j][e] = valid ? hi : 0u;
      ql[j][e] = valid ? lo : 0u;
    }
  }
  return rf_uint_as_float((rf_u32)eb << 23);
}
// Value v (0..15, compile time after unrolling) of a V unit at two positions a, b: float16x2
// (a low, b high).  w*[0..NC-1]: the unit's codes from bit 0 (FP6: values at bits 6 v; FP4:
// value v in byte v % 8, low nibble for v < 8; E4M3: byte v); FP6 also w*[NC], w*[NC + 1]:
// the words from bytes 2 and 6, for the two codes whose 2-byte window crosses a word.
template <class F, int NC>
RF_DEVICE rf_u32 rf_h16_cross(const rf_u32 (&wa)[NC + 2], const rf_u32 (&wb)[NC + 2], int v) {
#if defined(RF_HAVE_FP8_CVT)
  if (F::bits == 8)   // E4M3: byte v of both positions, converted by the hardware
    return rf_cvt_e4m3x2_h16(__byte_perm(wa[v >> 2], wb[v >> 2], (rf_u32)((v & 3) | ((v & 3) + 4) << 4)));
#endif
  int bk = F::bits == 6 ? (6 * v) >> 3 : (v & 7);
  int o = F::bits == 6 ? (6 * v) & 7 : (v >> 3) * 4;
  int wi = bk >> 2, b = bk & 3;
  if (b == 3) {
    if (o + F::bits <= 8) {
      b = 2;
      o += 8;
    } else {
      wi = NC + (bk >> 2);
      b = 1;
    }
  }
  const rf_u32 sel = (rf_u32)(b | (b + 1) << 4 | (b + 4) << 8 | (b + 5) << 12);
  return rf_h16_from<F>(__byte_perm(wa[wi], wb[wi], sel), o);
}

template <class F, int HW, int D, bool SLC = false, bool UNA = false>
RF_DEVICE void rf_attn_decode_staged(float* __restrict__ part_o, float* __restrict__ part_ml,
                                     const float* __restrict__ q, const rf_u8* __restrict__ k_pages,
                                     const rf_u8* __restrict__ v_pages, const rf_i32* __restrict__ page_table,
                                     const rf_i32* __restrict__ seq_lens, rf_i32 n_q_heads, rf_i32 n_kv_heads,
                                     rf_i32 page_size, rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits,
                                     rf_i32 split_tiles, rf_i32 window, float scale, float softcap) {
  typedef rf_kv_fmt<3, F> K;
  typedef rf_h16<F> H;
  constexpr int BB = F::block_bytes, NT = 32 * HW;
  // NBG: groups of 128 values a head has (head_dim 128: 1, 256: 2); each runs as the whole
  // head of head_dim 128 does (its own K blocks t4 + 4 bg, q scale, V units g + 8 bg, V
  // reference scale and 8 O^T tiles), and the two score parts are added
  // Head_dim 64 (D64): a K lane holds half of block t4 / 2 (values of pairs 8 (t4 % 2) ..
  // + 7), a V lane values 4 (g / 4) + {0..3, 8..11} of unit g % 4; 4 mma per product.
  constexpr int NBG = D >= 128 ? D / 128 : 1;
  constexpr bool D64 = D == 64;
  constexpr int NM = D64 ? 4 : 8;                     // mma per product and group
  constexpr int NOT = NBG * NM;                       // O^T tiles
  static_assert(D == 64 || D == 128 || D == 256, "head_dim 64, 128 or 256");
  constexpr int HB = D / RF_MX_BLOCK * BB;            // bytes of one head of one position
  constexpr int SL = HW * HB;                         // the workgroup's slice of a position
  // RUN: a slice of 1 or 2 heads that is not whole 16-byte chunks (MX pages), where the
  // workgroup holds whole rows (HW == n_kv_heads, row_bytes == SL; not SLC), so that a tile is
  // one contiguous run of 16 SL bytes (see issue() below).  Otherwise slices are copied per
  // position in pieces of 16 bytes, or 8 or 4 where SL is not a multiple of 16 (4 MX heads
  // at head_dim 64: 136-264 bytes; SLC, 1 or 2 MX heads of a wider row: 68-264 bytes).
  // UNA (the d64 _h1u kernels): one MX head of head_dim 64, 2 blocks (MXFP6 50 bytes, MXFP4 34,
  // MXFP8 66), which are not whole 4-byte words, so a position's slice starts 0 or 2 bytes
  // past a word (row_bytes even): each position copies the NCH words that hold its slice
  // (4-byte pieces, the slice plus 2 bytes before or after it), NCH words apart in shared
  // memory, and the readers add the slice's offset in its first word (upos below).
  static_assert(!UNA || (HW == 1 && D == 64 && F::bits != 16 && SL % 4 == 2), "UNA: one MX head of 64");
  constexpr bool RUN = HW < 4 && SL % 16 != 0 && !SLC && !UNA;
  constexpr int PB = UNA ? 4 : SL % 16 == 0 ? 16 : SL % 8 == 0 ? 8 : 4;   // bytes per piece (!RUN)
  static_assert(UNA || SL % 4 == 0, "a slice is whole 4-byte words");
  constexpr int NCH = UNA ? (SL + 5) / 4 : SL / PB;   // pieces per position (slices, !RUN)
  constexpr int PSM = UNA ? 4 * NCH : SL;             // MX pages: shared-memory bytes per position
  // 16-bit pages (float16, bfloat16): positions 16 bytes apart beyond their slice, so that
  // the 8 rows an ldmatrix reads (8 positions) fall on different banks; MX slices stay packed
  constexpr bool P16 = F::bits == 16;
  constexpr bool BF = P16 && F::ebits == 8;           // bfloat16 (else float16) mma operands
  constexpr int PAD = P16 ? 16 : 0;
  constexpr int PS = UNA ? PSM : SL + PAD;            // shared-memory bytes per position
  constexpr int BUFW = (16 * PS + 16) / 4;            // words per buffer (+16 bytes read slack)
  constexpr int NST = 3;
  constexpr int NWO = H::NWO;                         // words of a whole K block
  constexpr int NC = K::CB / 4;                       // code words of a V unit
  constexpr float MARGIN = 8.0f;                      // p <= 2^8 before M moves
  rf_u32 (*const sm)[2][BUFW] = reinterpret_cast<rf_u32 (*)[2][BUFW]>(rf_staged_smem);  // [NST]
#if !defined(RF_HAVE_FP8_CVT)
  if (F::bits == 8) {   // E4M3 needs the sm_89+ conversion; the launcher never runs this
    __trap();
    return;
  }
#endif

  const int tid = (int)rf_thread_idx_x();
  const int lane = tid & 31, w = tid >> 5, g = lane >> 2, t4 = lane & 3;
  int idx = (int)rf_block_idx_x();
  const int n_hg = n_kv_heads / HW;
  const int hg = idx % n_hg; idx /= n_hg;
  const int split = idx % n_splits;
  const int b = idx / n_splits;
  const int len = seq_lens[b];
  const int start = window > 0 ? rf_max_i32(0, len - window) : 0;
  const int t_lo = (start >> 4) + split * split_tiles;
  const int t_hi = rf_min_i32((len + 15) >> 4, t_lo + split_tiles);
  const int group = n_q_heads / n_kv_heads;
  const int qh0 = (hg * HW + w) * group;
  const rf_i32* table = page_table + (rf_i64)b * table_stride;
  const int tpp = page_size >> 4;                     // tiles per page
  const float neg_inf = rf_uint_as_float(0xff800000u);
#if defined(RF_STAGED_TRACE)   // timing experiment only (docs/KV_ATTENTION_PERF.md): globaltimer marks
  rf_u64 tr[4] = {0, 0, 0, 0}, tc[4] = {0, 0, 0, 0};   // globaltimer (ns), clock64 (cycles)
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tr[0]));
  tc[0] = clock64();
#endif

  // ---- this thread's pieces of a tile: piece c = tid + NT i (i < CPK) of the K slices
  // and the same piece of the V slices: position p = c / NCH, piece j = c % NCH; goff =
  // p * row_bytes + PB j | p (16-byte pieces) or that << 4 | p (8- or 4-byte ones).  (RUN:
  // 16-byte chunk c of the tile's run.  UNA: p * row_bytes - upos(p) + 4 j, from the word
  // that holds the slice's first byte; negative for p = 0 where that word starts 2 bytes
  // before the slice, and >> 4 keeps the sign.)
  // upos(p): byte of position p's slice in its first word (UNA; else 0).  The tile's base
  // (page * page_size + 16 tin) * row_bytes is a multiple of 16 bytes, so this is
  // (hg SL + p row_bytes) mod 4; positions p and p + 8 share it.
  auto upos = [&](int p) { return UNA ? (hg * SL + p * row_bytes) & 3 : 0; };
  constexpr int CPK = RUN ? (SL + NT - 1) / NT : (16 * NCH + NT - 1) / NT;
  constexpr int BUFB = BUFW * 4;                      // bytes per buffer
  rf_i32 goff[CPK];
#pragma unroll
  for (int i = 0; i < CPK; ++i) {
    const int c = tid + NT * i, p = RUN ? 0 : c / NCH;
    goff[i] = RUN ? 16 * c : PB == 16 ? (p * row_bytes + 16 * (c - p * NCH)) | p
                                      : (p * row_bytes - upos(p) + PB * (c - p * NCH)) * 16 | p;
  }
  auto goff_at = [&](int i) { return RUN || PB == 16 ? goff[i] & ~15 : goff[i] >> 4; };   // byte offset
  const bool last_ok = tid + NT * (CPK - 1) < (RUN ? SL : 16 * NCH);  // the last i has a piece
  constexpr int CB16 = RUN ? 16 : PB;                 // bytes per copy of the main path
  const rf_u32 sm_t = rf_smem_u32(&sm[0][0][0]) + (rf_u32)CB16 * (rf_u32)tid;
#if defined(RF_STAGED_NOCOPY)   // timing experiment only (docs/KV_ATTENTION_PERF.md): the arithmetic alone
  for (int i = tid; i < NST * 2 * BUFW; i += NT) (&sm[0][0][0])[i] = 0x01010101u;
  rf_barrier();
  auto issue = [&](int, int, int, int) { rf_cp_async_commit(); };
#else
  auto issue = [&](int T, int st, int page, int tin) {
    if (T < t_hi) {
      const rf_i64 base = ((rf_i64)page * page_size + tin * 16) * row_bytes + (rf_i64)hg * SL;
      const rf_u8* kb = k_pages + base;
      const rf_u8* vb = v_pages + base;
      const rf_u32 dst = sm_t + (rf_u32)(st * 2 * BUFB);
      if (16 * T >= start && 16 * T + 16 <= len) {    // every position of the tile attended
#pragma unroll
        for (int i = 0; i < CPK; ++i) {
          if (i < CPK - 1 || last_ok) {
            const rf_u32 d = dst + (rf_u32)CB16 * NT * i + (rf_u32)(PAD * (goff[i] & 15));
            rf_cp_async<CB16>(d, kb + goff_at(i), (rf_u32)CB16);
            rf_cp_async<CB16>(d + BUFB, vb + goff_at(i), (rf_u32)CB16);
          }
        }
      } else if constexpr (RUN) {                       // word by word, zero-filling positions
        const rf_u32 d0 = rf_smem_u32(&sm[0][0][0]) + (rf_u32)(st * 2 * BUFB);   // outside [start, len)
#pragma unroll 1
        for (int u = tid; u < 4 * SL; u += NT) {        // word u of the run: position u / (SL / 4)
          const int pos = 16 * T + u / (SL / 4);
          const rf_u32 n = pos >= start && pos < len ? 4u : 0u;
          rf_cp_async4(d0 + 4u * (rf_u32)u, kb + 4 * u, n);
          rf_cp_async4(d0 + 4u * (rf_u32)u + BUFB, vb + 4 * u, n);
        }
      } else {                                          // zero-fill positions outside [start, len)
#pragma unroll
        for (int i = 0; i < CPK; ++i) {
          if (i < CPK - 1 || last_ok) {
            const int pos = 16 * T + (goff[i] & 15);
            const rf_u32 n = pos >= start && pos < len ? (rf_u32)PB : 0u;
            const rf_u32 d = dst + (rf_u32)PB * NT * i + (rf_u32)(PAD * (goff[i] & 15));
            rf_cp_async<PB>(d, kb + goff_at(i), n);
            rf_cp_async<PB>(d + BUFB, vb + goff_at(i), n);
          }
        }
      }
    }
    rf_cp_async_commit();
  };
#endif

  // ---- prologue: the first three tiles' page-table entries and q are read before any copy
  // is issued (the copies' asm is a memory barrier to the compiler, so a read placed after
  // one would wait for it); then tiles t_lo and t_lo + 1 go in flight before q is used.
  // (pi_n, tin_n): page index and tile-in-page of the next tile to issue, advanced per step.
  // Without a window t_lo does not depend on len: the entries are then read at indexes
  // clamped into the table's row, unconditionally (an entry past the sequence is padding and
  // never used: issue() checks T < t_hi), so these loads leave together with the seq_lens
  // load instead of waiting for it.
  auto next_tile = [&](int& pi, int& tin) {   // (page index, tile in page) of the next tile
    if (++tin == tpp) {
      tin = 0;
      ++pi;
    }
  };
  int pi_n, tin_n, pi1, tin1, pi2, tin2, pg0, pg1, pg_next;
  auto first_pages = [&](int t0) {
    pi_n = t0 / tpp;
    tin_n = t0 - pi_n * tpp;
    pi1 = pi_n, tin1 = tin_n;
    next_tile(pi1, tin1);
    pi2 = pi1, tin2 = tin1;
    next_tile(pi2, tin2);
    const int last = table_stride - 1;
    pg0 = table[rf_min_i32(pi_n, last)];
    pg1 = table[rf_min_i32(pi1, last)];
    pg_next = table[rf_min_i32(pi2, last)];
  };
  if (window > 0)
    first_pages(t_lo);
  else
    first_pages(split * split_tiles);
  float qv[NBG][32];
  if constexpr (P16) {   // pair p = values 16 (p / 2) + 2 t4 + 8 (p % 2) + {0, 1}: ldmatrix's K order
    const float* qg = q + ((rf_i64)b * n_q_heads + qh0 + (g < group ? g : 0)) * D + 2 * t4;
#pragma unroll
    for (int bg = 0; bg < NBG; ++bg) {
#pragma unroll
      for (int m = 0; m < 8; ++m) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (m < NM) {
            const float2 x = *(const float2*)(qg + 128 * bg + 16 * m + 8 * e);
            qv[bg][4 * m + 2 * e] = x.x;
            qv[bg][4 * m + 2 * e + 1] = x.y;
          } else {                       // head_dim 64: pairs 8.. unused
            qv[bg][4 * m + 2 * e] = qv[bg][4 * m + 2 * e + 1] = 0.0f;
          }
        }
      }
    }
  } else if constexpr (D64) {   // block t4 / 2; lanes t4 % 2 == 1 take pairs 8.. of it (values
    // 16.. of FP6 / E4M3, 8..15 and 24.. of FP4) as their pairs 0..7
    const float* qg = q + ((rf_i64)b * n_q_heads + qh0 + (g < group ? g : 0)) * D + 32 * (t4 >> 1);
    float x[32];
    rf_load_q32(qg, x);
    constexpr int SH = F::bits == 4 ? 8 : 16;
#pragma unroll
    for (int k = 0; k < 32; ++k) qv[0][k] = (t4 & 1) ? (k + SH < 32 ? x[k + SH] : 0.0f) : x[k];
  } else {
#pragma unroll
    for (int bg = 0; bg < NBG; ++bg)
      rf_load_q32(q + ((rf_i64)b * n_q_heads + qh0 + (g < group ? g : 0)) * D + 128 * bg + 32 * t4, qv[bg]);
  }
  issue(t_lo, 0, pg0, tin_n);
  issue(t_lo + 1, 1, pg1, tin1);
  pi_n = pi2;
  tin_n = tin2;

  // ---- Q^T (B operand, column g = query head qh0 + g): pairs of block t4 (+ 4 bg) as the K
  // lanes, scaled by 2^-qe (max |q| of the head's 128 values of group bg in [1, 2)); qfh[bg][e]:
  // 2^qe * scale (x log2 e without a softcap) of heads 2 t4 + e, the columns of this lane's scores.
  rf_u32 qb[NBG][8][2], ql[P16 ? NBG : 1][8][2];   // ql: the 16-bit pages' lo parts of q
  float qfh[NBG][2];
#pragma unroll
  for (int bg = 0; bg < NBG; ++bg) {
    const float qf = (P16 ? rf_q_pairs_split<BF>(qv[bg], g < group, qb[bg], ql[P16 ? bg : 0])
                          : rf_q_pairs_h16<F>(qv[bg], g < group, qb[bg])) *
                     scale * (softcap > 0.0f ? 1.0f : RF_LOG2E);
#pragma unroll
    for (int e = 0; e < 2; ++e)
      qfh[bg][e] = __shfl_sync(0xffffffffu, qf, 4 * (2 * t4 + e));
  }
  float o[NOT][4];   // O^T: values i, i + 8 of unit g + 8 (i / 8) x heads 2 t4, 2 t4 + 1
#pragma unroll
  for (int i = 0; i < NOT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m_run[2] = {neg_inf, neg_inf}, l_run[2] = {0.0f, 0.0f};
  int ev_run[NBG];  // V reference scale (E8M0) of each group of 8 units, warp-uniform
#pragma unroll
  for (int bg = 0; bg < NBG; ++bg) ev_run[bg] = 0;

  int st = 0;
  for (int T = t_lo; T < t_hi; ++T) {   // uniform over the workgroup
    const int pg_use = pg_next, tin_use = tin_n;
    next_tile(pi_n, tin_n);             // tile T + 3
    pg_next = T + 3 < t_hi ? table[pi_n] : 0;
    rf_cp_async_wait1();                // tile T has landed (T + 1 may still be in flight)
    rf_barrier();                       // ... for every thread; and buffer (st + 2) % 3 is free
#if defined(RF_STAGED_TRACE)
    if (T == t_lo) {
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tr[1]));
      tc[1] = clock64();
    }
#endif
    issue(T + 2, st >= 1 ? st - 1 : 2, pg_use, tin_use);
    const rf_u32* kwds = &sm[st][0][0];
    const rf_u32* vwds = &sm[st][1][0];
    st = st == NST - 1 ? 0 : st + 1;
#if defined(RF_STAGED_NOMATH)   // timing experiment only (docs/KV_ATTENTION_PERF.md): the copies alone
    continue;
#endif

    // S^T = K Q^T (per group bg of 128 values: sc[bg], scaled by sfp[bg] and qfh[bg])
    float sfp[NBG][2];                 // the position's K reference scale (MX) in group bg
    float sc[NBG][4];
#pragma unroll
    for (int bg = 0; bg < NBG; ++bg) {
      sfp[bg][0] = sfp[bg][1] = 1.0f;
      sc[bg][0] = sc[bg][1] = sc[bg][2] = sc[bg][3] = 0.0f;
    }
    if constexpr (P16) {   // A = K straight from shared memory: position l % 16, values + 8 (l / 16)
      const rf_u32 ka = rf_smem_u32(kwds) + (rf_u32)((lane & 15) * PS + w * HB + 16 * (lane >> 4));
#pragma unroll
      for (int bg = 0; bg < NBG; ++bg) {
#pragma unroll
        for (int m = 0; m < NM; ++m) {
          rf_u32 a0, a1, a2, a3;
          rf_ldmatrix_x4(ka + 256u * (rf_u32)bg + 32u * (rf_u32)m, a0, a1, a2, a3);
          rf_mma_16_full<BF>(sc[bg], a0, a1, a2, a3, qb[bg][m][0], qb[bg][m][1]);
          rf_mma_16_full<BF>(sc[bg], a0, a1, a2, a3, ql[P16 ? bg : 0][m][0], ql[P16 ? bg : 0][m][1]);
        }
      }
    } else {
#pragma unroll
      for (int bg = 0; bg < NBG; ++bg) {
        rf_u32 wd[2][NWO], fk[2];
#pragma unroll
        for (int tt = 0; tt < 2; ++tt) {
          // byte offset of the block, and where the lane reads it from (head_dim 64: half t4 % 2
          // of block t4 / 2, its codes from K::CB bytes on, the block's scale byte read apart)
          const int ob = (8 * tt + g) * PSM + upos(g) + w * HB + (D64 ? t4 >> 1 : 4 * bg + t4) * BB;
          const int oh = D64 ? ob + (t4 & 1) * K::CB : ob;
          const rf_u32* a = kwds + (oh >> 2);
          rf_u32 raw[NWO];
#pragma unroll
          for (int i = 0; i < NWO; ++i) raw[i] = a[i];
          sfp[bg][tt] = rf_e8m0_to_float((rf_u32)rf_k_block_h16<F>(raw, (rf_u32)(oh & 3) * 8u, wd[tt], fk[tt],
                                                                   D64 ? (int)((const rf_u8*)kwds)[ob] : -1));
        }
#pragma unroll
        for (int m = 0; m < NM; ++m) {
          rf_mma_f16_full(sc[bg], rf_h2_mul(rf_h16_pair_at<F>(wd[0], 1, 2 * m), fk[0]),
                          rf_h2_mul(rf_h16_pair_at<F>(wd[1], 1, 2 * m), fk[1]),
                          rf_h2_mul(rf_h16_pair_at<F>(wd[0], 1, 2 * m + 1), fk[0]),
                          rf_h2_mul(rf_h16_pair_at<F>(wd[1], 1, 2 * m + 1), fk[1]), qb[bg][m][0], qb[bg][m][1]);
        }
      }
    }
    // scores (base 2) of positions g + 8 tt, heads 2 t4 + e
    float s[2][2];
    bool need = false;
    const bool full = 16 * T >= start && 16 * T + 16 <= len;   // uniform
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      const int pos = 16 * T + 8 * tt + g;
      const bool valid = full || (pos >= start && pos < len);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = sc[0][2 * tt + e] * (sfp[0][tt] * qfh[0][e]);
#pragma unroll
        for (int bg = 1; bg < NBG; ++bg) x = rf_fmaf(sc[bg][2 * tt + e], sfp[bg][tt] * qfh[bg][e], x);
        if (softcap > 0.0f) x = rf_softcap(x, softcap) * RF_LOG2E;
        s[tt][e] = valid ? x : neg_inf;
        need |= s[tt][e] > m_run[e] + MARGIN;
      }
    }
    if (__any_sync(0xffffffffu, need)) {   // the maximum moves: reduce over the head's 8 lanes
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float mx = rf_fmaxf(s[0][e], s[1][e]);
        mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 4));
        mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 8));
        mx = rf_fmaxf(mx, rf_shfl_xor_f(mx, 16));
        const float m_new = rf_fmaxf(m_run[e], mx);
        if (m_new > m_run[e]) {
          const float alpha = rf_exp2f(m_run[e] - m_new);   // 0 when m_run was -inf
          l_run[e] *= alpha;
#pragma unroll
          for (int i = 0; i < NOT; ++i) {
            o[i][e] *= alpha;
            o[i][2 + e] *= alpha;
          }
          m_run[e] = m_new;
        }
      }
    }
    float p[2][2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const float mr = m_run[e] == neg_inf ? 0.0f : m_run[e];
      p[0][e] = rf_exp2f(s[0][e] - mr);
      p[1][e] = rf_exp2f(s[1][e] - mr);
      l_run[e] += p[0][e] + p[1][e];
    }
    rf_u32 pb0, pb1, pl0 = 0u, pl1 = 0u;   // P^T (16-bit pages: hi pb, lo pl)
    if constexpr (P16) {
      rf_u32 h0, l0, h1, l1;
      rf_split_x2<BF>(p[0][0], p[0][1], h0, l0);
      rf_split_x2<BF>(p[1][0], p[1][1], h1, l1);
      pb0 = rf_movmatrix_t(h0);
      pb1 = rf_movmatrix_t(h1);
      pl0 = rf_movmatrix_t(l0);
      pl1 = rf_movmatrix_t(l1);
    } else {
      pb0 = rf_movmatrix_t(rf_pack_half2_rn(p[0][0], p[0][1]));
      pb1 = rf_movmatrix_t(rf_pack_half2_rn(p[1][0], p[1][1]));
    }

    // O^T += V^T P^T
    if constexpr (P16) {   // A = V^T by transposing loads: position (l % 8) + 8 (l / 16), values + 8 ((l / 8) % 2)
      const rf_u32 va = rf_smem_u32(vwds) +
                        (rf_u32)(((lane & 7) + 8 * (lane >> 4)) * PS + w * HB + 16 * ((lane >> 3) & 1));
#pragma unroll
      for (int i = 0; i < NOT; ++i) {   // values 16 i .. 16 i + 15 of the head
        rf_u32 a0, a1, a2, a3;
        rf_ldmatrix_x4_trans(va + 32u * (rf_u32)i, a0, a1, a2, a3);
        rf_mma_16_full<BF>(o[i], a0, a1, a2, a3, pb0, pb1);
        rf_mma_16_full<BF>(o[i], a0, a1, a2, a3, pl0, pl1);
      }
    } else {
#pragma unroll
      for (int bg = 0; bg < NBG; ++bg) {   // V unit g + 8 bg: O^T tiles 8 bg .. 8 bg + 7
        rf_u32 cw[4][NC + 2], vsb[4];
        // head_dim 64: unit g % 4, its code stream read from value 4 (g / 4) on (3 bytes of FP6,
        // else 4: FP4 holds values v and v + 8 in byte v % 8), so that values i, i + 8 of the
        // stream are the unit's 4 (g / 4) + i, + 8
        const int un = D64 ? (g & 3) : 8 * bg + g;
        const int ovs = D64 ? (g >> 2) * (F::bits == 6 ? 3 : 4) : 0;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int pv = 8 * (r >> 1) + 2 * t4 + (r & 1);
          const int blk = pv * PSM + upos(pv) + w * HB + (un >> 1) * BB;   // byte offset of the unit's block
          const int oc = blk + 1 + (un & 1) * K::CB + ovs;          // ... of its codes
          const rf_u32* a = vwds + (oc >> 2);
          const rf_u32 sh = (rf_u32)(oc & 3) * 8u;
          rf_u32 raw[NC + 1];
#pragma unroll
          for (int i = 0; i <= NC; ++i) raw[i] = a[i];
#pragma unroll
          for (int i = 0; i < NC; ++i) cw[r][i] = rf_funnel_r(raw[i], raw[i + 1], sh);
          if (F::bits == 6) {
            cw[r][NC] = rf_funnel_r(cw[r][0], cw[r][1], 16u);
            cw[r][NC + 1] = rf_funnel_r(cw[r][1], cw[r][2], 16u);
          } else {
            cw[r][NC] = cw[r][NC + 1] = 0u;
          }
          vsb[r] = ((const rf_u8*)vwds)[blk];
        }
        const int ev_step = (int)__reduce_max_sync(
            0xffffffffu, rf_max_u32(rf_max_u32(vsb[0], vsb[1]), rf_max_u32(vsb[2], vsb[3])));
        if (ev_step > ev_run[bg]) {  // warp-uniform
          const float alpha = rf_exp2f((float)(ev_run[bg] - ev_step));
#pragma unroll
          for (int i = NM * bg; i < NM * bg + NM; ++i) {
            o[i][0] *= alpha; o[i][1] *= alpha; o[i][2] *= alpha; o[i][3] *= alpha;
          }
          ev_run[bg] = ev_step;
        }
        const rf_u32 f01 = __byte_perm(rf_h16_pow2(H::EBIAS + (int)vsb[0] - ev_run[bg]),
                                       rf_h16_pow2(H::EBIAS + (int)vsb[1] - ev_run[bg]), 0x5410u);
        const rf_u32 f23 = __byte_perm(rf_h16_pow2(H::EBIAS + (int)vsb[2] - ev_run[bg]),
                                       rf_h16_pow2(H::EBIAS + (int)vsb[3] - ev_run[bg]), 0x5410u);
#pragma unroll
        for (int i = 0; i < NM; ++i) {
          rf_mma_f16_full(o[NM * bg + i], rf_h2_mul(rf_h16_cross<F, NC>(cw[0], cw[1], i), f01),
                          rf_h2_mul(rf_h16_cross<F, NC>(cw[0], cw[1], i + 8), f01),
                          rf_h2_mul(rf_h16_cross<F, NC>(cw[2], cw[3], i), f23),
                          rf_h2_mul(rf_h16_cross<F, NC>(cw[2], cw[3], i + 8), f23), pb0, pb1);
        }
      }
    }
  }

#if defined(RF_STAGED_TRACE)
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tr[2]));
  tc[2] = clock64();
#endif
  // ---- write this warp's partial results (heads 2 t4 + e < group, values of unit g) through
  // shared memory, so that each head's row goes out as one coalesced 512-byte store of the
  // warp: 4-byte stores straight from the O^T fragments took about 3 us more at batch 1 x
  // 32k (H100: 33.2 vs 32.0 us; without any partial writes 29.3 -> 25.9 us, no combine).
  // Warp w's rows: 8 x D floats from word 8 D w of the (now idle) tile buffers; value v of
  // head h sits at word rf_staged_swz(v, h), which keeps the fragment stores free of bank
  // conflicts (MXFP6; MXFP4: 2-way) and a row's aligned groups of 4 values together.
#if defined(RF_STAGED_NOEPI)   // timing experiment only (docs/KV_ATTENTION_PERF.md): no partial results
  if (len > 0) return;
#endif
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    l_run[e] += rf_shfl_xor_f(l_run[e], 4);
    l_run[e] += rf_shfl_xor_f(l_run[e], 8);
    l_run[e] += rf_shfl_xor_f(l_run[e], 16);
  }
  float fo[NBG];
#pragma unroll
  for (int bg = 0; bg < NBG; ++bg) fo[bg] = P16 ? 1.0f : rf_e8m0_to_float((rf_u32)ev_run[bg]);
  rf_cp_async_wait_all();
  rf_barrier();                         // every warp is done with the tiles
  float* so = (float*)&sm[0][0][0] + w * 8 * D;
  static_assert(HW * 8 * D * 4 <= NST * 2 * BUFW * 4, "the staging rows fit the tile buffers");
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int h = 2 * t4 + e;
    if (h < group) {
      const rf_i64 row = ((rf_i64)b * n_q_heads + qh0 + h) * n_splits + split;
      float f[NBG];
#pragma unroll
      for (int bg = 0; bg < NBG; ++bg) f[bg] = m_run[e] == neg_inf ? 0.0f : fo[bg];
#pragma unroll
      for (int i = 0; i < NOT; ++i) {
        // O^T rows g and g + 8 of mma i: MX unit g + 8 (i / 8)'s values i % 8 and i % 8 + 8
        // (head_dim 64: unit g % 4's values 4 (g / 4) + i, + 8); float16 pages: values
        // 16 i + g and 16 i + g + 8
        const int u = D64 ? g & 3 : g + 8 * (i >> 3), k = D64 ? 4 * (g >> 2) + i : i & 7;
        so[h * D + rf_staged_swz(P16 ? 16 * i + g : K::elem(u, k), h)] = o[i][e] * f[i / NM];
        so[h * D + rf_staged_swz(P16 ? 16 * i + g + 8 : K::elem(u, k + 8), h)] = o[i][2 + e] * f[i / NM];
      }
      if (g == 0) {
        part_ml[row * 2] = m_run[e];
        part_ml[row * 2 + 1] = l_run[e];
      }
    }
  }
  __syncwarp();
  for (int h = 0; h < group; ++h) {     // lane: values 128 c + 4 lane .. + 3 of head h
    const rf_i64 row = ((rf_i64)b * n_q_heads + qh0 + h) * n_splits + split;
    if (D64 && lane >= 16) continue;     // head_dim 64: 16 lanes hold the row
#pragma unroll
    for (int c = 0; c < NBG; ++c) {     // the swizzle keeps each 128 values in place
      const float4 x = ((const float4*)(so + h * D))[32 * c + (lane ^ ((lane >> 3) & 3))];
      const int r = (h >> 1) & 3;       // value 4 lane + j sits in element j ^ r
      float4 y;
      y.x = r == 0 ? x.x : r == 1 ? x.y : r == 2 ? x.z : x.w;
      y.y = r == 0 ? x.y : r == 1 ? x.x : r == 2 ? x.w : x.z;
      y.z = r == 0 ? x.z : r == 1 ? x.w : r == 2 ? x.x : x.y;
      y.w = r == 0 ? x.w : r == 1 ? x.z : r == 2 ? x.y : x.x;
      ((float4*)(part_o + row * D))[32 * c + lane] = y;
    }
  }
#if defined(RF_STAGED_TRACE)   // overwrite the first 17 words of warp 0's first row
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tr[3]));
  tc[3] = clock64();
  __syncthreads();
  if (tid == 0) {
    rf_u32 smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    rf_u32* pt = (rf_u32*)(part_o + (((rf_i64)b * n_q_heads + hg * HW * group) * n_splits + split) * D);
    for (int k = 0; k < 4; ++k) {
      pt[2 * k] = (rf_u32)tr[k];
      pt[2 * k + 1] = (rf_u32)(tr[k] >> 32);
      pt[8 + 2 * k] = (rf_u32)tc[k];
      pt[9 + 2 * k] = (rf_u32)(tc[k] >> 32);
    }
    pt[16] = smid;
  }
#endif
}

// Workgroups of 4 warps per multiprocessor the compiler must fit (caps registers at 65536 /
// (128 x N)); the 1- and 2-warp kernels get the same cap.
#ifndef RF_ATTN_STAGED_OCCUPANCY
#define RF_ATTN_STAGED_OCCUPANCY 4
#endif
// attn_staged_<dtype>_d<D><SUFFIX>: HW KV heads (warps) a workgroup; SUFFIX "" for 4, _h2, _h1
// (and _h2s, _h1s below).
// Head_dim 256 doubles the accumulators and q registers, so its cap is half as many workgroups.
// SLC (the _h2s / _h1s kernels): the HW heads are a slice of wider MX rows, copied per position;
// a lone head's slice is 4-byte pieces (head_dim 128: 13 offsets a thread), so _h1s gets twice
// the registers (the plan runs 8 one-warp workgroups a multiprocessor, not 16); so does _h1u
// (UNA: one MX head of head_dim 64, copied as the words that hold it).
#define RF_ATTN_STAGED_HWSU(NAME, FMT, D, HW, SLC, UNA, SUFFIX)                                     \
  RF_KERNEL __launch_bounds__(32 * HW, RF_ATTN_STAGED_OCCUPANCY * 4 / HW * 128 / (D < 128 ? 128 : D) \
                                           / ((SLC || UNA) && HW == 1 ? 2 : 1))                      \
  attn_staged_##NAME##_d##D##SUFFIX(                                                                \
      float* __restrict__ part_o, float* __restrict__ part_ml, const float* __restrict__ q,          \
      const rf_u8* __restrict__ k_pages, const rf_u8* __restrict__ v_pages,                          \
      const rf_i32* __restrict__ page_table, const rf_i32* __restrict__ seq_lens, rf_i32 n_q_heads,  \
      rf_i32 n_kv_heads, rf_i32 page_size, rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits,   \
      rf_i32 split_tiles, rf_i32 window, float scale, float softcap) {                               \
    rf_attn_decode_staged<FMT, HW, D, SLC, UNA>(part_o, part_ml, q, k_pages, v_pages, page_table,    \
                                             seq_lens, n_q_heads, n_kv_heads, page_size, row_bytes,   \
                                             table_stride, n_splits, split_tiles, window, scale,      \
                                             softcap);                                                \
  }
#define RF_ATTN_STAGED_HWS(NAME, FMT, D, HW, SLC, SUFFIX) RF_ATTN_STAGED_HWSU(NAME, FMT, D, HW, SLC, false, SUFFIX)
#define RF_ATTN_STAGED_HW(NAME, FMT, D, HW, SUFFIX) RF_ATTN_STAGED_HWS(NAME, FMT, D, HW, false, SUFFIX)
#define RF_ATTN_STAGED(NAME, FMT, D)          \
  RF_ATTN_STAGED_HW(NAME, FMT, D, 4, )        \
  RF_ATTN_STAGED_HW(NAME, FMT, D, 2, _h2)     \
  RF_ATTN_STAGED_HW(NAME, FMT, D, 1, _h1)
RF_ATTN_STAGED(mxfp6_e2m3, rf_fmt_mxfp6_e2m3, 128)
RF_ATTN_STAGED(mxfp6_e3m2, rf_fmt_mxfp6_e3m2, 128)
RF_ATTN_STAGED(mxfp4, rf_fmt_mxfp4, 128)
RF_ATTN_STAGED(mxfp8_e4m3, rf_fmt_mxfp8_e4m3, 128)
RF_ATTN_STAGED(f16, rf_fmt_f16_pages, 128)
RF_ATTN_STAGED(bf16, rf_fmt_bf16_pages, 128)
RF_ATTN_STAGED_HW(f16, rf_fmt_f16_pages, 64, 4, )
RF_ATTN_STAGED_HW(f16, rf_fmt_f16_pages, 64, 2, _h2)
RF_ATTN_STAGED_HW(f16, rf_fmt_f16_pages, 64, 1, _h1)
RF_ATTN_STAGED_HW(bf16, rf_fmt_bf16_pages, 64, 4, )
RF_ATTN_STAGED_HW(bf16, rf_fmt_bf16_pages, 64, 2, _h2)
RF_ATTN_STAGED_HW(bf16, rf_fmt_bf16_pages, 64, 1, _h1)
// head_dim 64, MX: a head's 2 blocks are not whole 4-byte words (FP6 50 bytes), so one head
// a workgroup (1 KV head, or an odd number) is _h1u, which copies the words that hold it
#define RF_ATTN_STAGED64(NAME, FMT)         \
  RF_ATTN_STAGED_HW(NAME, FMT, 64, 4, )     \
  RF_ATTN_STAGED_HW(NAME, FMT, 64, 2, _h2)  \
  RF_ATTN_STAGED_HWSU(NAME, FMT, 64, 1, false, true, _h1u)
RF_ATTN_STAGED64(mxfp6_e2m3, rf_fmt_mxfp6_e2m3)
RF_ATTN_STAGED64(mxfp6_e3m2, rf_fmt_mxfp6_e3m2)
RF_ATTN_STAGED64(mxfp4, rf_fmt_mxfp4)
RF_ATTN_STAGED64(mxfp8_e4m3, rf_fmt_mxfp8_e4m3)
RF_ATTN_STAGED(mxfp6_e2m3, rf_fmt_mxfp6_e2m3, 256)
RF_ATTN_STAGED(mxfp6_e3m2, rf_fmt_mxfp6_e3m2, 256)
RF_ATTN_STAGED(mxfp4, rf_fmt_mxfp4, 256)
RF_ATTN_STAGED(mxfp8_e4m3, rf_fmt_mxfp8_e4m3, 256)
RF_ATTN_STAGED(f16, rf_fmt_f16_pages, 256)
RF_ATTN_STAGED(bf16, rf_fmt_bf16_pages, 256)
// Slices of wider rows where 1 or 2 MX heads are not whole 16-byte pieces (4 or 8 blocks:
// 68-264 bytes), e.g. 10 KV heads taken 2 a workgroup: 8- or 4-byte pieces per position.
#define RF_ATTN_STAGED_SLICES(NAME, FMT)              \
  RF_ATTN_STAGED_HWS(NAME, FMT, 64, 2, true, _h2s)    \
  RF_ATTN_STAGED_HWS(NAME, FMT, 128, 2, true, _h2s)   \
  RF_ATTN_STAGED_HWS(NAME, FMT, 128, 1, true, _h1s)   \
  RF_ATTN_STAGED_HWS(NAME, FMT, 256, 1, true, _h1s)
RF_ATTN_STAGED_SLICES(mxfp6_e2m3, rf_fmt_mxfp6_e2m3)
RF_ATTN_STAGED_SLICES(mxfp6_e3m2, rf_fmt_mxfp6_e3m2)
RF_ATTN_STAGED_SLICES(mxfp4, rf_fmt_mxfp4)
RF_ATTN_STAGED_SLICES(mxfp8_e4m3, rf_fmt_mxfp8_e4m3)

#endif

// Tensor cores where they exist (NVIDIA sm_80+, MX, head_dim 128: float16 for FP6/FP4, TF32
// for MXFP8, whose NaN codes the float16 bit trick would not keep), else the FMA kernel.
template <int KIND, class F, int D, int G>
RF_DEVICE void rf_attn_entry(float* __restrict__ part_o, float* __restrict__ part_ml, const float* __restrict__ q,
                             const rf_u8* __restrict__ k_pages, const rf_u8* __restrict__ v_pages,
                             const rf_i32* __restrict__ page_table, const rf_i32* __restrict__ seq_lens,
                             rf_i32 n_q_heads, rf_i32 n_kv_heads, rf_i32 q_sub, rf_i32 page_size,
                             rf_i32 page_shift, rf_i32 row_bytes, rf_i32 table_stride, rf_i32 n_splits,
                             rf_i32 split_len, rf_i32 window, float scale, float softcap) {
#if defined(RF_HAVE_TC_ATTN)
  if constexpr (KIND == 3 && D == 128 && F::special == 0 && !F::is_int && (F::bits == 6 || F::bits == 4)) {
    rf_attn_decode_h16<F, G>(part_o, part_ml, q, k_pages, v_pages, page_table, seq_lens, n_q_heads, n_kv_heads,
                             q_sub, page_size, page_shift, row_bytes, table_stride, n_splits, split_len, window,
                             scale, softcap);
    return;
  } else if constexpr (KIND == 3 && D == 128) {
    rf_attn_decode_tc<F, G>(part_o, part_ml, q, k_pages, v_pages, page_table, seq_lens, n_q_heads, n_kv_heads,
                            q_sub, page_size, page_shift, row_bytes, table_stride, n_splits, split_len, window,
                            scale, softcap);
    return;
  } else
#endif
  {
    rf_attn_decode<KIND, F, D, G>(part_o, part_ml, q, k_pages, v_pages, page_table, seq_lens, n_q_heads, n_kv_heads,
                                  q_sub, page_size, page_shift, row_bytes, table_stride, n_splits, split_len, window,
                                  scale, softcap);
  }
}

// ---------------------------------------------------------------- kernel 2
// One workgroup per (row, NV output values) with NL split lanes, NL = the largest power of
// two <= min(n_splits, 32) and NV = min(head_dim, 1024 / NL), so that hundreds of splits (a
// single long sequence spread over every multiprocessor) merge in parallel.  A thread takes
// 4 consecutive values (one 16-byte load per split) of splits sl, sl + NL, ... and loads
// the (M, L) and values of 4 of them at once (one trip for up to 4 NL splits), weighted by
// 2^(M_s - m) with m the largest M among them; the lanes' m meet through LDS, each lane's
// sums are rescaled to the row's maximum and added up through LDS.  History (H100, batch 1
// x 32k x 128 splits, attention + combine): a sequential fold, rescaled per split, 31.5-
// 32.0 us against 31.2 for two passes (every split's M first, then the weighted sums);
// this one trip 29.5 us against 29.9-30.0 for the two passes on one card (2026-11-26).
RF_KERNEL RF_LAUNCH_BOUNDS(RF_THREADS) attn_combine(float* __restrict__ out, const float* __restrict__ part_o,
                                                    const float* __restrict__ part_ml, rf_i32 n_splits,
                                                    rf_i32 head_dim) {
  // NL split lanes x NV values per workgroup (NL = the largest power of two <= min(n_splits,
  // 32), NV = min(head_dim, 1024 / NL)).
  const int NL = n_splits >= 32 ? 32 : n_splits >= 16 ? 16 : n_splits >= 8 ? 8 : n_splits >= 4 ? 4
               : n_splits >= 2 ? 2 : 1;
  const int NV = rf_min_i32(head_dim, 1024 / NL), NQ = NV / 4;
  RF_SHARED float sm_x[1024], sm_d[32], sm_m[32];
  const int n_chunks = head_dim / NV;
  const rf_i64 row = rf_block_idx_x() / n_chunks;
  const int chunk = (int)(rf_block_idx_x() % n_chunks);
  const int tid = (int)rf_thread_idx_x();
  const int ql = tid % NQ, sl = tid / NQ;
  const bool act = sl < NL;
  const float neg_inf = rf_uint_as_float(0xff800000u);
  const float* ml = part_ml + row * n_splits * 2;
  const rf_u32x4* po = (const rf_u32x4*)(part_o + row * n_splits * head_dim + chunk * NV) + ql;
  // One trip for up to 4 NL splits: every split's (M, L) and values are loaded at once and
  // weighted by 2^(M_s - m) with m the largest M of this thread's splits (a later trip, for
  // more splits, rescales the sums when m grows); the lanes' m then meet through LDS.
  float m = neg_inf, x0 = 0.0f, x1 = 0.0f, x2 = 0.0f, x3 = 0.0f, d = 0.0f;
  if (act) {
    for (int s0 = sl; s0 < n_splits; s0 += 4 * NL) {
      float ms[4], ls[4];
      rf_u32x4 xs[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int s = rf_min_i32(s0 + NL * k, n_splits - 1);
        ms[k] = s0 + NL * k < n_splits ? ml[2 * s] : neg_inf;
        ls[k] = ml[2 * s + 1];
        xs[k] = po[(rf_i64)s * (head_dim / 4)];
      }
      const float mn = rf_fmaxf(rf_fmaxf(m, rf_fmaxf(ms[0], ms[1])), rf_fmaxf(ms[2], ms[3]));
      if (mn == neg_inf) continue;        // every split so far empty
      if (mn > m) {
        const float a = rf_exp2f(m - mn); // 0 while m is -inf
        d *= a; x0 *= a; x1 *= a; x2 *= a; x3 *= a;
        m = mn;
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (ms[k] != neg_inf) {           // an empty split adds nothing
          const float w = rf_exp2f(ms[k] - m);
          d = rf_fmaf(w, ls[k], d);
          x0 = rf_fmaf(w, rf_uint_as_float(xs[k].x), x0);
          x1 = rf_fmaf(w, rf_uint_as_float(xs[k].y), x1);
          x2 = rf_fmaf(w, rf_uint_as_float(xs[k].z), x2);
          x3 = rf_fmaf(w, rf_uint_as_float(xs[k].w), x3);
        }
      }
    }
    if (ql == 0) sm_m[sl] = m;
  }
  rf_barrier();
  if (act) {
    float mx = sm_m[0];
    for (int i = 1; i < NL; ++i) mx = rf_fmaxf(mx, sm_m[i]);
    const float a = m == neg_inf ? 0.0f : rf_exp2f(m - mx);
    sm_x[sl * NV + 4 * ql] = x0 * a;
    sm_x[sl * NV + 4 * ql + 1] = x1 * a;
    sm_x[sl * NV + 4 * ql + 2] = x2 * a;
    sm_x[sl * NV + 4 * ql + 3] = x3 * a;
    if (ql == 0) sm_d[sl] = d * a;
  }
  rf_barrier();
  for (int v = tid; v < NV; v += RF_THREADS) {   // sum over the split lanes
    float x = 0.0f, dd = 0.0f;
    for (int i = 0; i < NL; ++i) {
      x += sm_x[i * NV + v];
      dd += sm_d[i];
    }
    out[row * head_dim + chunk * NV + v] = x / dd;
  }
}

// ---------------------------------------------------------------- entry points
// Workgroups per multiprocessor the compiler must fit (NVIDIA), a knob for the float16
// body: 2 caps it at 128 registers (16 warps per SM instead of 8) but spills ~300 bytes a
// thread and ran slower on an H100 (batch 16 x 32k MXFP6: 0.71 vs 0.69 ms, 0.86 vs 0.61 ms
// on later revisions), so 1.
#ifndef RF_ATTN_H16_OCCUPANCY
#define RF_ATTN_H16_OCCUPANCY 1
#endif
template <int KIND, class F, int D>
struct rf_attn_occupancy {
#if defined(RF_HAVE_H16_ATTN)
  static constexpr int value = KIND == 3 && D == 128 && F::special == 0 && !F::is_int &&
                               (F::bits == 6 || F::bits == 4) ? RF_ATTN_H16_OCCUPANCY : 1;
#else
  static constexpr int value = 1;
#endif
};
#if defined(__CUDACC__)
#define RF_ATTN_BOUNDS(KIND, FMT, D) __launch_bounds__(RF_THREADS, rf_attn_occupancy<KIND, FMT, D>::value)
#else
#define RF_ATTN_BOUNDS(KIND, FMT, D) RF_LAUNCH_BOUNDS(RF_THREADS)
#endif
#define RF_ATTN_KERNEL(NAME, KIND, FMT, D, G)                                                        \
  RF_KERNEL RF_ATTN_BOUNDS(KIND, FMT, D) attn_decode_##NAME##_d##D##_g##G(                                   \
      float* __restrict__ part_o, float* __restrict__ part_ml, const float* __restrict__ q,          \
      const rf_u8* __restrict__ k_pages, const rf_u8* __restrict__ v_pages,                          \
      const rf_i32* __restrict__ page_table, const rf_i32* __restrict__ seq_lens, rf_i32 n_q_heads,  \
      rf_i32 n_kv_heads, rf_i32 q_sub, rf_i32 page_size, rf_i32 page_shift, rf_i32 row_bytes,        \
      rf_i32 table_stride, rf_i32 n_splits, rf_i32 split_len, rf_i32 window, float scale,           \
      float softcap) {                                                                               \
    rf_attn_entry<KIND, FMT, D, G>(part_o, part_ml, q, k_pages, v_pages, page_table, seq_lens,      \
                                    n_q_heads, n_kv_heads, q_sub, page_size, page_shift, row_bytes,  \
                                    table_stride, n_splits, split_len, window, scale, softcap);      \
  }
#define RF_ATTN_G(NAME, KIND, FMT, D) \
  RF_ATTN_KERNEL(NAME, KIND, FMT, D, 1) RF_ATTN_KERNEL(NAME, KIND, FMT, D, 2) RF_ATTN_KERNEL(NAME, KIND, FMT, D, 4)
#define RF_ATTN_DTYPE(NAME, KIND, FMT) \
  RF_ATTN_G(NAME, KIND, FMT, 64) RF_ATTN_G(NAME, KIND, FMT, 128) RF_ATTN_G(NAME, KIND, FMT, 256)

RF_ATTN_DTYPE(f32, 0, rf_fmt_mxfp4)
RF_ATTN_DTYPE(f16, 1, rf_fmt_mxfp4)
RF_ATTN_DTYPE(bf16, 2, rf_fmt_mxfp4)
RF_ATTN_DTYPE(mxfp8_e4m3, 3, rf_fmt_mxfp8_e4m3)
RF_ATTN_DTYPE(mxfp6_e2m3, 3, rf_fmt_mxfp6_e2m3)
RF_ATTN_DTYPE(mxfp6_e3m2, 3, rf_fmt_mxfp6_e3m2)
RF_ATTN_DTYPE(mxfp4, 3, rf_fmt_mxfp4)
