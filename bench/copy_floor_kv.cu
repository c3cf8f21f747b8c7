// bench/copy_floor_kv.cu: copy-only kernels for bench/copy_floor_kv.py (not part of the
// package).  Each reads the K and V pages of a paged cache laid out as rocmforge's
// (page, 16 positions, row_bytes = 800: 8 KV heads x 128 MXFP6 values), pages in the order of
// a page table, into shared memory or registers, and does nothing with the bytes but fold
// one word a thread into `out` (so that no copy can be dropped).  They answer one question:
// how fast can the staged attention kernel's page traffic go at all, for a given copy
// structure?  A workgroup takes `pps` consecutive table entries (its "split").
// The "+ partials" kernels (EPI) then also write what a split-K attention kernel must write at
// the end of a split, in attn_combine's layout (bench/copy_floor_kv.py launches the real
// attn_combine after them): each of the workgroup's query heads (4 per KV head) gets a row of
// 128 floats and its (M, L), one 512-byte store per row from one warp.  With batch 1 that is
// the floor of any split-K decode over these pages, with no arithmetic at all.
#include <stdint.h>
typedef unsigned int u32;
#define PAGE_BYTES 12800   // 16 positions x 800 bytes
#define ROW 800

__device__ __forceinline__ u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp16(u32 d, const void* s) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(s) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
extern __shared__ __align__(128) uint8_t fl_smem[];

// The partial results of split `split` of n_splits for query heads q0 .. q0 + nq - 1 (batch
// 1): rows (q0 + r) * n_splits + split of part_o (128 floats) and part_ml (M, L); an empty
// split (no pages) writes M = -inf, L = 0, as the attention kernels do.
__device__ void write_partials(float* part_o, float* part_ml, int q0, int nq, int split, int n_splits,
                               bool empty, u32 acc) {
  const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const float v = (float)(acc & 0xffu) * (1.0f / 256.0f);
  for (int r = threadIdx.x >> 5; r < nq; r += nw) {
    const long row = (long)(q0 + r) * n_splits + split;
    ((float4*)(part_o + row * 128))[lane] = make_float4(v, v, v, v);
    if (lane == 0) {
      part_ml[2 * row] = empty ? __int_as_float(0xff800000) : 0.0f;
      part_ml[2 * row + 1] = empty ? 0.0f : 1.0f;
    }
  }
}

// 16-byte cp.async into NST stage buffers, NST - 1 tiles in flight; a workgroup of 32 HW
// threads covers HW heads (HW x 100 contiguous bytes of each position; HW = 4: the shipped
// staged kernel's pattern, HW = 8: whole 12.8 KB pages), one tile = one page.
template <int HW, int NST, bool EPI = false>
__device__ void cpasync_body(u32* out, const uint8_t* kp, const uint8_t* vp, const int* table, int n_pages,
                             int pps, float* part_o, float* part_ml) {
  constexpr int SL = HW * 100, NT = 32 * HW, TB = 16 * SL, NCH = TB / 16, CPK = (NCH + NT - 1) / NT;
  const int ngr = 8 / HW, hg = blockIdx.x % ngr, split = blockIdx.x / ngr, tid = threadIdx.x;
  const int p0 = split * pps, p1 = min(n_pages, p0 + pps);
  int goff[CPK];
#pragma unroll
  for (int i = 0; i < CPK; ++i) {
    const int c = tid + NT * i, p = c / (SL / 16);
    goff[i] = c < NCH ? p * ROW + hg * SL + 16 * (c - p * (SL / 16)) : -1;
  }
  auto issue = [&](int P, int st) {
    if (P < p1) {
      const long base = (long)table[P] * PAGE_BYTES;
#pragma unroll
      for (int i = 0; i < CPK; ++i)
        if (goff[i] >= 0) {
          cp16(smem_addr(fl_smem + st * 2 * TB + 16 * (tid + NT * i)), kp + base + goff[i]);
          cp16(smem_addr(fl_smem + st * 2 * TB + TB + 16 * (tid + NT * i)), vp + base + goff[i]);
        }
    }
    cp_commit();
  };
  for (int s = 0; s < NST - 1; ++s) issue(p0 + s, s);
  u32 acc = 0;
  int st = 0;
  for (int P = p0; P < p1; ++P) {
    cp_wait<NST - 2>();
    __syncthreads();
    issue(P + NST - 1, (st + NST - 1) % NST);
    acc ^= ((const u32*)(fl_smem + st * 2 * TB))[tid] + ((const u32*)(fl_smem + st * 2 * TB + TB))[tid];
    st = st + 1 == NST ? 0 : st + 1;
  }
  out[blockIdx.x * NT + tid] = acc;
  if (EPI) write_partials(part_o, part_ml, hg * HW * 4, HW * 4, split, gridDim.x / ngr, p1 <= p0, acc);
}

