// kernels/model_ops.hip: the element-wise and attention steps of the transformer forward
// pass (float32 activations), mirroring rocmforge/model/transformer.py and
// rocmforge/kv/attention.py on the CPU.  References: rocmforge/ops/model_ops.py (*_cpu).
// All kernels: 256 threads per workgroup; outputs first, then inputs, then scalars.
//
//   rms_norm_f32(out (R, W), x (R, W), w (W,), R, W, eps)          grid = R
//       out = x * (1 / sqrt(mean(x^2) + eps)) * w   (in place allowed: out == x)
//   rms_norm_add_f32(x (R, W), o (R, W), w (W,), R, W, eps)        grid = R
//       x += rms_norm(o) * w                        (Gemma's post-norms)
//   add_f32(x (n,), o (n,), n)                                      grid = ceil(n / 256)
//   act_mul_f32(out (n,), g (n,), u (n,), n, kind)                  grid = ceil(n / 256)
//       out = act(g) * u, kind 0 = silu, 1 = gelu_tanh
//   rope_f32(x (T, Hh, d), pos (T,) i32, tab (P, 2, d_rot/2), T, Hh, d, d_rot, neox)
//       in place; tab[p, 0] = cos, tab[p, 1] = sin of p * base^(-2i/d_rot) / scale
//       (computed on the host in float64 like the CPU op); grid = ceil(T*Hh*d_rot/2 / 256)
//   kv_store_f32(kc, vc, k (T, R), v (T, R), slot (T,), pos (T,), T, R, slot_stride, layer_off)
//       kc[slot*slot_stride + layer_off + pos*R + c] = k[t, c]; grid = ceil(T*R / 256)
//   attention_f32(out (T, H, d), part, q (T, H, d), kc, vc, fk (., KV*d), fv, slot (T,),
//                 pos (T,), T, H, KV, d, slot_stride, layer_off, fresh_start, window, scale,
//                 n_split) + attention_combine_f32(out, part, T*H, d, n_split) if n_split > 1
//       query t (at position pos[t] of the sequence in cache slot slot[t]) attends over
//       keys j in [lo, pos[t]], lo = window > 0 ? max(0, pos - window + 1) : 0; key j is
//       fresh row j - fresh_start (the unquantized K/V of this prefill chunk) when
//       j >= fresh_start, else cache row j.  Online softmax over chunks of 256 keys;
//       n_split workgroups per (t, h) split the keys (flash-decoding), their partial
//       (o, m, l) combined by attention_combine_f32; d <= 512.
#include "rocmforge/mx.h"

#define RF_T 256

// Sum / max over the workgroup (every thread calls it, from uniform control flow; red
// holds at least 8 floats): xor shuffles inside each aligned group of 32 lanes, then the
// 8 group results through LDS (two barriers).
RF_DEVICE float rf_block_sum(float v, float* red) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) v += rf_uint_as_float(rf_shfl_xor_u32(rf_float_as_uint(v), m));
  const rf_u32 tid = rf_thread_idx_x();
  if ((tid & 31u) == 0) red[tid >> 5] = v;
  rf_barrier();
  float r = red[0];
#pragma unroll
  for (int i = 1; i < RF_T / 32; ++i) r += red[i];
  rf_barrier();
  return r;
}
RF_DEVICE float rf_block_max(float v, float* red) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) v = rf_fmaxf(v, rf_uint_as_float(rf_shfl_xor_u32(rf_float_as_uint(v), m)));
  const rf_u32 tid = rf_thread_idx_x();
  if ((tid & 31u) == 0) red[tid >> 5] = v;
  rf_barrier();
  float r = red[0];
#pragma unroll
  for (int i = 1; i < RF_T / 32; ++i) r = rf_fmaxf(r, red[i]);
  rf_barrier();
  return r;
}

RF_KERNEL RF_LAUNCH_BOUNDS(256) rms_norm_f32(float* out, const float* x, const float* __restrict__ w,
                                             rf_u64 n_rows, rf_u32 width, float eps) {
  RF_SHARED float red[RF_T];
  const rf_u64 r = rf_block_idx_x();
  const rf_u32 tid = rf_thread_idx_x();
  const float* xr = x + r * width;
  float s = 0.0f;
  for (rf_u32 i = tid; i < width; i += RF_T) s = rf_fmaf(xr[i], xr[i], s);
  s = rf_block_sum(s, red);
  const float inv = 1.0f / rf_sqrtf(s / (float)width + eps);
  float* o = out + r * width;
  for (rf_u32 i = tid; i < width; i += RF_T) o[i] = (xr[i] * inv) * w[i];
}