// One cp.async.bulk (TMA) of a whole K page and V page per stage, completing on the stage's
// mbarrier; thread 0 issues, NST stages in flight (sm_90).
template <int NST, bool EPI = false>
__device__ void bulk_body(u32* out, const uint8_t* kp, const uint8_t* vp, const int* table, int n_pages, int pps,
                          float* part_o, float* part_ml) {
#if __CUDA_ARCH__ >= 900
  __shared__ __align__(8) uint64_t bar[NST];
  const int p0 = blockIdx.x * pps, p1 = min(n_pages, p0 + pps), tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < NST; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar[s])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  auto issue = [&](int P, int st) {
    if (tid == 0 && P < p1) {
      const long base = (long)table[P] * PAGE_BYTES;
      const u32 b = smem_addr(&bar[st]);
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(2 * PAGE_BYTES) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   ::"r"(smem_addr(fl_smem + st * 2 * PAGE_BYTES)), "l"(kp + base), "r"(PAGE_BYTES), "r"(b) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   ::"r"(smem_addr(fl_smem + st * 2 * PAGE_BYTES + PAGE_BYTES)), "l"(vp + base), "r"(PAGE_BYTES),
                   "r"(b) : "memory");
    }
  };
  for (int s = 0; s < NST; ++s) issue(p0 + s, s);
  u32 acc = 0, phase = 0;
  int st = 0;
  for (int P = p0; P < p1; ++P) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}"
                 ::"r"(smem_addr(&bar[st])), "r"(phase) : "memory");
    acc ^= ((const u32*)(fl_smem + st * 2 * PAGE_BYTES))[tid] + ((const u32*)(fl_smem + st * 2 * PAGE_BYTES + PAGE_BYTES))[tid];
    __syncthreads();
    issue(P + NST, st);
    if (++st == NST) {
      st = 0;
      phase ^= 1;
    }
  }
  out[blockIdx.x * blockDim.x + tid] = acc;
  if (EPI) write_partials(part_o, part_ml, 0, 32, blockIdx.x, gridDim.x, p1 <= p0, acc);
#endif
}

// Plain 16-byte loads into registers, a whole page a step, two pages' loads in flight.
__device__ void ldg_body(u32* out, const uint8_t* kp, const uint8_t* vp, const int* table, int n_pages, int pps,
                         float*, float*) {
  const int p0 = blockIdx.x * pps, p1 = min(n_pages, p0 + pps), tid = threadIdx.x;
  u32 acc = 0;
  for (int P = p0; P < p1; P += 2) {
    uint4 x[2][2][4];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const long base = (long)table[min(P + u, p1 - 1)] * PAGE_BYTES;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = min(tid + 256 * i, PAGE_BYTES / 16 - 1);
        x[u][0][i] = __ldcg((const uint4*)(kp + base) + c);
        x[u][1][i] = __ldcg((const uint4*)(vp + base) + c);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc ^= x[u][0][i].x + x[u][1][i].w;
  }
  out[blockIdx.x * 256 + tid] = acc;
}