RF_KERNEL RF_LAUNCH_BOUNDS(256) rms_norm_add_f32(float* x, const float* __restrict__ o,
                                                 const float* __restrict__ w, rf_u64 n_rows,
                                                 rf_u32 width, float eps) {
  RF_SHARED float red[RF_T];
  const rf_u64 r = rf_block_idx_x();
  const rf_u32 tid = rf_thread_idx_x();
  const float* orow = o + r * width;
  float s = 0.0f;
  for (rf_u32 i = tid; i < width; i += RF_T) s = rf_fmaf(orow[i], orow[i], s);
  s = rf_block_sum(s, red);
  const float inv = 1.0f / rf_sqrtf(s / (float)width + eps);
  float* xr = x + r * width;
  for (rf_u32 i = tid; i < width; i += RF_T) xr[i] = xr[i] + (orow[i] * inv) * w[i];
}

RF_KERNEL RF_LAUNCH_BOUNDS(256) add_f32(float* x, const float* __restrict__ o, rf_u64 n) {
  const rf_u64 i = rf_global_thread_idx();
  if (i < n) x[i] = x[i] + o[i];
}

RF_KERNEL RF_LAUNCH_BOUNDS(256) act_mul_f32(float* out, const float* __restrict__ g,
                                            const float* __restrict__ u, rf_u64 n, rf_u32 kind) {
  const rf_u64 i = rf_global_thread_idx();
  if (i >= n) return;
  const float a = g[i];
  float r;
  if (kind == 0) {
    r = a / (1.0f + rf_expf(-a));
  } else {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    const float z = c * (a + 0.044715f * a * a * a);
    const float th = 1.0f - 2.0f / (rf_expf(2.0f * z) + 1.0f);  // tanh(z), saturating
    r = 0.5f * a * (1.0f + th);
  }
  out[i] = r * u[i];
}

RF_KERNEL RF_LAUNCH_BOUNDS(256) rope_f32(float* x, const rf_i32* __restrict__ pos,
                                         const float* __restrict__ tab, rf_u64 n_tok,
                                         rf_u32 heads, rf_u32 d, rf_u32 d_rot, rf_u32 neox) {
  const rf_u64 i = rf_global_thread_idx();
  const rf_u32 half = d_rot / 2;
  if (i >= n_tok * heads * half) return;
  const rf_u32 p = (rf_u32)(i % half);
  const rf_u64 th = i / half;  // token * heads + head
  const rf_u64 t = th / heads;
  const float* cs = tab + (rf_u64)pos[t] * 2 * half;
  const float c = cs[p], s = cs[half + p];
  float* xr = x + th * d;
  const rf_u32 ia = neox ? p : 2 * p, ib = neox ? p + half : 2 * p + 1;
  const float a = xr[ia], b = xr[ib];
  xr[ia] = a * c - b * s;
  xr[ib] = a * s + b * c;
}

RF_KERNEL RF_LAUNCH_BOUNDS(256) kv_store_f32(float* kc, float* vc, const float* __restrict__ k,
                                             const float* __restrict__ v, const rf_i32* __restrict__ slot,
                                             const rf_i32* __restrict__ pos, rf_u64 n_tok, rf_u32 row,
                                             rf_u64 slot_stride, rf_u64 layer_off) {
  const rf_u64 i = rf_global_thread_idx();
  if (i >= n_tok * row) return;
  const rf_u64 t = i / row;
  const rf_u32 c = (rf_u32)(i % row);
  const rf_u64 dst = (rf_u64)slot[t] * slot_stride + layer_off + (rf_u64)pos[t] * row + c;
  kc[dst] = k[i];
  vc[dst] = v[i];
}