#define ARGS u32 *out, const uint8_t *kp, const uint8_t *vp, const int *table, int n_pages, int pps, float *po, float *pml
#define PASS out, kp, vp, table, n_pages, pps, po, pml
extern "C" __global__ void __launch_bounds__(128) floor_cpasync_h4_s3(ARGS) { cpasync_body<4, 3>(PASS); }
extern "C" __global__ void __launch_bounds__(128) floor_cpasync_h4_s4(ARGS) { cpasync_body<4, 4>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_cpasync_h8_s3(ARGS) { cpasync_body<8, 3>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_cpasync_h8_s4(ARGS) { cpasync_body<8, 4>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s3(ARGS) { bulk_body<3>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s4(ARGS) { bulk_body<4>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s6(ARGS) { bulk_body<6>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_ldg(ARGS) { ldg_body(PASS); }
// with the partial results of each split written at the end (batch 1)
extern "C" __global__ void __launch_bounds__(128) floor_cpasync_h4_s3_epi(ARGS) { cpasync_body<4, 3, true>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s4_epi(ARGS) { bulk_body<4, true>(PASS); }
extern "C" __global__ void __launch_bounds__(256) floor_bulk_s6_epi(ARGS) { bulk_body<6, true>(PASS); }
// An empty kernel launched after the "+ partials" ones: what a second kernel costs before it
// does any work (the launch after the first kernel's end)
extern "C" __global__ void floor_noop(ARGS) {
  if (n_pages < 0) out[threadIdx.x] = 0;   // never true: keeps the parameters
}

// A candidate attn_combine (same arguments and result): one warp merges 16 values of one row
// over every split, with no shared memory and no workgroup barrier.  Lane = 4 sl + qd: split
// lane sl (0..7) takes splits sl, sl + 8, ..., 16 of them per trip, all loaded before any is
// used; qd (0..3) is the float4 of the 16 values.  The split lanes then meet through xor
// shuffles: the largest M, then the rescaled sums.  Workgroups of 2 warps (grid = n_rows *
// head_dim / 32).
extern "C" __global__ void __launch_bounds__(64) combine_warp(float* __restrict__ out, const float* __restrict__ part_o,
                                                              const float* __restrict__ part_ml, int n_splits,
                                                              int head_dim) {
  constexpr int PT = 16;   // splits a lane loads per trip
  const float neg_inf = __int_as_float(0xff800000);
  const int lane = threadIdx.x & 31, qd = lane & 3, sl = lane >> 2;
  const long wid = (long)blockIdx.x * 2 + (threadIdx.x >> 5);
  const int cpr = head_dim / 16;
  const long row = wid / cpr;
  const int chunk = (int)(wid % cpr);
  const float2* ml = (const float2*)(part_ml + row * n_splits * 2);
  const float4* po = (const float4*)(part_o + row * n_splits * head_dim + chunk * 16) + qd;
  const int st4 = head_dim / 4;
  float m = neg_inf, d = 0.0f, x0 = 0.0f, x1 = 0.0f, x2 = 0.0f, x3 = 0.0f;
  for (int s0 = sl; s0 < n_splits; s0 += 8 * PT) {
    float ms[PT], ls[PT];
    float4 xs[PT];
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const int s = s0 + 8 * k;
      const int sc = s < n_splits ? s : n_splits - 1;
      const float2 v = ml[sc];
      ms[k] = s < n_splits ? v.x : neg_inf;
      ls[k] = v.y;
      xs[k] = po[(long)sc * st4];
    }
    float mn = m;
#pragma unroll
    for (int k = 0; k < PT; ++k) mn = fmaxf(mn, ms[k]);
    if (mn == neg_inf) continue;
    if (mn > m) {
      const float a = exp2f(m - mn);
      d *= a; x0 *= a; x1 *= a; x2 *= a; x3 *= a;
      m = mn;
    }
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const float w = ms[k] == neg_inf ? 0.0f : exp2f(ms[k] - m);
      d = fmaf(w, ls[k], d);
      x0 = fmaf(w, xs[k].x, x0);
      x1 = fmaf(w, xs[k].y, x1);
      x2 = fmaf(w, xs[k].z, x2);
      x3 = fmaf(w, xs[k].w, x3);
    }
  }
  float mx = m;
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
  const float a = m == neg_inf ? 0.0f : exp2f(m - mx);
  d *= a; x0 *= a; x1 *= a; x2 *= a; x3 *= a;
#pragma unroll
  for (int o = 4; o < 32; o <<= 1) {
    d += __shfl_xor_sync(0xffffffffu, d, o);
    x0 += __shfl_xor_sync(0xffffffffu, x0, o);
    x1 += __shfl_xor_sync(0xffffffffu, x1, o);
    x2 += __shfl_xor_sync(0xffffffffu, x2, o);
    x3 += __shfl_xor_sync(0xffffffffu, x3, o);
  }
  if (sl == 0) ((float4*)(out + row * head_dim + chunk * 16))[qd] = make_float4(x0 / d, x1 / d, x2 / d, x3 / d);
}