// Attention of one (query t, head h) over keys [k0, k1), online softmax in chunks of 256
// keys.  Scores: 8 groups of 32 lanes, keys g, g + 8, ... (4 in flight per group), lanes
// split d; weights p_j in LDS; weighted V sum: the same groups over the keys, lane l
// accumulating dims l, l + 32, ... (up to 16 per lane); the 8 group sums are added in
// LDS at the end.  Returns, in thread tid < d (and tid + 256), the unnormalized output
// o[dim] = sum_j exp(s_j - m) v_j[dim], with m and l = sum_j exp(s_j - m).
#define RF_ATT_DPL 16  // dims per lane: d <= 512
RF_DEVICE void rf_attend(const float* __restrict__ qs, const float* __restrict__ kbase,
                         const float* __restrict__ vbase, const float* __restrict__ fk,
                         const float* __restrict__ fv, rf_u32 row, rf_u32 kvh, rf_u32 d,
                         rf_i32 fresh_start, rf_i32 k0, rf_i32 k1, float* ps, float* red,
                         float* gsum, float& m, float& l, float& o0, float& o1) {
  const rf_u32 tid = rf_thread_idx_x();
  const rf_u32 lane = tid & 31u, grp = tid >> 5;
  float acc[RF_ATT_DPL];
#pragma unroll
  for (int u = 0; u < RF_ATT_DPL; ++u) acc[u] = 0.0f;
  m = -3.0e38f;
  l = 0.0f;
  for (rf_i32 j0 = k0; j0 < k1; j0 += RF_T) {
    const rf_i32 cnt = rf_min_i32(RF_T, k1 - j0);
    for (rf_i32 kk = (rf_i32)grp; kk < cnt; kk += 32) {
      float a[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const rf_i32 kq = kk + 8 * u;
        a[u] = 0.0f;
        if (kq < cnt) {
          const rf_i32 key = j0 + kq;
          const float* kr = key >= fresh_start ? fk + (rf_u64)(key - fresh_start) * row + kvh * d
                                               : kbase + (rf_u64)key * row;
          for (rf_u32 i = lane; i < d; i += 32) a[u] = rf_fmaf(qs[i], kr[i], a[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        float v = a[u];
#pragma unroll
        for (int msk = 16; msk >= 1; msk >>= 1) v += rf_uint_as_float(rf_shfl_xor_u32(rf_float_as_uint(v), msk));
        if (lane == 0 && kk + 8 * u < cnt) ps[kk + 8 * u] = v;
      }
    }
    rf_barrier();
    const float s = (rf_i32)tid < cnt ? ps[tid] : -3.0e38f;
    const float cmax = rf_block_max(s, red);
    const float m_new = rf_fmaxf(m, cmax);
    const float pj = (rf_i32)tid < cnt ? rf_expf(s - m_new) : 0.0f;
    ps[tid] = pj;
    const float psum = rf_block_sum(pj, red);  // its barriers also publish ps
    const float alpha = rf_expf(m - m_new);
    l = l * alpha + psum;
    m = m_new;
#pragma unroll
    for (int u = 0; u < RF_ATT_DPL; ++u) acc[u] *= alpha;
    for (rf_i32 jj = (rf_i32)grp; jj < cnt; jj += 8) {
      const rf_i32 key = j0 + jj;
      const float* vr = key >= fresh_start ? fv + (rf_u64)(key - fresh_start) * row + kvh * d
                                           : vbase + (rf_u64)key * row;
      const float pw = ps[jj];
#pragma unroll
      for (int u = 0; u < RF_ATT_DPL; ++u)
        if (lane + 32u * u < d) acc[u] = rf_fmaf(pw, vr[lane + 32u * u], acc[u]);
    }
    rf_barrier();  // ps is rewritten by the next chunk
  }
  // add the 8 group sums: gsum (8, d)
#pragma unroll
  for (int u = 0; u < RF_ATT_DPL; ++u)
    if (lane + 32u * u < d) gsum[grp * d + lane + 32u * u] = acc[u];
  rf_barrier();
  o0 = o1 = 0.0f;
  for (int g = 0; g < 8; ++g) {
    if (tid < d) o0 += gsum[g * d + tid];
    if (tid + RF_T < d) o1 += gsum[g * d + tid + RF_T];
  }
}

// grid = T * H * n_split; split sp of (t, h) takes keys [k0, k1), an n_split-th of
// [lo, pos]; n_split == 1 writes out directly, else (o, m, l) partials to part
// (T * H, n_split, d + 2) for attention_combine_f32.
RF_KERNEL RF_LAUNCH_BOUNDS(256) attention_f32(
    float* out, float* part, const float* __restrict__ q, const float* __restrict__ kc,
    const float* __restrict__ vc, const float* __restrict__ fk, const float* __restrict__ fv,
    const rf_i32* __restrict__ slot, const rf_i32* __restrict__ pos, rf_u64 n_tok, rf_u32 H,
    rf_u32 KV, rf_u32 d, rf_u64 slot_stride, rf_u64 layer_off, rf_i32 fresh_start,
    rf_i32 window, float scale, rf_u32 n_split) {
  RF_SHARED float qs[512];
  RF_SHARED float ps[RF_T];
  RF_SHARED float red[RF_T];
  RF_SHARED float gsum[8 * 512];
  const rf_u32 tid = rf_thread_idx_x();
  const rf_u64 th = rf_block_idx_x() / n_split;  // t * H + h
  const rf_u32 sp = rf_block_idx_x() % n_split;
  const rf_u64 t = th / H;
  const rf_u32 h = (rf_u32)(th % H);
  const rf_u32 kvh = h / (H / KV);
  const rf_u32 row = KV * d;
  const rf_i32 p = pos[t];
  const rf_i32 lo = window > 0 ? rf_max_i32(0, p - window + 1) : 0;
  const rf_i32 per = (p - lo + (rf_i32)n_split) / (rf_i32)n_split;  // ceil((p - lo + 1) / n_split)
  const rf_i32 k0 = lo + (rf_i32)sp * per, k1 = rf_min_i32(p + 1, k0 + per);
  const float* kbase = kc + (rf_u64)slot[t] * slot_stride + layer_off + kvh * d;
  const float* vbase = vc + (rf_u64)slot[t] * slot_stride + layer_off + kvh * d;
  for (rf_u32 i = tid; i < d; i += RF_T) qs[i] = q[th * d + i] * scale;
  rf_barrier();
  float m, l, o0, o1;
  rf_attend(qs, kbase, vbase, fk, fv, row, kvh, d, fresh_start, k0, k1, ps, red, gsum, m, l, o0, o1);
  if (n_split == 1) {
    const float inv = 1.0f / l;
    if (tid < d) out[th * d + tid] = o0 * inv;
    if (tid + RF_T < d) out[th * d + tid + RF_T] = o1 * inv;
  } else {
    float* pr = part + (th * n_split + sp) * (d + 2);
    if (tid < d) pr[tid] = o0;
    if (tid + RF_T < d) pr[tid + RF_T] = o1;
    if (tid == 0) {
      pr[d] = m;
      pr[d + 1] = l;
    }
  }
}

// out (T*H, d) from the n_split partials of each (t, h): grid = T * H.
RF_KERNEL RF_LAUNCH_BOUNDS(256) attention_combine_f32(float* out, const float* __restrict__ part,
                                                      rf_u64 n_rows, rf_u32 d, rf_u32 n_split) {
  const rf_u64 th = rf_block_idx_x();
  const rf_u32 tid = rf_thread_idx_x();
  const float* pr = part + th * n_split * (d + 2);
  float M = -3.0e38f;
  for (rf_u32 s = 0; s < n_split; ++s) M = rf_fmaxf(M, pr[s * (d + 2) + d]);
  float L = 0.0f, a0 = 0.0f, a1 = 0.0f;
  for (rf_u32 s = 0; s < n_split; ++s) {
    const float* ps = pr + s * (d + 2);
    const float w = rf_expf(ps[d] - M);
    L = rf_fmaf(ps[d + 1], w, L);
    if (tid < d) a0 = rf_fmaf(ps[tid], w, a0);
    if (tid + RF_T < d) a1 = rf_fmaf(ps[tid + RF_T], w, a1);
  }
  const float inv = 1.0f / L;
  if (tid < d) out[th * d + tid] = a0 * inv;
  if (tid + RF_T < d) out[th * d + tid + RF_T] = a1 * inv;
}

// ---------------------------------------------------------------- fused steps
// qk_rope_f32: one workgroup per row of q (T*H rows) then k (T*KV rows), each of d values:
// optional RMSNorm with the per-head weight (Gemma's q_norm / k_norm), then RoPE of the
// first d_rot dims at pos[t] (table as rope_f32).  Same arithmetic as rms_norm_f32 then
// rope_f32.  grid = T * (H + KV); d <= 512.
RF_KERNEL RF_LAUNCH_BOUNDS(256) qk_rope_f32(float* q, float* k, const float* __restrict__ qw,
                                            const float* __restrict__ kw, const rf_i32* __restrict__ pos,
                                            const float* __restrict__ tab, rf_u64 n_tok, rf_u32 H,
                                            rf_u32 KV, rf_u32 d, rf_u32 d_rot, rf_u32 neox,
                                            rf_u32 use_norm, float eps) {
  RF_SHARED float red[RF_T];
  RF_SHARED float v[512];
  const rf_u64 r = rf_block_idx_x();
  const rf_u32 tid = rf_thread_idx_x();
  const bool is_q = r < n_tok * H;
  const rf_u64 rr = is_q ? r : r - n_tok * H;   // row within q or k
  const rf_u64 t = rr / (is_q ? H : KV);
  float* xr = (is_q ? q : k) + rr * d;
  const float* w = is_q ? qw : kw;
  for (rf_u32 i = tid; i < d; i += RF_T) v[i] = xr[i];
  if (use_norm) {
    float s = 0.0f;
    for (rf_u32 i = tid; i < d; i += RF_T) s = rf_fmaf(v[i], v[i], s);
    s = rf_block_sum(s, red);
    const float inv = 1.0f / rf_sqrtf(s / (float)d + eps);
    for (rf_u32 i = tid; i < d; i += RF_T) v[i] = (v[i] * inv) * w[i];
  }
  rf_barrier();
  const rf_u32 half = d_rot / 2;
  const float* cs = tab + (rf_u64)pos[t] * 2 * half;
  for (rf_u32 p = tid; p < half; p += RF_T) {
    const float c = cs[p], sn = cs[half + p];
    const rf_u32 ia = neox ? p : 2 * p, ib = neox ? p + half : 2 * p + 1;
    const float a = v[ia], b = v[ib];
    v[ia] = a * c - b * sn;
    v[ib] = a * sn + b * c;
  }
  rf_barrier();
  for (rf_u32 i = tid; i < d; i += RF_T) xr[i] = v[i];
}

// residual_norm_f32: per row of width W (grid = R):
//   x += post ? rms_norm(o) * w_post : o;   then, if next: h = rms_norm(x) * w_next.
// (Gemma's post-norm + residual + the next pre-norm; llama's residual + pre-norm.)
RF_KERNEL RF_LAUNCH_BOUNDS(256) residual_norm_f32(float* x, float* h, const float* __restrict__ o,
                                                  const float* __restrict__ w_post,
                                                  const float* __restrict__ w_next, rf_u64 n_rows,
                                                  rf_u32 width, float eps, rf_u32 post, rf_u32 next) {
  RF_SHARED float red[RF_T];
  const rf_u64 r = rf_block_idx_x();
  const rf_u32 tid = rf_thread_idx_x();
  const float* orow = o + r * width;
  float* xr = x + r * width;
  float inv = 1.0f;
  if (post) {
    float s = 0.0f;
    for (rf_u32 i = tid; i < width; i += RF_T) s = rf_fmaf(orow[i], orow[i], s);
    s = rf_block_sum(s, red);
    inv = 1.0f / rf_sqrtf(s / (float)width + eps);
  }
  float s2 = 0.0f;
  for (rf_u32 i = tid; i < width; i += RF_T) {
    const float add = post ? (orow[i] * inv) * w_post[i] : orow[i];
    const float nx = xr[i] + add;
    xr[i] = nx;
    s2 = rf_fmaf(nx, nx, s2);
  }
  if (next) {  // each thread reads back only the elements it wrote: no barrier needed
    s2 = rf_block_sum(s2, red);
    const float inv2 = 1.0f / rf_sqrtf(s2 / (float)width + eps);
    float* hr = h + r * width;
    for (rf_u32 i = tid; i < width; i += RF_T) hr[i] = (xr[i] * inv2) * w_next[i];
  }
}
